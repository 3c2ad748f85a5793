// An elastic pool of worker threads: a task never waits for a busy thread while fewer than
// maxThreads exist; idle threads above minThreads exit after idleTimeout. Tasks may block
// (waiting on QEMU with a deadline, an operation wait) without starving other tasks.
// Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "base/time_util.h"

namespace vmm {

class ThreadPool {
 public:
  ThreadPool(size_t minThreads, size_t maxThreads, Millis idleTimeout = Millis(30000));
  ~ThreadPool();  // runs queued tasks, then joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void submit(std::function<void()> task);
  size_t threadCount() const;
  size_t queued() const;

 private:
  void workerLoop();

  const size_t min_, max_;
  const Millis idle_;
  mutable Mutex mu_;
  CondVar cv_;
  CondVar exitCv_;
  std::deque<std::function<void()>> tasks_ VMM_GUARDED_BY(mu_);
  size_t threads_ VMM_GUARDED_BY(mu_) = 0;
  size_t idleThreads_ VMM_GUARDED_BY(mu_) = 0;
  bool stopping_ VMM_GUARDED_BY(mu_) = false;
};

}  // namespace vmm
