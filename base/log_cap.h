// Size caps for log files other processes write (QEMU's stderr, dnsmasq), which a guest can
// make grow (DHCP noise, device warnings). The writers keep their descriptor: they must have
// opened the file with O_APPEND, so that after a cut their next line lands at the new end.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace vmm {

// When `path` is larger than `limit` bytes, keeps its first `head` bytes (what the process
// said when it started) and its last limit/2 bytes, cut at line ends, with one line between
// them: "[vmm: 12345678 bytes cut at 2026-12-03T10:00:00Z: this log is kept under 1048576 bytes]".
// Returns whether it cut. A missing file is not an error.
Result<bool> capLogFile(const std::string& path, uint64_t limit, uint64_t head = 64 << 10);

}  // namespace vmm
