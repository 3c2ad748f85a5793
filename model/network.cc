#include "model/network.h"

#include <set>

#include "base/random.h"
#include "base/strings.h"
#include "model/names.h"
#include "model/net_addr.h"

namespace vmm::model {

const EnumTable<NetworkMode> kNetworkModes = {{NetworkMode::nat, "nat"},
                                              {NetworkMode::routed, "routed"},
                                              {NetworkMode::isolated, "isolated"},
                                              {NetworkMode::bridge, "bridge"}};

Result<Network> parseNetwork(const json& j) {
  Network n;
  JsonReader r(j, "");
  r.required("name", n.name);
  r.optional("uuid", n.uuid);
  r.optionalEnum("mode", n.mode, kNetworkModes);
  r.optional("bridge", n.bridge);
  r.optional("mtu", n.mtu, 0, 65535);
  r.optional("ipv4", n.ipv4);
  r.object("dhcp", [&](JsonReader& d) {
    d.optional("enabled", n.dhcp);
    d.optional("start", n.dhcpStart);
    d.optional("end", n.dhcpEnd);
    d.optional("lease_seconds", n.leaseSeconds, 120, 365 * 86400);
    d.objectArray("hosts", 4096, [&](JsonReader& h, size_t) {
      DhcpHost host;
      h.required("mac", host.mac);
      h.required("ip", host.ip);
      h.optional("name", host.name);
      n.dhcpHosts.push_back(host);
    });
  });
  r.optional("domain", n.domain);
  r.optional("uplink", n.uplink);
  r.optional("autostart", n.autostart);
  r.optional("labels", n.labels);
  VMM_TRY(r.finish());
  if (auto st = validateName(n.name, "network name"); !st.ok()) return st.error().wrap("name");
  if (n.uuid.empty()) n.uuid = newUuid();
  else if (!isUuid(n.uuid)) return invalidArgument("uuid: " + quote(n.uuid) + " is not a UUID");
  if (!n.bridge.empty()) {
    if (auto st = validateIfName(n.bridge); !st.ok()) return st.error().wrap("bridge");
  }
  if (n.mode == NetworkMode::bridge) {
    if (n.bridge.empty()) return invalidArgument("bridge: required for a network of mode bridge (an existing host bridge)");
    if (!n.ipv4.empty()) return invalidArgument("ipv4: a network of mode bridge uses the host bridge's own addressing");
  }
  if (n.mtu != 0 && n.mtu < 68) return invalidArgument("mtu: must be at least 68");
  if (!n.uplink.empty()) {
    if (n.mode != NetworkMode::nat && n.mode != NetworkMode::routed)
      return invalidArgument("uplink: only nat and routed networks have an uplink");
    if (auto st = validateIfName(n.uplink); !st.ok()) return st.error().wrap("uplink");
  }
  if (!n.domain.empty()) {
    for (const auto& label : split(n.domain, '.')) {
      if (auto st = validateName(label, "DNS label"); !st.ok()) return st.error().wrap("domain");
    }
  }
  for (const auto& [k, v] : n.labels)
    if (auto st = validateLabel(k, v); !st.ok()) return st.error().wrap("labels");

  if (n.ipv4.empty()) {
    if (n.mode == NetworkMode::nat || n.mode == NetworkMode::routed)
      return invalidArgument("ipv4: a " + std::string(enumName(kNetworkModes, n.mode)) +
                             " network needs a subnet, e.g. \"10.70.0.1/24\"");
    if (!n.dhcpHosts.empty() || !n.dhcpStart.empty()) return invalidArgument("dhcp: needs ipv4");
    n.dhcp = false;
    return n;
  }
  auto cidrRes = parseCidr(n.ipv4);
  if (!cidrRes.ok()) return cidrRes.error().wrap("ipv4");
  Cidr cidr = *cidrRes;
  if (cidr.address.v6) return invalidArgument("ipv4: " + quote(n.ipv4) + " is not an IPv4 subnet");
  if (cidr.prefix < 8 || cidr.prefix > 30) return invalidArgument("ipv4: prefix length must be between 8 and 30");
  uint32_t net = cidr.network().v4(), bcast = cidr.broadcast().v4(), gw = cidr.address.v4();
  if (gw == net || gw == bcast)
    return invalidArgument("ipv4: " + quote(n.ipv4) + " is the network or broadcast address; give the gateway, e.g. " +
                           IpAddress::fromV4(net + 1).toString() + "/" + std::to_string(cidr.prefix));
  auto inSubnet = [&](const std::string& field, const std::string& text) -> Result<uint32_t> {
    auto ip = parseIp(text);
    if (!ip.ok()) return ip.error().wrap(field);
    if (ip->v6 || !cidr.contains(*ip)) return invalidArgument(field + ": " + text + " is outside " + cidr.network().toString() + "/" + std::to_string(cidr.prefix));
    uint32_t v = ip->v4();
    if (v == net || v == bcast) return invalidArgument(field + ": " + text + " is the network or broadcast address");
    if (v == gw) return invalidArgument(field + ": " + text + " is the gateway address");
    return v;
  };
  if (n.dhcp) {
    uint32_t size = bcast - net;
    uint32_t half = net + (size + 1) / 2;
    if (half == gw) ++half;
    if (n.dhcpStart.empty()) n.dhcpStart = IpAddress::fromV4(half).toString();
    if (n.dhcpEnd.empty()) n.dhcpEnd = IpAddress::fromV4(bcast - 1).toString();
    VMM_ASSIGN(uint32_t s, inSubnet("dhcp.start", n.dhcpStart));
    VMM_ASSIGN(uint32_t e, inSubnet("dhcp.end", n.dhcpEnd));
    if (s > e) return invalidArgument("dhcp: start " + n.dhcpStart + " is after end " + n.dhcpEnd);
  }
  std::set<std::string> macs, ips;
  for (size_t i = 0; i < n.dhcpHosts.size(); ++i) {
    auto& h = n.dhcpHosts[i];
    std::string field = "dhcp.hosts[" + std::to_string(i) + "]";
    auto m = normalizeMac(h.mac);
    if (!m.ok()) return m.error().wrap(field + ".mac");
    h.mac = *m;
    auto ip = inSubnet(field + ".ip", h.ip);
    if (!ip.ok()) return ip.takeError();
    if (!macs.insert(h.mac).second) return invalidArgument(field + ".mac: " + h.mac + " is listed twice");
    if (!ips.insert(h.ip).second) return invalidArgument(field + ".ip: " + h.ip + " is listed twice");
    if (!h.name.empty()) {
      if (auto st = validateName(h.name, "host name"); !st.ok()) return st.error().wrap(field + ".name");
    }
  }
  return n;
}

json formatNetwork(const Network& n) {
  json j = {{"name", n.name}, {"uuid", n.uuid}, {"mode", enumName(kNetworkModes, n.mode)}};
  if (!n.bridge.empty()) j["bridge"] = n.bridge;
  if (n.mtu) j["mtu"] = n.mtu;
  if (!n.ipv4.empty()) {
    j["ipv4"] = n.ipv4;
    json hosts = json::array();
    for (const auto& h : n.dhcpHosts) {
      json hj = {{"mac", h.mac}, {"ip", h.ip}};
      if (!h.name.empty()) hj["name"] = h.name;
      hosts.push_back(hj);
    }
    json d = {{"enabled", n.dhcp}, {"lease_seconds", n.leaseSeconds}, {"hosts", hosts}};
    if (n.dhcp) {
      d["start"] = n.dhcpStart;
      d["end"] = n.dhcpEnd;
    }
    j["dhcp"] = d;
  }
  if (!n.domain.empty()) j["domain"] = n.domain;
  if (!n.uplink.empty()) j["uplink"] = n.uplink;
  j["autostart"] = n.autostart;
  j["labels"] = n.labels;
  return j;
}

}  // namespace vmm::model
