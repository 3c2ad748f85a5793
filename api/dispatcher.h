// Runs the calls both transports take off their event loops, by the lane of the call's spec
// row (spec.h): `call` on the call pool, `wait` on the wait pool. Waits are capped: at most
// waitsPerPeer at a time for one peer (a uid on the RPC sockets, a token over HTTP; its
// read-only and read-write connections counted apart), and
// read-only and read-write callers each have their own share of the wait pool. So 256
// read-only `operation.wait timeout=1h` calls take none of the threads that calls and
// operations run on, and an admin's own waits (vmctl start waits for its operation) still find
// room; a wait over a cap is refused at once (503) instead of queueing for an hour.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "api/registry.h"
#include "base/thread_pool.h"

namespace vmm::api {

struct DispatchLimits {
  size_t waitsPerPeer = 32;
  size_t readWaits = 64;   // all read-only peers together
  size_t writeWaits = 64;  // all read-write peers together
};

class Dispatcher {
 public:
  // `waits` needs room for readWaits + writeWaits threads.
  Dispatcher(ThreadPool& calls, ThreadPool& waits, DispatchLimits limits = {});

  // Runs `fn` (the call) on the pool of `spec`'s lane; quick calls too, when a transport has
  // no loop to run them on. An error, and nothing runs, when a cap is reached.
  Status submit(const OperationSpec& spec, const CallContext& ctx, std::function<void()> fn);
  size_t waitsRunning() const;

 private:
  // Shared with the waits still running, which release their place when they end: that may be
  // after the dispatcher is gone (a pool outliving it at shutdown).
  struct Counts {
    std::mutex mu;
    std::map<std::string, size_t> waitsByPeer;
    size_t readWaits = 0, writeWaits = 0;
    void release(const std::string& peer, bool write);
  };

  ThreadPool& calls_;
  ThreadPool& waits_;
  const DispatchLimits limits_;
  std::shared_ptr<Counts> counts_ = std::make_shared<Counts>();
};

}  // namespace vmm::api
