// What confines a container's processes besides their namespaces and cgroups: capabilities
// dropped from the bounding set (so no process of the container, init or exec, ever holds them)
// and a seccomp deny-list returning EPERM. Both are prepared before fork and applied in the
// child just before execve, where only system calls are allowed.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace vmm::drivers::lxc {

struct Confinement {
  uint64_t dropCaps = 0;            // capability bits removed from every set
  std::vector<sock_filter> filter;  // a seccomp program (allow by default)
};

// The capabilities a container loses: those that reach the host kernel, clock, firmware or
// audit and MAC policy. A privileged container without a devices cgroup also loses mknod.
uint64_t droppedCapabilities(bool privileged, bool devicesCgroup);

// The seccomp deny-list for the native architecture and its compat ones (i386, x32 on x86_64).
Result<std::vector<sock_filter>> seccompFilter(bool privileged);

Result<Confinement> makeConfinement(bool privileged, bool devicesCgroup);

// In the child before execve (system calls only). On failure returns false with errno set and
// `step` naming what failed.
bool applyConfinement(const Confinement& c, const char** step);

// The capability bits of a CapBnd/CapEff line value (hex), e.g. from /proc/PID/status.
uint64_t parseCapMask(const char* hex);

}  // namespace vmm::drivers::lxc
