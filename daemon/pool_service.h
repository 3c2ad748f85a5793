// Storage pools and their volumes: definitions (persisted), each pool's backend, its state
// (inactive, active, error) and a cache of its volumes that list calls read without I/O.
//
// Mutations of one pool and its volumes are serialised by the pool's job. Long transfers
// (full clones, wipes, uploads) only hold the job to reserve their volume names, so a
// multi-gigabyte copy does not block creating another volume. A backend call that times out
// or cannot reach its server puts the pool into the error state; a successful refresh or
// start clears it.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "daemon/event_bus.h"
#include "daemon/job.h"
#include "daemon/object_table.h"
#include "daemon/state_store.h"
#include "daemon/volume_records.h"
#include "drivers/driver.h"
#include "model/pool.h"
#include "storage/pool_backend.h"

namespace vmm {

enum class PoolState { inactive, active, error };
std::string_view poolStateName(PoolState s);

struct PoolView {
  model::Pool def;
  PoolState state = PoolState::inactive;
  std::string error;  // why it is in the error state
  storage::PoolCapacity capacity;
  size_t volumeCount = 0;
  int64_t refreshedUs = 0;
  std::optional<std::string> job;
};
nlohmann::json formatPoolView(const PoolView& v);

using BackendFactory = std::function<Result<std::unique_ptr<storage::PoolBackend>>(const model::Pool&)>;
// For each volume of a pool that domains use: the names of those domains.
using VolumeUsers = std::function<std::map<std::string, std::vector<std::string>>(const std::string& pool)>;

struct PoolServiceOptions {
  BackendFactory factory;
  Millis jobWait = Millis(30000);      // how long a mutation waits for another one on the pool
  Millis ioTimeout = Millis(30000);    // each backend call (a server that hangs fails by then)
  Millis transferTimeout = Millis(6 * 3600 * 1000);  // full clones, wipes
  std::string defaultPoolPath;         // a dir pool "default" created when no pool exists; empty: none
};

struct PoolCreateParams {
  bool build = false;  // prepare the storage first (mkdir; pvcreate + vgcreate, which erases the devices)
  bool start = true;
};

struct VolumeCloneParams {
  std::string name;     // of the new volume
  bool linked = true;   // a qcow2 overlay; false: a full copy
  storage::ProgressFn progress;
  std::function<bool()> cancelled;
};

class PoolService {
 public:
  PoolService(StateStore& store, EventBus& events, PoolServiceOptions options);
  ~PoolService();

  void setVolumeUsers(VolumeUsers users) { users_ = std::move(users); }

  // Loads definitions (creating the default pool when there are none) and starts autostart
  // pools. A pool that fails to start stays defined, in the error state.
  Status load();

  // ---- pools
  // Defines, optionally builds, and starts a pool; any failure undoes all of it.
  Result<PoolView> create(model::Pool def, const PoolCreateParams& params);
  Result<PoolView> get(const std::string& name) const;
  std::vector<PoolView> list() const;
  Result<PoolView> start(const std::string& name);
  Result<PoolView> stop(const std::string& name);
  // Re-reads capacity and the volume list from the storage.
  Result<PoolView> refresh(const std::string& name);
  // Removes the definition (the pool must be stopped or unused); with deleteStorage also the
  // storage itself (which must hold no volumes).
  Status remove(const std::string& name, bool deleteStorage);
  std::vector<std::string> names() const { return pools_.names(); }

  // ---- volumes
  Result<std::vector<model::Volume>> listVolumes(const std::string& pool) const;
  Result<model::Volume> getVolume(const std::string& pool, const std::string& name) const;
  Result<model::Volume> createVolume(const std::string& pool, const model::VolumeSpec& spec);
  Status deleteVolume(const std::string& pool, const std::string& name);
  Result<model::Volume> resizeVolume(const std::string& pool, const std::string& name, uint64_t capacity, bool shrink);
  Result<model::Volume> cloneVolume(const std::string& pool, const std::string& source, const VolumeCloneParams& params);
  Result<model::Volume> wipeVolume(const std::string& pool, const std::string& name);

  // A stream over a volume's bytes. A writer holds the volume busy until it is destroyed;
  // finishing it refreshes the volume's cached metadata.
  Result<std::unique_ptr<storage::VolumeStream>> openVolume(const std::string& pool, const std::string& name,
                                                            storage::StreamMode mode);

  // How a hypervisor reaches a volume (for domain disks), with the layers below it as recorded.
  Result<drivers::ResolvedDisk> resolve(const std::string& pool, const std::string& volume);
  // The same for the volume of an active pool whose file is `path`; nullopt when no volume is.
  Result<std::optional<drivers::ResolvedDisk>> resolvePath(const std::string& path);

 private:
  struct PoolObject;
  class BusyVolume;
  Result<std::shared_ptr<PoolObject>> find(const std::string& name) const;
  Result<std::shared_ptr<PoolObject>> findActive(const std::string& name) const;
  Result<JobGuard> acquire(PoolObject& p, const std::string& what);
  PoolView viewOf(const PoolObject& p) const;
  model::Volume withUsers(model::Volume v) const;
  std::vector<std::string> usersOf(const std::string& pool, const std::string& volume) const;
  Status persist(const model::Pool& def);
  // Starts the backend and fills the cache; on failure the pool is inactive (or error).
  Status activate(PoolObject& p);
  Status reload(PoolObject& p, Deadline deadline);
  void refreshCapacity(PoolObject& p);
  // Records a failed backend call: timeouts and unreachable servers put the pool in error.
  Error noteFailure(PoolObject& p, Error e);
  // Caches a volume as a backend described it after vmm changed it; `record`: what vmm made
  // (a new volume), otherwise the volume keeps its record. Returns it as cached.
  model::Volume setVolume(PoolObject& p, model::Volume v, const std::optional<VolumeRecord>& record = std::nullopt);
  void applyRecords(PoolObject& p, std::vector<model::Volume>& vols);
  void persistRecords(PoolObject& p, const std::vector<std::string>& names);
  void forgetRecord(PoolObject& p, const std::string& volume);
  // The cached volume, checked usable: it exists, is not refused, and (a qcow2 chain) every
  // layer's header, read again now, still matches its record.
  Result<model::Volume> usableVolume(PoolObject& p, const std::string& name, Deadline deadline);
  // The same for the volume and each volume below it, the volume first.
  Result<std::vector<model::Volume>> usableChain(PoolObject& p, const std::string& name, Deadline deadline);
  Status reserve(PoolObject& p, const std::string& volume, const std::string& what);
  void unreserve(PoolObject& p, const std::string& volume);
  void publish(const std::string& type, const std::string& pool, const nlohmann::json& data);
  Deadline ioDeadline() const { return Deadline::after(options_.ioTimeout); }

  StateStore& store_;
  EventBus& events_;
  const PoolServiceOptions options_;
  VolumeUsers users_;
  ObjectTable<PoolObject> pools_;
  Mutex createMu_;  // guards creating_ and the uniqueness checks of pool creation
  // Names and storage reserved by creations in progress.
  std::map<std::string, model::Pool> creating_ VMM_GUARDED_BY(createMu_);
};

}  // namespace vmm
