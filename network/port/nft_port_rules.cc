#include "network/port/nft_port_rules.h"

#include <cctype>
#include <optional>
#include <set>
#include <vector>

#include "base/strings.h"
#include "model/net_addr.h"
#include "network/port/nft_exec.h"
#include "network/port/port_names.h"

namespace vmm::net {
namespace {

using model::AclDirection;
using model::AclProtocol;
using model::AclRule;

// One side of a rule: the chain it lands in and whether the packet opens the conversation.
struct Side {
  bool fromGuest;
  bool opening;
};

std::vector<Side> sidesOf(AclDirection d) {
  switch (d) {
    case AclDirection::out: return {{true, true}, {false, false}};
    case AclDirection::in: return {{false, true}, {true, false}};
    case AclDirection::both: break;
  }
  return {{true, true}, {false, false}, {false, true}, {true, false}};
}

Result<std::optional<model::Cidr>> parseRemote(const AclRule& r, size_t index) {
  if (r.remote.empty()) return std::optional<model::Cidr>();
  auto c = model::parseCidr(r.remote);
  if (!c.ok()) return invalidArgument("acl[" + std::to_string(index) + "].remote: " + c.error().message);
  return std::optional<model::Cidr>(*c);
}

Status checkRule(const AclRule& r, size_t index) {
  std::string where = "acl[" + std::to_string(index) + "]";
  VMM_ASSIGN(auto remote, parseRemote(r, index));
  bool ports = r.portMin != 0 || r.portMax != 0;
  if (ports) {
    if (r.protocol != AclProtocol::tcp && r.protocol != AclProtocol::udp)
      return invalidArgument(where + ": a port range needs protocol tcp or udp");
    int hi = r.portMax == 0 ? r.portMin : r.portMax;
    if (r.portMin < 1 || r.portMin > 65535 || hi < r.portMin || hi > 65535)
      return invalidArgument(where + ": port range " + std::to_string(r.portMin) + "-" + std::to_string(r.portMax) +
                             " is not within 1..65535 (low <= high)");
  }
  if (remote) {
    if (r.protocol == AclProtocol::icmp && remote->address.v6)
      return invalidArgument(where + ": protocol icmp with an IPv6 remote (use icmpv6)");
    if (r.protocol == AclProtocol::icmpv6 && !remote->address.v6)
      return invalidArgument(where + ": protocol icmpv6 with an IPv4 remote");
    if (r.protocol == AclProtocol::arp && remote->address.v6)
      return invalidArgument(where + ": protocol arp with an IPv6 remote");
  }
  return {};
}

std::string ruleLine(const AclRule& r, size_t index, const std::optional<model::Cidr>& remote, Side side) {
  std::vector<std::string> m;
  const char* remoteField = side.fromGuest ? "daddr" : "saddr";
  if (remote) {
    std::string c = remote->toString();
    if (r.protocol == AclProtocol::arp)
      m.push_back(std::string("arp ") + remoteField + " ip " + c);
    else
      m.push_back(std::string(remote->address.v6 ? "ip6 " : "ip ") + remoteField + " " + c);
  }
  switch (r.protocol) {
    case AclProtocol::any:
      if (!remote) m.push_back("ether type { ip, ip6 }");
      break;
    case AclProtocol::tcp: m.push_back("meta l4proto tcp"); break;
    case AclProtocol::udp: m.push_back("meta l4proto udp"); break;
    case AclProtocol::icmp: m.push_back("meta l4proto icmp"); break;
    case AclProtocol::icmpv6: m.push_back("meta l4proto ipv6-icmp"); break;
    case AclProtocol::arp:
      if (!remote) m.push_back("ether type arp");
      break;
  }
  if (r.portMin != 0 || r.portMax != 0) {
    int hi = r.portMax == 0 ? r.portMin : r.portMax;
    std::string range = hi == r.portMin ? std::to_string(hi) : std::to_string(r.portMin) + "-" + std::to_string(hi);
    const char* proto = r.protocol == AclProtocol::tcp ? "tcp" : "udp";
    m.push_back(std::string(proto) + (side.opening ? " dport " : " sport ") + range);
    if (!side.opening && r.protocol == AclProtocol::tcp) m.push_back("tcp flags & (syn | ack) != syn");
  }
  std::string verdict = r.action == model::AclAction::allow ? "accept" : "drop";
  return join(m, " ") + (m.empty() ? "" : " ") + "counter " + verdict + " comment \"acl " + std::to_string(index) + "\"";
}

struct SpoofSets {
  std::vector<std::string> v4, v6;
};

Result<SpoofSets> parseAllowed(const PortSpec& spec) {
  SpoofSets s;
  for (size_t i = 0; i < spec.profile.allowedIps.size(); ++i) {
    auto c = model::parseCidr(spec.profile.allowedIps[i]);
    if (!c.ok()) return invalidArgument("allowedIps[" + std::to_string(i) + "]: " + c.error().message);
    (c->address.v6 ? s.v6 : s.v4).push_back(c->toString());
  }
  return s;
}

}  // namespace

Result<std::string> normalizeMac(const std::string& mac) {
  auto parts = split(mac, ':');
  bool ok = parts.size() == 6;
  for (const auto& p : parts) ok = ok && p.size() == 2 && std::isxdigit(static_cast<unsigned char>(p[0])) &&
                                   std::isxdigit(static_cast<unsigned char>(p[1]));
  if (!ok) return invalidArgument("MAC " + quote(mac) + " is not six hex octets separated by ':'");
  return toLower(mac);
}

bool needsPortTable(const model::PortProfile& p) { return p.spoofCheck || !p.acl.empty(); }

Status checkAclAndSpoof(const PortSpec& spec) {
  for (size_t i = 0; i < spec.profile.acl.size(); ++i) VMM_TRY(checkRule(spec.profile.acl[i], i));
  if (spec.profile.spoofCheck) {
    if (spec.mac.empty()) return invalidArgument("spoofCheck needs the NIC's MAC address");
    VMM_TRY(normalizeMac(spec.mac));
    VMM_TRY(parseAllowed(spec));
  }
  return {};
}

Result<std::string> renderPortTable(const PortSpec& spec) {
  VMM_TRY(checkAclAndSpoof(spec));
  const auto& p = spec.profile;
  std::string table = portTableName(spec.ifname);
  std::string port = "\"" + spec.ifname + "\"";
  std::vector<std::string> from, to;
  std::string sets;
  if (p.spoofCheck) {
    VMM_ASSIGN(std::string mac, normalizeMac(spec.mac));
    VMM_ASSIGN(SpoofSets allowed, parseAllowed(spec));
    from.push_back("ether saddr != " + mac + " counter drop comment \"spoof\"");
    from.push_back("arp saddr ether != " + mac + " counter drop comment \"spoof\"");
    if (!allowed.v4.empty()) {
      sets += "  set allowed4 { type ipv4_addr; flags interval; auto-merge; elements = { " + join(allowed.v4, ", ") + " } }\n";
      from.push_back("ip saddr != @allowed4 ip saddr != 0.0.0.0 counter drop comment \"spoof\"");
      from.push_back("ip saddr 0.0.0.0 ip daddr != 255.255.255.255 counter drop comment \"spoof\"");
      from.push_back("arp saddr ip != @allowed4 arp saddr ip != 0.0.0.0 counter drop comment \"spoof\"");
    }
    if (!allowed.v6.empty()) {
      allowed.v6.push_back("fe80::/10");
      allowed.v6.push_back("::");
      sets += "  set allowed6 { type ipv6_addr; flags interval; auto-merge; elements = { " + join(allowed.v6, ", ") + " } }\n";
      from.push_back("ip6 saddr != @allowed6 counter drop comment \"spoof\"");
    }
  }
  for (size_t i = 0; i < p.acl.size(); ++i) {
    VMM_ASSIGN(auto remote, parseRemote(p.acl[i], i));
    std::set<std::string> seen;  // without ports, opening and reply lines of a chain coincide
    for (Side side : sidesOf(p.acl[i].direction)) {
      std::string line = ruleLine(p.acl[i], i, remote, side);
      if (!seen.insert((side.fromGuest ? "f" : "t") + line).second) continue;
      (side.fromGuest ? from : to).push_back(line);
    }
  }
  auto chain = [](const std::string& name, const std::vector<std::string>& rules) {
    std::string s = "  chain " + name + " {\n";
    for (const auto& r : rules) s += "    " + r + "\n";
    return s + "  }\n";
  };
  std::string s = deleteBridgeTableLines(table);
  s += "table bridge " + table + " {\n" + sets;
  s += chain("from_guest", from);
  s += chain("to_guest", to);
  s += "  chain hook_forward {\n    type filter hook forward priority 0; policy accept;\n"
       "    iifname " + port + " jump from_guest\n    oifname " + port + " jump to_guest\n  }\n";
  s += "  chain hook_input {\n    type filter hook input priority 0; policy accept;\n"
       "    iifname " + port + " jump from_guest\n  }\n";
  s += "  chain hook_output {\n    type filter hook output priority 0; policy accept;\n"
       "    oifname " + port + " jump to_guest\n  }\n";
  s += "}\n";
  return s;
}

}  // namespace vmm::net
