// qemu-img, driven with --output=json (parsed, never scraped) and a deadline on every call.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/host_resources.h"
#include "model/domain.h"

namespace vmm::storage {

// How qemu-img runs on local files, set once at start. With a uid: as that uid (= gid), no
// capabilities, no_new_privs, limits on memory, CPU time and files, its own network and pid
// namespaces, and a private root (base/private_root.h) holding its programs plus idmapped
// binds of exactly the directories it writes and the files (and backing layers) it reads, in
// which root's files show as its own. Network images (nfs:// URLs) are the exception: NFS's
// AUTH_SYS states the process's ids and the pools' files are root's, so there qemu-img is uid 0
// of a user namespace of its own - the same uid on the host, no capability anywhere - keeps the
// host's network and sees no host file at all.
// Without a sandbox (the default): as vmmd.
struct QemuImgSandbox {
  uint32_t uid = 0;
  std::string mountPoint;  // an empty directory the private roots are built on
};
void setQemuImgSandbox(const QemuImgSandbox& sandbox);

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
// Full copy into a new image of `format`, reporting progress. `fromLayers`: the files of
// `from`'s backing chain as vmm recorded or pinned it (ResolvedDisk::backing), which a
// sandboxed qemu-img sees only when named here.
Status convertImage(const std::string& from, model::DiskFormat fromFormat, const std::string& to, model::DiskFormat format,
                    const std::function<void(double)>& progress, Deadline deadline, const std::vector<std::string>& fromLayers = {});

using model::QemuImgAccess;

// `qemu-img ARGS` within `access`; a failure says `what` and qemu-img's reason.
Status runQemuImg(const std::vector<std::string>& args, const QemuImgAccess& access, Deadline deadline, const std::string& what);

}  // namespace vmm::storage
