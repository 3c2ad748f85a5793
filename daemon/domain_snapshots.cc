// Domain snapshots: the tree (parent links, the current snapshot) kept in the state store, and
// the driver calls that take, revert and delete them, each under the domain's job.
//
// Records: Table::snapshots, key "DOMAIN/SNAPSHOT" (removed with the domain),
// "DOMAIN/@current" naming the snapshot the domain's state descends from, and
// "DOMAIN/@pending" naming a snapshot being taken. A snapshot is recorded once the driver has
// taken it, so a record never lacks its data. A vmmd killed in between leaves what nothing
// records: a tag in the images (QEMU finishes a snapshot-save job on its own), or overlays that
// QEMU already writes to while the definition still names the images under them. The pending
// record, written before the driver starts and removed with the snapshot's own record, lets
// the next start find and remove them (sweepUnrecordedSnapshot).
#include <algorithm>

#include "base/fault_point.h"
#include "base/log.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "base/time_util.h"
#include "daemon/domain_service.h"

namespace vmm {

using json = nlohmann::json;

namespace {


constexpr const char* kCurrentKey = "@current";
constexpr const char* kPendingKey = "@pending";

std::string recordKey(const std::string& domain, const std::string& snapshot) { return domain + "/" + snapshot; }

json snapshotRecord(const model::Snapshot& s) {
  json j = model::formatSnapshot(s);
  if (s.parent.empty()) j.erase("parent");
  j["driver_data"] = s.driverData;
  return j;
}

// Children first: the order in which a subtree can be deleted.
void collectSubtree(const std::map<std::string, model::Snapshot>& all, const std::string& root, std::vector<std::string>& out) {
  for (const auto& [n, s] : all)
    if (s.parent == root) collectSubtree(all, n, out);
  out.push_back(root);
}

}  // namespace

Status DomainService::loadSnapshots() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::snapshots));
  std::vector<std::pair<std::shared_ptr<DomainObject>, json>> pending;
  for (const auto& row : rows) {
    auto slash = row.key.find('/');
    if (slash == std::string::npos) continue;
    auto obj = domains_.find(row.key.substr(0, slash));
    if (!obj) continue;
    std::string rest = row.key.substr(slash + 1);
    MutexLock lock(obj->mu);
    if (rest == kCurrentKey) {
      obj->currentSnapshot = row.value.value("name", "");
      continue;
    }
    if (rest == kPendingKey) {
      pending.emplace_back(obj, row.value);
      continue;
    }
    auto s = model::parseSnapshotRecord(row.value);
    if (!s.ok()) {
      log::error("stored snapshot is invalid; skipped", {{"key", row.key}, {"error", s.error().message}});
      continue;
    }
    obj->snapshots[s->name] = std::move(*s);
  }
  for (const auto& [obj, intent] : pending) sweepUnrecordedSnapshot(*obj, intent);
  return {};
}

// Removed rather than recorded: its caller was never told it exists, a multi-disk snapshot may
// be in some images only, a memory state may be half written, and the driver data a record
// needs died with the vmmd that took it. Removing makes "absent" true on disk as well as in the
// API (external overlays are merged back, so no write of the guest is lost), and the name can
// be taken again. Runs at start-up, after the domains were reconnected (the driver first waits
// for a snapshot job still running in QEMU).
void DomainService::sweepUnrecordedSnapshot(DomainObject& obj, const json& intent) {
  std::string snapshot = intent.value("name", "");
  std::shared_ptr<const model::Domain> def;
  bool recorded;
  {
    MutexLock lock(obj.mu);
    recorded = obj.snapshots.count(snapshot) > 0;
    def = obj.liveDef ? obj.liveDef : obj.def;
  }
  if (!recorded && !snapshot.empty()) {
    model::Snapshot orphan;
    orphan.name = snapshot;
    orphan.domain = obj.name;
    orphan.kind = model::enumFromName(model::kSnapshotKinds, intent.value("kind", "internal")).value_or(model::SnapshotKind::internal);
    orphan.driverData = {{"orphan", true}, {"state_dir", intent.value("state_dir", "")}, {"was_running", intent.value("was_running", false)}};
    auto drv = driverFor(*def);
    auto swept = drv.ok() ? (*drv)->snapshotDelete(*def, orphan, Deadline::after(Millis(120000)))
                          : Result<drivers::SnapshotDeleteResult>(drv.error());
    if (swept.ok()) {
      if (auto moved = moveDisks(obj, swept->moves); !moved.ok()) swept = moved.error();
    }
    if (!swept.ok()) {
      log::error("cannot remove a snapshot a stopped vmmd took but did not record; trying again at the next start",
                 {{"domain", obj.name}, {"snapshot", snapshot}, {"error", swept.error().message}});
      return;
    }
    log::warn("removed a snapshot a stopped vmmd took but did not record", {{"domain", obj.name}, {"snapshot", snapshot}});
  }
  auto st = store_.remove(Table::snapshots, recordKey(obj.name, kPendingKey));
  if (!st.ok()) log::error("cannot remove a pending snapshot record", {{"domain", obj.name}, {"error", st.error().message}});
}

Status DomainService::persistSnapshot(const model::Snapshot& s, const std::string& current) {
  return store_.write([&](StateStore::Txn& txn) -> Status {
    VMM_TRY(txn.put(Table::snapshots, recordKey(s.domain, s.name), snapshotRecord(s)));
    VMM_TRY(txn.remove(Table::snapshots, recordKey(s.domain, kPendingKey)));
    return txn.put(Table::snapshots, recordKey(s.domain, kCurrentKey), json{{"name", current}});
  });
}

Status DomainService::moveDisks(DomainObject& obj, const drivers::DiskMoves& moves) {
  if (moves.empty()) return {};
  auto edit = [&](const model::Domain& d) {
    auto copy = std::make_shared<model::Domain>(d);
    for (auto& disk : copy->disks) {
      auto it = moves.sources.find(disk.target);
      if (it == moves.sources.end()) continue;
      disk.source = model::DiskSource{};
      disk.source.path = it->second;
      // Overlays are qcow2; a merge can bring a disk back to its (possibly raw) base.
      auto fmt = moves.formats.find(disk.target);
      disk.format = fmt == moves.formats.end() ? model::DiskFormat::qcow2 : fmt->second;
    }
    return copy;
  };
  std::shared_ptr<const model::Domain> def, live;
  uint64_t gen;
  {
    MutexLock lock(obj.mu);
    def = obj.def;
    live = obj.liveDef;
    gen = obj.generation;
  }
  auto newDef = edit(*def);
  VMM_TRY(persistDefinition(obj.name, *newDef, gen + 1));
  {
    MutexLock lock(obj.mu);
    obj.def = newDef;
    obj.generation = gen + 1;
    if (live) obj.liveDef = edit(*live);
  }
  if (live) {
    auto st = persistRuntime(obj);
    if (!st.ok()) log::error("cannot record the moved disks", {{"domain", obj.name}, {"error", st.error().message}});
  }
  return {};
}

Result<model::Snapshot> DomainService::snapshotCreate(const std::string& name, const model::SnapshotSpec& spec) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "snapshot"));
  std::shared_ptr<const model::Domain> def;
  model::DomainState state;
  std::string parent;
  model::Snapshot snap;
  snap.name = spec.name.empty() ? "snap-" + formatTimestamp(wallNowMicros()).substr(0, 19) : spec.name;
  for (auto& c : snap.name)
    if (c == ':') c = '-';
  {
    MutexLock lock(obj->mu);
    def = obj->liveDef ? obj->liveDef : obj->def;
    state = obj->status.state;
    parent = obj->currentSnapshot;
    if (obj->snapshots.count(snap.name)) return conflict("domain " + name + " already has a snapshot " + quote(snap.name));
  }
  VMM_ASSIGN(auto* drv, driverFor(*def));
  bool running = model::isActive(state);
  snap.domain = name;
  snap.parent = parent;
  snap.description = spec.description;
  snap.kind = spec.external ? model::SnapshotKind::external : model::SnapshotKind::internal;
  // Some backends (containers) have no memory image: their snapshots are of the disks only.
  snap.memory = running && spec.memory && !spec.diskOnly && drv->caps().memorySnapshots;
  snap.domainState = stateName(state);
  snap.createdUs = wallNowMicros();
  drivers::SnapshotRequest request;
  request.name = snap.name;
  request.kind = snap.kind;
  request.memory = snap.memory;
  request.quiesce = spec.quiesce;
  request.stateDir = options_.saveDir.empty() ? "" : options_.saveDir + "/snapshots/" + name + "/" + snap.name;
  // Pending until recorded (see the top of this file); a driver that fails undoes its work.
  auto intend = [&] {
    return store_.put(Table::snapshots, recordKey(name, kPendingKey),
                      json{{"name", snap.name}, {"kind", model::enumName(model::kSnapshotKinds, request.kind)}, {"state_dir", request.stateDir},
                           {"was_running", state == model::DomainState::running}});
  };
  VMM_TRY(intend());
  Reverter pending;
  pending.add([&] { (void)store_.remove(Table::snapshots, recordKey(name, kPendingKey)); });
  auto taken = drv->snapshotCreate(*def, request, Deadline::after(Millis(600000)));
  if (!taken.ok() && taken.error().code == ErrorCode::unsupported && snap.kind == model::SnapshotKind::internal) {
    // A disk that cannot hold internal snapshots (raw, a block device) gets an external one:
    // an overlay on top, which every format supports.
    log::info("internal snapshot not possible; taking an external one", {{"domain", name}, {"reason", taken.error().message}});
    snap.kind = model::SnapshotKind::external;
    request.kind = model::SnapshotKind::external;
    VMM_TRY(intend());
    taken = drv->snapshotCreate(*def, request, Deadline::after(Millis(600000)));
  }
  if (!taken.ok()) return taken.error();
  // From here a failure keeps the pending record: the snapshot exists in the images.
  pending.success();
  snap.driverData = std::move(taken->driverData);
  snap.disks = std::move(taken->disks);
  if (auto st = moveDisks(*obj, taken->moves); !st.ok())
    return st.error().wrap("snapshot " + snap.name + " was taken, but the definition could not follow its overlays");
  faultPoint("snapshot.before-record");
  VMM_TRY(persistSnapshot(snap, snap.name));
  faultPoint("snapshot.after-record");
  {
    MutexLock lock(obj->mu);
    obj->snapshots[snap.name] = snap;
    obj->currentSnapshot = snap.name;
  }
  publish(name, "snapshot-created", {{"snapshot", snap.name}, {"kind", model::enumName(model::kSnapshotKinds, snap.kind)}});
  return snap;
}

Result<std::vector<model::Snapshot>> DomainService::snapshotList(const std::string& name) const {
  VMM_ASSIGN(auto obj, find(name));
  std::vector<model::Snapshot> out;
  MutexLock lock(obj->mu);
  for (const auto& [n, s] : obj->snapshots) out.push_back(s);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.createdUs < b.createdUs; });
  return out;
}

Result<model::Snapshot> DomainService::snapshotGet(const std::string& name, const std::string& snapshot) const {
  VMM_ASSIGN(auto obj, find(name));
  MutexLock lock(obj->mu);
  auto it = obj->snapshots.find(snapshot);
  if (it == obj->snapshots.end()) return notFound("domain " + name + " has no snapshot " + quote(snapshot));
  return it->second;
}

Result<std::optional<model::Snapshot>> DomainService::snapshotCurrent(const std::string& name) const {
  VMM_ASSIGN(auto obj, find(name));
  MutexLock lock(obj->mu);
  auto it = obj->snapshots.find(obj->currentSnapshot);
  if (it == obj->snapshots.end()) return std::optional<model::Snapshot>();
  return std::optional<model::Snapshot>(it->second);
}

Result<DomainView> DomainService::snapshotRevert(const std::string& name, const std::string& snapshot) {
  VMM_ASSIGN(auto obj, find(name));
  model::Snapshot snap;
  bool running;
  {
    MutexLock lock(obj->mu);
    auto it = obj->snapshots.find(snapshot);
    if (it == obj->snapshots.end()) return notFound("domain " + name + " has no snapshot " + quote(snapshot));
    snap = it->second;
    running = model::isActive(obj->status.state);
  }
  // A snapshot without memory holds disks only: the domain cannot keep running on top of
  // disks that change under it, so it is stopped first (and stays off, as when libvirt
  // reverts to a disk-only snapshot).
  // External snapshots are reverted on a stopped domain too: new overlays replace the disks,
  // then the saved memory (if any) is restored on them.
  if ((!snap.memory || snap.kind == model::SnapshotKind::external) && running) {
    auto stopped = destroy(name);
    if (!stopped.ok()) return stopped.error().wrap("stopping " + name + " to revert its disks");
  }
  // An internal snapshot with memory is loaded into a running QEMU: start it paused first.
  if (snap.memory && snap.kind == model::SnapshotKind::internal && !running) {
    StartParams paused;
    paused.paused = true;
    auto started = start(name, paused);
    if (!started.ok()) return started.error().wrap("starting " + name + " to load its snapshot");
  }
  drivers::SnapshotRevertResult result;
  {
    VMM_ASSIGN(auto guard, acquire(*obj, "snapshot revert"));
    std::shared_ptr<const model::Domain> def;
    {
      MutexLock lock(obj->mu);
      def = obj->liveDef ? obj->liveDef : obj->def;
    }
    VMM_ASSIGN(auto* drv, driverFor(*def));
    VMM_ASSIGN(result, drv->snapshotRevert(*def, snap, Deadline::after(Millis(600000))));
    VMM_TRY(moveDisks(*obj, result.moves));
    VMM_TRY(store_.put(Table::snapshots, recordKey(name, kCurrentKey), json{{"name", snap.name}}));
    // A domain that still runs is now in the state the snapshot was taken in (a paused guest
    // reverted to a snapshot of a running one runs, and the other way round).
    std::optional<model::DomainState> changed;
    {
      MutexLock lock(obj->mu);
      obj->currentSnapshot = snap.name;
      bool runsOrPaused = result.state == model::DomainState::running || result.state == model::DomainState::paused;
      if (runsOrPaused && model::isActive(obj->status.state) && obj->status.state != *result.state) {
        model::DomainState now = *result.state;
        obj->status.state = now;
        obj->status.reason = "reverted to snapshot " + snap.name;
        obj->status.sinceUs = wallNowMicros();
        changed = now;
      }
    }
    if (changed) {
      VMM_TRY(persistRuntime(*obj));
      publish(name, *changed == model::DomainState::paused ? "suspended" : "resumed",
              {{"state", stateName(*changed)}, {"reason", "reverted to snapshot " + snap.name}});
    }
  }
  // An external snapshot with memory: the domain resumes from its saved state on the
  // reverted disks.
  if (result.restoreFrom) {
    StartParams restore;
    restore.restoreFrom = *result.restoreFrom;
    restore.paused = result.state == model::DomainState::paused;
    auto started = start(name, restore);
    if (!started.ok()) return started.error().wrap("reverted the disks of " + name + ", but its memory state could not be restored");
  }
  publish(name, "snapshot-reverted", {{"snapshot", snap.name}});
  return viewOf(*obj);
}

Status DomainService::deleteOneSnapshot(DomainObject& obj, const model::Snapshot& snap, drivers::HypervisorDriver& drv,
                                        const model::Domain& def) {
  VMM_ASSIGN(auto result, drv.snapshotDelete(def, snap, Deadline::after(Millis(600000))));
  VMM_TRY(moveDisks(obj, result.moves));
  std::vector<model::Snapshot> reparented;
  std::string current;
  {
    MutexLock lock(obj.mu);
    for (auto& [n, s] : obj.snapshots)
      if (s.parent == snap.name) {
        s.parent = snap.parent;
        reparented.push_back(s);
      }
    current = obj.currentSnapshot == snap.name ? snap.parent : obj.currentSnapshot;
  }
  VMM_TRY(store_.write([&](StateStore::Txn& txn) -> Status {
    VMM_TRY(txn.remove(Table::snapshots, recordKey(snap.domain, snap.name)));
    for (const auto& s : reparented) VMM_TRY(txn.put(Table::snapshots, recordKey(s.domain, s.name), snapshotRecord(s)));
    return txn.put(Table::snapshots, recordKey(snap.domain, kCurrentKey), json{{"name", current}});
  }));
  {
    MutexLock lock(obj.mu);
    obj.snapshots.erase(snap.name);
    obj.currentSnapshot = current;
  }
  publish(obj.name, "snapshot-deleted", {{"snapshot", snap.name}});
  return {};
}

Status DomainService::snapshotDelete(const std::string& name, const std::string& snapshot, bool children) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "snapshot delete"));
  std::vector<std::string> order;
  std::shared_ptr<const model::Domain> def;
  {
    MutexLock lock(obj->mu);
    auto it = obj->snapshots.find(snapshot);
    if (it == obj->snapshots.end()) return notFound("domain " + name + " has no snapshot " + quote(snapshot));
    if (children) {
      collectSubtree(obj->snapshots, snapshot, order);
    } else {
      // An external snapshot's overlay is what its children's overlays sit on: merging it
      // away under them is not supported; delete them with it.
      if (it->second.kind == model::SnapshotKind::external)
        for (const auto& [n, s] : obj->snapshots)
          if (s.parent == snapshot) return conflict("snapshot " + snapshot + " is external and has children (" + n + "); delete them first or use --children");
      order.push_back(snapshot);
    }
    def = obj->liveDef ? obj->liveDef : obj->def;
  }
  VMM_ASSIGN(auto* drv, driverFor(*def));
  for (const auto& n : order) {
    model::Snapshot snap;
    {
      MutexLock lock(obj->mu);
      auto it = obj->snapshots.find(n);
      if (it == obj->snapshots.end()) continue;
      snap = it->second;
      def = obj->liveDef ? obj->liveDef : obj->def;  // external deletes move disks
    }
    VMM_TRY(deleteOneSnapshot(*obj, snap, *drv, *def));
  }
  return {};
}

}  // namespace vmm
