// Where a linear logical volume's bytes lie on its physical volumes. Without device-mapper an
// LV cannot be activated, but a linear LV is just extent ranges of its PVs: byte offset on the
// PV = pe_start + physical extent * extent size. This is what makes LVs readable, writable and
// usable by a hypervisor on this host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "storage/logical/lvm_command.h"

namespace vmm::storage {

struct LvPiece {
  std::string device;         // the PV's block device
  uint64_t deviceOffset = 0;  // first byte on the device
  uint64_t lvOffset = 0;      // first byte in the LV
  uint64_t length = 0;
  bool operator==(const LvPiece&) const = default;
};

struct LvLayout {
  uint64_t size = 0;
  std::vector<LvPiece> pieces;  // in LV order, touching ranges merged
  // One range of one PV: a hypervisor can use it as a window of that device.
  bool contiguous() const { return pieces.size() == 1; }
  bool operator==(const LvLayout&) const = default;
};

// The layout of VG/LV from one `pvs --segments` report. notFound if the LV does not exist;
// unavailable for non-linear LVs or parts on devices outside the pool (device-mapper would be
// needed to reach them).
Result<LvLayout> queryLayout(const LvmCommand& lvm, const std::string& vg, const std::string& lv, Deadline deadline);

}  // namespace vmm::storage
