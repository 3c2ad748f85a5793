// Offline customisation of a disk image with libguestfs (files, SSH keys, hostname, commands).
//
// libguestfs calls block with no deadline and start a QEMU appliance, so the work runs in the
// vmm-customize helper (a separate binary: a forked child of the multithreaded daemon may only
// exec). The helper runs in its own session; at the deadline, and after it exits, everything
// of that session (helper, supermin, QEMU, libguestfs's recovery process) is killed. Its
// temporary files live on a private tmpfs over /tmp in its own mount namespace and vanish with
// it; the host's /tmp entries stay reachable there at their own paths (vmm_customize_main.cc).
//
// Thread-safe: each call is independent (concurrent calls on the same image are the caller's
// problem: QEMU's image lock makes the second one fail).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include "base/result.h"
#include "base/time_util.h"
#include "storage/customize/customize_spec.h"

namespace vmm::customize {

struct GuestfsRuntime {
  std::string helperPath;                     // the vmm-customize binary
  std::map<std::string, std::string> env;     // SUPERMIN_*, LIBGUESTFS_* (see scripts/setup-guestfs.sh)
  std::function<void(pid_t)> onSpawn;         // told the helper's pid (= its session); tests

  // Reads the KEY=VALUE lines scripts/setup-guestfs.sh writes to BUILD/guestfs/guestfs.env.
  static Result<GuestfsRuntime> fromEnvFile(const std::string& envFile, const std::string& helperPath);
};

// Opens `imagePath` read-write in `spec.format` (required: never detected), mounts its root
// filesystem (found by inspection, else the first filesystem that mounts) and applies `spec`.
// Errors carry libguestfs's message; timeout when the deadline passes (the appliance is then
// killed and the image may be half-customised).
Result<CustomizeReport> customizeImage(const std::string& imagePath, const CustomizeSpec& spec,
                                       const GuestfsRuntime& runtime, Deadline deadline);

}  // namespace vmm::customize
