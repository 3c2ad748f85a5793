// Byte access to one LUN over READ(16)/WRITE(16). Offsets and lengths need not be block
// aligned: partial blocks are read, modified and written back. Writes land in place and may
// not go past the LUN's end; finish() issues SYNCHRONIZE CACHE and logs out.
//
// Thread-safety: none; one stream is used by one thread at a time.
#pragma once

#include <memory>

#include "storage/iscsi/iscsi_session.h"
#include "storage/pool_backend.h"

namespace vmm::storage::iscsi {

class LunStream final : public VolumeStream {
 public:
  LunStream(std::unique_ptr<Session> session, int lun, LunCapacity capacity, StreamMode mode);

  uint64_t size() const override { return capacity_.bytes(); }
  Result<size_t> read(uint64_t offset, char* buf, size_t len, Deadline deadline) override;
  Status write(uint64_t offset, const char* buf, size_t len, Deadline deadline) override;
  Status finish(Deadline deadline) override;

 private:
  // Bytes moved per SCSI command (a whole number of blocks).
  size_t chunkBytes() const;
  // Writes bytes inside one chunk that does not start or end on a block boundary.
  Status writePartial(uint64_t offset, const char* buf, size_t len, Deadline deadline);

  std::unique_ptr<Session> session_;
  int lun_;
  LunCapacity capacity_;
  StreamMode mode_;
  bool finished_ = false;
};

}  // namespace vmm::storage::iscsi
