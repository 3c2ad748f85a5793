// Host resources the storage and network layers prepare and hypervisor drivers consume: a
// resolved disk source, a prepared NIC port, the files qemu-img may touch. Plain data, so the
// layers that produce them need not depend on the drivers. Values: no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/domain.h"

namespace vmm::model {

// A disk source resolved by the daemon's storage layer.
struct ResolvedDisk {
  std::string path{};          // local file or block device, or empty for network disks
  std::string protocol{};      // "" for local; "iscsi", "nfs" for network disks
  json blockdev = json::object();  // network disks: the QEMU blockdev options (server, target, lun, ...)
  DiskFormat format = DiskFormat::raw;
  std::string secret{};        // CHAP or similar; passed to hypervisors without appearing in argv
  std::string username{};
  // A window of `path` (a linear LV read straight from its physical volume when device-mapper
  // is missing): the hypervisor sees only bytes [offset, offset + size).
  uint64_t offset = 0;
  uint64_t size = 0;
  bool blockDevice = false;  // `path` is a block device (QEMU's host_device driver, not file)
  bool directory = false;    // `path` is a directory (a container rootfs volume)
  // The layers below this one, its backing first, exactly as the pool recorded them: a
  // hypervisor is given these and told there is nothing further (`chainPinned`). Without it (a
  // disk given by path) the image's own header names its backing.
  std::vector<ResolvedDisk> backing{};
  bool chainPinned = false;
};

// The deepest chain of backing layers vmm gives a hypervisor (QEMU's own limit is far deeper,
// libvirt's 200): deeper ones are refused rather than walked.
inline constexpr size_t kMaxBackingLayers = 16;

// A host-side network port prepared for a NIC by the network layer.
struct PreparedPort {
  std::string ifname{};  // tap / veth / macvtap device name
  std::string kind{};    // "tap", "macvtap", "veth", "user"
  int fd = -1;           // an open tap/macvtap fd handed to the hypervisor (owned by the caller)
  std::string bridge{};
};

// What qemu-img may touch when the storage layer runs it sandboxed (storage/qemu_img.h);
// nothing else exists for it. A file in a writable directory needs no listing of its own.
struct QemuImgAccess {
  std::vector<std::string> writableDirs{};   // it creates files there (or changes them)
  std::vector<std::string> writableFiles{};  // it changes these in place
  std::vector<std::string> readFiles{};      // it only reads these (backing layers)
};

}  // namespace vmm::model
