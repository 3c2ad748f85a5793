#include "drivers/xen/xen_driver.h"
#include "drivers/xen/xen_record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "base/log.h"
#include "base/random.h"
#include "base/reverter.h"

namespace vmm::drivers::xen {

namespace {

// libxl runs a vif's hotplug script and netback waits for "hotplug-status connected" before
// it connects the guest. vmmd itself puts the vif on its bridge with its port profile
// (attachPort) while the new domain is still paused, so the script only reports readiness.
constexpr const char* kVifScript = R"(#!/bin/sh
# Written by vmmd: the vif's bridge and port profile are set up by vmmd after creation.
case "$1" in
  online|add) exec xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
  offline|remove) xenstore-rm "$XENBUS_PATH/hotplug-status" 2>/dev/null ;;
esac
exit 0
)";

model::Nic hostNicFor(const model::Domain& def, int devid) {
  model::Nic nic = def.nics.at(static_cast<size_t>(devid));
  if (nic.port.outbound && nic.port.outbound->average > 0) nic.port.outbound.reset();  // enforced by netback
  return nic;
}

}  // namespace

XenDriver::~XenDriver() {
  if (host_) host_->setDeathHandler(nullptr);
}

DriverInfo XenDriver::probe() {
  std::call_once(probeOnce_, [this] {
    auto h = LibxlHost::open();
    if (!h.ok()) {
      info_.available = false;
      info_.reason = h.error().message;
      info_.details = {{"libxl", "4.17"}, {"guest_types", {"pv", "pvh", "hvm"}}};
      log::info("xen driver unavailable", {{"reason", info_.reason}});
      return;
    }
    host_ = std::move(*h);
    host_->setDeathHandler([this](uint32_t domid, XenShutdownReason r, bool dead) { onDomainEvent(domid, r, dead); });
    if (auto st = writeVifScript(); !st.ok()) {
      info_.available = false;
      info_.reason = "cannot write the vif hotplug script: " + st.error().message;
      return;
    }
    info_.available = true;
    info_.version = host_->version();
    info_.details = {{"libxl", "4.17"}, {"guest_types", {"pv", "pvh", "hvm"}}};
  });
  return info_;
}

Result<LibxlHost*> XenDriver::host() {
  auto info = probe();
  if (!info.available) return unavailable("Xen: " + info.reason);
  return host_.get();
}

Status XenDriver::requireHost() {
  auto h = host();
  if (!h.ok()) return h.error();
  return {};
}

Status XenDriver::writeVifScript() const {
  VMM_TRY(fs::makeDirs(ctx_.runDir + "/xen"));
  VMM_TRY(fs::writeFileAtomic(vifScript(), kVifScript));
  if (::chmod(vifScript().c_str(), 0755) != 0) return systemError("chmod " + vifScript(), errno);
  return {};
}

Status XenDriver::validate(const model::Domain& def) const { return checkXenDomain(def); }

// ---------------------------------------------------------------- start

Result<std::shared_ptr<XenDriver::Guest>> XenDriver::launch(const model::Domain& def, bool paused,
                                                             const std::string& restoreFrom, Deadline deadline) {
  VMM_ASSIGN(auto* h, host());
  if (!services_) return internalError("xen: no host services");
  XenConfigInput in;
  in.def = &def;
  in.vifScript = vifScript();
  for (const auto& d : def.disks) {
    auto r = services_->resolveDisk(d);
    if (!r.ok()) return r.error().wrap("disk " + d.target);
    in.disks.push_back(std::move(*r));
  }
  VMM_ASSIGN(auto cfg, buildXenConfig(in));

  fs::UniqueFd restoreFd;
  if (!restoreFrom.empty()) {
    VMM_ASSIGN(restoreFd, fs::openPrivateFile(restoreFrom));
  }
  Reverter revert;
  VMM_ASSIGN(uint32_t domid, h->create(cfg.libxl, restoreFd.valid() ? restoreFd.get() : -1, true, deadline));
  revert.add([h, domid] { (void)h->destroy(domid, Deadline::after(Millis(30000))); });

  auto g = std::make_shared<Guest>();
  g->def = def;
  g->type = cfg.type;
  g->domid = domid;
  for (const auto& p : cfg.ports) {
    std::vector<std::string> names = {vifName(domid, p)};
    if (p.emulated) names.push_back(names[0] + "-emu");  // the device model's tap twin
    for (const auto& ifname : names) {
      auto st = services_->attachPort(def, p.hostNic, ifname);
      if (!st.ok()) return st.error().wrap("NIC " + p.hostNic.mac);
      g->ports.emplace_back(p.devid, ifname);
      revert.add([this, def, devid = p.devid, ifname] { unplugPorts(def, {{devid, ifname}}); });
    }
  }
  VMM_TRY(h->watch(domid));
  revert.add([h, domid] { h->unwatch(domid); });
  if (!paused) VMM_TRY(h->unpause(domid, deadline));
  revert.success();
  return g;
}

Result<RunningDomain> XenDriver::start(const model::Domain& def, const StartOptions& options) {
  VMM_TRY(requireHost());
  VMM_ASSIGN(auto g, launch(def, options.paused, options.restoreFrom, options.deadline));
  g->runId = newUuid();
  {
    MutexLock lock(mu_);
    guests_[def.name] = g;
  }
  log::info("xen domain started", {{"domain", def.name}, {"domid", g->domid}, {"type", std::string(guestTypeName(g->type))}});
  return runningOf(*g, options.paused ? model::DomainState::paused : model::DomainState::running);
}

json XenDriver::recordOf(const Guest& g) const {
  XenRecord r;
  r.runId = g.runId;
  r.domid = g.domid;
  r.guestType = std::string(guestTypeName(g.type));
  for (const auto& [devid, ifname] : g.ports) r.ports.push_back({devid, ifname});
  return r.toJson();
}

RunningDomain XenDriver::runningOf(const Guest& g, model::DomainState state) const {
  RunningDomain r;
  r.runId = g.runId;
  r.state = state;
  r.record = recordOf(g);
  r.info = {{"domid", g.domid}, {"guest_type", std::string(guestTypeName(g.type))}, {"hypervisor", info_.version}};
  return r;
}

Result<std::shared_ptr<XenDriver::Guest>> XenDriver::running(const model::Domain& def) {
  VMM_TRY(requireHost());
  MutexLock lock(mu_);
  auto it = guests_.find(def.name);
  if (it == guests_.end()) return conflict("Xen domain " + def.name + " is not running");
  return it->second;
}

// ---------------------------------------------------------------- reconnect / release

Result<RunningDomain> XenDriver::reconnect(const model::Domain& def, const json& record) {
  VMM_ASSIGN(auto* h, host());
  VMM_ASSIGN(uint32_t domid, h->find(def.name, def.uuid));
  VMM_ASSIGN(XenRecord rec, XenRecord::parse(record));
  if (domid != rec.domid) return notFound("Xen domain " + def.name + " has a new domain id");
  auto g = std::make_shared<Guest>();
  g->def = def;
  g->runId = rec.runId;
  g->domid = domid;
  g->type = guestTypeOf(def).valueOr(GuestType::hvm);
  for (const auto& p : rec.ports) g->ports.emplace_back(p.devid, p.ifname);
  VMM_TRY(h->watch(domid));
  auto stats = h->stats(domid);
  bool paused = stats.ok() && stats->value("paused", false);
  {
    MutexLock lock(mu_);
    guests_[def.name] = g;
  }
  return runningOf(*g, paused ? model::DomainState::paused : model::DomainState::running);
}

void XenDriver::unplugPorts(const model::Domain& def, const std::vector<std::pair<int, std::string>>& ports) {
  if (!services_) return;
  for (const auto& [devid, ifname] : ports) {
    if (devid < 0 || static_cast<size_t>(devid) >= def.nics.size()) continue;
    services_->unplugNic(def, hostNicFor(def, devid), ifname);
  }
}

void XenDriver::release(const model::Domain& def, const json& record) {
  std::shared_ptr<Guest> g;
  {
    MutexLock lock(mu_);
    if (auto it = guests_.find(def.name); it != guests_.end()) {
      g = it->second;
      guests_.erase(it);
    }
  }
  auto rec = XenRecord::parse(record);
  if (!rec.ok()) {
    log::error("cannot read the runtime record; the domain and its ports are left behind",
               {{"domain", def.name}, {"error", rec.error().message}});
    return;
  }
  std::vector<std::pair<int, std::string>> ports;
  for (const auto& p : rec->ports) ports.emplace_back(p.devid, p.ifname);
  if (auto h = host(); h.ok()) {
    uint32_t domid = rec->domid;
    (*h)->unwatch(domid);
    // A domain still there (preserved after a crash) is released for good.
    if (auto found = (*h)->find(def.name, def.uuid); found.ok() && *found == domid)
      (void)(*h)->destroy(domid, Deadline::after(Millis(30000)));
  }
  unplugPorts(def, ports);
}

std::optional<json> XenDriver::currentRecord(const model::Domain& def) {
  MutexLock lock(mu_);
  auto it = guests_.find(def.name);
  if (it == guests_.end()) return std::nullopt;
  return recordOf(*it->second);
}

// ---------------------------------------------------------------- lifecycle

Status XenDriver::shutdown(const model::Domain& def, const ShutdownOptions& options) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  {
    MutexLock lock(g->mu);
    g->stopRequested = true;
  }
  auto st = h->shutdown(g->domid);
  if (st.ok()) {
    MutexLock lock(g->mu);
    if (g->cv.wait_until(lock, options.deadline.at(), [&]() VMM_REQUIRES(g->mu) { return g->gone; })) return {};
  }
  if (options.forceAtDeadline) return destroy(def, Deadline::after(Millis(30000)));
  MutexLock lock(g->mu);
  g->stopRequested = false;
  return st.ok() ? Status(timeoutError("the Xen guest did not shut down in time")) : st;
}

Status XenDriver::destroy(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  {
    MutexLock lock(g->mu);
    g->stopRequested = true;
  }
  auto st = h->destroy(g->domid, deadline);
  if (!st.ok() && st.error().code != ErrorCode::not_found) return st;
  MutexLock lock(g->mu);
  g->gone = true;
  g->cv.notify_all();
  return {};
}

Status XenDriver::reboot(const model::Domain& def, Deadline) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  {
    MutexLock lock(g->mu);
    g->rebootRequested = true;
  }
  return h->reboot(g->domid);  // the guest shuts down with reason "reboot": handleShutdown restarts it
}

Status XenDriver::suspend(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  return h->pause(g->domid, deadline);
}

Status XenDriver::resume(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  return h->unpause(g->domid, deadline);
}

Status XenDriver::save(const model::Domain& def, const std::string& path, Deadline deadline) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  VMM_TRY(fs::removeFile(path));  // a leftover, or a planted symlink: removed, never written through
  VMM_ASSIGN(auto fd, fs::createExclusive(path, 0600));
  {
    MutexLock lock(g->mu);
    g->stopRequested = true;
  }
  auto st = h->save(g->domid, fd.get(), deadline);
  if (!st.ok()) {
    (void)fs::removeFile(path);
    (void)h->resume(g->domid, Deadline::after(Millis(10000)));
    MutexLock lock(g->mu);
    g->stopRequested = false;
    return st;
  }
  if (::fsync(fd.get()) != 0) log::warn("fsync of a Xen save file failed", {{"path", path}, {"errno", errno}});
  return destroy(def, Deadline::after(Millis(30000)));
}

Status XenDriver::reset(const model::Domain&, Deadline) {
  VMM_TRY(requireHost());
  return notSupported("reset");
}

// ---------------------------------------------------------------- events

void XenDriver::onDomainEvent(uint32_t domid, XenShutdownReason reason, bool dead) {
  std::shared_ptr<Guest> g;
  {
    MutexLock lock(mu_);
    for (auto& [name, guest] : guests_)
      if (guest->domid == domid) g = guest;
  }
  if (!g) return;
  if (dead) {
    bool requested;
    {
      MutexLock lock(g->mu);
      requested = g->stopRequested;
      g->gone = true;
      g->cv.notify_all();
    }
    if (!requested && observer_)
      ctx_.pool->submit([this, name = g->def.name, runId = g->runId] {
        if (observer_) observer_->domainStopped(name, runId, StopCause::gone, "the Xen domain was destroyed");
      });
    return;
  }
  // Never block the event thread: libxl completes our waits on it.
  ctx_.pool->submit([this, g, reason] { handleShutdown(g, reason); });
}

// libxl only records on_poweroff/on_reboot/on_crash: as xl does, the toolstack carries them out.
void XenDriver::handleShutdown(std::shared_ptr<Guest> g, XenShutdownReason reason) {
  auto h = host();
  if (!h.ok()) return;
  bool requested, rebootRequested;
  {
    MutexLock lock(g->mu);
    requested = g->stopRequested;
    rebootRequested = g->rebootRequested;
    g->rebootRequested = false;
  }
  if (reason == XenShutdownReason::suspend && requested) return;  // save() destroys it
  const auto& def = g->def;
  bool crash = reason == XenShutdownReason::crash || reason == XenShutdownReason::watchdog;
  if (crash && def.onCrash == model::LifecycleAction::preserve && !requested) {
    if (observer_) observer_->domainStateChanged(def.name, g->runId, model::DomainState::crashed, "guest crashed; kept for inspection");
    return;
  }
  bool restart = !requested && ((reason == XenShutdownReason::reboot && (rebootRequested || def.onReboot == model::LifecycleAction::restart)) ||
                                (crash && def.onCrash == model::LifecycleAction::restart));
  uint32_t old = g->domid;
  {
    MutexLock lock(g->mu);
    g->stopRequested = true;  // the death that follows is ours
  }
  (void)(*h)->destroy(old, Deadline::after(Millis(30000)));
  (*h)->unwatch(old);
  unplugPorts(def, g->ports);
  if (requested) {
    MutexLock lock(g->mu);
    g->gone = true;
    g->cv.notify_all();
    return;
  }
  if (restart) {
    auto again = launch(def, false, "", Deadline::after(Millis(120000)));
    if (again.ok()) {
      (*again)->runId = g->runId;
      {
        MutexLock lock(mu_);
        guests_[def.name] = *again;
      }
      if (observer_) observer_->domainEvent(def.name, g->runId, "reboot", {{"domid", (*again)->domid}});
      return;
    }
    if (observer_) observer_->domainStopped(def.name, g->runId, StopCause::failed, "restart failed: " + again.error().message);
    return;
  }
  if (observer_)
    observer_->domainStopped(def.name, g->runId, crash ? StopCause::crashed : StopCause::shutdown,
                             crash ? "the Xen guest crashed" : "the Xen guest powered off");
}

// ---------------------------------------------------------------- stats, console

Result<json> XenDriver::stats(const model::Domain& def, Deadline) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  VMM_ASSIGN(auto s, h->stats(g->domid));
  s["domid"] = g->domid;
  return s;
}

Result<fs::UniqueFd> XenDriver::openConsole(const model::Domain& def) {
  VMM_ASSIGN(auto g, running(def));
  VMM_ASSIGN(auto* h, host());
  // xenconsoled serves each console on a pty; HVM guests' first console is the emulated serial.
  VMM_ASSIGN(auto tty, h->consoleTty(g->domid, g->type == GuestType::hvm));
  fs::UniqueFd fd(::open(tty.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!fd.valid()) return systemError("open " + tty, errno);
  termios t{};
  if (tcgetattr(fd.get(), &t) == 0) {
    cfmakeraw(&t);
    (void)tcsetattr(fd.get(), TCSANOW, &t);
  }
  return fd;
}

// ---------------------------------------------------------------- not (yet) supported

#define VMM_XEN_UNSUPPORTED(op) \
  do {                          \
    VMM_TRY(requireHost());     \
    return notSupported(op);    \
  } while (0)

Result<std::string> XenDriver::consoleLog(const model::Domain&, size_t) { VMM_XEN_UNSUPPORTED("console log"); }
Status XenDriver::attachDisk(const model::Domain&, const model::Disk&, Deadline) { VMM_XEN_UNSUPPORTED("disk hotplug"); }
Status XenDriver::detachDisk(const model::Domain&, const model::Disk&, Deadline) { VMM_XEN_UNSUPPORTED("disk hot-unplug"); }
Status XenDriver::attachNic(const model::Domain&, const model::Nic&, Deadline) { VMM_XEN_UNSUPPORTED("NIC hotplug"); }
Status XenDriver::detachNic(const model::Domain&, const model::Nic&, Deadline) { VMM_XEN_UNSUPPORTED("NIC hot-unplug"); }
Result<ExecResult> XenDriver::guestExec(const model::Domain&, const ExecRequest&, Deadline) { VMM_XEN_UNSUPPORTED("guest exec"); }
Result<json> XenDriver::guestCommand(const model::Domain&, const std::string& command, const json&, Deadline) {
  VMM_XEN_UNSUPPORTED("guest command " + command);
}
Result<SnapshotResult> XenDriver::snapshotCreate(const model::Domain&, const SnapshotRequest&, Deadline) { VMM_XEN_UNSUPPORTED("snapshot"); }
Result<SnapshotRevertResult> XenDriver::snapshotRevert(const model::Domain&, const model::Snapshot&, Deadline) { VMM_XEN_UNSUPPORTED("snapshot revert"); }
Result<SnapshotDeleteResult> XenDriver::snapshotDelete(const model::Domain&, const model::Snapshot&, Deadline) { VMM_XEN_UNSUPPORTED("snapshot delete"); }

}  // namespace vmm::drivers::xen
