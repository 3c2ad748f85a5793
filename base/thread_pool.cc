#include "base/thread_pool.h"

#include "base/log.h"

namespace vmm {

ThreadPool::ThreadPool(size_t minThreads, size_t maxThreads, Millis idleTimeout)
    : min_(minThreads), max_(maxThreads < 1 ? 1 : maxThreads), idle_(idleTimeout) {
  MutexLock lock(mu_);
  for (size_t i = 0; i < min_; ++i) {
    ++threads_;
    std::thread(&ThreadPool::workerLoop, this).detach();
  }
}

ThreadPool::~ThreadPool() {
  MutexLock lock(mu_);
  stopping_ = true;
  cv_.notify_all();
  exitCv_.wait(lock, [&]() VMM_REQUIRES(mu_) { return threads_ == 0; });
}

void ThreadPool::submit(std::function<void()> task) {
  MutexLock lock(mu_);
  tasks_.push_back(std::move(task));
  if (idleThreads_ >= tasks_.size() || threads_ >= max_) {
    cv_.notify_one();
    return;
  }
  ++threads_;
  std::thread(&ThreadPool::workerLoop, this).detach();
}

size_t ThreadPool::threadCount() const {
  MutexLock lock(mu_);
  return threads_;
}

size_t ThreadPool::queued() const {
  MutexLock lock(mu_);
  return tasks_.size();
}

void ThreadPool::workerLoop() {
  MutexLock lock(mu_);
  while (true) {
    if (tasks_.empty()) {
      if (stopping_) break;
      ++idleThreads_;
      bool woke = cv_.wait_for(lock, idle_, [&]() VMM_REQUIRES(mu_) { return !tasks_.empty() || stopping_; });
      --idleThreads_;
      if (!woke && threads_ > min_) break;
      continue;
    }
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    try {
      task();
    } catch (const std::exception& e) {  // logged; the worker (and vmmd) carries on
      log::error("worker task threw", {{"exception", e.what()}});
    } catch (...) {
      log::error("worker task threw", {{"exception", "unknown"}});
    }
    task = nullptr;  // captures are released outside the lock
    lock.lock();
  }
  --threads_;
  if (threads_ == 0) exitCv_.notify_all();
}

}  // namespace vmm
