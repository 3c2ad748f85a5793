// vmm-customize: applies a CustomizeSpec to one disk image with libguestfs.
// stdin: the request JSON (customize_spec.h); stdout: one reply JSON line; exit 0 on success.
// `vmm-customize --check` instead launches the appliance on no image and shuts it down
// (scripts/setup-guestfs.sh runs it, so a set-up that cannot start is noticed there).
// Run it in its own session with a deadline (guestfs_customizer.cc does): libguestfs blocks.
//
// `vmm-customize --sandboxed` is the helper vmmd confines (guestfs_customizer.h): it finds its
// private /tmp made and changes no mounts. Otherwise, before libguestfs starts, it enters a
// private mount namespace (when it may), so that
//  - /tmp is a fresh tmpfs: libguestfs's and QEMU's temporary files (as root, libguestfs puts its
//    sockets in /tmp whatever TMPDIR says) vanish with the namespace, even when the whole session
//    is killed;
//  - everything that was in the host's /tmp stays reachable at its own path: each entry is
//    bound (or, for a symlink, copied) into the new tmpfs, so a build tree, a state directory
//    or an image under /tmp (the appliance's kernel and cache, the disk) is still found;
//  - /lib/modules exists (supermin lstat()s it) on hosts without it, via an overlay on the
//    real lib directory - the host itself is never changed.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>

#include "base/fs.h"
#include "base/strings.h"
#include "storage/customize/customize_spec.h"
#include "storage/customize/guestfs_apply.h"

namespace vmm::customize {
namespace {

constexpr size_t kMaxRequest = 256u << 20;

Status overlayLibModules() {
  char* libReal = realpath("/lib", nullptr);
  if (!libReal) return systemError("realpath /lib", errno);
  std::string lib(libReal);
  free(libReal);
  // mkdtemp: the name cannot clash with an entry mirrored from the host's /tmp.
  char scratch[] = "/tmp/.vmm-lib-XXXXXX";
  if (!mkdtemp(scratch)) return systemError("mkdtemp in the private /tmp", errno);
  const std::string upper = std::string(scratch) + "/upper", work = std::string(scratch) + "/work";
  VMM_TRY(fs::makeDirs(upper));
  VMM_TRY(fs::makeDirs(work));
  std::string opts = "lowerdir=" + lib + ",upperdir=" + upper + ",workdir=" + work;
  if (mount("overlay", lib.c_str(), "overlay", 0, opts.c_str()) != 0) return systemError("overlay on " + lib, errno);
  if (mkdir("/lib/modules", 0755) != 0 && errno != EEXIST) return systemError("mkdir /lib/modules", errno);
  return okStatus();
}

// Makes the host's /tmp/NAME (reached through `hostTmp`, a descriptor of the covered /tmp)
// appear at /tmp/NAME again: a symlink is copied, anything else bound with its submounts. An
// entry that vanished meanwhile is skipped.
Status mirrorEntry(int hostTmp, const std::string& name) {
  std::string target = "/tmp/" + name;
  struct stat st {};
  if (fstatat(hostTmp, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return okStatus();
    return systemError("stat /tmp/" + name, errno);
  }
  if (S_ISLNK(st.st_mode)) {
    std::string link(4096, '\0');
    ssize_t n = readlinkat(hostTmp, name.c_str(), link.data(), link.size());
    if (n < 0) return errno == ENOENT ? okStatus() : systemError("readlink /tmp/" + name, errno);
    link.resize(static_cast<size_t>(n));
    if (symlink(link.c_str(), target.c_str()) != 0) return systemError("symlink " + target, errno);
    return okStatus();
  }
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(target.c_str(), 0700) != 0) return systemError("mkdir " + target, errno);
  } else {
    fs::UniqueFd f(open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
    if (!f.valid()) return systemError("creating a mount point for " + target, errno);
  }
  std::string source = "/proc/self/fd/" + std::to_string(hostTmp) + "/" + name;
  if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    if (errno == ENOENT) return okStatus();
    return systemError("bind mount of " + target, errno);
  }
  return okStatus();
}

// Enters the private mount namespace (see the top of the file).
Status isolate() {
  bool haveModules = fs::exists("/lib/modules");
  if (unshare(CLONE_NEWNS) != 0) {
    // Unprivileged: run in the host's namespace (temporary files may then outlive a kill).
    if (haveModules) return okStatus();
    return unavailable("libguestfs needs /lib/modules, which this host lacks, and the helper may not create a private "
                       "mount namespace to provide it (" + std::string(strerror(errno)) + "): run as root or create /lib/modules");
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return systemError("making / private", errno);
  // Opened inside the new namespace: a bind mount's source must belong to it.
  fs::UniqueFd hostTmp(open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!hostTmp.valid()) return systemError("open /tmp", errno);
  VMM_ASSIGN(auto entries, fs::listDir("/tmp"));
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) return systemError("tmpfs on /tmp", errno);
  for (const auto& name : entries) VMM_TRY(mirrorEntry(hostTmp.get(), name));
  if (!haveModules) VMM_TRY(overlayLibModules());
  setenv("TMPDIR", "/tmp", 1);
  return okStatus();
}

// `sandboxed`: vmmd already gave the helper a private root with its own /tmp (and no root to
// unshare with).
Result<CustomizeReport> run(bool sandboxed) {
  std::string input;
  char buf[65536];
  while (input.size() <= kMaxRequest) {
    size_t n = fread(buf, 1, sizeof buf, stdin);
    if (n == 0) break;
    input.append(buf, n);
  }
  if (input.size() > kMaxRequest) return invalidArgument("customize request too large");
  VMM_ASSIGN(auto request, customizeRequestFromJson(input));
  const auto& [image, spec] = request;
  if (image[0] != '/') return invalidArgument("image path must be absolute: " + image);
  if (!sandboxed) VMM_TRY(isolate());
  return applyCustomization(image, image, spec);
}

Result<CustomizeReport> check() {
  VMM_TRY(isolate());
  return checkAppliance();
}

}  // namespace
}  // namespace vmm::customize

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (argc > 2 || (!mode.empty() && mode != "--check" && mode != "--sandboxed")) {
    std::cerr << "usage: vmm-customize [--check | --sandboxed] (a request on stdin; see storage/customize/customize_spec.h)\n";
    return 2;
  }
  auto result = mode == "--check" ? vmm::customize::check() : vmm::customize::run(mode == "--sandboxed");
  std::cout << vmm::customize::customizeReplyToJson(result) << std::endl;
  return result.ok() ? 0 : 1;
}
