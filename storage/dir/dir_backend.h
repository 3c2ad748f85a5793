// The dir pool: one file per volume in a host directory, raw or qcow2. Volume metadata comes
// from the image headers read directly (listing 1,000 volumes spawns no process); creation,
// resizing and copies go through qemu-img. A volume of format "dir" is a subdirectory (a
// container rootfs, see dir_volume.h): created empty or from a tarball, copied with cp.
#pragma once

#include "storage/dir/tar_scan.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

class DirBackend final : public PoolBackend {
 public:
  explicit DirBackend(model::Pool pool, TarLimits unpack = {}) : pool_(std::move(pool)), unpack_(unpack) {}
  model::PoolType type() const override { return model::PoolType::dir; }

  Status build(Deadline deadline) override;
  Status start(Deadline deadline) override;
  Status stop(Deadline deadline) override;
  Result<PoolCapacity> capacity(Deadline deadline) override;
  Result<std::vector<model::Volume>> listVolumes(Deadline deadline) override;
  Status destroyStorage(Deadline deadline) override;

  Result<model::Volume> createVolume(const model::VolumeSpec& spec, const model::Volume* base, Deadline deadline) override;
  Result<model::Volume> volumeInfo(const std::string& name, Deadline deadline) override;
  Status deleteVolume(const std::string& name, Deadline deadline) override;
  Status resizeVolume(const model::Volume& volume, uint64_t capacity, bool allowShrink, Deadline deadline) override;
  Result<model::Volume> cloneVolume(const model::Volume& source, const std::string& name, const CloneOptions& options,
                                    Deadline deadline) override;
  Status wipeVolume(const model::Volume& volume, const model::Volume* base, Deadline deadline) override;
  Result<std::unique_ptr<VolumeStream>> openVolume(const std::string& name, StreamMode mode, Deadline deadline) override;
  Result<model::ResolvedDisk> resolve(const model::Volume& volume, Deadline deadline) override;

 private:
  // The path of a volume, refusing names that would leave the pool directory.
  Result<std::string> volumePath(const std::string& name) const;
  // The volume at `path`; a directory volume's size is measured (a walk of its tree) only
  // when `measure` is set - lookups on the way to an operation do not need it.
  Result<model::Volume> describe(const std::string& name, const std::string& path, bool measure = true) const;
  void sweepTemporaryFiles();
  void repairVolumeModes();
  bool keepsHostUsersOut() const;  // the pool's directory is root's and closed to other users
  Result<model::Volume> lookup(const std::string& name) const;
  Result<model::Volume> createDirectoryVolume(const model::VolumeSpec& spec, const std::string& path, Deadline deadline);

  model::Pool pool_;
  TarLimits unpack_;
};

// Volume names are file names: 1-255 bytes, no '/', no leading '.', no control characters.
Status validateVolumeName(const std::string& name);

}  // namespace vmm::storage
