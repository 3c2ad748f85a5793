// QEMU driver: probing, validation and the lifecycle (start, reconnect, stop, pause).
#include "drivers/qemu/qemu_driver.h"

#include <sys/stat.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tuple>

#include "base/json_util.h"
#include "base/log.h"
#include "base/log_cap.h"
#include "base/process.h"
#include "base/random.h"
#include "base/reverter.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "drivers/qemu/qemu_instance.h"
#include "drivers/qemu/qemu_record.h"

namespace vmm::drivers::qemu {

namespace {

RunOptions quickRun() {
  RunOptions o;
  o.deadline = Deadline::after(Millis(10000));
  return o;
}

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// The last lines QEMU wrote to its log: the reason it refused to start.
std::string qemuFailure(const std::string& logPath) {
  auto text = fs::readFile(logPath, 1 << 20).valueOr("");
  std::vector<std::string> lines;
  for (auto& l : split(text, '\n', true)) {
    std::string t(trim(l));
    // "2026-11-22T15:40:00.123456Z qemu-system-x86_64: -device ...: msg" -> "-device ...: msg"
    auto pos = t.find("qemu-system-x86_64: ");
    if (pos != std::string::npos) t = t.substr(pos + 20);
    if (!t.empty()) lines.push_back(t);
  }
  if (lines.empty()) return "QEMU exited without saying why";
  size_t from = lines.size() > 3 ? lines.size() - 3 : 0;
  return join(std::vector<std::string>(lines.begin() + static_cast<long>(from), lines.end()), "; ");
}

}  // namespace

QemuDriver::QemuDriver(DriverContext ctx, QemuOptions options) : ctx_(std::move(ctx)), options_(std::move(options)) {}

QemuDriver::~QemuDriver() {
  std::map<std::string, std::shared_ptr<Instance>> all;
  {
    MutexLock lock(mu_);
    all.swap(instances_);
  }
  // vmmd stops, guests keep running: only let go of the connections.
  for (auto& [name, inst] : all) {
    if (inst->pidfd.valid()) ctx_.loop->runSync([this, fd = inst->pidfd.get()] { ctx_.loop->unwatch(fd); });
    if (inst->console) inst->console->stop();
    if (inst->agent) inst->agent->disconnect();
    if (inst->qmp) inst->qmp->close();
  }
}

std::string QemuDriver::runDir(const std::string& name) const { return ctx_.runDir + "/qemu/" + name; }
std::string QemuDriver::stateDir(const std::string& name) const { return ctx_.stateDir + "/qemu/" + name; }

// Opening /dev/kvm is not enough: nested or restricted hosts expose KVM but refuse what QEMU
// needs for a vCPU (seen: "failed to set MSR 0x10a" and an abort). Creating a paused machine
// with the CPU model vmm uses under KVM shows that in ~0.1 s without booting anything.
std::string QemuDriver::kvmUnusableReason() const {
  // kvm-pvm (a paravirtual KVM for hosts that are themselves VMs) creates machines and vCPUs
  // without complaint, but an ordinary guest kernel never gets going on it (seen: no console
  // output at all, or "KVM internal error"): it runs kernels built for PVM only.
  if (fs::exists("/sys/module/kvm_pvm")) return "the host's KVM is kvm-pvm, which runs only guest kernels built for PVM";
  RunOptions opts = quickRun();
  opts.stdinData = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n";
  auto r = runCommand({options_.binary, "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-nodefaults", "-display",
                       "none", "-S", "-qmp", "stdio"},
                      opts);
  if (!r.ok()) return r.error().message;
  if (r->success()) return "";
  for (const auto& line : split(r->err, '\n', true))
    if (line.find("error") != std::string::npos) return std::string(trim(line));
  return r->describe();
}

void QemuDriver::maintain() {
  std::vector<std::string> logs;
  {
    MutexLock lock(mu_);
    for (const auto& [name, inst] : instances_) logs.push_back(inst->qemuLogPath());
  }
  for (const auto& path : logs)
    if (auto cut = capLogFile(path, options_.qemuLogLimit); !cut.ok())
      log::warn("cannot keep qemu.log under its size", {{"path", path}, {"error", cut.error().message}});
}

DriverInfo QemuDriver::probe() {
  {
    MutexLock lock(mu_);
    if (probed_) return *probed_;
  }
  // Runs QEMU without the driver's lock (no lock across I/O); concurrent first callers may
  // probe twice, the first result is kept.
  DriverInfo info;
  QemuCaps caps;
  auto version = runCommand({options_.binary, "--version"}, quickRun());
  if (!version.ok() || !version->success()) {
    info.available = false;
    info.reason = options_.binary + " is not installed (Debian package qemu-system-x86)";
  } else {
    auto listed = runCommand({options_.binary, "-machine", "help"}, quickRun());
    caps = parseQemuCaps(version->out, listed.ok() && listed->success() ? listed->out : "");
    info.version = "QEMU " + caps.version;
    int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    bool haveKvm = kvm >= 0;
    if (kvm >= 0) ::close(kvm);
    std::string kvmProblem;
    if (haveKvm) {
      kvmProblem = kvmUnusableReason();
      haveKvm = kvmProblem.empty();
    }
    info.available = true;
    info.details = {{"binary", options_.binary},
                    {"accelerator", haveKvm ? "kvm" : "tcg"},
                    {"kvm", haveKvm},
                    {"machines", std::vector<std::string>(caps.machines.begin(), caps.machines.end())}};
    if (!kvmProblem.empty()) {
      info.details["kvm_reason"] = "/dev/kvm exists but QEMU cannot use it (" + kvmProblem + "): guests run under TCG emulation";
      log::warn("KVM is not usable; guests run under TCG", {{"reason", kvmProblem}});
    } else if (!haveKvm) {
      info.details["kvm_reason"] = fs::exists("/dev/kvm") ? "/dev/kvm is not accessible" : "no /dev/kvm on this host: guests run under TCG emulation";
    }
  }
  MutexLock lock(mu_);
  if (!probed_) {
    probed_ = info;
    caps_ = std::move(caps);
  }
  return *probed_;
}

QemuCaps QemuDriver::qemuCaps() const {
  MutexLock lock(mu_);
  return caps_;
}

Status QemuDriver::validate(const model::Domain& def) const {
  if (def.container) return invalidArgument("container: only for domains of type lxc");
  // The command-line builder knows which machines this QEMU offers and which buses each has:
  // run it on placeholders.
  LaunchSpec spec;
  spec.def = &def;
  spec.caps = qemuCaps();
  spec.runDir = runDir(def.name);
  for (const auto& d : def.disks) {
    ResolvedDisk r;
    r.path = "/dev/null";
    r.format = d.format.value_or(model::defaultDiskFormat(d));
    spec.disks.push_back(r);
  }
  for (const auto& n : def.nics) spec.nics.push_back({n.type == model::NicType::user ? "user" : "tap", 9});
  auto cl = buildCommandLine(spec);
  if (!cl.ok()) return cl.error();
  return {};
}

std::shared_ptr<QemuDriver::Instance> QemuDriver::find(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = instances_.find(name);
  return it == instances_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<QemuDriver::Instance>> QemuDriver::running(const model::Domain& def) const {
  auto inst = find(def.name);
  if (!inst || inst->hasExited()) return conflict("domain " + def.name + " is not running");
  return inst;
}

json QemuDriver::recordOf(const Instance& inst) const {
  MutexLock lock(inst.mu);
  QemuRecord r;
  r.pid = inst.pid;
  r.uid = inst.uid;
  r.gid = inst.gid;
  r.startTime = inst.startTime;
  r.runId = inst.runId;
  r.accel = inst.accel;
  r.machine = inst.layout.machine;
  r.rootPorts = inst.layout.rootPorts;
  r.ports = inst.layout.portOf;
  for (const auto& t : inst.taps) r.taps.push_back({t.ifname, t.mac});
  return r.toJson();
}

RunningDomain QemuDriver::runningOf(const Instance& inst, model::DomainState state) const {
  RunningDomain r;
  r.runId = inst.runId;
  r.state = state;
  r.record = recordOf(inst);
  r.info = {{"pid", inst.pid}, {"uid", inst.uid}, {"accelerator", inst.accel}, {"machine", inst.layout.machine}};
  if (!inst.graphics.empty()) {
    r.info["graphics"] = inst.graphics;
    for (const auto& g : inst.graphics)
      if (g.value("type", "") == "vnc" && g.contains("port")) {
        r.info["vnc_port"] = g["port"];
        break;
      }
  }
  return r;
}

json QemuDriver::graphicsInfo(Instance& inst, const model::Domain& def, Deadline deadline) const {
  json out = json::array();
  std::optional<int64_t> vncPort;
  for (size_t i = 0; i < def.graphics.size(); ++i) {
    const auto& g = def.graphics[i];
    json gi = {{"type", model::enumName(model::kGraphicsTypes, g.type)}};
    if (!g.tcp()) {
      gi["listen"] = "unix";
      gi["socket"] = graphicsSocketPath(inst.guestDir(), def, i);
    } else {
      gi["listen"] = g.listen;
      if (g.type == model::GraphicsType::spice) {
        gi["port"] = g.port ? g.port : 5900;
      } else {
        if (!vncPort) {
          auto vnc = inst.qmp->execute("query-vnc", json::object(), deadline);
          if (vnc.ok() && jsonBoolOr(*vnc, "enabled", false)) vncPort = parseInt(jsonStringOr(*vnc, "service", ""));
        }
        if (vncPort) gi["port"] = *vncPort;
      }
    }
    out.push_back(gi);
  }
  return out;
}

Status QemuDriver::qemuImg(const std::vector<std::string>& args, const QemuImgAccess& access, Deadline deadline) const {
  if (!services_) return unavailable("qemu-img: this driver has no host services to run it");
  return services_->runQemuImg(args, access, deadline);
}

std::pair<std::string, std::string> QemuDriver::recordedBacking(const std::string& file) const {
  return services_ ? services_->recordedBacking(file) : std::pair<std::string, std::string>();
}

Result<ResolvedDisk> QemuDriver::resolveDisk(const model::Disk& disk) const {
  ResolvedDisk r;
  if (services_) {
    auto resolved = services_->resolveDisk(disk);
    if (!resolved.ok()) return resolved.error().wrap("disk " + disk.target);
    r = *resolved;
  } else {
    r.path = disk.source.path;
    r.format = disk.format.value_or(model::defaultDiskFormat(disk));
  }
  if (r.protocol.empty()) {
    struct stat st{};
    if (::stat(r.path.c_str(), &st) != 0) return invalidArgument("disk " + disk.target + ": " + r.path + " does not exist");
    r.blockDevice = S_ISBLK(st.st_mode);
  }
  if (r.size && r.format != model::DiskFormat::raw)
    return invalidArgument("disk " + disk.target + ": this volume is a window of a device and can only be used as raw");
  return r;
}

std::optional<json> QemuDriver::currentRecord(const model::Domain& def) {
  auto inst = find(def.name);
  if (!inst) return std::nullopt;
  return recordOf(*inst);
}

// ---------------------------------------------------------------- start

namespace {

// What an unprivileged QEMU sees of the host's files (base/private_root.h): its programs and
// libraries (firmware included, under /usr), the few /etc files name resolution and the
// dynamic linker read, the device nodes it opens itself, a read-only /sys, its own /proc, and
// its working directory as /guest. Images, sockets and taps arrive as descriptors.
PrivateRoot qemuRoot(const std::string& mountPoint, const std::string& guestDir) {
  PrivateRoot root;
  root.mountPoint = mountPoint;
  addSystemFiles(root);
  addHostPath(root, "/sys");
  for (const char* file : {"/etc/localtime", "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/gai.conf"})
    if (fs::exists(file)) root.binds.push_back({file, file, false});  // the file a symlink names, not the link
  for (const char* node : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/kvm"})
    if (fs::exists(node)) root.binds.push_back({node, node, true});
  root.binds.push_back({guestDir, "/guest", true});
  root.cwd = "/guest";
  return root;
}

}  // namespace

Result<uid_t> QemuDriver::reserveUid() {
  MutexLock lock(mu_);
  for (uint32_t i = 0; i < options_.uidCount; ++i) {
    uid_t uid = options_.uidStart + i;
    if (uidsInUse_.insert(uid).second) return uid;
  }
  return conflict("every uid of [qemu] uid_range is taken by a running QEMU");
}

void QemuDriver::releaseUid(uid_t uid) {
  MutexLock lock(mu_);
  uidsInUse_.erase(uid);
}

Result<RunningDomain> QemuDriver::start(const model::Domain& def, const StartOptions& options) {
  DriverInfo info = probe();
  if (!info.available) return unavailable(info.reason);
  VMM_TRY(validate(def));
  if (find(def.name)) return conflict("domain " + def.name + " is already running");
  for (const auto* file : {&def.boot.kernel, &def.boot.initrd})
    if (!file->empty() && !fs::exists(*file)) return invalidArgument("boot: " + *file + " does not exist");
  Deadline deadline = options.deadline.earlier(Deadline::after(options_.startTimeout));
  Reverter revert;

  auto inst = std::make_shared<Instance>();
  inst->name = def.name;
  inst->runId = newUuid();
  inst->runDir = runDir(def.name);
  inst->stateDir = stateDir(def.name);
  inst->accel = info.details.value("accelerator", "tcg");
  (void)fs::removeTree(inst->runDir);  // sockets of an earlier run
  VMM_TRY(fs::makeDirs(inst->runDir, 0700));
  revert.add([dir = inst->runDir] { (void)fs::removeTree(dir); });
  VMM_TRY(fs::makeDirs(inst->stateDir, 0700));
  if (options_.unprivileged) {
    VMM_ASSIGN(inst->uid, reserveUid());
    inst->gid = inst->uid;
    revert.add([this, uid = inst->uid] { releaseUid(uid); });
  }
  // QEMU's working directory and the only place it may create files; it is entered as root,
  // so QEMU needs no way through the private directories above it (relative names).
  VMM_TRY(fs::makeDirs(inst->guestDir(), 0700));
  if (::chown(inst->guestDir().c_str(), inst->uid, inst->gid) != 0) return systemError("chown " + inst->guestDir(), errno);
  auto giveQemu = [&](const std::string& name, const std::string& content) -> Status {
    std::string file = inst->guestDir() + "/" + name;
    VMM_TRY(fs::writeFileAtomic(file, content, 0400));
    if (::chown(file.c_str(), inst->uid, inst->gid) != 0) return systemError("chown " + file, errno);
    return {};
  };

  LaunchSpec spec;
  spec.def = &def;
  spec.binary = options_.binary;
  spec.accel = inst->accel;
  spec.caps = qemuCaps();
  spec.sparePorts = options_.sparePorts;
  spec.incoming = !options.restoreFrom.empty();
  spec.runDir = ".";  // QEMU's working directory, the guest directory
  for (const auto& disk : def.disks) {
    VMM_ASSIGN(ResolvedDisk r, resolveDisk(disk));
    if (!r.secret.empty()) {
      std::string id = "sec-" + disk.target;
      VMM_TRY(giveQemu(id, r.secret));
      spec.secretFiles[id] = id;
      r.blockdev["password-secret"] = id;
    }
    spec.disks.push_back(std::move(r));
  }

  // File descriptors QEMU inherits, in order from 3: monitor, agent, console, taps, then the
  // images and boot files.
  std::vector<fs::UniqueFd> keep;
  std::vector<int> passFds;
  auto pass = [&](fs::UniqueFd fd) {
    passFds.push_back(fd.get());
    keep.push_back(std::move(fd));
    return 2 + static_cast<int>(passFds.size());
  };
  auto listen = [&](const std::string& path) -> Result<int> {
    VMM_ASSIGN(auto fd, listenUnix(path, 0600));
    VMM_TRY(setNonBlocking(fd.get(), false));
    passFds.push_back(fd.get());
    keep.push_back(std::move(fd));
    return 2 + static_cast<int>(passFds.size());
  };
  VMM_ASSIGN(spec.qmpFd, listen(inst->qmpPath()));
  if (def.guestAgent) {
    VMM_ASSIGN(spec.agentFd, listen(inst->agentPath()));
  }
  if (!def.consoles.empty()) {
    VMM_ASSIGN(spec.consoleFd, listen(inst->consolePath()));
  }
  for (const auto& nic : def.nics) {
    NicBackend b;
    if (nic.type == model::NicType::user) {
      b.kind = "user";
    } else {
      if (!services_) return unavailable("NIC " + nic.mac + ": no network service to create its tap");
      auto port = services_->plugNic(def, nic, "tap");
      if (!port.ok()) return port.error().wrap("NIC " + nic.mac);
      revert.add([this, def, nic, ifname = port->ifname] { services_->unplugNic(def, nic, ifname); });
      keep.emplace_back(port->fd);
      passFds.push_back(port->fd);
      b.kind = "tap";
      b.fd = 2 + static_cast<int>(passFds.size());
      inst->taps.push_back({port->ifname, nic.mac});
    }
    spec.nics.push_back(b);
  }
  // Every local image layer as a descriptor in an fd set of its own (its path stays the set's
  // opaque, for query-fdsets and for reading QEMU's answers back).
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    auto giveLayer = [&](ResolvedDisk& layer, bool writable) -> Status {
      if (!layer.protocol.empty() || layer.path.empty()) return {};
      VMM_ASSIGN(auto fd, openLayerFor(layer, writable));
      int set = static_cast<int>(spec.fdSets.size()) + 1;
      spec.fdSets.push_back({pass(std::move(fd)), set, layer.path});
      std::string name = kFdsetPrefix + std::to_string(set);
      MutexLock lock(inst->mu);
      inst->fdsetFiles[name] = layer.path;
      layer.path = name;
      return {};
    };
    auto& top = spec.disks[i];
    if (auto st = giveLayer(top, !def.disks[i].readonly); !st.ok()) return st.error().wrap("disk " + def.disks[i].target);
    for (auto& layer : top.backing)
      if (auto st = giveLayer(layer, false); !st.ok()) return st.error().wrap("disk " + def.disks[i].target);
  }
  // The kernel and initrd: a world-readable file as the descriptor vmmd opened (QEMU reads it
  // through /proc/self/fd, whatever directories it is in), any other as a private copy.
  for (auto [file, name, out] : {std::tuple{&def.boot.kernel, "kernel", &spec.kernel}, std::tuple{&def.boot.initrd, "initrd", &spec.initrd}}) {
    if (file->empty()) continue;
    VMM_ASSIGN(auto fd, openImageFor(*file, false));
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return systemError("boot: cannot stat " + *file, errno);
    if ((st.st_mode & S_IROTH) || inst->uid == 0) {
      *out = "/proc/self/fd/" + std::to_string(pass(std::move(fd)));
    } else {
      VMM_TRY(copyForQemu(fd.get(), inst->guestDir() + "/" + name, inst->uid, inst->gid));
      *out = name;
    }
  }
  VMM_ASSIGN(auto cl, buildCommandLine(spec));
  inst->layout = cl.layout;
  for (const auto& [id, p] : cl.layout.portOf) inst->usedPorts.insert(p);

  // O_APPEND: maintain() cuts the file while QEMU keeps writing to it.
  fs::UniqueFd logFd(::open(inst->qemuLogPath().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640));
  if (!logFd.valid()) return systemError("cannot create " + inst->qemuLogPath(), errno);
  SpawnOptions so;
  so.passFds = passFds;
  so.stdoutFd = logFd.get();
  so.newSession = true;  // QEMU must outlive vmmd
  so.cwd = inst->guestDir();
  so.cwdBeforeConfinement = true;
  if (inst->uid != 0) {
    so.confinement.uid = inst->uid;
    so.confinement.gid = inst->gid;
    // /dev/kvm is the only device node QEMU opens itself; its group grants it.
    struct stat kvm{};
    if (::stat("/dev/kvm", &kvm) == 0 && (kvm.st_mode & S_IRGRP) && (kvm.st_mode & S_IWGRP)) so.confinement.groups = {kvm.st_gid};
    so.confinement.noNewPrivileges = true;
    // QEMU is its own pid namespace's init: its /proc shows no other process (their command
    // lines and environments), and it can signal none. It handles SIGTERM, so vmmd's stop works.
    so.confinement.newPidNamespace = true;
    VMM_TRY(fs::makeDirs(inst->runDir + "/root", 0700));
    so.confinement.root = qemuRoot(inst->runDir + "/root", inst->guestDir());
    so.cwd.clear();  // the root's: /guest
  }
  auto pid = spawnProcess(cl.argv, so);
  if (!pid.ok()) return pid.error().wrap("cannot run " + options_.binary);
  inst->pid = *pid;
  inst->child = true;
  inst->startTime = processStartTime(inst->pid).value_or(0);
  if (ChildReaper::enabled()) {
    std::weak_ptr<Instance> weak = inst;
    ChildReaper::onExit(inst->pid, [weak](int status) {
      if (auto i = weak.lock()) {
        MutexLock lock(i->mu);
        i->exitStatus = status;
      }
    });
  }
  revert.add([inst] {
    ::kill(inst->pid, SIGKILL);
    if (!ChildReaper::enabled()) ::waitpid(inst->pid, nullptr, 0);
  });
  keep.clear();  // QEMU holds its copies

  auto monitor = connectUnix(inst->qmpPath(), deadline);
  Status attached = monitor.ok() ? attach(inst, std::move(*monitor), deadline) : Status(monitor.error());
  if (!attached.ok()) {
    bool dead = false;
    for (int i = 0; i < 30 && !dead; ++i) {
      dead = !processRunning(inst->pid);
      if (!dead) usleep(10000);
    }
    if (dead) return Error{ErrorCode::invalid_argument, "QEMU refused to start: " + qemuFailure(inst->qemuLogPath())};
    return attached.error().wrap("QEMU started but its monitor did not answer");
  }
  revert.add([inst] {
    if (inst->console) inst->console->stop();
    if (inst->qmp) inst->qmp->close();
  });

  if (!options.restoreFrom.empty()) VMM_TRY(restoreFromFile(*inst, options.restoreFrom, deadline));
  for (const auto& g : def.graphics) {
    if (g.password.empty()) continue;
    auto r = inst->qmp->execute("set_password", {{"protocol", g.type == model::GraphicsType::vnc ? "vnc" : "spice"}, {"password", g.password}}, deadline);
    if (!r.ok()) return r.error();
  }
  if (!options.paused) {
    {
      MutexLock lock(inst->mu);
      inst->pauseChangesRequested++;
    }
    auto r = inst->qmp->execute("cont", json::object(), deadline);
    if (!r.ok()) return r.error().wrap("cannot start the guest's CPUs");
  }
  inst->graphics = graphicsInfo(*inst, def, deadline);
  RunningDomain result = runningOf(*inst, options.paused ? model::DomainState::paused : model::DomainState::running);
  {
    MutexLock lock(mu_);
    instances_[def.name] = inst;  // its uid stays reserved until release()
  }
  revert.success();
  log::info("QEMU started", {{"domain", def.name}, {"pid", static_cast<int64_t>(inst->pid)}, {"accel", inst->accel}});
  return result;
}

Status QemuDriver::attach(const std::shared_ptr<Instance>& inst, fs::UniqueFd monitor, Deadline deadline) {
  std::weak_ptr<Instance> weak = inst;
  auto qmp = QmpClient::connectFd(
      *ctx_.loop, std::move(monitor), deadline,
      [this, weak](const std::string& event, const json& data, int64_t) {
        if (auto i = weak.lock()) onMonitorEvent(i, event, data);
      },
      [](const std::string&) {});
  if (!qmp.ok()) return qmp.error();
  inst->qmp = *qmp;
  inst->pidfd.reset(pidfdOpen(inst->pid));
  if (!inst->pidfd.valid()) return systemError("pidfd_open", errno);
  int pfd = inst->pidfd.get();
  ctx_.loop->runSync([this, weak, pfd] {
    ctx_.loop->watch(pfd, EPOLLIN, [this, weak, pfd](uint32_t) {
      ctx_.loop->unwatch(pfd);
      if (auto i = weak.lock()) onProcessExit(i);
    });
  });
  inst->agent = std::make_unique<AgentClient>(*ctx_.loop, inst->agentPath());
  if (fs::exists(inst->consolePath())) {
    auto mux = ConsoleMux::start(*ctx_.loop, inst->consolePath(), inst->consoleLogPath(), options_.consoleLogLimit);
    if (mux.ok()) inst->console = *mux;
    else log::warn("console not available", {{"domain", inst->name}, {"error", mux.error().message}});
  }
  return {};
}

void QemuDriver::onMonitorEvent(const std::shared_ptr<Instance>& inst, const std::string& event, const json& data) {
  log::debug("QMP event", {{"domain", inst->name}, {"event", event}});
  MutexLock lock(inst->mu);
  if (event == "SHUTDOWN") {
    inst->shutdownReason = jsonStringOr(data, "reason", "");
  } else if (event == "DEVICE_DELETED") {
    if (auto device = jsonString(data, "device")) inst->deletedDevices.insert(*device);
    inst->cv.notify_all();
  } else if (event == "MIGRATION") {
    inst->migrationStatus = jsonStringOr(data, "status", "");
    inst->cv.notify_all();
  } else if (event == "BLOCK_IO_ERROR") {
    inst->pauseReason = "I/O error on " + jsonStringOr(data, "device", jsonStringOr(data, "node-name", "a disk")) + ": " +
                        jsonStringOr(data, "reason", "");
  } else if (event == "STOP" || event == "RESUME") {
    bool ours = inst->pauseChangesRequested > 0;
    if (ours) inst->pauseChangesRequested--;
    if (ours || inst->stopRequested || inst->exited) return;
    std::string reason = event == "STOP" ? (inst->pauseReason.empty() ? "paused by QEMU" : inst->pauseReason) : "resumed by QEMU";
    inst->pauseReason.clear();
    lock.unlock();
    if (observer_)
      observer_->domainStateChanged(inst->name, inst->runId, event == "STOP" ? model::DomainState::paused : model::DomainState::running, reason);
  } else if (event == "VSERPORT_CHANGE") {
    lock.unlock();
    if (observer_ && jsonStringOr(data, "id", "") == "channel0")
      observer_->domainEvent(inst->name, inst->runId, "domain.agent", {{"connected", jsonBoolOr(data, "open", false)}});
  } else if (event == "RESET" || event == "GUEST_PANICKED" || event == "WATCHDOG") {
    if (event == "GUEST_PANICKED") inst->shutdownReason = "guest-panic";
    lock.unlock();
    if (observer_) observer_->domainEvent(inst->name, inst->runId, "domain.qemu", {{"event", event}, {"data", data}});
  }
}

void QemuDriver::onProcessExit(const std::shared_ptr<Instance>& inst) {
  std::optional<int> reaped;
  if (inst->child && !ChildReaper::enabled()) {
    int status = 0;
    if (::waitpid(inst->pid, &status, WNOHANG) == inst->pid) reaped = status;
  }
  bool requested;
  std::string reason;
  int status;
  {
    MutexLock lock(inst->mu);
    if (reaped) inst->exitStatus = *reaped;
    inst->exited = true;
    requested = inst->stopRequested;
    reason = inst->shutdownReason;
    status = inst->exitStatus;
    inst->cv.notify_all();
  }
  if (inst->console) inst->console->stop();
  if (inst->qmp) inst->qmp->close();
  log::info("QEMU exited", {{"domain", inst->name}, {"reason", reason.empty() ? std::string("none given") : reason}, {"requested", requested}});
  if (requested || !observer_) return;
  StopCause cause;
  std::string detail;
  if (reason == "guest-shutdown") {
    cause = StopCause::shutdown;
    detail = "the guest powered off";
  } else if (reason == "guest-reset") {
    cause = StopCause::shutdown;
    detail = "the guest rebooted (on_reboot = destroy)";
  } else if (reason == "guest-panic") {
    cause = StopCause::crashed;
    detail = "the guest kernel panicked";
  } else if (reason == "host-signal" || reason == "host-qmp-quit") {
    cause = StopCause::destroyed;
    detail = "QEMU was stopped by a signal or a quit command from outside vmmd";
  } else {
    cause = StopCause::crashed;
    detail = "QEMU ended unexpectedly" + (status >= 0 ? " (" + describeWaitStatus(status) + ")" : std::string());
  }
  // The observer takes the domain's job: never do that on the loop thread.
  ctx_.pool->submit([this, name = inst->name, runId = inst->runId, cause, detail] {
    if (observer_) observer_->domainStopped(name, runId, cause, detail);
  });
}

// ---------------------------------------------------------------- reconnect / release

Result<RunningDomain> QemuDriver::reconnect(const model::Domain& def, const json& record) {
  if (!probe().available) return unavailable("QEMU is not available");
  VMM_ASSIGN(QemuRecord rec, QemuRecord::parse(record));
  auto inst = std::make_shared<Instance>();
  inst->name = def.name;
  inst->runId = rec.runId;
  inst->pid = rec.pid;
  inst->startTime = rec.startTime;
  inst->accel = rec.accel;
  inst->runDir = runDir(def.name);
  inst->stateDir = stateDir(def.name);
  inst->uid = rec.uid;
  inst->gid = rec.gid;
  inst->layout.machine = rec.machine;
  inst->layout.rootPorts = rec.rootPorts;
  inst->layout.hotplug = machineFamily(inst->layout.machine) != "microvm";
  inst->layout.portOf = rec.ports;
  for (const auto& [id, port] : rec.ports) inst->usedPorts.insert(port);
  for (const auto& t : rec.taps) inst->taps.push_back({t.ifname, t.mac});
  if (inst->pid <= 0 || !processAlive(inst->pid) || processStartTime(inst->pid).value_or(0) != inst->startTime)
    return unavailable("QEMU (pid " + std::to_string(inst->pid) + ") is no longer running");
  auto monitor = connectUnix(inst->qmpPath(), Deadline::after(Millis(5000)));
  Status attached = monitor.ok() ? attach(inst, std::move(*monitor), Deadline::after(Millis(10000))) : Status(monitor.error());
  if (!attached.ok()) {
    // Alive but not controllable: stop it rather than leave an unmanaged guest behind.
    log::error("QEMU does not answer on its monitor; stopping it",
               {{"domain", def.name}, {"pid", static_cast<int64_t>(inst->pid)}, {"error", attached.error().message}});
    ::kill(inst->pid, SIGKILL);
    return unavailable("QEMU (pid " + std::to_string(inst->pid) + ") no longer answered on its monitor and was stopped");
  }
  // The state to report is the one a snapshot job of the previous vmmd leaves behind.
  if (auto settled = settleSnapshotJobs(*inst, Deadline::after(Millis(60000))); !settled.ok())
    log::warn("reconnected while a snapshot job still runs", {{"domain", def.name}, {"error", settled.error().message}});
  auto status = inst->qmp->execute("query-status");
  if (!status.ok()) return status.error();
  std::string s = jsonStringOr(*status, "status", "");
  model::DomainState state = jsonBoolOr(*status, "running", false) ? model::DomainState::running : model::DomainState::paused;
  if (s == "shutdown" || s == "postmigrate" || s == "guest-panicked") {
    (void)terminate(inst, Deadline::after(Millis(5000)));
    return unavailable("QEMU was left in state " + s + " and was stopped");
  }
  loadFdsets(*inst, Deadline::after(Millis(5000)));
  inst->graphics = graphicsInfo(*inst, def, Deadline::after(Millis(5000)));
  {
    MutexLock lock(mu_);
    instances_[def.name] = inst;
    if (inst->uid != 0) uidsInUse_.insert(inst->uid);
  }
  return runningOf(*inst, state);
}

void QemuDriver::release(const model::Domain& def, const json& record) {
  std::shared_ptr<Instance> inst;
  {
    MutexLock lock(mu_);
    auto it = instances_.find(def.name);
    if (it != instances_.end()) {
      inst = it->second;
      instances_.erase(it);
      if (inst->uid != 0) uidsInUse_.erase(inst->uid);
    }
  }
  std::vector<Instance::Tap> taps;
  if (inst) {
    if (inst->pidfd.valid() && !inst->hasExited()) ctx_.loop->runSync([&] { ctx_.loop->unwatch(inst->pidfd.get()); });
    if (inst->console) inst->console->stop();
    if (inst->agent) inst->agent->disconnect();
    if (inst->qmp) inst->qmp->close();
    taps = inst->taps;
  } else if (auto rec = QemuRecord::parse(record); rec.ok()) {
    for (const auto& t : rec->taps) taps.push_back({t.ifname, t.mac});
  } else {
    log::error("cannot read the runtime record; its taps are left behind", {{"domain", def.name}, {"error", rec.error().message}});
  }
  if (services_) {
    for (const auto& t : taps) {
      model::Nic nic;
      for (const auto& n : def.nics)
        if (n.mac == t.mac) nic = n;
      nic.mac = t.mac;
      services_->unplugNic(def, nic, t.ifname);
    }
  }
  (void)fs::removeTree(runDir(def.name));
}

// ---------------------------------------------------------------- stop, pause

Status QemuDriver::terminate(const std::shared_ptr<Instance>& inst, Deadline deadline) {
  {
    MutexLock lock(inst->mu);
    inst->stopRequested = true;
    if (inst->exited) return {};
  }
  // Only signal the process we started or found: a reused pid has another start time.
  auto ours = [&] { return processStartTime(inst->pid).value_or(0) == inst->startTime; };
  if (ours()) ::kill(inst->pid, SIGTERM);
  if (inst->waitExit(Deadline::after(Millis(3000)).earlier(deadline))) return {};
  if (ours()) ::kill(inst->pid, SIGKILL);
  if (inst->waitExit(deadline.earlier(Deadline::after(Millis(10000))))) return {};
  return timeoutError("QEMU (pid " + std::to_string(inst->pid) + ") did not exit after SIGKILL");
}

Status QemuDriver::destroy(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  return terminate(inst, deadline);
}

Status QemuDriver::shutdown(const model::Domain& def, const ShutdownOptions& options) {
  VMM_ASSIGN(auto inst, running(def));
  {
    MutexLock lock(inst->mu);
    inst->stopRequested = true;
  }
  auto undoRequest = [&] {
    MutexLock lock(inst->mu);
    inst->stopRequested = false;
  };
  // Each step taken is an event: which one stopped the guest is visible to API clients.
  auto step = [&](const char* name) {
    if (observer_) observer_->domainEvent(def.name, inst->runId, "domain.shutdown", {{"step", name}});
  };
  // First the ACPI power button, for half the time (at least two seconds)...
  auto half = std::max(Millis(2000), options.deadline.remaining() / 2);
  step("acpi");
  auto acpi = inst->qmp->execute("system_powerdown", json::object(), Deadline::after(Millis(5000)));
  if (!acpi.ok()) log::warn("system_powerdown failed", {{"domain", def.name}, {"error", acpi.error().message}});
  if (inst->waitExit(Deadline::after(half).earlier(options.deadline))) return {};
  // ...then the guest agent...
  if (def.guestAgent) {
    step("agent");
    auto agent = inst->agent->call("guest-shutdown", {{"mode", "powerdown"}}, Deadline::after(Millis(3000)).earlier(options.deadline), false);
    if (!agent.ok()) log::info("guest agent shutdown not possible", {{"domain", def.name}, {"error", agent.error().message}});
  }
  if (inst->waitExit(options.deadline)) return {};
  // ...then, at the deadline, destroy (unless asked not to).
  if (!options.forceAtDeadline) {
    undoRequest();
    return timeoutError("the guest did not shut down before the deadline (neither the ACPI power button nor the agent stopped it)");
  }
  log::info("guest did not shut down in time; destroying it", {{"domain", def.name}});
  step("destroy");
  return terminate(inst, Deadline::after(Millis(15000)));
}

Status QemuDriver::reboot(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  if (def.guestAgent) {
    auto r = inst->agent->call("guest-shutdown", {{"mode", "reboot"}}, Deadline::after(Millis(3000)).earlier(deadline), false);
    if (r.ok()) return {};
    log::info("guest agent reboot not possible; resetting", {{"domain", def.name}, {"error", r.error().message}});
  }
  auto r = inst->qmp->execute("system_reset", json::object(), deadline);
  return r.ok() ? Status() : Status(r.error());
}

Status QemuDriver::reset(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  auto r = inst->qmp->execute("system_reset", json::object(), deadline);
  return r.ok() ? Status() : Status(r.error());
}

Status QemuDriver::suspend(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  {
    MutexLock lock(inst->mu);
    inst->pauseChangesRequested++;
  }
  auto r = inst->qmp->execute("stop", json::object(), deadline);
  return r.ok() ? Status() : Status(r.error());
}

Status QemuDriver::resume(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  {
    MutexLock lock(inst->mu);
    inst->pauseChangesRequested++;
  }
  auto r = inst->qmp->execute("cont", json::object(), deadline);
  return r.ok() ? Status() : Status(r.error());
}

}  // namespace vmm::drivers::qemu
