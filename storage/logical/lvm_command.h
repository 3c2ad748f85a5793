// Runs lvm2 tools for one pool. Every command sees only the pool's devices (--devices), runs
// with activation off (this code never needs device-mapper) and reports in JSON, so results
// and errors are parsed, never scraped from text. Each call has a deadline.
//
// Holds no state beyond the device list: copies are cheap and independent, and calls from
// several threads do not interfere (lvm2 takes its own VG locks).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"

namespace vmm::storage {

// One row of an lvm2 report: field name -> value (every value is a string in lvm2's JSON).
using LvmRow = std::map<std::string, std::string>;

class LvmCommand {
 public:
  explicit LvmCommand(std::vector<std::string> devices) : devices_(std::move(devices)) {}

  // A command that changes metadata (pvcreate, vgcreate, lvcreate, lvremove, ...). A failure
  // carries the first error of lvm2's command log: "lvcreate: Volume group "x" not found".
  Status change(const std::string& tool, const std::vector<std::string>& args, Deadline deadline) const;

  // A report (pvs, vgs, lvs) of `fields` (an -o list), sizes in bytes. Returns the rows.
  Result<std::vector<LvmRow>> report(const std::string& tool, const std::string& fields, const std::vector<std::string>& args,
                                     Deadline deadline) const;

  const std::vector<std::string>& devices() const { return devices_; }

 private:
  struct Output {
    int exitCode = 0;
    std::vector<LvmRow> rows;
    std::vector<std::string> errors;  // "error" entries of the command log, in order
  };
  Result<Output> run(const std::string& tool, const std::vector<std::string>& args, Deadline deadline) const;

  std::vector<std::string> devices_;
};

// A numeric field of a report row ("" counts as missing).
Result<uint64_t> lvmNumber(const LvmRow& row, const std::string& field);
std::string lvmField(const LvmRow& row, const std::string& field);

// What lvm2 prints with --reportformat json: the rows of every report and the "error" entries of
// its command log, in order. `parsed` is false when no JSON object could be read (a prompt may
// precede the JSON; it is skipped).
struct LvmReport {
  bool parsed = false;
  std::vector<LvmRow> rows;
  std::vector<std::string> errors;
};
LvmReport parseLvmReport(std::string_view out);

// lvm2's JSON sometimes has a comma before a closing bracket (lvm2 2.03.16 command logs);
// removes such commas outside strings so a strict parser accepts it.
std::string stripTrailingCommas(std::string_view text);

}  // namespace vmm::storage
