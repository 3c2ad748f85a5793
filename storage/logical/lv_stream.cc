#include "storage/logical/lv_stream.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace vmm::storage {

namespace {

// How long the layout read at open (or at the last check) is trusted during I/O.
constexpr auto kLayoutRecheck = std::chrono::seconds(2);
constexpr uint64_t kZeroChunk = 64ull << 20;

// Calls fn(piece, deviceOffset, position in the request, bytes) for each part of
// [offset, offset + len) of the LV, in order.
template <typename Fn>
Status forEachPart(const LvLayout& layout, uint64_t offset, uint64_t len, Fn&& fn) {
  uint64_t end = offset + len;
  for (const auto& p : layout.pieces) {
    uint64_t from = std::max(offset, p.lvOffset);
    uint64_t to = std::min(end, p.lvOffset + p.length);
    if (from >= to) continue;
    VMM_TRY(fn(p, p.deviceOffset + (from - p.lvOffset), from - offset, to - from));
  }
  return {};
}

Status writeZeros(int fd, uint64_t offset, uint64_t len, const std::string& device) {
  static const std::vector<char> zeros(1 << 20, 0);
  while (len > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeros.size()));
    ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return systemError("writing zeros to " + device, w < 0 ? errno : EIO);
    offset += static_cast<uint64_t>(w);
    len -= static_cast<uint64_t>(w);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<LvStream>> LvStream::open(LvmCommand lvm, std::string vg, std::string lv, StreamMode mode, Deadline deadline) {
  VMM_ASSIGN(auto layout, queryLayout(lvm, vg, lv, deadline));
  std::unique_ptr<LvStream> s(new LvStream(std::move(lvm), std::move(vg), std::move(lv), mode, std::move(layout)));
  int flags = (mode == StreamMode::write ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  for (const auto& p : s->layout_.pieces) {
    auto it = s->fds_.find(p.device);
    if (it == s->fds_.end()) {
      fs::UniqueFd fd(::open(p.device.c_str(), flags));
      if (!fd.valid()) return systemError("opening physical volume " + p.device, errno);
      it = s->fds_.emplace(p.device, std::move(fd)).first;
    }
    uint64_t deviceSize = 0;
    if (::ioctl(it->second.get(), BLKGETSIZE64, &deviceSize) != 0) return systemError("size of " + p.device, errno);
    if (p.deviceOffset + p.length > deviceSize)
      return internalError("volume " + s->lv_ + ": extents end beyond the size of " + p.device + "; the metadata does not match the device");
  }
  return s;
}

Status LvStream::checkLayout(Deadline deadline, bool force) {
  if (!force && SteadyClock::now() - checkedAt_ < kLayoutRecheck) return {};
  auto now = queryLayout(lvm_, vg_, lv_, deadline);
  if (!now.ok()) return now.error().wrap("volume " + lv_ + " changed while open");
  if (!(*now == layout_)) return conflict("volume " + lv_ + " was resized or moved while open; I/O stopped");
  checkedAt_ = SteadyClock::now();
  return {};
}

Result<size_t> LvStream::read(uint64_t offset, char* buf, size_t len, Deadline deadline) {
  if (deadline.expired()) return timeoutError("reading volume " + lv_ + ": deadline passed");
  if (offset >= layout_.size || len == 0) return size_t{0};
  VMM_TRY(checkLayout(deadline, false));
  len = static_cast<size_t>(std::min<uint64_t>(len, layout_.size - offset));
  VMM_TRY(forEachPart(layout_, offset, len, [&](const LvPiece& p, uint64_t devOff, uint64_t pos, uint64_t n) -> Status {
    int fd = fds_.at(p.device).get();
    while (n > 0) {
      ssize_t r = ::pread(fd, buf + pos, static_cast<size_t>(n), static_cast<off_t>(devOff));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return systemError("reading " + p.device, r < 0 ? errno : EIO);
      devOff += static_cast<uint64_t>(r);
      pos += static_cast<uint64_t>(r);
      n -= static_cast<uint64_t>(r);
    }
    return {};
  }));
  return len;
}

Status LvStream::checkWrite(uint64_t offset, uint64_t len, Deadline deadline) {
  if (mode_ != StreamMode::write) return invalidArgument("volume " + lv_ + " was opened for reading");
  if (finished_) return invalidArgument("volume " + lv_ + ": the upload is already finished");
  if (deadline.expired()) return timeoutError("writing volume " + lv_ + ": deadline passed");
  if (offset > layout_.size || len > layout_.size - offset)
    return invalidArgument("writing " + std::to_string(len) + " bytes at offset " + std::to_string(offset) + " goes beyond the end of volume " + lv_ +
                           " (" + std::to_string(layout_.size) + " bytes)");
  return checkLayout(deadline, false);
}

Status LvStream::write(uint64_t offset, const char* buf, size_t len, Deadline deadline) {
  VMM_TRY(checkWrite(offset, len, deadline));
  return forEachPart(layout_, offset, len, [&](const LvPiece& p, uint64_t devOff, uint64_t pos, uint64_t n) -> Status {
    int fd = fds_.at(p.device).get();
    while (n > 0) {
      ssize_t w = ::pwrite(fd, buf + pos, static_cast<size_t>(n), static_cast<off_t>(devOff));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return systemError("writing " + p.device, w < 0 ? errno : EIO);
      devOff += static_cast<uint64_t>(w);
      pos += static_cast<uint64_t>(w);
      n -= static_cast<uint64_t>(w);
    }
    return {};
  });
}

Status LvStream::zero(uint64_t offset, uint64_t len, Deadline deadline) {
  VMM_TRY(checkWrite(offset, len, deadline));
  return forEachPart(layout_, offset, len, [&](const LvPiece& p, uint64_t devOff, uint64_t, uint64_t n) -> Status {
    int fd = fds_.at(p.device).get();
    while (n > 0) {
      if (deadline.expired()) return timeoutError("zeroing volume " + lv_ + ": deadline passed");
      uint64_t chunk = std::min(n, kZeroChunk);
      uint64_t range[2] = {devOff, chunk};
      bool aligned = devOff % 512 == 0 && chunk % 512 == 0;
      if (!aligned || ::ioctl(fd, BLKZEROOUT, range) != 0) VMM_TRY(writeZeros(fd, devOff, chunk, p.device));
      devOff += chunk;
      n -= chunk;
    }
    return {};
  });
}

Status LvStream::finish(Deadline deadline) {
  if (finished_) return {};
  finished_ = true;
  if (mode_ != StreamMode::write) return {};
  for (auto& [device, fd] : fds_)
    if (::fdatasync(fd.get()) != 0) return systemError("flushing " + device, errno);
  return checkLayout(deadline, true);
}

}  // namespace vmm::storage
