// System containers without liblxc: clone() into new namespaces, pivot_root into a directory
// rootfs, cgroup limits, a pty console served by a monitor process that outlives vmmd.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <optional>

#include "base/mutex.h"
#include "drivers/driver.h"
#include "drivers/driver_context.h"
#include "drivers/lxc/cgroups.h"
#include "drivers/qemu/console_mux.h"

namespace vmm::drivers::lxc {

class LxcDriver final : public HypervisorDriver {
 public:
  explicit LxcDriver(DriverContext ctx) : ctx_(std::move(ctx)) {}
  ~LxcDriver() override;

  model::DriverType type() const override { return model::DriverType::lxc; }
  DriverInfo probe() override;
  // Snapshots are copies of the rootfs: no memory image, no overlays.
  DriverCaps caps() const override { return {.snapshots = true, .console = true}; }
  Status validate(const model::Domain& def) const override;

  Result<RunningDomain> start(const model::Domain& def, const StartOptions& options) override;
  Result<RunningDomain> reconnect(const model::Domain& def, const json& record) override;
  void release(const model::Domain& def, const json& record) override;
  std::optional<json> currentRecord(const model::Domain& def) override;
  std::optional<json> currentInfo(const model::Domain& def) override;
  Status shutdown(const model::Domain& def, const ShutdownOptions& options) override;
  Status destroy(const model::Domain& def, Deadline deadline) override;
  Status reboot(const model::Domain& def, Deadline deadline) override;
  Status suspend(const model::Domain& def, Deadline deadline) override;
  Status resume(const model::Domain& def, Deadline deadline) override;
  Result<json> stats(const model::Domain& def, Deadline deadline) override;
  Result<ExecResult> guestExec(const model::Domain& def, const ExecRequest& req, Deadline deadline) override;
  Result<fs::UniqueFd> openConsole(const model::Domain& def) override;
  Result<std::string> consoleLog(const model::Domain& def, size_t maxBytes) override;
  // lxc_snapshots.cc: copies of the rootfs.
  Result<SnapshotResult> snapshotCreate(const model::Domain& def, const SnapshotRequest& request, Deadline deadline) override;
  Result<SnapshotRevertResult> snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;
  Result<SnapshotDeleteResult> snapshotDelete(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) override;

 private:
  struct Veth {
    std::string ifname, mac, bridge;
  };
  struct Container {
    std::string name, runId;
    pid_t initPid = -1, monitorPid = -1;
    uint64_t initStart = 0;
    bool userns = false;
    ContainerCgroups cgroups;
    std::vector<Veth> veths;
    fs::UniqueFd pidfd;
    std::shared_ptr<qemu::ConsoleMux> console;
    Mutex mu;
    CondVar cv;
    bool exited VMM_GUARDED_BY(mu) = false;
    bool stopRequested VMM_GUARDED_BY(mu) = false;
    bool waitExit(Deadline deadline) {
      MutexLock lock(mu);
      return cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(mu) { return exited; });
    }
  };

  // The rootfs directory: the path given, or the dir-pool volume resolved by the daemon.
  Result<std::string> rootfsDir(const model::Domain& def) const;
  // What can only be checked once the rootfs is known: init exists, /proc /sys /dev.
  Status validateRootfs(const model::Domain& def, const std::string& rootfs) const;
  // vmm-nsexec (drivers/lxc/nsexec_main.cc): next to vmmd (or in the build tree), else /usr/lib/vmm.
  static std::string nsexecHelper();
  std::string runDir(const std::string& name) const { return ctx_.runDir + "/lxc/" + name; }
  std::string consoleLogPath(const std::string& name) const { return ctx_.stateDir + "/lxc/" + name + "/console.log"; }
  std::shared_ptr<Container> find(const std::string& name) const;
  Result<std::shared_ptr<Container>> running(const model::Domain& def) const;
  json recordOf(const Container& c) const;
  RunningDomain runningOf(const Container& c, model::DomainState state) const;
  Status plugVeths(const model::Domain& def, Container& c);
  Status watch(const std::shared_ptr<Container>& c);
  void onExit(const std::shared_ptr<Container>& c);
  Status killAll(const std::shared_ptr<Container>& c, Deadline deadline);
  void cleanup(const std::string& name, const ContainerCgroups& cgroups, const std::vector<Veth>& veths);

  DriverContext ctx_;
  mutable Mutex mu_;
  std::optional<DriverInfo> probed_ VMM_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Container>> containers_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm::drivers::lxc
