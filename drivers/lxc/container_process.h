// Starting a container's init: a monitor process (its own session, so it outlives vmmd) holds
// the console pty and serves it on a listening unix socket; it clone()s init into new
// mount/uts/ipc/pid/net (and optionally user) namespaces. Init waits until the caller has
// placed it in its cgroups and network, then mounts its root, pivots and execs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/result.h"
#include "base/time_util.h"
#include "drivers/lxc/confinement.h"
#include "model/domain.h"

namespace vmm::drivers::lxc {

struct ContainerSpec {
  std::string rootfs;                    // host directory
  std::string hostname;
  std::vector<std::string> argv;         // argv[0] is an absolute path inside the rootfs
  std::map<std::string, std::string> env;
  std::vector<model::Mount> mounts;
  bool userns = false;                   // uid/gid 0 map to idmapBase (written by the caller)
  Confinement confinement;               // applied by init just before execve
  int consoleListenFd = -1;              // the monitor accepts console clients here
};

// A container whose init waits for release().
class PendingContainer {
 public:
  pid_t monitorPid = -1;
  pid_t initPid = -1;   // in vmmd's pid namespace
  // Gives init its rootfs (idmapped through init's user namespace when it has one, so call it
  // after writeIdMaps) and lets it continue; returns once it has exec'd its command or failed (the reason).
  Status release(Deadline deadline);
  // Kills init and the monitor (start failed half-way).
  void abort();

  std::string rootfs;
  bool userns = false;
  fs::UniqueFd goFd;   // one byte lets init continue; it carries the rootfs's mount
  fs::UniqueFd errFd;  // read end: EOF when init exec'd, a message when it failed
};

Result<PendingContainer> spawnContainer(const ContainerSpec& spec, Deadline deadline);

// Writes "0 base size" to uid_map and gid_map of a process in a new user namespace.
Status writeIdMaps(pid_t pid, uint32_t base, uint32_t size);

}  // namespace vmm::drivers::lxc
