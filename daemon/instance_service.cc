#include "daemon/instance_service.h"

#include <thread>

#include "base/fs.h"
#include "base/log.h"
#include "base/random.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "daemon/first_boot.h"
#include "storage/customize/cloud_init.h"
#include "model/names.h"

namespace vmm {

using json = nlohmann::json;

namespace {

// IMAGE-xxxxxx, short enough to be a valid domain name whatever the image's name.
std::string defaultName(const std::string& image) { return image.substr(0, 48) + "-" + randomHex(3); }

int64_t elapsedMs(SteadyClock::time_point since) {
  return std::chrono::duration_cast<Millis>(SteadyClock::now() - since).count();
}

}  // namespace

InstanceService::InstanceService(StateStore& store, DomainService& domains, PoolService& pools, ImageService& images,
                                 InstanceServiceOptions options)
    : store_(store),
      domains_(domains),
      pools_(pools),
      images_(images),
      options_(std::move(options)),
      gate_(options_.budget, [this] { return inUse(); }) {}

json InstanceService::leaseJson(const Lease& l) {
  json vols = json::array();
  for (const auto& [pool, vol] : l.volumes) vols.push_back({{"pool", pool}, {"volume", vol}});
  return {{"domain", l.domain},       {"image", l.image},
          {"volumes", vols},          {"expires", l.expiresUs ? json(formatTimestamp(l.expiresUs)) : json(nullptr)},
          {"expires_us", l.expiresUs}, {"remove_on_stop", l.removeOnStop},
          {"disposable_run", l.disposableRun}, {"launching", l.launching}};
}

InstanceService::Lease InstanceService::leaseFrom(const json& j) {
  Lease l;
  l.domain = j.value("domain", "");
  l.image = j.value("image", "");
  for (const auto& v : j.value("volumes", json::array())) l.volumes.emplace_back(v.value("pool", ""), v.value("volume", ""));
  l.expiresUs = j.value("expires_us", int64_t{0});
  l.removeOnStop = j.value("remove_on_stop", false);
  l.disposableRun = j.value("disposable_run", false);
  l.launching = j.value("launching", false);
  return l;
}

Status InstanceService::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::leases));
  MutexLock lock(mu_);
  for (const auto& row : rows) leases_[row.key] = leaseFrom(row.value);
  return {};
}

Status InstanceService::putLease(const Lease& l) {
  VMM_TRY(store_.put(Table::leases, l.domain, leaseJson(l)));
  MutexLock lock(mu_);
  leases_[l.domain] = l;
  return {};
}

std::optional<json> InstanceService::lease(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = leases_.find(name);
  if (it == leases_.end()) return std::nullopt;
  return leaseJson(it->second);
}

Capacity InstanceService::inUse() const {
  Capacity c;
  ListFilter f;
  f.activeOnly = true;
  for (const auto& v : domains_.list(f)) {
    const auto& d = v.liveDef ? *v.liveDef : *v.def;
    c.memory += d.memory;
    c.vcpus += d.vcpus;
  }
  return c;
}

json InstanceService::capacityInfo() const {
  Capacity budget = gate_.budget(), used = inUse();
  return {{"memory_bytes", budget.memory}, {"vcpus", budget.vcpus}, {"used_memory_bytes", used.memory}, {"used_vcpus", used.vcpus}};
}

Result<model::Domain> InstanceService::buildDefinition(const model::LaunchSpec& spec, const model::Image& image,
                                                       const std::string& name, const std::string& rootVolume,
                                                       const std::string& seedVolume) {
  json def = image.domainTemplate.is_object() ? image.domainTemplate : json::object();
  def["name"] = name;
  if (!def.contains("type")) def["type"] = "qemu";
  if (spec.memory) def["memory"] = *spec.memory;
  if (spec.vcpus) def["vcpus"] = *spec.vcpus;
  json disks = json::array();
  if (image.media == "cdrom") {
    disks.push_back({{"device", "cdrom"}, {"bus", "sata"}, {"readonly", true}, {"source", {{"pool", image.pool}, {"volume", image.volume}}}});
    def["boot"]["order"] = json::array({"cdrom", "disk"});
  } else {
    disks.push_back({{"source", {{"pool", image.pool}, {"volume", rootVolume}}}});  // in the volume's recorded format
  }
  if (!seedVolume.empty())
    disks.push_back({{"device", "cdrom"}, {"bus", "sata"}, {"readonly", true}, {"source", {{"pool", image.pool}, {"volume", seedVolume}}}});
  def["disks"] = disks;
  for (auto [vol, key] : {std::pair{image.kernel, "kernel"}, std::pair{image.initrd, "initrd"}}) {
    if (vol.empty()) continue;
    VMM_ASSIGN(auto r, pools_.resolve(image.pool, vol));
    if (r.path.empty()) return unsupported("image " + image.name + ": its " + key + " is not a local file");
    def["boot"][key] = r.path;
  }
  json nics = def.value("nics", json::array());
  for (const auto& n : spec.networks) nics.push_back({{"type", "network"}, {"network", n}});
  def["nics"] = nics;
  json labels = def.value("labels", json::object());
  for (const auto& [k, v] : spec.labels) labels[k] = v;
  labels["vmm.image"] = model::unqualifyName(image.name);  // as the domain's project knows it
  def["labels"] = labels;
  auto parsed = model::parseDomain(def);
  if (!parsed.ok()) return parsed.error().wrap("the domain built from image " + image.name);
  return parsed;
}

Result<DomainView> InstanceService::launch(const model::LaunchSpec& spec, const RunHooks& hooks) {
  return launchImpl(spec, hooks, false);
}

Result<DomainView> InstanceService::launchImpl(const model::LaunchSpec& spec, const RunHooks& hooks, bool disposableRun,
                                               int64_t* queuedMs) {
  auto report = [&](int pct, const std::string& msg) { if (hooks.progress) hooks.progress(pct, msg); };
  VMM_ASSIGN(auto image, images_.get(spec.image));
  std::string name = spec.name.empty() ? defaultName(spec.image) : spec.name;
  if (spec.removeOnStop && !spec.start)
    return invalidArgument("remove_on_stop: needs the domain to be started (it would be removed at once)");
  {
    MutexLock lock(mu_);
    if (leases_.count(name)) return conflict("domain " + quote(name) + " already exists (or is being removed)");
    if (names_.count(name)) return conflict("a domain named " + quote(name) + " is being launched");
    names_.insert(name);
    busy_.insert(name);
  }
  Reverter undo;
  undo.add([this, name] {
    MutexLock lock(mu_);
    names_.erase(name);
    busy_.erase(busy_.find(name));
  });
  if (domains_.get(name).ok()) return conflict("domain " + quote(name) + " already exists");

  std::string rootVolume = image.media == "cdrom" ? "" : name + "-root.qcow2";
  std::string seedVolume = spec.cloudInit.is_object() ? name + "-seed.iso" : "";
  // First-boot settings are checked in full before anything is made.
  std::optional<customize::CloudInitSpec> cloudInit;
  if (spec.cloudInit.is_object()) {
    json ci = spec.cloudInit;
    std::string plain(model::unqualifyName(name));  // a host name has no '_'
    if (!ci.contains("hostname")) ci["hostname"] = plain;
    if (!ci.contains("instance_id")) ci["instance_id"] = plain + "-" + randomHex(4);
    VMM_ASSIGN(cloudInit, cloudInitFromJson(ci));
  }
  std::optional<customize::CustomizeSpec> customization;
  if (spec.customize.is_object()) {
    if (rootVolume.empty()) return invalidArgument("customize: image " + image.name + " is an ISO");
    if (!options_.guestfs) return unavailable("customize: " + options_.guestfsUnavailable);
    VMM_ASSIGN(customization, customizeFromJson(spec.customize));
  }
  VMM_ASSIGN(auto def, buildDefinition(spec, image, name, rootVolume, seedVolume));

  // The project's restrictions and quotas, before anything is made: the image, the pool and
  // networks it may use, and what the new domain and its root disk add.
  ProjectService::Reservation claim;
  CapacityGate::Ticket projectTicket;
  std::string project(model::projectOf(name));
  if (projects_) {
    VMM_TRY(projects_->checkImage(project, image.name));
    VMM_TRY(projects_->checkPool(project, image.pool));
    VMM_TRY(projects_->checkDefinition(project, def, {image.volume}));
    ProjectService::Claim c;
    c.domains = 1;
    c.vcpus = def.vcpus;
    c.memory = static_cast<int64_t>(def.memory);
    c.disk = rootVolume.empty() ? 0 : image.size;
    VMM_ASSIGN(claim, projects_->reserve(project, c));
  }
  CapacityGate::Ticket ticket;
  if (spec.start) {
    auto waitStart = SteadyClock::now();
    Deadline deadline = Deadline::after(options_.capacityWait);
    if (projects_) {
      report(1, "waiting for a running slot of project " + project);
      VMM_ASSIGN(projectTicket, projects_->admitRunning(project, deadline, hooks.cancelled));
    }
    report(2, "waiting for host capacity");
    VMM_ASSIGN(auto t, gate_.admit({def.memory, def.vcpus, 0}, deadline, hooks.cancelled));
    ticket = std::move(t);
    if (queuedMs) *queuedMs = elapsedMs(waitStart);
  }

  // The lease comes first: if vmmd dies halfway, the next start finds what to delete.
  Lease lease;
  lease.domain = name;
  lease.image = image.name;
  if (!rootVolume.empty()) lease.volumes.emplace_back(image.pool, rootVolume);
  if (!seedVolume.empty()) lease.volumes.emplace_back(image.pool, seedVolume);
  lease.expiresUs = spec.ttlMs ? wallNowMicros() + spec.ttlMs * 1000 : 0;
  lease.removeOnStop = spec.removeOnStop;
  lease.disposableRun = disposableRun;
  lease.launching = true;
  VMM_TRY(putLease(lease));
  undo.add([this, name, lease] {
    // Whatever the undo steps above could not remove stays recorded (still "launching"), and
    // tick() removes it later; only a launch that left nothing drops its lease.
    bool leftovers = domains_.get(name).ok();
    for (const auto& [pool, vol] : lease.volumes) leftovers = leftovers || pools_.getVolume(pool, vol).ok();
    if (leftovers) return;
    (void)store_.remove(Table::leases, name);
    MutexLock lock(mu_);
    leases_.erase(name);
  });

  if (!rootVolume.empty()) {
    report(10, spec.fullCopy ? "copying the image" : "cloning the image");
    VolumeCloneParams cp;
    cp.name = rootVolume;
    cp.linked = !spec.fullCopy;
    cp.cancelled = hooks.cancelled;
    VMM_TRY(pools_.cloneVolume(image.pool, image.volume, cp));
    undo.add([this, pool = image.pool, rootVolume] { (void)pools_.deleteVolume(pool, rootVolume); });
  }
  if (customization) {
    report(20, "customising the disk");
    VMM_ASSIGN(auto r, pools_.resolve(image.pool, rootVolume));
    if (r.path.empty() || r.size) return unsupported("customize: the disk is not a local file");
    customization->format = std::string(model::enumName(model::kDiskFormats, r.format));  // a full copy of a raw image is raw
    customize::DiskToCustomize disk(r.path);
    for (const auto& layer : r.backing) disk.backingLayers.push_back(layer.path);
    VMM_TRY(customize::customizeImage(disk, *customization, *options_.guestfs, Deadline::after(options_.customizeTimeout)));
  }
  if (cloudInit) {
    report(40, "writing the cloud-init seed");
    std::string iso = options_.tempDir + "/" + name + "-" + randomHex(4) + ".iso";
    Reverter dropIso;
    dropIso.add([iso] { (void)fs::removeFile(iso); });
    VMM_TRY(customize::writeSeedIso(*cloudInit, iso, Deadline::after(Millis(30000))));
    ImageProgress none;
    VMM_TRY(images_.copyIntoPool(image.pool, iso, seedVolume, model::DiskFormat::raw, 0, none));
    undo.add([this, pool = image.pool, seedVolume] { (void)pools_.deleteVolume(pool, seedVolume); });
  }

  report(50, "defining " + name);
  VMM_ASSIGN(auto view, domains_.create(def));
  undo.add([this, name] { (void)domains_.undefine(name); });
  if (spec.start) {
    report(60, "starting " + name);
    VMM_ASSIGN(view, domains_.start(name));
    undo.add([this, name] { (void)domains_.destroy(name); });
  }
  ticket.release();
  projectTicket.release();
  claim.release();
  lease.launching = false;
  VMM_TRY(putLease(lease));
  undo.success();
  {
    MutexLock lock(mu_);
    names_.erase(name);
    busy_.erase(busy_.find(name));
  }
  report(100, "launched");
  return view;
}

Status InstanceService::waitForAgent(const std::string& name, Deadline deadline, const std::function<bool()>& cancelled) {
  while (true) {
    if (cancelled && cancelled()) return cancelledError("cancelled while waiting for the guest agent of " + name);
    VMM_ASSIGN(auto view, domains_.get(name));
    if (!model::isActive(view.status.state))
      return unavailable("domain " + name + " stopped before its guest agent answered (" + view.status.reason + ")");
    // A ping sent before the agent opens its port is delivered once it does: keep one in flight.
    auto r = domains_.guestCommand(name, "ping", json::object(), deadline.earlier(Deadline::after(Millis(1000))));
    if (r.ok()) return {};
    if (r.error().code == ErrorCode::unsupported) return r.error();
    if (deadline.expired()) return timeoutError("the guest agent of " + name + " did not answer in time: " + r.error().message);
    std::this_thread::sleep_for(Millis(20));
  }
}

Result<json> InstanceService::run(const RunSpec& spec, const RunHooks& hooks) {
  auto t0 = SteadyClock::now();
  model::LaunchSpec ls = spec.launch;
  if (ls.name.empty()) ls.name = defaultName(ls.image);
  ls.start = true;
  std::string name = ls.name;
  {
    MutexLock lock(mu_);
    busy_.insert(name);
  }
  Reverter release;
  release.add([this, name] {
    MutexLock lock(mu_);
    busy_.erase(busy_.find(name));
  });
  auto launched = std::make_shared<std::atomic<bool>>(false);
  if (hooks.onCancel)
    hooks.onCancel([this, name, launched] {
      if (*launched) (void)domains_.destroy(name);
    });

  // The hook may fire until the operation is final: it only acts while the run is in progress.
  Reverter disarm;
  disarm.add([launched] { *launched = false; });
  int64_t queuedMs = 0;
  auto view = launchImpl(ls, hooks, spec.remove, &queuedMs);
  if (!view.ok()) return view.error();
  *launched = true;
  json timings = {{"launch_ms", elapsedMs(t0)}, {"queued_ms", queuedMs}};
  auto removeAfter = [&](Error e) -> Error {
    if (spec.remove) {
      if (auto st = removeImpl(name, "its run failed"); !st.ok())
        log::warn("cannot remove a disposable domain", {{"domain", name}, {"error", st.error().message}});
    }
    return e;
  };

  if (hooks.progress) hooks.progress(70, "waiting for the guest agent");
  auto t1 = SteadyClock::now();
  if (auto st = waitForAgent(name, Deadline::after(spec.bootTimeout), hooks.cancelled); !st.ok())
    return removeAfter(st.error().wrap("running in " + name));
  timings["agent_ms"] = elapsedMs(t1);

  if (hooks.progress) hooks.progress(80, "running " + spec.argv[0]);
  auto t2 = SteadyClock::now();
  drivers::ExecRequest req;
  req.argv = spec.argv;
  req.env = spec.env;
  req.input = spec.input;
  req.onOutput = hooks.output;
  auto r = domains_.guestExec(name, req, Deadline::after(spec.timeout));
  if (!r.ok()) {
    if (hooks.cancelled && hooks.cancelled()) return removeAfter(cancelledError("run in " + name + " cancelled"));
    return removeAfter(r.error().wrap("running " + quote(spec.argv[0]) + " in " + name));
  }
  timings["exec_ms"] = elapsedMs(t2);

  json out = {{"domain", name}, {"exit_code", r->exitCode}, {"signal", r->signal}, {"removed", spec.remove}};
  drivers::addExecOutput(out, *r);
  auto t3 = SteadyClock::now();
  *launched = false;
  if (spec.remove) {
    // The command's result stands even if removal has to wait: tick() retries it.
    if (auto st = removeImpl(name, "disposable run finished"); !st.ok()) {
      out["removed"] = false;
      out["warning"] = "the domain is removed later: " + st.error().message;
    }
    timings["remove_ms"] = elapsedMs(t3);
  }
  timings["total_ms"] = elapsedMs(t0);
  out["timings"] = timings;
  return out;
}

Status InstanceService::remove(const std::string& name, const std::string& why) {
  {
    MutexLock lock(mu_);
    if (busy_.count(name)) return conflict("domain " + name + " is being launched, run or removed");
    busy_.insert(name);
  }
  Reverter release;
  release.add([this, name] {
    MutexLock lock(mu_);
    busy_.erase(busy_.find(name));
  });
  bool known = lease(name).has_value();
  if (!known) VMM_TRY(domains_.get(name));
  return removeImpl(name, why);
}

Status InstanceService::removeImpl(const std::string& name, const std::string& why) {
  auto view = domains_.get(name);
  if (view.ok()) {
    if (model::isActive(view->status.state)) {
      auto d = domains_.destroy(name);
      if (!d.ok() && d.error().code != ErrorCode::conflict) return d.error().wrap("removing " + name);
    }
    if (auto st = domains_.undefine(name); !st.ok() && st.error().code != ErrorCode::not_found)
      return st.error().wrap("removing " + name);
  }
  std::optional<Lease> l;
  {
    MutexLock lock(mu_);
    if (auto it = leases_.find(name); it != leases_.end()) l = it->second;
  }
  if (l) {
    std::string failures;
    for (const auto& [pool, vol] : l->volumes) {
      auto st = pools_.deleteVolume(pool, vol);
      if (!st.ok() && st.error().code != ErrorCode::not_found) failures += (failures.empty() ? "" : "; ") + st.error().message;
    }
    // Kept for the next tick when a volume could not go yet.
    if (!failures.empty()) return unavailable("removing the volumes of " + name + ": " + failures);
    VMM_TRY(store_.remove(Table::leases, name));
    MutexLock lock(mu_);
    leases_.erase(name);
  }
  gate_.changed();
  log::info("domain removed", {{"domain", name}, {"why", why}});
  return {};
}

void InstanceService::tick() {
  int64_t now = wallNowMicros();
  std::vector<std::pair<std::string, std::string>> due;
  std::vector<std::string> expiredRuns;
  {
    MutexLock lock(mu_);
    for (const auto& [name, l] : leases_) {
      if (busy_.count(name)) {
        // A run past its TTL is stopped; the run itself then removes what it launched.
        if (!l.launching && l.expiresUs && now >= l.expiresUs) expiredRuns.push_back(name);
        continue;
      }
      if (l.launching) due.emplace_back(name, "its launch was interrupted");
      else if (l.disposableRun) due.emplace_back(name, "its disposable run was interrupted");
      else if (l.expiresUs && now >= l.expiresUs) due.emplace_back(name, "its lease expired");
      else if (l.removeOnStop) due.emplace_back(name, "");
      else due.emplace_back(name, "?");  // undefined by hand: its volumes go too
    }
    for (const auto& [name, _] : due) busy_.insert(name);
  }
  for (const auto& name : expiredRuns) {
    auto v = domains_.get(name);
    if (v.ok() && model::isActive(v->status.state)) {
      log::info("stopping a run whose lease expired", {{"domain", name}});
      (void)domains_.destroy(name);
    }
  }
  for (const auto& [name, why] : due) {
    std::string reason = why;
    auto v = domains_.get(name);
    if (reason.empty()) reason = v.ok() && model::isActive(v->status.state) ? "" : "it stopped (remove on stop)";
    else if (reason == "?") reason = v.ok() ? "" : "it was undefined; its volumes are deleted";
    if (!reason.empty()) {
      if (auto st = removeImpl(name, reason); !st.ok())
        log::warn("cannot remove a leased domain yet", {{"domain", name}, {"error", st.error().message}});
    }
    MutexLock lock(mu_);
    busy_.erase(busy_.find(name));
  }
  gate_.changed();
}

}  // namespace vmm
