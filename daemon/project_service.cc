#include "daemon/project_service.h"

#include <algorithm>

#include "base/log.h"
#include "base/strings.h"
#include "base/time_util.h"
#include "model/units.h"

namespace vmm {

using json = nlohmann::json;
using model::kDefaultProject;

ProjectService::ProjectService(StateStore& store, EventBus& events, DomainService& domains, PoolService& pools)
    : store_(store), events_(events), domains_(domains), pools_(pools) {
  model::Project def;
  def.name = std::string(kDefaultProject);
  def.restrictions.restricted = false;
  MutexLock lock(mu_);
  projects_[def.name] = def;
}

Status ProjectService::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::projects));
  MutexLock lock(mu_);
  for (const auto& row : rows) {
    auto p = model::parseProject(row.value);
    if (!p.ok()) {
      // A project is a boundary: one that cannot be read is not silently opened up.
      return p.error().wrap("stored project " + quote(row.key));
    }
    projects_[p->name] = std::move(*p);
  }
  return {};
}

std::vector<model::Project> ProjectService::list() const {
  MutexLock lock(mu_);
  std::vector<model::Project> out;
  for (const auto& [n, p] : projects_) out.push_back(p);
  return out;
}

Result<model::Project> ProjectService::find(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = projects_.find(name);
  if (it == projects_.end()) return notFound("project " + quote(name) + " not found");
  return it->second;
}

Result<model::Project> ProjectService::get(const std::string& name) const { return find(name); }

Status ProjectService::persist(const model::Project& p) { return store_.put(Table::projects, p.name, model::formatProject(p)); }

Result<model::Project> ProjectService::create(model::Project p) {
  VMM_TRY(model::validateProjectName(p.name));
  p.createdUs = wallNowMicros();
  {
    MutexLock lock(mu_);
    if (projects_.count(p.name)) return conflict("project " + quote(p.name) + " already exists");
    projects_[p.name] = p;  // taken before the commit, so that a second create of the name is refused
  }
  if (auto st = persist(p); !st.ok()) {
    MutexLock lock(mu_);
    projects_.erase(p.name);
    return st.error();
  }
  events_.publish("project", "projects/" + p.name, {{"event", "created"}}, p.name);
  log::info("project created", {{"project", p.name}});
  return p;
}

Result<model::Project> ProjectService::update(const std::string& name, const json& changes) {
  std::lock_guard change(changeMu_);
  VMM_ASSIGN(auto current, find(name));
  VMM_ASSIGN(auto next, model::mergeProject(current, changes));
  VMM_TRY(persist(next));
  {
    MutexLock lock(mu_);
    projects_[name] = next;
  }
  changed();  // a raised running limit lets waiting launches in
  events_.publish("project", "projects/" + name, {{"event", "updated"}}, name);
  return next;
}

Status ProjectService::remove(const std::string& name, const std::vector<std::string>& inUseBy) {
  if (name == kDefaultProject) return conflict("the default project cannot be deleted");
  std::lock_guard change(changeMu_);
  VMM_TRY(find(name));
  auto u = usage(name);
  if (u.domains > 0) return conflict("project " + name + " still has " + std::to_string(u.domains) + " domains");
  for (const auto& pool : pools_.names()) {
    auto vols = pools_.listVolumes(pool);
    if (!vols.ok()) continue;
    for (const auto& v : *vols)
      if (model::inProject(v.name, name))
        return conflict("project " + name + " still has volumes (" + pool + "/" + std::string(model::unqualifyName(v.name)) + ")");
  }
  if (!inUseBy.empty()) return conflict("project " + name + " is still used by " + join(inUseBy, ", "));
  VMM_TRY(store_.remove(Table::projects, name));
  {
    MutexLock lock(mu_);
    projects_.erase(name);
  }
  events_.publish("project", "projects/" + name, {{"event", "deleted"}}, name);
  log::info("project deleted", {{"project", name}});
  return {};
}

ProjectUsage ProjectService::usage(const std::string& project) const {
  ProjectUsage u;
  ListFilter f;
  f.project = project;
  for (const auto& v : domains_.list(f)) {
    u.domains++;
    u.vcpus += v.def->vcpus;
    u.memory += v.def->memory;
    if (model::isActive(v.status.state)) u.running++;
  }
  for (const auto& pool : pools_.names()) {
    auto vols = pools_.listVolumes(pool);
    if (!vols.ok()) continue;
    for (const auto& v : *vols)
      if (model::inProject(v.name, project)) u.disk += v.capacity;
  }
  return u;
}

json ProjectService::usageJson(const std::string& project) const {
  auto u = usage(project);
  return {{"domains", u.domains}, {"vcpus", u.vcpus}, {"memory", u.memory}, {"disk", u.disk}, {"running", u.running}};
}

ProjectService::Reservation& ProjectService::Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = o.owner_;
    project_ = std::move(o.project_);
    claim_ = o.claim_;
    o.owner_ = nullptr;
  }
  return *this;
}

void ProjectService::Reservation::release() {
  if (owner_) owner_->give(project_, claim_);
  owner_ = nullptr;
}

void ProjectService::give(const std::string& project, const Claim& c) {
  MutexLock lock(mu_);
  released_[project]++;
  auto it = reserved_.find(project);
  if (it == reserved_.end()) return;
  it->second.domains -= c.domains;
  it->second.vcpus -= c.vcpus;
  it->second.memory -= c.memory;
  it->second.disk -= std::min(it->second.disk, c.disk);
  if (it->second.domains == 0 && it->second.vcpus == 0 && it->second.memory == 0 && it->second.disk == 0) reserved_.erase(it);
}

Result<ProjectService::Reservation> ProjectService::reserve(const std::string& project, const Claim& asked) {
  VMM_ASSIGN(auto p, find(project));
  const auto& l = p.limits;
  if (!l.domains && !l.vcpus && !l.memory && !l.disk) return Reservation();
  // A shrinking change frees nothing until it is done: its claim is none.
  Claim claim{std::max<int64_t>(0, asked.domains), std::max<int64_t>(0, asked.vcpus), std::max<int64_t>(0, asked.memory), asked.disk};
  auto over = [&](const char* what, long double used, long double want, long double limit, bool bytes) -> Status {
    if (want <= 0 || used + want <= limit) return {};
    auto fmt = [&](long double v) {
      return bytes ? model::formatSize(static_cast<uint64_t>(std::max<long double>(0, v))) : std::to_string(static_cast<int64_t>(v));
    };
    return Error{ErrorCode::conflict, "project " + project + ": limits." + what + " is " + fmt(limit) + "; " + fmt(used) +
                                          " in use and " + fmt(want) + " more asked for"};
  };
  // Usage is read outside the lock (it takes the domain and pool locks). Reservations made
  // meanwhile are counted below; one that ended meanwhile may have ended after its object
  // became visible but before the read saw it: then the read is repeated (and after a few
  // tries the call is refused rather than let past a limit).
  for (int attempt = 0;; ++attempt) {
    uint64_t before = 0;
    {
      MutexLock lock(mu_);
      before = released_[project];
    }
    auto u = usage(project);
    MutexLock lock(mu_);
    if (released_[project] != before) {
      if (attempt < 8) continue;
      return unavailable("project " + project + " is changing too fast to count its usage; try again");
    }
    Claim held = reserved_.count(project) ? reserved_[project] : Claim{};
    if (l.domains) VMM_TRY(over("domains", u.domains + held.domains, claim.domains, *l.domains, false));
    if (l.vcpus) VMM_TRY(over("vcpus", u.vcpus + held.vcpus, claim.vcpus, *l.vcpus, false));
    if (l.memory)
      VMM_TRY(over("memory", static_cast<long double>(u.memory) + held.memory, claim.memory, static_cast<long double>(*l.memory), true));
    if (l.disk)
      VMM_TRY(over("disk", static_cast<long double>(u.disk) + held.disk, claim.disk, static_cast<long double>(*l.disk), true));
    Claim& r = reserved_[project];
    r.domains += claim.domains;
    r.vcpus += claim.vcpus;
    r.memory += claim.memory;
    r.disk += claim.disk;
    return Reservation(this, project, claim);
  }
}

Status ProjectService::checkDisk(const std::string& project) const {
  VMM_ASSIGN(auto p, find(project));
  if (!p.limits.disk) return {};
  auto u = usage(project);
  if (u.disk <= *p.limits.disk) return {};
  return Error{ErrorCode::conflict, "project " + project + ": limits.disk is " + model::formatSize(*p.limits.disk) + " and its volumes hold " +
                                        model::formatSize(u.disk)};
}

Status ProjectService::checkPool(const std::string& project, const std::string& pool) const {
  VMM_ASSIGN(auto p, find(project));
  if (model::allowedBy(p.restrictions.pools, pool)) return {};
  return permissionDenied("project " + project + " may not use pool " + quote(pool) + " (restrictions.pools: " +
                          join(p.restrictions.pools, ", ") + ")");
}

Status ProjectService::checkNetwork(const std::string& project, const std::string& network) const {
  VMM_ASSIGN(auto p, find(project));
  if (model::allowedBy(p.restrictions.networks, network)) return {};
  return permissionDenied("project " + project + " may not use network " + quote(network) + " (restrictions.networks: " +
                          join(p.restrictions.networks, ", ") + ")");
}

Status ProjectService::checkImage(const std::string& project, const std::string& qualifiedImage) const {
  if (model::inProject(qualifiedImage, project)) return {};  // its own
  VMM_ASSIGN(auto p, find(project));
  std::string name(model::unqualifyName(qualifiedImage));
  if (model::allowedBy(p.restrictions.images, name)) return {};
  return permissionDenied("project " + project + " may not launch image " + quote(name) + " of the default project (restrictions.images: " +
                          join(p.restrictions.images, ", ") + ")");
}

Status ProjectService::checkDefinition(const std::string& project, const model::Domain& def,
                                       const std::vector<std::string>& shared) const {
  for (size_t i = 0; i < def.disks.size(); ++i) {
    const auto& src = def.disks[i].source;
    if (!src.isVolume()) continue;
    if (std::find(shared.begin(), shared.end(), src.volume) != shared.end()) continue;
    if (!model::inProject(src.volume, project))
      return permissionDenied("disks[" + std::to_string(i) + "].source.volume: not a volume of project " + project);
    if (auto st = checkPool(project, src.pool); !st.ok()) return st.error().wrap("disks[" + std::to_string(i) + "].source.pool");
  }
  if (def.container && def.container->rootfs.isVolume()) {
    if (!model::inProject(def.container->rootfs.volume, project))
      return permissionDenied("container.rootfs.volume: not a volume of project " + project);
    if (auto st = checkPool(project, def.container->rootfs.pool); !st.ok()) return st.error().wrap("container.rootfs.pool");
  }
  for (size_t i = 0; i < def.nics.size(); ++i) {
    if (def.nics[i].network.empty()) continue;
    if (auto st = checkNetwork(project, def.nics[i].network); !st.ok()) return st.error().wrap("nics[" + std::to_string(i) + "].network");
  }
  return {};
}

CapacityGate& ProjectService::gateFor(const std::string& project) {
  MutexLock lock(mu_);
  auto& g = gates_[project];
  if (!g) {
    auto budget = [this, project] {
      auto p = find(project);
      Capacity c{UINT64_MAX / 2, kUnlimitedCount, kUnlimitedCount};
      if (p.ok() && p->limits.running) c.domains = *p->limits.running;
      return c;
    };
    auto inUse = [this, project] {
      Capacity c;
      ListFilter f;
      f.project = project;
      f.activeOnly = true;
      c.domains = static_cast<int64_t>(domains_.list(f).size());
      return c;
    };
    g = std::make_unique<CapacityGate>(budget, inUse, "running-domain limit of project " + project);
  }
  return *g;
}

Result<CapacityGate::Ticket> ProjectService::admitRunning(const std::string& project, Deadline deadline,
                                                          const std::function<bool()>& cancelled) {
  VMM_ASSIGN(auto p, find(project));
  if (!p.limits.running) return CapacityGate::Ticket();
  return gateFor(project).admit({0, 0, 1}, deadline, cancelled);
}

Status ProjectService::checkRunning(const std::string& project) const {
  VMM_ASSIGN(auto p, find(project));
  if (!p.limits.running) return {};
  auto u = usage(project);
  if (u.running < *p.limits.running) return {};
  return Error{ErrorCode::conflict, "project " + project + ": limits.running is " + std::to_string(*p.limits.running) + " and " +
                                              std::to_string(u.running) + " domains run"};
}

void ProjectService::changed() {
  std::vector<CapacityGate*> gates;
  {
    MutexLock lock(mu_);
    for (auto& [n, g] : gates_) gates.push_back(g.get());
  }
  for (auto* g : gates) g->changed();
}

}  // namespace vmm
