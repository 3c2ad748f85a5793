// The QEMU/KVM driver: QEMU processes started paused (-S) with their monitor, agent and
// console sockets inherited from vmmd, driven over QMP on the event loop. KVM where
// /dev/kvm is usable, TCG otherwise (runtime info and capabilities say which).
//
// QEMU runs in its own session and outlives vmmd; reconnect() finds it again by pid (and
// process start time, so a reused pid is not mistaken for it) and its monitor socket.
//
// Thread-safety: as HypervisorDriver. Per-domain state is in QemuDomain; monitor commands
// and agent calls never hold the driver's lock.
#pragma once

#include <map>
#include <memory>
#include <set>

#include "base/mutex.h"
#include "drivers/driver.h"
#include "drivers/driver_context.h"
#include "drivers/qemu/agent_client.h"
#include "drivers/qemu/command_line.h"
#include "drivers/qemu/console_mux.h"
#include "drivers/qemu/qmp_client.h"

namespace vmm::drivers::qemu {

struct QemuOptions {
  std::string binary = "qemu-system-x86_64";
  size_t consoleLogLimit = 1 << 20;  // bytes per console log file (two are kept)
  size_t qemuLogLimit = 1 << 20;     // qemu.log (QEMU's own messages), cut by maintain()
  int sparePorts = 4;                // empty hotplug slots on q35
  Millis startTimeout = Millis(30000);
  // QEMU without root: each run gets a uid (= gid) of its own from [uidStart, uidStart +
  // uidCount), no capabilities and its images as descriptors (README.md, "Unprivileged QEMU").
  bool unprivileged = true;
  uint32_t uidStart = 1001000000;
  uint32_t uidCount = 65536;
};

class QemuDriver final : public HypervisorDriver {
 public:
  QemuDriver(DriverContext ctx, QemuOptions options = {});
  ~QemuDriver() override;

  model::DriverType type() const override { return model::DriverType::qemu; }
  DriverInfo probe() override;
  DriverCaps caps() const override {
    return {.snapshots = true, .memorySnapshots = true, .externalSnapshots = true, .deviceHotplug = true, .console = true, .save = true};
  }
  // Why KVM cannot run a vCPU here ("" when it can).
  std::string kvmUnusableReason() const;
  Status validate(const model::Domain& def) const override;

  Result<RunningDomain> start(const model::Domain& def, const StartOptions& options) override;
  Result<RunningDomain> reconnect(const model::Domain& def, const json& record) override;
  void release(const model::Domain& def, const json& record) override;
  std::optional<json> currentRecord(const model::Domain& def) override;

  Status shutdown(const model::Domain& def, const ShutdownOptions& options) override;
  Status destroy(const model::Domain& def, Deadline deadline) override;
  Status reboot(const model::Domain& def, Deadline deadline) override;
  Status reset(const model::Domain& def, Deadline deadline) override;
  Status suspend(const model::Domain& def, Deadline deadline) override;
  Status resume(const model::Domain& def, Deadline deadline) override;
  Status save(const model::Domain& def, const std::string& path, Deadline deadline) override;
  Result<json> stats(const model::Domain& def, Deadline deadline) override;

  Status attachDisk(const model::Domain& def, const model::Disk& disk, Deadline deadline) override;
  Status detachDisk(const model::Domain& def, const model::Disk& disk, Deadline deadline) override;
  Status attachNic(const model::Domain& def, const model::Nic& nic, Deadline deadline) override;
  Status detachNic(const model::Domain& def, const model::Nic& nic, Deadline deadline) override;

  Result<ExecResult> guestExec(const model::Domain& def, const ExecRequest& req, Deadline deadline) override;
  Result<json> guestCommand(const model::Domain& def, const std::string& command, const json& args,
                            Deadline deadline) override;
  Result<fs::UniqueFd> openConsole(const model::Domain& def) override;
  Result<std::string> consoleLog(const model::Domain& def, size_t maxBytes) override;
  void maintain() override;

  Result<SnapshotResult> snapshotCreate(const model::Domain& def, const SnapshotRequest& request, Deadline deadline) override;
  Result<SnapshotRevertResult> snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;
  Result<SnapshotDeleteResult> snapshotDelete(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;

  // A running QEMU (public for the helpers in this folder).
  struct Instance;

 private:
  std::shared_ptr<Instance> find(const std::string& name) const;
  Result<std::shared_ptr<Instance>> running(const model::Domain& def) const;
  std::string runDir(const std::string& name) const;
  std::string stateDir(const std::string& name) const;
  QemuCaps qemuCaps() const;  // what probe() learnt (empty before it)
  // Wires monitor events, process exit and the console of a started or reconnected QEMU.
  Status attach(const std::shared_ptr<Instance>& inst, fs::UniqueFd monitor, Deadline deadline);
  void onMonitorEvent(const std::shared_ptr<Instance>& inst, const std::string& event, const json& data);
  void onProcessExit(const std::shared_ptr<Instance>& inst);
  Status terminate(const std::shared_ptr<Instance>& inst, Deadline deadline);
  json recordOf(const Instance& inst) const;
  RunningDomain runningOf(const Instance& inst, model::DomainState state) const;
  // Where each graphics device listens (the socket path, or the TCP address and port QEMU took).
  json graphicsInfo(Instance& inst, const model::Domain& def, Deadline deadline) const;
  Result<ResolvedDisk> resolveDisk(const model::Disk& disk) const;  // through the host services
  // qemu-img on a shut-off domain's images, and what a vmm-made overlay records as its backing
  // (HostServices::runQemuImg, recordedBacking): the storage layer runs and parses for the driver.
  Status qemuImg(const std::vector<std::string>& args, const QemuImgAccess& access, Deadline deadline) const;
  std::pair<std::string, std::string> recordedBacking(const std::string& file) const;
  Result<int> freePort(Instance& inst, const std::string& deviceId);
  // device_del and the wait for the guest to let go of the device.
  Status unplugDevice(Instance& inst, const std::string& deviceId, Deadline deadline);
  Status waitDeviceDeleted(Instance& inst, const std::string& deviceId, Deadline deadline);
  Result<json> migrateToFile(Instance& inst, const std::string& path, Deadline deadline);
  Status restoreFromFile(Instance& inst, const std::string& path, Deadline deadline);
  // The snapshot calls on the driver data's JSON (qemu_snapshots.cc): what is stored with the
  // snapshot, and the answers the public calls turn into their typed results.
  Result<json> createSnapshotData(const model::Domain& def, const SnapshotRequest& request, Deadline deadline);
  Result<json> revertSnapshotData(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline);
  Result<json> deleteSnapshotData(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline);
  // snapshotDelete of an external snapshot a killed vmmd did not record (qemu_snapshots.cc).
  Result<json> removeExternalOrphan(const model::Domain& def, const std::string& name, const json& data, Deadline deadline);
  // A uid no other QEMU of this vmmd runs as (reserved until releaseUid or the instance ends).
  Result<uid_t> reserveUid();
  void releaseUid(uid_t uid);

  DriverContext ctx_;
  QemuOptions options_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Instance>> instances_ VMM_GUARDED_BY(mu_);  // by domain name
  std::optional<DriverInfo> probed_ VMM_GUARDED_BY(mu_);
  QemuCaps caps_ VMM_GUARDED_BY(mu_);                   // from `--version` and `-machine help`
  std::set<uid_t> uidsInUse_ VMM_GUARDED_BY(mu_);       // by starting and running QEMUs
};

}  // namespace vmm::drivers::qemu
