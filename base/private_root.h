// A child process's own view of the filesystem: a mount namespace of its own whose root is a
// fresh tmpfs holding only what it is given - bind mounts (read-only unless writable), symlinks
// (merged /usr: /lib -> usr/lib) and a new /proc - and a working directory in it. Nothing else of
// the host's files exists there: not /home, /root, /var/lib, /run, other guests' sockets.
//
// The parent prepares every path (prepareRoot: no allocation is allowed in a forked child of a
// threaded program); the child only makes system calls (enterRoot), as root, before it drops
// its credentials.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace vmm {

struct PrivateRoot {
  std::string mountPoint;  // an empty directory on the host the new root is built on
  struct Bind {
    std::string source;    // a host path (file, device node or directory)
    std::string target;    // absolute path inside the new root
    bool writable = false;
  };
  std::vector<Bind> binds;
  std::vector<std::pair<std::string, std::string>> symlinks;  // {path inside, link text}
  bool proc = true;        // a new proc at /proc
  std::string cwd = "/";   // the working directory, inside the new root
};

// A bind of the host's `path` when it exists; for a symlink (merged /usr) the same symlink.
// Appends to `root`; missing paths are skipped.
void addHostPath(PrivateRoot& root, const std::string& path, bool writable = false);

struct PreparedRoot {
  struct Mount {
    std::string source, target;
    bool writable = false;
    bool file = false;  // the target is a file to create, not a directory
    unsigned long readOnlyFlags = 0;  // the remount that makes it read-only
  };
  std::string mountPoint, oldRoot, proc, cwd;
  std::vector<std::string> directories;  // to create, parents first
  std::vector<Mount> mounts;
  std::vector<std::pair<std::string, std::string>> symlinks;  // {full target, link text}
};

Result<PreparedRoot> prepareRoot(const PrivateRoot& root);

// In the child: 0, or the errno of the first step that failed (`step`: rootStepName's index).
int enterRoot(const PreparedRoot& root, int* step);
std::string rootStepName(int step);

}  // namespace vmm
