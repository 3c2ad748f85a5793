// What the daemon hands to a driver when it creates it.
#pragma once

#include <cstdint>
#include <string>

#include "base/event_loop.h"
#include "base/thread_pool.h"

namespace vmm::drivers {

struct DriverContext {
  EventLoop* loop = nullptr;     // monitor/agent sockets and timers
  ThreadPool* pool = nullptr;    // blocking work
  std::string runDir;            // sockets, pid files (cleared at host reboot)
  std::string stateDir;          // persistent files (console logs, saved states)
  int64_t containerPidsMax = 4096;  // pids.max of a container without limits.pids (0: none)
};

}  // namespace vmm::drivers
