// An in-memory simulated hypervisor, like libvirt's test:///: it implements the whole
// HypervisorDriver interface with state transitions and plausible statistics, so the API can
// be used and tested without QEMU.
//
// Simulated guests "outlive" the daemon: their state is in the runtime record, and
// reconnect() restores it. Behaviour can be steered per domain through the definition's
// metadata, under the key "test_driver":
//   "start_delay": "200ms"        start takes this long
//   "fail_start": "message"       start fails with this message
//   "shutdown_delay": "1s"        the guest takes this long to power off on request
//   "ignore_shutdown": true       the guest ignores shutdown requests
//   "destroy_delay": "300ms"      destroy takes this long (the guest runs, and may pause, meanwhile)
//   "poweroff_after": "2s"        the guest powers itself off this long after start
//   "crash_after": "2s"           the guest crashes this long after start
//   "agent": "ok" | "absent" | "hang"   guest agent behaviour (default ok)
//   "fail_reconnect": true        the guest is found dead when vmmd restarts
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>

#include "base/mutex.h"
#include "drivers/driver.h"
#include "drivers/driver_context.h"

namespace vmm::drivers {

class TestDriver final : public HypervisorDriver {
 public:
  explicit TestDriver(DriverContext ctx) : ctx_(std::move(ctx)) {}

  model::DriverType type() const override { return model::DriverType::test; }
  DriverInfo probe() override;
  // A simulated guest: everything but a console stream (it keeps a console log only).
  DriverCaps caps() const override {
    return {.snapshots = true, .memorySnapshots = true, .externalSnapshots = true, .deviceHotplug = true, .save = true};
  }
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
  Result<std::string> consoleLog(const model::Domain& def, size_t maxBytes) override;
  Result<SnapshotResult> snapshotCreate(const model::Domain& def, const SnapshotRequest& request, Deadline deadline) override;
  Result<SnapshotRevertResult> snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;
  Result<SnapshotDeleteResult> snapshotDelete(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;

 private:
  struct Guest {
    std::string runId;
    int64_t bootUs = 0;
    bool paused = false;
    int64_t pausedUs = 0;      // accumulated paused time
    int64_t pausedSinceUs = 0;
    int vcpus = 1;
    uint64_t memory = 0;
    std::vector<std::string> disks, nics;
    EventLoop::TimerId timer = 0;
    std::string console;
  };
  json recordOf(const Guest& g) const;
  RunningDomain runningOf(const Guest& g) const;
  void scheduleSelfStop(const model::Domain& def, Guest& g);
  void stopGuest(const std::string& name, const std::string& runId, StopCause cause, const std::string& detail);
  Result<Guest*> findLocked(const model::Domain& def) VMM_REQUIRES(mu_);
  static json behaviour(const model::Domain& def);
  static std::optional<Millis> behaviourDuration(const model::Domain& def, const char* key);

  DriverContext ctx_;
  Mutex mu_;
  std::map<std::string, Guest> guests_ VMM_GUARDED_BY(mu_);  // by domain name
};

}  // namespace vmm::drivers
