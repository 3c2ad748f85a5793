// vmmd: see app/daemon.h.
#include <malloc.h>

#include <cstdio>

#include "base/log.h"
#include "daemon/config.h"
#include "app/daemon.h"

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask and signals arrive
  // only through the signalfd.
  vmm::blockDaemonSignals();
  // Replies to large lists are a few hundred KiB: keep such buffers in the heap instead of
  // mmap()ing and faulting in fresh pages for every reply (page faults dominate otherwise),
  // and use few arenas so that memory freed by one thread serves the next. The maintenance
  // task returns idle memory with malloc_trim().
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  mallopt(M_ARENA_MAX, 2);
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
