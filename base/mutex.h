// Mutexes that clang's thread-safety analysis understands (base/thread_annotations.h).
// libstdc++'s std::mutex and std::lock_guard carry no annotations, so data guarded by one is
// invisible to the analysis; these thin wrappers cost the same as the std types inside them.
//
//   Mutex mu_;                    std::mutex
//   MutexLock lock(mu_);          std::unique_lock: held for the scope; unlock()/lock() between
//   CondVar cv_;                  std::condition_variable, waiting with a MutexLock
//   SharedMutex, ReaderLock, WriterLock   std::shared_mutex, shared_lock, unique_lock
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "base/thread_annotations.h"

namespace vmm {

class VMM_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() VMM_ACQUIRE() { mu_.lock(); }
  void unlock() VMM_RELEASE() { mu_.unlock(); }
  bool try_lock() VMM_TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

class VMM_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) VMM_ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() VMM_RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void lock() VMM_ACQUIRE() { lock_.lock(); }
  void unlock() VMM_RELEASE() { lock_.unlock(); }

 private:
  friend class CondVar;
  std::unique_lock<std::mutex> lock_;
};

// Waits release the MutexLock's mutex and hold it again when they return. A predicate reads
// guarded data: write it as `[&]() VMM_REQUIRES(mu_) { ... }`.
class CondVar {
 public:
  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

  void wait(MutexLock& lock) { cv_.wait(lock.lock_); }
  template <typename Pred>
  void wait(MutexLock& lock, Pred pred) {
    cv_.wait(lock.lock_, std::move(pred));
  }
  template <typename Clock, typename Duration>
  std::cv_status wait_until(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& at) {
    return cv_.wait_until(lock.lock_, at);
  }
  template <typename Clock, typename Duration, typename Pred>
  bool wait_until(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& at, Pred pred) {
    return cv_.wait_until(lock.lock_, at, std::move(pred));
  }
  template <typename Rep, typename Period>
  std::cv_status wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d) {
    return cv_.wait_for(lock.lock_, d);
  }
  template <typename Rep, typename Period, typename Pred>
  bool wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d, Pred pred) {
    return cv_.wait_for(lock.lock_, d, std::move(pred));
  }

 private:
  std::condition_variable cv_;
};

class VMM_CAPABILITY("mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() VMM_ACQUIRE() { mu_.lock(); }
  void unlock() VMM_RELEASE() { mu_.unlock(); }
  void lock_shared() VMM_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() VMM_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class VMM_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) VMM_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() VMM_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

class VMM_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) VMM_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() VMM_RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace vmm
