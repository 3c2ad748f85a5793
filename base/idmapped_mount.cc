#include "base/idmapped_mount.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <mutex>

#include "base/process.h"

namespace vmm {

namespace {

// glibc 2.36's <sys/mount.h> and <linux/mount.h> clash: the new mount API's constants here.
constexpr unsigned kOpenTreeClone = 1;
constexpr unsigned kAtRecursive = 0x8000;
constexpr unsigned kMoveMountFromEmptyPath = 0x04;
constexpr uint64_t kMountAttrReadOnly = 0x1;
constexpr uint64_t kMountAttrNosuid = 0x2;
constexpr uint64_t kMountAttrNodev = 0x4;
constexpr uint64_t kMountAttrIdmap = 0x00100000;
struct MountAttr {
  uint64_t attrSet, attrClear, propagation, usernsFd;
};

Status writeMap(pid_t pid, const char* file, uint32_t id) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  std::string map = "0 " + std::to_string(id) + " 1\n";
  fs::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return systemError("cannot open " + path, errno);
  if (::write(fd.get(), map.data(), map.size()) != static_cast<ssize_t>(map.size())) return systemError("cannot write " + path, errno);
  return {};
}

Result<fs::UniqueFd> makeUserNamespace(uint32_t id) {
  int hold[2];
  if (::pipe2(hold, O_CLOEXEC) != 0) return systemError("pipe2", errno);
  fs::UniqueFd readEnd(hold[0]), writeEnd(hold[1]);
  // A child in the new namespace waits until its maps are written and the namespace is held.
  pid_t pid = ChildReaper::fork(CLONE_NEWUSER);
  if (pid < 0) return systemError("cannot create a user namespace (clone)", errno);
  if (pid == 0) {
    // Only the pipe: a descriptor of vmmd's held here (another child's output) would keep it open.
    int keep = readEnd.get();
    ::syscall(SYS_close_range, 0U, static_cast<unsigned>(keep - 1), 0U);
    ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U);
    char c;
    (void)!::read(readEnd.get(), &c, 1);
    _exit(0);
  }
  readEnd.reset();
  Result<fs::UniqueFd> out = [&]() -> Result<fs::UniqueFd> {
    VMM_TRY(writeMap(pid, "uid_map", id));
    VMM_TRY(writeMap(pid, "gid_map", id));
    std::string path = "/proc/" + std::to_string(pid) + "/ns/user";
    fs::UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) return systemError("cannot open " + path, errno);
    return ns;
  }();
  writeEnd.reset();
  (void)ChildReaper::wait(pid, Deadline::after(Millis(5000)));
  return out;
}

}  // namespace

Result<fs::UniqueFd> detachedMount(const std::string& path, const DetachedMountOptions& o) {
  unsigned flags = kOpenTreeClone | O_CLOEXEC | (o.recursive ? kAtRecursive : 0);
  fs::UniqueFd tree(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path.c_str(), flags)));
  if (!tree.valid()) return systemError("cannot copy the mount of " + path, errno);
  MountAttr attr{};
  attr.attrSet = (o.readOnly ? kMountAttrReadOnly : 0) | (o.nosuid ? kMountAttrNosuid : 0) | (o.nodev ? kMountAttrNodev : 0) |
                 (o.idmapUserns >= 0 ? kMountAttrIdmap : 0);
  attr.usernsFd = o.idmapUserns >= 0 ? static_cast<uint64_t>(o.idmapUserns) : 0;
  if (attr.attrSet != 0 &&
      ::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH | (o.recursive ? kAtRecursive : 0), &attr, sizeof(attr)) != 0) {
    int err = errno;
    if (o.idmapUserns >= 0 && (err == EINVAL || err == EPERM))
      return systemError("cannot map the ids of " + path + " (its filesystem needs idmapped mounts: ext4, xfs, btrfs, tmpfs 6.3+)", err);
    return systemError("cannot set the flags of the mount of " + path, err);
  }
  return tree;
}

Result<int> userNamespaceShowingRootAs(uint32_t id) {
  static std::mutex mu;
  static std::map<uint32_t, fs::UniqueFd> made;
  {
    std::lock_guard lock(mu);
    auto it = made.find(id);
    if (it != made.end()) return it->second.get();
  }
  // Made without the lock (a fork and /proc writes); a thread that made one first wins and
  // this one is closed.
  VMM_ASSIGN(auto ns, makeUserNamespace(id));
  std::lock_guard lock(mu);
  return made.emplace(id, std::move(ns)).first->second.get();
}

int attachDetachedMount(int tree, const char* target) {
  return static_cast<int>(::syscall(SYS_move_mount, tree, "", AT_FDCWD, target, kMoveMountFromEmptyPath));
}

}  // namespace vmm
