// Runs a host command for a test and returns its result; a command that could not run at
// all comes back with exit code -1 and the reason in `err`.
#pragma once

#include <string>
#include <vector>

#include "base/process.h"
#include "base/time_util.h"

namespace vmm::testutil {

inline CommandResult hostCommand(const std::vector<std::string>& argv, Millis timeout = Millis(20000),
                                 const std::string& input = "") {
  RunOptions opts;
  opts.deadline = Deadline::after(timeout);
  opts.stdinData = input;
  auto r = runCommand(argv, opts);
  if (!r.ok()) {
    CommandResult failed;
    failed.err = r.error().message;
    return failed;
  }
  return *r;
}

}  // namespace vmm::testutil
