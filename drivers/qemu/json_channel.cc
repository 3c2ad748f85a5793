#include "drivers/qemu/json_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include "base/log.h"
#include "base/socket_util.h"

namespace vmm::drivers::qemu {

using json = nlohmann::json;

std::shared_ptr<JsonChannel> JsonChannel::open(EventLoop& loop, fs::UniqueFd fd, Callbacks callbacks, Limits limits) {
  std::shared_ptr<JsonChannel> ch(new JsonChannel(loop, std::move(fd), std::move(callbacks), limits));
  ch->start();
  return ch;
}

JsonChannel::JsonChannel(EventLoop& loop, fs::UniqueFd fd, Callbacks cb, Limits limits)
    : loop_(loop), fd_(std::move(fd)), cb_(std::move(cb)), limits_(limits) {}

JsonChannel::~JsonChannel() {
  for (auto& p : out_)
    if (p.fd >= 0) ::close(p.fd);
}

void JsonChannel::start() {
  std::weak_ptr<JsonChannel> weak = shared_from_this();
  int fd = fd_.get();
  loop_.runSync([this, weak, fd] {
    loop_.watch(fd, EPOLLIN | EPOLLRDHUP, [weak](uint32_t ev) {
      if (auto self = weak.lock()) self->onEvents(ev);
    });
    watching_ = true;
  });
}

bool JsonChannel::connected() const {
  MutexLock lock(mu_);
  return !closed_;
}

void JsonChannel::send(std::string text, int fdToPass) {
  text += '\n';
  int dupFd = fdToPass >= 0 ? ::fcntl(fdToPass, F_DUPFD_CLOEXEC, 3) : -1;
  {
    MutexLock lock(mu_);
    if (closed_) {
      if (dupFd >= 0) ::close(dupFd);
      return;
    }
    out_.push_back({std::move(text), dupFd});
  }
  std::weak_ptr<JsonChannel> weak = shared_from_this();
  loop_.post([weak] {
    if (auto self = weak.lock()) self->flush();
  });
}

void JsonChannel::skipToDelimiter() {
  std::weak_ptr<JsonChannel> weak = shared_from_this();
  loop_.runSync([weak] {
    if (auto self = weak.lock()) {
      self->skipping_ = true;
      self->in_.clear();
      self->scanned_ = 0;
    }
  });
}

void JsonChannel::close(const std::string& reason) {
  std::weak_ptr<JsonChannel> weak = shared_from_this();
  loop_.runSync([weak, reason] {
    if (auto self = weak.lock()) self->closeOnLoop(reason);
  });
}

void JsonChannel::closeOnLoop(const std::string& reason) {
  {
    MutexLock lock(mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& p : out_)
      if (p.fd >= 0) ::close(p.fd);
    out_.clear();
  }
  if (watching_) loop_.unwatch(fd_.get());
  watching_ = false;
  fd_.reset();
  auto onClosed = std::move(cb_.onClosed);
  cb_ = {};
  if (onClosed) onClosed(reason);
}

void JsonChannel::flush() {
  while (true) {
    Pending* p;
    {
      MutexLock lock(mu_);
      if (closed_ || out_.empty()) break;
      p = &out_.front();
    }
    const char* data = p->text.data() + outOffset_;
    size_t len = p->text.size() - outOffset_;
    ssize_t n;
    if (p->fd >= 0 && outOffset_ == 0) {
      n = sendWithFd(fd_.get(), data, len, p->fd);
      if (n > 0) {
        ::close(p->fd);
        p->fd = -1;
      }
    } else {
      n = ::send(fd_.get(), data, len, MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        loop_.modify(fd_.get(), EPOLLIN | EPOLLRDHUP | EPOLLOUT);
        return;
      }
      closeOnLoop(std::string("write failed: ") + std::strerror(errno));
      return;
    }
    outOffset_ += static_cast<size_t>(n);
    if (outOffset_ == p->text.size()) {
      MutexLock lock(mu_);
      out_.pop_front();
      outOffset_ = 0;
    }
  }
  if (fd_.valid()) loop_.modify(fd_.get(), EPOLLIN | EPOLLRDHUP);
}

void JsonChannel::onEvents(uint32_t events) {
  if (events & EPOLLOUT) flush();
  if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  char buf[65536];
  // At most 1 MiB per loop turn: a guest that keeps the channel full must not hold the loop
  // (epoll reports the rest on the next turn).
  for (int reads = 0; reads < 16 && fd_.valid(); ++reads) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      closeOnLoop(n == 0 ? "connection closed by peer" : std::string("read failed: ") + std::strerror(errno));
      return;
    }
    std::string_view chunk(buf, static_cast<size_t>(n));
    if (skipping_) {
      auto pos = chunk.find('\xff');
      if (pos == std::string_view::npos) continue;
      chunk.remove_prefix(pos + 1);
      skipping_ = false;
    }
    in_.append(chunk);
    if (in_.size() > limits_.maxLineBytes) {
      closeOnLoop("message larger than " + std::to_string(limits_.maxLineBytes >> 20) + " MiB");
      return;
    }
    size_t start = 0;
    while (true) {
      size_t nl = in_.find('\n', std::max(start, scanned_));
      if (nl == std::string::npos) {
        scanned_ = in_.size();
        break;
      }
      std::string_view line(in_.data() + start, nl - start);
      start = nl + 1;
      while (!line.empty() && (line.back() == '\r' || line.front() == ' ')) line = line.back() == '\r' ? line.substr(0, line.size() - 1) : line.substr(1);
      if (line.empty()) continue;
      auto msg = parseJson(line, limits_.maxLineBytes, limits_.maxDepth, "message");
      if (!msg.ok()) {
        log::warn("ignoring a malformed message from QEMU or its agent",
                  {{"error", msg.error().message}, {"text", toValidUtf8(line.substr(0, 200))}});
        if (cb_.onMalformed) cb_.onMalformed(msg.error());
        if (!fd_.valid()) return;
        continue;
      }
      try {
        if (cb_.onMessage) cb_.onMessage(std::move(*msg));
      } catch (const std::exception& e) {  // the next line must still be read
        log::error("handling a message from QEMU or its agent threw", {{"exception", e.what()}});
      }
      if (!fd_.valid()) return;  // closed by the callback
    }
    in_.erase(0, start);
    scanned_ = scanned_ > start ? scanned_ - start : 0;
  }
}

}  // namespace vmm::drivers::qemu
