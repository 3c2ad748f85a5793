// qemu-img, driven with --output=json (parsed, never scraped) and a deadline on every call.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/time_util.h"
#include "model/domain.h"

namespace vmm::storage {

struct ImageInfo {
  model::DiskFormat format = model::DiskFormat::raw;
  uint64_t virtualSize = 0;
  uint64_t actualSize = 0;
  std::string backingFile;  // as recorded in the image
};

struct CreateImage {
  std::string path;
  model::DiskFormat format = model::DiskFormat::qcow2;
  uint64_t size = 0;               // required, also with a backing file (which is never opened)
  std::string backingFile;         // linked clone
  model::DiskFormat backingFormat = model::DiskFormat::qcow2;  // as recorded, never probed
  bool preallocate = false;
};

Status createImage(const CreateImage& c, Deadline deadline);
// `shared`: read an image that a running guest holds open (qemu-img -U).
Result<ImageInfo> imageInfo(const std::string& path, Deadline deadline, bool shared = true);
Status resizeImage(const std::string& path, model::DiskFormat format, uint64_t size, bool allowShrink, Deadline deadline);
// Full copy into a new image of `format`, reporting progress.
Status convertImage(const std::string& from, model::DiskFormat fromFormat, const std::string& to, model::DiskFormat format,
                    const std::function<void(double)>& progress, Deadline deadline);

}  // namespace vmm::storage
