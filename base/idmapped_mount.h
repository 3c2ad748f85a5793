// Detached mounts (open_tree) and idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP, Linux 5.12+):
// a copy of a directory's or file's mount that is attached elsewhere later - in a child's own
// mount namespace - with flags of its own and, idmapped, with the host's root shown as another
// id. Through such a mount a process of that id reads and writes what root owns there, and
// what it creates is root's on disk; nothing on disk changes owner.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/fs.h"
#include "base/result.h"

namespace vmm {

struct DetachedMountOptions {
  bool recursive = true;   // the mounts below the path too
  bool readOnly = false;
  bool nodev = false;
  bool nosuid = false;
  int idmapUserns = -1;    // a user namespace's descriptor: map ids through it
};

Result<fs::UniqueFd> detachedMount(const std::string& path, const DetachedMountOptions& options);

// A user namespace in which id 0 is the host's `id` (uid and gid, one each), held by its
// descriptor: idmapped through it, root's files show as `id`'s. Made once per id and kept.
Result<int> userNamespaceShowingRootAs(uint32_t id);

// move_mount of a detached mount onto `target` (in the caller's mount namespace); for a forked
// child: a system call and nothing else.
int attachDetachedMount(int tree, const char* target);

}  // namespace vmm
