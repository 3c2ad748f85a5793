// Control groups of one container: vmm/<name> under each controller (cgroup v1) or under the
// unified hierarchy (v2). Limits, task placement, freezing, statistics and removal.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/domain.h"

namespace vmm::drivers::lxc {

class ContainerCgroups {
 public:
  // Where the groups of domain `name` live on this host (nothing is created). `root` is the
  // cgroup mount point (another one only in tests).
  static Result<ContainerCgroups> forDomain(const std::string& name, const std::string& root = "/sys/fs/cgroup");
  // The same groups, from paths recorded earlier (reconnect / release).
  static ContainerCgroups fromPaths(bool v2, std::vector<std::string> paths);

  bool v2() const { return v2_; }
  const std::vector<std::string>& paths() const { return paths_; }

  // Whether the container's devices are restricted by an allow-list (v1 devices controller; the
  // v2 equivalent, a BPF program, is not done).
  bool hasDevices() const { return !controller("devices").empty(); }

  // Creates the groups and applies the limits; on failure removes what it created.
  // `defaultPids` is pids.max for a definition without limits.pids (0: none).
  Status create(const model::Domain& def, int64_t defaultPids = 0);
  // The control files create() writes and their values, in order (files a kernel may lack -
  // memsw, swap - are skipped by create() when absent).
  std::vector<std::pair<std::string, std::string>> limitFiles(const model::Domain& def, int64_t defaultPids = 0) const;
  // Sub-groups `sub` of these groups (v1 only: limits apply hierarchically there; v2 forbids
  // processes in a group with children), so the processes of one exec can be killed together.
  std::optional<ContainerCgroups> makeChild(const std::string& sub) const;
  // Moves the tasks of these (child) groups to `parent`'s and removes them.
  void mergeInto(const ContainerCgroups& parent) const;
  // Moves a process (and its future children) into every group.
  Status addProcess(pid_t pid) const;
  Status freeze(bool frozen, Deadline deadline) const;
  bool frozen() const;
  // Kills every task, waits until the groups are empty and removes them.
  Status remove(Deadline deadline) const;
  // {"memory_bytes", "memory_limit_bytes", "cpu_time_ns", "pids"}.
  model::json stats() const;

 private:
  std::string controller(const std::string& name) const;  // path of one v1 controller's group
  std::vector<pid_t> tasks() const;

  bool v2_ = false;
  std::string root_ = "/sys/fs/cgroup";
  std::vector<std::string> paths_;  // v1: one per controller; v2: one
};

}  // namespace vmm::drivers::lxc
