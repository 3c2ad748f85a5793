// A child process's own view of the filesystem: a mount namespace of its own whose root is a
// fresh tmpfs holding only what it is given - bind mounts (read-only unless writable), symlinks
// (merged /usr: /lib -> usr/lib) and a new /proc - and a working directory in it. Nothing else of
// the host's files exists there: not /home, /root, /var/lib, /run, other guests' sockets.
//
// The parent prepares every path (prepareRoot: no allocation is allowed in a forked child of a
// threaded program); the child only makes system calls (enterRoot), as root, before it drops
// its credentials.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/fs.h"
#include "base/result.h"

namespace vmm {

struct PrivateRoot {
  std::string mountPoint;  // an empty directory on the host the new root is built on
  struct Bind {
    Bind(std::string from, std::string to, bool canWrite = false, std::optional<uint32_t> shownAs = std::nullopt)
        : source(std::move(from)), target(std::move(to)), writable(canWrite), rootShownAs(shownAs) {}
    std::string source;    // a host path (file, device node or directory)
    std::string target;    // absolute path inside the new root
    bool writable = false;
    // An idmapped bind (base/idmapped_mount.h): the host's root shows as this uid and gid, so
    // a child of that id reads and writes root's files there and what it makes is root's.
    std::optional<uint32_t> rootShownAs;
  };
  std::vector<Bind> binds;
  std::vector<std::pair<std::string, std::string>> symlinks;  // {path inside, link text}
  bool proc = true;        // a new proc at /proc
  // ... mounted read-only: for a uid 0 child, which /proc/sys's file modes would otherwise let
  // change host settings (the hostname, many kernel knobs) without any capability.
  bool procReadOnly = false;
  // Writable scratch directories: a fresh tmpfs each (mode 1777, nosuid, nodev), capped at
  // `bytes`, gone with the namespace; binds below one are made on it. {path inside, bytes}
  std::vector<std::pair<std::string, uint64_t>> scratch;
  // Device nodes made afresh under /dev (then a tmpfs of its own, read-only for the child) for
  // the same device as a host node, owned by `owner` and mode 0600: a child of that uid opens
  // that device and no other, and the host's node keeps its owner and mode.
  struct Device {
    std::string source;  // the host's node (block or character device)
    std::string target;  // absolute path inside the new root, under /dev
    uint32_t owner = 0;  // uid and gid
  };
  std::vector<Device> devices;
  std::string cwd = "/";   // the working directory, inside the new root
};

// What any program needs to run: /usr, the merged-/usr links (/bin, /sbin, /lib...) and
// /etc/ld.so.cache.
void addSystemFiles(PrivateRoot& root);

// A bind of the host's `path` when it exists; for a symlink (merged /usr) the same symlink.
// Appends to `root`; missing paths are skipped.
void addHostPath(PrivateRoot& root, const std::string& path, bool writable = false);

struct PreparedRoot {
  struct Mount {
    std::string source, target;
    bool writable = false;
    bool file = false;  // the target is a file to create, not a directory
    unsigned long readOnlyFlags = 0;  // the remount that makes it read-only
    int tree = -1;  // a detached mount to attach instead of binding `source` (flags already set)
  };
  std::string mountPoint, oldRoot, proc, cwd;
  bool procReadOnly = false;
  std::vector<std::string> directories;  // to create, parents first
  std::vector<Mount> mounts;
  std::vector<std::pair<std::string, std::string>> symlinks;  // {full target, link text}
  std::vector<std::pair<std::string, std::string>> scratch;   // {full target, tmpfs options}
  struct Node {
    std::string target;
    mode_t mode = 0;  // type and 0600
    dev_t rdev = 0;
    uint32_t owner = 0;
  };
  std::string deviceDir;    // the /dev tmpfs that holds `nodes` (empty: none)
  std::vector<Node> nodes;
  std::vector<fs::UniqueFd> trees;  // what the mounts' `tree` numbers refer to
};

Result<PreparedRoot> prepareRoot(const PrivateRoot& root);

// In the child: 0, or the errno of the first step that failed (`step`: rootStepName's index).
int enterRoot(const PreparedRoot& root, int* step);
std::string rootStepName(int step);

}  // namespace vmm
