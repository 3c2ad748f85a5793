#include "storage/netfs/netfs_volume_stream.h"

#include <algorithm>

#include "base/log.h"

namespace vmm::storage {

namespace {
constexpr size_t kMaxWriteChunk = 4 << 20;                // bytes copied into one request batch
constexpr Millis kCleanupTime = Millis(3000);            // for an abandoned upload's clean-up
}  // namespace

std::unique_ptr<VolumeStream> NetfsVolumeStream::reader(NfsFile file, uint64_t size) {
  std::unique_ptr<NetfsVolumeStream> s(new NetfsVolumeStream());
  s->file_ = std::move(file);
  s->size_ = size;
  return s;
}

std::unique_ptr<VolumeStream> NetfsVolumeStream::writer(std::shared_ptr<NfsClient> client, NfsFile file,
                                                        std::string tempPath, std::string finalPath) {
  std::unique_ptr<NetfsVolumeStream> s(new NetfsVolumeStream());
  s->client_ = std::move(client);
  s->file_ = std::move(file);
  s->writable_ = true;
  s->tempPath_ = std::move(tempPath);
  s->finalPath_ = std::move(finalPath);
  return s;
}

NetfsVolumeStream::~NetfsVolumeStream() {
  if (!writable_ || finished_) return;
  (void)file_.close(Deadline::after(kCleanupTime));
  auto st = client_->unlink(tempPath_, Deadline::after(kCleanupTime));
  if (!st.ok() && st.error().code != ErrorCode::not_found)
    log::warn("abandoned upload: temporary file not removed", {{"file", tempPath_}, {"error", st.error().message}});
}

Result<size_t> NetfsVolumeStream::read(uint64_t offset, char* buf, size_t len, Deadline deadline) {
  if (writable_) return invalidArgument("this volume stream is open for writing");
  if (offset >= size_) return size_t{0};
  len = static_cast<size_t>(std::min<uint64_t>(len, size_ - offset));
  size_t done = 0;
  while (done < len) {
    VMM_ASSIGN(size_t n, file_.pread(offset + done, buf + done, len - done, deadline));
    if (n == 0) break;  // the file shrank under us
    done += n;
  }
  return done;
}

Status NetfsVolumeStream::write(uint64_t offset, const char* buf, size_t len, Deadline deadline) {
  if (!writable_) return invalidArgument("this volume stream is open for reading");
  if (finished_) return invalidArgument("the upload is already finished");
  for (size_t done = 0; done < len;) {
    size_t n = std::min(len - done, kMaxWriteChunk);
    VMM_TRY(file_.pwrite(offset + done, buf + done, n, deadline));
    done += n;
  }
  return {};
}

Status NetfsVolumeStream::finish(Deadline deadline) {
  if (!writable_) return file_.close(deadline);
  if (finished_) return {};
  VMM_TRY(file_.fsync(deadline));
  VMM_TRY(file_.close(deadline));
  VMM_TRY(client_->rename(tempPath_, finalPath_, deadline));
  finished_ = true;
  return {};
}

}  // namespace vmm::storage
