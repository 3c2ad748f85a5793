#include "network/port/nft_exec.h"

#include "base/json_util.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::net {

Status runNftScript(const std::string& script, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  opts.stdinData = script;
  VMM_ASSIGN(auto r, runCommand({"nft", "-f", "-"}, opts));
  if (!r.success()) return internalError("nft: " + r.describe());
  return {};
}

Result<std::optional<nlohmann::json>> listBridgeTable(const std::string& table, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  VMM_ASSIGN(auto r, runCommand({"nft", "-j", "list", "table", "bridge", table}, opts));
  if (!r.success()) {
    if (r.err.find("No such file or directory") != std::string::npos) return std::optional<nlohmann::json>();
    return internalError("nft list table bridge " + table + ": " + r.describe());
  }
  auto doc = parseJson(r.out, kToolJsonMaxBytes, kJsonMaxDepth, "output");
  const nlohmann::json* items = doc.ok() ? jsonMember(*doc, "nftables") : nullptr;
  if (!items || !items->is_array()) return internalError("nft list table bridge " + table + ": unexpected JSON output");
  return std::optional<nlohmann::json>(*items);
}

Result<std::vector<std::string>> listBridgeTables(std::string_view prefix, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  VMM_ASSIGN(auto r, runChecked({"nft", "-j", "list", "tables", "bridge"}, opts));
  auto doc = parseJson(r.out, kToolJsonMaxBytes, kJsonMaxDepth, "output");
  const nlohmann::json* items = doc.ok() ? jsonMember(*doc, "nftables") : nullptr;
  if (!items || !items->is_array()) return internalError("nft list tables: unexpected JSON output");
  std::vector<std::string> names;
  for (const auto& item : *items) {
    const nlohmann::json* table = jsonMember(item, "table");
    if (!table) continue;
    std::string name = jsonStringOr(*table, "name", "");
    if (startsWith(name, prefix)) names.push_back(name);
  }
  return names;
}

std::string deleteBridgeTableLines(const std::string& table) {
  return "add table bridge " + table + "\ndelete table bridge " + table + "\n";
}

}  // namespace vmm::net
