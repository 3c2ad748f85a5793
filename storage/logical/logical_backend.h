// The logical pool: an LVM volume group on the pool's block devices, one raw volume per
// logical volume. All metadata work goes through lvm2 (lvm_command.h) with activation off:
// this host has no device-mapper, so LVs are never activated. Linear LVs are still read,
// written and handed to hypervisors as byte ranges of their physical volumes (lv_layout.h);
// what truly needs device-mapper (snapshots, thin pools, linked clones) is refused with a
// clear "device-mapper not available" error.
//
// Thread-safety: the pool service serialises mutations of one pool; reads (capacity, lists,
// info) may run concurrently with them - lvm2 locks the VG itself. No global state.
#pragma once

#include "storage/logical/lv_stream.h"
#include "storage/logical/lvm_command.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

class LogicalBackend final : public PoolBackend {
 public:
  explicit LogicalBackend(model::Pool pool);
  model::PoolType type() const override { return model::PoolType::logical; }

  // pvcreate + vgcreate on the pool's devices; a device that belongs to another VG is a
  // conflict and nothing is changed. Building an existing VG on the same devices is a no-op.
  Status build(Deadline deadline) override;
  Status start(Deadline deadline) override;
  Status stop(Deadline deadline) override;  // nothing is active: a no-op
  Result<PoolCapacity> capacity(Deadline deadline) override;
  Result<std::vector<model::Volume>> listVolumes(Deadline deadline) override;
  // vgremove + pvremove; refused while the VG holds LVs.
  Status destroyStorage(Deadline deadline) override;

  // Raw volumes only, rounded up to whole extents, placed in one range of one PV when possible
  // (so resolve() can hand it to a hypervisor). The first MiB is zeroed.
  Result<model::Volume> createVolume(const model::VolumeSpec& spec, const model::Volume* base, Deadline deadline) override;
  Result<model::Volume> volumeInfo(const std::string& name, Deadline deadline) override;
  Status deleteVolume(const std::string& name, Deadline deadline) override;
  Status resizeVolume(const model::Volume& volume, uint64_t capacity, bool allowShrink, Deadline deadline) override;
  // Full clones copy the bytes; linked clones need device-mapper (unavailable).
  Result<model::Volume> cloneVolume(const model::Volume& source, const std::string& name, const CloneOptions& options,
                                    Deadline deadline) override;
  Status wipeVolume(const model::Volume& volume, const model::Volume* base, Deadline deadline) override;
  Result<std::unique_ptr<VolumeStream>> openVolume(const std::string& name, StreamMode mode, Deadline deadline) override;
  // The PV device with the LV's byte window (offset, size); unavailable unless the LV is one
  // contiguous range of one PV.
  Result<model::ResolvedDisk> resolve(const model::Volume& volume, Deadline deadline) override;

  const std::string& vgName() const { return vg_; }

 private:
  struct VgInfo {
    uint64_t size = 0;
    uint64_t free = 0;
    uint64_t extentSize = 0;
    uint64_t lvCount = 0;
  };
  Status checkDevices() const;
  // pvremove of those `devices` that are PVs of no VG.
  Status removeUnusedPvs(const std::vector<std::string>& devices, Deadline deadline) const;
  Result<VgInfo> vgInfo(Deadline deadline) const;
  Result<std::unique_ptr<LvStream>> openStream(const std::string& name, StreamMode mode, Deadline deadline) const;
  Status allocate(const std::string& tool, const std::string& name, uint64_t extents, const std::string& preferredPv, Deadline deadline);
  Error noVolume(const std::string& name) const;
  model::Volume describe(const std::string& name, uint64_t size) const;

  model::Pool pool_;
  std::string vg_;
  LvmCommand lvm_;
};

// LVM's naming rules: 1-127 of [A-Za-z0-9+_.-], not starting with '-', not "." or "..".
// For logical volumes also no reserved prefix ("snapshot", "pvmove") or part ("_mlog", ...),
// and the rules of validateVolumeName. `what` names the thing in the message.
Status validateLvmName(const std::string& name, const std::string& what, bool logicalVolume);

}  // namespace vmm::storage
