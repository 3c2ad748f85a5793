#include "drivers/driver.h"

#include "base/base64.h"
#include "base/json_util.h"

namespace vmm::drivers {

void addExecOutput(json& out, const ExecResult& r) {
  auto add = [&](const char* name, const std::string& bytes) {
    if (isValidUtf8(bytes)) {
      out[name] = bytes;
      return;
    }
    out[name] = toValidUtf8(bytes);
    out[std::string(name) + "_b64"] = base64Encode(bytes);
  };
  add("stdout", r.out);
  add("stderr", r.err);
  out["stdout_truncated"] = r.outTruncated;
  out["stderr_truncated"] = r.errTruncated;
}

std::string_view stopCauseName(StopCause c) {
  switch (c) {
    case StopCause::shutdown: return "shutdown";
    case StopCause::destroyed: return "destroyed";
    case StopCause::crashed: return "crashed";
    case StopCause::failed: return "failed";
    case StopCause::gone: return "gone";
  }
  return "gone";
}

Error HypervisorDriver::notSupported(std::string_view op) const {
  return unsupported(std::string(op) + " is not supported by the " + typeName() + " driver");
}

Status HypervisorDriver::validate(const model::Domain&) const { return {}; }
Result<RunningDomain> HypervisorDriver::start(const model::Domain&, const StartOptions&) { return notSupported("start"); }
Result<RunningDomain> HypervisorDriver::reconnect(const model::Domain&, const json&) { return notSupported("reconnect"); }
void HypervisorDriver::release(const model::Domain&, const json&) {}
std::optional<json> HypervisorDriver::currentRecord(const model::Domain&) { return std::nullopt; }
Status HypervisorDriver::shutdown(const model::Domain&, const ShutdownOptions&) { return notSupported("shutdown"); }
Status HypervisorDriver::destroy(const model::Domain&, Deadline) { return notSupported("destroy"); }
Status HypervisorDriver::reboot(const model::Domain&, Deadline) { return notSupported("reboot"); }
Status HypervisorDriver::reset(const model::Domain&, Deadline) { return notSupported("reset"); }
Status HypervisorDriver::suspend(const model::Domain&, Deadline) { return notSupported("suspend"); }
Status HypervisorDriver::resume(const model::Domain&, Deadline) { return notSupported("resume"); }
Status HypervisorDriver::save(const model::Domain&, const std::string&, Deadline) { return notSupported("save"); }
Result<json> HypervisorDriver::stats(const model::Domain&, Deadline) { return notSupported("stats"); }
Status HypervisorDriver::attachDisk(const model::Domain&, const model::Disk&, Deadline) { return notSupported("disk hotplug"); }
Status HypervisorDriver::detachDisk(const model::Domain&, const model::Disk&, Deadline) { return notSupported("disk hot-unplug"); }
Status HypervisorDriver::attachNic(const model::Domain&, const model::Nic&, Deadline) { return notSupported("NIC hotplug"); }
Status HypervisorDriver::detachNic(const model::Domain&, const model::Nic&, Deadline) { return notSupported("NIC hot-unplug"); }
Result<ExecResult> HypervisorDriver::guestExec(const model::Domain&, const ExecRequest&, Deadline) {
  return notSupported("guest exec");
}
Result<json> HypervisorDriver::guestCommand(const model::Domain&, const std::string& command, const json&, Deadline) {
  return notSupported("guest command " + command);
}
Result<fs::UniqueFd> HypervisorDriver::openConsole(const model::Domain&) { return notSupported("console"); }
Result<std::string> HypervisorDriver::consoleLog(const model::Domain&, size_t) { return notSupported("console log"); }
Result<SnapshotResult> HypervisorDriver::snapshotCreate(const model::Domain&, const SnapshotRequest&, Deadline) {
  return notSupported("snapshot");
}
Result<SnapshotRevertResult> HypervisorDriver::snapshotRevert(const model::Domain&, const model::Snapshot&, Deadline) {
  return notSupported("snapshot revert");
}
Result<SnapshotDeleteResult> HypervisorDriver::snapshotDelete(const model::Domain&, const model::Snapshot&, Deadline) {
  return notSupported("snapshot delete");
}

}  // namespace vmm::drivers
