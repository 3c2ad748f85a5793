// Byte access to one volume of a netfs pool over the pool's NFS connection. Downloads read the
// volume file; uploads write a temporary file that finish() renames over the volume, so an
// abandoned upload leaves the volume as it was (and the temporary file is removed).
#pragma once

#include <memory>
#include <string>

#include "storage/netfs/nfs_client.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

class NetfsVolumeStream final : public VolumeStream {
 public:
  static std::unique_ptr<VolumeStream> reader(NfsFile file, uint64_t size);
  // `file` is the open temporary file at `tempPath`; finish() renames it to `finalPath`.
  static std::unique_ptr<VolumeStream> writer(std::shared_ptr<NfsClient> client, NfsFile file, std::string tempPath,
                                              std::string finalPath);
  ~NetfsVolumeStream() override;

  uint64_t size() const override { return size_; }
  Result<size_t> read(uint64_t offset, char* buf, size_t len, Deadline deadline) override;
  Status write(uint64_t offset, const char* buf, size_t len, Deadline deadline) override;
  Status finish(Deadline deadline) override;

 private:
  NetfsVolumeStream() = default;

  std::shared_ptr<NfsClient> client_;  // writers: for the rename and the clean-up
  NfsFile file_;
  uint64_t size_ = 0;
  bool writable_ = false;
  bool finished_ = false;
  std::string tempPath_;
  std::string finalPath_;
};

}  // namespace vmm::storage
