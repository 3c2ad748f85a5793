// From the domain model to a QEMU command line. A pure function of its input (no I/O), so
// every case is a golden file: tests/data/qemu-argv/NAME.json -> NAME.args.
//
// Devices are described with QEMU's JSON syntax (-device/-blockdev/-netdev '{...}'), which
// needs no escaping of paths or serial numbers. The monitor, agent and console sockets are
// listening sockets created by vmmd and inherited as file descriptors, so vmmd can connect
// before QEMU even looks at them and no early event is lost.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "drivers/driver.h"
#include "drivers/qemu/qemu_caps.h"
#include "model/domain.h"

namespace vmm::drivers::qemu {

struct NicBackend {
  std::string kind;  // "tap" (fd given) or "user"
  int fd = -1;       // child-side fd number of the tap
};

struct LaunchSpec {
  const model::Domain* def = nullptr;
  std::string binary = "qemu-system-x86_64";
  std::string accel = "tcg";              // "kvm" or "tcg"
  QemuCaps caps{};                        // what the binary offers (empty: not checked)
  std::vector<ResolvedDisk> disks;        // one per def->disks
  std::vector<NicBackend> nics;           // one per def->nics
  int qmpFd = -1, agentFd = -1, consoleFd = -1;  // child-side fd numbers; -1 = none
  std::map<std::string, std::string> secretFiles;  // secret id -> file holding it
  int sparePorts = 4;                     // empty hotplug slots (q35)
  bool incoming = false;                  // -incoming defer (restoring a saved state)
  std::string runDir;                     // where QEMU makes its graphics sockets (relative: to its cwd)
  struct FdSet {
    int fd = -1;       // child-side fd number
    int set = 0;       // fd set id; a disk layer's path is then "/dev/fdset/<set>"
    std::string path;  // the file vmmd opened (the set's opaque)
  };
  std::vector<FdSet> fdSets;
  std::string kernel, initrd;             // what QEMU opens instead of def->boot's paths ("" = those)
};

// Where devices sit, so that hotplug can find free slots later.
struct DeviceLayout {
  std::string machine;                    // resolved machine type (an alias's versioned machine)
  int rootPorts = 0;                      // q35: pcie-root-ports rp1..rpN
  std::map<std::string, int> portOf;      // device id -> root port number
  bool hotplug = false;                   // the machine can hot-plug PCI devices
};

struct CommandLine {
  std::vector<std::string> argv;
  DeviceLayout layout;
};

Result<CommandLine> buildCommandLine(const LaunchSpec& spec);

// Identifiers shared by the command line and hotplug.
std::string diskDeviceId(const model::Disk& d);   // "disk-vda"
// `layer` 0 is the disk's own image; 1, 2, ... the layers below it ("fmt-vda-1").
std::string diskFileNode(const model::Disk& d, size_t layer = 0);   // "file-vda"
std::string diskFormatNode(const model::Disk& d, size_t layer = 0); // "fmt-vda"
std::string nicDeviceId(const model::Nic& n);     // "net-525400aabbcc"
std::string nicNetdevId(const model::Nic& n);     // "netdev-525400aabbcc"
// Blockdev JSON for a disk's protocol and format nodes, one pair per layer, bottom layer first
// (the order they are added in); the top pair is "file-<target>" and "fmt-<target>".
std::vector<json> diskNodesJson(const model::Disk& d, const ResolvedDisk& r);
// The -device JSON of a disk / NIC; `bus` is its root port (q35) or "" (pc/microvm).
json diskDeviceJson(const model::Disk& d, const std::string& machine, const std::string& bus);
json nicDeviceJson(const model::Nic& n, const std::string& machine, const std::string& bus);
// -netdev JSON.
json netdevJson(const model::Nic& n, const NicBackend& b);
// The unix socket of graphics device `index` listening on no TCP address: "RUNDIR/vnc0.sock".
std::string graphicsSocketPath(const std::string& runDir, const model::Domain& d, size_t index);
// Machine families the driver knows: q35, pc (and their versioned names), microvm.
std::string machineFamily(const std::string& machine);

}  // namespace vmm::drivers::qemu
