// A window of a file or block device as a block device of its own, for a process that must
// see those bytes and nothing around them (a linear LV read straight from its physical volume
// when device-mapper is missing: QEMU gets the window, not the whole PV with other LVs on it).
#pragma once

#include <cstdint>

#include "base/fs.h"
#include "base/result.h"

namespace vmm {

// A loop device over bytes [offset, offset + size) of `backingFd`'s file or device, opened
// read-write unless `readOnly`. It is set to clear itself: it detaches when the last descriptor
// of it closes - the one returned and any copy a child inherited - so nothing is left behind,
// also when vmmd dies. `size` and `offset` are multiples of 512.
Result<fs::UniqueFd> openLoopWindow(int backingFd, uint64_t offset, uint64_t size, bool readOnly);

}  // namespace vmm
