// vmm-customize: applies a CustomizeSpec to one disk image with libguestfs.
// stdin: the request JSON (customize_spec.h); stdout: one reply JSON line; exit 0 on success.
// Run it in its own session with a deadline (guestfs_customizer.cc does): libguestfs blocks.
//
// Before libguestfs starts, the helper enters a private mount namespace (when it may), so that
//  - /tmp is a fresh tmpfs: libguestfs's and QEMU's temporary files vanish with the namespace,
//    even when the whole process group is killed;
//  - /lib/modules exists (supermin lstat()s it) on hosts without it, via an overlay on the
//    real lib directory - the host itself is never changed.
// An image under /tmp is bound into the new /tmp at its own path.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
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
  const std::string upper = "/tmp/.vmm-lib/upper", work = "/tmp/.vmm-lib/work";
  VMM_TRY(fs::makeDirs(upper));
  VMM_TRY(fs::makeDirs(work));
  std::string opts = "lowerdir=" + lib + ",upperdir=" + upper + ",workdir=" + work;
  if (mount("overlay", lib.c_str(), "overlay", 0, opts.c_str()) != 0) return systemError("overlay on " + lib, errno);
  if (mkdir("/lib/modules", 0755) != 0 && errno != EEXIST) return systemError("mkdir /lib/modules", errno);
  return okStatus();
}

// Keeps `image` reachable at its own path once /tmp is covered: its directory (or, directly in
// /tmp, the file itself) is bound into the new tmpfs from a descriptor opened beforehand.
Status rebindUnderTmp(const std::string& image, int dirFd) {
  std::string dir = fs::dirName(image);
  std::string source = "/proc/self/fd/" + std::to_string(dirFd);
  std::string target = dir;
  if (dir == "/tmp") {
    source += "/" + fs::baseName(image);
    target = image;
    fs::UniqueFd f(open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    if (!f.valid()) return systemError("creating a mount point for " + image, errno);
  } else {
    VMM_TRY(fs::makeDirs(target));
  }
  if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) return systemError("bind mount of " + target, errno);
  return okStatus();
}

// Enters the private mount namespace (see the top of the file); the image keeps its path.
Status isolate(const std::string& image) {
  bool haveModules = fs::exists("/lib/modules");
  if (unshare(CLONE_NEWNS) != 0) {
    // Unprivileged: run in the host's namespace (temporary files may then outlive a kill).
    if (haveModules) return okStatus();
    return unavailable("libguestfs needs /lib/modules, which this host lacks, and the helper may not create a private "
                       "mount namespace to provide it (" + std::string(strerror(errno)) + "): run as root or create /lib/modules");
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return systemError("making / private", errno);
  // Opened inside the new namespace: a bind mount's source must belong to it.
  std::string dir = fs::dirName(image);
  fs::UniqueFd dirFd(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dirFd.valid()) return systemError("open " + dir, errno);
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) return systemError("tmpfs on /tmp", errno);
  if (startsWith(image, "/tmp/")) VMM_TRY(rebindUnderTmp(image, dirFd.get()));
  if (!haveModules) VMM_TRY(overlayLibModules());
  setenv("TMPDIR", "/tmp", 1);
  return okStatus();
}

Result<CustomizeReport> run() {
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
  VMM_TRY(isolate(image));
  return applyCustomization(image, image, spec);
}

}  // namespace
}  // namespace vmm::customize

int main() {
  auto result = vmm::customize::run();
  std::cout << vmm::customize::customizeReplyToJson(result) << std::endl;
  return result.ok() ? 0 : 1;
}
