#include "storage/logical/lvm_command.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/json_util.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::storage {

namespace {

using json = nlohmann::json;

// activation=0: LVs are never activated (no device-mapper here), and nothing waits on it.
// report_command_log=1: errors arrive as JSON entries next to the report.
constexpr const char* kConfig = "global/activation=0 log/report_command_log=1";

// Root's PATH has /usr/sbin, a daemon's may not.
std::string lvmBinary() {
  for (const char* p : {"/usr/sbin/lvm", "/sbin/lvm"})
    if (::access(p, X_OK) == 0) return p;
  return "lvm";
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// The error code a caller can act on, from lvm2's message.
Error classify(const std::string& tool, int exitCode, const std::string& message) {
  std::string text = tool + ": " + message;
  if (contains(message, "not found") || contains(message, "Failed to find")) return notFound(text);
  if (contains(message, "already exists")) return conflict(text);
  if (contains(message, "nsufficient")) return invalidArgument(text);  // free space, contiguous extents
  if (exitCode == 3) return invalidArgument(text);  // lvm2's "invalid command line"
  return internalError(text);
}

// stderr text for the rare failures that stop before JSON output (bad arguments).
std::string stderrMessage(const std::string& err) {
  std::vector<std::string> lines;
  for (const auto& line : split(err, '\n', true)) {
    std::string t(trim(line));
    if (t.empty() || startsWith(t, "WARNING: Activation disabled") || startsWith(t, "Run `")) continue;
    lines.push_back(t);
  }
  return lines.empty() ? "" : join(lines, "; ");
}

}  // namespace

std::string stripTrailingCommas(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') inString = false;
      continue;
    }
    if (c == '"') inString = true;
    if (c == ',') {
      size_t j = i + 1;
      while (j < text.size() && (text[j] == ' ' || text[j] == '\n' || text[j] == '\t' || text[j] == '\r')) ++j;
      if (j < text.size() && (text[j] == ']' || text[j] == '}')) continue;
    }
    out += c;
  }
  return out;
}

LvmReport parseLvmReport(std::string_view text) {
  LvmReport out;
  // A confirmation prompt (answered "n" from the closed stdin) may precede the JSON.
  size_t start = text.find('{');
  if (start == std::string_view::npos) return out;
  auto parsed = parseJson(stripTrailingCommas(text.substr(start)), kToolJsonMaxBytes);
  if (!parsed.ok() || !parsed->is_object()) return out;
  const json& doc = *parsed;
  out.parsed = true;
  const json* log = jsonMember(doc, "log");
  if (log && log->is_array())
    for (const auto& entry : *log)
      if (jsonStringOr(entry, "log_type", "") == "error") out.errors.push_back(jsonStringOr(entry, "log_message", ""));
  const json* reports = jsonMember(doc, "report");
  for (const auto& report : reports && reports->is_array() ? *reports : json::array()) {
    if (!report.is_object()) continue;
    for (const auto& [kind, rows] : report.items()) {
      if (!rows.is_array()) continue;
      for (const auto& r : rows) {
        if (!r.is_object()) continue;
        LvmRow row;
        for (const auto& [k, v] : r.items()) row[k] = v.is_string() ? v.get<std::string>() : dumpJson(v);
        out.rows.push_back(std::move(row));
      }
    }
  }
  return out;
}

Result<uint64_t> lvmNumber(const LvmRow& row, const std::string& field) {
  auto it = row.find(field);
  if (it == row.end() || it->second.empty()) return internalError("lvm2 report has no value for " + field);
  auto v = parseUint(it->second);
  if (!v) return internalError("lvm2 report: " + field + " is not a number: " + quote(it->second));
  return *v;
}

std::string lvmField(const LvmRow& row, const std::string& field) {
  auto it = row.find(field);
  return it == row.end() ? std::string() : it->second;
}

Result<LvmCommand::Output> LvmCommand::run(const std::string& tool, const std::vector<std::string>& args, Deadline deadline) const {
  std::vector<std::string> argv{lvmBinary(), tool};
  for (const auto& d : devices_) {
    argv.push_back("--devices");
    argv.push_back(d);
  }
  argv.insert(argv.end(), {"--config", kConfig, "--reportformat", "json"});
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions opts;
  opts.deadline = deadline;
  opts.env["LVM_SUPPRESS_FD_WARNINGS"] = "1";
  opts.env["LC_ALL"] = "C";
  auto ran = runCommand(argv, opts);
  if (!ran.ok() && ran.error().code == ErrorCode::timeout) return timeoutError(tool + " (lvm2) did not finish before its deadline and was killed");
  if (!ran.ok()) return ran.error().wrap(tool);
  const CommandResult& res = *ran;

  Output out;
  out.exitCode = res.exitCode;
  LvmReport report = parseLvmReport(res.out);
  out.rows = std::move(report.rows);
  out.errors = std::move(report.errors);
  if (res.exitCode != 0) {
    std::string message = !out.errors.empty() ? out.errors.front() : stderrMessage(res.err);
    if (message.empty()) message = res.describe();
    return classify(tool, res.exitCode, message);
  }
  if (!report.parsed) return internalError(tool + ": unreadable JSON output from lvm2");
  return out;
}

Status LvmCommand::change(const std::string& tool, const std::vector<std::string>& args, Deadline deadline) const {
  VMM_TRY(run(tool, args, deadline));
  return {};
}

Result<std::vector<LvmRow>> LvmCommand::report(const std::string& tool, const std::string& fields, const std::vector<std::string>& args,
                                               Deadline deadline) const {
  std::vector<std::string> all{"--units", "b", "--nosuffix", "-o", fields};
  all.insert(all.end(), args.begin(), args.end());
  VMM_ASSIGN(auto out, run(tool, all, deadline));
  return std::move(out.rows);
}

}  // namespace vmm::storage
