#include "base/command_runner.h"

#include <atomic>

namespace vmm {

namespace {

// nullptr: the system runner.
std::atomic<CommandRunner*> gOverride{nullptr};

}  // namespace

CommandRunner& commandRunner() {
  CommandRunner* runner = gOverride.load(std::memory_order_acquire);
  return runner ? *runner : systemCommandRunner();
}

ScopedCommandRunner::ScopedCommandRunner(CommandRunner& runner) : previous_(gOverride.exchange(&runner, std::memory_order_acq_rel)) {}

ScopedCommandRunner::~ScopedCommandRunner() { gOverride.store(previous_, std::memory_order_release); }

}  // namespace vmm
