// Host network links through the kernel's ioctl interface: taps, bridge ports, link state.
// Small and synchronous (each call is one or two syscalls); the network backends build on it.
#pragma once

#include <string>

#include "base/fs.h"
#include "base/result.h"

namespace vmm::net {

struct TapOptions {
  std::string name;        // at most 15 characters
  bool vnetHeader = true;  // virtio-net offloads (QEMU's vnet_hdr)
  std::string mac;         // host-side MAC; empty keeps the kernel's random one
  std::string bridge;      // enslave to this bridge when not empty
  unsigned mtu = 0;        // 0: the bridge's MTU (or the default)
};

// Creates a non-persistent tap and returns its queue fd: the device disappears when the last
// fd holding it closes, so a crashed hypervisor never leaks it. The link is up on return.
Result<fs::UniqueFd> createTap(const TapOptions& options);

bool linkExists(const std::string& name);
bool isBridge(const std::string& name);
Result<unsigned> linkMtu(const std::string& name);
Status setLinkUp(const std::string& name, bool up);
Status setLinkMtu(const std::string& name, unsigned mtu);
Status setLinkMac(const std::string& name, const std::string& mac);
Status addBridgePort(const std::string& bridge, const std::string& port);
Status removeBridgePort(const std::string& bridge, const std::string& port);

// The host-side MAC of a guest NIC's tap: the guest's with the first byte 0xfe, so the
// bridge (which takes the lowest port MAC) never adopts a guest's address.
std::string hostSideMac(const std::string& guestMac);
// A deterministic tap name for a guest MAC ("vm525400aabbcc"): MACs are unique on the host.
std::string tapNameFor(const std::string& guestMac);

}  // namespace vmm::net
