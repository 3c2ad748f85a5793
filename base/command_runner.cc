#include "base/command_runner.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace vmm {

namespace {

// nullptr: the system runner.
std::atomic<CommandRunner*> gOverride{nullptr};

}  // namespace

CommandRunner& commandRunner() {
  CommandRunner* runner = gOverride.load(std::memory_order_acquire);
  return runner ? *runner : systemCommandRunner();
}

ScopedCommandRunner::ScopedCommandRunner(CommandRunner& runner)
    : installed_(&runner), previous_(gOverride.exchange(&runner, std::memory_order_acq_rel)) {}

ScopedCommandRunner::~ScopedCommandRunner() {
  // Scopes must end innermost first: otherwise a runner already destroyed would be put back.
  CommandRunner* expected = installed_;
  if (!gOverride.compare_exchange_strong(expected, previous_, std::memory_order_acq_rel)) {
    std::fputs("ScopedCommandRunner: scopes ended out of order\n", stderr);
    std::abort();
  }
}

}  // namespace vmm
