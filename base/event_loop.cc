#include "base/event_loop.h"

#include <cxxabi.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <future>
#include <memory>

#include "base/log.h"

namespace vmm {

namespace {

std::atomic<uint64_t> g_contractViolations{0};

int64_t nowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now().time_since_epoch()).count();
}

// "vmm::api::RpcServer::accept(int, bool)::{lambda(unsigned int)#1}"
std::string demangle(const std::type_info* type) {
  if (!type) return "?";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(type->name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(type->name());
}

}  // namespace

uint64_t EventLoop::contractViolations() { return g_contractViolations.load(); }

void EventLoop::assertInLoopThread(const char* what) const {
  auto owner = loopThread_.load();
  if (owner == std::thread::id{} || owner == std::this_thread::get_id()) return;
  ++g_contractViolations;
  log::error("event-loop state used from another thread", {{"call", what}});
#ifndef NDEBUG
  std::abort();
#endif
}

void EventLoop::annotate(std::string what) {
  std::lock_guard lock(noteMu_);
  note_ = std::move(what);
}

std::string EventLoop::describeRunning() {
  std::lock_guard lock(noteMu_);
  return note_;
}

void EventLoop::startWatchdog(Millis stall) {
  if (watchdog_.joinable()) return;
  watchdog_ = std::thread([this, stall] { watchdogLoop(stall); });
}

void EventLoop::watchdogLoop(Millis stall) {
  uint64_t reportedSerial = 0;
  int64_t reportedAt = 0;
  std::unique_lock lock(watchdogMu_);
  while (!watchdogStop_) {
    watchdogCv_.wait_for(lock, Millis(100));
    int64_t since = runningSinceUs_.load();
    if (watchdogStop_ || since == 0) continue;
    int64_t now = nowMicros();
    uint64_t serial = runningSerial_.load();
    if (now - since < stall.count() * 1000) continue;
    // Once per stuck callback, then every 10 s while it stays stuck.
    if (serial == reportedSerial && now - reportedAt < 10000000) continue;
    reportedSerial = serial;
    reportedAt = now;
    log::error("event loop blocked", {{"callback", runningKind_.load()},
                                      {"code", demangle(runningType_.load())},
                                      {"doing", describeRunning()},
                                      {"blocked_ms", (now - since) / 1000}});
  }
}

EventLoop::EventLoop() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wakeFd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wakeFd_ < 0) {
    log::error("cannot create event loop", {{"errno", errno}});
    std::abort();
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // id 0 is the wake fd
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wakeFd_, &ev);
}

EventLoop::~EventLoop() {
  stop();
  join();
  if (watchdog_.joinable()) {
    {
      std::lock_guard lock(watchdogMu_);
      watchdogStop_ = true;
    }
    watchdogCv_.notify_all();
    watchdog_.join();
  }
  ::close(wakeFd_);
  ::close(epfd_);
}

void EventLoop::runInThread() {
  thread_ = std::thread([this] { run(); });
}

void EventLoop::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void EventLoop::stop() {
  stop_ = true;
  wake();
}

void EventLoop::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wakeFd_, &one, sizeof one);
  (void)n;
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (!finished_) {
      posted_.push_back(std::move(fn));
      fn = nullptr;
    }
  }
  // After the loop ended (daemon shutdown) there is no loop thread: run on the caller's.
  if (fn) fn();
  else wake();
}

void EventLoop::runSync(const std::function<void()>& fn) {
  if (inLoopThread()) {
    fn();
    return;
  }
  std::promise<void> done;
  auto fut = done.get_future();
  post([&] {
    try {
      fn();
    } catch (...) {  // thrown to the waiting caller, as it would be when run inline
      done.set_exception(std::current_exception());
      return;
    }
    done.set_value();
  });
  fut.get();
}

// Nothing a callback throws may end the loop (std::terminate): it is logged with where it
// came from and the loop goes on. Every callback is timed for the watchdog.
template <typename Fn>
void EventLoop::guarded(const char* what, int fd, const std::type_info& type, Fn&& fn) {
  int64_t t0 = nowMicros();
  runningType_ = &type;
  runningKind_ = what;
  ++runningSerial_;
  runningSinceUs_ = t0;
  try {
    fn();
  } catch (const std::exception& e) {
    log::error("event-loop callback threw", {{"callback", what}, {"fd", fd}, {"exception", e.what()}});
  } catch (...) {
    log::error("event-loop callback threw", {{"callback", what}, {"fd", fd}, {"exception", "unknown"}});
  }
  int64_t took = nowMicros() - t0;
  runningSinceUs_ = 0;
  if (took > longestMicros_.load()) longestMicros_ = took;
  std::string doing;
  {
    std::lock_guard lock(noteMu_);
    if (!note_.empty()) doing.swap(note_);
  }
  if (took >= slowThreshold().count() * 1000) {
    ++slowCallbacks_;
    log::warn("event-loop callback was slow",
              {{"callback", what}, {"code", demangle(&type)}, {"doing", doing}, {"fd", fd}, {"ms", took / 1000}});
  }
}

void EventLoop::watch(int fd, uint32_t events, FdCallback cb) {
  assertInLoopThread("EventLoop::watch");
  uint64_t id = nextWatchId_++;
  auto old = watches_.find(fd);
  if (old != watches_.end()) {
    idToFd_.erase(old->second.id);
    epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  }
  watches_[fd] = Watch{id, std::move(cb)};
  idToFd_[id] = fd;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) log::error("epoll_ctl add failed", {{"fd", fd}, {"errno", errno}});
}

void EventLoop::modify(int fd, uint32_t events) {
  assertInLoopThread("EventLoop::modify");
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second.id;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::unwatch(int fd) {
  assertInLoopThread("EventLoop::unwatch");
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  idToFd_.erase(it->second.id);
  watches_.erase(it);
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::addTimer(Millis delay, std::function<void()> fn) {
  TimerId id;
  {
    std::lock_guard lock(mu_);
    id = nextTimerId_++;
    auto at = SteadyClock::now() + delay;
    timers_[id] = {at, std::move(fn)};
    timerQueue_.emplace(at, id);
  }
  wake();
  return id;
}

void EventLoop::cancelTimer(TimerId id) {
  std::lock_guard lock(mu_);
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  auto range = timerQueue_.equal_range(it->second.first);
  for (auto q = range.first; q != range.second; ++q) {
    if (q->second == id) {
      timerQueue_.erase(q);
      break;
    }
  }
  timers_.erase(it);
}

int EventLoop::nextTimeoutMs() {
  std::lock_guard lock(mu_);
  if (!posted_.empty()) return 0;
  if (timerQueue_.empty()) return -1;
  auto now = SteadyClock::now();
  auto at = timerQueue_.begin()->first;
  if (at <= now) return 0;
  auto ms = std::chrono::duration_cast<Millis>(at - now).count() + 1;
  return ms > 60000 ? 60000 : static_cast<int>(ms);
}

void EventLoop::runDueTimers() {
  auto now = SteadyClock::now();
  while (true) {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (timerQueue_.empty() || timerQueue_.begin()->first > now) return;
      TimerId id = timerQueue_.begin()->second;
      timerQueue_.erase(timerQueue_.begin());
      auto it = timers_.find(id);
      if (it == timers_.end()) continue;
      fn = std::move(it->second.second);
      timers_.erase(it);
    }
    guarded("timer", -1, fn.target_type(), fn);
  }
}

void EventLoop::runPosted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) guarded("posted task", -1, fn.target_type(), fn);
}

void EventLoop::run() {
  {
    std::lock_guard lock(mu_);
    finished_ = false;
  }
  loopThread_ = std::this_thread::get_id();
  epoll_event events[64];
  while (!stop_) {
    int n = epoll_wait(epfd_, events, 64, nextTimeoutMs());
    if (n < 0 && errno != EINTR) {
      log::error("epoll_wait failed", {{"errno", errno}});
      break;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t id = events[i].data.u64;
      if (id == 0) {
        uint64_t v;
        while (::read(wakeFd_, &v, sizeof v) > 0) {
        }
        continue;
      }
      auto fdIt = idToFd_.find(id);
      if (fdIt == idToFd_.end()) continue;  // unwatched by an earlier callback in this batch
      auto w = watches_.find(fdIt->second);
      if (w == watches_.end()) continue;
      FdCallback cb = w->second.cb;  // copy: the callback may unwatch itself
      guarded("fd watch", w->first, cb.target_type(), [&] { cb(events[i].events); });
    }
    runDueTimers();
    runPosted();
  }
  // Drain posted tasks so that nobody waits forever in runSync(); later posts run inline.
  runPosted();
  {
    std::lock_guard lock(mu_);
    finished_ = true;
  }
  runPosted();
  loopThread_ = std::thread::id{};
}

}  // namespace vmm
