#include "daemon/image_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/fs.h"
#include "base/log.h"
#include "base/random.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "daemon/url_fetch.h"
#include "model/names.h"
#include "storage/image_inspect.h"
#include "storage/qemu_img.h"

namespace vmm {

using json = nlohmann::json;

namespace {

constexpr size_t kChunk = 1 << 20;

std::string diskVolumeName(const std::string& image, model::DiskFormat format, bool iso) {
  return image + (iso ? ".iso" : format == model::DiskFormat::qcow2 ? ".qcow2" : ".img");
}

// The judged copy of a qcow2 import, rewritten from and then removed: IMAGE.import-XXXXXXXX.qcow2.
constexpr std::string_view kJudgedInfix = ".import-", kJudgedSuffix = ".qcow2";
std::string judgedCopyName(const std::string& image) { return image + std::string(kJudgedInfix) + randomHex(4) + std::string(kJudgedSuffix); }
// The image a judged copy belongs to, or "" for any other name.
std::string judgedCopyOf(const std::string& volume) {
  if (!endsWith(volume, kJudgedSuffix)) return "";
  size_t at = volume.rfind(kJudgedInfix);
  if (at == std::string::npos || at == 0) return "";
  std::string hex = volume.substr(at + kJudgedInfix.size(), volume.size() - kJudgedSuffix.size() - at - kJudgedInfix.size());
  if (hex.size() != 8 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) return "";
  return volume.substr(0, at);
}

}  // namespace

ImageService::ImageService(StateStore& store, EventBus& events, PoolService& pools, DomainService& domains,
                           ImageServiceOptions options)
    : store_(store), events_(events), pools_(pools), domains_(domains), options_(std::move(options)) {}

Status ImageService::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::images));
  MutexLock lock(mu_);
  for (const auto& row : rows) {
    auto img = model::parseImageRecord(row.value);
    if (!img.ok()) {
      log::warn("ignoring an unreadable image record", {{"key", row.key}, {"error", img.error().message}});
      continue;
    }
    images_[img->name] = *img;
  }
  if (!options_.tempDir.empty()) {
    // Downloads interrupted by a restart leave partial files behind.
    (void)fs::removeTree(options_.tempDir);
    VMM_TRY(fs::makeDirs(options_.tempDir, 0700));
  }
  return {};
}

std::vector<model::Image> ImageService::list() const {
  MutexLock lock(mu_);
  std::vector<model::Image> out;
  for (const auto& [_, i] : images_) out.push_back(i);
  return out;
}

Result<model::Image> ImageService::get(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = images_.find(name);
  if (it == images_.end()) return notFound("no image named " + quote(name));
  return it->second;
}

void ImageService::publish(const std::string& type, const std::string& name) {
  events_.publish("image", "images/" + name, {{"event", type}, {"image", name}});
}

Status ImageService::ensurePool() {
  if (pools_.get(options_.pool).ok()) return {};
  if (options_.poolPath.empty())
    return notFound("the image pool " + quote(options_.pool) + " does not exist (define it, or set [images] pool)");
  auto def = model::parsePool(json{{"name", options_.pool}, {"type", "dir"}, {"path", options_.poolPath}});
  if (!def.ok()) return def.error();
  PoolCreateParams params;
  params.build = true;
  auto created = pools_.create(*def, params);
  // Another import may have created it at the same time.
  if (!created.ok() && !pools_.get(options_.pool).ok()) return created.error().wrap("creating the image pool");
  return {};
}

Status ImageService::reserve(const std::string& name) {
  MutexLock lock(mu_);
  if (images_.count(name) || reserved_.count(name)) return conflict("image " + quote(name) + " already exists");
  reserved_.insert(name);
  return {};
}

void ImageService::unreserve(const std::string& name) {
  MutexLock lock(mu_);
  reserved_.erase(name);
}

Result<model::Volume> ImageService::copyIntoPool(const std::string& pool, const std::string& file,
                                                 const std::string& volume, model::DiskFormat format, uint64_t capacity,
                                                 const ImageProgress& progress, int from, int to, Sha256* hash) {
  fs::UniqueFd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return systemError("opening " + file, errno);
  return copyIntoPool(pool, in.get(), file, volume, format, capacity, progress, from, to, hash);
}

Result<model::Volume> ImageService::copyIntoPool(const std::string& pool, int fd, const std::string& file,
                                                 const std::string& volume, model::DiskFormat format, uint64_t capacity,
                                                 const ImageProgress& progress, int from, int to, Sha256* hash) {
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return invalidArgument(file + " is not a regular file");
  model::VolumeSpec spec;
  spec.name = volume;
  spec.format = format;
  spec.capacity = std::max<uint64_t>(capacity, 1);
  VMM_TRY(pools_.createVolume(pool, spec));
  Reverter undo;
  undo.add([this, pool, volume] { (void)pools_.deleteVolume(pool, volume); });
  {
    VMM_ASSIGN(auto out, pools_.openVolume(pool, volume, storage::StreamMode::write));
    Deadline deadline = Deadline::after(options_.ioTimeout);
    std::string buf(kChunk, '\0');
    uint64_t total = static_cast<uint64_t>(st.st_size), done = 0;
    int lastPercent = -1;
    while (done < total) {
      if (progress.cancelled && progress.cancelled()) return cancelledError("import cancelled");
      ssize_t n = ::pread(fd, buf.data(), kChunk, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return systemError("reading " + file, errno);
      if (n == 0) return internalError(file + " shrank while being copied");
      VMM_TRY(out->write(done, buf.data(), static_cast<size_t>(n), deadline));
      if (hash) hash->update(buf.data(), static_cast<size_t>(n));
      done += static_cast<uint64_t>(n);
      int percent = from + static_cast<int>((to - from) * done / std::max<uint64_t>(total, 1));
      if (percent != lastPercent && progress.report) progress.report(percent, "copying " + fs::baseName(file));
      lastPercent = percent;
    }
    VMM_TRY(out->finish(deadline));
  }
  VMM_ASSIGN(auto v, pools_.getVolume(pool, volume));
  undo.success();
  return v;
}

// Judged copies left by a vmmd that died during an import (none of an import still running).
void ImageService::sweepJudgedCopies(const std::string& importing) {
  auto volumes = pools_.listVolumes(options_.pool);
  if (!volumes.ok()) return;
  for (const auto& v : *volumes) {
    std::string image = judgedCopyOf(v.name);
    if (image.empty()) continue;
    {
      MutexLock lock(mu_);
      if (image != importing && reserved_.count(image)) continue;
    }
    if (pools_.deleteVolume(options_.pool, v.name).ok()) log::info("removed the judged copy of an interrupted import", {{"volume", v.name}});
  }
}

// The rewritten image's header, read back from the pool, passes the same judgement as the
// source's did, and shows the same disk.
Status ImageService::judgeAgain(const model::Image& image) {
  VMM_ASSIGN(auto in, pools_.openVolume(options_.pool, image.volume, storage::StreamMode::read));
  Deadline deadline = Deadline::after(options_.ioTimeout);
  std::string head(std::min<uint64_t>(in->size(), storage::kInspectHeadBytes), '\0');
  for (size_t done = 0; done < head.size();) {
    VMM_ASSIGN(size_t n, in->read(done, head.data() + done, head.size() - done, deadline));
    if (n == 0) return internalError("the rewritten image " + image.volume + " is shorter than its header");
    done += n;
  }
  VMM_TRY(in->finish(deadline));
  auto verdict = storage::inspectImage(head, in->size(), options_.maxVirtualSize);
  if (!verdict.ok()) return internalError("the rewritten image " + image.volume + " is refused: " + verdict.refused);
  if (verdict.kind != storage::ImageKind::qcow2 || verdict.virtualSize != image.size)
    return internalError("the rewritten image " + image.volume + " is not the qcow2 of " + std::to_string(image.size) + " bytes it was written as");
  return {};
}

Result<model::Image> ImageService::finishImport(model::Image image, const std::string& diskFile,
                                                const std::string& kernelFile, const std::string& initrdFile,
                                                const ImageProgress& progress, const std::string& expectedSha256) {
  VMM_TRY(ensurePool());
  // The image is judged by its header alone, read here (before any qemu-img runs on it): only raw
  // bytes, an ISO or a self-contained qcow2 pass - a backing file or an external data file
  // could name any file of the host. The bytes judged are the bytes copied (one descriptor)
  // and, for a qcow2, the bytes qemu-img rewrites.
  fs::UniqueFd disk(::open(diskFile.c_str(), O_RDONLY | O_CLOEXEC));
  if (!disk.valid()) return systemError("opening " + diskFile, errno);
  struct stat st{};
  if (::fstat(disk.get(), &st) != 0 || !S_ISREG(st.st_mode)) return invalidArgument(diskFile + " is not a regular file");
  std::string head(std::min<uint64_t>(static_cast<uint64_t>(st.st_size), storage::kInspectHeadBytes), '\0');
  if (!head.empty() && ::pread(disk.get(), head.data(), head.size(), 0) != static_cast<ssize_t>(head.size()))
    return systemError("reading " + diskFile, errno);
  auto verdict = storage::inspectImage(head, static_cast<uint64_t>(st.st_size), options_.maxVirtualSize);
  if (!verdict.ok()) return invalidArgument("image " + image.name + " is refused: " + verdict.refused);
  model::DiskFormat format = verdict.kind == storage::ImageKind::qcow2 ? model::DiskFormat::qcow2 : model::DiskFormat::raw;
  bool iso = verdict.kind == storage::ImageKind::iso;
  image.pool = options_.pool;
  image.format = format;
  image.size = verdict.virtualSize;
  image.volume = diskVolumeName(image.name, format, iso);
  if (iso) image.media = "cdrom";

  Reverter undo;
  auto copy = [&](int fd, const std::string& file, const std::string& volume, model::DiskFormat fmt, uint64_t cap, int from,
                  int to, Sha256* hash = nullptr) -> Status {
    VMM_TRY(copyIntoPool(options_.pool, fd, file, volume, fmt, cap, progress, from, to, hash));
    undo.add([this, volume] { (void)pools_.deleteVolume(options_.pool, volume); });
    return {};
  };
  Sha256 hash;
  auto checkHash = [&]() -> Status {
    if (!expectedSha256.empty() && hash.hexDigest() != expectedSha256)
      return invalidArgument("sha256 mismatch for " + image.source + ": expected " + expectedSha256 + ", got " + hash.hexDigest());
    return {};
  };
  if (format == model::DiskFormat::qcow2) {
    // A qcow2 is rewritten: the judged bytes are copied aside, and a sandboxed qemu-img writes a
    // fresh image from them (no internal snapshots, bitmaps, extensions or odd metadata of the
    // source's maker), which is judged again. Guests' QEMUs only ever parse metadata qemu-img
    // wrote.
    sweepJudgedCopies(image.name);
    std::string judged = judgedCopyName(image.name);
    VMM_TRY(copyIntoPool(options_.pool, disk.get(), diskFile, judged, format, verdict.virtualSize, progress, 5, 50, &hash));
    Reverter dropJudged;
    dropJudged.add([this, judged] { (void)pools_.deleteVolume(options_.pool, judged); });
    VMM_TRY(checkHash());  // before any work on bytes that are not the ones asked for
    if (progress.report) progress.report(50, "rewriting " + fs::baseName(diskFile));
    VolumeCloneParams rewrite;
    rewrite.name = image.volume;
    rewrite.linked = false;
    rewrite.cancelled = progress.cancelled;
    rewrite.progress = [&](double f) {
      if (progress.report) progress.report(50 + static_cast<int>(40 * f), "rewriting " + fs::baseName(diskFile));
    };
    VMM_TRY(pools_.cloneVolume(options_.pool, judged, rewrite));
    undo.add([this, volume = image.volume] { (void)pools_.deleteVolume(options_.pool, volume); });
    VMM_TRY(judgeAgain(image));
  } else {
    VMM_TRY(copy(disk.get(), diskFile, image.volume, format, verdict.virtualSize, 5, 90, &hash));
  }
  VMM_TRY(checkHash());
  image.sha256 = hash.hexDigest();
  for (auto [file, field, suffix] : {std::tuple{kernelFile, &image.kernel, ".kernel"}, std::tuple{initrdFile, &image.initrd, ".initrd"}}) {
    if (file.empty()) continue;
    fs::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat fst{};
    if (!fd.valid() || ::fstat(fd.get(), &fst) != 0) return notFound(file + ": " + strerror(errno));
    *field = image.name + suffix;
    VMM_TRY(copy(fd.get(), file, *field, model::DiskFormat::raw, static_cast<uint64_t>(fst.st_size), 90, 98));
  }
  image.createdUs = wallNowMicros();
  VMM_TRY(store_.put(Table::images, image.name, formatImage(image)));
  undo.success();
  {
    MutexLock lock(mu_);
    images_[image.name] = image;
  }
  publish("created", image.name);
  if (progress.report) progress.report(100, "imported");
  return image;
}

Result<model::Image> ImageService::import(const model::ImageImportSpec& spec, const ImageProgress& progress) {
  VMM_TRY(reserve(spec.name));
  Reverter undo;
  undo.add([this, name = spec.name] { unreserve(name); });
  for (const auto* f : {&spec.file, &spec.kernelFile, &spec.initrdFile})
    if (!f->empty() && !fs::exists(*f)) return notFound(*f + " does not exist");
  std::string disk = spec.file;
  if (!spec.url.empty()) {
    disk = options_.tempDir + "/" + spec.name + "-" + randomHex(6) + ".download";
    undo.add([disk] { (void)fs::removeFile(disk); });
    FetchOptions fo;
    fo.maxBytes = options_.maxDownloadBytes;
    fo.caFile = options_.caFile;
    fo.allowHttp = options_.allowHttp;
    fo.sha256 = spec.sha256;  // checked before anything reads the file
    fo.publicAddressesOnly = spec.publicUrlOnly;
    fo.cancelled = progress.cancelled;
    fo.progress = [&](uint64_t done, uint64_t total) {
      if (progress.report && total) progress.report(static_cast<int>(5 * done / total), "downloading");
    };
    VMM_TRY(fetchUrl(spec.url, disk, fo));
  }
  model::Image image;
  image.name = spec.name;
  image.os = spec.os;
  image.arch = spec.arch;
  image.defaultUser = spec.defaultUser;
  image.description = spec.description;
  image.source = spec.url.empty() ? spec.file : spec.url;
  image.domainTemplate = spec.domainTemplate;
  return finishImport(std::move(image), disk, spec.kernelFile, spec.initrdFile, progress, spec.sha256);
}

Result<model::Image> ImageService::fromDomain(const TemplateFromDomainSpec& spec, const ImageProgress& progress) {
  VMM_TRY(model::validateImageName(spec.name));
  VMM_ASSIGN(auto view, domains_.get(spec.domain));
  if (model::isActive(view.status.state) || view.job)
    return conflict("domain " + spec.domain + " must be shut off to become a template");
  const model::Domain& def = *view.def;
  const model::Disk* root = nullptr;
  for (const auto& d : def.disks)
    if (d.device == model::DiskDevice::disk) {
      root = &d;
      break;
    }
  if (!root) return invalidArgument("domain " + spec.domain + " has no disk to make an image of");
  VMM_TRY(reserve(spec.name));
  Reverter undo;
  undo.add([this, name = spec.name] { unreserve(name); });
  if (!options_.resolveDisk) return unavailable("this image service cannot resolve a domain's disks");
  VMM_ASSIGN(auto r, options_.resolveDisk(*root));
  if (r.path.empty() || r.size) return unsupported("making an image of disk " + root->target + ": it is not a local image file");
  const std::string source = r.path;
  const model::DiskFormat fmt = r.format;
  std::vector<std::string> layers;  // what qemu-img reads below the top (storage/qemu_img.h)
  for (const auto& layer : r.backing) layers.push_back(layer.path);
  // A flat copy: the template must not depend on the domain's backing chain.
  std::string flat = options_.tempDir + "/" + spec.name + "-" + randomHex(6) + ".qcow2";
  undo.add([flat] { (void)fs::removeFile(flat); });
  VMM_TRY(storage::convertImage(source, fmt, flat, model::DiskFormat::qcow2,
                                [&](double f) { if (progress.report) progress.report(static_cast<int>(f * 0.5), "flattening"); },
                                Deadline::after(options_.ioTimeout), layers));
  // Nothing holds the domain during the copy: a start meanwhile would make it inconsistent.
  VMM_ASSIGN(auto after, domains_.get(spec.domain));
  if (model::isActive(after.status.state) || after.status.sinceUs != view.status.sinceUs || after.generation != view.generation)
    return conflict("domain " + spec.domain + " was started or changed while its disk was copied: try again");
  model::Image image;
  image.name = spec.name;
  image.description = spec.description.empty() ? "template of domain " + spec.domain : spec.description;
  image.os = spec.os;
  image.defaultUser = spec.defaultUser;
  image.source = "domain:" + spec.domain;
  json tmpl = model::formatDomain(def);
  for (const char* k : {"name", "uuid", "disks", "title", "autostart", "labels", "metadata"}) tmpl.erase(k);
  if (tmpl.contains("nics"))
    for (auto& n : tmpl["nics"]) {
      n.erase("mac");
      n.erase("ifname");
    }
  image.domainTemplate = tmpl;
  if (def.boot.kernel.size()) {
    // The kernel and initrd stay host paths unless they are copied with the image.
    image.domainTemplate["boot"]["kernel"] = def.boot.kernel;
  }
  return finishImport(std::move(image), flat, "", "", progress);
}

Status ImageService::remove(const std::string& name) {
  VMM_ASSIGN(auto image, get(name));
  // The disk goes first: while linked clones sit on it the pool refuses, and nothing changes.
  if (auto st = pools_.deleteVolume(image.pool, image.volume); !st.ok() && st.error().code != ErrorCode::not_found)
    return st.error().wrap("image " + name + " is in use");
  for (const auto& v : {image.kernel, image.initrd})
    if (!v.empty()) (void)pools_.deleteVolume(image.pool, v);
  VMM_TRY(store_.remove(Table::images, name));
  {
    MutexLock lock(mu_);
    images_.erase(name);
  }
  publish("deleted", name);
  return {};
}

}  // namespace vmm
