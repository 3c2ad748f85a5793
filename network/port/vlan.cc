#include "network/port/vlan.h"

#include <unistd.h>

#include <optional>

#include "base/json_util.h"
#include "base/mutex.h"
#include "base/process.h"
#include "base/strings.h"
#include "network/link.h"
#include "network/port/nft_exec.h"
#include "network/port/port_names.h"
#include "network/port/port_sysfs.h"

namespace vmm::net {
namespace {

// Serialises read-modify-write edits of the per-bridge VLAN tables (one short nft call each).
Mutex& vlanTableMutex() {
  static Mutex m;
  return m;
}

Result<VlanMethod> probeVlanFiltering(Deadline deadline) {
  std::string scratch = "vmmvlp" + std::to_string(::getpid() % 10000000);
  VMM_ASSIGN(auto add, runCommand({"ip", "link", "add", "name", scratch, "type", "bridge", "vlan_filtering", "1"}, deadline));
  if (!add.success()) return VlanMethod::nftPortSets;
  auto vlan = runCommand({"bridge", "vlan", "add", "dev", scratch, "vid", "2", "self"}, deadline);
  auto del = runCommand({"ip", "link", "del", "dev", scratch}, deadline);
  if (!vlan.ok()) return vlan.error();
  if (!del.ok() || !del->success()) return internalError("deleting the VLAN probe bridge " + scratch);
  return vlan->success() ? VlanMethod::bridgeVlanFiltering : VlanMethod::nftPortSets;
}

// ---- nft-port-sets

std::string portChain(const std::string& ifname) { return "port_" + nftEncode(ifname); }

std::string addPortSetsScript(const PortSpec& spec) {
  std::string t = "bridge " + vlanTableName(spec.bridge);
  std::string chain = portChain(spec.ifname);
  std::string port = "\"" + spec.ifname + "\"";
  auto vlans = vlanMembership(*spec.profile.vlan);
  std::string s = "add table " + t + "\n";
  s += "add set " + t + " members { type ifname; }\n";
  s += "add set " + t + " v1 { type ifname; }\n";
  s += "add map " + t + " ports { type ifname : verdict; }\n";
  s += "add chain " + t + " hook_forward { type filter hook forward priority -10; policy accept; }\n";
  s += "flush chain " + t + " hook_forward\n";
  s += "add rule " + t + " hook_forward iifname vmap @ports\n";
  s += "add rule " + t + " hook_forward oifname @members oifname != @v1 counter drop\n";
  s += "add chain " + t + " " + chain + "\n";
  s += "flush chain " + t + " " + chain + "\n";
  for (int v : vlans) {
    s += "add set " + t + " v" + std::to_string(v) + " { type ifname; }\n";
    s += "add rule " + t + " " + chain + " oifname @v" + std::to_string(v) + " accept\n";
    s += "add element " + t + " v" + std::to_string(v) + " { " + port + " }\n";
  }
  if (vlans.count(1)) s += "add rule " + t + " " + chain + " oifname != @members accept\n";
  s += "add rule " + t + " " + chain + " counter drop\n";
  s += "add element " + t + " members { " + port + " }\n";
  s += "add element " + t + " ports { " + port + " : goto " + chain + " }\n";
  return s;
}

bool elemHas(const nlohmann::json& elems, const std::string& ifname) {
  if (!elems.is_array()) return false;
  for (const auto& e : elems) {
    if (e.is_string() && e.get<std::string>() == ifname) return true;
    if (e.is_array() && !e.empty() && e[0].is_string() && e[0].get<std::string>() == ifname) return true;
  }
  return false;
}

// The script removing the given ports from a VLAN table listing (the whole table when no
// member remains), or "" when none of them is in it.
std::string removeMembersScript(const std::string& table, const nlohmann::json& items, const std::set<std::string>& ports) {
  std::string t = "bridge " + table;
  std::string s;
  size_t members = 0, removedMembers = 0;
  for (const auto& item : items) {
    const nlohmann::json* obj = nullptr;
    if (item.contains("set")) obj = &item["set"];
    if (item.contains("map")) obj = &item["map"];
    if (obj && obj->value("name", "") == "members" && obj->contains("elem")) members = (*obj)["elem"].size();
    if (obj && obj->contains("elem")) {
      for (const auto& p : ports) {
        if (!elemHas((*obj)["elem"], p)) continue;
        std::string name = obj->value("name", "");
        if (name == "members") ++removedMembers;
        s += "delete element " + t + " " + name + " { \"" + p + "\" }\n";
      }
    }
  }
  for (const auto& item : items) {
    if (!item.contains("chain")) continue;
    std::string name = item["chain"].value("name", "");
    for (const auto& p : ports)
      if (name == portChain(p)) s += "delete chain " + t + " " + name + "\n";
  }
  if (!s.empty() && removedMembers == members) return deleteBridgeTableLines(table);
  return s;
}

Status removeFromPortSets(const std::string& bridge, const std::set<std::string>& ports, Deadline deadline) {
  std::string table = vlanTableName(bridge);
  MutexLock lock(vlanTableMutex());
  VMM_ASSIGN(auto listing, listBridgeTable(table, deadline));
  if (!listing) return {};
  std::string script = removeMembersScript(table, *listing, ports);
  if (script.empty()) return {};
  return runNftScript(script, deadline);
}

// ---- bridge VLAN filtering (hosts with 802.1Q; not available on the test machine)

Status addFilteringVlans(const PortSpec& spec, Deadline deadline) {
  VMM_ASSIGN(auto on, runCommand({"ip", "link", "set", "dev", spec.bridge, "type", "bridge", "vlan_filtering", "1"}, deadline));
  if (!on.success()) return internalError("enabling vlan_filtering on " + spec.bridge + ": " + on.describe());
  const auto& v = *spec.profile.vlan;
  std::string batch = "vlan del dev " + spec.ifname + " vid 1\n";
  if (v.mode == model::VlanMode::access) {
    batch += "vlan add dev " + spec.ifname + " vid " + std::to_string(v.tag) + " pvid untagged\n";
  } else {
    for (int t : std::set<int>(v.tags.begin(), v.tags.end()))
      if (!v.native || t != *v.native) batch += "vlan add dev " + spec.ifname + " vid " + std::to_string(t) + "\n";
    if (v.native) batch += "vlan add dev " + spec.ifname + " vid " + std::to_string(*v.native) + " pvid untagged\n";
  }
  VMM_ASSIGN(auto r, runCommand({"bridge", "-batch", "-"}, deadline, batch));
  if (!r.success()) return internalError("bridge vlan on " + spec.ifname + ": " + r.describe());
  return {};
}

Status resetFilteringVlans(const PortSpec& spec, Deadline deadline) {
  if (bridgeOf(spec.ifname).empty()) return {};
  VMM_ASSIGN(auto list, runCommand({"bridge", "-j", "vlan", "show", "dev", spec.ifname}, deadline));
  if (!list.success()) return {};  // no VLAN support: nothing was set
  auto doc = parseJson(list.out, kToolJsonMaxBytes, kJsonMaxDepth, "output");
  std::string batch;
  if (doc.ok() && doc->is_array()) {
    for (const auto& port : *doc) {
      const nlohmann::json* vlans = jsonMember(port, "vlans");
      if (!vlans || !vlans->is_array()) continue;
      for (const auto& v : *vlans) {
        int64_t id = jsonIntOr(v, "vlan", 0);
        if (id > 0 && id < 4095) batch += "vlan del dev " + spec.ifname + " vid " + std::to_string(id) + "\n";
      }
    }
  }
  batch += "vlan add dev " + spec.ifname + " vid 1 pvid untagged\n";
  VMM_ASSIGN(auto r, runCommand({"bridge", "-force", "-batch", "-"}, deadline, batch));
  (void)r;  // best effort: the port keeps working in VLAN 1 either way
  return {};
}

}  // namespace

std::string_view vlanMethodName(VlanMethod method) {
  return method == VlanMethod::bridgeVlanFiltering ? "bridge-vlan-filtering" : "nft-port-sets";
}

Result<VlanMethod> detectVlanMethod(Deadline deadline) {
  static Mutex m;
  static std::optional<VlanMethod> cached VMM_GUARDED_BY(m);
  MutexLock lock(m);  // callers of a first probe wait for its answer
  if (cached) return *cached;
  VMM_ASSIGN(VlanMethod method, probeVlanFiltering(deadline));
  cached = method;
  return method;
}

Status checkVlan(const model::Vlan& vlan) {
  auto check = [](int id, const std::string& what) -> Status {
    if (id < 1 || id > 4094) return invalidArgument(what + " " + std::to_string(id) + " is not a VLAN id (1..4094)");
    return {};
  };
  if (vlan.mode == model::VlanMode::access) return check(vlan.tag, "vlan.tag");
  if (vlan.tags.empty()) return invalidArgument("vlan: a trunk needs at least one tag");
  for (int t : vlan.tags) VMM_TRY(check(t, "vlan.tags:"));
  if (vlan.native) VMM_TRY(check(*vlan.native, "vlan.native"));
  return {};
}

std::set<int> vlanMembership(const model::Vlan& vlan) {
  if (vlan.mode == model::VlanMode::access) return {vlan.tag};
  std::set<int> s(vlan.tags.begin(), vlan.tags.end());
  if (vlan.native) s.insert(*vlan.native);
  return s;
}

Status addPortVlan(VlanMethod method, const PortSpec& spec, Deadline deadline) {
  if (method == VlanMethod::bridgeVlanFiltering) return addFilteringVlans(spec, deadline);
  MutexLock lock(vlanTableMutex());
  return runNftScript(addPortSetsScript(spec), deadline);
}

Status removePortVlan(const PortSpec& spec, Deadline deadline) {
  if (spec.bridge.empty()) return {};
  VMM_TRY(removeFromPortSets(spec.bridge, {spec.ifname}, deadline));
  auto method = detectVlanMethod(deadline);
  if (method.ok() && *method == VlanMethod::bridgeVlanFiltering && spec.profile.vlan)
    VMM_TRY(resetFilteringVlans(spec, deadline));
  return {};
}

Result<std::vector<std::string>> orphanVlanState(bool remove, Deadline deadline) {
  std::vector<std::string> found;
  VMM_ASSIGN(auto tables, listBridgeTables(kVlanTablePrefix, deadline));
  for (const auto& table : tables) {
    auto bridge = nftDecode(std::string_view(table).substr(kVlanTablePrefix.size()));
    if (!bridge || !isBridge(*bridge)) {
      found.push_back("nft table bridge " + table);
      if (remove) VMM_TRY(runNftScript(deleteBridgeTableLines(table), deadline));
      continue;
    }
    VMM_ASSIGN(auto listing, listBridgeTable(table, deadline));
    if (!listing) continue;
    std::set<std::string> gone;
    for (const auto& item : *listing) {
      if (!item.contains("set") || item["set"].value("name", "") != "members" || !item["set"].contains("elem")) continue;
      for (const auto& e : item["set"]["elem"])
        if (e.is_string() && bridgeOf(e.get<std::string>()) != *bridge) gone.insert(e.get<std::string>());
    }
    for (const auto& p : gone) found.push_back("nft VLAN member " + p + " of bridge table " + table);
    if (remove && !gone.empty()) VMM_TRY(removeFromPortSets(*bridge, gone, deadline));
  }
  return found;
}

}  // namespace vmm::net
