#include "base/private_root.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "base/idmapped_mount.h"
#include "base/strings.h"

namespace vmm {

void addHostPath(PrivateRoot& root, const std::string& path, bool writable) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    if (n > 0) root.symlinks.emplace_back(path, std::string(target, static_cast<size_t>(n)));
    return;
  }
  root.binds.push_back({path, path, writable});
}

void addSystemFiles(PrivateRoot& root) {
  for (const char* dir : {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) addHostPath(root, dir);
  if (::access("/etc/ld.so.cache", F_OK) == 0) root.binds.push_back({"/etc/ld.so.cache", "/etc/ld.so.cache", false});
}

Result<PreparedRoot> prepareRoot(const PrivateRoot& root) {
  if (root.mountPoint.empty() || root.mountPoint[0] != '/') return invalidArgument("a private root needs an absolute mount point");
  PreparedRoot out;
  out.mountPoint = root.mountPoint;
  out.oldRoot = root.mountPoint + "/.old-root";
  out.cwd = root.cwd;
  std::set<std::string> made;
  // Every directory above `inside` (and it, when `self`), in the new root, parents first.
  auto makeDirs = [&](const std::string& inside, bool self) {
    std::string path;
    auto parts = split(inside, '/', true);
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i + 1 == parts.size() && !self) break;
      path += "/" + parts[i];
      if (made.insert(path).second) out.directories.push_back(root.mountPoint + path);
    }
  };
  for (const auto& b : root.binds) {
    if (b.target.empty() || b.target[0] != '/' || b.target.find("/..") != std::string::npos)
      return invalidArgument("private root: " + quote(b.target) + " is not an absolute path");
    struct stat st{};
    if (::stat(b.source.c_str(), &st) != 0) return systemError("private root: " + b.source, errno);
    bool file = !S_ISDIR(st.st_mode);
    makeDirs(b.target, !file);
    // A read-only remount states every flag: the source's nodev/noexec are kept, never cleared.
    struct statvfs vfs{};
    if (::statvfs(b.source.c_str(), &vfs) != 0) return systemError("private root: statvfs " + b.source, errno);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID;
    if (vfs.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (vfs.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    out.mounts.push_back({b.source, root.mountPoint + b.target, b.writable, file, flags});
    if (b.rootShownAs) {
      VMM_ASSIGN(int userns, userNamespaceShowingRootAs(*b.rootShownAs));
      DetachedMountOptions options;
      options.readOnly = !b.writable;
      options.nodev = (vfs.f_flag & ST_NODEV) != 0;
      options.nosuid = true;
      options.idmapUserns = userns;
      VMM_ASSIGN(auto tree, detachedMount(b.source, options));
      out.mounts.back().tree = tree.get();
      out.trees.push_back(std::move(tree));
    }
  }
  for (const auto& [path, text] : root.symlinks) {
    makeDirs(path, false);
    out.symlinks.emplace_back(root.mountPoint + path, text);
  }
  for (const auto& d : root.devices) {
    if (!startsWith(d.target, "/dev/") || d.target.find("/..") != std::string::npos || d.target.find('/', 5) != std::string::npos)
      return invalidArgument("private root: a device node goes straight under /dev, not at " + quote(d.target));
    struct stat st{};
    if (::stat(d.source.c_str(), &st) != 0) return systemError("private root: " + d.source, errno);
    if (!S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode)) return invalidArgument("private root: " + quote(d.source) + " is not a device node");
    makeDirs("/dev", true);
    out.deviceDir = root.mountPoint + "/dev";
    out.nodes.push_back({root.mountPoint + d.target, (st.st_mode & S_IFMT) | 0600, st.st_rdev, d.owner});
  }
  for (const auto& [path, bytes] : root.scratch) {
    if (path.empty() || path[0] != '/' || path.find("/..") != std::string::npos)
      return invalidArgument("private root: " + quote(path) + " is not an absolute path");
    makeDirs(path, true);
    out.scratch.emplace_back(root.mountPoint + path, "mode=1777,size=" + std::to_string(bytes));
  }
  if (root.proc) {
    makeDirs("/proc", true);
    out.proc = root.mountPoint + "/proc";
    out.procReadOnly = root.procReadOnly;
  }
  makeDirs("/.old-root", true);
  return out;
}

namespace {

constexpr const char* kSteps[] = {
    "unshare(CLONE_NEWNS)", "make / private", "mount the root tmpfs", "mkdir in the new root", "create a bind target",
    "bind mount", "make a bind mount read-only", "symlink in the new root", "mount a scratch tmpfs", "mount proc", "pivot_root", "chdir /",
    "detach the old root", "rmdir the old root's mount point", "make the new root read-only", "chdir in the new root",
    "mount the /dev tmpfs", "make a device node", "make the /dev tmpfs read-only"};

enum Step { kUnshare, kMakePrivate, kMountTmpfs, kMkdir, kCreateTarget, kBind, kReadOnlyBind, kSymlink, kMountScratch, kMountProc,
            kPivotRoot, kChdirSlash, kDetachOld, kRemoveOld, kReadOnlyRoot, kChdir, kMountDev, kMknod, kReadOnlyDev };

int fail(int* step, Step what) {
  *step = what;
  return errno ? errno : EINVAL;
}

}  // namespace

int enterRoot(const PreparedRoot& r, int* step) {
  // The new root's directories and bind targets are 0755/0644 whatever the parent's umask
  // (vmmd's 077 would close them to the unprivileged child); its own umask is given back.
  mode_t umaskBefore = ::umask(022);
  if (::unshare(CLONE_NEWNS) != 0) return fail(step, kUnshare);
  // Nothing done here propagates back to the host's mounts.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return fail(step, kMakePrivate);
  if (::mount("tmpfs", r.mountPoint.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
    return fail(step, kMountTmpfs);
  for (const auto& d : r.directories)
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return fail(step, kMkdir);
  // Scratch tmpfs first, then the directories again: a bind below a scratch path (an image
  // under /tmp) is made on the tmpfs, not hidden by it.
  for (const auto& [path, options] : r.scratch)
    if (::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) return fail(step, kMountScratch);
  // Without nodev, unlike the root and scratch tmpfs: it holds the nodes made here and the
  // binds below /dev.
  if (!r.deviceDir.empty() && ::mount("tmpfs", r.deviceDir.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0)
    return fail(step, kMountDev);
  if (!r.scratch.empty() || !r.deviceDir.empty())
    for (const auto& d : r.directories)
      if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return fail(step, kMkdir);
  for (const auto& m : r.mounts) {
    if (m.file) {
      int fd = ::open(m.target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0) return fail(step, kCreateTarget);
      ::close(fd);
    }
    if (m.tree >= 0) {
      if (attachDetachedMount(m.tree, m.target.c_str()) != 0) return fail(step, kBind);
      continue;
    }
    if (::mount(m.source.c_str(), m.target.c_str(), nullptr, MS_BIND, nullptr) != 0) return fail(step, kBind);
    if (!m.writable && ::mount(nullptr, m.target.c_str(), nullptr, m.readOnlyFlags, nullptr) != 0)
      return fail(step, kReadOnlyBind);
  }
  // A device number read by the parent: a device detached and another attached under the same
  // number in between (root's doing, milliseconds) would be the one reached.
  for (const auto& n : r.nodes)
    if (::mknod(n.target.c_str(), n.mode, n.rdev) != 0 || ::chown(n.target.c_str(), n.owner, n.owner) != 0) return fail(step, kMknod);
  for (const auto& [path, text] : r.symlinks)
    if (::symlink(text.c_str(), path.c_str()) != 0) return fail(step, kSymlink);
  if (!r.deviceDir.empty() &&
      ::mount(nullptr, r.deviceDir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0)
    return fail(step, kReadOnlyDev);
  const unsigned long procFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (!r.proc.empty() && ::mount("proc", r.proc.c_str(), "proc", procFlags, nullptr) != 0)
    return fail(step, kMountProc);
  if (!r.proc.empty() && r.procReadOnly && ::mount(nullptr, r.proc.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | procFlags, nullptr) != 0)
    return fail(step, kMountProc);
  if (::syscall(SYS_pivot_root, r.mountPoint.c_str(), r.oldRoot.c_str()) != 0) return fail(step, kPivotRoot);
  if (::chdir("/") != 0) return fail(step, kChdirSlash);
  if (::umount2("/.old-root", MNT_DETACH) != 0) return fail(step, kDetachOld);
  if (::rmdir("/.old-root") != 0) return fail(step, kRemoveOld);
  if (::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0)
    return fail(step, kReadOnlyRoot);
  if (::chdir(r.cwd.c_str()) != 0) return fail(step, kChdir);
  ::umask(umaskBefore);
  return 0;
}

std::string rootStepName(int step) {
  if (step < 0 || step >= static_cast<int>(sizeof kSteps / sizeof *kSteps)) return "enter the private root";
  return kSteps[step];
}

}  // namespace vmm
