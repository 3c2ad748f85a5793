// The interface every storage pool type implements (dir, logical, netfs, iscsi). A backend
// object serves one pool; the daemon's pool service owns it, serialises mutations per pool
// and keeps the definitions. Every call that reaches a server or a tool takes a deadline.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/host_resources.h"
#include "model/pool.h"

namespace vmm::storage {

struct PoolCapacity {
  uint64_t capacity = 0;    // bytes the pool can hold
  uint64_t allocation = 0;  // bytes in use
  uint64_t available = 0;   // bytes free for new volumes
};

// Reports progress of long transfers (0..1).
using ProgressFn = std::function<void(double fraction)>;

struct CloneOptions {
  bool linked = true;  // a qcow2 overlay on the source; false: a full, independent copy
  ProgressFn progress;
};

// Byte access to one volume, for upload, download and wipe. Upload semantics: the volume's
// content becomes exactly the bytes written once finish() succeeds. File pools write to a
// temporary file that finish() renames over the volume (an abandoned upload changes nothing);
// block pools (LVM, iSCSI) write in place and refuse bytes beyond the volume's size.
// Destroying a writable stream without finish() abandons the upload.
class VolumeStream {
 public:
  virtual ~VolumeStream() = default;
  virtual uint64_t size() const = 0;  // readable bytes; for writers, the most that may be written (0: unlimited)
  // Reads up to len bytes at offset; 0 at the end.
  virtual Result<size_t> read(uint64_t offset, char* buf, size_t len, Deadline deadline) = 0;
  virtual Status write(uint64_t offset, const char* buf, size_t len, Deadline deadline) = 0;
  virtual Status finish(Deadline deadline) = 0;
};

enum class StreamMode { read, write };

class PoolBackend {
 public:
  virtual ~PoolBackend() = default;
  virtual model::PoolType type() const = 0;

  // Prepares the pool's storage once (mkdir, pvcreate + vgcreate, ...).
  virtual Status build(Deadline deadline) = 0;
  // Makes the pool usable (mount, login, check the VG); stop() undoes it.
  virtual Status start(Deadline deadline) = 0;
  virtual Status stop(Deadline deadline) = 0;
  virtual Result<PoolCapacity> capacity(Deadline deadline) = 0;
  virtual Result<std::vector<model::Volume>> listVolumes(Deadline deadline) = 0;
  // Removes the pool's storage (only when it has no volumes).
  virtual Status destroyStorage(Deadline deadline) = 0;

  // Volumes are described as their bytes say (`Volume::probe`); the pool service keeps what it
  // recorded about each one and hands those records back: every call below that reads or makes
  // an image takes the format and backing from them, never from the volume's current bytes,
  // which a guest may have written. `base` is the recorded volume a new one reads through.
  virtual Result<model::Volume> createVolume(const model::VolumeSpec& spec, const model::Volume* base, Deadline deadline) = 0;
  virtual Result<model::Volume> volumeInfo(const std::string& name, Deadline deadline) = 0;
  virtual Status deleteVolume(const std::string& name, Deadline deadline) = 0;
  virtual Status resizeVolume(const model::Volume& volume, uint64_t capacity, bool allowShrink, Deadline deadline) = 0;
  virtual Result<model::Volume> cloneVolume(const model::Volume& source, const std::string& name, const CloneOptions& options,
                                            Deadline deadline) = 0;
  // Empties a volume; a linked clone stays one, on `base`.
  virtual Status wipeVolume(const model::Volume& volume, const model::Volume* base, Deadline deadline) = 0;
  virtual Result<std::unique_ptr<VolumeStream>> openVolume(const std::string& name, StreamMode mode, Deadline deadline) = 0;

  // How a hypervisor reaches the volume (a path, or a network blockdev), in its recorded format.
  virtual Result<model::ResolvedDisk> resolve(const model::Volume& volume, Deadline deadline) = 0;
};

}  // namespace vmm::storage
