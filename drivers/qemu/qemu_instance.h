// One running QEMU process as the driver tracks it (shared by the files of drivers/qemu).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/mutex.h"
#include "base/strings.h"
#include "drivers/qemu/qemu_driver.h"

namespace vmm::drivers::qemu {

// N of a "/dev/fdset/N" file name QEMU uses or reports (qemu_files.cc).
std::optional<int> fdsetId(const std::string& qemuName);

struct QemuDriver::Instance {
  std::string name;
  std::string runId;
  pid_t pid = -1;
  uint64_t startTime = 0;  // /proc/PID/stat field 22: tells a reused pid apart
  bool child = false;      // started by this vmmd (else reconnected after a restart)
  fs::UniqueFd pidfd;
  std::string runDir, stateDir;
  std::string accel;
  DeviceLayout layout;
  std::set<int> usedPorts;  // q35 root ports in use
  struct Tap {
    std::string ifname, mac;
  };
  std::vector<Tap> taps;
  // The uid and gid QEMU runs as (0: root, [qemu] unprivileged = false); one per run.
  uid_t uid = 0;
  gid_t gid = 0;
  json graphics = json::array();  // runtime info: per device its socket, or TCP address and port
  std::shared_ptr<QmpClient> qmp;
  std::unique_ptr<AgentClient> agent;
  std::shared_ptr<ConsoleMux> console;

  mutable Mutex mu;  // guards the fields below, and taps/usedPorts/layout.portOf after start
  CondVar cv;
  bool exited VMM_GUARDED_BY(mu) = false;
  int exitStatus VMM_GUARDED_BY(mu) = -1;            // wait status when known (children only)
  bool stopRequested VMM_GUARDED_BY(mu) = false;     // destroy/shutdown/save by vmmd: not an unexpected stop
  int pauseChangesRequested VMM_GUARDED_BY(mu) = 0;  // STOP/RESUME events caused by vmmd itself
  std::string shutdownReason VMM_GUARDED_BY(mu);     // from the last SHUTDOWN event
  std::string pauseReason VMM_GUARDED_BY(mu);        // from an I/O error before a STOP
  std::set<std::string> deletedDevices VMM_GUARDED_BY(mu);
  std::string migrationStatus VMM_GUARDED_BY(mu);
  // The files QEMU was given as descriptors: "/dev/fdset/N" -> the path vmmd opened.
  std::map<std::string, std::string> fdsetFiles VMM_GUARDED_BY(mu);

  std::string qmpPath() const { return runDir + "/qmp.sock"; }
  std::string agentPath() const { return runDir + "/qga.sock"; }
  std::string consolePath() const { return runDir + "/console.sock"; }
  std::string consoleLogPath() const { return stateDir + "/console.log"; }
  std::string qemuLogPath() const { return stateDir + "/qemu.log"; }
  // QEMU's working directory, the only one it may write: its uid's, 0700, inside runDir
  // (root's). Display sockets, secrets and private copies of boot files are made here.
  std::string guestDir() const { return runDir + "/guest"; }

  // The image file behind a node's filename as QEMU reports it: a path, "/dev/fdset/N", or
  // "json:{...}" (qemu_files.cc).
  std::string realFile(const std::string& qemuName) const;
  // The fd set QEMU holds `path` in, or -1.
  int fdsetOf(const std::string& path) const {
    MutexLock lock(mu);
    for (const auto& [name, file] : fdsetFiles)
      if (file == path) return fdsetId(name).value_or(-1);
    return -1;
  }

  // Waits until the process has exited or the deadline passes; true if it exited.
  bool waitExit(Deadline deadline) {
    MutexLock lock(mu);
    return cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(mu) { return exited; });
  }
  bool hasExited() {
    MutexLock lock(mu);
    return exited;
  }
};

// Waits for the snapshot jobs (save, load, delete) an earlier vmmd started in this QEMU and was
// killed before seeing end - a snapshot-save job keeps the guest stopped while it runs - and
// dismisses them. Defined in qemu_snapshots.cc.
Status settleSnapshotJobs(QemuDriver::Instance& inst, Deadline deadline);

// Descriptors instead of paths (qemu_files.cc): an unprivileged QEMU opens no image itself.
inline constexpr const char* kFdsetPrefix = "/dev/fdset/";
// Opens a disk layer for QEMU: read-write for a writable top, read-only otherwise.
Result<fs::UniqueFd> openImageFor(const std::string& path, bool writable);
// The descriptor QEMU gets for a layer. A window of a device (ResolvedDisk::size, an LV on its
// PV without device-mapper) becomes a loop device of just those bytes (base/loop_window.h),
// and the layer is then a whole block device: QEMU never holds the PV with other LVs on it.
Result<fs::UniqueFd> openLayerFor(ResolvedDisk& layer, bool writable);
// Hands `path` (or `fd`, opened for `path`) to a running QEMU (QMP add-fd), into fd set `set`
// or a new one; returns the set and remembers it in inst.fdsetFiles.
Result<int> passImage(QemuDriver::Instance& inst, const std::string& path, bool writable, Deadline deadline, int set = -1);
Result<int> passImageFd(QemuDriver::Instance& inst, fs::UniqueFd fd, const std::string& path, Deadline deadline, int set = -1);
// A private copy of an open file in QEMU's working directory (a boot file it may not read):
// created, never replaced, 0400 and QEMU's; streamed, not read into memory.
Status copyForQemu(int from, const std::string& dest, uid_t uid, gid_t gid);
// Lets QEMU close fd set `set` (once no node uses it) and forgets its file.
void removeFdset(QemuDriver::Instance& inst, int set);
// After a reconnect: which file each fd set holds (QEMU keeps the path as the set's opaque).
void loadFdsets(QemuDriver::Instance& inst, Deadline deadline);

}  // namespace vmm::drivers::qemu
