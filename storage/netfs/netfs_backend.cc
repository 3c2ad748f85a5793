#include "storage/netfs/netfs_backend.h"

#include <cstring>

#include "base/json_util.h"
#include "base/log.h"
#include "base/process.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "model/units.h"
#include "storage/dir/dir_backend.h"
#include "storage/image_header.h"
#include "storage/image_inspect.h"
#include "storage/netfs/netfs_volume_stream.h"
#include "storage/qemu_img.h"

namespace vmm::storage {

namespace {

constexpr size_t kHeaderBytes = 4096;  // qemu keeps the qcow2 header and backing name in here
constexpr Millis kUnmountTime = Millis(2000);

bool urlSafe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || std::strchr("._-+~=,@", c);
}

// Temporary files start with '.', which no volume name does: listings never show them.
std::string partialName(const std::string& name) { return "." + name + ".partial"; }
std::string uploadName(const std::string& name) { return "." + name + ".upload"; }
std::string inExport(const std::string& file) { return "/" + file; }

std::string fmt(model::DiskFormat f) { return std::string(model::enumName(model::kDiskFormats, f)); }

}  // namespace

Status validateNetfsVolumeName(const std::string& name) {
  VMM_TRY(validateVolumeName(name));
  if (name.size() > 200) return invalidArgument("volume name " + quote(name) + " is longer than 200 bytes");
  for (char c : name)
    if (!urlSafe(c))
      return invalidArgument("volume name " + quote(name) + ": netfs volume names may only use letters, digits and \"._-+~=,@\"");
  return {};
}

NetfsBackend::NetfsBackend(model::Pool pool) : pool_(std::move(pool)), dir_(pool_.source.dir) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

Status NetfsBackend::checkSource() const {
  const auto& host = pool_.source.host;
  if (host.empty()) return invalidArgument("source.host: a netfs pool needs the NFS server's address");
  for (char c : host)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
      return invalidArgument("source.host " + quote(host) + ": must be a host name or an IPv4 address");
  if (pool_.source.port != 0)
    return invalidArgument("source.port: netfs pools find the NFS and MOUNT services through the server's portmapper; leave the port unset");
  if (dir_.empty() || dir_[0] != '/') return invalidArgument("source.dir: the exported directory must be an absolute path");
  for (const auto& part : split(dir_, '/', true))
    if (part == "." || part == "..") return invalidArgument("source.dir " + quote(dir_) + ": must not contain . or ..");
  for (char c : dir_)
    if (c != '/' && !urlSafe(c)) return invalidArgument("source.dir " + quote(dir_) + ": may only use letters, digits, '/' and \"._-+~=,@\"");
  return {};
}

std::string NetfsBackend::url(const std::string& file) const {
  return "nfs://" + pool_.source.host + (dir_ == "/" ? "" : dir_) + "/" + file;
}

Result<std::shared_ptr<NfsClient>> NetfsBackend::client() const {
  MutexLock g(mu_);
  if (!client_) return unavailable("pool " + pool_.name + " is not started");
  if (!client_->healthy()) return unavailable("pool " + pool_.name + ": the connection to " + pool_.source.host + " failed; stop and start the pool");
  return client_;
}

Status NetfsBackend::build(Deadline) { return checkSource(); }

Status NetfsBackend::start(Deadline deadline) {
  VMM_TRY(checkSource());
  {
    MutexLock g(mu_);
    if (client_ && client_->healthy()) return {};
  }
  auto mounted = NfsClient::mount(pool_.source.host, dir_, deadline);
  if (!mounted.ok()) return mounted.error().wrap("pool " + pool_.name);
  MutexLock g(mu_);
  client_ = std::move(*mounted);
  return {};
}

Status NetfsBackend::stop(Deadline deadline) {
  std::shared_ptr<NfsClient> nfs;
  {
    MutexLock g(mu_);
    nfs.swap(client_);
  }
  if (!nfs) return {};
  // UMNT is advisory in NFSv3: the pool is stopped here even if the server does not answer.
  auto st = nfs->unmount(deadline.earlier(Deadline::after(kUnmountTime)));
  if (!st.ok()) log::warn("netfs pool stopped without unmounting", {{"pool", pool_.name}, {"error", st.error().message}});
  return {};
}

Result<PoolCapacity> NetfsBackend::capacity(Deadline deadline) {
  VMM_ASSIGN(auto nfs, client());
  VMM_ASSIGN(auto space, nfs->statvfs(deadline));
  PoolCapacity c;
  c.capacity = space.total;
  c.available = space.available;
  c.allocation = space.total - space.free;
  return c;
}

model::Volume NetfsBackend::describe(const std::string& name, const NfsAttributes& attrs, const std::string& head) const {
  model::Volume v;
  v.name = name;
  v.pool = pool_.name;
  v.path = url(name);
  v.allocation = attrs.used;
  v.capacity = attrs.size;
  v.probe.fileSize = attrs.size;
  ImageHeader h = parseImageHeader(head);
  if (h.qcow2) {
    v.format = model::DiskFormat::qcow2;
    v.capacity = h.virtualSize;
    v.probe.problem = qcow2LayerProblem(h);
    if (h.backingFormat) v.probe.backingFormat = model::enumFromName(model::kDiskFormats, *h.backingFormat);
    uint64_t offset = h.backingOffset;
    uint64_t size = h.backingSize;
    if (offset && size) {
      // Only a volume of this pool can be a backing: named plainly or by its nfs:// URL.
      std::string backing = offset < head.size() && size <= head.size() - offset ? head.substr(offset, size) : "";
      std::string prefix = url("");
      std::string name = startsWith(backing, prefix) ? backing.substr(prefix.size()) : backing;
      if (!backing.empty() && validateNetfsVolumeName(name).ok()) v.backingVolume = name;
      else if (v.probe.problem.empty())
        v.probe.problem = "its backing file " + quote(toValidUtf8(backing)) + " is not a volume of pool " + pool_.name;
    }
  }
  return v;
}

Result<NetfsBackend::Found> NetfsBackend::find(NfsClient& nfs, const std::string& name, Deadline deadline) const {
  VMM_TRY(validateNetfsVolumeName(name));
  auto attrs = nfs.stat(inExport(name), deadline);
  if (!attrs.ok()) {
    if (attrs.error().code == ErrorCode::not_found) return notFound("pool " + pool_.name + " has no volume " + name);
    return attrs.takeError();
  }
  if (!attrs->regular) return notFound("pool " + pool_.name + " has no volume " + name + " (not a regular file)");
  VMM_ASSIGN(auto heads, nfs.readPrefixes({inExport(name)}, kHeaderBytes, deadline));
  Found f;
  f.volume = describe(name, *attrs, heads[0]);
  f.fileSize = attrs->size;
  return f;
}

Status NetfsBackend::ensureAbsent(NfsClient& nfs, const std::string& name, Deadline deadline) const {
  auto st = nfs.stat(inExport(name), deadline);
  if (st.ok()) return conflict("pool " + pool_.name + " already has a volume " + name);
  if (st.error().code != ErrorCode::not_found) return st.takeError();
  return {};
}

Status NetfsBackend::ensureSpace(NfsClient& nfs, uint64_t bytes, Deadline deadline) const {
  VMM_ASSIGN(auto space, nfs.statvfs(deadline));
  if (bytes > space.available)
    return invalidArgument("capacity: " + model::formatSize(bytes) + " is more than the pool's free space (" +
                           model::formatSize(space.available) + ")");
  return {};
}

Result<model::Volume> NetfsBackend::buildVolume(NfsClient& nfs, const std::string& name,
                                                const std::function<Status(const std::string&)>& make, Deadline deadline) {
  std::string temp = partialName(name);
  // A temporary file left by an interrupted attempt is ours to replace.
  auto stale = nfs.unlink(inExport(temp), deadline);
  if (!stale.ok() && stale.error().code != ErrorCode::not_found) return stale.takeError();
  Reverter revert;
  revert.add([&nfs, temp] { (void)nfs.unlink(inExport(temp), Deadline::after(Millis(3000))); });
  VMM_TRY(make(temp));
  VMM_TRY(nfs.rename(inExport(temp), inExport(name), deadline));
  revert.success();
  VMM_ASSIGN(auto f, find(nfs, name, deadline));
  return f.volume;
}

Result<std::vector<model::Volume>> NetfsBackend::listVolumes(Deadline deadline) {
  VMM_ASSIGN(auto nfs, client());
  VMM_ASSIGN(auto entries, nfs->listDir("/", deadline));
  std::vector<const NfsDirEntry*> files;
  std::vector<std::string> paths;
  for (const auto& e : entries) {
    if (!e.attrs.regular || !validateNetfsVolumeName(e.name).ok()) continue;
    files.push_back(&e);
    paths.push_back(inExport(e.name));
  }
  VMM_ASSIGN(auto heads, nfs->readPrefixes(paths, kHeaderBytes, deadline));
  std::vector<model::Volume> out;
  out.reserve(files.size());
  for (size_t i = 0; i < files.size(); ++i) out.push_back(describe(files[i]->name, files[i]->attrs, heads[i]));
  return out;
}

Status NetfsBackend::destroyStorage(Deadline deadline) {
  // The exported directory belongs to the server: nothing to remove, but never with volumes in it.
  std::shared_ptr<NfsClient> nfs;
  {
    MutexLock g(mu_);
    nfs = client_;
  }
  if (!nfs) return {};
  VMM_ASSIGN(auto volumes, listVolumes(deadline));
  if (!volumes.empty())
    return conflict("pool " + pool_.name + " still has " + std::to_string(volumes.size()) + " volumes");
  return {};
}

Result<model::Volume> NetfsBackend::createVolume(const model::VolumeSpec& spec, const model::Volume* base, Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(spec.name));
  VMM_ASSIGN(auto nfs, client());
  VMM_TRY(ensureAbsent(*nfs, spec.name, deadline));
  CreateImage c;
  c.format = spec.format;
  c.size = spec.capacity;
  c.preallocate = spec.preallocate;
  if (base) {
    if (spec.format != model::DiskFormat::qcow2) return invalidArgument("format: a volume on a backing volume must be qcow2");
    VMM_TRY(validateNetfsVolumeName(base->name));
    if (c.size && c.size < base->capacity) return invalidArgument("capacity: smaller than the backing volume " + base->name);
    if (!c.size) c.size = base->capacity;
    // The base's full nfs:// URL: QEMU's nfs driver resolves a relative backing name against the
    // overlay's own path as if it were a directory ("nfs://h/export/vm.qcow2/base.qcow2").
    c.backingFile = url(base->name);
    c.backingFormat = base->format;  // as recorded, never read from the base's bytes
  } else if (spec.capacity == 0) {
    return invalidArgument("capacity: must be greater than 0");
  }
  if (!base) VMM_TRY(ensureSpace(*nfs, c.size, deadline));
  bool viaLibnfs = spec.format == model::DiskFormat::raw && !spec.preallocate;
  return buildVolume(*nfs, spec.name, [&](const std::string& temp) -> Status {
    if (!viaLibnfs) {
      c.path = url(temp);
      return createImage(c, deadline);
    }
    VMM_ASSIGN(auto file, nfs->create(inExport(temp), deadline));
    VMM_TRY(file.truncate(spec.capacity, deadline));  // sparse
    return file.close(deadline);
  }, deadline);
}

Result<model::Volume> NetfsBackend::volumeInfo(const std::string& name, Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(name));
  VMM_ASSIGN(auto nfs, client());
  VMM_ASSIGN(auto f, find(*nfs, name, deadline));
  return f.volume;
}

Status NetfsBackend::deleteVolume(const std::string& name, Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(name));
  VMM_ASSIGN(auto nfs, client());
  VMM_TRY(find(*nfs, name, deadline));
  return nfs->unlink(inExport(name), deadline);
}

Status NetfsBackend::resizeVolume(const model::Volume& v, uint64_t capacity, bool allowShrink, Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(v.name));
  VMM_ASSIGN(auto nfs, client());
  if (capacity == 0) return invalidArgument("capacity: must be greater than 0");
  if (capacity < v.capacity && !allowShrink)
    return invalidArgument("capacity: " + model::formatSize(capacity) + " is smaller than the volume (" +
                           model::formatSize(v.capacity) + "); shrinking loses data and must be asked for");
  if (v.format == model::DiskFormat::qcow2) return resizeImage(url(v.name), v.format, capacity, allowShrink, deadline);
  VMM_ASSIGN(auto file, nfs->open(inExport(v.name), true, deadline));
  VMM_TRY(file.truncate(capacity, deadline));
  return file.close(deadline);
}

Result<model::Volume> NetfsBackend::cloneVolume(const model::Volume& src, const std::string& name,
                                                const CloneOptions& options, Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(name));
  VMM_TRY(validateNetfsVolumeName(src.name));
  VMM_ASSIGN(auto nfs, client());
  VMM_TRY(ensureAbsent(*nfs, name, deadline));
  if (options.linked) {
    model::VolumeSpec spec;
    spec.name = name;
    spec.format = model::DiskFormat::qcow2;
    spec.backingVolume = src.name;
    return createVolume(spec, &src, deadline);
  }
  VMM_TRY(ensureSpace(*nfs, src.allocation, deadline));
  // qemu-img copies only the data (a linked clone's copy includes its base: it is independent),
  // reading the source in its recorded format.
  auto copied = buildVolume(*nfs, name, [&](const std::string& temp) -> Status {
    std::string f = fmt(src.format);
    return runQemuImg({"convert", "-f", f, "-O", f, url(src.name), url(temp)}, {{url(temp)}, {}, {url(src.name)}}, deadline,
                      "copying volume " + src.name);
  }, deadline);
  if (copied.ok() && options.progress) options.progress(1.0);
  return copied;
}

Status NetfsBackend::wipeVolume(const model::Volume& v, const model::Volume* base, Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(v.name));
  VMM_ASSIGN(auto nfs, client());
  if (v.format == model::DiskFormat::raw) {
    // Truncating to nothing frees every block on the server; the size then comes back as zeros.
    VMM_ASSIGN(auto file, nfs->open(inExport(v.name), true, deadline));
    VMM_TRY(file.truncate(0, deadline));
    VMM_TRY(file.truncate(v.capacity, deadline));
    return file.close(deadline);
  }
  // qcow2: a fresh empty image of the same size (on the same base for a linked clone) replaces it.
  CreateImage c;
  c.format = v.format;
  c.size = v.capacity;
  if (base) {
    VMM_TRY(validateNetfsVolumeName(base->name));
    c.backingFile = url(base->name);
    c.backingFormat = base->format;
  }
  std::string temp = partialName(v.name);
  c.path = url(temp);
  auto made = createImage(c, deadline);
  if (made.ok()) made = nfs->rename(inExport(temp), inExport(v.name), deadline);
  if (!made.ok()) (void)nfs->unlink(inExport(temp), Deadline::after(Millis(3000)));
  return made;
}

Result<std::unique_ptr<VolumeStream>> NetfsBackend::openVolume(const std::string& name, StreamMode mode,
                                                               Deadline deadline) {
  VMM_TRY(validateNetfsVolumeName(name));
  VMM_ASSIGN(auto nfs, client());
  VMM_ASSIGN(auto f, find(*nfs, name, deadline));
  if (mode == StreamMode::read) {
    VMM_ASSIGN(auto file, nfs->open(inExport(name), false, deadline));
    return NetfsVolumeStream::reader(std::move(file), f.fileSize);
  }
  std::string temp = inExport(uploadName(name));
  auto stale = nfs->unlink(temp, deadline);
  if (!stale.ok() && stale.error().code != ErrorCode::not_found) return stale.takeError();
  VMM_ASSIGN(auto file, nfs->create(temp, deadline));
  return NetfsVolumeStream::writer(nfs, std::move(file), temp, inExport(name));
}

Result<model::ResolvedDisk> NetfsBackend::resolve(const model::Volume& v, Deadline) {
  VMM_TRY(validateNetfsVolumeName(v.name));
  model::ResolvedDisk r;
  r.protocol = "nfs";
  r.format = v.format;
  // QEMU's BlockdevOptionsNfs: the server and the file's full path on it. AUTH_SYS carries
  // whatever ids the client states: QEMU states the ones vmmd's own NFS client uses for the
  // pool (0), not the uid it runs as, which owns nothing on the server.
  r.blockdev = {{"server", {{"type", "inet"}, {"host", pool_.source.host}}},
                {"path", (dir_ == "/" ? "" : dir_) + "/" + v.name},
                {"user", 0},
                {"group", 0}};
  return r;
}

}  // namespace vmm::storage
