#include "network/port/port_profile.h"

#include <dirent.h>

#include <algorithm>
#include <map>
#include <optional>

#include "base/reverter.h"
#include "base/strings.h"
#include "network/link.h"
#include "network/port/nft_exec.h"
#include "network/port/nft_port_rules.h"
#include "network/port/port_names.h"
#include "network/port/port_sysfs.h"
#include "network/port/port_tc.h"
#include "network/port/vlan.h"

namespace vmm::net {
namespace {

// Everything that can be checked without changing the host: the input first, then the links.
Status checkSpec(const PortSpec& spec) {
  const auto& p = spec.profile;
  VMM_TRY(checkIfname(spec.ifname, "port"));
  if (p.vlan) VMM_TRY(checkVlan(*p.vlan));
  if (p.inbound) VMM_TRY(checkBandwidth(*p.inbound, "inbound"));
  if (p.outbound) VMM_TRY(checkBandwidth(*p.outbound, "outbound"));
  VMM_TRY(checkAclAndSpoof(spec));
  if (!linkExists(spec.ifname)) return notFound("port " + quote(spec.ifname) + " does not exist");
  if (p.vlan || p.isolated) {
    VMM_TRY(checkIfname(spec.bridge, "bridge"));
    if (bridgeOf(spec.ifname) != spec.bridge)
      return invalidArgument("port " + quote(spec.ifname) + " is not a port of bridge " + quote(spec.bridge) +
                             " (needed for vlan/isolated)");
  }
  if (!p.mirrorTo.empty()) {
    VMM_TRY(checkIfname(p.mirrorTo, "mirrorTo"));
    if (p.mirrorTo == spec.ifname || p.mirrorTo == ifbNameFor(spec.ifname))
      return invalidArgument("mirrorTo " + quote(p.mirrorTo) + " is the port itself");
    if (!linkExists(p.mirrorTo)) return notFound("mirror device " + quote(p.mirrorTo) + " does not exist");
  }
  return {};
}

// Removal steps run in full even when one fails; the first error is reported.
void keepFirst(Status& first, Status next) {
  if (first.ok() && !next.ok()) first = std::move(next);
}

std::vector<std::string> linkNames() {
  std::vector<std::string> names;
  DIR* d = ::opendir("/sys/class/net");
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

Result<std::vector<std::string>> orphans(bool remove, Deadline deadline) {
  std::vector<std::string> found;
  VMM_ASSIGN(auto tables, listBridgeTables(kPortTablePrefix, deadline));
  for (const auto& table : tables) {
    auto port = nftDecode(std::string_view(table).substr(kPortTablePrefix.size()));
    if (port && linkExists(*port)) continue;
    found.push_back("nft table bridge " + table);
    if (remove) VMM_TRY(runNftScript(deleteBridgeTableLines(table), deadline));
  }
  for (const auto& name : linkNames()) {
    std::string alias = linkAlias(name);
    if (!startsWith(alias, kIfbAliasPrefix)) continue;
    std::string port = alias.substr(kIfbAliasPrefix.size());
    if (linkExists(port)) continue;
    found.push_back("ifb " + name + " of gone port " + port);
    if (remove) VMM_TRY(removePortTc(port, deadline));
  }
  VMM_ASSIGN(auto vlan, orphanVlanState(remove, deadline));
  found.insert(found.end(), vlan.begin(), vlan.end());
  return found;
}

}  // namespace

Status applyPort(const PortSpec& spec, Deadline deadline) {
  if (spec.profile.empty()) return checkIfname(spec.ifname, "port");
  VMM_TRY(checkSpec(spec));
  std::string table;
  if (needsPortTable(spec.profile)) {
    VMM_ASSIGN(table, renderPortTable(spec));
  }
  std::optional<VlanMethod> vlanMethod;
  if (spec.profile.vlan) {
    VMM_ASSIGN(vlanMethod, detectVlanMethod(deadline));
  }

  // Start from a clean port (replaces a previous profile); undo = remove everything.
  VMM_TRY(removePort(spec, deadline));
  Reverter revert;
  // The undo gets its own deadline: it must run even when the operation's one has passed.
  revert.add([&] { (void)removePort(spec, Deadline::after(Millis(10000))); });
  if (!table.empty()) VMM_TRY(runNftScript(table, deadline));
  if (vlanMethod) VMM_TRY(addPortVlan(*vlanMethod, spec, deadline));
  if (needsTc(spec.profile)) VMM_TRY(applyPortTc(spec, deadline));
  if (spec.profile.isolated) VMM_TRY(setBridgePortFlag(spec.ifname, "isolated", true));
  revert.success();
  return {};
}

Status removePort(const PortSpec& spec, Deadline deadline) {
  VMM_TRY(checkIfname(spec.ifname, "port"));
  Status first;
  keepFirst(first, runNftScript(deleteBridgeTableLines(portTableName(spec.ifname)), deadline));
  if (!spec.bridge.empty() && checkIfname(spec.bridge, "bridge").ok()) keepFirst(first, removePortVlan(spec, deadline));
  keepFirst(first, removePortTc(spec.ifname, deadline));
  if (bridgePortFlag(spec.ifname, "isolated").value_or(false))
    keepFirst(first, setBridgePortFlag(spec.ifname, "isolated", false));
  return first;
}

Result<PortStats> portStats(const std::string& ifname, Deadline deadline) {
  VMM_TRY(checkIfname(ifname, "port"));
  if (!linkExists(ifname)) return notFound("port " + quote(ifname) + " does not exist");
  PortStats s;
  auto stat = [&](const char* name) { return linkStatistic(ifname, name).value_or(0); };
  s.fromGuest = {stat("rx_bytes"), stat("rx_packets"), stat("rx_dropped")};
  s.toGuest = {stat("tx_bytes"), stat("tx_packets"), stat("tx_dropped")};
  VMM_ASSIGN(auto listing, listBridgeTable(portTableName(ifname), deadline));
  if (!listing) return s;
  std::map<std::string, RuleCounter> byName;
  for (const auto& item : *listing) {
    if (!item.contains("rule")) continue;
    const auto& rule = item["rule"];
    std::string comment = rule.value("comment", "");
    if (comment.empty() || !rule.contains("expr")) continue;
    for (const auto& e : rule["expr"]) {
      if (!e.contains("counter")) continue;
      auto& c = byName[comment];
      c.rule = comment;
      c.packets += e["counter"].value("packets", uint64_t{0});
      c.bytes += e["counter"].value("bytes", uint64_t{0});
    }
  }
  // "acl 2" before "acl 10": order by index, then "spoof".
  std::vector<RuleCounter> acl, other;
  for (auto& [name, c] : byName) (startsWith(name, "acl ") ? acl : other).push_back(c);
  std::sort(acl.begin(), acl.end(), [](const RuleCounter& a, const RuleCounter& b) {
    return parseInt(a.rule.substr(4)).value_or(0) < parseInt(b.rule.substr(4)).value_or(0);
  });
  s.rules = std::move(acl);
  s.rules.insert(s.rules.end(), other.begin(), other.end());
  return s;
}

Result<std::vector<std::string>> orphanPortState(Deadline deadline) { return orphans(false, deadline); }

Status cleanupOrphanPortState(Deadline deadline) {
  VMM_ASSIGN(auto removed, orphans(true, deadline));
  (void)removed;
  return {};
}

}  // namespace vmm::net
