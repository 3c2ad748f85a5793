// The interface every hypervisor backend implements (qemu, lxc, xen, test).
//
// The daemon serialises mutations of one domain (its job), so a driver never sees two
// concurrent lifecycle calls for the same domain; calls for different domains, stats and
// guest-agent calls may arrive concurrently from several threads. Every call that talks to
// a hypervisor, guest or child process takes a deadline and must return by it.
//
// An operation a backend cannot do keeps the default implementation, which returns a clear
// "unsupported" error - never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/result.h"
#include "base/time_util.h"
#include "drivers/snapshot_types.h"
#include "model/domain.h"
#include "model/domain_state.h"
#include "model/host_resources.h"

namespace vmm::drivers {

using json = nlohmann::json;

struct DriverInfo {
  bool available = false;
  std::string reason;   // why not available
  std::string version;  // hypervisor version ("QEMU 7.2.22")
  json details = json::object();  // accelerator, binaries, features
};

// What a backend can do, so the daemon asks about abilities instead of driver types. An
// operation a backend lacks still answers "unsupported" when called.
struct DriverCaps {
  bool snapshots = false;          // snapshotCreate/Revert/Delete
  bool memorySnapshots = false;    // a running domain's snapshot can hold its memory
  bool externalSnapshots = false;  // overlays on disk images (not only internal ones)
  bool deviceHotplug = false;      // disks and NICs attached to and detached from a running domain
  bool console = false;            // openConsole
  bool save = false;               // save() and a start restored from its file
};

// What start() and reconnect() return; persisted as the domain's runtime record.
struct RunningDomain {
  std::string runId;         // new for every start; events carry it so stale ones are ignored
  model::DomainState state = model::DomainState::running;
  json record = json::object();  // driver-private: what reconnect() and release() need
  json info = json::object();    // public runtime details shown by the API (pid, accelerator, ports)
};

// Produced by storage and network, consumed here (model/host_resources.h).
using model::kMaxBackingLayers;
using model::PreparedPort;
using model::QemuImgAccess;
using model::ResolvedDisk;

// Services the daemon offers to drivers (storage and network live outside the driver).
class HostServices {
 public:
  virtual ~HostServices() = default;
  virtual Result<ResolvedDisk> resolveDisk(const model::Disk& disk) = 0;
  // qemu-img ARGS on local image files (a shut-off domain's snapshots), run by the storage
  // layer within `access`.
  virtual Status runQemuImg(const std::vector<std::string>& args, const QemuImgAccess& access, Deadline deadline) = 0;
  // The backing file (made absolute) and its format that a qcow2 image's header records, read
  // by the storage layer's own parser (nothing is opened through it); {"", ""} for anything else.
  virtual std::pair<std::string, std::string> recordedBacking(const std::string& file) = 0;
  // Creates the host side of a NIC (tap on the right bridge, port profile applied).
  virtual Result<PreparedPort> plugNic(const model::Domain& dom, const model::Nic& nic, const std::string& kind) = 0;
  virtual void unplugNic(const model::Domain& dom, const model::Nic& nic, const std::string& ifname) = 0;
  // A host-side link the driver made itself (a container's veth) becomes the NIC's port: it
  // joins the NIC's bridge (or its network's) with the NIC's port profile. Returns the bridge.
  // unplugNic releases it.
  virtual Result<std::string> attachPort(const model::Domain& dom, const model::Nic& nic, const std::string& ifname) = 0;
};

enum class StopCause { shutdown, destroyed, crashed, failed, gone };
std::string_view stopCauseName(StopCause c);

// How a driver reports what happens without a request (guest powered off, QEMU killed...).
// Called from driver threads; implementations must not block on a domain's job.
class DriverObserver {
 public:
  virtual ~DriverObserver() = default;
  virtual void domainStopped(const std::string& name, const std::string& runId, StopCause cause,
                             const std::string& detail) = 0;
  virtual void domainStateChanged(const std::string& name, const std::string& runId, model::DomainState state,
                                  const std::string& reason) = 0;
  virtual void domainEvent(const std::string& name, const std::string& runId, const std::string& type,
                           const json& data) = 0;
};

struct StartOptions {
  Deadline deadline = Deadline::after(Millis(60000));
  bool paused = false;          // leave the guest paused after start
  std::string restoreFrom;      // a state file written by save()
};

struct ShutdownOptions {
  Deadline deadline = Deadline::after(Millis(60000));  // graceful attempts end here
  bool forceAtDeadline = true;  // destroy when the guest did not stop in time
};

struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string input;            // stdin
  bool captureOutput = true;
  // Output as it is produced (stream 1 = stdout, 2 = stderr), called from the caller's thread;
  // drivers that cannot stream deliver everything in the result only.
  std::function<void(int stream, std::string_view data)> onOutput;
};

struct ExecResult {
  int exitCode = -1;
  int signal = 0;
  std::string out, err;
  bool outTruncated = false, errTruncated = false;
};
// The output part of an exec or run result: "stdout"/"stderr" as UTF-8 text (bytes that are
// not UTF-8 replaced by U+FFFD), plus "stdout_b64"/"stderr_b64" with the exact bytes only when
// they are not valid UTF-8, and the *_truncated flags.
void addExecOutput(json& out, const ExecResult& r);

class HypervisorDriver {
 public:
  virtual ~HypervisorDriver() = default;

  virtual model::DriverType type() const = 0;
  std::string typeName() const { return std::string(model::enumName(model::kDriverTypes, type())); }
  // Cheap after the first call (cached); says whether the backend can run here and why not.
  virtual DriverInfo probe() = 0;
  virtual DriverCaps caps() const { return {}; }
  virtual void setObserver(DriverObserver* observer) { observer_ = observer; }
  virtual void setHostServices(HostServices* services) { services_ = services; }

  // Driver-specific checks at define time (machine types, buses).
  virtual Status validate(const model::Domain& def) const;

  virtual Result<RunningDomain> start(const model::Domain& def, const StartOptions& options);
  // Re-attaches to a domain that kept running while vmmd was down. An error means it is gone;
  // the daemon then calls release().
  virtual Result<RunningDomain> reconnect(const model::Domain& def, const json& record);
  // Frees what a stopped domain still holds (taps, sockets, cgroups) after it died unobserved.
  virtual void release(const model::Domain& def, const json& record);
  // The current driver-private record of a running domain, when it changed since start()
  // (hot-plugged taps, a paused simulated guest); persisted by the daemon after mutations.
  virtual std::optional<json> currentRecord(const model::Domain& def);
  // The current public runtime details (RunningDomain::info) when they changed since start()
  // (a container's new init after a reboot); the daemon shows them after mutations.
  virtual std::optional<json> currentInfo(const model::Domain&) { return std::nullopt; }

  virtual Status shutdown(const model::Domain& def, const ShutdownOptions& options);
  virtual Status destroy(const model::Domain& def, Deadline deadline);
  virtual Status reboot(const model::Domain& def, Deadline deadline);
  virtual Status reset(const model::Domain& def, Deadline deadline);
  virtual Status suspend(const model::Domain& def, Deadline deadline);
  virtual Status resume(const model::Domain& def, Deadline deadline);
  // Writes the running state to `path` and stops the domain.
  virtual Status save(const model::Domain& def, const std::string& path, Deadline deadline);

  virtual Result<json> stats(const model::Domain& def, Deadline deadline);

  virtual Status attachDisk(const model::Domain& def, const model::Disk& disk, Deadline deadline);
  virtual Status detachDisk(const model::Domain& def, const model::Disk& disk, Deadline deadline);
  virtual Status attachNic(const model::Domain& def, const model::Nic& nic, Deadline deadline);
  virtual Status detachNic(const model::Domain& def, const model::Nic& nic, Deadline deadline);

  // Guest agent (VMs) or in-namespace execution (containers).
  virtual Result<ExecResult> guestExec(const model::Domain& def, const ExecRequest& req, Deadline deadline);
  // Other agent commands: "ping", "interfaces", "shutdown", "fsfreeze", "fsthaw", "info".
  virtual Result<json> guestCommand(const model::Domain& def, const std::string& command, const json& args,
                                    Deadline deadline);

  // A bidirectional byte stream to the console (a socket: reads are console output, writes
  // are keyboard input). Several may be open at once; closing it detaches.
  virtual Result<fs::UniqueFd> openConsole(const model::Domain& def);
  // The bounded log of console output, if the driver keeps one.
  virtual Result<std::string> consoleLog(const model::Domain& def, size_t maxBytes);
  // Periodic upkeep from the daemon's maintenance worker (every few seconds, never on the
  // event loop): keeps the logs its processes write under their size caps.
  virtual void maintain() {}

  // Snapshots, for running and shut-off domains (the driver knows which: `def` is the running
  // instance's definition when it runs). The daemon keeps the tree and calls these under the
  // domain's job.
  //
  // snapshotCreate returns the snapshot's disks, the driver data stored with it and handed
  // back to revert/delete (inside `snapshot.driverData`), and the overlays external snapshots
  // move the disks to. After snapshotRevert the domain runs (or is paused/shut off) as when the
  // snapshot was taken. snapshotDelete removes what the snapshot holds (internal: the qcow2
  // snapshots; external: merges the overlay into its backing file - block-commit when running,
  // qemu-img commit when shut off - moving the disks back).
  virtual Result<SnapshotResult> snapshotCreate(const model::Domain& def, const SnapshotRequest& request,
                                                Deadline deadline);
  virtual Result<SnapshotRevertResult> snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot,
                                                      Deadline deadline);
  virtual Result<SnapshotDeleteResult> snapshotDelete(const model::Domain& def, const model::Snapshot& snapshot,
                                                      Deadline deadline);

 protected:
  Error notSupported(std::string_view op) const;
  DriverObserver* observer_ = nullptr;
  HostServices* services_ = nullptr;
};

}  // namespace vmm::drivers
