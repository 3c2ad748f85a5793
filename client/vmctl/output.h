// vmctl output: aligned tables for people, JSON for scripts, exit codes, progress.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.h"

namespace vmm::vmctl {

using json = nlohmann::json;

// -o json: JSON for scripts instead of tables and text for people.
bool jsonOutput();
void setJsonOutput(bool json);

// Exit codes, documented in `vmctl --help`.
enum Exit : int {
  kOk = 0,
  kFailed = 1,
  kUsage = 2,          // bad command line or invalid argument
  kNoConnection = 3,   // vmmd unreachable
  kNotFound = 4,
  kConflict = 5,       // busy, already running, changed meanwhile
  kDenied = 6,         // no or read-only credentials
  kTimeout = 7,
  kUnsupported = 8,    // not supported or unavailable on this host
  kCancelled = 9,
};
int exitCodeFor(const Error& e);
// Prints "error: <message>" to stderr and returns the matching exit code.
int reportError(const Error& e);

// Cells and fields are shown on one line each, with control characters made visible.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// An entry of a list over every project (--all-projects): its project ("project", else that
// of its `key`, as vmmd names another project's objects "_ci_web"), and its `key` as that
// project knows it ("web"; an object path "domains/web").
std::string entryProject(const json& entry, const std::string& key = "name");
std::string entryName(const json& entry, const std::string& key = "name");

// `vmctl project list` and `project show`: usage against limits, "2/5" ("2" without a limit).
void printProjectTable(const json& projects);
void printProjectInfo(const json& project);

// JSON text to print: invalid UTF-8 replaced, no raw control characters.
std::string dumpJson(const json& j, int indent = -1);
void printJson(const json& j);
// "key: value" lines with aligned values.
void printFields(const std::vector<std::pair<std::string, std::string>>& fields);
// A progress line on stderr when it is a terminal: "[#####     ]  50% message".
void showProgress(const json& operation);
void endProgress();
std::string text(const json& v);  // a JSON scalar as plain text ("" for null)
std::string timestampText(const json& v);  // "2026-11-22T14:02:03Z" ("" for null)
// Guest output in a result or event: the exact bytes of KEY_b64 when vmmd sent them (output
// that is not UTF-8), else the text of KEY.
std::string bytesOf(const json& obj, const std::string& key);
// JSON with -o json, else the human form.
void printResult(const json& r, void (*human)(const json&));
// Paths are sent to vmmd, whose working directory is not the caller's.
std::string absolutePath(const std::string& path);

}  // namespace vmm::vmctl
