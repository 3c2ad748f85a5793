#include "network/virtual/nftables.h"

#include "base/json_util.h"
#include "base/process.h"
#include "base/strings.h"
#include "model/net_addr.h"

namespace vmm::net::nft {

namespace {

json matchEq(json left, json right, const char* op = "==") {
  return {{"match", {{"op", op}, {"left", std::move(left)}, {"right", std::move(right)}}}};
}
json meta(const char* key) { return {{"meta", {{"key", key}}}}; }
json ipField(const char* field) { return {{"payload", {{"protocol", "ip"}, {"field", field}}}}; }
json verdict(const char* v) { return {{v, nullptr}}; }

Result<json> prefixOf(const std::string& cidr) {
  VMM_ASSIGN(auto c, model::parseCidr(cidr));
  return json{{"prefix", {{"addr", c.network().toString()}, {"len", c.prefix}}}};
}

Status checkOwned(const std::string& name) {
  if (!startsWith(name, kOwnedTablePrefix) || name.size() == kOwnedTablePrefix.size())
    return invalidArgument("nftables table " + quote(name) + " is not owned by vmm");
  return {};
}

}  // namespace

std::string tableNameFor(const std::string& networkName) { return std::string(kOwnedTablePrefix) + networkName; }

json networkTableBatch(const NetworkRules& r) {
  using model::NetworkMode;
  json cmds = json::array();
  cmds.push_back({{"create", {{"table", {{"family", "ip"}, {"name", r.table}}}}}});
  auto chain = [&](const char* name, const char* type, const char* hook, int prio) {
    cmds.push_back({{"add", {{"chain", {{"family", "ip"}, {"table", r.table}, {"name", name}, {"type", type},
                                        {"hook", hook}, {"prio", prio}, {"policy", "accept"}}}}}});
  };
  auto rule = [&](const char* chainName, json expr) {
    cmds.push_back({{"add", {{"rule", {{"family", "ip"}, {"table", r.table}, {"chain", chainName}, {"expr", std::move(expr)}}}}}});
  };
  json subnet = r.subnet.empty() ? json() : prefixOf(r.subnet).valueOr(json());
  json fromBridge = matchEq(meta("iifname"), r.bridge);
  json toBridge = matchEq(meta("oifname"), r.bridge);
  json toUplink = r.uplink.empty() ? json() : matchEq(meta("oifname"), r.uplink);
  json fromUplink = r.uplink.empty() ? json() : matchEq(meta("iifname"), r.uplink);

  // Filter: the policy stays accept so traffic of other interfaces is never affected here;
  // every drop names this network's bridge.
  chain("forward", "filter", "forward", 0);
  // Guest to guest on the bridge: with br_netfilter (bridge-nf-call-iptables=1) bridged
  // frames pass this hook with the bridge as both input and output.
  rule("forward", json::array({fromBridge, toBridge, verdict("accept")}));
  if (r.mode == NetworkMode::nat || r.mode == NetworkMode::routed) {
    json out = json::array({fromBridge});
    if (!subnet.is_null()) out.push_back(matchEq(ipField("saddr"), subnet));
    if (!toUplink.is_null()) out.push_back(toUplink);
    out.push_back(verdict("accept"));
    rule("forward", out);
    json in = json::array({toBridge});
    if (!subnet.is_null()) in.push_back(matchEq(ipField("daddr"), subnet));
    if (!fromUplink.is_null()) in.push_back(fromUplink);
    // NAT: only replies reach the guests; routed: the subnet is reachable from the uplink.
    if (r.mode == NetworkMode::nat) in.push_back(matchEq(json{{"ct", {{"key", "state"}}}}, json::array({"established", "related"}), "in"));
    in.push_back(verdict("accept"));
    rule("forward", in);
  }
  rule("forward", json::array({fromBridge, verdict("drop")}));
  rule("forward", json::array({toBridge, verdict("drop")}));

  if (r.mode == NetworkMode::nat && !subnet.is_null()) {
    chain("postrouting", "nat", "postrouting", 100);
    // Multicast and broadcast leave unchanged (they never go through a router anyway).
    json src = matchEq(ipField("saddr"), subnet);
    rule("postrouting", json::array({src, matchEq(ipField("daddr"), json{{"prefix", {{"addr", "224.0.0.0"}, {"len", 24}}}}), verdict("return")}));
    rule("postrouting", json::array({src, matchEq(ipField("daddr"), "255.255.255.255"), verdict("return")}));
    json masq = json::array({src, matchEq(ipField("daddr"), subnet, "!=")});
    masq.push_back(toUplink.is_null() ? matchEq(meta("oifname"), r.bridge, "!=") : toUplink);
    masq.push_back(verdict("masquerade"));
    rule("postrouting", masq);
  }
  return json{{"nftables", cmds}};
}

Status runBatch(const json& batch, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  opts.stdinData = batch.dump();
  VMM_ASSIGN(auto res, runCommand({"nft", "-j", "-f", "-"}, opts));
  if (!res.success()) return internalError("nft: " + res.describe());
  return {};
}

Result<json> listJson(const std::vector<std::string>& args, Deadline deadline) {
  std::vector<std::string> argv = {"nft", "-j"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions opts;
  opts.deadline = deadline;
  VMM_ASSIGN(auto res, runCommand(argv, opts));
  if (!res.success()) return internalError(join(argv, " ") + ": " + res.describe());
  auto j = parseJson(res.out, kToolJsonMaxBytes, kJsonMaxDepth, "output");
  if (!j.ok()) return internalError(join(argv, " ") + ": " + j.error().message);
  if (!j->is_object()) return internalError(join(argv, " ") + ": output is not a JSON object");
  return j;
}

Status createNetworkTable(const NetworkRules& rules, Deadline deadline) {
  VMM_TRY(checkOwned(rules.table));
  if (!rules.subnet.empty()) VMM_TRY(model::parseCidr(rules.subnet));
  auto st = runBatch(networkTableBatch(rules), deadline);
  if (!st.ok()) return st.error().wrap("creating nftables table " + rules.table);
  return {};
}

Status deleteOwnedTable(const std::string& name, Deadline deadline) {
  VMM_TRY(checkOwned(name));
  // "add" then "delete" in one transaction: deleting a table that is already gone is no error.
  json table = {{"family", "ip"}, {"name", name}};
  json batch = {{"nftables", json::array({{{"add", {{"table", table}}}}, {{"delete", {{"table", table}}}}})}};
  auto st = runBatch(batch, deadline);
  if (!st.ok()) return st.error().wrap("deleting nftables table " + name);
  return {};
}

Result<std::vector<std::string>> listOwnedTables(Deadline deadline) {
  VMM_ASSIGN(json j, listJson({"list", "tables", "ip"}, deadline));
  std::vector<std::string> out;
  if (!j.contains("nftables") || !j["nftables"].is_array()) return out;
  for (const auto& item : j["nftables"]) {
    if (!item.is_object() || !item.contains("table")) continue;
    const auto& t = item["table"];
    std::string name = t.value("name", "");
    if (t.value("family", "") == "ip" && startsWith(name, kOwnedTablePrefix)) out.push_back(name);
  }
  return out;
}

}  // namespace vmm::net::nft
