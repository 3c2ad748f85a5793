#include "drivers/qemu/console_mux.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.h"
#include "base/socket_util.h"

namespace vmm::drivers::qemu {

Result<std::shared_ptr<ConsoleMux>> ConsoleMux::start(EventLoop& loop, const std::string& socketPath, std::string logPath,
                                                     size_t logLimit) {
  auto fd = connectUnix(socketPath, Deadline::after(Millis(5000)));
  if (!fd.ok()) return fd.error().wrap("console");
  VMM_TRY(setNonBlocking(fd->get()));
  std::shared_ptr<ConsoleMux> m(new ConsoleMux(loop, std::move(logPath), logLimit));
  m->console_ = std::move(*fd);
  m->logFd_.reset(::open(m->logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!m->logFd_.valid()) return systemError("cannot open console log " + m->logPath_, errno);
  struct stat st;
  if (::fstat(m->logFd_.get(), &st) == 0) m->logSize_ = static_cast<size_t>(st.st_size);
  std::weak_ptr<ConsoleMux> weak = m;
  int cfd = m->console_.get();
  loop.runSync([&loop, weak, cfd] {
    loop.watch(cfd, EPOLLIN | EPOLLRDHUP, [weak](uint32_t ev) {
      if (auto self = weak.lock()) self->onConsole(ev);
    });
  });
  return m;
}

ConsoleMux::~ConsoleMux() {
  // stop() must have run on the loop (the driver calls it); fds close with the members.
}

void ConsoleMux::stop() {
  auto self = shared_from_this();
  loop_.runSync([self] { self->stopOnLoop(); });
}

void ConsoleMux::stopOnLoop() {
  {
    MutexLock lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (console_.valid()) loop_.unwatch(console_.get());
  console_.reset();
  for (auto& [fd, v] : viewers_) loop_.unwatch(fd);
  viewers_.clear();
}

void ConsoleMux::log(const char* data, size_t len) {
  if (!logFd_.valid()) return;
  if (logSize_ + len > limit_) {
    // Keep the previous file as .1: the log holds between limit and 2 x limit bytes.
    ::rename(logPath_.c_str(), (logPath_ + ".1").c_str());
    logFd_.reset(::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640));
    logSize_ = 0;
    if (!logFd_.valid()) return;
  }
  ssize_t n = ::write(logFd_.get(), data, len);
  if (n > 0) logSize_ += static_cast<size_t>(n);
}

void ConsoleMux::onConsole(uint32_t) {
  char buf[16384];
  while (console_.valid()) {
    ssize_t n = ::read(console_.get(), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {  // the guest's QEMU is gone
      stopOnLoop();
      return;
    }
    log(buf, static_cast<size_t>(n));
    std::vector<int> slow;
    for (auto& [fd, v] : viewers_) {
      if (!v.pending.empty()) {
        v.pending.append(buf, static_cast<size_t>(n));
      } else {
        ssize_t w = ::send(fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN) {
          slow.push_back(fd);
          continue;
        }
        if (w < n) {
          v.pending.assign(buf + std::max<ssize_t>(w, 0), static_cast<size_t>(n - std::max<ssize_t>(w, 0)));
          loop_.modify(fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
        }
      }
      if (v.pending.size() > (1 << 20)) slow.push_back(fd);
    }
    for (int fd : slow) dropViewer(fd);
  }
}

void ConsoleMux::onViewer(int fd, uint32_t events) {
  auto it = viewers_.find(fd);
  if (it == viewers_.end()) return;
  if (events & EPOLLOUT) {
    auto& v = it->second;
    ssize_t w = ::send(fd, v.pending.data(), v.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) v.pending.erase(0, static_cast<size_t>(w));
    if (v.pending.empty()) loop_.modify(fd, EPOLLIN | EPOLLRDHUP);
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    char buf[4096];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n <= 0) {
        dropViewer(fd);
        return;
      }
      if (console_.valid()) (void)writeAllFd(console_.get(), std::string_view(buf, static_cast<size_t>(n)), Deadline::after(Millis(1000)));
    }
  }
}

void ConsoleMux::dropViewer(int fd) {
  loop_.unwatch(fd);
  viewers_.erase(fd);
}

Result<fs::UniqueFd> ConsoleMux::attach() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return systemError("socketpair", errno);
  fs::UniqueFd mine(sv[0]), theirs(sv[1]);
  bool closed = false;
  auto self = shared_from_this();
  loop_.runSync([&] {
    {
      MutexLock lock(mu_);
      if (stopped_) {
        closed = true;
        return;
      }
    }
    int fd = mine.get();
    viewers_[fd] = Viewer{std::move(mine), {}};
    std::weak_ptr<ConsoleMux> weak = self;
    loop_.watch(fd, EPOLLIN | EPOLLRDHUP, [weak, fd](uint32_t ev) {
      if (auto s = weak.lock()) s->onViewer(fd, ev);
    });
  });
  if (closed) return unavailable("the console is closed (the domain stopped)");
  VMM_TRY(setNonBlocking(theirs.get(), false));
  return theirs;
}

Result<std::string> ConsoleMux::readLog(const std::string& logPath, size_t maxBytes) {
  std::string current = fs::readFile(logPath, 64 << 20).valueOr("");
  if (current.size() >= maxBytes) return current.substr(current.size() - maxBytes);
  std::string previous = fs::readFile(logPath + ".1", 64 << 20).valueOr("");
  std::string all = previous + current;
  if (all.size() > maxBytes) all = all.substr(all.size() - maxBytes);
  return all;
}

}  // namespace vmm::drivers::qemu
