#include "daemon/domain_service.h"

#include <future>
#include <set>

#include "base/json_util.h"
#include "base/log.h"
#include "base/process.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "model/project.h"
#include "model/units.h"

namespace vmm {

using json = nlohmann::json;
using model::DomainState;

namespace {


std::string objectKey(const std::string& name) { return "domains/" + name; }

// A copy, taken under the lock: a guest's pause or resume rewrites the record meanwhile
// (persistRuntime), also while a stop holds the job.
json driverRecord(const DomainObject& obj) {
  MutexLock lock(obj.mu);
  return obj.runtimeRecord.value("driver_record", json::object());
}

}  // namespace

wire::DomainSummary domainSummary(const DomainView& v) {
  const auto& d = *v.def;
  wire::DomainSummary s;
  s.name = model::unqualifyName(d.name);
  s.project = model::projectOf(d.name);
  s.uuid = d.uuid;
  s.type = std::string(model::enumName(model::kDriverTypes, d.type));
  s.state = stateName(v.status.state);
  s.reason = v.status.reason;
  if (v.status.sinceUs) s.stateSince = formatTimestamp(v.status.sinceUs);
  s.vcpus = d.vcpus;
  s.memory = model::formatSize(d.memory);
  s.autostart = d.autostart;
  s.labels = d.labels;
  s.generation = v.generation;
  s.title = d.title;
  s.pendingChanges = v.liveDef && v.liveDef != v.def;
  return s;
}

json formatDomainView(const DomainView& v, bool full) {
  json j = json::parse(wire::toJson(domainSummary(v)));
  if (full) {
    const auto& d = *v.def;
    j["managed_save"] = v.managedSave;
    j["definition"] = model::formatDomain(d);
    json runtime = v.status.info;
    if (!v.status.runId.empty()) runtime["run_id"] = v.status.runId;
    j["runtime"] = runtime;
    if (v.liveDef && v.liveDef != v.def) j["live_definition"] = model::formatDomain(*v.liveDef);
    j["job"] = v.job ? json(*v.job) : json(nullptr);
  }
  return j;
}

DomainService::DomainService(StateStore& store, EventBus& events, ThreadPool& pool, DomainServiceOptions options)
    : store_(store), events_(events), pool_(pool), options_(options) {}

DomainService::~DomainService() {
  for (auto& [t, d] : drivers_) d->setObserver(nullptr);
}

void DomainService::addDriver(std::unique_ptr<drivers::HypervisorDriver> driver) {
  driver->setObserver(this);
  auto type = driver->type();
  drivers_[type] = std::move(driver);
}

drivers::HypervisorDriver* DomainService::driver(model::DriverType type) const {
  auto it = drivers_.find(type);
  return it == drivers_.end() ? nullptr : it->second.get();
}

std::vector<drivers::HypervisorDriver*> DomainService::drivers() const {
  std::vector<drivers::HypervisorDriver*> out;
  for (const auto& [t, d] : drivers_) out.push_back(d.get());
  return out;
}

void DomainService::setHostServices(drivers::HostServices* services) {
  for (auto& [t, d] : drivers_) d->setHostServices(services);
}

Result<drivers::HypervisorDriver*> DomainService::driverFor(const model::Domain& def) const {
  auto* d = driver(def.type);
  std::string type(model::enumName(model::kDriverTypes, def.type));
  if (!d) return unavailable("the " + type + " driver is not part of this vmmd");
  auto info = d->probe();
  if (!info.available) return unavailable("the " + type + " driver is unavailable on this host: " + info.reason);
  return d;
}

// ---------------------------------------------------------------- loading

Status DomainService::load() {
  VMM_ASSIGN(auto defs, store_.loadAll(Table::domains));
  VMM_ASSIGN(auto runtimes, store_.loadAll(Table::runtime));
  std::map<std::string, json> runtimeByName;
  for (auto& r : runtimes) runtimeByName[r.key] = std::move(r.value);

  std::vector<std::shared_ptr<DomainObject>> toReconnect;
  for (auto& row : defs) {
    auto def = model::parseDomain(row.value.value("definition", json::object()));
    if (!def.ok()) {
      // Never drop a stored definition silently: keep it out of the API and say why.
      log::error("stored domain definition is invalid; skipping it", {{"domain", row.key}, {"error", def.error().message}});
      continue;
    }
    // Definitions stored before TCP graphics needed a password (the old default listened on
    // 127.0.0.1 without one) get one now, kept like a password the user gave.
    if (model::generateGraphicsPasswords(*def)) {
      auto st = persistDefinition(def->name, *def, row.value.value("generation", uint64_t{1}));
      log::warn("generated a password for the domain's TCP graphics (see domain.get as an admin)",
                {{"domain", def->name}, {"stored", st.ok()}});
    }
    // Definitions stored before a volume's format came from its pool's record carry one guessed
    // from the volume's name; the record decides now (a raw volume named "x.qcow2" stays raw).
    for (auto& disk : def->disks)
      if (disk.source.isVolume()) disk.format.reset();
    auto obj = std::make_shared<DomainObject>(def->name);
    bool managedSave = !options_.saveDir.empty() && fs::exists(managedSavePath(obj->name));
    {
      MutexLock lock(obj->mu);  // not shared yet: for the analysis, which cannot know
      obj->def = std::make_shared<const model::Domain>(std::move(*def));
      obj->generation = row.value.value("generation", uint64_t{1});
      obj->visible = true;
      obj->status.sinceUs = row.updatedUs;
      obj->status.reason = managedSave ? "saved" : "";
      obj->managedSave = managedSave;
      auto rt = runtimeByName.find(obj->name);
      if (rt != runtimeByName.end()) {
        obj->runtimeRecord = rt->second;
        toReconnect.push_back(obj);
      }
    }
    domains_.insert(obj->name, obj);
    reindexObject(*obj);
  }
  // Orphaned records of domains. Keys with a '/' are other services' records in the same table
  // ("networks/NAME" of running networks): never a domain's, and not this service's to remove.
  for (const auto& [name, rt] : runtimeByName) {
    if (name.find('/') == std::string::npos && !domains_.find(name)) (void)store_.remove(Table::runtime, name);
  }

  // Reconnect in parallel: start-up time is the slowest domain, not the sum.
  std::vector<std::future<void>> pending;
  for (auto& obj : toReconnect) {
    auto promise = std::make_shared<std::promise<void>>();
    pending.push_back(promise->get_future());
    pool_.submit([this, obj, promise] {
      json rec;
      std::shared_ptr<const model::Domain> def;
      {
        MutexLock lock(obj->mu);
        rec = obj->runtimeRecord;
        def = obj->def;
      }
      auto live = model::parseDomain(rec.value("live_definition", json::object()));
      std::shared_ptr<const model::Domain> liveDef =
          live.ok() ? std::make_shared<const model::Domain>(std::move(*live)) : def;
      if (live.ok() && formatDomain(*liveDef, false) == formatDomain(*def, false)) liveDef = def;
      auto* drv = driver(liveDef->type);
      Result<drivers::RunningDomain> running = unavailable("no driver");
      if (drv) running = drv->reconnect(*liveDef, rec.value("driver_record", json::object()));
      if (running.ok()) {
        MutexLock lock(obj->mu);
        obj->liveDef = liveDef;
        obj->status.state = running->state;
        obj->status.runId = running->runId;
        obj->status.info = running->info;
        obj->status.reason = "reconnected";
        obj->status.sinceUs = rec.value("since_us", wallNowMicros());
        obj->runtimeRecord["driver_record"] = running->record;
      }
      if (running.ok()) {
        reindexObject(*obj);
        log::info("reconnected to running domain", {{"domain", obj->name}, {"state", stateName(running->state)}});
      } else {
        log::warn("domain stopped while vmmd was down; releasing its resources",
                  {{"domain", obj->name}, {"detail", running.error().message}});
        if (drv) drv->release(*liveDef, rec.value("driver_record", json::object()));
        (void)store_.remove(Table::runtime, obj->name);
        {
          MutexLock lock(obj->mu);
          obj->runtimeRecord = json();
          obj->status = DomainStatus{DomainState::shutoff, "stopped while vmmd was down", wallNowMicros(), "", json::object()};
        }
        publish(obj->name, "stopped", {{"reason", "stopped while vmmd was down"}});
      }
      promise->set_value();
    });
  }
  for (auto& f : pending) f.wait();
  return loadSnapshots();
}

void DomainService::autostart() {
  for (const auto& obj : domains_.all()) {
    bool want;
    {
      MutexLock lock(obj->mu);
      want = obj->visible && obj->def->autostart && !model::isActive(obj->status.state);
    }
    if (!want) continue;
    std::string name = obj->name;
    pool_.submit([this, name] {
      auto r = start(name);
      if (!r.ok()) log::warn("autostart failed", {{"domain", name}, {"error", r.error().message}});
      else log::info("autostarted domain", {{"domain", name}});
    });
  }
}

// ---------------------------------------------------------------- helpers

Result<std::shared_ptr<DomainObject>> DomainService::find(const std::string& name) const {
  auto obj = domains_.find(name);
  if (obj) {
    MutexLock lock(obj->mu);
    if (obj->visible) return obj;
  }
  return notFound("domain " + quote(name) + " not found");
}

Result<JobGuard> DomainService::acquire(DomainObject& obj, const std::string& what) {
  VMM_ASSIGN(auto guard, obj.job.acquire(what, "domain " + obj.name, Deadline::after(options_.jobWait)));
  MutexLock lock(obj.mu);
  if (!obj.visible) return notFound("domain " + quote(obj.name) + " not found");
  return guard;
}

DomainView DomainService::viewOf(const DomainObject& obj) const {
  DomainView v;
  {
    MutexLock lock(obj.mu);
    v.def = obj.def;
    v.liveDef = obj.liveDef;
    v.generation = obj.generation;
    v.status = obj.status;
    v.managedSave = obj.managedSave;
  }
  v.job = obj.job.current();
  return v;
}

void DomainService::publish(const std::string& name, const std::string& event, const json& extra) {
  json data = {{"domain", name}, {"event", event}};
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) data[it.key()] = it.value();
  events_.publish("domain.lifecycle", objectKey(name), std::move(data));
}

void DomainService::setStatus(DomainObject& obj, DomainStatus status, const std::string& event) {
  std::string state = stateName(status.state), reason = status.reason;
  {
    MutexLock lock(obj.mu);
    status.sinceUs = wallNowMicros();
    obj.status = std::move(status);
  }
  if (!event.empty()) publish(obj.name, event, {{"state", state}, {"reason", reason}});
}

namespace {
// Who holds a unique value, as the asking domain's project may be told: another project's
// domain is not named.
std::string ownerText(const std::string& owner, const std::string& asking) {
  return model::projectOf(owner) == model::projectOf(asking) ? "domain " + owner : "a domain of another project";
}
}  // namespace

Status DomainService::checkUnique(const model::Domain& def, const std::string& ignoreName) const {
  if (!def.uuid.empty()) {
    auto it = uuidOwner_.find(def.uuid);
    if (it != uuidOwner_.end() && it->second != ignoreName)
      return conflict("uuid " + def.uuid + " is already used by " + ownerText(it->second, def.name));
  }
  for (const auto& n : def.nics) {
    auto it = macOwner_.find(n.mac);
    if (it != macOwner_.end() && it->second != ignoreName)
      return conflict("MAC address " + n.mac + " is already used by " + ownerText(it->second, def.name));
  }
  return {};
}

Status DomainService::assignIdmap(model::Domain& def, const std::string& ignoreName) {
  if (!def.container || def.container->privileged) return {};
  auto& c = *def.container;
  std::vector<std::pair<uint64_t, uint64_t>> taken;
  for (const auto& [name, ranges] : idmaps_)
    if (name != ignoreName && name != def.name) taken.insert(taken.end(), ranges.begin(), ranges.end());
  if (c.idmapBase != 0) {
    uint64_t first = c.idmapBase, end = first + c.idmapSize;
    for (const auto& [name, ranges] : idmaps_)
      if (name != ignoreName && name != def.name)
        for (const auto& [f, e] : ranges)
          if (first < e && f < end)
            return conflict("container.idmap_base: host ids " + std::to_string(first) + "-" + std::to_string(end - 1) +
                            " overlap those of container " + name);
    return {};
  }
  // First fit, in steps of the size, over the configured range.
  auto overlaps = [&](uint64_t first, uint64_t end) {
    for (const auto& [f, e] : taken)
      if (first < e && f < end) return true;
    return false;
  };
  uint64_t size = c.idmapSize;
  for (uint64_t first = options_.idmapStart; first + size <= options_.idmapStart + options_.idmapCount; first += size) {
    if (overlaps(first, first + size)) continue;
    c.idmapBase = static_cast<uint32_t>(first);
    return {};
  }
  return conflict("container: no free range of " + std::to_string(size) + " host ids left in [containers] idmap_range");
}

void DomainService::reindex(const std::string& name, const model::Domain* def, const model::Domain* live) {
  idmaps_.erase(name);
  for (const auto* d : {def, live})
    if (d && d->container && !d->container->privileged && d->container->idmapBase != 0)
      idmaps_[name].push_back({d->container->idmapBase, uint64_t{d->container->idmapBase} + d->container->idmapSize});
  auto& owned = ownedKeys_[name];
  for (const auto& key : owned) {
    if (key.rfind("uuid:", 0) == 0) uuidOwner_.erase(key.substr(5));
    else macOwner_.erase(key.substr(4));
  }
  owned.clear();
  for (const auto* d : {def, live}) {
    if (!d) continue;
    if (uuidOwner_.emplace(d->uuid, name).second) owned.push_back("uuid:" + d->uuid);
    for (const auto& n : d->nics)
      if (macOwner_.emplace(n.mac, name).second) owned.push_back("mac:" + n.mac);
  }
  if (owned.empty()) ownedKeys_.erase(name);
}

void DomainService::reindexObject(DomainObject& obj) {
  MutexLock lock(createMu_);
  std::shared_ptr<const model::Domain> def, live;
  bool visible;
  {
    MutexLock objLock(obj.mu);
    def = obj.def;
    live = obj.liveDef;
    visible = obj.visible;
  }
  if (!visible) return reindex(obj.name, nullptr, nullptr);
  reindex(obj.name, def.get(), live.get());
}

Status DomainService::persistDefinition(const std::string& name, const model::Domain& def, uint64_t generation) {
  return store_.put(Table::domains, name, json{{"definition", model::formatDomain(def, false)}, {"generation", generation}});
}

Status DomainService::persistRuntime(DomainObject& obj) {
  std::shared_ptr<const model::Domain> live;
  {
    MutexLock lock(obj.mu);
    live = obj.liveDef;
  }
  std::optional<json> fresh;
  if (live)
    if (auto* drv = driver(live->type)) fresh = drv->currentRecord(*live);
  json rec;
  {
    MutexLock lock(obj.mu);
    if (fresh) obj.runtimeRecord["driver_record"] = *fresh;
    rec = obj.runtimeRecord;
    rec["state"] = stateName(obj.status.state);
    rec["run_id"] = obj.status.runId;
    rec["since_us"] = obj.status.sinceUs;
    if (obj.liveDef) rec["live_definition"] = model::formatDomain(*obj.liveDef, false);
  }
  return store_.put(Table::runtime, obj.name, rec);
}

// ---------------------------------------------------------------- definitions

Result<DomainView> DomainService::create(model::Domain def) {
  model::generateGraphicsPasswords(def);
  if (auto* d = driver(def.type)) VMM_TRY(d->validate(def));
  std::shared_ptr<const model::Domain> newDef;
  std::shared_ptr<DomainObject> obj;
  Reverter revert;  // also runs when something below throws: no name stays reserved by a failure
  {
    // Reserve the name, uuid, MACs and host id range (an invisible object), then write outside the lock.
    MutexLock lock(createMu_);
    VMM_TRY(assignIdmap(def, ""));
    newDef = std::make_shared<const model::Domain>(std::move(def));
    obj = std::make_shared<DomainObject>(newDef->name);
    {
      MutexLock objLock(obj->mu);  // not shared yet: for the analysis, which cannot know
      obj->def = newDef;
      obj->status.sinceUs = wallNowMicros();
    }
    VMM_TRY(checkUnique(*newDef, ""));
    if (!domains_.insert(obj->name, obj)) return conflict("domain " + quote(obj->name) + " already exists");
    reindex(obj->name, newDef.get(), nullptr);
  }
  revert.add([this, name = obj->name] {
    MutexLock lock(createMu_);
    domains_.erase(name);
    reindex(name, nullptr, nullptr);
  });
  VMM_TRY(persistDefinition(obj->name, *newDef, 1));
  revert.success();
  {
    MutexLock lock(obj->mu);
    obj->visible = true;
  }
  publish(obj->name, "defined");
  return viewOf(*obj);
}

Result<DomainView> DomainService::update(const std::string& name, model::Domain def, std::optional<uint64_t> ifGeneration) {
  VMM_ASSIGN(auto obj, find(name));
  if (def.name != name) return invalidArgument("name: cannot rename domain " + quote(name) + " to " + quote(def.name));
  model::generateGraphicsPasswords(def);  // a redacted "********" is kept: it stands for the stored password
  if (auto* d = driver(def.type)) VMM_TRY(d->validate(def));
  VMM_ASSIGN(auto guard, acquire(*obj, "update"));
  std::shared_ptr<const model::Domain> old;
  uint64_t gen;
  bool active;
  {
    MutexLock lock(obj->mu);
    old = obj->def;
    gen = obj->generation;
    active = model::isActive(obj->status.state);
  }
  if (ifGeneration && *ifGeneration != gen)
    return Error{ErrorCode::precondition_failed, "domain " + name + " changed since generation " +
                                                     std::to_string(*ifGeneration) + " (now " + std::to_string(gen) + ")"};
  if (def.uuid != old->uuid) return invalidArgument("uuid: cannot change the uuid of domain " + name);
  if (active && def.type != old->type) return conflict("cannot change the type of running domain " + name);
  // Secrets come back redacted from reads; keep the stored ones.
  for (size_t i = 0; i < def.graphics.size() && i < old->graphics.size(); ++i)
    if (def.graphics[i].password == "********") def.graphics[i].password = old->graphics[i].password;
  {
    MutexLock lock(createMu_);
    // A container that had a range keeps it unless the update names another.
    if (def.container && old->container && def.container->idmapBase == 0 && !old->container->privileged &&
        def.container->idmapSize == old->container->idmapSize)
      def.container->idmapBase = old->container->idmapBase;
    VMM_TRY(assignIdmap(def, name));
    VMM_TRY(checkUnique(def, name));
    if (def.container && !def.container->privileged)  // held until reindexObject below
      idmaps_[name].push_back({def.container->idmapBase, uint64_t{def.container->idmapBase} + def.container->idmapSize});
  }
  auto newDef = std::make_shared<const model::Domain>(std::move(def));
  VMM_TRY(persistDefinition(name, *newDef, gen + 1));
  {
    MutexLock lock(obj->mu);
    obj->def = newDef;
    obj->generation = gen + 1;
    if (obj->liveDef == old) obj->liveDef = active ? old : nullptr;  // the running instance keeps its config
  }
  reindexObject(*obj);
  publish(name, "updated", {{"generation", gen + 1}});
  return viewOf(*obj);
}

Status DomainService::undefine(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "undefine"));
  {
    MutexLock lock(obj->mu);
    if (model::isActive(obj->status.state))
      return conflict("domain " + name + " is " + stateName(obj->status.state) + "; destroy or shut it down first");
  }
  VMM_TRY(store_.write([&](StateStore::Txn& t) -> Status {
    VMM_TRY(t.remove(Table::domains, name));
    VMM_TRY(t.remove(Table::runtime, name));
    return t.removePrefix(Table::snapshots, name + "/");
  }));
  {
    MutexLock lock(obj->mu);
    obj->visible = false;
  }
  {
    MutexLock lock(createMu_);
    domains_.erase(name);
    reindex(name, nullptr, nullptr);
  }
  if (!options_.saveDir.empty()) {
    (void)fs::removeFile(managedSavePath(name));
    // Files of its snapshots (container rootfs copies, external memory states).
    (void)fs::removeTree(options_.saveDir + "/snapshots/" + name);
  }
  publish(name, "undefined");
  return {};
}

Result<DomainView> DomainService::get(const std::string& name) const {
  VMM_ASSIGN(auto obj, find(name));
  return viewOf(*obj);
}

namespace {

bool matches(const ListFilter& filter, const model::Domain& def, model::DomainState state) {
  if (filter.project && !model::inProject(def.name, *filter.project)) return false;
  if (filter.activeOnly && !model::isActive(state)) return false;
  if (filter.state && state != *filter.state) return false;
  if (filter.type && def.type != *filter.type) return false;
  for (const auto& [k, val] : filter.labels) {
    auto it = def.labels.find(k);
    if (it == def.labels.end() || (!val.empty() && it->second != val)) return false;
  }
  return true;
}

}  // namespace

std::vector<DomainView> DomainService::list(const ListFilter& filter) const {
  std::vector<DomainView> out;
  auto all = domains_.all();
  out.reserve(all.size());
  for (const auto& obj : all) {
    DomainView v;
    {
      MutexLock lock(obj->mu);
      if (!obj->visible || !matches(filter, *obj->def, obj->status.state)) continue;
      v.def = obj->def;
      v.liveDef = obj->liveDef;
      v.generation = obj->generation;
      v.status = obj->status;
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string DomainService::listSummaryText(const ListFilter& filter, uint32_t fields) const {
  std::string out = "[";
  for (const auto& obj : domains_.all()) {
    MutexLock lock(obj->mu);
    if (!obj->visible || !matches(filter, *obj->def, obj->status.state)) continue;
    DomainObject::SummaryKey key{obj->def.get(), obj->liveDef.get(), obj->generation, obj->status.state,
                                 obj->status.sinceUs, obj->status.reason};
    if (obj->summaryText.empty() || !(key == obj->summaryKey)) {
      DomainView v;
      v.def = obj->def;
      v.liveDef = obj->liveDef;
      v.generation = obj->generation;
      v.status = obj->status;
      obj->summary = domainSummary(v);
      obj->summaryText = wire::toJson(obj->summary);
      obj->summaryKey = std::move(key);
    }
    if (out.size() > 1) out += ',';
    if (fields == wire::kAllSummaryFields) out += obj->summaryText;
    else wire::appendJson(out, obj->summary, fields);
  }
  out += ']';
  return out;
}

std::vector<std::string> DomainService::names() const {
  std::vector<std::string> out;
  for (const auto& obj : domains_.all()) {
    MutexLock lock(obj->mu);
    if (obj->visible) out.push_back(obj->name);
  }
  return out;
}

std::map<std::string, std::vector<std::string>> DomainService::volumeUsers(const std::string& pool) const {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& obj : domains_.all()) {
    MutexLock lock(obj->mu);
    if (!obj->visible) continue;
    std::set<std::string> seen;
    for (const auto* def : {obj->def.get(), obj->liveDef.get()}) {
      if (!def) continue;
      for (const auto& d : def->disks)
        if (d.source.pool == pool && seen.insert(d.source.volume).second) out[d.source.volume].push_back(obj->name);
      if (def->container && def->container->rootfs.pool == pool && seen.insert(def->container->rootfs.volume).second)
        out[def->container->rootfs.volume].push_back(obj->name);
    }
  }
  return out;
}

NetworkUsers DomainService::networkUsers(const std::string& network) const {
  NetworkUsers out;
  for (const auto& obj : domains_.all()) {
    MutexLock lock(obj->mu);
    if (!obj->visible) continue;
    auto uses = [&](const model::Domain* def) {
      if (!def) return false;
      for (const auto& n : def->nics)
        if (n.type == model::NicType::network && n.network == network) return true;
      return false;
    };
    if (uses(obj->def.get()) || uses(obj->liveDef.get())) out.domains.push_back(obj->name);
    if (uses(obj->liveDef.get())) out.running.push_back(obj->name);
  }
  return out;
}

std::map<std::string, int> DomainService::stateCounts() const {
  std::map<std::string, int> counts;
  for (const auto& [s, n] : model::kDomainStates) counts[std::string(n)] = 0;
  for (const auto& obj : domains_.all()) {
    MutexLock lock(obj->mu);
    if (obj->visible) counts[stateName(obj->status.state)]++;
  }
  return counts;
}

// ---------------------------------------------------------------- lifecycle

Result<DomainView> DomainService::start(const std::string& name, const StartParams& params) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "start"));
  std::shared_ptr<const model::Domain> def;
  DomainStatus before;
  {
    MutexLock lock(obj->mu);
    def = obj->def;
    before = obj->status;
  }
  if (model::isActive(before.state)) return conflict("domain " + name + " is already " + stateName(before.state));
  VMM_ASSIGN(auto* drv, driverFor(*def));

  bool managed;
  {
    MutexLock lock(obj->mu);
    managed = obj->managedSave;
  }
  drivers::StartOptions opts;
  opts.paused = params.paused;
  opts.restoreFrom = params.restoreFrom;
  if (managed && params.forceBoot) {
    (void)fs::removeFile(managedSavePath(name));
    MutexLock lock(obj->mu);
    obj->managedSave = managed = false;
  }
  bool restoringManaged = managed && opts.restoreFrom.empty();
  if (restoringManaged) opts.restoreFrom = managedSavePath(name);
  if (!opts.restoreFrom.empty() && !fs::exists(opts.restoreFrom))
    return notFound("saved state " + opts.restoreFrom + " does not exist");
  if (!opts.restoreFrom.empty()) {
    // Refused before the domain changes state: a symlink, or a file another user could plant.
    auto checked = fs::openPrivateFile(opts.restoreFrom);
    if (!checked.ok()) return checked.error().wrap("saved state");
  }

  setStatus(*obj, DomainStatus{DomainState::starting, opts.restoreFrom.empty() ? "start requested" : "restore requested", 0, "", json::object()}, "starting");
  auto running = drv->start(*def, opts);
  if (!running.ok()) {
    setStatus(*obj, DomainStatus{before.state, "start failed: " + running.error().message, 0, "", json::object()},
              "start-failed");
    if (restoringManaged)
      return running.error().wrap("cannot resume domain " + name + " from its managed save (start with force_boot to discard it)");
    return running.error().wrap("cannot start domain " + name);
  }
  if (restoringManaged) {
    (void)fs::removeFile(opts.restoreFrom);
    MutexLock lock(obj->mu);
    obj->managedSave = false;
  }
  {
    MutexLock lock(obj->mu);
    obj->liveDef = def;
    obj->runtimeRecord = {{"driver", drv->typeName()}, {"driver_record", running->record}};
    obj->status = DomainStatus{running->state, !opts.restoreFrom.empty() ? "restored" : params.paused ? "started paused" : "booted", wallNowMicros(),
                               running->runId, running->info};
  }
  // Durable before visible: if the runtime record cannot be written, the start is undone.
  auto st = persistRuntime(*obj);
  if (!st.ok()) {
    (void)drv->destroy(*def, Deadline::after(Millis(10000)));
    drv->release(*def, running->record);
    {
      MutexLock lock(obj->mu);
      obj->liveDef = nullptr;
      obj->runtimeRecord = json();
    }
    setStatus(*obj, DomainStatus{DomainState::shutoff, "start failed: " + st.error().message, 0, "", json::object()},
              "start-failed");
    return st.error().wrap("cannot record the running state of " + name);
  }
  publish(name, "started", {{"state", stateName(running->state)}, {"run_id", running->runId}});
  log::info("domain started", {{"domain", name}, {"driver", drv->typeName()}, {"run_id", running->runId}});
  return viewOf(*obj);
}

Result<std::pair<std::shared_ptr<const model::Domain>, drivers::HypervisorDriver*>> DomainService::activeDef(DomainObject& obj) {
  std::shared_ptr<const model::Domain> live;
  DomainState state;
  {
    MutexLock lock(obj.mu);
    live = obj.liveDef ? obj.liveDef : obj.def;
    state = obj.status.state;
  }
  if (!model::isActive(state)) return conflict("domain " + obj.name + " is not running");
  auto* drv = driver(live->type);
  if (!drv) return unavailable("the " + std::string(model::enumName(model::kDriverTypes, live->type)) + " driver is not available");
  return std::make_pair(live, drv);
}

void DomainService::markStopped(DomainObject& obj, const std::string& reason, const std::string& event) {
  auto st = store_.remove(Table::runtime, obj.name);
  if (!st.ok()) log::error("cannot remove runtime record", {{"domain", obj.name}, {"error", st.error().message}});
  {
    MutexLock lock(obj.mu);
    obj.liveDef = nullptr;
    obj.runtimeRecord = json();
  }
  reindexObject(obj);
  setStatus(obj, DomainStatus{DomainState::shutoff, reason, 0, "", json::object()}, event);
}

Result<DomainView> DomainService::shutdown(const std::string& name, const ShutdownParams& params) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "shutdown"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  auto [def, drv] = active;
  DomainStatus prev;
  {
    MutexLock lock(obj->mu);
    prev = obj->status;
  }
  {
    MutexLock lock(obj->mu);
    obj->status.state = DomainState::stopping;
    obj->status.reason = "shutdown requested";
    obj->status.sinceUs = wallNowMicros();
  }
  publish(name, "stopping");
  drivers::ShutdownOptions opts;
  opts.deadline = Deadline::after(params.timeout.value_or(options_.defaultShutdownTimeout));
  opts.forceAtDeadline = params.force;
  auto st = drv->shutdown(*def, opts);
  if (!st.ok()) {
    {
      MutexLock lock(obj->mu);
      obj->status = prev;
    }
    publish(name, "shutdown-failed", {{"error", st.error().message}});
    return st.error().wrap("shutdown of " + name);
  }
  drv->release(*def, driverRecord(*obj));
  markStopped(*obj, "shutdown", "stopped");
  return viewOf(*obj);
}

Result<DomainView> DomainService::destroy(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "destroy"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  auto [def, drv] = active;
  auto st = drv->destroy(*def, Deadline::after(Millis(30000)));
  if (!st.ok() && st.error().code != ErrorCode::conflict) return st.error().wrap("destroy of " + name);
  drv->release(*def, driverRecord(*obj));
  markStopped(*obj, "destroyed", "stopped");
  return viewOf(*obj);
}

std::string DomainService::managedSavePath(const std::string& name) const {
  return options_.saveDir.empty() ? std::string() : options_.saveDir + "/" + name + ".save";
}

Result<DomainView> DomainService::save(const std::string& name, const SaveParams& params) {
  VMM_ASSIGN(auto obj, find(name));
  bool managed = params.path.empty();
  if (managed && options_.saveDir.empty()) return unsupported("managed save is not configured in this vmmd");
  std::string path = managed ? managedSavePath(name) : params.path;
  if (!managed) {
    if (path.front() != '/') return invalidArgument("path: must be absolute");
    if (fs::isDirectory(path)) return invalidArgument("path: " + path + " is a directory");
    if (!fs::isDirectory(fs::dirName(path))) return invalidArgument("path: directory " + fs::dirName(path) + " does not exist");
  } else {
    VMM_TRY(fs::makeDirs(options_.saveDir, 0700));
  }
  // The state holds guest memory: never written through a symlink, nor in a directory where
  // another user could swap the file between the save and the rename.
  VMM_TRY(fs::checkPrivateDirectory(fs::dirName(path)));
  VMM_TRY(fs::refuseSymlink(path));
  VMM_TRY(fs::refuseSymlink(path + ".partial"));
  VMM_ASSIGN(auto guard, acquire(*obj, "save"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  auto [def, drv] = active;
  // Written to a temporary name first: a failed save never replaces an older good one.
  std::string partial = path + ".partial";
  auto st = drv->save(*def, partial, Deadline::after(params.timeout));
  if (!st.ok()) {
    (void)fs::removeFile(partial);
    return st.error().wrap("cannot save domain " + name);
  }
  if (::rename(partial.c_str(), path.c_str()) != 0) {
    // The guest is gone now: its state stays in the partial file, which can still be renamed.
    log::error("saved state could not be put in place", {{"domain", name}, {"file", partial}, {"errno", errno}});
  }
  drv->release(*def, driverRecord(*obj));
  {
    MutexLock lock(obj->mu);
    if (managed) obj->managedSave = true;
  }
  markStopped(*obj, managed ? "saved (managed)" : "saved to " + path, "saved");
  return viewOf(*obj);
}

Result<DomainView> DomainService::reboot(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "reboot"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  VMM_TRY(active.second->reboot(*active.first, Deadline::after(Millis(30000))));
  // A reboot may replace the processes behind the run (containers): record the new ones.
  if (auto info = active.second->currentInfo(*active.first)) {
    MutexLock lock(obj->mu);
    obj->status.info = *info;
  }
  if (auto st = persistRuntime(*obj); !st.ok())
    log::error("cannot record the rebooted domain", {{"domain", name}, {"error", st.error().message}});
  publish(name, "rebooted");
  return viewOf(*obj);
}

Result<DomainView> DomainService::reset(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "reset"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  VMM_TRY(active.second->reset(*active.first, Deadline::after(Millis(30000))));
  publish(name, "reset");
  return viewOf(*obj);
}

Result<DomainView> DomainService::suspend(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "suspend"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  {
    MutexLock lock(obj->mu);
    if (obj->status.state == DomainState::paused) return conflict("domain " + name + " is already paused");
  }
  VMM_TRY(active.second->suspend(*active.first, Deadline::after(Millis(30000))));
  {
    MutexLock lock(obj->mu);
    obj->status.state = DomainState::paused;
    obj->status.reason = "suspended";
    obj->status.sinceUs = wallNowMicros();
  }
  VMM_TRY(persistRuntime(*obj));
  publish(name, "suspended", {{"state", "paused"}});
  return viewOf(*obj);
}

Result<DomainView> DomainService::resume(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, "resume"));
  VMM_ASSIGN(auto active, activeDef(*obj));
  {
    MutexLock lock(obj->mu);
    if (obj->status.state != DomainState::paused) return conflict("domain " + name + " is not paused");
  }
  VMM_TRY(active.second->resume(*active.first, Deadline::after(Millis(30000))));
  {
    MutexLock lock(obj->mu);
    obj->status.state = DomainState::running;
    obj->status.reason = "resumed";
    obj->status.sinceUs = wallNowMicros();
  }
  VMM_TRY(persistRuntime(*obj));
  publish(name, "resumed", {{"state", "running"}});
  return viewOf(*obj);
}

// ---------------------------------------------------------------- devices

namespace {

// Applies a device change to a definition copy; returns the new definition.
Result<std::shared_ptr<const model::Domain>> edited(const model::Domain& base,
                                                    const std::function<Status(model::Domain&)>& fn) {
  auto copy = std::make_shared<model::Domain>(base);
  VMM_TRY(fn(*copy));
  // Re-validate the whole definition through the canonical form.
  auto reparsed = model::parseDomain(model::formatDomain(*copy, false));
  if (!reparsed.ok()) return reparsed.error();
  return std::shared_ptr<const model::Domain>(std::make_shared<model::Domain>(std::move(*reparsed)));
}

}  // namespace

Result<DomainView> DomainService::changeDevices(const std::string& name, DeviceChange change) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto guard, acquire(*obj, change.what));
  std::shared_ptr<const model::Domain> def, liveDef;
  bool active;
  uint64_t gen;
  {
    MutexLock lock(obj->mu);
    def = obj->def;
    liveDef = obj->liveDef;
    active = model::isActive(obj->status.state);
    gen = obj->generation;
  }
  if (change.live && !active) return conflict("domain " + name + " is not running; use --config to change only its definition");
  if (!change.live && !change.persist) return invalidArgument("nothing to do: neither live nor persistent");
  std::shared_ptr<const model::Domain> newLive, newDef;
  if (change.live) {
    VMM_ASSIGN(newLive, edited(*liveDef, change.edit));
    auto* drv = driver(liveDef->type);
    if (!drv) return unavailable("driver not available");
    VMM_TRY(change.apply(*liveDef, *newLive, *drv));
  }
  if (change.persist) {
    auto r = edited(*def, change.edit);
    if (!r.ok()) return r.error().wrap(change.live ? "changed the running domain but not its definition" : change.what);
    newDef = *r;
    VMM_TRY(persistDefinition(name, *newDef, gen + 1));
  }
  {
    MutexLock lock(obj->mu);
    if (newLive) obj->liveDef = newLive;
    if (newDef) {
      obj->def = newDef;
      obj->generation = gen + 1;
    }
  }
  reindexObject(*obj);
  if (newLive) {
    auto st = persistRuntime(*obj);
    if (!st.ok()) log::error("cannot record the device change", {{"domain", name}, {"error", st.error().message}});
  }
  change.event["domain"] = name;
  change.event["live"] = change.live;
  change.event["persistent"] = change.persist;
  events_.publish("domain.device", objectKey(name), change.event);
  return viewOf(*obj);
}

Result<DomainView> DomainService::attachDisk(const std::string& name, model::Disk disk, bool persist, bool live) {
  DeviceChange c;
  c.what = "attach-disk";
  c.live = live;
  c.persist = persist;
  c.edit = [disk, name](model::Domain& d) -> Status {
    for (const auto& existing : d.disks)
      if (!disk.target.empty() && existing.target == disk.target)
        return conflict("domain " + name + " already has a disk " + disk.target);
    d.disks.push_back(disk);
    return model::assignDiskTargets(d);
  };
  c.apply = [](const model::Domain&, const model::Domain& after, drivers::HypervisorDriver& drv) {
    return drv.attachDisk(after, after.disks.back(), Deadline::after(Millis(30000)));
  };
  c.event = {{"event", "disk-attached"}, {"source", disk.source.describe()}};
  return changeDevices(name, std::move(c));
}

Result<DomainView> DomainService::detachDisk(const std::string& name, const std::string& target, bool persist, bool live) {
  DeviceChange c;
  c.what = "detach-disk";
  c.live = live;
  c.persist = persist;
  c.edit = [target, name](model::Domain& d) -> Status {
    auto it = std::find_if(d.disks.begin(), d.disks.end(), [&](const model::Disk& x) { return x.target == target; });
    if (it == d.disks.end()) return notFound("domain " + name + " has no disk " + target);
    d.disks.erase(it);
    return {};
  };
  c.apply = [target](const model::Domain& before, const model::Domain&, drivers::HypervisorDriver& drv) -> Status {
    for (const auto& disk : before.disks)
      if (disk.target == target) return drv.detachDisk(before, disk, Deadline::after(Millis(30000)));
    return notFound("no disk " + target);
  };
  c.event = {{"event", "disk-detached"}, {"target", target}};
  return changeDevices(name, std::move(c));
}

Result<DomainView> DomainService::attachNic(const std::string& name, model::Nic nic, bool persist, bool live) {
  VMM_ASSIGN(auto view, get(name));
  {
    model::Domain probe;
    probe.uuid = view.def->uuid;
    probe.nics.push_back(nic);
    MutexLock lock(createMu_);
    VMM_TRY(checkUnique(probe, name));
  }
  DeviceChange c;
  c.what = "attach-nic";
  c.live = live;
  c.persist = persist;
  c.edit = [nic, name](model::Domain& d) -> Status {
    for (const auto& n : d.nics)
      if (n.mac == nic.mac) return conflict("domain " + name + " already has a NIC with MAC " + nic.mac);
    d.nics.push_back(nic);
    return {};
  };
  c.apply = [](const model::Domain&, const model::Domain& after, drivers::HypervisorDriver& drv) {
    return drv.attachNic(after, after.nics.back(), Deadline::after(Millis(30000)));
  };
  c.event = {{"event", "nic-attached"}, {"mac", nic.mac}};
  return changeDevices(name, std::move(c));
}

Result<DomainView> DomainService::detachNic(const std::string& name, const std::string& mac, bool persist, bool live) {
  DeviceChange c;
  c.what = "detach-nic";
  c.live = live;
  c.persist = persist;
  c.edit = [mac, name](model::Domain& d) -> Status {
    auto it = std::find_if(d.nics.begin(), d.nics.end(), [&](const model::Nic& n) { return n.mac == mac; });
    if (it == d.nics.end()) return notFound("domain " + name + " has no NIC with MAC " + mac);
    d.nics.erase(it);
    return {};
  };
  c.apply = [mac](const model::Domain& before, const model::Domain&, drivers::HypervisorDriver& drv) -> Status {
    for (const auto& nic : before.nics)
      if (nic.mac == mac) return drv.detachNic(before, nic, Deadline::after(Millis(30000)));
    return notFound("no NIC with MAC " + mac);
  };
  c.event = {{"event", "nic-detached"}, {"mac", mac}};
  return changeDevices(name, std::move(c));
}

// ---------------------------------------------------------------- guest reads

Result<json> DomainService::stats(const std::string& name, Deadline deadline) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto active, activeDef(*obj));
  VMM_ASSIGN(auto s, active.second->stats(*active.first, deadline));
  s["name"] = name;
  return s;
}

json DomainService::statsAll(Deadline deadline, const std::optional<std::string>& project) {
  // One call per active domain, in parallel, each bounded by the deadline: a stuck guest
  // costs its own entry ("error"), never the others'.
  std::vector<std::pair<std::string, std::future<Result<json>>>> calls;
  ListFilter filter;
  filter.activeOnly = true;
  filter.project = project;
  for (const auto& view : list(filter)) {
    std::string n = view.def->name;
    auto promise = std::make_shared<std::promise<Result<json>>>();
    calls.emplace_back(n, promise->get_future());
    pool_.submit([this, n, deadline, promise] { promise->set_value(stats(n, deadline)); });
  }
  json out = json::array();
  for (auto& [n, fut] : calls) {
    if (fut.wait_until(deadline.at() + Millis(100)) != std::future_status::ready) {
      out.push_back({{"name", n}, {"error", {{"code", "timeout"}, {"message", "no answer before the deadline"}}}});
      continue;
    }
    auto r = fut.get();
    if (r.ok()) out.push_back(*r);
    else out.push_back({{"name", n}, {"error", errorJson(r.error())}});
  }
  return out;
}

Result<drivers::ExecResult> DomainService::guestExec(const std::string& name, const drivers::ExecRequest& req, Deadline deadline) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto active, activeDef(*obj));
  return active.second->guestExec(*active.first, req, deadline);
}

Result<json> DomainService::guestCommand(const std::string& name, const std::string& command, const json& args, Deadline deadline) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto active, activeDef(*obj));
  return active.second->guestCommand(*active.first, command, args, deadline);
}

Result<fs::UniqueFd> DomainService::openConsole(const std::string& name) {
  VMM_ASSIGN(auto obj, find(name));
  VMM_ASSIGN(auto active, activeDef(*obj));
  return active.second->openConsole(*active.first);
}

Result<std::string> DomainService::consoleLog(const std::string& name, size_t maxBytes) {
  VMM_ASSIGN(auto obj, find(name));
  std::shared_ptr<const model::Domain> def;
  {
    MutexLock lock(obj->mu);
    def = obj->liveDef ? obj->liveDef : obj->def;
  }
  auto* drv = driver(def->type);
  if (!drv) return unavailable("driver not available");
  return drv->consoleLog(*def, maxBytes);
}

// ---------------------------------------------------------------- driver events

void DomainService::domainStopped(const std::string& name, const std::string& runId, drivers::StopCause cause,
                                  const std::string& detail) {
  // Handled under the domain's job, off the driver's thread: a lifecycle call in progress
  // finishes first, and then this sees whether the instance it refers to is still current.
  pool_.submit([this, name, runId, cause, detail] { handleStopped(name, runId, cause, detail); });
}

void DomainService::handleStopped(const std::string& name, const std::string& runId, drivers::StopCause cause,
                                  const std::string& detail) {
  auto obj = domains_.find(name);
  if (!obj) return;
  auto guard = obj->job.acquire("handle-stop", "domain " + name, Deadline::after(Millis(10LL * 60 * 1000)));
  if (!guard.ok()) {
    log::error("cannot process a domain stop", {{"domain", name}, {"error", guard.error().message}});
    return;
  }
  std::shared_ptr<const model::Domain> live;
  json record;
  {
    MutexLock lock(obj->mu);
    if (obj->status.runId != runId || !model::isActive(obj->status.state)) return;  // already handled
    live = obj->liveDef ? obj->liveDef : obj->def;
    record = obj->runtimeRecord.value("driver_record", json::object());
  }
  auto* drv = driver(live->type);
  if (drv) drv->release(*live, record);
  std::string reason = std::string(drivers::stopCauseName(cause)) + (detail.empty() ? "" : ": " + detail);
  bool crashed = cause == drivers::StopCause::crashed || cause == drivers::StopCause::failed;
  log::info("domain stopped", {{"domain", name}, {"cause", drivers::stopCauseName(cause)}, {"detail", detail}});
  if (crashed && live->onCrash == model::LifecycleAction::preserve) {
    (void)store_.remove(Table::runtime, name);
    {
      MutexLock lock(obj->mu);
      obj->liveDef = nullptr;
      obj->runtimeRecord = json();
    }
    reindexObject(*obj);
    setStatus(*obj, DomainStatus{DomainState::crashed, reason, 0, "", json::object()}, "crashed");
    return;
  }
  markStopped(*obj, reason, crashed ? "crashed" : "stopped");
  auto action = crashed ? live->onCrash : live->onPoweroff;
  if (action == model::LifecycleAction::restart) {
    guard->release();
    pool_.submit([this, name] {
      auto r = start(name);
      if (!r.ok()) log::warn("restart after stop failed", {{"domain", name}, {"error", r.error().message}});
    });
  }
}

void DomainService::domainStateChanged(const std::string& name, const std::string& runId, DomainState state,
                                       const std::string& reason) {
  auto obj = domains_.find(name);
  if (!obj) return;
  {
    MutexLock lock(obj->mu);
    if (obj->status.runId != runId || !model::isActive(obj->status.state)) return;
    // A lifecycle call in progress owns the transient states.
    if (obj->status.state == DomainState::starting || obj->status.state == DomainState::stopping) return;
    if (obj->status.state == state) return;
    obj->status.state = state;
    obj->status.reason = reason;
    obj->status.sinceUs = wallNowMicros();
  }
  pool_.submit([this, obj] { (void)persistRuntime(*obj); });
  publish(name, state == DomainState::paused ? "suspended" : "resumed", {{"state", stateName(state)}, {"reason", reason}});
}

void DomainService::domainEvent(const std::string& name, const std::string& runId, const std::string& type,
                                const json& data) {
  json d = data.is_object() ? data : json{{"data", data}};
  d["domain"] = name;
  d["run_id"] = runId;
  events_.publish(type, objectKey(name), std::move(d));
}

}  // namespace vmm
