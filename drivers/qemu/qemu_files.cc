// QEMU driver: the images QEMU works on are opened by vmmd and handed over as descriptors
// (QEMU's fd sets: `-add-fd` at start, QMP `add-fd` later), so a QEMU without privileges
// never opens an image by path (drivers/qemu/README.md, "Unprivileged QEMU").
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>

#include "base/json_util.h"
#include "base/loop_window.h"
#include "base/log.h"
#include "base/strings.h"
#include "drivers/qemu/qemu_instance.h"

namespace vmm::drivers::qemu {

// QEMU names a node "json:{...}" when its backing is not the file its header names (vmm's
// pinned chains, snapshot overlays on a descriptor): the image is then its protocol child's.
std::string QemuDriver::Instance::realFile(const std::string& qemuName) const {
  std::string name = qemuName;
  if (startsWith(name, "json:")) {
    // QEMU's words: parsed with the same size and depth limits as any other QMP answer.
    auto j = parseJson(std::string_view(name).substr(5), 1 << 20, kJsonMaxDepth, "QEMU's file name");
    const json* file = j.ok() ? jsonMember(*j, "file") : nullptr;
    if (file && file->is_object()) name = jsonStringOr(*file, "filename", name);
  }
  MutexLock lock(mu);
  auto it = fdsetFiles.find(name);
  return it == fdsetFiles.end() ? name : it->second;
}

Result<fs::UniqueFd> openImageFor(const std::string& path, bool writable) {
  // Without O_NONBLOCK a block device or FIFO could block; an image is neither a FIFO nor a
  // socket (checked below), and the flag is dropped again for QEMU.
  fs::UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return systemError("cannot open " + path + (writable ? " for writing" : ""), errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return systemError("cannot stat " + path, errno);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return invalidArgument(path + " is neither a file nor a block device");
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) return systemError("fcntl " + path, errno);
  return fd;
}

Result<fs::UniqueFd> openLayerFor(ResolvedDisk& layer, bool writable) {
  VMM_ASSIGN(auto fd, openImageFor(layer.path, writable));
  if (!layer.size) return fd;
  VMM_ASSIGN(auto window, openLoopWindow(fd.get(), layer.offset, layer.size, !writable));
  layer.offset = 0;
  layer.size = 0;
  layer.blockDevice = true;
  return window;
}

Result<int> passImage(QemuDriver::Instance& inst, const std::string& path, bool writable, Deadline deadline, int set) {
  VMM_ASSIGN(auto fd, openImageFor(path, writable));
  return passImageFd(inst, std::move(fd), path, deadline, set);
}

Result<int> passImageFd(QemuDriver::Instance& inst, fs::UniqueFd fd, const std::string& path, Deadline deadline, int set) {
  json args = {{"opaque", path}};
  if (set >= 0) args["fdset-id"] = set;
  VMM_ASSIGN(auto added, inst.qmp->execute("add-fd", args, deadline, fd.get()));
  auto id = jsonInt(added, "fdset-id");
  if (!id || *id < 0 || *id > INT32_MAX) return internalError("QEMU's add-fd answered without an fd set");
  MutexLock lock(inst.mu);
  inst.fdsetFiles[kFdsetPrefix + std::to_string(*id)] = path;
  return static_cast<int>(*id);
}

Status copyForQemu(int from, const std::string& dest, uid_t uid, gid_t gid) {
  fs::UniqueFd to(::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400));
  if (!to.valid()) return systemError("cannot create " + dest, errno);
  off_t offset = 0;
  while (true) {
    ssize_t n = ::copy_file_range(from, &offset, to.get(), nullptr, size_t{1} << 30, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return systemError("cannot copy into " + dest, errno);
    if (n == 0) break;
  }
  if (::fchown(to.get(), uid, gid) != 0) return systemError("chown " + dest, errno);
  return {};
}

std::optional<int> fdsetId(const std::string& qemuName) {
  if (!startsWith(qemuName, kFdsetPrefix)) return std::nullopt;
  auto id = parseInt(qemuName.substr(std::string_view(kFdsetPrefix).size()));
  if (!id || *id < 0 || *id > INT32_MAX) return std::nullopt;
  return static_cast<int>(*id);
}

void removeFdset(QemuDriver::Instance& inst, int set) {
  auto r = inst.qmp->execute("remove-fd", {{"fdset-id", set}}, Deadline::after(Millis(5000)));
  if (!r.ok()) log::warn("QEMU did not let go of an fd set", {{"domain", inst.name}, {"fdset", set}, {"error", r.error().message}});
  MutexLock lock(inst.mu);
  inst.fdsetFiles.erase(kFdsetPrefix + std::to_string(set));
}

void loadFdsets(QemuDriver::Instance& inst, Deadline deadline) {
  auto sets = inst.qmp->execute("query-fdsets", json::object(), deadline);
  if (!sets.ok() || !sets->is_array()) {
    log::warn("cannot list the images QEMU holds as descriptors", {{"domain", inst.name}});
    return;
  }
  MutexLock lock(inst.mu);
  for (const auto& s : *sets) {
    auto id = s.is_object() ? jsonInt(s, "fdset-id") : std::nullopt;
    const json* fds = s.is_object() ? jsonMember(s, "fds") : nullptr;
    if (!id || *id < 0 || !fds || !fds->is_array()) continue;
    for (const auto& f : *fds)
      if (auto opaque = f.is_object() ? jsonString(f, "opaque") : std::nullopt)
        inst.fdsetFiles[kFdsetPrefix + std::to_string(*id)] = *opaque;
  }
}

}  // namespace vmm::drivers::qemu
