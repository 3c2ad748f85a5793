#include "storage/logical/logical_backend.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <array>
#include <set>

#include "base/reverter.h"
#include "base/strings.h"
#include "model/units.h"
#include "storage/dir/dir_backend.h"

namespace vmm::storage {

namespace {

constexpr uint64_t kZeroOnCreate = 1 << 20;  // old signatures at the start of a reused extent
constexpr size_t kCopyChunk = 4 << 20;

constexpr std::array kReservedPrefixes{"snapshot", "pvmove"};
constexpr std::array kReservedParts{"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_iorig", "_mimage", "_mlog", "_pmspare",
                                    "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig"};

std::string deviceList(const std::vector<std::string>& devices) { return join(devices, ", "); }

uint64_t extentsFor(uint64_t bytes, uint64_t extentSize) { return bytes / extentSize + (bytes % extentSize ? 1 : 0); }

bool allZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

// Device number of a block device, to compare lvm2's PV names with the configured paths.
std::optional<dev_t> blockDevice(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return std::nullopt;
  return st.st_rdev;
}

}  // namespace

Status validateLvmName(const std::string& name, const std::string& what, bool logicalVolume) {
  if (name.empty() || name.size() > 127) return invalidArgument(what + " " + quote(name) + " must have 1 to 127 characters");
  if (name == "." || name == "..") return invalidArgument(what + " " + quote(name) + " is not allowed");
  if (name[0] == '-') return invalidArgument(what + " " + quote(name) + " must not start with '-'");
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '+' || c == '_' || c == '.' || c == '-'))
      return invalidArgument(what + " " + quote(name) + " may only contain letters, digits and + _ . -");
  }
  if (!logicalVolume) return {};
  for (const char* prefix : kReservedPrefixes)
    if (startsWith(name, prefix)) return invalidArgument(what + " " + quote(name) + ": names starting with \"" + prefix + "\" are reserved by LVM");
  for (const char* part : kReservedParts)
    if (name.find(part) != std::string::npos) return invalidArgument(what + " " + quote(name) + ": \"" + part + "\" is reserved by LVM");
  return validateVolumeName(name);
}

LogicalBackend::LogicalBackend(model::Pool pool)
    : pool_(std::move(pool)), vg_(pool_.source.vgName.empty() ? pool_.name : pool_.source.vgName), lvm_(pool_.source.devices) {}

Error LogicalBackend::noVolume(const std::string& name) const { return notFound("pool " + pool_.name + " has no volume " + name); }

model::Volume LogicalBackend::describe(const std::string& name, uint64_t size) const {
  model::Volume v;
  v.name = name;
  v.pool = pool_.name;
  v.format = model::DiskFormat::raw;
  v.capacity = size;
  v.allocation = size;
  v.probe.fileSize = size;
  v.path = "/dev/" + vg_ + "/" + name;  // nominal: without device-mapper it does not exist
  return v;
}

Status LogicalBackend::checkDevices() const {
  VMM_TRY(validateLvmName(vg_, "volume group name", false));
  const auto& devices = pool_.source.devices;
  if (devices.empty()) return invalidArgument("source.devices: a logical pool needs at least one block device");
  std::set<dev_t> seen;
  for (const auto& d : devices) {
    if (d.empty() || d[0] != '/') return invalidArgument("source.devices: " + quote(d) + " is not an absolute path");
    struct stat st{};
    if (::stat(d.c_str(), &st) != 0) return invalidArgument("source.devices: " + d + " does not exist");
    if (!S_ISBLK(st.st_mode)) return invalidArgument("source.devices: " + d + " is not a block device");
    if (!seen.insert(st.st_rdev).second) return invalidArgument("source.devices: " + d + " is listed twice");
  }
  return {};
}

Result<LogicalBackend::VgInfo> LogicalBackend::vgInfo(Deadline deadline) const {
  auto rows = lvm_.report("vgs", "vg_name,vg_size,vg_free,vg_extent_size,lv_count", {vg_}, deadline);
  if (!rows.ok() && rows.error().code == ErrorCode::not_found)
    return notFound("pool " + pool_.name + ": volume group " + quote(vg_) + " not found on " + deviceList(pool_.source.devices) +
                    " (build the pool first)");
  if (!rows.ok()) return rows.takeError();
  for (const auto& row : *rows) {
    if (lvmField(row, "vg_name") != vg_) continue;
    VgInfo info;
    VMM_ASSIGN(info.size, lvmNumber(row, "vg_size"));
    VMM_ASSIGN(info.free, lvmNumber(row, "vg_free"));
    VMM_ASSIGN(info.extentSize, lvmNumber(row, "vg_extent_size"));
    VMM_ASSIGN(info.lvCount, lvmNumber(row, "lv_count"));
    if (info.extentSize == 0) return internalError("volume group " + vg_ + " reports an extent size of 0");
    return info;
  }
  return notFound("pool " + pool_.name + ": volume group " + quote(vg_) + " not found");
}

Status LogicalBackend::build(Deadline deadline) {
  VMM_TRY(checkDevices());
  VMM_ASSIGN(auto pvs, lvm_.report("pvs", "pv_name,vg_name", {}, deadline));
  // What each configured device is now: not a PV, an unused PV, or a PV of some VG.
  std::vector<std::string> fresh;
  size_t inOurVg = 0;
  for (const auto& d : pool_.source.devices) {
    auto dev = blockDevice(d);
    const LvmRow* pv = nullptr;
    for (const auto& row : pvs)
      if (blockDevice(lvmField(row, "pv_name")) == dev) pv = &row;
    if (!pv) {
      fresh.push_back(d);
      continue;
    }
    std::string owner = lvmField(*pv, "vg_name");
    if (owner == vg_) {
      ++inOurVg;
    } else if (!owner.empty()) {
      return conflict("pool " + pool_.name + ": " + d + " is already a physical volume of volume group " + quote(owner));
    }
  }
  bool vgExists = std::any_of(pvs.begin(), pvs.end(), [&](const LvmRow& r) { return lvmField(r, "vg_name") == vg_; });
  if (vgExists) {
    if (inOurVg == pool_.source.devices.size()) return {};  // already built
    return conflict("pool " + pool_.name + ": volume group " + quote(vg_) + " already exists on other devices than " +
                    deviceList(pool_.source.devices));
  }

  Reverter revert;
  if (!fresh.empty()) {
    // Undo covers a pvcreate that failed halfway: whichever of `fresh` became a PV goes again.
    revert.add([this, fresh] { (void)removeUnusedPvs(fresh, Deadline::after(Millis(30000))); });
    VMM_TRY(lvm_.change("pvcreate", fresh, deadline));
  }
  std::vector<std::string> args{vg_};
  args.insert(args.end(), pool_.source.devices.begin(), pool_.source.devices.end());
  VMM_TRY(lvm_.change("vgcreate", args, deadline));
  revert.success();
  return {};
}

Status LogicalBackend::start(Deadline deadline) {
  VMM_TRY(checkDevices());
  VMM_TRY(vgInfo(deadline));
  return {};
}

Status LogicalBackend::stop(Deadline) { return {}; }

Result<PoolCapacity> LogicalBackend::capacity(Deadline deadline) {
  VMM_ASSIGN(auto vg, vgInfo(deadline));
  PoolCapacity c;
  c.capacity = vg.size;
  c.available = vg.free;
  c.allocation = vg.size - std::min(vg.free, vg.size);
  return c;
}

Result<std::vector<model::Volume>> LogicalBackend::listVolumes(Deadline deadline) {
  auto rows = lvm_.report("lvs", "lv_name,lv_size", {vg_}, deadline);
  if (!rows.ok() && rows.error().code == ErrorCode::not_found) return vgInfo(deadline).takeError();
  if (!rows.ok()) return rows.takeError();
  std::vector<model::Volume> out;
  for (const auto& row : *rows) {
    std::string name = lvmField(row, "lv_name");
    if (!validateLvmName(name, "volume name", true).ok()) continue;  // internal LVs of other tools
    VMM_ASSIGN(uint64_t size, lvmNumber(row, "lv_size"));
    out.push_back(describe(name, size));
  }
  return out;
}

Status LogicalBackend::destroyStorage(Deadline deadline) {
  VMM_TRY(checkDevices());
  auto vg = vgInfo(deadline);
  if (!vg.ok() && vg.error().code != ErrorCode::not_found) return vg.takeError();
  if (vg.ok()) {
    if (vg->lvCount > 0)
      return conflict("pool " + pool_.name + ": volume group " + quote(vg_) + " still holds " + std::to_string(vg->lvCount) + " logical volume(s)");
    VMM_TRY(lvm_.change("vgremove", {vg_}, deadline));  // no --yes: lvm2 refuses if an LV appeared meanwhile
  }
  return removeUnusedPvs(pool_.source.devices, deadline);
}

Status LogicalBackend::removeUnusedPvs(const std::vector<std::string>& devices, Deadline deadline) const {
  VMM_ASSIGN(auto pvs, lvm_.report("pvs", "pv_name,vg_name", {}, deadline));
  std::vector<std::string> unused;
  for (const auto& row : pvs) {
    if (!lvmField(row, "vg_name").empty()) continue;
    auto dev = blockDevice(lvmField(row, "pv_name"));
    for (const auto& d : devices)
      if (dev && blockDevice(d) == dev) unused.push_back(lvmField(row, "pv_name"));
  }
  if (unused.empty()) return {};
  return lvm_.change("pvremove", unused, deadline);
}

Status LogicalBackend::allocate(const std::string& tool, const std::string& name, uint64_t extents, const std::string& preferredPv,
                                Deadline deadline) {
  std::vector<std::string> base{"-l", std::to_string(extents)};
  if (tool == "lvcreate") base.insert(base.end(), {"-Zn", "-n", name, vg_});
  else base.push_back(vg_ + "/" + name);
  // One contiguous range first (resolve() needs it), anywhere in the VG if that is impossible.
  std::vector<std::string> contiguous = base;
  contiguous.insert(contiguous.end(), {"--alloc", "contiguous"});
  if (!preferredPv.empty()) contiguous.push_back(preferredPv);
  auto first = lvm_.change(tool, contiguous, deadline);
  if (first.ok() || first.error().code != ErrorCode::invalid_argument) return first;
  return lvm_.change(tool, base, deadline);
}

Result<model::Volume> LogicalBackend::createVolume(const model::VolumeSpec& spec, const model::Volume* base, Deadline deadline) {
  VMM_TRY(validateLvmName(spec.name, "volume name", true));
  if (base || !spec.backingVolume.empty())
    return unavailable("a volume on a backing volume needs LVM snapshots, and device-mapper not available on this host");
  if (spec.format != model::DiskFormat::raw) return invalidArgument("format: logical pools hold raw volumes");
  if (spec.capacity == 0) return invalidArgument("capacity: must be greater than 0");

  VMM_ASSIGN(auto pvs, lvm_.report("pvs", "pv_name,pv_free,vg_name,vg_extent_size,vg_free", {}, deadline));
  uint64_t extentSize = 0, vgFree = 0;
  std::string bestPv;
  uint64_t bestFree = UINT64_MAX;
  std::vector<std::pair<std::string, uint64_t>> pvFree;
  for (const auto& row : pvs) {
    if (lvmField(row, "vg_name") != vg_) continue;
    VMM_ASSIGN(extentSize, lvmNumber(row, "vg_extent_size"));
    VMM_ASSIGN(vgFree, lvmNumber(row, "vg_free"));
    VMM_ASSIGN(uint64_t free, lvmNumber(row, "pv_free"));
    pvFree.emplace_back(lvmField(row, "pv_name"), free);
  }
  if (extentSize == 0) return vgInfo(deadline).takeError();
  uint64_t extents = extentsFor(spec.capacity, extentSize);
  uint64_t size = extents * extentSize;
  if (size > vgFree)
    return invalidArgument("capacity: " + model::formatSize(size) + " is more than the pool's free space (" + model::formatSize(vgFree) + ")");
  for (const auto& [pv, free] : pvFree)  // the fullest PV that still fits keeps large ranges free
    if (free >= size && free < bestFree) {
      bestPv = pv;
      bestFree = free;
    }

  auto created = allocate("lvcreate", spec.name, extents, bestPv, deadline);
  if (!created.ok() && created.error().code == ErrorCode::conflict) return conflict("pool " + pool_.name + " already has a volume " + spec.name);
  VMM_TRY(created);
  Reverter revert;
  revert.add([this, name = spec.name] { (void)lvm_.change("lvremove", {"--yes", vg_ + "/" + name}, Deadline::after(Millis(30000))); });
  // lvm2 cannot zero an LV it does not activate: clear old signatures ourselves.
  VMM_ASSIGN(auto stream, openStream(spec.name, StreamMode::write, deadline));
  VMM_TRY(stream->zero(0, std::min(size, kZeroOnCreate), deadline));
  VMM_TRY(stream->finish(deadline));
  revert.success();
  return describe(spec.name, size);
}

Result<model::Volume> LogicalBackend::volumeInfo(const std::string& name, Deadline deadline) {
  VMM_TRY(validateLvmName(name, "volume name", true));
  auto rows = lvm_.report("lvs", "lv_name,lv_size", {vg_ + "/" + name}, deadline);
  if (!rows.ok() && rows.error().code == ErrorCode::not_found) return noVolume(name);
  if (!rows.ok()) return rows.takeError();
  if (rows->empty()) return noVolume(name);
  VMM_ASSIGN(uint64_t size, lvmNumber(rows->front(), "lv_size"));
  return describe(name, size);
}

Status LogicalBackend::deleteVolume(const std::string& name, Deadline deadline) {
  VMM_TRY(validateLvmName(name, "volume name", true));
  auto removed = lvm_.change("lvremove", {"--yes", vg_ + "/" + name}, deadline);
  if (!removed.ok() && removed.error().code == ErrorCode::not_found) return noVolume(name);
  return removed;
}

Status LogicalBackend::resizeVolume(const model::Volume& volume, uint64_t capacity, bool allowShrink, Deadline deadline) {
  const std::string& name = volume.name;
  VMM_TRY(validateLvmName(name, "volume name", true));
  if (capacity == 0) return invalidArgument("capacity: must be greater than 0");
  auto rows = lvm_.report("lvs", "lv_name,lv_size,vg_extent_size,vg_free", {vg_ + "/" + name}, deadline);
  if ((!rows.ok() && rows.error().code == ErrorCode::not_found) || (rows.ok() && rows->empty())) return noVolume(name);
  if (!rows.ok()) return rows.takeError();
  const auto& row = rows->front();
  VMM_ASSIGN(uint64_t current, lvmNumber(row, "lv_size"));
  VMM_ASSIGN(uint64_t extentSize, lvmNumber(row, "vg_extent_size"));
  VMM_ASSIGN(uint64_t free, lvmNumber(row, "vg_free"));
  if (extentSize == 0) return internalError("volume group " + vg_ + " reports an extent size of 0");
  uint64_t extents = extentsFor(capacity, extentSize);
  uint64_t size = extents * extentSize;
  if (size == current) return {};
  if (size < current) {
    if (!allowShrink)
      return invalidArgument("capacity: " + model::formatSize(capacity) + " is smaller than the volume (" + model::formatSize(current) +
                             "); shrinking loses data and must be asked for");
    return lvm_.change("lvreduce", {"--yes", "-l", std::to_string(extents), vg_ + "/" + name}, deadline);
  }
  if (size - current > free)
    return invalidArgument("capacity: growing " + name + " to " + model::formatSize(size) + " needs " + model::formatSize(size - current) +
                           " more, but the pool has " + model::formatSize(free) + " free");
  return allocate("lvextend", name, extents, "", deadline);
}

Result<model::Volume> LogicalBackend::cloneVolume(const model::Volume& sourceVolume, const std::string& name, const CloneOptions& options,
                                                  Deadline deadline) {
  const std::string& source = sourceVolume.name;
  if (options.linked)
    return unavailable("a linked clone of a logical volume needs an LVM snapshot or thin pool, and device-mapper not available on this host");
  VMM_TRY(validateLvmName(name, "volume name", true));
  VMM_ASSIGN(auto from, openStream(source, StreamMode::read, deadline));
  model::VolumeSpec spec;
  spec.name = name;
  spec.format = model::DiskFormat::raw;
  spec.capacity = from->size();
  VMM_ASSIGN(auto volume, createVolume(spec, nullptr, deadline));
  Reverter revert;
  revert.add([this, name] { (void)lvm_.change("lvremove", {"--yes", vg_ + "/" + name}, Deadline::after(Millis(30000))); });
  VMM_ASSIGN(auto to, openStream(name, StreamMode::write, deadline));
  std::vector<char> buf(kCopyChunk);
  uint64_t total = from->size();
  for (uint64_t off = 0; off < total;) {
    VMM_ASSIGN(size_t n, from->read(off, buf.data(), buf.size(), deadline));
    if (n == 0) return internalError("volume " + source + " ended early while copying");
    if (allZero(buf.data(), n)) {
      VMM_TRY(to->zero(off, n, deadline));
    } else {
      VMM_TRY(to->write(off, buf.data(), n, deadline));
    }
    off += n;
    if (options.progress) options.progress(static_cast<double>(off) / static_cast<double>(total));
  }
  VMM_TRY(from->finish(deadline));
  VMM_TRY(to->finish(deadline));
  revert.success();
  return volume;
}

Status LogicalBackend::wipeVolume(const model::Volume& volume, const model::Volume*, Deadline deadline) {
  VMM_ASSIGN(auto stream, openStream(volume.name, StreamMode::write, deadline));
  VMM_TRY(stream->zero(0, stream->size(), deadline));
  return stream->finish(deadline);
}

Result<std::unique_ptr<LvStream>> LogicalBackend::openStream(const std::string& name, StreamMode mode, Deadline deadline) const {
  VMM_TRY(validateLvmName(name, "volume name", true));
  auto stream = LvStream::open(lvm_, vg_, name, mode, deadline);
  if (!stream.ok() && stream.error().code == ErrorCode::not_found) return noVolume(name);
  return stream;
}

Result<std::unique_ptr<VolumeStream>> LogicalBackend::openVolume(const std::string& name, StreamMode mode, Deadline deadline) {
  VMM_ASSIGN(auto stream, openStream(name, mode, deadline));
  return std::unique_ptr<VolumeStream>(std::move(stream));
}

Result<model::ResolvedDisk> LogicalBackend::resolve(const model::Volume& lv, Deadline deadline) {
  const std::string& volume = lv.name;
  VMM_TRY(validateLvmName(volume, "volume name", true));
  auto layout = queryLayout(lvm_, vg_, volume, deadline);
  if (!layout.ok() && layout.error().code == ErrorCode::not_found) return noVolume(volume);
  if (!layout.ok()) return layout.takeError();
  if (!layout->contiguous())
    return unavailable("volume " + volume + " lies in " + std::to_string(layout->pieces.size()) +
                       " separate extent ranges; a hypervisor can only be given one range of one physical volume, "
                       "because device-mapper not available on this host");
  const auto& piece = layout->pieces.front();
  model::ResolvedDisk r;
  r.path = piece.device;
  r.format = model::DiskFormat::raw;
  r.offset = piece.deviceOffset;
  r.size = piece.length;
  return r;
}

}  // namespace vmm::storage
