#include "base/recording_runner.h"

#include <utility>

namespace vmm {

namespace {

Result<CommandResult> succeedSilently(const RecordedCommand&) {
  CommandResult r;
  r.exitCode = 0;
  return r;
}

}  // namespace

RecordingRunner::RecordingRunner() : responder_(succeedSilently) {}

RecordingRunner::RecordingRunner(Responder responder) : responder_(std::move(responder)) {}

Result<CommandResult> RecordingRunner::run(const std::vector<std::string>& argv, const RunOptions& options) {
  RecordedCommand c;
  c.argv = argv;
  c.stdinData = options.stdinData;
  c.env = options.env;
  c.clearEnv = options.clearEnv;
  c.cwd = options.cwd;
  c.confined = !options.confinement.empty();
  MutexLock lock(mu_);
  commands_.push_back(c);
  return responder_(c);
}

std::vector<RecordedCommand> RecordingRunner::commands() const {
  MutexLock lock(mu_);
  return commands_;
}

}  // namespace vmm
