// Offline customisation of a disk image with libguestfs (files, SSH keys, hostname, commands).
//
// libguestfs calls block with no deadline and start a QEMU appliance, so the work runs in the
// vmm-customize helper (a separate binary: a forked child of the multithreaded daemon may only
// exec). The helper runs in its own session; at the deadline, and after it exits, everything
// of that session (helper, supermin, QEMU, libguestfs's recovery process) is killed. Its
// temporary files live on a private tmpfs over /tmp in its own mount namespace and vanish with
// it; the host's /tmp entries stay reachable there at their own paths (vmm_customize_main.cc).
//
// With a sandbox (GuestfsSandbox) the helper and everything it starts - the appliance's QEMU
// included, which reads the guest's bytes - run as one unprivileged uid with no capabilities,
// no network and a pid namespace of their own, in a private root that holds only the system's
// /usr, the fixed appliance, its qemu-data cache, scratch /tmp and /var/tmp, and the image with
// its backing layers (idmapped binds: the files stay root's on disk), or for a block device a
// node of its own for that device in its /dev (the host's node keeps its owner).
// A backing file the image's header names beyond those does not exist there. Without a sandbox
// it runs as root.
//
// Thread-safe: each call is independent (concurrent calls on the same image are the caller's
// problem: QEMU's image lock makes the second one fail).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "storage/customize/customize_spec.h"

namespace vmm::customize {

struct GuestfsSandbox {
  uid_t uid = 0;           // the helper's uid and gid (not 0)
  std::string mountPoint;  // an empty root-only directory its private root is built on
};

struct GuestfsRuntime {
  std::string helperPath;                     // the vmm-customize binary
  std::map<std::string, std::string> env;     // SUPERMIN_*, LIBGUESTFS_* (see scripts/setup-guestfs.sh)
  std::function<void(pid_t)> onSpawn;         // told the helper's pid (= its session); tests
  // Needs the fixed appliance (LIBGUESTFS_PATH) setup-guestfs.sh makes: an unprivileged
  // helper cannot build one, and supermin would want the whole host.
  std::optional<GuestfsSandbox> sandbox;

  // Reads the KEY=VALUE lines scripts/setup-guestfs.sh writes to BUILD/guestfs/guestfs.env.
  static Result<GuestfsRuntime> fromEnvFile(const std::string& envFile, const std::string& helperPath);
};

// The image to customise and, for a qcow2 overlay, the layers below it as the pool recorded
// them (the sandbox shows them, read-only, at their own paths; nothing else).
struct DiskToCustomize {
  DiskToCustomize(std::string imagePath, std::vector<std::string> layers = {})  // NOLINT: a path is a disk
      : path(std::move(imagePath)), backingLayers(std::move(layers)) {}
  std::string path;
  std::vector<std::string> backingLayers;
};

// Opens the disk's image read-write in `spec.format` (required: never detected), mounts its root
// filesystem (found by inspection, else the first filesystem that mounts) and applies `spec`.
// Errors carry libguestfs's message; timeout when the deadline passes (the appliance is then
// killed and the image may be half-customised).
Result<CustomizeReport> customizeImage(const DiskToCustomize& disk, const CustomizeSpec& spec,
                                       const GuestfsRuntime& runtime, Deadline deadline);

}  // namespace vmm::customize
