// QEMU driver: statistics, guest agent, console, and saving to / restoring from a file.
#include <fcntl.h>
#include <unistd.h>

#include "base/json_util.h"
#include "base/log.h"
#include "base/strings.h"
#include "drivers/qemu/qemu_instance.h"

namespace vmm::drivers::qemu {

namespace {

uint64_t readCounter(const std::string& path) {
  auto t = fs::readFile(path, 64);
  if (!t.ok()) return 0;
  return parseUint(std::string(trim(*t))).value_or(0);
}

}  // namespace

Result<json> QemuDriver::stats(const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  json out = {{"state", "running"}, {"vcpus", def.vcpus}};
  // CPU time of the whole QEMU process (vCPU threads included), from /proc.
  auto stat = fs::readFile("/proc/" + std::to_string(inst->pid) + "/stat", 8192);
  if (stat.ok()) {
    auto fields = split(stat->substr(stat->rfind(')') + 2), ' ');
    if (fields.size() > 13) {
      uint64_t ticks = parseUint(fields[11]).value_or(0) + parseUint(fields[12]).value_or(0);
      out["cpu_time_ns"] = ticks * (1000000000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
    }
  }
  uint64_t rss = 0;
  auto status = fs::readFile("/proc/" + std::to_string(inst->pid) + "/status", 16384);
  if (status.ok())
    for (const auto& line : split(*status, '\n'))
      if (startsWith(line, "VmRSS:")) rss = parseUint(std::string(trim(line.substr(6, line.size() - 9)))).value_or(0) * 1024;
  out["memory"] = {{"max_bytes", def.memory}, {"rss_bytes", rss}};
  auto st = inst->qmp->execute("query-status", json::object(), deadline);
  if (st.ok()) out["state"] = jsonBoolOr(*st, "running", false) ? "running" : "paused";
  json blocks = json::array();
  auto bs = inst->qmp->execute("query-blockstats", json::object(), deadline);
  if (bs.ok() && bs->is_array()) {
    for (const auto& b : *bs) {
      std::string qdev = jsonStringOr(b, "qdev", "");  // "/machine/peripheral/disk-vda/virtio-backend" or "disk-vda"
      auto pos = qdev.find("disk-");
      if (pos == std::string::npos) continue;
      std::string target = qdev.substr(pos + 5, qdev.find('/', pos) == std::string::npos ? std::string::npos : qdev.find('/', pos) - pos - 5);
      const json* s = jsonMember(b, "stats");
      auto counter = [&](const char* key) { return s ? jsonUint(*s, key).value_or(0) : uint64_t{0}; };
      blocks.push_back({{"target", target},
                        {"rd_bytes", counter("rd_bytes")},
                        {"wr_bytes", counter("wr_bytes")},
                        {"rd_reqs", counter("rd_operations")},
                        {"wr_reqs", counter("wr_operations")}});
    }
  } else {
    out["block_error"] = bs.ok() ? std::string("QEMU query-blockstats: not an array") : bs.error().message;
  }
  out["block"] = blocks;
  // Tap counters are seen from the host: what the guest sends is the tap's rx.
  json nets = json::array();
  for (const auto& t : inst->taps) {
    std::string base = "/sys/class/net/" + t.ifname + "/statistics/";
    nets.push_back({{"mac", t.mac},
                    {"ifname", t.ifname},
                    {"rx_bytes", readCounter(base + "tx_bytes")},
                    {"tx_bytes", readCounter(base + "rx_bytes")},
                    {"rx_packets", readCounter(base + "tx_packets")},
                    {"tx_packets", readCounter(base + "rx_packets")}});
  }
  out["net"] = nets;
  return out;
}

Result<ExecResult> QemuDriver::guestExec(const model::Domain& def, const ExecRequest& req, Deadline deadline) {
  if (!def.guestAgent) return unsupported("domain " + def.name + " has no guest agent channel (guest_agent is false)");
  VMM_ASSIGN(auto inst, running(def));
  return inst->agent->exec(req, deadline);
}

Result<json> QemuDriver::guestCommand(const model::Domain& def, const std::string& command, const json& args, Deadline deadline) {
  if (!def.guestAgent) return unsupported("domain " + def.name + " has no guest agent channel (guest_agent is false)");
  VMM_ASSIGN(auto inst, running(def));
  auto& agent = *inst->agent;
  if (command == "ping") {
    VMM_TRY(agent.call("guest-ping", json::object(), deadline));
    return json::object();
  }
  if (command == "info") return agent.call("guest-info", json::object(), deadline);
  if (command == "fsfreeze" || command == "fsthaw") {
    VMM_ASSIGN(auto n, agent.freezeFilesystems(command == "fsfreeze", deadline));
    return json{{"filesystems", n}};
  }
  if (command == "shutdown") {
    VMM_TRY(agent.call("guest-shutdown", {{"mode", jsonStringOr(args, "mode", "powerdown")}}, deadline, false));
    return json::object();
  }
  if (command == "interfaces") return agent.interfaces(deadline);
  return unsupported("guest command " + command + " is not known");
}

Result<fs::UniqueFd> QemuDriver::openConsole(const model::Domain& def) {
  VMM_ASSIGN(auto inst, running(def));
  if (!inst->console) return unavailable("domain " + def.name + " has no console");
  return inst->console->attach();
}

Result<std::string> QemuDriver::consoleLog(const model::Domain& def, size_t maxBytes) {
  // Also after the domain stopped: the log stays in the state directory.
  return ConsoleMux::readLog(stateDir(def.name) + "/console.log", maxBytes);
}

Result<json> QemuDriver::migrateToFile(Instance& inst, const std::string& path, Deadline deadline) {
  VMM_TRY(fs::removeFile(path));  // a leftover, or a planted symlink: removed, never written through
  VMM_ASSIGN(auto file, fs::createExclusive(path, 0600));
  VMM_TRY(inst.qmp->execute("migrate-set-capabilities", {{"capabilities", {{{"capability", "events"}, {"state", true}}}}}, deadline));
  VMM_TRY(inst.qmp->execute("getfd", {{"fdname", "vmm-save"}}, deadline, file.get()));
  {
    MutexLock lock(inst.mu);
    inst.migrationStatus.clear();
  }
  VMM_TRY(inst.qmp->execute("migrate", {{"uri", "fd:vmm-save"}}, deadline));
  MutexLock lock(inst.mu);
  bool done = inst.cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(inst.mu) {
    return inst.migrationStatus == "completed" || inst.migrationStatus == "failed" || inst.migrationStatus == "cancelled" || inst.exited;
  });
  if (!done) return timeoutError("saving the guest's state did not finish before the deadline");
  if (inst.migrationStatus != "completed") return internalError("saving the guest's state failed (" + inst.migrationStatus + ")");
  return json{{"path", path}};
}

Status QemuDriver::restoreFromFile(Instance& inst, const std::string& path, Deadline deadline) {
  auto opened = fs::openPrivateFile(path);
  if (!opened.ok()) return opened.error().wrap("cannot open saved state " + path);
  fs::UniqueFd file = std::move(*opened);
  VMM_TRY(inst.qmp->execute("migrate-set-capabilities", {{"capabilities", {{{"capability", "events"}, {"state", true}}}}}, deadline));
  VMM_TRY(inst.qmp->execute("getfd", {{"fdname", "vmm-restore"}}, deadline, file.get()));
  VMM_TRY(inst.qmp->execute("migrate-incoming", {{"uri", "fd:vmm-restore"}}, deadline));
  MutexLock lock(inst.mu);
  bool done = inst.cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(inst.mu) {
    return inst.migrationStatus == "completed" || inst.migrationStatus == "failed" || inst.exited;
  });
  if (!done) return timeoutError("restoring the guest's state did not finish before the deadline");
  if (inst.migrationStatus != "completed") return internalError("restoring the guest's state failed: " + inst.migrationStatus);
  return {};
}

Status QemuDriver::save(const model::Domain& def, const std::string& path, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  {
    MutexLock lock(inst->mu);
    inst->stopRequested = true;  // the process ends after the save: not a crash
    inst->pauseChangesRequested++;
  }
  auto stopped = inst->qmp->execute("stop", json::object(), deadline);
  auto saved = stopped.ok() ? migrateToFile(*inst, path, deadline) : Result<json>(stopped.error());
  if (!saved.ok()) {
    (void)fs::removeFile(path);
    {
      MutexLock lock(inst->mu);
      inst->stopRequested = false;
      inst->pauseChangesRequested++;
    }
    (void)inst->qmp->execute("cont", json::object(), Deadline::after(Millis(5000)));
    return saved.error();
  }
  (void)inst->qmp->execute("quit", json::object(), Deadline::after(Millis(5000)));
  if (!inst->waitExit(Deadline::after(Millis(5000)))) return terminate(inst, Deadline::after(Millis(10000)));
  return {};
}

}  // namespace vmm::drivers::qemu
