#include "base/byte_relay.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "base/socket_util.h"

namespace vmm {

std::shared_ptr<ByteRelay> ByteRelay::start(EventLoop& loop, fs::UniqueFd a, fs::UniqueFd b, Options options) {
  std::shared_ptr<ByteRelay> r(new ByteRelay(loop, std::move(options)));
  (void)setNonBlocking(a.get(), true);
  (void)setNonBlocking(b.get(), true);
  r->sides_[0].fd = std::move(a);
  r->sides_[1].fd = std::move(b);
  r->sides_[0].out = std::move(r->options_.pendingToA);
  r->sides_[1].out = std::move(r->options_.pendingToB);
  std::weak_ptr<ByteRelay> weak = r;
  loop.runSync([&] {
    for (int i = 0; i < 2; ++i) {
      r->sides_[i].mask = EPOLLIN | EPOLLRDHUP;
      loop.watch(r->sides_[i].fd.get(), r->sides_[i].mask, [weak, i](uint32_t ev) {
        if (auto self = weak.lock()) self->onEvent(i, ev);
      });
    }
    for (int i = 0; i < 2; ++i)
      if (!r->closed_ && !r->flush(r->sides_[i])) r->closeAll();
    for (int i = 0; i < 2 && !r->closed_; ++i) r->updateMask(i);
  });
  return r;
}

ByteRelay::~ByteRelay() = default;

void ByteRelay::stop() {
  auto self = shared_from_this();
  loop_.runSync([self] { self->closeAll(); });
}

// Writes what is pending; false when the side is gone.
bool ByteRelay::flush(Side& s) {
  while (s.outOffset < s.out.size()) {
    ssize_t n = ::send(s.fd.get(), s.out.data() + s.outOffset, s.out.size() - s.outOffset, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(s.fd.get(), s.out.data() + s.outOffset, s.out.size() - s.outOffset);
    if (n > 0) {
      s.outOffset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    return false;
  }
  s.out.clear();
  s.outOffset = 0;
  return true;
}

void ByteRelay::updateMask(int index) {
  Side& s = sides_[index];
  if (!s.watched) return;
  Side& other = sides_[1 - index];
  // Read this side only while the other side's queue has room.
  s.readPaused = other.out.size() - other.outOffset >= options_.bufferLimit;
  uint32_t mask = (s.readDone ? 0u : static_cast<uint32_t>(EPOLLRDHUP)) |
                  (s.readPaused || s.readDone ? 0u : static_cast<uint32_t>(EPOLLIN)) |
                  (s.outOffset < s.out.size() ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  if (mask != s.mask) {
    s.mask = mask;
    loop_.modify(s.fd.get(), mask);
  }
}

void ByteRelay::onEvent(int index, uint32_t events) {
  if (closed_) return;
  Side& s = sides_[index];
  Side& other = sides_[1 - index];
  if (events & EPOLLOUT) {
    if (!flush(s)) return closeAll();
  }
  if (!s.readDone && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    char buf[16384];
    while (!s.readPaused) {
      ssize_t n = ::read(s.fd.get(), buf, sizeof buf);
      if (n > 0) {
        other.out.append(buf, static_cast<size_t>(n));
        if (!flush(other)) return closeAll();
        if (other.out.size() - other.outOffset >= options_.bufferLimit) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n < 0) return closeAll();
      // EOF: what this side sent is still delivered, then the EOF is passed on.
      s.readDone = true;
      break;
    }
  }
  // Gone entirely (closed, not just shut for writing): nothing more can be written to it,
  // and it stops being watched (a hang-up is reported for as long as it is watched).
  if (s.readDone && s.watched && (events & (EPOLLHUP | EPOLLERR))) {
    s.out.clear();
    s.outOffset = 0;
    s.writeShut = true;
    loop_.unwatch(s.fd.get());
    s.watched = false;
  }
  finishDirections();
  if (closed_) return;
  updateMask(0);
  updateMask(1);
}

void ByteRelay::finishDirections() {
  for (int i = 0; i < 2; ++i) {
    Side& from = sides_[i];
    Side& to = sides_[1 - i];
    if (from.readDone && !to.writeShut && to.outOffset >= to.out.size()) {
      ::shutdown(to.fd.get(), SHUT_WR);  // a no-op error on pipes and ttys is harmless
      to.writeShut = true;
    }
  }
  if (sides_[0].writeShut && sides_[1].writeShut) closeAll();
}

void ByteRelay::closeAll() {
  if (closed_) return;
  closed_ = true;
  for (auto& s : sides_) {
    if (s.fd.valid() && s.watched) loop_.unwatch(s.fd.get());
    s.fd.reset();
  }
  if (options_.onClosed) {
    auto cb = std::move(options_.onClosed);
    cb();
  }
}

}  // namespace vmm
