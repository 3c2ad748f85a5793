// Storage pools and volumes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/domain.h"
#include "model/json_reader.h"

namespace vmm::model {

enum class PoolType { dir, logical, netfs, iscsi };
extern const EnumTable<PoolType> kPoolTypes;

struct PoolSource {
  std::string host;                  // netfs, iscsi: server address
  int port = 0;                      // 0 = the protocol's default
  std::string dir;                   // netfs: exported directory on the server
  std::vector<std::string> devices;  // logical: physical volumes (block devices)
  std::string vgName;                // logical: volume group; default the pool name
  std::string target;                // iscsi: target IQN
  std::string initiator;             // iscsi: our IQN; generated when empty
  std::string username;              // iscsi CHAP
  std::string secret;                // iscsi CHAP secret: stored, never returned
};

struct Pool {
  std::string name;
  std::string uuid;
  PoolType type = PoolType::dir;
  std::string path;  // dir: the directory; netfs: where it is mounted when mounted by the kernel
  PoolSource source;
  bool autostart = true;
  std::map<std::string, std::string> labels;
};

Result<Pool> parsePool(const json& j);
json formatPool(const Pool& p, bool redactSecrets = true);

// What a client asks for when creating a volume.
struct VolumeSpec {
  std::string name;
  uint64_t capacity = 0;
  DiskFormat format = DiskFormat::qcow2;
  std::string backingVolume;  // linked clone of this volume of the same pool
  bool preallocate = false;
  // format "dir" (dir pools only): a directory volume, a container rootfs. Created empty, or
  // unpacked from a tarball on the daemon's host (fromTar, an absolute path).
  bool directory = false;
  std::string fromTar;
};
Result<VolumeSpec> parseVolumeSpec(const json& j);

// A volume as the backend sees it.
struct Volume {
  std::string name;
  std::string pool;
  DiskFormat format = DiskFormat::raw;
  uint64_t capacity = 0;
  uint64_t allocation = 0;
  std::string path;           // local path, or a URL for network pools (nfs://, iscsi://)
  std::string backingVolume;  // name in the same pool, if a linked clone
  bool directory = false;     // format "dir": a directory (a container rootfs); capacity = bytes in it
  std::vector<std::string> usedBy;  // domains referencing it (filled by the service)
  // Why vmm will not start, clone, wipe, resize or build an image from it (a header vmm did
  // not write, or one changed since it was recorded); empty: usable. Filled by the service.
  std::string refused;

  // What the volume's bytes say, read by the backend for the pool service. `format`,
  // `capacity` and `backingVolume` above start as the bytes say too; the service replaces them
  // by what it recorded when it first saw the volume, and uses these only to decide that first
  // record and to notice a header that no longer matches it. Never shown.
  struct Probe {
    uint64_t fileSize = 0;    // bytes of the file or device (a raw volume's capacity)
    std::string problem;      // a qcow2 header vmm does not open as it is (external data file,
                              // encryption, unknown features, a backing file outside the pool)
    std::optional<DiskFormat> backingFormat;  // a qcow2 header's backing-format extension
  } probe;
};
json formatVolume(const Volume& v);

// The Disk::target under which the lxc driver resolves a container's rootfs volume. No VM disk
// can have it (targets are [a-z0-9]{1,8}): only this disk may resolve to a directory volume.
inline constexpr const char* kContainerRootfsTarget = "(rootfs)";

}  // namespace vmm::model
