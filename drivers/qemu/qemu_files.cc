// QEMU driver: the images QEMU works on are opened by vmmd and handed over as descriptors
// (QEMU's fd sets: `-add-fd` at start, QMP `add-fd` later), so a QEMU without privileges
// never opens an image by path - except the backing files a disk given by path names in its
// own header, which QEMU then opens with its own uid's rights (drivers/qemu/README.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json_util.h"
#include "base/log.h"
#include "base/strings.h"
#include "drivers/qemu/qemu_instance.h"

namespace vmm::drivers::qemu {

// QEMU names a node "json:{...}" when its backing is not the file its header names (vmm's
// pinned chains, snapshot overlays on a descriptor): the image is then its protocol child's.
std::string QemuDriver::Instance::realFile(const std::string& qemuName) const {
  std::string name = qemuName;
  if (startsWith(name, "json:")) {
    json j = json::parse(name.substr(5), nullptr, false);
    if (j.is_object() && j.contains("file") && j["file"].is_object()) name = jsonStringOr(j["file"], "filename", name);
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

Result<int> passImage(QemuDriver::Instance& inst, const std::string& path, bool writable, Deadline deadline, int set) {
  VMM_ASSIGN(auto fd, openImageFor(path, writable));
  json args = {{"opaque", path}};
  if (set >= 0) args["fdset-id"] = set;
  VMM_ASSIGN(auto added, inst.qmp->execute("add-fd", args, deadline, fd.get()));
  int id = added.value("fdset-id", -1);
  if (id < 0) return internalError("QEMU's add-fd answered without an fd set");
  MutexLock lock(inst.mu);
  inst.fdsetFiles[kFdsetPrefix + std::to_string(id)] = path;
  return id;
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
    int id = s.is_object() ? s.value("fdset-id", -1) : -1;
    if (id < 0 || !s.contains("fds") || !s["fds"].is_array()) continue;
    for (const auto& f : s["fds"])
      if (f.is_object() && f.contains("opaque") && f["opaque"].is_string())
        inst.fdsetFiles[kFdsetPrefix + std::to_string(id)] = f["opaque"].get<std::string>();
  }
}

}  // namespace vmm::drivers::qemu
