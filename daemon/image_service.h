// Images: disk images (with optional kernel and initrd) kept as volumes of an image pool,
// their metadata in the state store. Imports copy a host file or a downloaded URL into the
// pool through the pool service; any stopped domain can become a template image.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/random.h"
#include "base/result.h"
#include "daemon/domain_service.h"
#include "daemon/event_bus.h"
#include "drivers/driver.h"
#include "daemon/pool_service.h"
#include "daemon/state_store.h"
#include "model/image.h"
#include "model/pool.h"

namespace vmm {

struct ImageServiceOptions {
  std::string pool = "images";   // the image store; created as a dir pool at poolPath if missing
  std::string poolPath;          // "" = do not create it
  std::string tempDir;           // downloads and conversions in progress
  uint64_t maxDownloadBytes = 64ULL << 30;
  std::string caFile;            // PEM CA certificates https downloads trust; "" = the system's
  bool allowHttp = false;        // downloads over plain http://
  uint64_t maxVirtualSize = 2ULL << 40;  // the largest disk an imported image may claim
  Millis ioTimeout = Millis(6 * 3600 * 1000);
  // A domain's disk as the drivers get it (DaemonHostServices::resolveDisk): the layers under
  // it are what qemu-img may read when an image is made of it. Required for image from-domain.
  std::function<Result<drivers::ResolvedDisk>(const model::Disk&)> resolveDisk;
};

struct ImageProgress {
  std::function<void(int percent, const std::string& message)> report;
  std::function<bool()> cancelled;
};

struct TemplateFromDomainSpec {
  std::string name;         // of the image
  std::string domain;       // a shut-off domain
  std::string description, os, defaultUser;
};

class ImageService {
 public:
  ImageService(StateStore& store, EventBus& events, PoolService& pools, DomainService& domains, ImageServiceOptions options);

  Status load();
  std::vector<model::Image> list() const;
  Result<model::Image> get(const std::string& name) const;
  Result<model::Image> import(const model::ImageImportSpec& spec, const ImageProgress& progress);
  Result<model::Image> fromDomain(const TemplateFromDomainSpec& spec, const ImageProgress& progress);
  // Refused while domains launched from it still use its disk as their backing file.
  Status remove(const std::string& name);
  const std::string& poolName() const { return options_.pool; }
  // Copies a local file into a new volume of the image pool (a stream of the file's bytes),
  // reporting progress between `from` and `to` percent; `hash`, when given, sees every byte copied.
  Result<model::Volume> copyIntoPool(const std::string& pool, const std::string& file, const std::string& volume,
                                     model::DiskFormat format,
                                     uint64_t capacity, const ImageProgress& progress, int from = 0, int to = 100,
                                     Sha256* hash = nullptr);
  // The same from a descriptor already open on `file` (the bytes that were inspected are the
  // bytes copied).
  Result<model::Volume> copyIntoPool(const std::string& pool, int fd, const std::string& file, const std::string& volume,
                                     model::DiskFormat format, uint64_t capacity, const ImageProgress& progress, int from,
                                     int to, Sha256* hash);

 private:
  Status ensurePool();
  // Reserves an image name for the duration of an import.
  Status reserve(const std::string& name);
  void unreserve(const std::string& name);
  // Records the sha256 of the disk's bytes as copied; with `expectedSha256` a mismatch keeps nothing.
  Status judgeAgain(const model::Image& image);
  void sweepJudgedCopies(const std::string& importing);
  Result<model::Image> finishImport(model::Image image, const std::string& diskFile, const std::string& kernelFile,
                                    const std::string& initrdFile, const ImageProgress& progress,
                                    const std::string& expectedSha256 = "");
  void publish(const std::string& type, const std::string& name);

  StateStore& store_;
  EventBus& events_;
  PoolService& pools_;
  DomainService& domains_;
  const ImageServiceOptions options_;
  mutable Mutex mu_;
  std::map<std::string, model::Image> images_ VMM_GUARDED_BY(mu_);
  std::set<std::string> reserved_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm
