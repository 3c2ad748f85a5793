#include "storage/iscsi/iscsi_volume_stream.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace vmm::storage::iscsi {

namespace {
constexpr size_t kChunk = 1 << 20;
}

LunStream::LunStream(std::unique_ptr<Session> session, int lun, LunCapacity capacity, StreamMode mode)
    : session_(std::move(session)), lun_(lun), capacity_(capacity), mode_(mode) {}

size_t LunStream::chunkBytes() const {
  size_t bs = capacity_.blockSize;
  return std::max(bs, kChunk / bs * bs);
}

Result<size_t> LunStream::read(uint64_t offset, char* buf, size_t len, Deadline deadline) {
  if (finished_) return invalidArgument("the stream is finished");
  if (offset >= size()) return size_t{0};
  len = static_cast<size_t>(std::min<uint64_t>(len, size() - offset));
  const uint32_t bs = capacity_.blockSize;
  std::vector<char> scratch;
  size_t done = 0;
  while (done < len) {
    uint64_t pos = offset + done;
    size_t skip = pos % bs;
    // After an unaligned first piece every chunk starts on a block boundary.
    size_t want = std::min(len - done, chunkBytes() - skip);
    auto blocks = static_cast<uint32_t>((skip + want + bs - 1) / bs);
    if (skip == 0 && want % bs == 0) {
      VMM_TRY(session_->read(lun_, pos / bs, blocks, bs, buf + done, deadline));
    } else {
      scratch.resize(static_cast<size_t>(blocks) * bs);
      VMM_TRY(session_->read(lun_, pos / bs, blocks, bs, scratch.data(), deadline));
      std::memcpy(buf + done, scratch.data() + skip, want);
    }
    done += want;
  }
  return len;
}

Status LunStream::writePartial(uint64_t offset, const char* buf, size_t len, Deadline deadline) {
  const uint32_t bs = capacity_.blockSize;
  uint64_t first = offset / bs;
  uint64_t last = (offset + len - 1) / bs;
  auto blocks = static_cast<uint32_t>(last - first + 1);
  std::vector<char> scratch(static_cast<size_t>(blocks) * bs);
  size_t skip = offset % bs;
  // Only the edge blocks hold bytes we must keep.
  if (skip != 0) VMM_TRY(session_->read(lun_, first, 1, bs, scratch.data(), deadline));
  if ((offset + len) % bs != 0 && (last != first || skip == 0))
    VMM_TRY(session_->read(lun_, last, 1, bs, scratch.data() + (blocks - 1) * static_cast<size_t>(bs), deadline));
  std::memcpy(scratch.data() + skip, buf, len);
  return session_->write(lun_, first, blocks, bs, scratch.data(), deadline);
}

Status LunStream::write(uint64_t offset, const char* buf, size_t len, Deadline deadline) {
  if (finished_) return invalidArgument("the stream is finished");
  if (mode_ != StreamMode::write) return invalidArgument("the volume was opened for reading");
  if (offset > size() || len > size() - offset)
    return invalidArgument("write of " + std::to_string(len) + " bytes at offset " + std::to_string(offset) +
                           " goes past the end of the LUN (" + std::to_string(size()) + " bytes)");
  const uint32_t bs = capacity_.blockSize;
  size_t done = 0;
  while (done < len) {
    uint64_t pos = offset + done;
    size_t skip = pos % bs;
    size_t want = std::min(len - done, chunkBytes() - skip);
    if (skip == 0 && want % bs == 0)
      VMM_TRY(session_->write(lun_, pos / bs, static_cast<uint32_t>(want / bs), bs, buf + done, deadline));
    else
      VMM_TRY(writePartial(pos, buf + done, want, deadline));
    done += want;
  }
  return {};
}

Status LunStream::finish(Deadline deadline) {
  if (finished_) return {};
  if (mode_ == StreamMode::write) VMM_TRY(session_->synchronizeCache(lun_, deadline));
  finished_ = true;
  (void)session_->logout(deadline);
  return {};
}

}  // namespace vmm::storage::iscsi
