#include "app/daemon.h"

#include "api/volume_transfer.h"
#include "network/port/port_profile.h"
#include "storage/backend_factory.h"
#include "storage/qemu_img.h"

#include <grp.h>
#include <malloc.h>
#include <cstdio>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/process.h"
#include "base/strings.h"
#include "drivers/driver_context.h"
#include "drivers/qemu/qemu_driver.h"
#include "drivers/registry.h"

namespace vmm {

using json = nlohmann::json;

namespace {

const std::vector<std::string> kApiExtensions = {"domains", "operations", "events-sse", "events-rpc", "tokens",
                                                 "etag", "hotplug", "guest-exec", "domain-stats"};

sigset_t daemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE}) sigaddset(&set, s);
  return set;
}

uint64_t residentBytes() {
  auto statm = fs::readFile("/proc/self/statm", 4096);
  if (!statm.ok()) return 0;
  auto parts = split(*statm, ' ');
  if (parts.size() < 2) return 0;
  return parseUint(parts[1]).value_or(0) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

void blockDaemonSignals() {
  sigset_t set = daemonSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Daemon::Daemon(Config config)
    : config_(std::move(config)),
      pool_(2, 256, Millis(30000)),
      operationPool_(1, 256, Millis(30000)),
      waitPool_(0, api::DispatchLimits{}.readWaits + api::DispatchLimits{}.writeWaits, Millis(30000)),
      dispatcher_(std::make_unique<api::Dispatcher>(pool_, waitPool_)) {}

Daemon::~Daemon() {
  requestStop();
  shutdownAll();
}

namespace {

std::string octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Sets `mode` on path if it exists and differs (a symlink is left alone), logging the change.
void repairMode(const std::string& path, mode_t mode) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0 || S_ISLNK(st.st_mode) || (st.st_mode & 07777) == mode) return;
  if (::chmod(path.c_str(), mode) == 0)
    log::info("corrected the mode of a state file", {{"path", path}, {"was", octal(st.st_mode)}, {"now", octal(mode)}});
  else
    log::warn("cannot correct the mode of a state file", {{"path", path}, {"errno", errno}});
}

// What older vmmds (umask 022) left readable by every local user: the database holds CHAP and
// display passwords, saved states hold guest memory. Repaired at every start.
void repairStateModes(const std::string& stateDir, const std::string& dbPath) {
  repairMode(stateDir, 0711);  // pools below it must stay reachable by path
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    struct stat st{};
    std::string p = dbPath + suffix;
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) repairMode(p, st.st_mode & 07700);  // go-rwx
  }
  repairMode(stateDir + "/vmmd.lock", 0600);
  for (const char* dir : {"operations", "save", "tmp", "qemu", "lxc"}) repairMode(stateDir + "/" + dir, 0700);
  repairMode(stateDir + "/pools", 0711);
}

}  // namespace

Status Daemon::prepareDirectories() {
  VMM_TRY(fs::makeDirs(config_.stateDir, 0711));
  VMM_TRY(fs::makeDirs(config_.stateDir + "/pools", 0711));  // before a pool's 0700 directory is built in it
  VMM_TRY(fs::makeDirs(config_.runDir, 0755));
  // Not chmodded when it exists: it may be a shared directory such as /run or /tmp.
  VMM_TRY(fs::makeDirs(fs::dirName(config_.socketPath)));
  return {};
}

Status Daemon::lockStateDir() {
  std::string path = config_.stateDir + "/vmmd.lock";
  lockFd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lockFd_.valid()) return systemError("cannot open " + path, errno);
  if (::flock(lockFd_.get(), LOCK_EX | LOCK_NB) != 0)
    return conflict("another vmmd is already using " + config_.stateDir + " (" + path + " is locked)");
  std::string pid = std::to_string(getpid()) + "\n";
  if (::ftruncate(lockFd_.get(), 0) == 0) (void)!::write(lockFd_.get(), pid.data(), pid.size());
  return {};
}

namespace {

drivers::qemu::QemuOptions qemuOptions(const Config& config) {
  drivers::qemu::QemuOptions o;
  o.unprivileged = config.qemuUnprivileged;
  auto range = qemuUidRange(config);  // checked when the configuration was loaded
  if (range.ok()) {
    o.uidStart = static_cast<uint32_t>(range->first);
    o.uidCount = static_cast<uint32_t>(range->second) - 1;  // the last id is the image tools' (imageToolUid)
  }
  return o;
}

// qemu-img and vmm-customize run as the last id of [qemu] uid_range, which no QEMU gets.
uint32_t imageToolUid(const Config& config) {
  auto range = qemuUidRange(config);
  return range.ok() ? static_cast<uint32_t>(range->first + range->second - 1) : 0;
}

}  // namespace

void Daemon::createDrivers() {
  if (config_.qemuUnprivileged) {
    std::string mountPoint = config_.runDir + "/qemu-img-root";
    if (Status made = fs::makeDirs(mountPoint, 0700); made.ok())
      storage::setQemuImgSandbox({imageToolUid(config_), mountPoint});
    else
      log::warn("qemu-img runs unconfined", {{"error", made.error().message}});
  }
  hostServices_ = std::make_unique<DaemonHostServices>(*pools_, *networks_, config_.stateDir);
  drivers::DriverContext ctx;
  ctx.loop = &loop_;
  ctx.pool = &pool_;
  ctx.runDir = config_.runDir;
  ctx.stateDir = config_.stateDir;
  ctx.containerPidsMax = config_.containerPidsMax;
  drivers::DriverSettings settings;
  settings.qemu = qemuOptions(config_);
  for (const auto& name : config_.drivers) {
    const auto* entry = drivers::findDriver(name);  // the configuration named only known ones
    if (!entry || !entry->builtIn) {
      log::info("driver not built into this vmmd", {{"driver", name}});
      continue;
    }
    auto drv = entry->make(ctx, settings);
    if (!entry->simulated) drv->setHostServices(hostServices_.get());
    domains_->addDriver(std::move(drv));
  }
}

Status Daemon::start() {
  // Before anything is created: files and directories of vmmd and of the children that inherit
  // the umask (QEMU, qemu-img, tar) are private unless a mode is set explicitly.
  ::umask(077);
  startedUs_ = wallNowMicros();
  auto t0 = SteadyClock::now();
  if (!log::setLevel(config_.logLevel)) return invalidArgument("unknown log level " + quote(config_.logLevel));
  log::setFormat(config_.logFormat == "json" ? log::Format::json : log::Format::logfmt);
  if (!config_.logFile.empty() && !log::setFile(config_.logFile)) return systemError("cannot open log file " + config_.logFile, errno);

  // Children that double-fork (dnsmasq, helpers) are reparented to us and reaped here, not by
  // a slow init; and guest processes outlive vmmd because they run in their own sessions.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) log::warn("cannot become a child subreaper", {{"errno", errno}});
  ChildReaper::enable();

  VMM_TRY(prepareDirectories());
  VMM_TRY(lockStateDir());
  repairStateModes(config_.stateDir, config_.dbPath());
  gid_t group = static_cast<gid_t>(-1);
  if (!config_.socketGroup.empty()) {
    struct group* g = getgrnam(config_.socketGroup.c_str());
    if (!g) return invalidArgument("socket group " + quote(config_.socketGroup) + " does not exist");
    group = g->gr_gid;
  }
  gid_t operatorGroup = static_cast<gid_t>(-1);
  if (!config_.operatorGroup.empty()) {
    struct group* g = getgrnam(config_.operatorGroup.c_str());
    if (!g) return invalidArgument("operator group " + quote(config_.operatorGroup) + " does not exist");
    operatorGroup = g->gr_gid;
  }
  gid_t roGroup = 0;
  if (!config_.roSocketGroup.empty() && config_.roSocketGroup != "*") {
    struct group* g = getgrnam(config_.roSocketGroup.c_str());
    if (!g) return invalidArgument("read-only socket group " + quote(config_.roSocketGroup) + " does not exist");
    roGroup = g->gr_gid;
  }

  StoreOptions so;
  so.fullSync = config_.syncFull;
  auto store = StateStore::open(config_.dbPath(), so);
  if (!store.ok()) return store.error();
  store_ = std::move(*store);

  // The loop carries signals (signalfd) from the start, so SIGCHLD is reaped during load.
  sigset_t set = daemonSignals();
  signalFd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signalFd_.valid()) return systemError("signalfd", errno);
  loop_.runInThread();
  loop_.startWatchdog();
  loop_.runSync([this] { loop_.watch(signalFd_.get(), EPOLLIN, [this](uint32_t) { onSignal(); }); });

  events_ = std::make_unique<EventBus>(config_.eventQueue);
  OperationOptions oo;
  oo.keepFinished = config_.operationsKeep;
  oo.maxAge = config_.operationsMaxAge;
  oo.resultDir = config_.stateDir + "/operations";
  operations_ = std::make_unique<OperationManager>(*store_, *events_, operationPool_, oo);
  VMM_TRY(operations_->load());
  DomainServiceOptions dso;
  dso.jobWait = config_.jobWait;
  dso.defaultShutdownTimeout = config_.shutdownTimeout;
  dso.saveDir = config_.stateDir + "/save";
  VMM_ASSIGN(auto idmapRange, containerIdmapRange(config_));
  dso.idmapStart = idmapRange.first;
  dso.idmapCount = idmapRange.second;
  domains_ = std::make_unique<DomainService>(*store_, *events_, pool_, dso);
  tokens_ = std::make_unique<TokenStore>(*store_);
  VMM_TRY(tokens_->load());
  PoolServiceOptions pso;
  storage::TarLimits unpack{config_.unpackMaxBytes, config_.unpackMaxFiles};
  pso.factory = [unpack](const model::Pool& pool) { return storage::makeBackend(pool, unpack); };
  pso.jobWait = config_.jobWait;
  pso.ioTimeout = config_.storageIoTimeout;
  if (config_.defaultPool) pso.defaultPoolPath = config_.stateDir + "/pools/default";
  pools_ = std::make_unique<PoolService>(*store_, *events_, pso);
  pools_->setVolumeUsers([this](const std::string& pool) { return domains_->volumeUsers(pool); });
  VMM_TRY(pools_->load());
  NetworkServiceOptions nso;
  nso.stateDir = config_.stateDir + "/networks";
  nso.jobWait = config_.jobWait;
  nso.createDefault = config_.defaultNetwork;
  networks_ = std::make_unique<NetworkService>(*store_, *events_, nso);
  networks_->setUsers([this](const std::string& network) { return domains_->networkUsers(network); });
  VMM_TRY(networks_->load());
  // Port state (nft tables, ifb devices) of NICs whose taps vanished while vmmd was down.
  if (auto st = net::cleanupOrphanPortState(Deadline::after(Millis(30000))); !st.ok())
    log::warn("cannot clean up orphaned port state", {{"error", st.error().message}});
  createDrivers();
  facts_ = probeHostFacts();
  VMM_TRY(domains_->load());
  ImageServiceOptions iso;
  iso.resolveDisk = [services = hostServices_.get()](const model::Disk& disk) { return services->resolveDisk(disk); };
  iso.pool = config_.imagePool;
  iso.poolPath = config_.stateDir + "/pools/" + config_.imagePool;
  iso.tempDir = config_.stateDir + "/tmp/images";
  iso.caFile = config_.imageCaFile;
  iso.allowHttp = config_.imageAllowHttp;
  images_ = std::make_unique<ImageService>(*store_, *events_, *pools_, *domains_, iso);
  VMM_TRY(images_->load());
  InstanceServiceOptions inso;
  inso.budget = hostCapacity(facts_.memoryBytes, facts_.cpus, 1ULL << 30, 8.0);
  if (config_.capacityMemory) inso.budget.memory = config_.capacityMemory;
  if (config_.capacityVcpus) inso.budget.vcpus = config_.capacityVcpus;
  inso.tempDir = iso.tempDir;
  setUpGuestfs(inso);
  instances_ = std::make_unique<InstanceService>(*store_, *domains_, *pools_, *images_, inso);
  projects_ = std::make_unique<ProjectService>(*store_, *events_, *domains_, *pools_);
  VMM_TRY(projects_->load());
  instances_->setProjects(projects_.get());
  VMM_TRY(instances_->load());

  audit_ = std::make_unique<api::AuditTrail>();
  audit_->setSink([events = events_.get()](const api::AuditRecord& r) {
    events->publish("audit", r.object, api::formatAuditRecord(r), r.project);
  });
  services_ = std::make_unique<api::Services>(api::Services{*domains_, *pools_, *networks_, *operations_, *events_, *tokens_, [this] { return hostInfo(); }, *images_, *instances_, *audit_, *projects_});
  registry_ = std::make_unique<api::Registry>(*operations_);
  registry_->setAudit(audit_.get());
  registry_->setProjects([projects = projects_.get()](const std::string& name) -> std::optional<model::Project> {
    auto p = projects->get(name);
    if (!p.ok()) return std::nullopt;
    return std::move(*p);
  });
  api::bindHandlers(*registry_, *services_);
  // A row of the operation table without its handler is a build mistake: refuse to serve.
  if (auto missing = registry_->unbound(); !missing.empty())
    return internalError("operations without a handler: " + join(missing, ", "));

  api::RpcOptions ro;
  ro.socketPath = config_.socketPath;
  ro.roSocketPath = config_.roSocketPath;
  ro.group = group;
  ro.roGroup = roGroup;
  ro.operatorGroup = operatorGroup;
  ro.operatorProject = config_.operatorProject;
  ro.roEveryone = config_.roSocketGroup == "*";
  ro.maxRequestBytes = config_.maxRequestBytes;
  ro.dispatcher = dispatcher_.get();
  ro.openStream = [this](const api::CallContext& caller, const std::string& method, const nlohmann::json& params) {
    return openStream(caller, method, params);
  };
  rpc_ = std::make_unique<api::RpcServer>(loop_, pool_, *registry_, *events_, ro);
  VMM_TRY(rpc_->start());
  if (!config_.httpListen.empty()) {
    api::HttpOptions ho;
    ho.listen = config_.httpListen;
    ho.tlsCert = config_.tlsCert;
    ho.tlsKey = config_.tlsKey;
    ho.allowedHosts = config_.httpAllowedHosts;
    ho.allowPlaintext = config_.httpAllowPlaintext;
    ho.threads = config_.httpThreads;
    ho.headerTimeout = config_.httpHeaderTimeout;
    ho.idleTimeout = config_.httpIdleTimeout;
    ho.maxBodyBytes = config_.maxRequestBytes;
    ho.openConsole = [this](const api::CallContext& caller, const std::string& name) { return openConsole(caller, name); };
    ho.pools = pools_.get();
    ho.pool = &pool_;
    ho.dispatcher = dispatcher_.get();
    http_ = std::make_unique<api::HttpServer>(*registry_, *events_, *tokens_, [this] { return metricsText(); }, ho);
    VMM_TRY(http_->start());
  }
  domains_->autostart();
  scheduleMaintenance();
  auto ms = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  log::info("vmmd ready", {{"socket", config_.socketPath},
                           {"http", http_ ? http_->url() : std::string("off")},
                           {"state_dir", config_.stateDir},
                           {"domains", static_cast<uint64_t>(domains_->count())},
                           {"startup_ms", static_cast<int64_t>(ms)}});
  return {};
}

// Offline customisation needs the vmm-customize helper and a prepared libguestfs appliance:
// configured, or found next to vmmd (build tree or package layout).
void Daemon::setUpGuestfs(InstanceServiceOptions& o) const {
  char exe[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string exeDir = n > 0 ? fs::dirName(std::string(exe, static_cast<size_t>(n))) : ".";
  auto first = [](const std::vector<std::string>& paths) {
    for (const auto& p : paths)
      if (!p.empty() && fs::exists(p)) return p;
    return std::string();
  };
  std::string helper = config_.customizeHelper.empty()
                           ? first({exeDir + "/vmm-customize", exeDir + "/../storage/customize/vmm-customize", "/usr/lib/vmm/vmm-customize"})
                           : config_.customizeHelper;
  std::string env = config_.guestfsEnv.empty()
                        ? first({exeDir + "/../guestfs/guestfs.env", config_.stateDir + "/guestfs/guestfs.env"})
                        : config_.guestfsEnv;
  if (helper.empty() || !fs::exists(helper)) {
    o.guestfsUnavailable = "this vmmd has no vmm-customize helper (built with VMM_GUESTFS=ON; or set [images] customize_helper)";
    return;
  }
  if (env.empty() || !fs::exists(env)) {
    o.guestfsUnavailable = "the libguestfs appliance is not set up: run scripts/setup-guestfs.sh (or set [images] guestfs_env)";
    return;
  }
  auto rt = customize::GuestfsRuntime::fromEnvFile(env, helper);
  if (!rt.ok()) {
    o.guestfsUnavailable = rt.error().message;
    return;
  }
  // The helper and its appliance read the guest's disk: unprivileged like qemu-img, as its uid.
  if (config_.qemuUnprivileged) {
    std::string mountPoint = config_.runDir + "/customize-root";
    if (Status made = fs::makeDirs(mountPoint, 0700); !made.ok()) {
      o.guestfsUnavailable = made.error().message;
      return;
    }
    rt->sandbox = customize::GuestfsSandbox{imageToolUid(config_), mountPoint};
  }
  o.guestfs = *rt;
}

Result<fs::UniqueFd> Daemon::openConsole(const api::CallContext& caller, const std::string& name) {
  // The keyboard of a privileged container (or one with a writable host mount) is root's on
  // the host: an admin's, whatever role may manage the domain otherwise.
  Status allowed;
  if (!caller.mayTouchHost()) {
    auto v = domains_->get(name);
    if (v.ok() && model::grantsHostRoot(*v->def))
      allowed = permissionDenied("the console of " + name + " needs the admin role: it is a privileged container or has a writable host mount");
  }
  registry_->record(caller, "domain.console", "domains/" + name, allowed);
  VMM_TRY(allowed);
  return domains_->openConsole(name);
}

Result<api::StreamStart> Daemon::openStream(const api::CallContext& call, const std::string& method, const nlohmann::json& given) {
  // The stream acts in a project like a call does; its name becomes vmmd's name there.
  api::CallContext caller = call;
  nlohmann::json params = given;
  std::string project;
  if (params.is_object() && params.contains("project")) {
    if (!params["project"].is_string()) return invalidArgument("project: expected a string");
    project = params["project"].get<std::string>();
    params.erase("project");
  }
  if (params.is_object() && params.contains("name") && params["name"].is_string()) {
    VMM_ASSIGN(auto name, registry_->enterStream(caller, project, params["name"].get<std::string>(),
                                                 method == "domain.console" ? "domain" : "volume"));
    params["name"] = name;
  } else {
    nlohmann::json scope = project.empty() ? nlohmann::json::object() : nlohmann::json{{"project", project}};
    VMM_TRY(registry_->enterProject(caller, scope));
  }
  if (method != "domain.console") {
    auto start = api::startVolumeTransfer(*pools_, pool_, method, params);
    registry_->record(caller, method, "pools/" + jsonStringOr(params, "pool", "") + "/volumes/" + jsonStringOr(params, "name", ""),
                      start.ok() ? Status() : Status(start.error()));
    if (start.ok()) model::unqualifyJson(start->result, caller.project);
    return start;
  }
  if (!params.is_object() || !params.contains("name") || !params["name"].is_string())
    return invalidArgument("name: required string");
  for (auto it = params.begin(); it != params.end(); ++it)
    if (it.key() != "name") return invalidArgument(it.key() + ": unknown parameter of domain.console");
  std::string name = params["name"].get<std::string>();
  VMM_ASSIGN(auto fd, openConsole(caller, name));
  api::StreamStart start;
  start.result = {{"stream", "console"}, {"domain", model::unqualifyName(name)}};
  start.fd = std::move(fd);
  return start;
}

void Daemon::scheduleMaintenance() {
  // Every second: checkpoint the WAL off the request path. Every ten minutes: prune the
  // operation history and give freed memory back to the system.
  loop_.addTimer(Millis(1000), [this] {
    if (stopping_) return;
    pool_.submit([this] {
      (void)store_->checkpoint();
      instances_->tick();
      // Logs that guests can make grow (qemu.log, dnsmasq's) are cut back every 2 s.
      if (maintenanceTicks_ % 2 == 0) {
        for (auto* d : domains_->drivers()) d->maintain();
        networks_->maintain();
      }
      if (++maintenanceTicks_ % 600 == 0) {
        operations_->prune();
        malloc_trim(0);
      }
    });
    scheduleMaintenance();
  });
}

void Daemon::onSignal() {
  signalfd_siginfo si;
  while (::read(signalFd_.get(), &si, sizeof si) == sizeof si) {
    switch (si.ssi_signo) {
      case SIGCHLD: ChildReaper::reapAll(); break;
      case SIGHUP:
        if (!config_.logFile.empty()) log::setFile(config_.logFile);
        log::info("SIGHUP: log file reopened");
        break;
      case SIGTERM:
      case SIGINT:
        log::info("stopping", {{"signal", static_cast<int>(si.ssi_signo)}});
        requestStop();
        break;
      default: break;
    }
  }
}

void Daemon::requestStop() {
  {
    std::lock_guard lock(stopMu_);
    stopping_ = true;
  }
  stopCv_.notify_all();
}

void Daemon::run() {
  {
    std::unique_lock lock(stopMu_);
    stopCv_.wait(lock, [&] { return stopping_.load(); });
  }
  shutdownAll();
  log::info("vmmd stopped");
}

void Daemon::shutdownAll() {
  // Stop accepting requests, let running operations finish for a while, close subscriptions.
  // Guests keep running: the next vmmd reconnects to them. Waiting calls return first, so
  // that the transports need not wait for them.
  if (operations_) operations_->releaseWaiters();
  if (http_) http_->stop();
  if (rpc_) rpc_->stop();
  if (events_) events_->closeAll();
  if (operations_ && !operations_->drain(Deadline::after(Millis(10000))))
    log::warn("operations still running at exit; they will show as interrupted",
              {{"count", static_cast<uint64_t>(operations_->activeCount())}});
  loop_.stop();
  loop_.join();
}

json Daemon::hostInfo() {
  json drivers = json::object();
  for (auto* d : domains_->drivers()) {
    auto info = d->probe();
    drivers[d->typeName()] = {{"available", info.available}, {"reason", info.reason}, {"version", info.version}, {"details", info.details}};
  }
  for (const auto& entry : drivers::driverRegistry()) {
    std::string name(entry.name());
    if (!drivers.contains(name)) drivers[name] = {{"available", false}, {"reason", "not enabled in this vmmd"}, {"version", ""}, {"details", json::object()}};
  }
  return {{"vmm",
           {{"version", VMM_VERSION},
            {"api_version", "1"},
            {"api_extensions", kApiExtensions},
            {"pid", getpid()},
            {"started", formatTimestamp(startedUs_)},
            {"uptime_seconds", (wallNowMicros() - startedUs_) / 1000000},
            {"state_dir", config_.stateDir},
            {"state_schema", store_->schemaVersion()}}},
          {"host", formatHostFacts(facts_)},
          {"drivers", drivers},
          {"domains", domains_->stateCounts()},
          {"capacity", instances_->capacityInfo()}};
}

std::string Daemon::metricsText() {
  std::string out = registry_->metricsText();
  out += "# HELP vmm_domains Domains by state.\n# TYPE vmm_domains gauge\n";
  for (const auto& [state, n] : domains_->stateCounts())
    out += "vmm_domains{state=\"" + state + "\"} " + std::to_string(n) + "\n";
  out += "# HELP vmm_operations_active Operations pending or running.\n# TYPE vmm_operations_active gauge\n";
  out += "vmm_operations_active " + std::to_string(operations_->activeCount()) + "\n";
  out += "# HELP vmm_events_total Events published.\n# TYPE vmm_events_total counter\n";
  out += "vmm_events_total " + std::to_string(events_->lastSeq()) + "\n";
  out += "# HELP vmm_event_subscribers Current event subscribers.\n# TYPE vmm_event_subscribers gauge\n";
  out += "vmm_event_subscribers " + std::to_string(events_->subscriberCount()) + "\n";
  out += "# HELP vmm_event_overflows_total Subscribers disconnected for falling behind.\n# TYPE vmm_event_overflows_total counter\n";
  out += "vmm_event_overflows_total " + std::to_string(events_->overflowCount()) + "\n";
  out += "# HELP vmm_rpc_connections Open JSON-RPC connections.\n# TYPE vmm_rpc_connections gauge\n";
  out += "vmm_rpc_connections " + std::to_string(rpc_ ? rpc_->connectionCount() : 0) + "\n";
  out += "# HELP vmm_http_connections Open HTTP connections.\n# TYPE vmm_http_connections gauge\n";
  out += "vmm_http_connections " + std::to_string(http_ ? http_->connectionCount() : 0) + "\n";
  out += "# HELP vmm_http_connections_refused_total HTTP connections refused at a limit.\n# TYPE vmm_http_connections_refused_total counter\n";
  out += "vmm_http_connections_refused_total " + std::to_string(http_ ? http_->refusedConnections() : 0) + "\n";
  out += "# HELP vmm_http_received_bytes_total Bytes read from HTTP clients (request heads and bodies).\n# TYPE vmm_http_received_bytes_total counter\n";
  out += "vmm_http_received_bytes_total " + std::to_string(http_ ? http_->receivedBytes() : 0) + "\n";
  out += "# HELP vmm_rpc_connections_refused_total RPC connections refused at a limit.\n# TYPE vmm_rpc_connections_refused_total counter\n";
  out += "vmm_rpc_connections_refused_total " + std::to_string(rpc_ ? rpc_->refusedConnections() : 0) + "\n";
  out += "# HELP vmm_rpc_connections_throttled_total Times an RPC connection was paused for sending only bad lines.\n# TYPE vmm_rpc_connections_throttled_total counter\n";
  out += "vmm_rpc_connections_throttled_total " + std::to_string(rpc_ ? rpc_->throttledConnections() : 0) + "\n";
  out += "# HELP vmm_worker_threads Worker threads by pool.\n# TYPE vmm_worker_threads gauge\n";
  out += "vmm_worker_threads{pool=\"calls\"} " + std::to_string(pool_.threadCount()) + "\n";
  out += "vmm_worker_threads{pool=\"operations\"} " + std::to_string(operationPool_.threadCount()) + "\n";
  out += "vmm_worker_threads{pool=\"waits\"} " + std::to_string(waitPool_.threadCount()) + "\n";
  out += "# HELP vmm_waiting_calls Calls waiting on the wait pool (operation.wait).\n# TYPE vmm_waiting_calls gauge\n";
  out += "vmm_waiting_calls " + std::to_string(dispatcher_->waitsRunning()) + "\n";
  out += "# HELP vmm_operation_result_bytes Bytes of operation results kept in memory.\n# TYPE vmm_operation_result_bytes gauge\n";
  out += "vmm_operation_result_bytes " + std::to_string(operations_->resultBytes()) + "\n";
  out += "# HELP vmm_event_loop_slow_callbacks_total Event-loop callbacks that ran 100 ms or longer.\n# TYPE vmm_event_loop_slow_callbacks_total counter\n";
  out += "vmm_event_loop_slow_callbacks_total " + std::to_string(loop_.slowCallbacks()) + "\n";
  out += "# HELP vmm_event_loop_longest_callback_seconds The longest event-loop callback so far.\n# TYPE vmm_event_loop_longest_callback_seconds gauge\n";
  out += "vmm_event_loop_longest_callback_seconds " + std::to_string(static_cast<double>(loop_.longestCallbackMicros()) / 1e6) + "\n";
  out += "# HELP vmm_thread_contract_violations_total Event-loop state used from another thread (logged).\n# TYPE vmm_thread_contract_violations_total counter\n";
  out += "vmm_thread_contract_violations_total " + std::to_string(EventLoop::contractViolations()) + "\n";
  out += "# HELP process_resident_memory_bytes Resident memory of vmmd.\n# TYPE process_resident_memory_bytes gauge\n";
  out += "process_resident_memory_bytes " + std::to_string(residentBytes()) + "\n";
  out += "# HELP vmm_uptime_seconds Seconds since vmmd started.\n# TYPE vmm_uptime_seconds gauge\n";
  out += "vmm_uptime_seconds " + std::to_string((wallNowMicros() - startedUs_) / 1000000) + "\n";
  return out;
}

}  // namespace vmm
