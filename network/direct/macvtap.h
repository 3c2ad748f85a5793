// Direct attachment of a guest NIC to a host interface through macvtap (model::Nic type
// "direct"): a macvtap link on the host interface that carries the guest's MAC, and an open
// queue fd of its /dev/tap<ifindex> that QEMU takes as a tap fd (netdev tap,fd=N,vnet_hdr=on).
//
// Modes (model::DirectMode) are the kernel's: vepa (all traffic goes out to the external
// switch, which must reflect it - "hairpin" - for two guests on one interface to meet), bridge
// (guests on one interface meet inside the host), private (they never meet), passthrough (the
// one macvtap owns the interface; its MAC becomes the interface's MAC until it is deleted).
//
// No udev is needed: when nothing made /dev/tapN, createMacvtap makes it with mknod from
// /sys/class/net/<name>/macvtap/tap<ifindex>/dev and deleteMacvtap removes it.
//
// Thread-safe (no shared state; the kernel serialises link changes), but two calls for the same
// name or the same passthrough interface at once are a caller error: one of them fails.
#pragma once

#include <string>

#include "base/fs.h"
#include "base/result.h"
#include "model/domain.h"
#include "network/direct/tap_queue.h"

namespace vmm::net {

struct MacvtapOptions {
  std::string name;   // at most 15 characters; normally macvtapNameFor(mac)
  std::string lower;  // host interface: an existing Ethernet link, not a bridge port
  model::DirectMode mode = model::DirectMode::vepa;
  std::string mac;    // the guest's MAC: the macvtap link carries it
  unsigned mtu = 0;   // 0: the host interface's
};

struct MacvtapPort {
  std::string name;
  int ifindex = 0;
  fs::UniqueFd fd;          // queue fd for QEMU: O_RDWR | O_CLOEXEC, IFF_VNET_HDR
  int vnetHeaderSize = kMacvtapVnetHeaderSize;
  std::string devicePath;   // "/dev/tapN" (empty if it had to be opened through a private node)
  bool nodeCreated = false; // devicePath was made by us (no devtmpfs/udev)
};

// "mv" + the MAC's 12 hex digits ("mv525400aabbcc"): deterministic, distinct from tap names.
std::string macvtapNameFor(const std::string& guestMac);

// All or nothing: on failure no link and no device node is left behind. Errors:
// invalid-argument (bad name/MAC/MTU/mode, loopback or non-Ethernet or bridge-port interface),
// not-found (no such host interface), conflict (name taken; passthrough needs the interface to
// itself, or the interface is already taken in passthrough mode).
Result<MacvtapPort> createMacvtap(const MacvtapOptions& options);

// Deletes the macvtap link and the device node createMacvtap made. Idempotent: a missing link
// is success. Refuses (invalid-argument) to delete a link that is not a macvtap. Open queue
// fds stay valid but carry no more traffic.
Status deleteMacvtap(const std::string& name);

}  // namespace vmm::net
