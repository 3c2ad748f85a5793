// The iscsi pool: the LUNs of one iSCSI target, reached in-process through libiscsi (this host
// has no kernel initiator). Each disk LUN is a raw volume named "lun-N"; LUNs are created,
// resized and deleted on the target, so those operations are unsupported here. QEMU reaches a
// volume itself (driver=iscsi) with the blockdev options resolve() returns.
//
// Thread-safety: every method may be called from any thread concurrently. Each call opens its
// own session (login takes a few ms) and closes it, so no lock is ever held across network I/O;
// a stream from openVolume() keeps its own session until it is destroyed.
#pragma once

#include "storage/iscsi/iscsi_session.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

class IscsiBackend final : public PoolBackend {
 public:
  explicit IscsiBackend(model::Pool pool);
  model::PoolType type() const override { return model::PoolType::iscsi; }

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

  // The initiator IQN used when the pool names none: "iqn.2024-01.io.vmm:<hostname>".
  static std::string defaultInitiator();

 private:
  struct Lun {
    int number = 0;
    iscsi::LunCapacity capacity;
  };

  Status checkSource() const;
  // Logs in; a missing target becomes an error listing the targets the portal offers.
  Result<std::unique_ptr<iscsi::Session>> connect(Deadline deadline) const;
  // The LUNs that are disks with a capacity (LUN 0 is often the target's controller).
  Result<std::vector<Lun>> disks(iscsi::Session& session, Deadline deadline) const;
  Result<Lun> findLun(iscsi::Session& session, const std::string& name, Deadline deadline) const;
  model::Volume describe(const Lun& lun) const;

  model::Pool pool_;
  iscsi::SessionOptions options_;
};

}  // namespace vmm::storage
