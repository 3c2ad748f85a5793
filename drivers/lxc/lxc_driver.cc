#include "drivers/lxc/lxc_driver.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "base/log.h"
#include "base/process.h"
#include "base/random.h"
#include "base/reverter.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "drivers/lxc/confinement.h"
#include "drivers/lxc/container_process.h"
#include "drivers/lxc/lxc_record.h"
#include "model/pool.h"
#include "network/link.h"

namespace vmm::drivers::lxc {

namespace {

constexpr size_t kConsoleLogLimit = 1 << 20;

std::vector<std::string> initOf(const model::Domain& def) {
  if (def.container && !def.container->init.empty()) return def.container->init;
  return {"/sbin/init"};
}

// Whether a process has a handler for `sig` (/proc/PID/status SigCgt): the init of a pid
// namespace only receives the signals it handles (and SIGKILL).
bool catchesSignal(pid_t pid, int sig) {
  auto status = fs::readFile("/proc/" + std::to_string(pid) + "/status", 1 << 16).valueOr("");
  auto pos = status.find("SigCgt:");
  if (pos == std::string::npos) return false;
  try {
    uint64_t mask = std::stoull(status.substr(pos + 7, status.find('\n', pos) - pos - 7), nullptr, 16);
    return (mask >> (sig - 1)) & 1;
  } catch (...) {
    return false;
  }
}

std::string vethNameFor(const std::string& mac) { return "vc" + net::tapNameFor(mac).substr(2); }

RunOptions quick(Deadline deadline) {
  RunOptions o;
  o.deadline = deadline.earlier(Deadline::after(Millis(10000)));
  return o;
}

}  // namespace

LxcDriver::~LxcDriver() {
  std::map<std::string, std::shared_ptr<Container>> all;
  {
    MutexLock lock(mu_);
    all.swap(containers_);
  }
  // vmmd stops, containers keep running: only let go of the connections.
  for (auto& [name, c] : all) {
    if (c->pidfd.valid()) ctx_.loop->runSync([this, fd = c->pidfd.get()] { ctx_.loop->unwatch(fd); });
    if (c->console) c->console->stop();
  }
}

DriverInfo LxcDriver::probe() {
  {
    MutexLock lock(mu_);
    if (probed_) return *probed_;
  }
  DriverInfo info;
  info.version = "native (clone + pivot_root)";
  auto cg = ContainerCgroups::forDomain("probe");
  if (::geteuid() != 0) {
    info.reason = "system containers need vmmd to run as root";
  } else if (!cg.ok()) {
    info.reason = cg.error().message;
  } else {
    for (const char* ns : {"mnt", "uts", "ipc", "pid", "net", "user"})
      if (!fs::exists(std::string("/proc/self/ns/") + ns)) info.reason = std::string("the kernel lacks ") + ns + " namespaces";
    info.available = info.reason.empty();
    info.details = {{"cgroup", cg->v2() ? "v2" : "v1"}, {"devices_cgroup", cg->hasDevices()}, {"nsexec", nsexecHelper()}};
  }
  MutexLock lock(mu_);
  if (!probed_) probed_ = info;
  return *probed_;
}

Status LxcDriver::validate(const model::Domain& def) const {
  if (!def.container) return invalidArgument("container: required for domains of type lxc");
  const auto& c = *def.container;
  if (!def.disks.empty()) return invalidArgument("disks: not supported for containers (use container.mounts)");
  if (c.rootfs.isVolume()) {
    // Resolved (and its content checked) at start: the pool may not be active yet.
    if (c.rootfs.volume.empty()) return invalidArgument("container.rootfs.volume: required with a pool");
  } else {
    if (c.rootfs.path.empty() || c.rootfs.path[0] != '/') return invalidArgument("container.rootfs.path: an absolute directory path is required");
    VMM_TRY(validateRootfs(def, c.rootfs.path));
  }
  auto init = initOf(def);
  if (init[0].empty() || init[0][0] != '/') return invalidArgument("container.init: the command must be an absolute path inside the rootfs");
  for (const auto& m : c.mounts) {
    if (m.target.empty() || m.target[0] != '/' || m.target.find("..") != std::string::npos)
      return invalidArgument("container.mounts: target " + quote(m.target) + " must be an absolute path without ..");
    if (!fs::exists(m.source)) return invalidArgument("container.mounts: source " + m.source + " does not exist");
  }
  // idmap_base 0 is allocated by the daemon at define (each unprivileged container its own range).
  if (!c.privileged && c.idmapSize == 0) return invalidArgument("container: idmap_size must be positive");
  if (def.limits.cpuQuotaPercent < 0 || def.limits.cpuQuotaPercent > 100 * 1024)
    return invalidArgument("limits.cpu_quota_percent: must be between 0 and 102400");
  if (def.limits.cpuShares < 0 || def.limits.cpuShares > 262144) return invalidArgument("limits.cpu_shares: must be between 0 and 262144");
  if (def.limits.pids < 0 || (def.limits.pids > 0 && def.limits.pids < 2)) return invalidArgument("limits.pids: must be 0 (unlimited) or at least 2");
  for (const auto& n : def.nics)
    if (n.type != model::NicType::bridge && n.type != model::NicType::network)
      return unsupported("nics: containers support NICs of type bridge and network only");
  if (!def.graphics.empty()) return invalidArgument("graphics: containers have no display");
  return {};
}

namespace {

// Whatever the container's root writes to its rootfs is the host root's on disk (set-user-ID
// programs too, privileged or idmapped): no host user may reach it. Some directory on the way
// (the rootfs included) must be root's and closed to others.
Status checkOutOfHostUsersReach(const std::string& rootfs, const std::string& what) {
  auto resolved = fs::realPath(rootfs);
  if (!resolved.ok()) return resolved.error().wrap(what);
  std::string path = *resolved;
  for (;;) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return systemError(what + ": " + path, errno);
    bool othersKept = !(st.st_mode & S_IXOTH) && (!(st.st_mode & S_IXGRP) || st.st_gid == 0);
    if (st.st_uid == 0 && othersKept) return {};
    if (path == "/") break;
    size_t slash = path.rfind('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
  return invalidArgument(what + " can be reached by host users, and what the container's root writes there is owned by the host's root: " +
                         "keep it under a directory only root can enter (chmod 0700)");
}

}  // namespace

Status LxcDriver::validateRootfs(const model::Domain& def, const std::string& rootfs) const {
  const std::string what = def.container->rootfs.isVolume() ? "container.rootfs: volume " + def.container->rootfs.describe() + " (" + rootfs + ")"
                                                            : "container.rootfs.path: " + rootfs;
  struct stat st{};
  if (::stat(rootfs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return invalidArgument(what + " is not a directory");
  VMM_TRY(checkOutOfHostUsersReach(rootfs, what));
  auto init = initOf(def);
  if (init[0].empty() || init[0][0] != '/') return invalidArgument("container.init: the command must be an absolute path inside the rootfs");
  // The command is looked up inside the rootfs; absolute symlinks resolve there too.
  std::string path = init[0];
  for (int hops = 0; hops < 10; ++hops) {
    struct stat ls{};
    std::string host = rootfs + path;
    if (::lstat(host.c_str(), &ls) != 0) return invalidArgument("container.init: " + init[0] + " does not exist in the rootfs " + rootfs);
    if (!S_ISLNK(ls.st_mode)) {
      if (!S_ISREG(ls.st_mode) || !(ls.st_mode & 0111)) return invalidArgument("container.init: " + init[0] + " is not an executable file");
      break;
    }
    char buf[4096];
    ssize_t n = ::readlink(host.c_str(), buf, sizeof(buf) - 1);
    if (n <= 0) return invalidArgument("container.init: cannot read the symlink " + init[0]);
    std::string target(buf, static_cast<size_t>(n));
    path = target[0] == '/' ? target : path.substr(0, path.rfind('/') + 1) + target;
  }
  for (const char* dir : {"/proc", "/sys", "/dev"})
    if (!fs::exists(rootfs + dir) && !(st.st_mode & 0200))
      return invalidArgument(what + ": " + std::string(dir) + " is missing and the rootfs is read-only");
  return {};
}

Result<std::string> LxcDriver::rootfsDir(const model::Domain& def) const {
  const auto& src = def.container->rootfs;
  if (!src.isVolume()) return src.path;
  if (!services_) return unavailable("container.rootfs: no storage service to resolve volume " + src.describe());
  model::Disk disk;
  disk.target = model::kContainerRootfsTarget;
  disk.source = src;
  VMM_ASSIGN(auto r, services_->resolveDisk(disk));
  if (r.path.empty()) return invalidArgument("container.rootfs: volume " + src.describe() + " has no local directory");
  return r.path;
}

std::shared_ptr<LxcDriver::Container> LxcDriver::find(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = containers_.find(name);
  return it == containers_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<LxcDriver::Container>> LxcDriver::running(const model::Domain& def) const {
  auto c = find(def.name);
  if (!c) return conflict("domain " + def.name + " is not running");
  MutexLock lock(c->mu);
  if (c->exited) return conflict("domain " + def.name + " is not running");
  return c;
}

json LxcDriver::recordOf(const Container& c) const {
  LxcRecord r;
  r.initPid = c.initPid;
  r.initStart = c.initStart;
  r.monitorPid = c.monitorPid;
  r.runId = c.runId;
  r.userns = c.userns;
  r.cgroupV2 = c.cgroups.v2();
  r.cgroups = c.cgroups.paths();
  for (const auto& v : c.veths) r.veths.push_back({v.ifname, v.mac, v.bridge});
  return r.toJson();
}

RunningDomain LxcDriver::runningOf(const Container& c, model::DomainState state) const {
  RunningDomain r;
  r.runId = c.runId;
  r.state = state;
  r.record = recordOf(c);
  r.info = {{"pid", c.initPid}, {"cgroup", c.cgroups.v2() ? "v2" : "v1"}};
  return r;
}

std::optional<json> LxcDriver::currentRecord(const model::Domain& def) {
  auto c = find(def.name);
  if (!c) return std::nullopt;
  return recordOf(*c);
}

std::optional<json> LxcDriver::currentInfo(const model::Domain& def) {
  auto c = find(def.name);
  if (!c) return std::nullopt;
  return runningOf(*c, model::DomainState::running).info;
}

// ---------------------------------------------------------------- start

Status LxcDriver::plugVeths(const model::Domain& def, Container& c) {
  int index = 0;
  for (const auto& nic : def.nics) {
    if (nic.type != model::NicType::bridge && nic.type != model::NicType::network)
      return unsupported("NIC " + nic.mac + ": containers take NICs on a bridge or a network");
    if (nic.type == model::NicType::network && !services_) return unavailable("NIC " + nic.mac + ": no network service");
    // The veth's peer is created inside the container's namespace; the host end becomes the
    // NIC's port (bridge and port profile) through the daemon, like a VM's tap.
    Veth v{nic.ifname.empty() ? vethNameFor(nic.mac) : nic.ifname, nic.mac, nic.bridge};
    std::string peer = "eth" + std::to_string(index++);
    auto made = runChecked({"ip", "link", "add", v.ifname, "address", net::hostSideMac(nic.mac), "type", "veth", "peer", "name",
                            peer, "address", nic.mac, "netns", std::to_string(c.initPid)},
                           quick(Deadline::after(Millis(10000))));
    if (!made.ok()) return made.error().wrap("NIC " + nic.mac + ": cannot create veth " + v.ifname);
    c.veths.push_back(v);
    if (services_) {
      auto bridge = services_->attachPort(def, nic, v.ifname);
      if (!bridge.ok()) return bridge.error().wrap("NIC " + nic.mac);
      c.veths.back().bridge = *bridge;
    } else {
      if (!net::isBridge(nic.bridge)) return invalidArgument("NIC " + nic.mac + ": " + nic.bridge + " is not a bridge");
      VMM_TRY(net::addBridgePort(nic.bridge, v.ifname));
      VMM_TRY(net::setLinkUp(v.ifname, true));
    }
  }
  return {};
}

Result<RunningDomain> LxcDriver::start(const model::Domain& def, const StartOptions& options) {
  DriverInfo info = probe();
  if (!info.available) return unavailable(info.reason);
  VMM_TRY(validate(def));
  VMM_ASSIGN(auto rootfs, rootfsDir(def));
  if (def.container->rootfs.isVolume()) VMM_TRY(validateRootfs(def, rootfs));
  if (!options.restoreFrom.empty()) return unsupported("containers cannot be restored from a saved state");
  if (find(def.name)) return conflict("domain " + def.name + " is already running");
  if (!def.container->privileged && def.container->idmapBase == 0)
    return invalidArgument("container: no idmap range was allocated (define the container again)");
  Deadline deadline = options.deadline;
  const auto& cfg = *def.container;
  auto began = std::chrono::steady_clock::now();
  Reverter revert;

  auto c = std::make_shared<Container>();
  c->name = def.name;
  c->runId = newUuid();
  c->userns = !cfg.privileged;
  VMM_ASSIGN(c->cgroups, ContainerCgroups::forDomain(def.name));
  VMM_TRY(c->cgroups.create(def, ctx_.containerPidsMax));
  revert.add([cg = c->cgroups] { (void)cg.remove(Deadline::after(Millis(5000))); });

  std::string dir = runDir(def.name);
  (void)fs::removeTree(dir);
  VMM_TRY(fs::makeDirs(dir, 0700));
  revert.add([dir] { (void)fs::removeTree(dir); });
  VMM_TRY(fs::makeDirs(ctx_.stateDir + "/lxc/" + def.name, 0700));
  VMM_ASSIGN(auto listenFd, listenUnix(dir + "/console.sock", 0600));

  ContainerSpec spec;
  spec.rootfs = rootfs;
  spec.hostname = cfg.hostname.empty() ? def.name : cfg.hostname;
  spec.argv = initOf(def);
  spec.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, {"TERM", "linux"}, {"container", "vmm"}};
  for (const auto& [k, v] : cfg.env) spec.env[k] = v;
  spec.mounts = cfg.mounts;
  spec.userns = c->userns;
  VMM_ASSIGN(spec.confinement, makeConfinement(cfg.privileged, c->cgroups.hasDevices()));
  spec.consoleListenFd = listenFd.get();
  VMM_ASSIGN(auto pending, spawnContainer(spec, deadline));
  listenFd.reset();  // the monitor holds it
  c->initPid = pending.initPid;
  c->monitorPid = pending.monitorPid;
  c->initStart = processStartTime(c->initPid).value_or(0);
  if (ChildReaper::enabled()) ChildReaper::onExit(c->monitorPid, [](int) {});
  revert.add([init = c->initPid, monitor = c->monitorPid] {
    ::kill(init, SIGKILL);
    ::kill(monitor, SIGKILL);
    if (!ChildReaper::enabled()) ::waitpid(monitor, nullptr, 0);
  });
  revert.add([this, c] { cleanup(c->name, ContainerCgroups(), c->veths); });

  if (Status s = c->cgroups.addProcess(c->initPid); !s.ok()) return s.error().wrap("cannot put the container in its cgroups");
  if (c->userns) VMM_TRY(writeIdMaps(c->initPid, cfg.idmapBase, cfg.idmapSize));
  VMM_TRY(plugVeths(def, *c));
  VMM_TRY(pending.release(deadline));
  if (options.paused) VMM_TRY(c->cgroups.freeze(true, deadline));
  VMM_TRY(watch(c));
  {
    MutexLock lock(mu_);
    containers_[def.name] = c;
  }
  revert.success();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
  log::info("container started", {{"domain", def.name}, {"pid", static_cast<int64_t>(c->initPid)}, {"ms", static_cast<int64_t>(ms)}});
  return runningOf(*c, options.paused ? model::DomainState::paused : model::DomainState::running);
}

Status LxcDriver::watch(const std::shared_ptr<Container>& c) {
  c->pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, c->initPid, 0)));
  if (!c->pidfd.valid()) return systemError("pidfd_open", errno);
  std::weak_ptr<Container> weak = c;
  int pfd = c->pidfd.get();
  ctx_.loop->runSync([this, weak, pfd] {
    ctx_.loop->watch(pfd, EPOLLIN, [this, weak, pfd](uint32_t) {
      ctx_.loop->unwatch(pfd);
      if (auto i = weak.lock()) onExit(i);
    });
  });
  auto mux = qemu::ConsoleMux::start(*ctx_.loop, runDir(c->name) + "/console.sock", consoleLogPath(c->name), kConsoleLogLimit);
  if (mux.ok()) c->console = *mux;
  else log::warn("container console not available", {{"domain", c->name}, {"error", mux.error().message}});
  return {};
}

void LxcDriver::onExit(const std::shared_ptr<Container>& c) {
  bool requested;
  {
    MutexLock lock(c->mu);
    c->exited = true;
    requested = c->stopRequested;
    c->cv.notify_all();
  }
  if (c->console) c->console->stop();
  log::info("container init exited", {{"domain", c->name}, {"requested", requested}});
  if (requested || !observer_) return;
  ctx_.pool->submit([this, name = c->name, runId = c->runId] {
    if (observer_) observer_->domainStopped(name, runId, StopCause::shutdown, "the container's init exited");
  });
}

// ---------------------------------------------------------------- reconnect / release

Result<RunningDomain> LxcDriver::reconnect(const model::Domain& def, const json& record) {
  if (!probe().available) return unavailable("containers are not available");
  VMM_ASSIGN(LxcRecord rec, LxcRecord::parse(record));
  auto c = std::make_shared<Container>();
  c->name = def.name;
  c->runId = rec.runId;
  c->initPid = rec.initPid;
  c->initStart = rec.initStart;
  c->monitorPid = rec.monitorPid;
  c->userns = rec.userns;
  c->cgroups = ContainerCgroups::fromPaths(rec.cgroupV2, rec.cgroups);
  for (const auto& v : rec.veths) c->veths.push_back({v.ifname, v.mac, v.bridge});
  if (c->initPid <= 0 || !processAlive(c->initPid) || processStartTime(c->initPid).value_or(0) != c->initStart)
    return unavailable("the container's init (pid " + std::to_string(c->initPid) + ") is no longer running");
  VMM_TRY(watch(c));
  {
    MutexLock lock(mu_);
    containers_[def.name] = c;
  }
  return runningOf(*c, c->cgroups.frozen() ? model::DomainState::paused : model::DomainState::running);
}

void LxcDriver::cleanup(const std::string& name, const ContainerCgroups& cgroups, const std::vector<Veth>& veths) {
  if (!cgroups.paths().empty()) {
    auto s = cgroups.remove(Deadline::after(Millis(10000)));
    if (!s.ok()) log::warn("cannot remove the container's cgroups", {{"domain", name}, {"error", s.error().message}});
  }
  for (const auto& v : veths) {
    if (services_) {
      // Port state (profile tables, ifb) goes with the port.
      model::Domain none;
      model::Nic nic;
      nic.mac = v.mac;
      nic.type = model::NicType::bridge;
      nic.bridge = v.bridge;
      nic.port.isolated = true;  // non-empty: removal looks for every kind of port state
      services_->unplugNic(none, nic, v.ifname);
    }
    if (net::linkExists(v.ifname)) (void)runCommand({"ip", "link", "del", v.ifname}, quick(Deadline::after(Millis(5000))));
  }
}

void LxcDriver::release(const model::Domain& def, const json& record) {
  std::shared_ptr<Container> c;
  {
    MutexLock lock(mu_);
    auto it = containers_.find(def.name);
    if (it != containers_.end()) {
      c = it->second;
      containers_.erase(it);
    }
  }
  ContainerCgroups cg = ContainerCgroups::fromPaths(false, {});
  std::vector<Veth> veths;
  if (auto rec = LxcRecord::parse(record); rec.ok()) {
    cg = ContainerCgroups::fromPaths(rec->cgroupV2, rec->cgroups);
    for (const auto& v : rec->veths) veths.push_back({v.ifname, v.mac, v.bridge});
  } else if (!c) {
    log::error("cannot read the runtime record; its cgroups and veths are left behind",
               {{"domain", def.name}, {"error", rec.error().message}});
  }
  if (c) {
    if (c->pidfd.valid()) ctx_.loop->runSync([this, fd = c->pidfd.get()] { ctx_.loop->unwatch(fd); });
    if (c->console) c->console->stop();
    cg = c->cgroups;
    veths = c->veths;
  }
  cleanup(def.name, cg, veths);
  (void)fs::removeTree(runDir(def.name));
}

// ---------------------------------------------------------------- stop, pause

Status LxcDriver::killAll(const std::shared_ptr<Container>& c, Deadline deadline) {
  {
    MutexLock lock(c->mu);
    c->stopRequested = true;
  }
  // The cgroup holds every process of the container: killing them all (and thawing a frozen
  // container) leaves nothing behind, even processes that escaped init's pid namespace by exec.
  if (processStartTime(c->initPid).value_or(0) == c->initStart) ::kill(c->initPid, SIGKILL);
  VMM_TRY(c->cgroups.remove(deadline.earlier(Deadline::after(Millis(10000)))));
  if (c->waitExit(deadline.earlier(Deadline::after(Millis(10000))))) return {};
  return timeoutError("the container's init (pid " + std::to_string(c->initPid) + ") did not exit after SIGKILL");
}

// A reboot starts the same definition afresh within the same run: the old init and all its
// processes go (nothing is reported as stopped), new namespaces, cgroups and veths come, and
// the run keeps its id so the daemon still recognises its events.
Status LxcDriver::reboot(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto c, running(def));
  std::string runId = c->runId;
  VMM_TRY(killAll(c, deadline));
  release(def, json::object());
  StartOptions opts;
  opts.deadline = deadline;
  auto started = start(def, opts);
  if (!started.ok()) {
    // Down and not coming back: report it like any other stop.
    // (From the pool: the daemon handles stops under the domain's job, which this call holds.)
    if (observer_)
      ctx_.pool->submit([this, name = def.name, runId, why = started.error().message] {
        observer_->domainStopped(name, runId, StopCause::crashed, "reboot failed: " + why);
      });
    return started.error().wrap("reboot");
  }
  MutexLock lock(mu_);
  if (auto it = containers_.find(def.name); it != containers_.end()) it->second->runId = runId;
  return {};
}

Status LxcDriver::destroy(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto c, running(def));
  return killAll(c, deadline);
}

Status LxcDriver::shutdown(const model::Domain& def, const ShutdownOptions& options) {
  VMM_ASSIGN(auto c, running(def));
  {
    MutexLock lock(c->mu);
    c->stopRequested = true;
  }
  if (c->cgroups.frozen()) (void)c->cgroups.freeze(false, Deadline::after(Millis(2000)));
  // SIGPWR asks a system init (busybox, sysvinit) to power off; a command that only handles
  // SIGTERM gets that at once; one handling SIGPWR gets SIGTERM after a third of the time.
  bool ours = processStartTime(c->initPid).value_or(0) == c->initStart;
  bool pwr = ours && catchesSignal(c->initPid, SIGPWR);
  if (ours) ::kill(c->initPid, pwr ? SIGPWR : SIGTERM);
  if (pwr) {
    auto third = std::max(Millis(1000), options.deadline.remaining() / 3);
    if (c->waitExit(Deadline::after(third).earlier(options.deadline))) return {};
    ::kill(c->initPid, SIGTERM);
  }
  if (c->waitExit(options.deadline)) return {};
  if (options.forceAtDeadline) return killAll(c, Deadline::after(Millis(10000)));
  {
    MutexLock lock(c->mu);
    c->stopRequested = false;
  }
  return timeoutError("the container did not stop in time");
}

Status LxcDriver::suspend(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto c, running(def));
  return c->cgroups.freeze(true, deadline);
}

Status LxcDriver::resume(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto c, running(def));
  return c->cgroups.freeze(false, deadline);
}

Result<json> LxcDriver::stats(const model::Domain& def, Deadline) {
  VMM_ASSIGN(auto c, running(def));
  json s = c->cgroups.stats();
  s["state"] = c->cgroups.frozen() ? "paused" : "running";
  return s;
}

// ---------------------------------------------------------------- exec, console

std::string LxcDriver::nsexecHelper() {
  char exe[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string exeDir = n > 0 ? fs::dirName(std::string(exe, static_cast<size_t>(n))) : ".";
  for (const auto& p : {exeDir + "/vmm-nsexec", exeDir + "/../drivers/vmm-nsexec", std::string("/usr/lib/vmm/vmm-nsexec")})
    if (::access(p.c_str(), X_OK) == 0) return p;
  return "";
}

Result<ExecResult> LxcDriver::guestExec(const model::Domain& def, const ExecRequest& req, Deadline deadline) {
  VMM_ASSIGN(auto c, running(def));
  if (req.argv.empty()) return invalidArgument("exec: a command is required");
  if (c->cgroups.frozen()) return conflict("domain " + def.name + " is paused");
  std::string helper = nsexecHelper();
  if (helper.empty()) return unavailable("exec: the vmm-nsexec helper is not installed (next to vmmd or in /usr/lib/vmm)");
  // The shell joins the container's cgroups (so limits apply to the command) and vmm-nsexec
  // joins its namespaces with init's capability bounding set and seccomp filter; the command
  // runs as a child of vmm-nsexec inside the pid namespace.
  // Each exec gets sub-groups (v1) so that at its deadline the command (which vmm-nsexec forked,
  // out of runCommand's reach) is killed with them; what a finished exec started in the
  // background stays, moved to the container's groups.
  auto own = c->cgroups.makeChild("exec-" + newUuid().substr(0, 8));
  const auto& groups = own ? own->paths() : c->cgroups.paths();
  std::string joins;
  for (const auto& p : groups) joins += "echo $$ > " + quote(p + "/cgroup.procs") + " || exit 125; ";
  std::vector<std::string> argv = {"/bin/sh", "-c", joins + "exec \"$@\"", "sh", helper};
  if (c->userns) argv.push_back("--userns");
  argv.push_back(std::to_string(c->initPid));
  argv.push_back("--");
  argv.insert(argv.end(), req.argv.begin(), req.argv.end());
  RunOptions opts;
  opts.deadline = deadline;
  opts.stdinData = req.input;
  opts.clearEnv = true;
  opts.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  if (def.container)
    for (const auto& [k, v] : def.container->env) opts.env[k] = v;
  for (const auto& e : req.env) {
    auto eq = e.find('=');
    if (eq != std::string::npos) opts.env[e.substr(0, eq)] = e.substr(eq + 1);
  }
  auto ran = runCommand(argv, opts);
  if (own && !ran.ok()) (void)own->remove(Deadline::after(Millis(5000)));
  else if (own) own->mergeInto(c->cgroups);
  VMM_ASSIGN(auto r, std::move(ran));
  ExecResult out;
  out.exitCode = r.exitCode;
  out.signal = r.signal;
  if (req.captureOutput) {
    out.out = std::move(r.out);
    out.err = std::move(r.err);
  }
  if (out.exitCode == 125 && out.err.find("cgroup.procs") != std::string::npos)
    return internalError("exec: cannot join the container's cgroups: " + out.err);
  return out;
}

Result<fs::UniqueFd> LxcDriver::openConsole(const model::Domain& def) {
  VMM_ASSIGN(auto c, running(def));
  if (!c->console) return unavailable("the container's console is not connected");
  return c->console->attach();
}

Result<std::string> LxcDriver::consoleLog(const model::Domain& def, size_t maxBytes) {
  return qemu::ConsoleMux::readLog(consoleLogPath(def.name), maxBytes);
}

}  // namespace vmm::drivers::lxc
