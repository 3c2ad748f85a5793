// A single-threaded epoll event loop: fd readiness callbacks, timers, and tasks posted from
// other threads. Monitor sockets (QMP, agent), RPC connections and child-exit notifications
// all run on one loop so that events are dispatched the moment they arrive.
//
// Thread-safety: post(), addTimer(), cancelTimer() and stop() may be called from any thread.
// watch()/modify()/unwatch() must be called on the loop thread (or before run()); use post()
// from elsewhere.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
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
  void guarded(const char* what, int fd, Fn&& fn);

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
};

}  // namespace vmm
