// Domains: definitions, lifecycle through the drivers, runtime records, lifecycle events.
//
// Each domain is a DomainObject with a job (mutations serialised) and a snapshot of its
// definition and status behind a short mutex that is never held across I/O, so reads - list,
// get - never wait for a running mutation or a stuck guest.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/types/domain_summary.h"
#include "base/mutex.h"
#include "base/result.h"
#include "base/thread_pool.h"
#include "daemon/event_bus.h"
#include "daemon/job.h"
#include "daemon/network_service.h"
#include "daemon/object_table.h"
#include "daemon/state_store.h"
#include "drivers/driver.h"
#include "model/domain.h"
#include "model/domain_state.h"
#include "model/snapshot.h"

namespace vmm {

struct DomainStatus {
  model::DomainState state = model::DomainState::shutoff;
  std::string reason;       // why it is in that state: "booted", "destroyed", "guest shutdown", ...
  int64_t sinceUs = 0;
  std::string runId;        // of the running instance
  nlohmann::json info = nlohmann::json::object();  // the driver's public runtime details
};

// A consistent copy of one domain, for reads.
struct DomainView {
  std::shared_ptr<const model::Domain> def;       // the persistent definition
  std::shared_ptr<const model::Domain> liveDef;   // what runs now (null when shut off)
  uint64_t generation = 0;                        // bumps on every definition change (ETag)
  DomainStatus status;
  std::optional<std::string> job;                 // the mutation in progress
  bool managedSave = false;                       // a saved state the next start resumes
};

// What list shows of a domain (api/types/domain_summary.h), and the view as the API's JSON: the
// summary's fields, plus with `full` the definition, runtime details and job.
wire::DomainSummary domainSummary(const DomainView& v);
nlohmann::json formatDomainView(const DomainView& v, bool full);

struct DomainObject {
  explicit DomainObject(std::string n) : name(std::move(n)) {}
  const std::string name;
  Job job;

  mutable Mutex mu;  // guards everything below; never held across I/O
  bool visible VMM_GUARDED_BY(mu) = false;  // false while being created or after removal
  std::shared_ptr<const model::Domain> def VMM_GUARDED_BY(mu);
  std::shared_ptr<const model::Domain> liveDef VMM_GUARDED_BY(mu);
  uint64_t generation VMM_GUARDED_BY(mu) = 1;
  DomainStatus status VMM_GUARDED_BY(mu);
  nlohmann::json runtimeRecord VMM_GUARDED_BY(mu);  // driver-private, persisted while active
  bool managedSave VMM_GUARDED_BY(mu) = false;      // its managed save file exists
  std::map<std::string, model::Snapshot> snapshots VMM_GUARDED_BY(mu);  // the snapshot tree (parent links)
  std::string currentSnapshot VMM_GUARDED_BY(mu);   // the snapshot the domain's state descends from

  // The summary shown by list and its JSON text, cached until anything it shows changes.
  struct SummaryKey {
    const void* def = nullptr;
    const void* liveDef = nullptr;
    uint64_t generation = 0;
    model::DomainState state = model::DomainState::shutoff;
    int64_t sinceUs = 0;
    std::string reason;
    bool operator==(const SummaryKey&) const = default;
  };
  SummaryKey summaryKey VMM_GUARDED_BY(mu);
  wire::DomainSummary summary VMM_GUARDED_BY(mu);
  std::string summaryText VMM_GUARDED_BY(mu);
};

struct DomainServiceOptions {
  Millis jobWait = Millis(30000);        // how long a mutation waits for another to finish
  Millis defaultShutdownTimeout = Millis(60000);
  Millis reconnectTimeout = Millis(15000);
  std::string saveDir;                   // managed save files (NAME.save); empty: no managed save
  // Host ids an unprivileged container's range is allocated from ([containers] idmap_range).
  uint64_t idmapStart = 1000000, idmapCount = 1000000000;
};

struct ListFilter {
  std::optional<model::DomainState> state;
  bool activeOnly = false;
  std::map<std::string, std::string> labels;  // all must match
  std::optional<model::DriverType> type;
  std::optional<std::string> project = std::nullopt;  // only this project's domains (model/project.h)
};

struct ShutdownParams {
  std::optional<Millis> timeout;  // graceful period; then destroy unless force is false
  bool force = true;
};

struct StartParams {
  bool paused = false;
  bool forceBoot = false;      // boot afresh and discard a managed save
  std::string restoreFrom;     // a state file written by save (restore)
};

struct SaveParams {
  std::string path;            // where to write the state; empty: the managed save file
  Millis timeout = Millis(120000);
};

class DomainService final : public drivers::DriverObserver {
 public:
  DomainService(StateStore& store, EventBus& events, ThreadPool& pool, DomainServiceOptions options = {});
  ~DomainService() override;

  void addDriver(std::unique_ptr<drivers::HypervisorDriver> driver);
  drivers::HypervisorDriver* driver(model::DriverType type) const;
  // The driver of `def`, or why it cannot run here (not built in, no hypervisor).
  Result<drivers::HypervisorDriver*> driverFor(const model::Domain& def) const;
  std::vector<drivers::HypervisorDriver*> drivers() const;
  void setHostServices(drivers::HostServices* services);

  // Loads definitions and runtime records, reconnects to running domains in parallel and
  // releases the resources of those that died meanwhile.
  Status load();
  // Starts domains marked autostart that are shut off (in the background).
  void autostart();

  // ---- definitions
  Result<DomainView> create(model::Domain def);
  // Replaces the definition; `ifGeneration` implements If-Match.
  Result<DomainView> update(const std::string& name, model::Domain def, std::optional<uint64_t> ifGeneration);
  Status undefine(const std::string& name);
  Result<DomainView> get(const std::string& name) const;
  std::vector<DomainView> list(const ListFilter& filter) const;
  // The JSON text of list(filter) as summaries with `fields` (wire::SummaryField bits): built
  // from per-domain caches, so listing thousands of domains costs little more than copying text.
  std::string listSummaryText(const ListFilter& filter, uint32_t fields = wire::kAllSummaryFields) const;
  size_t count() const { return domains_.size(); }
  std::vector<std::string> names() const;
  // For each volume of `pool` that a definition or running instance uses: the domains.
  std::map<std::string, std::vector<std::string>> volumeUsers(const std::string& pool) const;
  // The domains with a NIC on `network`, and which of them run.
  NetworkUsers networkUsers(const std::string& network) const;
  // Counts by state, for metrics.
  std::map<std::string, int> stateCounts() const;

  // ---- lifecycle (each takes the domain's job)
  Result<DomainView> start(const std::string& name, const StartParams& params = {});
  Result<DomainView> shutdown(const std::string& name, const ShutdownParams& params);
  Result<DomainView> destroy(const std::string& name);
  Result<DomainView> reboot(const std::string& name);
  Result<DomainView> reset(const std::string& name);
  Result<DomainView> suspend(const std::string& name);
  Result<DomainView> resume(const std::string& name);
  // Writes the running state to a file and stops the domain. Without a path it is a managed
  // save: the next start resumes from it (unless forceBoot) and then deletes it.
  Result<DomainView> save(const std::string& name, const SaveParams& params);
  std::string managedSavePath(const std::string& name) const;

  // ---- devices
  Result<DomainView> attachDisk(const std::string& name, model::Disk disk, bool persist, bool live);
  Result<DomainView> detachDisk(const std::string& name, const std::string& target, bool persist, bool live);
  Result<DomainView> attachNic(const std::string& name, model::Nic nic, bool persist, bool live);
  Result<DomainView> detachNic(const std::string& name, const std::string& mac, bool persist, bool live);

  // ---- snapshots (domain_snapshots.cc); each takes the domain's job
  Result<model::Snapshot> snapshotCreate(const std::string& name, const model::SnapshotSpec& spec);
  Result<std::vector<model::Snapshot>> snapshotList(const std::string& name) const;
  Result<model::Snapshot> snapshotGet(const std::string& name, const std::string& snapshot) const;
  Result<std::optional<model::Snapshot>> snapshotCurrent(const std::string& name) const;
  Result<DomainView> snapshotRevert(const std::string& name, const std::string& snapshot);
  // Deletes a snapshot; its children move to its parent, or are deleted too with `children`.
  Status snapshotDelete(const std::string& name, const std::string& snapshot, bool children);

  // ---- reads from the guest (no job: a stuck guest blocks only its own call)
  Result<nlohmann::json> stats(const std::string& name, Deadline deadline);
  nlohmann::json statsAll(Deadline deadline, const std::optional<std::string>& project = std::nullopt);
  Result<drivers::ExecResult> guestExec(const std::string& name, const drivers::ExecRequest& req, Deadline deadline);
  Result<nlohmann::json> guestCommand(const std::string& name, const std::string& command, const nlohmann::json& args,
                                      Deadline deadline);
  Result<std::string> consoleLog(const std::string& name, size_t maxBytes);
  // A byte stream to the running domain's console (output in, keyboard out).
  Result<fs::UniqueFd> openConsole(const std::string& name);

  // ---- DriverObserver
  void domainStopped(const std::string& name, const std::string& runId, drivers::StopCause cause,
                     const std::string& detail) override;
  void domainStateChanged(const std::string& name, const std::string& runId, model::DomainState state,
                          const std::string& reason) override;
  void domainEvent(const std::string& name, const std::string& runId, const std::string& type,
                   const nlohmann::json& data) override;

 private:
  Result<std::shared_ptr<DomainObject>> find(const std::string& name) const;
  Result<JobGuard> acquire(DomainObject& obj, const std::string& what);
  DomainView viewOf(const DomainObject& obj) const;
  // Identity index: which domain owns each uuid and MAC address (definition and running
  // instance). O(1) uniqueness checks; guarded by createMu_.
  Status checkUnique(const model::Domain& def, const std::string& ignoreName) const VMM_REQUIRES(createMu_);
  void reindex(const std::string& name, const model::Domain* def, const model::Domain* live) VMM_REQUIRES(createMu_);
  void reindexObject(DomainObject& obj);  // after its definition or running instance changed
  Status persistDefinition(const std::string& name, const model::Domain& def, uint64_t generation);
  Status persistRuntime(DomainObject& obj);
  // Sets the status and publishes a lifecycle event.
  void setStatus(DomainObject& obj, DomainStatus status, const std::string& event);
  // The running instance ended (requested or not): drop the runtime record, release, publish.
  void markStopped(DomainObject& obj, const std::string& reason, const std::string& event);
  // Under the job: handle an unrequested stop reported by the driver.
  void handleStopped(const std::string& name, const std::string& runId, drivers::StopCause cause,
                     const std::string& detail);
  Result<std::pair<std::shared_ptr<const model::Domain>, drivers::HypervisorDriver*>> activeDef(DomainObject& obj);
  void publish(const std::string& name, const std::string& event, const nlohmann::json& extra = nullptr);
  Status loadSnapshots();
  // Removes a snapshot a killed vmmd took without recording it (domain_snapshots.cc).
  void sweepUnrecordedSnapshot(DomainObject& obj, const nlohmann::json& intent);
  Status persistSnapshot(const model::Snapshot& s, const std::string& current);
  // Points disks at the files a snapshot operation moved them to (external snapshots), in the
  // persistent definition and the running instance.
  // `driverResult` carries "disk_sources" {target: path} and optionally "disk_formats".
  Status moveDisks(DomainObject& obj, const drivers::DiskMoves& moves);
  Status deleteOneSnapshot(DomainObject& obj, const model::Snapshot& snap, drivers::HypervisorDriver& drv,
                           const model::Domain& def);

  // A device change applied to the running domain (live) and/or its definition (persist).
  struct DeviceChange {
    std::string what;
    bool live = false, persist = false;
    std::function<Status(model::Domain&)> edit;  // applied to copies of the definitions
    std::function<Status(const model::Domain& before, const model::Domain& after, drivers::HypervisorDriver&)> apply;
    nlohmann::json event;
  };
  Result<DomainView> changeDevices(const std::string& name, DeviceChange change);

  StateStore& store_;
  EventBus& events_;
  ThreadPool& pool_;
  const DomainServiceOptions options_;
  std::map<model::DriverType, std::unique_ptr<drivers::HypervisorDriver>> drivers_;
  ObjectTable<DomainObject> domains_;
  mutable Mutex createMu_;  // serialises uniqueness checks and guards the index below
  std::unordered_map<std::string, std::string> uuidOwner_ VMM_GUARDED_BY(createMu_), macOwner_ VMM_GUARDED_BY(createMu_);
  std::unordered_map<std::string, std::vector<std::string>> ownedKeys_ VMM_GUARDED_BY(createMu_);  // name -> its uuid and MACs
  // Host id ranges [first, end) of unprivileged containers, by domain (definition and live one).
  std::unordered_map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> idmaps_ VMM_GUARDED_BY(createMu_);
  // Gives an unprivileged container without idmap_base the first free range of 65536 ids (size
  // idmap_size) and refuses an explicit range that overlaps another container's.
  Status assignIdmap(model::Domain& def, const std::string& ignoreName) VMM_REQUIRES(createMu_);
};

}  // namespace vmm
