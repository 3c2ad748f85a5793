#include "storage/dir/dir_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "model/names.h"
#include "model/units.h"
#include "storage/dir/dir_volume.h"
#include "storage/image_header.h"
#include "storage/image_inspect.h"
#include "storage/qemu_img.h"

namespace vmm::storage {

namespace {

}  // namespace

Status validateVolumeName(const std::string& name) {
  if (name.empty() || name.size() > 255) return invalidArgument("volume name " + quote(name) + " must have 1 to 255 characters");
  if (name[0] == '.') return invalidArgument("volume name " + quote(name) + " must not start with '.'");
  for (unsigned char c : name)
    if (c == '/' || c < 0x20 || c == 0x7f) return invalidArgument("volume name " + quote(name) + " must not contain '/' or control characters");
  return {};
}

Result<std::string> DirBackend::volumePath(const std::string& name) const {
  VMM_TRY(validateVolumeName(name));
  return pool_.path + "/" + name;
}

Status DirBackend::build(Deadline) {
  if (pool_.path.empty() || pool_.path[0] != '/') return invalidArgument("path: a dir pool needs an absolute directory");
  // Closed to host users: nothing in it is theirs (QEMU gets descriptors), and a directory
  // volume's tree (a container's rootfs, written as the host's root) stays out of their reach.
  return fs::makeDirs(pool_.path, 0700);
}

Status DirBackend::start(Deadline) {
  if (!fs::isDirectory(pool_.path)) return notFound("pool " + pool_.name + ": directory " + pool_.path + " does not exist (build the pool first)");
  if (::access(pool_.path.c_str(), R_OK | W_OK | X_OK) != 0) return systemError("pool " + pool_.name + ": " + pool_.path, errno);
  sweepTemporaryFiles();
  // Older versions made pool directories 0711, which let host users reach a directory volume's tree by name.
  struct stat st{};
  if (::lstat(pool_.path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 07777) == 0711) {
    if (::chmod(pool_.path.c_str(), 0700) == 0) log::info("closed the pool's directory to host users (0700)", {{"pool", pool_.name}});
  }
  repairVolumeModes();
  return {};
}

bool DirBackend::keepsHostUsersOut() const {
  struct stat pool{};
  return ::stat(pool_.path.c_str(), &pool) == 0 && pool.st_uid == 0 && !(pool.st_mode & 0011);
}

// Volumes made before vmmd ran with umask 077 were 0644: guest disks readable by every local
// user. Directory volumes made while the pool's directory was 0711 kept a 0700 top, which the
// container's users other than root cannot enter as "/". Only in a directory vmmd closed
// (root's, 0700): a pool an admin defines over a directory that is open to others (/srv/images,
// or /etc) holds files that are not vmmd's to change.
void DirBackend::repairVolumeModes() {
  const bool closedPool = keepsHostUsersOut();
  if (!closedPool) return;
  auto names = fs::listDir(pool_.path);
  if (!names.ok()) return;
  for (const auto& n : *names) {
    std::string path = pool_.path + "/" + n;
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
      if (::chmod(path.c_str(), st.st_mode & 07700) == 0) log::info("made a volume file private (go-rwx)", {{"pool", pool_.name}, {"file", n}});
      else log::warn("cannot make a volume file private", {{"pool", pool_.name}, {"file", n}, {"errno", errno}});
    } else if (S_ISDIR(st.st_mode) && closedPool && st.st_uid == 0 && (st.st_mode & 07777) == 0700 && validateVolumeName(n).ok() &&
               !model::hasTemporarySuffix(n) && n != "lost+found") {
      fs::UniqueFd top(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (top.valid() && ::fchmod(top.get(), 0755) == 0)
        log::info("opened a directory volume's top to its container's users (0755)", {{"pool", pool_.name}, {"volume", n}});
      else
        log::warn("cannot open a directory volume's top to its container's users", {{"pool", pool_.name}, {"volume", n}, {"errno", errno}});
    }
  }
}

// What a copy, upload or conversion that vmmd did not live to finish left behind. Volume names
// can never end in these suffixes, and the pool starts before any operation runs in it.
void DirBackend::sweepTemporaryFiles() {
  auto names = fs::listDir(pool_.path);
  if (!names.ok()) return;
  for (const auto& n : *names) {
    if (!model::hasTemporarySuffix(n)) continue;
    std::string path = pool_.path + "/" + n;
    struct stat lst{};
    bool dir = ::lstat(path.c_str(), &lst) == 0 && S_ISDIR(lst.st_mode);  // a symlink is removed, never followed
    auto st = dir ? fs::removeTree(path) : fs::removeFile(path);
    if (st.ok()) log::info("removed an unfinished volume file", {{"pool", pool_.name}, {"file", n}});
    else log::warn("cannot remove an unfinished volume file", {{"pool", pool_.name}, {"file", n}, {"error", st.error().message}});
  }
}

Status DirBackend::stop(Deadline) { return {}; }

Result<PoolCapacity> DirBackend::capacity(Deadline) {
  struct statvfs st{};
  if (::statvfs(pool_.path.c_str(), &st) != 0) return systemError("statvfs " + pool_.path, errno);
  PoolCapacity c;
  c.capacity = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  c.available = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  c.allocation = c.capacity - static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
  return c;
}

Result<model::Volume> DirBackend::describe(const std::string& name, const std::string& path, bool measure) const {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return notFound("pool " + pool_.name + " has no volume " + name);
    return systemError("stat " + path, errno);
  }
  model::Volume v;
  v.name = name;
  v.pool = pool_.name;
  v.path = path;
  if (S_ISDIR(st.st_mode)) {
    v.directory = true;
    if (measure) {
      auto usage = directoryUsage(path);
      v.capacity = usage.bytes;
      v.allocation = usage.allocated;
    }
    return v;
  }
  // A symlink could point anywhere on the host: never a volume.
  if (!S_ISREG(st.st_mode)) return notFound("pool " + pool_.name + " has no volume " + name + " (not a regular file or directory)");
  VMM_ASSIGN(auto h, readImageFileHeader(path));
  v.format = h.image.qcow2 ? model::DiskFormat::qcow2 : model::DiskFormat::raw;
  v.probe.fileSize = static_cast<uint64_t>(st.st_size);
  v.capacity = h.image.qcow2 ? h.image.virtualSize : v.probe.fileSize;
  v.allocation = static_cast<uint64_t>(st.st_blocks) * 512;
  v.probe.problem = h.problem;
  if (h.image.backingFormat) v.probe.backingFormat = model::enumFromName(model::kDiskFormats, *h.image.backingFormat);
  if (!h.backing.empty()) {
    // Only a volume of this pool can be a backing: named plainly (QEMU resolves it against the
    // image's directory) or by its path in the pool directory.
    std::string name = fs::dirName(h.backing) == pool_.path ? h.backing.substr(pool_.path.size() + 1) : h.backing;
    if (validateVolumeName(name).ok() && !model::hasTemporarySuffix(name)) v.backingVolume = name;
    else if (v.probe.problem.empty()) v.probe.problem = "its backing file " + quote(h.backing) + " is not a volume of pool " + pool_.name;
  }
  return v;
}

Result<std::vector<model::Volume>> DirBackend::listVolumes(Deadline) {
  VMM_ASSIGN(auto names, fs::listDir(pool_.path));
  std::vector<model::Volume> out;
  for (const auto& n : names) {
    if (!validateVolumeName(n).ok() || model::hasTemporarySuffix(n)) continue;
    auto v = describe(n, pool_.path + "/" + n);
    if (v.ok()) out.push_back(std::move(*v));
  }
  return out;
}

Status DirBackend::destroyStorage(Deadline) {
  VMM_ASSIGN(auto names, fs::listDir(pool_.path));
  if (!names.empty()) return conflict("pool " + pool_.name + ": " + pool_.path + " is not empty (" + std::to_string(names.size()) + " entries)");
  if (::rmdir(pool_.path.c_str()) != 0 && errno != ENOENT) return systemError("rmdir " + pool_.path, errno);
  return {};
}

Result<model::Volume> DirBackend::createVolume(const model::VolumeSpec& spec, const model::Volume* base, Deadline deadline) {
  VMM_ASSIGN(auto path, volumePath(spec.name));
  if (fs::exists(path)) return conflict("pool " + pool_.name + " already has a volume " + spec.name);
  if (spec.directory) return createDirectoryVolume(spec, path, deadline);
  if (!spec.fromTar.empty()) return invalidArgument("from_tar: only a volume of format \"dir\" is unpacked from a tarball");
  CreateImage c;
  c.path = path;
  c.format = spec.format;
  c.size = spec.capacity;
  c.preallocate = spec.preallocate;
  if (base) {
    if (spec.format != model::DiskFormat::qcow2) return invalidArgument("format: a volume on a backing volume must be qcow2");
    if (base->directory) return invalidArgument("backing_volume: " + base->name + " is a directory volume");
    VMM_ASSIGN(c.backingFile, volumePath(base->name));
    c.backingFormat = base->format;
    if (c.size && c.size < base->capacity) return invalidArgument("capacity: smaller than the backing volume " + base->name);
    if (!c.size) c.size = base->capacity;
  } else if (spec.capacity == 0) {
    return invalidArgument("capacity: must be greater than 0");
  } else {
    // Thin images could overcommit, but a volume that can never be filled is a mistake.
    VMM_ASSIGN(auto cap, capacity(deadline));
    if (spec.capacity > cap.available)
      return invalidArgument("capacity: " + model::humanSize(spec.capacity) + " is more than the pool's free space (" + model::humanSize(cap.available) + ")");
  }
  Reverter revert;
  revert.add([path] { (void)fs::removeFile(path); });
  VMM_TRY(createImage(c, deadline));
  VMM_ASSIGN(auto v, describe(spec.name, path));
  revert.success();
  return v;
}

// Built under a temporary name and renamed: a failed unpack never looks like a volume.
Result<model::Volume> DirBackend::createDirectoryVolume(const model::VolumeSpec& spec, const std::string& path, Deadline deadline) {
  std::string partial = path + ".partial";
  (void)fs::removeTree(partial);  // left by a crash
  if (::mkdir(partial.c_str(), 0700) != 0) return systemError("creating " + partial, errno);
  Reverter revert;
  revert.add([partial] { (void)fs::removeTree(partial); });
  if (!spec.fromTar.empty()) VMM_TRY(unpackTarball(spec.fromTar, partial, deadline, unpack_));
  // The tree's top is the container's "/", which its users other than root must be able to
  // enter: 0755 where the pool's directory keeps host users out, else 0700.
  if (keepsHostUsersOut() && ::chmod(partial.c_str(), 0755) != 0) return systemError("chmod " + partial, errno);
  if (::rename(partial.c_str(), path.c_str()) != 0) return systemError("rename " + partial, errno);
  revert.success();
  return describe(spec.name, path);
}

Result<model::Volume> DirBackend::volumeInfo(const std::string& name, Deadline) {
  VMM_ASSIGN(auto path, volumePath(name));
  return describe(name, path);
}

Result<model::Volume> DirBackend::lookup(const std::string& name) const {
  VMM_ASSIGN(auto path, volumePath(name));
  return describe(name, path, false);
}

Status DirBackend::deleteVolume(const std::string& name, Deadline) {
  VMM_ASSIGN(auto v, lookup(name));
  if (v.directory) return fs::removeTree(v.path);
  if (::unlink(v.path.c_str()) != 0) return systemError("deleting " + v.path, errno);
  return {};
}

Status DirBackend::resizeVolume(const model::Volume& v, uint64_t capacity, bool allowShrink, Deadline deadline) {
  if (v.directory) return invalidArgument("volume " + v.name + " is a directory volume: it has no fixed size to change");
  if (capacity == 0) return invalidArgument("capacity: must be greater than 0");
  if (capacity < v.capacity && !allowShrink)
    return invalidArgument("capacity: " + model::formatSize(capacity) + " is smaller than the volume (" + model::formatSize(v.capacity) + "); shrinking loses data and must be asked for");
  VMM_ASSIGN(auto path, volumePath(v.name));
  return resizeImage(path, v.format, capacity, allowShrink, deadline);
}

Result<model::Volume> DirBackend::cloneVolume(const model::Volume& src, const std::string& name, const CloneOptions& options,
                                              Deadline deadline) {
  VMM_ASSIGN(auto srcPath, volumePath(src.name));
  VMM_ASSIGN(auto path, volumePath(name));
  if (fs::exists(path)) return conflict("pool " + pool_.name + " already has a volume " + name);
  if (options.linked && !src.directory) {
    model::VolumeSpec spec;
    spec.name = name;
    spec.format = model::DiskFormat::qcow2;
    spec.backingVolume = src.name;
    return createVolume(spec, &src, deadline);
  }
  auto cap = capacity(deadline);
  if (cap.ok() && src.allocation > cap->available)
    return invalidArgument("the copy needs up to " + model::formatSize(src.allocation) + " but the pool has " + model::formatSize(cap->available) + " free");
  // Written under a temporary name: a failed or interrupted copy never looks like a volume.
  std::string partial = path + ".partial";
  Reverter revert;
  if (src.directory) {
    // A directory is always copied (reflinked where the filesystem can): there is no overlay.
    (void)fs::removeTree(partial);
    revert.add([partial] { (void)fs::removeTree(partial); });
    VMM_TRY(copyDirectory(srcPath, partial, deadline));
  } else {
    revert.add([partial] { (void)fs::removeFile(partial); });
    // The recorded format: a raw volume is copied byte for byte whatever its first bytes say.
    VMM_TRY(convertImage(srcPath, src.format, partial, src.format, options.progress, deadline));
  }
  if (::rename(partial.c_str(), path.c_str()) != 0) return systemError("rename " + partial, errno);
  revert.success();
  return describe(name, path);
}

Status DirBackend::wipeVolume(const model::Volume& v, const model::Volume* base, Deadline deadline) {
  if (v.directory) return invalidArgument("volume " + v.name + " is a directory volume: delete it and create it again to empty it");
  VMM_ASSIGN(auto path, volumePath(v.name));
  // Recreate the image empty with the same format and size (a qcow2 wipe drops its clusters).
  std::string fresh = path + ".partial";
  CreateImage c;
  c.path = fresh;
  c.format = v.format;
  c.size = v.capacity;
  if (base) {  // a linked clone stays one, on the same base, in the base's recorded format
    VMM_ASSIGN(c.backingFile, volumePath(base->name));
    c.backingFormat = base->format;
  }
  (void)fs::removeFile(fresh);
  VMM_TRY(createImage(c, deadline));
  if (::rename(fresh.c_str(), path.c_str()) != 0) {
    (void)fs::removeFile(fresh);
    return systemError("rename " + fresh, errno);
  }
  return {};
}

namespace {

// Reads a volume file, or writes a new one under a temporary name renamed over it at finish().
class FileStream final : public VolumeStream {
 public:
  FileStream(fs::UniqueFd fd, uint64_t size, std::string tempPath, std::string finalPath)
      : fd_(std::move(fd)), size_(size), temp_(std::move(tempPath)), final_(std::move(finalPath)) {}
  ~FileStream() override {
    if (!temp_.empty()) (void)fs::removeFile(temp_);
  }
  uint64_t size() const override { return size_; }
  Result<size_t> read(uint64_t offset, char* buf, size_t len, Deadline) override {
    ssize_t n = ::pread(fd_.get(), buf, len, static_cast<off_t>(offset));
    if (n < 0) return systemError("reading " + final_, errno);
    return static_cast<size_t>(n);
  }
  Status write(uint64_t offset, const char* buf, size_t len, Deadline) override {
    if (temp_.empty()) return invalidArgument("the volume was opened for reading");
    while (len > 0) {
      ssize_t n = ::pwrite(fd_.get(), buf, len, static_cast<off_t>(offset));
      if (n < 0) return systemError("writing " + final_, errno);
      buf += n;
      len -= static_cast<size_t>(n);
      offset += static_cast<uint64_t>(n);
    }
    return {};
  }
  Status finish(Deadline) override {
    if (temp_.empty()) return {};
    if (::fsync(fd_.get()) != 0) return systemError("fsync " + temp_, errno);
    if (::rename(temp_.c_str(), final_.c_str()) != 0) return systemError("rename " + temp_, errno);
    temp_.clear();
    return {};
  }

 private:
  fs::UniqueFd fd_;
  uint64_t size_;
  std::string temp_, final_;
};

}  // namespace

Result<std::unique_ptr<VolumeStream>> DirBackend::openVolume(const std::string& name, StreamMode mode, Deadline) {
  VMM_ASSIGN(auto v, lookup(name));
  if (v.directory)
    return invalidArgument("volume " + name + " is a directory volume: it has no bytes to upload or download "
                           "(create it with from_tar to fill it from a tarball)");
  if (mode == StreamMode::read) {
    fs::UniqueFd fd(::open(v.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return systemError("opening " + v.path, errno);
    struct stat st{};
    ::fstat(fd.get(), &st);
    return std::unique_ptr<VolumeStream>(new FileStream(std::move(fd), static_cast<uint64_t>(st.st_size), "", v.path));
  }
  std::string temp = v.path + ".upload.partial";
  VMM_TRY(fs::removeFile(temp));  // a leftover, or a planted symlink: removed, never written through
  VMM_ASSIGN(auto fd, fs::createExclusive(temp, 0600));
  return std::unique_ptr<VolumeStream>(new FileStream(std::move(fd), 0, temp, v.path));
}

Result<model::ResolvedDisk> DirBackend::resolve(const model::Volume& v, Deadline) {
  model::ResolvedDisk r;
  VMM_ASSIGN(r.path, volumePath(v.name));
  r.format = v.format;
  r.directory = v.directory;
  return r;
}

}  // namespace vmm::storage
