// IPv4 forwarding switches (/proc/sys/net/ipv4/...), changed by networks and restored on stop.
//
// Linux forwards a packet when its *input* interface has forwarding on. A NAT or routed network
// with an uplink turns it on for its bridge and its uplink only (replies come in on the uplink);
// without an uplink it needs the global switch (net.ipv4.ip_forward), which also rewrites every
// interface's value. Several vmm networks may share a switch: a change made while another
// running network had already changed the same switch inherits that one's original value, and
// a switch is restored only by the last network that relies on it, so stopping one network never
// breaks another and the host ends up as it was.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace vmm::net {

inline constexpr const char* kGlobalForwarding = "/proc/sys/net/ipv4/ip_forward";
std::string interfaceForwardingPath(const std::string& ifname);

struct SysctlChange {
  std::string path;
  std::string previous;  // value before vmm changed it ("0")
  std::string applied;   // value vmm wrote ("1")
};

Result<std::string> readSysctl(const std::string& path);
Status writeSysctl(const std::string& path, const std::string& value);

// Writes `value` to `path` and returns the change to record. `others` are the changes of the
// other running networks.
Result<SysctlChange> applySysctl(const std::string& path, const std::string& value,
                                 const std::vector<SysctlChange>& others);
// Undoes `change` unless another running network still relies on the same switch or the value
// was changed by someone else since (then it is left alone). A path that no longer exists
// (the interface is gone) is not an error. After restoring the global switch, the others'
// per-interface values are written again.
Status restoreSysctl(const SysctlChange& change, const std::vector<SysctlChange>& others);

}  // namespace vmm::net
