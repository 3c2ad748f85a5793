// The seam every short command (runCommand / runChecked) goes through: one CommandRunner for
// the process, the system one (fork + exec) unless a test installs another with
// ScopedCommandRunner, e.g. a RecordingRunner (base/recording_runner.h) that records command
// lines instead of running them. Long-lived children (spawnProcess) stay outside it.
//
// Threading: commandRunner() may be called from any thread. A ScopedCommandRunner is meant
// for tests: install it before, and destroy it after, every thread that runs commands through
// it; nested scopes end in the reverse order of their start (checked: out of order aborts).
#pragma once

#include <string>
#include <vector>

#include "base/process.h"
#include "base/result.h"

namespace vmm {

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // As runCommand: an error only when the command cannot be run or misses its deadline; a
  // non-zero exit is a successful Result.
  virtual Result<CommandResult> run(const std::vector<std::string>& argv, const RunOptions& options) = 0;
};

// The runner that starts real processes (base/process.cc).
CommandRunner& systemCommandRunner();
// The runner in effect now: the innermost live ScopedCommandRunner's, else the system one.
CommandRunner& commandRunner();

class ScopedCommandRunner {
 public:
  explicit ScopedCommandRunner(CommandRunner& runner);
  ~ScopedCommandRunner();
  ScopedCommandRunner(const ScopedCommandRunner&) = delete;
  ScopedCommandRunner& operator=(const ScopedCommandRunner&) = delete;

 private:
  CommandRunner* installed_;
  CommandRunner* previous_;
};

}  // namespace vmm
