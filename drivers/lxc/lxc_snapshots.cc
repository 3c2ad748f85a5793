// Container snapshots: copies of the rootfs directory (reflinked where the filesystem can,
// e.g. btrfs or xfs; a plain copy elsewhere). A running container is frozen while its files
// are copied, so the copy is consistent; containers have no memory image to keep.
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/process.h"
#include "base/strings.h"
#include "drivers/lxc/lxc_driver.h"

namespace vmm::drivers::lxc {

namespace {

Status copyTree(const std::string& from, const std::string& to, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  // -a keeps owners, modes, links and special files; --reflink=auto shares blocks where it can.
  auto r = runCommand({"cp", "-a", "--reflink=auto", from + "/.", to}, opts);
  if (!r.ok()) return r.error();
  if (!r->success()) return internalError("copying " + from + " to " + to + ": " + r->describe());
  return {};
}

}  // namespace

Result<SnapshotResult> LxcDriver::snapshotCreate(const model::Domain& def, const SnapshotRequest& request,
                                                 Deadline deadline) {
  if (request.kind == model::SnapshotKind::external)
    return unsupported("containers have no disk images to put overlays on; take an internal (copy) snapshot");
  const std::string& dir = request.stateDir;
  if (dir.empty()) return unavailable("no directory for the snapshot's copy");
  VMM_ASSIGN(const std::string rootfs, rootfsDir(def));
  std::string copy = dir + "/rootfs";
  VMM_TRY(fs::makeDirs(copy, 0755));
  std::shared_ptr<Container> c;
  {
    MutexLock lock(mu_);
    auto it = containers_.find(def.name);
    if (it != containers_.end()) c = it->second;
  }
  bool wasFrozen = c && c->cgroups.frozen();
  if (c && !wasFrozen) VMM_TRY(c->cgroups.freeze(true, deadline));
  auto copied = copyTree(rootfs, copy, deadline);
  if (c && !wasFrozen) {
    auto thawed = c->cgroups.freeze(false, Deadline::after(Millis(10000)));
    if (!thawed.ok()) log::error("cannot thaw a container after its snapshot", {{"domain", def.name}, {"error", thawed.error().message}});
  }
  if (!copied.ok()) {
    (void)fs::removeTree(dir);
    return copied.error();
  }
  SnapshotResult out;
  out.driverData = {{"state", c ? (wasFrozen ? "paused" : "running") : "shutoff"}, {"rootfs_copy", copy}, {"rootfs", rootfs}};
  return out;
}

Result<SnapshotRevertResult> LxcDriver::snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot,
                                                       Deadline deadline) {
  {
    MutexLock lock(mu_);
    if (containers_.count(def.name)) return conflict("container " + def.name + " is running; stop it before reverting its rootfs");
  }
  std::string copy = snapshot.driverData.value("rootfs_copy", "");
  if (copy.empty() || !fs::isDirectory(copy)) return notFound("the snapshot's rootfs copy is missing (" + copy + ")");
  VMM_ASSIGN(const std::string rootfs, rootfsDir(def));
  // Replace the rootfs's content, keeping the directory itself (its owner and mode).
  std::string old = rootfs + ".revert-old";
  VMM_TRY(fs::removeTree(old));
  struct stat st{};
  if (::stat(rootfs.c_str(), &st) != 0) return systemError("stat " + rootfs, errno);
  if (::rename(rootfs.c_str(), old.c_str()) != 0) return systemError("moving " + rootfs + " aside", errno);
  bool made = ::mkdir(rootfs.c_str(), st.st_mode & 07777) == 0 && ::chown(rootfs.c_str(), st.st_uid, st.st_gid) == 0 &&
              ::chmod(rootfs.c_str(), st.st_mode & 07777) == 0;
  if (!made || !copyTree(copy, rootfs, deadline).ok()) {
    (void)fs::removeTree(rootfs);
    (void)::rename(old.c_str(), rootfs.c_str());
    return internalError("cannot restore " + rootfs + " from the snapshot; it is unchanged");
  }
  (void)fs::removeTree(old);
  return SnapshotRevertResult{};
}

Result<SnapshotDeleteResult> LxcDriver::snapshotDelete(const model::Domain&, const model::Snapshot& snapshot, Deadline) {
  std::string copy = snapshot.driverData.value("rootfs_copy", "");
  if (!copy.empty()) VMM_TRY(fs::removeTree(fs::dirName(copy)));
  return SnapshotDeleteResult{};
}

}  // namespace vmm::drivers::lxc
