// A single-threaded epoll event loop: fd readiness callbacks, timers, and tasks posted from
// other threads. Monitor sockets (QMP, agent), RPC connections and child-exit notifications
// all run on one loop so that events are dispatched the moment they arrive.
//
// Thread-safety: post(), addTimer(), cancelTimer() and stop() may be called from any thread.
// watch()/modify()/unwatch() must be called on the loop thread (or before run()); use post()
// from elsewhere. That contract is checked: a call from another thread is logged as an error
// naming the call and counted (contractViolations()); builds without NDEBUG also abort, so
// the unit tests of a debug build stop at the first one. Release builds only log, because the
// data race is usually benign at the moment it is caught and killing vmmd would take every
// guest's management down with it.
//
// Watchdog: every callback, timer and posted task is timed; one that runs longer than
// slowThreshold() (100 ms) is logged with the name of the code that ran (the callable's type,
// demangled: "vmm::api::RpcServer::accept(int, bool)::{lambda(unsigned int)#1}") and what it
// said it was doing (annotate()). With startWatchdog() a thread also reports a callback that
// is still running after 1 s, so a loop that deadlocks says where.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include "base/time_util.h"

namespace vmm {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerId = uint64_t;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs until stop(). The calling thread becomes the loop thread.
  void run();
  // Starts a thread that calls run(); joined by stop()+join() or the destructor.
  void runInThread();
  void stop();
  void join();
  bool inLoopThread() const { return std::this_thread::get_id() == loopThread_.load(); }

  void post(std::function<void()> fn);
  // Runs fn on the loop thread and waits for it; runs inline when already there or when the
  // loop has ended.
  void runSync(const std::function<void()>& fn);

  void watch(int fd, uint32_t events, FdCallback cb);
  void modify(int fd, uint32_t events);
  void unwatch(int fd);

  TimerId addTimer(Millis delay, std::function<void()> fn);
  void cancelTimer(TimerId id);

  // Loop thread: what the running callback is doing ("rpc domain.list"), for the watchdog's
  // reports; cleared when the callback returns.
  void annotate(std::string what);
  // Logs (and in debug builds aborts) unless called on the loop thread or before run().
  void assertInLoopThread(const char* what) const;
  // Reports loop callbacks still running after `stall` from a separate thread.
  void startWatchdog(Millis stall = Millis(1000));
  static constexpr Millis slowThreshold() { return Millis(100); }
  uint64_t slowCallbacks() const { return slowCallbacks_.load(); }
  int64_t longestCallbackMicros() const { return longestMicros_.load(); }
  static uint64_t contractViolations();

 private:
  struct Watch {
    uint64_t id;
    FdCallback cb;
  };
  void wake();
  int nextTimeoutMs();
  void runDueTimers();
  void runPosted();
  template <typename Fn>
  void guarded(const char* what, int fd, const std::type_info& type, Fn&& fn);
  void watchdogLoop(Millis stall);
  std::string describeRunning();

  int epfd_ = -1;
  int wakeFd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<std::thread::id> loopThread_{};
  std::thread thread_;

  std::unordered_map<int, Watch> watches_;  // loop thread only
  std::unordered_map<uint64_t, int> idToFd_;
  uint64_t nextWatchId_ = 1;

  std::mutex mu_;  // guards posted_ and timers
  std::vector<std::function<void()>> posted_;
  bool finished_ = false;  // run() returned: post() runs tasks inline
  std::multimap<SteadyClock::time_point, TimerId> timerQueue_;
  std::unordered_map<TimerId, std::pair<SteadyClock::time_point, std::function<void()>>> timers_;
  TimerId nextTimerId_ = 1;

  // Watchdog state: written by the loop thread, read by the watchdog thread.
  std::atomic<int64_t> runningSinceUs_{0};  // 0: between callbacks
  std::atomic<const std::type_info*> runningType_{nullptr};
  std::atomic<const char*> runningKind_{""};
  std::atomic<uint64_t> runningSerial_{0};
  std::mutex noteMu_;
  std::string note_;
  std::atomic<uint64_t> slowCallbacks_{0};
  std::atomic<int64_t> longestMicros_{0};
  std::thread watchdog_;
  std::mutex watchdogMu_;
  std::condition_variable watchdogCv_;
  bool watchdogStop_ = false;
};

}  // namespace vmm
