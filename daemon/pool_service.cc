#include "daemon/pool_service.h"

#include <future>

#include "base/log.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "base/time_util.h"
#include "model/units.h"
#include "storage/image_inspect.h"

namespace vmm {

using json = nlohmann::json;

std::string_view poolStateName(PoolState s) {
  switch (s) {
    case PoolState::inactive: return "inactive";
    case PoolState::active: return "active";
    case PoolState::error: return "error";
  }
  return "inactive";
}

json formatPoolView(const PoolView& v) {
  json j = model::formatPool(v.def);
  j["state"] = poolStateName(v.state);
  if (!v.error.empty()) j["error"] = v.error;
  j["capacity"] = v.capacity.capacity;
  j["allocation"] = v.capacity.allocation;
  j["available"] = v.capacity.available;
  j["volumes"] = v.volumeCount;
  if (v.refreshedUs) j["refreshed_at"] = formatTimestamp(v.refreshedUs);
  if (v.job) j["job"] = *v.job;
  return j;
}

namespace {

// The linked clones among `volumes` that read through volume `name`.
std::vector<std::string> clonesOf(const std::map<std::string, model::Volume>& volumes, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [n, v] : volumes)
    if (v.backingVolume == name) out.push_back(n);
  return out;
}

}  // namespace

struct PoolService::PoolObject {
  PoolObject(model::Pool d, std::unique_ptr<storage::PoolBackend> b) : name(d.name), backend(std::move(b)), def(std::move(d)) {}
  const std::string name;
  Job job;
  // Backends are safe to call concurrently for reads; the job serialises mutations.
  const std::shared_ptr<storage::PoolBackend> backend;

  mutable Mutex mu;  // guards everything below; never held across I/O
  model::Pool def VMM_GUARDED_BY(mu);
  PoolState state VMM_GUARDED_BY(mu) = PoolState::inactive;
  std::string error VMM_GUARDED_BY(mu);
  storage::PoolCapacity capacity VMM_GUARDED_BY(mu);
  int64_t refreshedUs VMM_GUARDED_BY(mu) = 0;
  std::map<std::string, model::Volume> volumes VMM_GUARDED_BY(mu);
  std::map<std::string, std::string> busy VMM_GUARDED_BY(mu);  // volume -> the transfer using it
  // volume -> full copies reading it (it stays busy meanwhile)
  std::map<std::string, int> copying VMM_GUARDED_BY(mu);
  // What vmm recorded about each volume (volume_records.h).
  std::map<std::string, VolumeRecord> records VMM_GUARDED_BY(mu);
};

PoolService::PoolService(StateStore& store, EventBus& events, PoolServiceOptions options)
    : store_(store), events_(events), options_(std::move(options)) {}

PoolService::~PoolService() = default;

void PoolService::publish(const std::string& type, const std::string& pool, const json& data) {
  json d = data.is_object() ? data : json::object();
  d["pool"] = pool;
  std::string object = "pools/" + pool;
  if (d.contains("volume")) object += "/volumes/" + d["volume"].get<std::string>();
  events_.publish(type, object, std::move(d));
}

Result<std::shared_ptr<PoolService::PoolObject>> PoolService::find(const std::string& name) const {
  auto p = pools_.find(name);
  if (!p) return notFound("pool " + quote(name) + " not found");
  return p;
}

Result<std::shared_ptr<PoolService::PoolObject>> PoolService::findActive(const std::string& name) const {
  VMM_ASSIGN(auto p, find(name));
  MutexLock lock(p->mu);
  if (p->state == PoolState::error)
    return unavailable("pool " + name + " is in the error state (" + p->error + "); refresh or restart it");
  if (p->state != PoolState::active) return conflict("pool " + name + " is not active; start it first");
  return p;
}

Result<JobGuard> PoolService::acquire(PoolObject& p, const std::string& what) {
  return p.job.acquire(what, "pool " + p.name, Deadline::after(options_.jobWait));
}

PoolView PoolService::viewOf(const PoolObject& p) const {
  PoolView v;
  v.job = p.job.current();
  MutexLock lock(p.mu);
  v.def = p.def;
  v.state = p.state;
  v.error = p.error;
  v.capacity = p.capacity;
  v.volumeCount = p.volumes.size();
  v.refreshedUs = p.refreshedUs;
  return v;
}

std::vector<std::string> PoolService::usersOf(const std::string& pool, const std::string& volume) const {
  if (!users_) return {};
  auto all = users_(pool);
  auto it = all.find(volume);
  return it == all.end() ? std::vector<std::string>{} : it->second;
}

model::Volume PoolService::withUsers(model::Volume v) const {
  v.usedBy = usersOf(v.pool, v.name);
  return v;
}

Status PoolService::persist(const model::Pool& def) {
  return store_.put(Table::pools, def.name, model::formatPool(def, /*redactSecrets=*/false));
}

Error PoolService::noteFailure(PoolObject& p, Error e) {
  if (e.code == ErrorCode::timeout || e.code == ErrorCode::unavailable) {
    bool changed = false;
    {
      MutexLock lock(p.mu);
      changed = p.state != PoolState::error;
      if (p.state != PoolState::inactive) p.state = PoolState::error;
      p.error = e.message;
    }
    if (changed) {
      log::warn("pool in error", {{"pool", p.name}, {"error", e.message}});
      publish("storage.pool", p.name, {{"event", "error"}, {"error", e.message}});
    }
  }
  return e;
}

Status PoolService::reload(PoolObject& p, Deadline deadline) {
  auto cap = p.backend->capacity(deadline);
  if (!cap.ok()) return noteFailure(p, cap.error().wrap("pool " + p.name));
  auto vols = p.backend->listVolumes(deadline);
  if (!vols.ok()) return noteFailure(p, vols.error().wrap("pool " + p.name));
  applyRecords(p, *vols);
  std::map<std::string, model::Volume> byName;
  for (auto& v : *vols) byName[v.name] = std::move(v);
  MutexLock lock(p.mu);
  p.capacity = *cap;
  p.volumes = std::move(byName);
  p.state = PoolState::active;
  p.error.clear();
  p.refreshedUs = wallNowMicros();
  return {};
}

// After a volume changed, only the pool's capacity is re-read (not every volume's header: the
// cache already holds the changed volume). A failure shows in the pool's state.
void PoolService::refreshCapacity(PoolObject& p) {
  auto cap = p.backend->capacity(ioDeadline());
  if (!cap.ok()) {
    (void)noteFailure(p, cap.error().wrap("pool " + p.name));
    return;
  }
  MutexLock lock(p.mu);
  p.capacity = *cap;
}

Status PoolService::activate(PoolObject& p) {
  Deadline deadline = ioDeadline();
  if (auto st = p.backend->start(deadline); !st.ok()) {
    auto e = st.error().wrap("pool " + p.name + ": cannot start");
    MutexLock lock(p.mu);
    p.state = e.code == ErrorCode::timeout || e.code == ErrorCode::unavailable ? PoolState::error : PoolState::inactive;
    p.error = e.code == ErrorCode::timeout || e.code == ErrorCode::unavailable ? e.message : "";
    return e;
  }
  if (auto st = reload(p, deadline); !st.ok()) {
    (void)p.backend->stop(ioDeadline());
    return st;
  }
  return {};
}

// A volume's format and backing are recorded when vmm makes it or first sees it, and never
// detected again. Otherwise a guest writing a qcow2 header into its raw disk would turn it, at
// the next start or clone, into an image whose backing file is any file of the host.
void PoolService::applyRecords(PoolObject& p, std::vector<model::Volume>& vols) {
  std::vector<std::string> changed;
  {
    MutexLock lock(p.mu);
    changed = applyVolumeRecords(p.records, vols);
  }
  persistRecords(p, changed);
}

void PoolService::persistRecords(PoolObject& p, const std::vector<std::string>& names) {
  if (names.empty()) return;
  std::vector<std::pair<std::string, json>> rows;
  {
    MutexLock lock(p.mu);
    for (const auto& name : names)
      if (auto it = p.records.find(name); it != p.records.end()) rows.emplace_back(name, formatVolumeRecord(it->second));
  }
  auto st = store_.write([&](StateStore::Txn& txn) -> Status {
    for (const auto& [name, row] : rows) VMM_TRY(txn.put(Table::volumes, p.name + "/" + name, row));
    return {};
  });
  if (!st.ok()) log::warn("cannot record volumes", {{"pool", p.name}, {"error", st.error().message}});
}

void PoolService::forgetRecord(PoolObject& p, const std::string& volume) {
  {
    MutexLock lock(p.mu);
    p.records.erase(volume);
  }
  (void)store_.remove(Table::volumes, p.name + "/" + volume);
}

model::Volume PoolService::setVolume(PoolObject& p, model::Volume v, const std::optional<VolumeRecord>& record) {
  if (record) {
    {
      MutexLock lock(p.mu);
      p.records[v.name] = *record;
    }
    persistRecords(p, {v.name});
  }
  std::vector<model::Volume> one{std::move(v)};
  applyRecords(p, one);
  MutexLock lock(p.mu);
  p.volumes[one[0].name] = one[0];
  return std::move(one[0]);
}

Result<model::Volume> PoolService::usableVolume(PoolObject& p, const std::string& name, Deadline deadline) {
  VMM_ASSIGN(auto chain, usableChain(p, name, deadline));
  return std::move(chain.front());
}

Result<std::vector<model::Volume>> PoolService::usableChain(PoolObject& p, const std::string& name, Deadline deadline) {
  std::vector<std::string> chain;  // the volume, then each backing (qcow2 layers are read again)
  std::vector<model::Volume> layers;
  {
    MutexLock lock(p.mu);
    auto it = p.volumes.find(name);
    if (it == p.volumes.end()) {
      // A name reserved but not listed yet is a volume being made (cloned, unpacked).
      if (p.busy.count(name)) return conflict("volume " + p.name + "/" + name + " is still being created");
      return notFound("pool " + p.name + " has no volume " + quote(name));
    }
    for (std::string cur = name; !cur.empty();) {
      auto r = p.records.find(cur);
      auto v = p.volumes.find(cur);
      if (r == p.records.end() || v == p.volumes.end())
        return notFound("volume " + p.name + "/" + cur + " has no record; refresh the pool");
      if (chain.size() > kMaxBackingDepth) return invalidArgument("volume " + p.name + "/" + name + ": its backing chain is too deep");
      chain.push_back(cur);
      layers.push_back(v->second);
      cur = r->second.format == model::DiskFormat::qcow2 ? r->second.backing : "";
    }
  }
  for (const auto& layer : chain) {
    VolumeRecord record;
    {
      MutexLock lock(p.mu);
      record = p.records[layer];
    }
    if (!record.refused.empty()) return invalidArgument("volume " + p.name + "/" + layer + " is refused: " + record.refused);
    if (record.format != model::DiskFormat::qcow2) continue;  // raw: nothing in its bytes is read
    auto fresh = p.backend->volumeInfo(layer, deadline);
    if (!fresh.ok()) return noteFailure(p, fresh.error().wrap("volume " + p.name + "/" + layer));
    MutexLock lock(p.mu);
    applyVolumeRecord(p.records, record, *fresh);
    if (!fresh->refused.empty()) return invalidArgument("volume " + p.name + "/" + layer + " is refused: " + fresh->refused);
  }
  return layers;
}

Status PoolService::reserve(PoolObject& p, const std::string& volume, const std::string& what) {
  MutexLock lock(p.mu);
  auto it = p.busy.find(volume);
  if (it != p.busy.end()) return conflict("volume " + p.name + "/" + volume + " is busy (" + it->second + ")");
  p.busy[volume] = what;
  return {};
}

void PoolService::unreserve(PoolObject& p, const std::string& volume) {
  MutexLock lock(p.mu);
  p.busy.erase(volume);
}

// ---------------------------------------------------------------- pools

Status PoolService::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::pools));
  for (const auto& row : rows) {
    auto def = model::parsePool(row.value);
    if (!def.ok()) {
      log::error("stored pool definition is invalid; skipped", {{"pool", row.key}, {"error", def.error().message}});
      continue;
    }
    auto backend = options_.factory(*def);
    if (!backend.ok()) {
      log::error("pool cannot be loaded", {{"pool", row.key}, {"error", backend.error().message}});
      continue;
    }
    std::string name = def->name;  // read before the definition is moved into the object
    pools_.insert(name, std::make_shared<PoolObject>(std::move(*def), std::move(*backend)));
  }
  VMM_ASSIGN(auto records, store_.loadAll(Table::volumes));
  for (const auto& row : records) {
    auto slash = row.key.find('/');
    auto p = slash == std::string::npos ? nullptr : pools_.find(row.key.substr(0, slash));
    auto record = parseVolumeRecord(row.value);
    if (!p || !record) continue;
    MutexLock lock(p->mu);
    p->records[row.key.substr(slash + 1)] = std::move(*record);
  }
  if (rows.empty() && !options_.defaultPoolPath.empty()) {
    model::Pool def;
    def.name = "default";
    def.type = model::PoolType::dir;
    def.path = options_.defaultPoolPath;
    auto parsed = model::parsePool(model::formatPool(def, false));
    PoolCreateParams params;
    params.build = true;
    if (parsed.ok()) {
      auto created = create(std::move(*parsed), params);
      if (!created.ok()) log::error("cannot create the default pool", {{"error", created.error().message}});
      else log::info("default pool created", {{"path", options_.defaultPoolPath}});
    }
  }
  // Pools start in parallel: one unreachable NFS server costs its deadline, not everyone's.
  std::vector<std::future<void>> starting;
  for (const auto& p : pools_.all()) {
    bool wanted;
    {
      MutexLock lock(p->mu);
      wanted = p->def.autostart && p->state == PoolState::inactive;
    }
    if (!wanted) continue;
    starting.push_back(std::async(std::launch::async, [this, p] {
      auto guard = acquire(*p, "autostart");
      if (!guard.ok()) return;
      if (auto st = activate(*p); !st.ok()) log::warn("pool did not start", {{"pool", p->name}, {"error", st.error().message}});
    }));
  }
  for (auto& f : starting) f.wait();
  return {};
}

namespace {

// Two definitions that would manage the same storage.
bool sameStorage(const model::Pool& a, const model::Pool& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case model::PoolType::dir: return a.path == b.path;
    case model::PoolType::logical:
      return (a.source.vgName.empty() ? a.name : a.source.vgName) == (b.source.vgName.empty() ? b.name : b.source.vgName);
    case model::PoolType::netfs: return a.source.host == b.source.host && a.source.dir == b.source.dir;
    case model::PoolType::iscsi: return a.source.host == b.source.host && a.source.target == b.source.target;
  }
  return false;
}

}  // namespace

Result<PoolView> PoolService::create(model::Pool def, const PoolCreateParams& params) {
  // The name and the storage are reserved under createMu_; building and starting (network
  // and tools, up to the I/O timeout) run without it.
  {
    MutexLock createLock(createMu_);
    if (pools_.find(def.name) || creating_.count(def.name)) return conflict("pool " + quote(def.name) + " already exists");
    for (const auto& other : pools_.all()) {
      MutexLock lock(other->mu);
      if (sameStorage(other->def, def)) return conflict("pool " + quote(other->name) + " already uses this storage");
    }
    for (const auto& [name, other] : creating_)
      if (sameStorage(other, def)) return conflict("pool " + quote(name) + " is being created on this storage");
    creating_.emplace(def.name, def);
  }
  Reverter revert;
  revert.add([this, name = def.name] {
    MutexLock createLock(createMu_);
    creating_.erase(name);
  });
  VMM_ASSIGN(auto backend, options_.factory(def));
  auto obj = std::make_shared<PoolObject>(def, std::move(backend));
  Deadline deadline = ioDeadline();
  if (params.build) {
    VMM_TRY(obj->backend->build(deadline));
    // Undoing a build removes storage this call made; a dir that already existed with files
    // is left alone (destroyStorage refuses non-empty storage).
    revert.add([obj] { (void)obj->backend->destroyStorage(Deadline::after(Millis(30000))); });
  }
  if (params.start) {
    VMM_TRY(activate(*obj));
    revert.add([obj] { (void)obj->backend->stop(Deadline::after(Millis(30000))); });
  }
  VMM_TRY(persist(def));
  {
    MutexLock createLock(createMu_);
    creating_.erase(def.name);
    pools_.insert(def.name, obj);
  }
  revert.success();
  auto view = viewOf(*obj);  // its state under its lock: a refresh may change it already
  publish("storage.pool", def.name, {{"event", "defined"}, {"state", poolStateName(view.state)}});
  return view;
}

Result<PoolView> PoolService::get(const std::string& name) const {
  VMM_ASSIGN(auto p, find(name));
  return viewOf(*p);
}

std::vector<PoolView> PoolService::list() const {
  std::vector<PoolView> out;
  for (const auto& p : pools_.all()) out.push_back(viewOf(*p));
  return out;
}

Result<PoolView> PoolService::start(const std::string& name) {
  VMM_ASSIGN(auto p, find(name));
  VMM_ASSIGN(auto guard, acquire(*p, "start"));
  {
    MutexLock lock(p->mu);
    if (p->state == PoolState::active) return conflict("pool " + name + " is already active");
  }
  VMM_TRY(activate(*p));
  publish("storage.pool", name, {{"event", "started"}});
  return viewOf(*p);
}

Result<PoolView> PoolService::stop(const std::string& name) {
  VMM_ASSIGN(auto p, find(name));
  VMM_ASSIGN(auto guard, acquire(*p, "stop"));
  {
    MutexLock lock(p->mu);
    if (p->state == PoolState::inactive) return conflict("pool " + name + " is not active");
    if (!p->busy.empty())
      return conflict("pool " + name + " has transfers in progress (" + p->busy.begin()->first + ": " + p->busy.begin()->second + ")");
  }
  auto st = p->backend->stop(ioDeadline());
  if (!st.ok()) log::warn("pool stop reported an error", {{"pool", name}, {"error", st.error().message}});
  {
    MutexLock lock(p->mu);
    p->state = PoolState::inactive;
    p->error.clear();
    p->volumes.clear();
  }
  publish("storage.pool", name, {{"event", "stopped"}});
  return viewOf(*p);
}

Result<PoolView> PoolService::refresh(const std::string& name) {
  VMM_ASSIGN(auto p, find(name));
  VMM_ASSIGN(auto guard, acquire(*p, "refresh"));
  PoolState state;
  {
    MutexLock lock(p->mu);
    state = p->state;
  }
  if (state == PoolState::inactive) return conflict("pool " + name + " is not active; start it first");
  if (state == PoolState::error) {
    // The server may be back: reconnect from scratch.
    (void)p->backend->stop(ioDeadline());
    VMM_TRY(activate(*p));
  } else {
    VMM_TRY(reload(*p, ioDeadline()));
  }
  publish("storage.pool", name, {{"event", "refreshed"}});
  return viewOf(*p);
}

Status PoolService::remove(const std::string& name, bool deleteStorage) {
  VMM_ASSIGN(auto p, find(name));
  VMM_ASSIGN(auto guard, acquire(*p, "delete"));
  PoolState state;
  std::vector<std::string> volumes;
  {
    MutexLock lock(p->mu);
    state = p->state;
    if (!p->busy.empty()) return conflict("pool " + name + " has transfers in progress");
    for (const auto& [v, vol] : p->volumes) volumes.push_back(v);
  }
  // Asked of the domains, not the volume cache: a stopped pool has no cached volumes.
  if (users_) {
    auto used = users_(name);
    if (!used.empty())
      return conflict("pool " + name + ": volume " + used.begin()->first + " is used by domain " + join(used.begin()->second, ", "));
  }
  if (deleteStorage) {
    if (state != PoolState::active) VMM_TRY(p->backend->start(ioDeadline()));
    if (!volumes.empty() && state == PoolState::active)
      return conflict("pool " + name + " still has " + std::to_string(volumes.size()) + " volumes; delete them first");
    VMM_TRY(p->backend->destroyStorage(ioDeadline()));
  }
  if (state != PoolState::inactive || deleteStorage) (void)p->backend->stop(ioDeadline());
  VMM_TRY(store_.write([&](StateStore::Txn& txn) -> Status {
    VMM_TRY(txn.remove(Table::pools, name));
    return txn.removePrefix(Table::volumes, name + "/");
  }));
  pools_.erase(name);
  publish("storage.pool", name, {{"event", "deleted"}});
  return {};
}

// ---------------------------------------------------------------- volumes

Result<std::vector<model::Volume>> PoolService::listVolumes(const std::string& pool) const {
  VMM_ASSIGN(auto p, findActive(pool));
  std::vector<model::Volume> out;
  {
    MutexLock lock(p->mu);
    out.reserve(p->volumes.size());
    for (const auto& [n, v] : p->volumes) out.push_back(v);
  }
  auto users = users_ ? users_(pool) : std::map<std::string, std::vector<std::string>>{};
  for (auto& v : out)
    if (auto it = users.find(v.name); it != users.end()) v.usedBy = it->second;
  return out;
}

Result<model::Volume> PoolService::getVolume(const std::string& pool, const std::string& name) const {
  VMM_ASSIGN(auto p, findActive(pool));
  model::Volume v;
  {
    MutexLock lock(p->mu);
    auto it = p->volumes.find(name);
    if (it == p->volumes.end()) return notFound("pool " + pool + " has no volume " + quote(name));
    v = it->second;
  }
  return withUsers(std::move(v));  // reads the domains: not under the pool's mutex
}

Result<model::Volume> PoolService::createVolume(const std::string& pool, const model::VolumeSpec& spec) {
  VMM_ASSIGN(auto p, findActive(pool));
  VMM_ASSIGN(auto guard, acquire(*p, "create volume " + spec.name));
  {
    MutexLock lock(p->mu);
    if (p->volumes.count(spec.name) || p->busy.count(spec.name))
      return conflict("pool " + pool + " already has a volume " + quote(spec.name));
  }
  Deadline deadline = ioDeadline();
  std::optional<model::Volume> base;
  if (!spec.backingVolume.empty()) {
    VMM_ASSIGN(auto b, usableVolume(*p, spec.backingVolume, deadline));
    base = std::move(b);
  }
  Reverter release;
  if (!spec.fromTar.empty()) {
    // Unpacking takes as long as the tarball does: the job only reserves the name.
    VMM_TRY(reserve(*p, spec.name, "being unpacked from " + spec.fromTar));
    release.add([this, p, name = spec.name] { unreserve(*p, name); });
    guard.release();
    deadline = Deadline::after(options_.transferTimeout);
  }
  auto v = p->backend->createVolume(spec, base ? &*base : nullptr, deadline);
  if (!v.ok()) return noteFailure(*p, v.error().wrap("creating volume " + pool + "/" + spec.name));
  VolumeRecord made;
  made.format = spec.directory ? model::DiskFormat::raw : spec.format;
  made.backing = base ? base->name : "";
  auto stored = setVolume(*p, *v, made);
  refreshCapacity(*p);
  publish("storage.volume", pool, {{"event", "created"}, {"volume", spec.name}});
  return withUsers(std::move(stored));
}

Status PoolService::deleteVolume(const std::string& pool, const std::string& name) {
  VMM_ASSIGN(auto p, findActive(pool));
  VMM_ASSIGN(auto guard, acquire(*p, "delete volume " + name));
  std::vector<std::string> clones;
  {
    MutexLock lock(p->mu);
    if (!p->volumes.count(name)) return notFound("pool " + pool + " has no volume " + quote(name));
    if (auto it = p->busy.find(name); it != p->busy.end()) return conflict("volume " + pool + "/" + name + " is busy (" + it->second + ")");
    clones = clonesOf(p->volumes, name);
  }
  auto users = usersOf(pool, name);
  if (!users.empty()) return conflict("volume " + pool + "/" + name + " is used by domain " + join(users, ", "));
  if (!clones.empty()) return conflict("volume " + pool + "/" + name + " is the backing volume of " + join(clones, ", "));
  if (auto st = p->backend->deleteVolume(name, ioDeadline()); !st.ok())
    return noteFailure(*p, st.error().wrap("deleting volume " + pool + "/" + name));
  {
    MutexLock lock(p->mu);
    p->volumes.erase(name);
  }
  forgetRecord(*p, name);
  refreshCapacity(*p);
  publish("storage.volume", pool, {{"event", "deleted"}, {"volume", name}});
  return {};
}

Result<model::Volume> PoolService::resizeVolume(const std::string& pool, const std::string& name, uint64_t capacity, bool shrink) {
  VMM_ASSIGN(auto p, findActive(pool));
  VMM_ASSIGN(auto guard, acquire(*p, "resize volume " + name));
  {
    MutexLock lock(p->mu);
    if (!p->volumes.count(name)) return notFound("pool " + pool + " has no volume " + quote(name));
    if (auto it = p->busy.find(name); it != p->busy.end()) return conflict("volume " + pool + "/" + name + " is busy (" + it->second + ")");
  }
  VMM_ASSIGN(auto current, usableVolume(*p, name, ioDeadline()));
  if (auto st = p->backend->resizeVolume(current, capacity, shrink, ioDeadline()); !st.ok())
    return noteFailure(*p, st.error().wrap("resizing volume " + pool + "/" + name));
  auto v = p->backend->volumeInfo(name, ioDeadline());
  if (!v.ok()) return noteFailure(*p, v.error());
  auto stored = setVolume(*p, *v);
  refreshCapacity(*p);
  publish("storage.volume", pool, {{"event", "resized"}, {"volume", name}, {"capacity", stored.capacity}});
  return withUsers(std::move(stored));
}

Result<model::Volume> PoolService::cloneVolume(const std::string& pool, const std::string& source, const VolumeCloneParams& params) {
  VMM_ASSIGN(auto p, findActive(pool));
  bool directory = false;  // a directory volume is always copied in full
  VMM_ASSIGN(auto guard, acquire(*p, "clone volume " + source));
  {
    MutexLock lock(p->mu);
    if (!p->volumes.count(source)) return notFound("pool " + pool + " has no volume " + quote(source));
    if (p->volumes.count(params.name) || p->busy.count(params.name))
      return conflict("pool " + pool + " already has a volume " + quote(params.name));
    // Only copies may read a volume together: anything else using it makes it busy.
    if (auto it = p->busy.find(source); it != p->busy.end() && !p->copying.count(source))
      return conflict("volume " + pool + "/" + source + " is busy (" + it->second + ")");
    directory = p->volumes[source].directory;
  }
  // A linked clone is a small overlay made at once under the pool's job, so many clones of one
  // image can be made back to back. A full copy only reserves both names and runs without it.
  bool quick = params.linked && !directory;
  Reverter release;
  if (!quick) {
    {
      MutexLock lock(p->mu);
      p->copying[source]++;
      p->busy[source] = "being copied";
      p->busy[params.name] = "being cloned from " + source;
    }
    release.add([this, p, source, name = params.name] {
      {
        MutexLock lock(p->mu);
        if (--p->copying[source] == 0) {
          p->copying.erase(source);
          p->busy.erase(source);
        }
      }
      unreserve(*p, name);
    });
    guard.release();
  }
  if (params.cancelled && params.cancelled()) return Error{ErrorCode::cancelled, "clone of " + pool + "/" + source + " cancelled"};
  VMM_ASSIGN(auto from, usableVolume(*p, source, ioDeadline()));
  storage::CloneOptions opts;
  opts.linked = params.linked;
  opts.progress = params.progress;
  auto v = p->backend->cloneVolume(from, params.name, opts, quick ? ioDeadline() : Deadline::after(options_.transferTimeout));
  if (!v.ok()) return noteFailure(*p, v.error().wrap("cloning volume " + pool + "/" + source));
  VolumeRecord made;  // a full copy stands alone: qemu-img copies the whole chain into it
  made.format = quick ? model::DiskFormat::qcow2 : from.format;
  made.backing = quick ? source : "";
  auto stored = setVolume(*p, *v, made);
  release.fail();
  refreshCapacity(*p);
  publish("storage.volume", pool, {{"event", "created"}, {"volume", params.name}, {"source", source}, {"linked", params.linked}});
  return withUsers(std::move(stored));
}

Result<model::Volume> PoolService::wipeVolume(const std::string& pool, const std::string& name) {
  VMM_ASSIGN(auto p, findActive(pool));
  {
    VMM_ASSIGN(auto guard, acquire(*p, "wipe volume " + name));
    {
      MutexLock lock(p->mu);
      if (!p->volumes.count(name)) return notFound("pool " + pool + " has no volume " + quote(name));
      auto clones = clonesOf(p->volumes, name);
      if (!clones.empty()) return conflict("volume " + pool + "/" + name + " is the backing volume of " + join(clones, ", "));
    }
    auto users = usersOf(pool, name);
    if (!users.empty()) return conflict("volume " + pool + "/" + name + " is used by domain " + join(users, ", "));
    VMM_TRY(reserve(*p, name, "wipe"));
  }
  Reverter release;
  release.add([this, p, name] { unreserve(*p, name); });
  model::Volume current, base;
  {
    MutexLock lock(p->mu);
    if (auto it = p->volumes.find(name); it != p->volumes.end()) current = it->second;
    if (auto it = p->volumes.find(current.backingVolume); !current.backingVolume.empty() && it != p->volumes.end()) base = it->second;
  }
  // Wiping reads nothing of the volume: a refused one can be emptied (and stays refused).
  if (!current.backingVolume.empty() && base.name.empty())
    return notFound("volume " + pool + "/" + name + ": its backing volume " + current.backingVolume + " is gone");
  if (auto st = p->backend->wipeVolume(current, base.name.empty() ? nullptr : &base, Deadline::after(options_.transferTimeout)); !st.ok())
    return noteFailure(*p, st.error().wrap("wiping volume " + pool + "/" + name));
  auto v = p->backend->volumeInfo(name, ioDeadline());
  if (!v.ok()) return noteFailure(*p, v.error());
  auto stored = setVolume(*p, *v);
  publish("storage.volume", pool, {{"event", "wiped"}, {"volume", name}});
  return withUsers(std::move(stored));
}

// Keeps the volume reserved while a writer is open and refreshes its metadata when done. The
// new bytes of a qcow2 volume are judged before they replace the old ones (`checkQcow2`): only
// a self-contained qcow2 image is taken, since its header would decide what QEMU opens.
class PoolService::BusyVolume final : public storage::VolumeStream {
 public:
  BusyVolume(PoolService& s, std::shared_ptr<PoolObject> p, std::string name, std::unique_ptr<storage::VolumeStream> inner,
             bool checkQcow2)
      : s_(s), p_(std::move(p)), name_(std::move(name)), inner_(std::move(inner)), checkQcow2_(checkQcow2) {}
  ~BusyVolume() override {
    inner_.reset();  // an unfinished upload is abandoned before the name is released
    s_.unreserve(*p_, name_);
  }
  uint64_t size() const override { return inner_->size(); }
  Result<size_t> read(uint64_t offset, char* buf, size_t len, Deadline d) override { return inner_->read(offset, buf, len, d); }
  Status write(uint64_t offset, const char* buf, size_t len, Deadline d) override {
    VMM_TRY(inner_->write(offset, buf, len, d));
    if (checkQcow2_) {
      end_ = std::max(end_, offset + len);
      // What lands in the first bytes (the header and its extensions); holes stay zeros.
      if (offset < storage::kInspectHeadBytes) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(len, storage::kInspectHeadBytes - offset));
        if (head_.size() < offset + n) head_.resize(offset + n, '\0');
        std::copy(buf, buf + n, head_.begin() + static_cast<long>(offset));
      }
    }
    return {};
  }
  Status finish(Deadline d) override {
    if (checkQcow2_) {
      head_.resize(std::min<uint64_t>(end_, storage::kInspectHeadBytes), '\0');
      auto verdict = storage::inspectImage(head_, end_, kNoVirtualSizeLimit);
      std::string why = !verdict.ok() ? verdict.refused : verdict.kind != storage::ImageKind::qcow2 ? "it is not a qcow2 image" : "";
      if (!why.empty())
        return invalidArgument("upload to volume " + p_->name + "/" + name_ + " refused (the volume is qcow2): " + why +
                               "; the volume is unchanged");
    }
    VMM_TRY(inner_->finish(d));
    auto v = p_->backend->volumeInfo(name_, d);
    if (v.ok()) s_.setVolume(*p_, *v);
    s_.publish("storage.volume", p_->name, {{"event", "uploaded"}, {"volume", name_}});
    return {};
  }

 private:
  static constexpr uint64_t kNoVirtualSizeLimit = uint64_t{1} << 62;
  PoolService& s_;
  std::shared_ptr<PoolObject> p_;
  std::string name_;
  std::unique_ptr<storage::VolumeStream> inner_;
  const bool checkQcow2_;
  std::string head_;
  uint64_t end_ = 0;
};

Result<std::unique_ptr<storage::VolumeStream>> PoolService::openVolume(const std::string& pool, const std::string& name,
                                                                       storage::StreamMode mode) {
  VMM_ASSIGN(auto p, findActive(pool));
  {
    MutexLock lock(p->mu);
    if (!p->volumes.count(name)) return notFound("pool " + pool + " has no volume " + quote(name));
    auto clones = clonesOf(p->volumes, name);
    if (mode == storage::StreamMode::write && !clones.empty())
      return conflict("volume " + pool + "/" + name + " is the backing volume of " + join(clones, ", ") + "; its content cannot be replaced");
  }
  if (mode == storage::StreamMode::read) {
    auto s = p->backend->openVolume(name, mode, ioDeadline());
    if (!s.ok()) return noteFailure(*p, s.error().wrap("reading volume " + pool + "/" + name));
    return s;
  }
  auto users = usersOf(pool, name);
  if (!users.empty()) return conflict("volume " + pool + "/" + name + " is used by domain " + join(users, ", ") + "; detach it before uploading");
  VolumeRecord record;
  {
    MutexLock lock(p->mu);
    if (auto it = p->records.find(name); it != p->records.end()) record = it->second;
  }
  if (record.format == model::DiskFormat::qcow2 && !record.backing.empty())
    return conflict("volume " + pool + "/" + name + " reads through volume " + record.backing +
                    ": a linked clone's content cannot be replaced by an upload (wipe it, or delete and create it)");
  VMM_TRY(reserve(*p, name, "upload"));
  auto s = p->backend->openVolume(name, mode, ioDeadline());
  if (!s.ok()) {
    unreserve(*p, name);
    return noteFailure(*p, s.error().wrap("writing volume " + pool + "/" + name));
  }
  bool checkQcow2 = record.format == model::DiskFormat::qcow2;
  return std::unique_ptr<storage::VolumeStream>(new BusyVolume(*this, p, name, std::move(*s), checkQcow2));
}

Result<std::optional<drivers::ResolvedDisk>> PoolService::resolvePath(const std::string& path) {
  for (const auto& p : pools_.all()) {
    std::string volume;
    {
      MutexLock lock(p->mu);
      if (p->state != PoolState::active) continue;
      for (const auto& [name, v] : p->volumes)
        if (!v.directory && v.path == path) volume = name;
    }
    if (!volume.empty()) {
      VMM_ASSIGN(auto r, resolve(p->name, volume));
      return std::optional<drivers::ResolvedDisk>(std::move(r));
    }
  }
  return std::optional<drivers::ResolvedDisk>();
}

Result<drivers::ResolvedDisk> PoolService::resolve(const std::string& pool, const std::string& volume) {
  VMM_ASSIGN(auto p, findActive(pool));
  VMM_ASSIGN(auto chain, usableChain(*p, volume, ioDeadline()));
  drivers::ResolvedDisk top;
  for (size_t i = 0; i < chain.size(); ++i) {
    auto r = p->backend->resolve(chain[i], ioDeadline());
    if (!r.ok()) return noteFailure(*p, r.error().wrap("volume " + pool + "/" + chain[i].name));
    if (i == 0) top = std::move(*r);
    else top.backing.push_back(std::move(*r));
  }
  top.chainPinned = true;
  return top;
}

}  // namespace vmm
