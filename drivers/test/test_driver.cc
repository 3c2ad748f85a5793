#include "drivers/test/test_driver.h"
#include "drivers/test/test_record.h"

#include <unistd.h>

#include <thread>

#include "base/fs.h"
#include "base/random.h"
#include "base/strings.h"

namespace vmm::drivers {

namespace {

constexpr const char* kVersion = "vmm-test 1.0";

void sleepUntil(Deadline d, Millis wanted) {
  auto until = SteadyClock::now() + wanted;
  if (d.at() < until) until = d.at();
  std::this_thread::sleep_until(until);
}

}  // namespace

DriverInfo TestDriver::probe() {
  DriverInfo info;
  info.available = true;
  info.version = kVersion;
  info.details = {{"simulated", true}};
  return info;
}

Status TestDriver::validate(const model::Domain& def) const {
  auto b = behaviour(def);
  if (!b.is_object()) return invalidArgument("metadata.test_driver: expected an object");
  static const std::vector<std::string> known = {"start_delay",    "fail_start",  "shutdown_delay", "ignore_shutdown",
                                                 "poweroff_after", "crash_after", "agent",          "fail_reconnect",
                                                 "destroy_delay"};
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      return invalidArgument("metadata.test_driver." + it.key() + ": unknown field");
  }
  for (const char* key : {"start_delay", "shutdown_delay", "poweroff_after", "crash_after", "destroy_delay"}) {
    if (b.contains(key) && (!b[key].is_string() || !parseDuration(b[key].get<std::string>())))
      return invalidArgument(std::string("metadata.test_driver.") + key + ": expected a duration such as \"500ms\"");
  }
  if (!def.machine.empty() && def.machine != "test")
    return invalidArgument("machine: the test driver only knows machine \"test\"");
  return {};
}

json TestDriver::behaviour(const model::Domain& def) {
  auto it = def.metadata.find("test_driver");
  if (it == def.metadata.end()) return json::object();
  return *it;
}

std::optional<Millis> TestDriver::behaviourDuration(const model::Domain& def, const char* key) {
  auto b = behaviour(def);
  if (!b.is_object() || !b.contains(key) || !b[key].is_string()) return std::nullopt;
  return parseDuration(b[key].get<std::string>());
}

json TestDriver::recordOf(const Guest& g) const {
  TestRecord r;
  r.runId = g.runId;
  r.bootUs = g.bootUs;
  r.paused = g.paused;
  r.pausedUs = g.pausedUs;
  r.pausedSinceUs = g.pausedSinceUs;
  r.disks = g.disks;
  r.nics = g.nics;
  return r.toJson();
}

RunningDomain TestDriver::runningOf(const Guest& g) const {
  RunningDomain r;
  r.runId = g.runId;
  r.state = g.paused ? model::DomainState::paused : model::DomainState::running;
  r.record = recordOf(g);
  r.info = {{"simulated", true}, {"booted", formatTimestamp(g.bootUs)}};
  return r;
}

Result<TestDriver::Guest*> TestDriver::findLocked(const model::Domain& def) {
  auto it = guests_.find(def.name);
  if (it == guests_.end()) return conflict("domain " + def.name + " is not running");
  return &it->second;
}

void TestDriver::scheduleSelfStop(const model::Domain& def, Guest& g) {
  if (!ctx_.loop) return;
  auto crash = behaviourDuration(def, "crash_after");
  auto off = behaviourDuration(def, "poweroff_after");
  if (!crash && !off) return;
  bool crashes = crash && (!off || *crash <= *off);
  Millis after = crashes ? *crash : *off;
  std::string name = def.name, runId = g.runId;
  g.timer = ctx_.loop->addTimer(after, [this, name, runId, crashes] {
    // Not on the loop thread's time: hand the stop to the pool.
    ctx_.pool->submit([this, name, runId, crashes] {
      stopGuest(name, runId, crashes ? StopCause::crashed : StopCause::shutdown,
                crashes ? "simulated guest crash" : "guest powered off");
    });
  });
}

void TestDriver::stopGuest(const std::string& name, const std::string& runId, StopCause cause, const std::string& detail) {
  {
    MutexLock lock(mu_);
    auto it = guests_.find(name);
    if (it == guests_.end() || it->second.runId != runId) return;
    guests_.erase(it);
  }
  if (observer_) observer_->domainStopped(name, runId, cause, detail);
}

Result<RunningDomain> TestDriver::start(const model::Domain& def, const StartOptions& options) {
  auto b = behaviour(def);
  if (auto delay = behaviourDuration(def, "start_delay")) {
    sleepUntil(options.deadline, *delay);
    if (options.deadline.expired()) return timeoutError("simulated start did not finish before its deadline");
  }
  if (b.contains("fail_start") && b["fail_start"].is_string())
    return internalError("simulated start failure: " + b["fail_start"].get<std::string>());
  for (const auto& disk : def.disks) {
    if (!services_) break;
    auto resolved = services_->resolveDisk(disk);
    if (!resolved.ok()) return resolved.error().wrap("disk " + disk.target);
  }
  MutexLock lock(mu_);
  if (guests_.count(def.name)) return conflict("domain " + def.name + " is already running");
  Guest g;
  g.runId = newUuid();
  g.bootUs = wallNowMicros();
  g.paused = options.paused;
  g.pausedSinceUs = g.paused ? g.bootUs : 0;
  g.vcpus = def.vcpus;
  g.memory = def.memory;
  for (const auto& d : def.disks) g.disks.push_back(d.target);
  for (const auto& n : def.nics) g.nics.push_back(n.mac);
  g.console = "test guest " + def.name + " booted\r\n";
  scheduleSelfStop(def, g);
  auto r = runningOf(g);
  guests_[def.name] = std::move(g);
  return r;
}

Result<RunningDomain> TestDriver::reconnect(const model::Domain& def, const json& record) {
  if (behaviour(def).value("fail_reconnect", false)) return unavailable("simulated guest is gone");
  VMM_ASSIGN(TestRecord rec, TestRecord::parse(record));
  if (rec.runId.empty()) return unavailable("runtime record has no run id");
  MutexLock lock(mu_);
  Guest g;
  g.runId = rec.runId;
  g.bootUs = rec.bootUs;
  g.paused = rec.paused;
  g.pausedUs = rec.pausedUs;
  g.pausedSinceUs = rec.pausedSinceUs;
  g.disks = std::move(rec.disks);
  g.nics = std::move(rec.nics);
  g.vcpus = def.vcpus;
  g.memory = def.memory;
  g.console = "test guest " + def.name + " reconnected\r\n";
  auto r = runningOf(g);
  guests_[def.name] = std::move(g);
  return r;
}

void TestDriver::release(const model::Domain& def, const json&) {
  MutexLock lock(mu_);
  auto it = guests_.find(def.name);
  if (it != guests_.end()) {
    if (it->second.timer && ctx_.loop) ctx_.loop->cancelTimer(it->second.timer);
    guests_.erase(it);
  }
}

std::optional<json> TestDriver::currentRecord(const model::Domain& def) {
  MutexLock lock(mu_);
  auto it = guests_.find(def.name);
  if (it == guests_.end()) return std::nullopt;
  return recordOf(it->second);
}

Status TestDriver::shutdown(const model::Domain& def, const ShutdownOptions& options) {
  auto b = behaviour(def);
  std::string runId;
  {
    MutexLock lock(mu_);
    VMM_ASSIGN(auto* g, findLocked(def));
    runId = g->runId;
  }
  if (b.value("ignore_shutdown", false)) {
    std::this_thread::sleep_until(options.deadline.at());
    if (!options.forceAtDeadline) return timeoutError("the guest did not shut down before the deadline");
    return destroy(def, Deadline::after(Millis(5000)));
  }
  if (auto delay = behaviourDuration(def, "shutdown_delay")) {
    sleepUntil(options.deadline, *delay);
    if (options.deadline.expired() && *delay > Millis(0)) {
      if (!options.forceAtDeadline) return timeoutError("the guest did not shut down before the deadline");
      return destroy(def, Deadline::after(Millis(5000)));
    }
  }
  MutexLock lock(mu_);
  auto it = guests_.find(def.name);
  if (it != guests_.end() && it->second.runId == runId) {
    if (it->second.timer && ctx_.loop) ctx_.loop->cancelTimer(it->second.timer);
    guests_.erase(it);
  }
  return {};
}

Status TestDriver::destroy(const model::Domain& def, Deadline deadline) {
  if (auto delay = behaviourDuration(def, "destroy_delay")) sleepUntil(deadline, *delay);
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (g->timer && ctx_.loop) ctx_.loop->cancelTimer(g->timer);
  guests_.erase(def.name);
  return {};
}

Status TestDriver::reboot(const model::Domain& def, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (g->paused) return conflict("domain " + def.name + " is paused; resume it first");
  g->console += "test guest " + def.name + " rebooted\r\n";
  return {};
}

Status TestDriver::reset(const model::Domain& def, Deadline d) { return reboot(def, d); }

Status TestDriver::suspend(const model::Domain& def, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (g->paused) return conflict("domain " + def.name + " is already paused");
  g->paused = true;
  g->pausedSinceUs = wallNowMicros();
  return {};
}

Status TestDriver::resume(const model::Domain& def, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (!g->paused) return conflict("domain " + def.name + " is not paused");
  g->paused = false;
  g->pausedUs += wallNowMicros() - g->pausedSinceUs;
  g->pausedSinceUs = 0;
  return {};
}

Status TestDriver::save(const model::Domain& def, const std::string& path, Deadline deadline) {
  json state;
  {
    MutexLock lock(mu_);
    VMM_ASSIGN(auto* g, findLocked(def));
    state = recordOf(*g);
  }
  VMM_TRY(fs::writeFileAtomic(path, state.dump(), 0600));
  return destroy(def, deadline);
}

Result<json> TestDriver::stats(const model::Domain& def, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  int64_t now = wallNowMicros();
  int64_t paused = g->pausedUs + (g->paused ? now - g->pausedSinceUs : 0);
  int64_t runUs = std::max<int64_t>(0, now - g->bootUs - paused);
  // Plausible, monotonic counters: 2% CPU per vcpu, steady I/O.
  uint64_t cpuNs = static_cast<uint64_t>(runUs) * 20 * static_cast<uint64_t>(g->vcpus);
  json blocks = json::array();
  for (size_t i = 0; i < g->disks.size(); ++i)
    blocks.push_back({{"target", g->disks[i]},
                      {"rd_bytes", runUs * 4},
                      {"wr_bytes", runUs * 2},
                      {"rd_reqs", runUs / 1000},
                      {"wr_reqs", runUs / 2000}});
  json nets = json::array();
  for (size_t i = 0; i < g->nics.size(); ++i)
    nets.push_back({{"mac", g->nics[i]}, {"rx_bytes", runUs / 10}, {"tx_bytes", runUs / 20}, {"rx_packets", runUs / 10000}, {"tx_packets", runUs / 20000}});
  return json{{"state", g->paused ? "paused" : "running"},
              {"cpu_time_ns", cpuNs},
              {"vcpus", g->vcpus},
              {"memory", {{"max_bytes", g->memory}, {"rss_bytes", g->memory / 4}}},
              {"block", blocks},
              {"net", nets}};
}

Status TestDriver::attachDisk(const model::Domain& def, const model::Disk& disk, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (std::find(g->disks.begin(), g->disks.end(), disk.target) != g->disks.end())
    return conflict("disk " + disk.target + " is already attached");
  g->disks.push_back(disk.target);
  return {};
}

Status TestDriver::detachDisk(const model::Domain& def, const model::Disk& disk, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  auto it = std::find(g->disks.begin(), g->disks.end(), disk.target);
  if (it == g->disks.end()) return notFound("disk " + disk.target + " is not attached");
  g->disks.erase(it);
  return {};
}

Status TestDriver::attachNic(const model::Domain& def, const model::Nic& nic, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (std::find(g->nics.begin(), g->nics.end(), nic.mac) != g->nics.end())
    return conflict("a NIC with MAC " + nic.mac + " is already attached");
  g->nics.push_back(nic.mac);
  return {};
}

Status TestDriver::detachNic(const model::Domain& def, const model::Nic& nic, Deadline) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  auto it = std::find(g->nics.begin(), g->nics.end(), nic.mac);
  if (it == g->nics.end()) return notFound("no NIC with MAC " + nic.mac + " is attached");
  g->nics.erase(it);
  return {};
}

Result<ExecResult> TestDriver::guestExec(const model::Domain& def, const ExecRequest& req, Deadline deadline) {
  std::string agent = behaviour(def).value("agent", "ok");
  {
    MutexLock lock(mu_);
    VMM_ASSIGN(auto* g, findLocked(def));
    if (g->paused) return conflict("domain " + def.name + " is paused: the guest agent cannot answer");
  }
  if (agent == "absent") return unavailable("the guest agent of " + def.name + " is not connected");
  if (agent == "hang") {
    std::this_thread::sleep_until(deadline.at());
    return timeoutError("the guest agent of " + def.name + " did not answer before the deadline");
  }
  if (req.argv.empty()) return invalidArgument("command: empty");
  ExecResult r;
  const auto& cmd = req.argv[0];
  auto args = std::vector<std::string>(req.argv.begin() + 1, req.argv.end());
  std::string base = fs::baseName(cmd);
  r.exitCode = 0;
  if (base == "echo") r.out = join(args, " ") + "\n";
  else if (base == "true") r.exitCode = 0;
  else if (base == "false") r.exitCode = 1;
  else if (base == "hostname") r.out = def.name + "\n";
  else if (base == "uname") r.out = "Linux " + def.name + " 6.1.0-test #1 SMP vmm-test x86_64 GNU/Linux\n";
  else if (base == "cat") r.out = req.input;
  else if (base == "sh" && args.size() == 2 && args[0] == "-c" && startsWith(args[1], "exit ")) {
    auto code = parseInt(args[1].substr(5));
    r.exitCode = code ? static_cast<int>(*code) : 2;
  } else if (base == "sleep" && !args.empty()) {
    auto d = parseDuration(args[0]);
    if (d) sleepUntil(deadline, *d);
    if (deadline.expired()) return timeoutError("guest command did not finish before the deadline");
  } else {
    r.exitCode = 127;
    r.err = "sh: " + cmd + ": not found\n";
  }
  return r;
}

Result<json> TestDriver::guestCommand(const model::Domain& def, const std::string& command, const json&,
                                      Deadline deadline) {
  std::string agent = behaviour(def).value("agent", "ok");
  std::vector<std::string> macs;
  {
    MutexLock lock(mu_);
    VMM_ASSIGN(auto* g, findLocked(def));
    macs = g->nics;
  }
  if (agent == "absent") return unavailable("the guest agent of " + def.name + " is not connected");
  if (agent == "hang") {
    std::this_thread::sleep_until(deadline.at());
    return timeoutError("the guest agent of " + def.name + " did not answer before the deadline");
  }
  if (command == "ping") return json::object();
  if (command == "info") return json{{"version", kVersion}};
  if (command == "interfaces") {
    json ifs = json::array();
    ifs.push_back({{"name", "lo"}, {"mac", "00:00:00:00:00:00"}, {"addresses", {"127.0.0.1/8"}}});
    for (size_t i = 0; i < macs.size(); ++i)
      ifs.push_back({{"name", "eth" + std::to_string(i)}, {"mac", macs[i]}, {"addresses", json::array()}});
    return ifs;
  }
  if (command == "fsfreeze" || command == "fsthaw") return json{{"filesystems", 1}};
  if (command == "shutdown") {
    std::string runId;
    {
      MutexLock lock(mu_);
      VMM_ASSIGN(auto* g, findLocked(def));
      runId = g->runId;
    }
    std::string name = def.name;
    ctx_.pool->submit([this, name, runId] { stopGuest(name, runId, StopCause::shutdown, "guest agent shutdown"); });
    return json::object();
  }
  return unsupported("guest command " + command + " is not known to the test guest agent");
}

Result<std::string> TestDriver::consoleLog(const model::Domain& def, size_t maxBytes) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto* g, findLocked(def));
  if (g->console.size() > maxBytes) return g->console.substr(g->console.size() - maxBytes);
  return g->console;
}

Result<SnapshotResult> TestDriver::snapshotCreate(const model::Domain& def, const SnapshotRequest& request, Deadline) {
  MutexLock lock(mu_);
  auto it = guests_.find(def.name);
  SnapshotResult out;
  out.driverData = {{"simulated", true}, {"spec", toJson(request)}};
  if (it != guests_.end()) out.driverData["paused"] = it->second.paused;
  return out;
}

Result<SnapshotRevertResult> TestDriver::snapshotRevert(const model::Domain&, const model::Snapshot&, Deadline) {
  return SnapshotRevertResult{};
}
Result<SnapshotDeleteResult> TestDriver::snapshotDelete(const model::Domain&, const model::Snapshot&, Deadline) {
  return SnapshotDeleteResult{};
}

}  // namespace vmm::drivers
