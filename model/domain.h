// The domain model: one definition for VMs (qemu, xen), containers (lxc) and simulated
// guests (test). Parsing validates everything that can be checked without I/O; drivers add
// their own checks (machine types, buses they support) through HypervisorDriver::validate.
//
// Canonical JSON (formatDomain) is fully expanded: defaults are written out, so what
// `vmctl dumpjson` shows is what runs. Sizes are strings with exact units ("512MiB").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::model {

enum class DriverType { qemu, lxc, xen, test };
extern const EnumTable<DriverType> kDriverTypes;

// ---- disks
enum class DiskBus { virtio, scsi, sata, ide, usb, xen };
enum class DiskDevice { disk, cdrom };
enum class DiskFormat { raw, qcow2 };
enum class DiskCache { none, writeback, writethrough, directsync, unsafe };
extern const EnumTable<DiskBus> kDiskBuses;
extern const EnumTable<DiskDevice> kDiskDevices;
extern const EnumTable<DiskFormat> kDiskFormats;
extern const EnumTable<DiskCache> kDiskCaches;

struct DiskSource {
  std::string path;    // a host file or block device, or
  std::string pool;    // a volume of a vmm pool
  std::string volume;
  bool isVolume() const { return !pool.empty(); }
  std::string describe() const { return isVolume() ? pool + "/" + volume : path; }
};

struct Disk {
  std::string target;  // guest device name: "vda", "sda", "hda"; assigned when omitted
  DiskDevice device = DiskDevice::disk;
  DiskBus bus = DiskBus::virtio;
  std::optional<DiskFormat> format;  // from the volume, or the file extension, when omitted
  DiskCache cache = DiskCache::writeback;  // QEMU's default; "none" (O_DIRECT) fails on tmpfs
  DiskSource source;
  bool readonly = false;
  std::optional<int> bootOrder;
  std::string serial;
};

// ---- network interfaces
enum class NicType { network, bridge, user, direct };
enum class NicModel { virtio, e1000, e1000e, rtl8139 };
enum class DirectMode { vepa, bridge, private_, passthrough };
enum class VlanMode { access, trunk };
enum class AclAction { allow, deny };
enum class AclDirection { in, out, both };
enum class AclProtocol { any, tcp, udp, icmp, icmpv6, arp };
extern const EnumTable<NicType> kNicTypes;
extern const EnumTable<NicModel> kNicModels;
extern const EnumTable<DirectMode> kDirectModes;
extern const EnumTable<VlanMode> kVlanModes;
extern const EnumTable<AclAction> kAclActions;
extern const EnumTable<AclDirection> kAclDirections;
extern const EnumTable<AclProtocol> kAclProtocols;

struct PortForward {  // user-mode networking: host_address:host_port -> guest_port
  std::string protocol = "tcp";  // tcp | udp
  std::string hostAddress = "127.0.0.1";
  int hostPort = 0;
  int guestPort = 0;
};

struct Vlan {
  VlanMode mode = VlanMode::access;
  int tag = 0;                 // access
  std::vector<int> tags;       // trunk
  std::optional<int> native;   // trunk: untagged frames belong to this VLAN
};

struct Bandwidth {             // bits per second; burst in bytes
  uint64_t average = 0;
  uint64_t peak = 0;
  uint64_t burst = 0;
};

struct AclRule {
  AclAction action = AclAction::deny;
  AclDirection direction = AclDirection::both;  // "in" = towards the guest
  AclProtocol protocol = AclProtocol::any;
  std::string remote;         // CIDR of the other end; empty = any
  int portMin = 0, portMax = 0;  // tcp/udp destination port range; 0 = any
};

struct PortProfile {
  std::optional<Vlan> vlan;
  std::optional<Bandwidth> inbound;   // towards the guest
  std::optional<Bandwidth> outbound;  // from the guest
  std::vector<AclRule> acl;           // first match wins; default allow
  bool spoofCheck = false;            // drop frames whose source MAC/IP is not the NIC's
  std::vector<std::string> allowedIps;  // with spoofCheck: the guest's addresses
  bool isolated = false;              // no traffic to other isolated ports of the bridge
  std::string mirrorTo;               // host interface receiving a copy of the port's traffic
  bool empty() const {
    return !vlan && !inbound && !outbound && acl.empty() && !spoofCheck && !isolated && mirrorTo.empty();
  }
};

struct Nic {
  NicType type = NicType::network;
  std::string network;     // type network
  std::string bridge;      // type bridge
  std::string device;      // type direct: host interface for macvtap
  DirectMode directMode = DirectMode::vepa;
  std::string mac;         // generated at define time when omitted
  NicModel model = NicModel::virtio;
  std::string ifname;      // host-side name; generated when omitted
  std::vector<PortForward> forwards;  // type user
  // Type user: QEMU's slirp without restrict=on. The guest then opens connections to anywhere the
  // host reaches, including the host's own loopback (slirp's 10.0.2.2 is host 127.0.0.1, where
  // vmmd's API listens). QEMU 7.2 has no switch for outbound traffic without the loopback.
  bool hostLoopback = false;
  PortProfile port;
};

// ---- consoles and graphics
enum class ConsoleType { serial, virtio };
enum class GraphicsType { vnc, spice };
extern const EnumTable<ConsoleType> kConsoleTypes;
extern const EnumTable<GraphicsType> kGraphicsTypes;

struct Console {
  ConsoleType type = ConsoleType::serial;
  bool log = true;  // keep a bounded log of the output
};

struct Graphics {
  GraphicsType type = GraphicsType::vnc;
  std::string listen;    // empty ("unix"): a socket in the domain's private runtime directory; else a TCP address
  int port = 0;          // TCP only; 0 = first free port
  std::string password;  // redacted ("********") in definitions; generated for TCP when none is given
  bool tcp() const { return !listen.empty(); }
};

// ---- boot, cpu
enum class BootDevice { disk, cdrom, network };
enum class Firmware { bios, uefi };
extern const EnumTable<BootDevice> kBootDevices;
extern const EnumTable<Firmware> kFirmwares;

struct Boot {
  std::string kernel, initrd, cmdline;  // direct kernel boot when kernel is set
  std::vector<BootDevice> order;        // default: disk
  Firmware firmware = Firmware::bios;
};

struct CpuTopology {
  int sockets = 1, cores = 1, threads = 1;
};

struct Cpu {
  std::string model;  // driver default when empty ("max" under TCG, "host" with KVM)
  std::optional<CpuTopology> topology;
};

// ---- containers (lxc)
struct Mount {
  std::string source;  // host path
  std::string target;  // path inside the container
  bool readonly = true;
};

struct ContainerConfig {
  DiskSource rootfs;                        // a directory, or a dir-pool volume
  std::vector<std::string> init;            // default: /sbin/init
  std::map<std::string, std::string> env;
  std::string hostname;                     // default: the domain name
  std::vector<Mount> mounts;
  bool privileged = false;                  // false: user namespace (uid 0 -> idmapBase)
  uint32_t idmapBase = 0;                  // 0: allocated at define from [containers] idmap_range
  uint32_t idmapSize = 65536;
};

struct Limits {
  int cpuShares = 0;          // relative weight (cgroup cpu.shares), 0 = default
  int cpuQuotaPercent = 0;    // 100 = one full CPU; 0 = unlimited
  int64_t pids = 0;           // 0 = unlimited
};

enum class LifecycleAction { destroy, restart, preserve };
extern const EnumTable<LifecycleAction> kLifecycleActions;

struct Domain {
  std::string name;
  std::string uuid;
  DriverType type = DriverType::qemu;
  std::string title;
  std::string description;
  int vcpus = 1;
  uint64_t memory = 512ULL << 20;
  Cpu cpu;
  std::string machine;  // driver default when empty ("q35" for qemu)
  Boot boot;
  std::vector<Disk> disks;
  std::vector<Nic> nics;
  std::vector<Console> consoles;
  std::vector<Graphics> graphics;
  std::optional<ContainerConfig> container;
  Limits limits;
  LifecycleAction onPoweroff = LifecycleAction::destroy;
  LifecycleAction onReboot = LifecycleAction::restart;
  LifecycleAction onCrash = LifecycleAction::destroy;
  bool autostart = false;
  bool guestAgent = true;  // add a guest agent channel (qemu)
  std::map<std::string, std::string> labels;
  json metadata = json::object();
  json extensions = json::object();  // foreign elements kept verbatim (e.g. unmodelled libvirt XML)
};

// Limits enforced by parseDomain.
struct DomainLimits {
  static constexpr int kMaxVcpus = 512;
  static constexpr uint64_t kMinMemory = 16ULL << 20;
  static constexpr uint64_t kMaxMemory = 16ULL << 40;
  static constexpr size_t kMaxDisks = 64;
  static constexpr size_t kMaxNics = 32;
  static constexpr size_t kMaxLabels = 64;
  static constexpr size_t kMaxMetadataBytes = 64 << 10;
};

// Parses and validates a definition. Fills generated values (uuid, MACs, disk targets) so the
// result is complete. Unknown fields are rejected with their path.
Result<Domain> parseDomain(const json& j);
json formatDomain(const Domain& d, bool redactSecrets = true);
// Gives every graphics device listening on TCP without a password a random one (VNC's
// authentication uses 8 characters, SPICE gets 16). True when something was generated.
bool generateGraphicsPasswords(Domain& d);

// A field of a definition that reaches outside vmm's own objects into the host: a host file or
// device (disk path, kernel, container rootfs or mount), a host interface (bridge, macvtap
// device, mirror port, a chosen tap name), the host's network (its loopback, forwarded host
// ports, a display on a non-loopback address), or the host's ids (a privileged container, a
// chosen idmap). Such fields make the caller root on the host, or let it take the host's
// ports and interfaces: only admins may set them.
struct HostReference {
  std::string field;  // as the API spells it: "disks[1].source.path"
  std::string kind;   // the field without its indexes ("disks.source.path"), for comparisons
  std::string value;
};
std::vector<HostReference> hostReferences(const Domain& d);
// The references of `next` that `current` does not already have (the same kind and value -
// the whole disk, NIC or mount that carries it): what an update adds or changes.
std::vector<HostReference> addedHostReferences(const Domain& next, const Domain* current);
// Whether whoever runs commands in the domain is root on the host: a privileged container, or
// a container with a writable host mount.
bool grantsHostRoot(const Domain& d);

// Assigns missing disk targets ("vda", "sdb", ...) by bus; fails on duplicates.
Status assignDiskTargets(Domain& d);
// Format of a disk when none is given: qcow2 for "*.qcow2" paths, else raw.
DiskFormat defaultDiskFormat(const Disk& disk);

}  // namespace vmm::model
