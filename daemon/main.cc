// vmmd: see daemon/daemon.h.
#include <cstdio>

#include "base/log.h"
#include "daemon/config.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask and signals arrive
  // only through the signalfd.
  vmm::blockDaemonSignals();
  bool run = true;
  auto config = vmm::loadConfig(argc, argv, run);
  if (!config.ok()) {
    std::fprintf(stderr, "vmmd: %s\n", config.error().message.c_str());
    return 2;
  }
  if (!run) return 0;
  vmm::Daemon daemon(std::move(*config));
  auto st = daemon.start();
  if (!st.ok()) {
    vmm::log::error("cannot start", {{"error", st.error().message}});
    return 1;
  }
  daemon.run();
  return 0;
}
