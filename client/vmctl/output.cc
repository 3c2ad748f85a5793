#include "client/vmctl/output.h"

#include "base/base64.h"
#include "base/strings.h"
#include "client/vmctl/terminal_safe.h"
#include "model/project.h"
#include "model/units.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace vmm::vmctl {

namespace {

bool g_jsonOutput = false;

}  // namespace

bool jsonOutput() { return g_jsonOutput; }
void setJsonOutput(bool json) { g_jsonOutput = json; }

int exitCodeFor(const Error& e) {
  switch (e.code) {
    case ErrorCode::invalid_argument:
    case ErrorCode::payload_too_large: return kUsage;
    case ErrorCode::not_found: return kNotFound;
    case ErrorCode::conflict:
    case ErrorCode::precondition_failed: return kConflict;
    case ErrorCode::unauthenticated:
    case ErrorCode::permission_denied: return kDenied;
    case ErrorCode::timeout: return kTimeout;
    case ErrorCode::unsupported: return kUnsupported;
    case ErrorCode::unavailable: return e.message.find("cannot connect") != std::string::npos ||
                                               e.message.find("cannot reach") != std::string::npos
                                           ? kNoConnection
                                           : kUnsupported;
    case ErrorCode::cancelled: return kCancelled;
    case ErrorCode::internal: return kFailed;
  }
  return kFailed;
}

int reportError(const Error& e) {
  endProgress();
  std::cerr << "error: " << e.message << "\n";
  return exitCodeFor(e);
}

std::string absolutePath(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd)) return p;
  return std::string(cwd) + "/" + p;
}

std::string text(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

std::string timestampText(const json& v) {
  if (!v.is_string()) return "";
  std::string t = v.get<std::string>();
  return t.size() > 19 ? t.substr(0, 19) + "Z" : t;
}

std::string bytesOf(const json& obj, const std::string& key) {
  if (!obj.is_object()) return "";
  auto b64 = obj.find(key + "_b64");
  if (b64 != obj.end() && b64->is_string()) {
    auto bytes = base64Decode(b64->get<std::string>());
    if (bytes.ok()) return *bytes;
  }
  auto t = obj.find(key);
  return t != obj.end() && t->is_string() ? t->get<std::string>() : "";
}

static size_t displayWidth(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xc0) != 0x80) ++n;
  return n;
}

// Made safe before the widths are measured, so that the columns stay aligned.
static std::vector<std::string> safeCells(const std::vector<std::string>& cells) {
  std::vector<std::string> safe;
  safe.reserve(cells.size());
  for (const auto& c : cells) safe.push_back(terminalSafeLine(c));
  return safe;
}

void Table::print() const {
  std::vector<std::vector<std::string>> rows;
  rows.reserve(rows_.size());
  for (const auto& r : rows_) rows.push_back(safeCells(r));
  std::vector<size_t> width(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) width[i] = displayWidth(headers_[i]);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], displayWidth(r[i]));
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < headers_.size(); ++i) {
      std::string c = i < cells.size() ? cells[i] : "";
      out += c;
      if (i + 1 < headers_.size()) out += std::string(width[i] - displayWidth(c) + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::cout << out << "\n";
  };
  line(headers_);
  for (const auto& r : rows) line(r);
}

std::string entryProject(const json& entry, const std::string& key) {
  if (entry.contains("project") && entry["project"].is_string()) return entry["project"].get<std::string>();
  return std::string(model::projectOfObject(text(entry.value(key, json()))));
}

std::string entryName(const json& entry, const std::string& key) {
  return model::unqualifyText(text(entry.value(key, json())), entryProject(entry, key));
}

namespace {

// "used/limit", or "used" when the project has no such limit.
std::string usageText(const json& project, const char* key, bool size) {
  auto cell = [size](const json& v) {
    return size && v.is_number_integer() ? model::humanSize(v.get<uint64_t>()) : text(v);
  };
  json used = project.value("usage", json::object()).value(key, json(0));
  json limits = project.value("limits", json::object());
  return limits.contains(key) ? cell(used) + "/" + cell(limits[key]) : cell(used);
}

std::string namesText(const json& restrictions, const char* key) {
  std::vector<std::string> names = restrictions.value(key, std::vector<std::string>{});
  return names.empty() ? "any" : join(names, ", ");
}

}  // namespace

void printProjectTable(const json& projects) {
  Table t({"NAME", "RESTRICTED", "DOMAINS", "RUNNING", "VCPUS", "MEMORY", "DISK", "DESCRIPTION"});
  for (const auto& p : projects)
    t.add({text(p["name"]), text(p.value("restrictions", json::object()).value("restricted", json(false))),
           usageText(p, "domains", false), usageText(p, "running", false), usageText(p, "vcpus", false),
           usageText(p, "memory", true), usageText(p, "disk", true), text(p.value("description", json()))});
  t.print();
}

void printProjectInfo(const json& p) {
  json r = p.value("restrictions", json::object());
  bool restricted = r.value("restricted", false);
  printFields({{"Name", text(p["name"])},
               {"Description", text(p.value("description", json()))},
               {"Created", timestampText(p.value("created", json()))},
               {"Restricted", restricted ? "yes (no host paths or host devices, for any role)" : "no"},
               {"Pools", namesText(r, "pools")},
               {"Networks", namesText(r, "networks")},
               {"Shared images", namesText(r, "images")},  // the default project's; its own are always allowed
               {"Host bridges", r.value("bridges", json::array()).empty() ? std::string("none") : namesText(r, "bridges")},
               {"Domains", usageText(p, "domains", false)},
               {"Running", usageText(p, "running", false)},
               {"vCPUs", usageText(p, "vcpus", false)},
               {"Memory", usageText(p, "memory", true)},
               {"Disk", usageText(p, "disk", true)}});
}

std::string dumpJson(const json& j, int indent) {
  return escapeRawControlsInJson(j.dump(indent, ' ', false, json::error_handler_t::replace));
}

void printJson(const json& j) { std::cout << dumpJson(j, 2) << "\n"; }

void printFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t w = 0;
  for (const auto& [k, v] : fields) w = std::max(w, k.size());
  for (const auto& [k, v] : fields) std::cout << k << ":" << std::string(w - k.size() + 2, ' ') << terminalSafeLine(v) << "\n";
}

static bool g_progressShown = false;

void showProgress(const json& op) {
  if (!isatty(2)) return;
  const auto& p = op.contains("progress") ? op["progress"] : json::object();
  int pct = p.value("percent", -1);
  std::string msg = terminalSafeLine(p.value("message", ""));
  std::string status = op.value("status", "");
  if (pct < 0 && msg.empty()) return;
  if (status == "succeeded" || status == "failed" || status == "cancelled") {
    if (g_progressShown && status == "succeeded") pct = 100;
    else return endProgress();
  }
  std::string bar;
  if (pct >= 0) {
    pct = std::min(pct, 100);
    int filled = pct / 4;
    bar = "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(25 - filled), ' ') + "] ";
    char buf[16];
    std::snprintf(buf, sizeof buf, "%3d%%", pct);
    bar += buf;
  }
  std::fprintf(stderr, "\r\033[K%s %s", bar.c_str(), msg.c_str());
  std::fflush(stderr);
  g_progressShown = true;
}

void endProgress() {
  if (!g_progressShown) return;
  std::fprintf(stderr, "\n");
  g_progressShown = false;
}

void printResult(const json& r, void (*human)(const json&)) { jsonOutput() ? printJson(r) : human(r); }

}  // namespace vmm::vmctl
