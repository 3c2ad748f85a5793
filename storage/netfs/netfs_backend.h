// The netfs pool: one file per volume (raw or qcow2) in a directory exported by an NFS server.
// There is no kernel NFS client here, so the pool works in userspace: a libnfs mount (NFSv3)
// for listing, metadata, uploads and downloads, and qemu-img on nfs:// URLs for qcow2 images.
// Guests reach volumes through QEMU's nfs block driver (resolve() gives its blockdev options).
//
// Every call that reaches the server ends by its deadline; a hung server gives timeout errors.
// Thread-safety: all methods may be called concurrently (the NFS connection serialises its
// calls; see NfsClient).
#pragma once

#include <memory>

#include "base/mutex.h"
#include "storage/netfs/nfs_client.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

class NetfsBackend final : public PoolBackend {
 public:
  explicit NetfsBackend(model::Pool pool);
  model::PoolType type() const override { return model::PoolType::netfs; }

  Status build(Deadline deadline) override;  // checks the source; the server owns the directory
  Status start(Deadline deadline) override;  // mounts source.host:source.dir
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
  struct Found {
    model::Volume volume;
    uint64_t fileSize = 0;
  };

  Status checkSource() const;
  Result<std::shared_ptr<NfsClient>> client() const;  // the mount, or an error if not started
  std::string url(const std::string& file) const;     // nfs://host/dir/file, for qemu-img
  model::Volume describe(const std::string& name, const NfsAttributes& attrs, const std::string& head) const;
  Result<Found> find(NfsClient& nfs, const std::string& name, Deadline deadline) const;
  Status ensureAbsent(NfsClient& nfs, const std::string& name, Deadline deadline) const;
  Status ensureSpace(NfsClient& nfs, uint64_t bytes, Deadline deadline) const;
  // Makes `file` from a temporary one: `make` writes the temporary file (given its name in the
  // export), which is then renamed; on any failure the temporary file is removed.
  Result<model::Volume> buildVolume(NfsClient& nfs, const std::string& name,
                                    const std::function<Status(const std::string& temp)>& make, Deadline deadline);

  model::Pool pool_;
  std::string dir_;                  // source.dir without a trailing '/'
  mutable Mutex mu_;  // never held across I/O
  std::shared_ptr<NfsClient> client_ VMM_GUARDED_BY(mu_);
};

// Netfs volume names also appear in nfs:// URLs: besides validateVolumeName's rules they are
// limited to letters, digits and "._-+~=,@" and to 200 bytes.
Status validateNetfsVolumeName(const std::string& name);

}  // namespace vmm::storage
