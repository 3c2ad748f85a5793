// The character device of a macvtap link (/dev/tap<ifindex>) and the queue fd QEMU gets from it.
//
// devtmpfs (or udev) normally makes /dev/tapN when the link appears. Without them (a plain
// tmpfs /dev, no udev/systemd) we make it ourselves: mknod with the major:minor the kernel
// publishes in /sys/class/net/<name>/macvtap/tap<ifindex>/dev. A node made that way is ours to
// remove (removeLeftoverTapNode); devtmpfs removes its own when the link goes.
//
// ifindexes repeat across network namespaces while devtmpfs is shared by all of them, so a
// /dev/tapN may exist that is another namespace's device: it is left alone, and the queue is
// opened through a temporary node that is unlinked at once.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/fs.h"
#include "base/result.h"

namespace vmm::net {

// virtio_net_hdr (no mergeable buffers): what QEMU expects with vnet_hdr=on. QEMU may raise
// it (TUNSETVNETHDRSZ) once the guest negotiates mergeable receive buffers.
constexpr int kMacvtapVnetHeaderSize = 10;

struct TapQueue {
  fs::UniqueFd fd;          // O_RDWR | O_CLOEXEC, IFF_VNET_HDR set
  std::string devicePath;   // "/dev/tapN"; empty when opened through a temporary node
  bool nodeCreated = false; // we made devicePath with mknod (no devtmpfs/udev)
};

std::string tapDevicePath(int ifindex);
// The device number of the link's tap from sysfs.
Result<dev_t> macvtapDeviceNumber(const std::string& name, int ifindex);
// Opens a queue of the macvtap `name` (creating /dev/tapN if nobody did).
Result<TapQueue> openMacvtapQueue(const std::string& name, int ifindex);
// After the link is gone: removes /dev/tapN if it still is `device` (so devtmpfs did not make
// it). Returns whether a node was removed.
bool removeLeftoverTapNode(int ifindex, dev_t device);

}  // namespace vmm::net
