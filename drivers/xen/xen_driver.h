// Xen guests (PV, PVH, HVM) through libxl.
//
// probe() opens a libxl context once; on a host without a Xen hypervisor that fails, the
// driver reports itself unavailable with the reason, and every operation returns
// unavailable("Xen: <reason>") - definitions are still validated and stored.
//
// On a Xen dom0: start = libxl_domain_create_new from the JSON made by libxl_config.h (paused),
// then each vif gets its port (bridge + profile) through HostServices::attachPort, then unpause.
// Shutdown/reboot/crash arrive as libxl events; the driver carries out on_poweroff / on_reboot /
// on_crash (libxl only records them) and tells the observer.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "base/mutex.h"
#include "drivers/driver.h"
#include "drivers/driver_context.h"
#include "drivers/xen/libxl_config.h"
#include "drivers/xen/libxl_host.h"

namespace vmm::drivers::xen {

class XenDriver final : public HypervisorDriver {
 public:
  explicit XenDriver(DriverContext ctx) : ctx_(std::move(ctx)) {}
  ~XenDriver() override;

  model::DriverType type() const override { return model::DriverType::xen; }
  DriverInfo probe() override;
  DriverCaps caps() const override { return {.console = true, .save = true}; }
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
  Result<SnapshotResult> snapshotCreate(const model::Domain& def, const SnapshotRequest& request, Deadline deadline) override;
  Result<SnapshotRevertResult> snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;
  Result<SnapshotDeleteResult> snapshotDelete(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;

 private:
  struct Guest {
    model::Domain def;
    std::string runId;
    GuestType type = GuestType::hvm;
    uint32_t domid = 0;
    std::vector<std::pair<int, std::string>> ports;  // devid, host ifname
    Mutex mu;
    CondVar cv;
    bool stopRequested VMM_GUARDED_BY(mu) = false;    // shutdown/destroy/save in progress: events are expected
    bool rebootRequested VMM_GUARDED_BY(mu) = false;  // an API reboot restarts even with on_reboot = destroy
    bool gone VMM_GUARDED_BY(mu) = false;
  };

  // The libxl host, or unavailable("Xen: <reason>").
  Result<LibxlHost*> host();
  Status requireHost();
  std::string vifScript() const { return ctx_.runDir + "/xen/vif-vmm"; }
  Status writeVifScript() const;
  // Creates the domain (paused), plugs its ports, unpauses unless `paused`.
  Result<std::shared_ptr<Guest>> launch(const model::Domain& def, bool paused, const std::string& restoreFrom,
                                        Deadline deadline);
  void unplugPorts(const model::Domain& def, const std::vector<std::pair<int, std::string>>& ports);
  Result<std::shared_ptr<Guest>> running(const model::Domain& def);
  RunningDomain runningOf(const Guest& g, model::DomainState state) const;
  json recordOf(const Guest& g) const;
  void onDomainEvent(uint32_t domid, XenShutdownReason reason, bool dead);
  void handleShutdown(std::shared_ptr<Guest> g, XenShutdownReason reason);

  DriverContext ctx_;
  std::once_flag probeOnce_;
  DriverInfo info_;
  std::unique_ptr<LibxlHost> host_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Guest>> guests_ VMM_GUARDED_BY(mu_);  // by domain name
};

}  // namespace vmm::drivers::xen
