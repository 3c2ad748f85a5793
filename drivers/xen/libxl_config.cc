#include "drivers/xen/libxl_config.h"

#include <algorithm>

#include "base/strings.h"

namespace vmm::drivers::xen {

namespace {

using model::DiskBus;
using model::DiskDevice;
using model::NicModel;
using model::NicType;

constexpr uint64_t kDefaultRateIntervalUs = 50000;  // xl's default credit window

std::string at(std::string_view what, size_t i) { return std::string(what) + "[" + std::to_string(i) + "]"; }

Status checkDisk(GuestType type, const model::Disk& d, size_t i) {
  std::string where = at("disks", i);
  bool pvBus = d.bus == DiskBus::virtio || d.bus == DiskBus::xen;
  if (type != GuestType::hvm) {
    if (!pvBus) return unsupported(where + ": a PV or PVH guest has only Xen PV disks (bus xen or virtio), not " +
                                   std::string(model::enumName(model::kDiskBuses, d.bus)));
    if (d.device == DiskDevice::cdrom) return unsupported(where + ": CD-ROMs need an HVM guest (machine \"hvm\")");
    return {};
  }
  if (d.bus == DiskBus::sata || d.bus == DiskBus::usb)
    return unsupported(where + ": Xen HVM guests have IDE, SCSI and Xen PV disks, not " +
                       std::string(model::enumName(model::kDiskBuses, d.bus)));
  if (d.device == DiskDevice::cdrom && d.bus != DiskBus::ide)
    return unsupported(where + ": a Xen CD-ROM is an emulated IDE drive (bus ide)");
  return {};
}

Status checkNic(GuestType type, const model::Nic& n, size_t i) {
  std::string where = at("nics", i);
  if (n.type == NicType::user)
    return unsupported(where + ": user-mode networking is a QEMU feature; put Xen vifs on a bridge or a network");
  if (n.type == NicType::direct)
    return unsupported(where + ": a Xen vif cannot sit on a macvtap (type direct) port; use a bridge or a network");
  if (type != GuestType::hvm && n.model != NicModel::virtio)
    return unsupported(where + ": a PV or PVH guest has only Xen PV NICs (model virtio), not " +
                       std::string(model::enumName(model::kNicModels, n.model)));
  if (!n.forwards.empty()) return unsupported(where + ": port forwards are for user-mode networking");
  return {};
}

std::string xenVdev(const model::Disk& d) {
  // The model's virtio disks are Xen's PV disks: vda -> xvda.
  if (startsWith(d.target, "vd")) return "x" + d.target;
  return d.target;
}

Result<json> diskConfig(const model::Disk& d, const ResolvedDisk& r, size_t i) {
  std::string where = at("disks", i) + " (" + d.source.describe() + ")";
  json j = {{"vdev", xenVdev(d)}, {"format", std::string(model::enumName(model::kDiskFormats, r.format))}};
  if (r.offset != 0 || r.size != 0)
    return unsupported(where + ": Xen cannot use a window of a device (a logical volume read from its physical "
                       "volume because device-mapper is missing); activate the volume with device-mapper first");
  if (r.protocol == "iscsi") {
    // Xen's block-iscsi hotplug script logs in to the whole target and uses its LUN 0; it has
    // no CHAP (and a secret in xenstore would be readable by every dom0 tool).
    if (!r.username.empty() || !r.secret.empty())
      return unsupported(where + ": iSCSI with CHAP cannot be passed to Xen's block-iscsi script");
    if (r.blockdev.value("lun", 0) != 0)
      return unsupported(where + ": Xen's block-iscsi script attaches LUN 0 of a target only, not LUN " +
                         std::to_string(r.blockdev.value("lun", 0)));
    std::string iqn = r.blockdev.value("target", ""), portal = r.blockdev.value("portal", "");
    if (iqn.empty() || portal.empty() || iqn.find(',') != std::string::npos || portal.find(',') != std::string::npos)
      return invalidArgument(where + ": an iSCSI disk needs a target IQN and a portal (without commas)");
    if (r.format != model::DiskFormat::raw) return unsupported(where + ": an iSCSI LUN is a raw block device");
    j["pdev_path"] = "iqn=" + iqn + ",portal=" + portal;
    j["script"] = "block-iscsi";
    j["backend"] = "phy";
  } else if (!r.protocol.empty()) {
    return unsupported(where + ": Xen disks need a local file or block device, not a " + r.protocol + " URL");
  } else {
    if (r.path.empty()) return invalidArgument(where + ": no path");
    j["pdev_path"] = r.path;
    // Raw block devices go straight to blkback; files and qcow2 images to QEMU's qdisk.
    j["backend"] = r.blockDevice && r.format == model::DiskFormat::raw ? "phy" : "qdisk";
  }
  if (d.device == DiskDevice::cdrom) {
    j["is_cdrom"] = 1;
    j["removable"] = 1;
  } else if (!d.readonly) {
    j["readwrite"] = 1;
  }
  return j;
}

json nicConfig(GuestType type, const model::Nic& n, size_t i, const std::string& script) {
  json j = {{"devid", static_cast<int>(i)}, {"mac", n.mac}, {"script", script}};
  if (!n.ifname.empty()) j["ifname"] = n.ifname;
  if (type == GuestType::hvm) {
    if (n.model == NicModel::virtio) {
      j["nictype"] = "vif";  // netfront only, no emulated twin
    } else {
      j["nictype"] = "vif_ioemu";
      j["model"] = std::string(model::enumName(model::kNicModels, n.model));
    }
  }
  if (n.port.outbound && n.port.outbound->average > 0) {
    // netback's credit scheduler: `bytes` per `interval`; a burst widens the window.
    const auto& bw = *n.port.outbound;
    uint64_t bytesPerSec = std::max<uint64_t>(1, bw.average / 8);
    uint64_t intervalUs = kDefaultRateIntervalUs;
    if (bw.burst > 0) intervalUs = std::clamp<uint64_t>(bw.burst * 1000000 / bytesPerSec, 1000, 10000000);
    j["rate_bytes_per_interval"] = std::max<uint64_t>(1, bytesPerSec * intervalUs / 1000000);
    j["rate_interval_usecs"] = intervalUs;
  }
  return j;
}

std::string hvmBootOrder(const model::Boot& b) {
  std::string out;
  for (auto dev : b.order) {
    switch (dev) {
      case model::BootDevice::disk: out += 'c'; break;
      case model::BootDevice::cdrom: out += 'd'; break;
      case model::BootDevice::network: out += 'n'; break;
    }
  }
  return out.empty() ? "c" : out;
}

json hvmOptions(const model::Domain& def) {
  json h = json::object();
  if (def.boot.firmware == model::Firmware::uefi) h["bios"] = "ovmf";
  h["boot"] = hvmBootOrder(def.boot);
  if (!def.consoles.empty()) h["serial"] = "pty";
  for (const auto& g : def.graphics) {
    json gj = {{"enable", "True"}};
    if (g.type == model::GraphicsType::vnc) {
      gj["listen"] = g.listen;
      if (!g.password.empty()) gj["passwd"] = g.password;
      if (g.port == 0) gj["findunused"] = "True";
      else if (g.port > 5900) gj["display"] = g.port - 5900;
      h["vnc"] = gj;
    } else {
      gj["host"] = g.listen;
      if (g.port != 0) gj["port"] = g.port;
      if (!g.password.empty()) gj["passwd"] = g.password;
      else gj["disable_ticketing"] = "True";
      h["spice"] = gj;
    }
  }
  if (def.graphics.empty()) h["vnc"] = {{"enable", "False"}};  // libxl enables VNC by default
  return h;
}

}  // namespace

std::string_view guestTypeName(GuestType t) {
  switch (t) {
    case GuestType::pv: return "pv";
    case GuestType::pvh: return "pvh";
    case GuestType::hvm: return "hvm";
  }
  return "hvm";
}

Result<GuestType> guestTypeOf(const model::Domain& def) {
  if (def.machine.empty()) return def.boot.kernel.empty() ? GuestType::hvm : GuestType::pv;
  if (def.machine == "pv") return GuestType::pv;
  if (def.machine == "pvh") return GuestType::pvh;
  if (def.machine == "hvm") return GuestType::hvm;
  return invalidArgument("machine: Xen guest types are pv, pvh and hvm, not " + quote(def.machine));
}

Status checkXenDomain(const model::Domain& def) {
  VMM_ASSIGN(auto type, guestTypeOf(def));
  if (def.container) return invalidArgument("container: container settings are for lxc domains");
  if (def.limits.pids != 0) return unsupported("limits.pids: a process limit is for containers; Xen has none");
  if (def.limits.cpuShares < 0 || def.limits.cpuShares > 65535)
    return invalidArgument("limits.cpu_shares: the Xen credit scheduler's weight is 1 to 65535");
  if (!def.cpu.model.empty() && def.cpu.model != "host")
    return unsupported("cpu.model: Xen guests see the host CPU (through its cpuid policy); CPU models like " +
                       quote(def.cpu.model) + " are not supported");
  bool pvFamily = type != GuestType::hvm;
  if (pvFamily && def.boot.firmware == model::Firmware::uefi)
    return unsupported("boot.firmware: UEFI needs an HVM guest (machine \"hvm\")");
  if (type == GuestType::pvh && def.boot.kernel.empty())
    return unsupported("boot.kernel: a PVH guest boots a kernel; disk boot needs PV (pygrub) or HVM");
  if (type == GuestType::pv && def.boot.kernel.empty() && def.disks.empty())
    return invalidArgument("disks: a PV guest without boot.kernel boots its first disk with pygrub, and has none");
  if (pvFamily)
    for (auto dev : def.boot.order)
      if (dev != model::BootDevice::disk)
        return unsupported("boot.order: PV and PVH guests boot a kernel or their first disk, not " +
                           std::string(model::enumName(model::kBootDevices, dev)));
  for (size_t i = 0; i < def.disks.size(); ++i) VMM_TRY(checkDisk(type, def.disks[i], i));
  for (size_t i = 0; i < def.nics.size(); ++i) VMM_TRY(checkNic(type, def.nics[i], i));
  if (def.consoles.size() > 1) return unsupported("consoles: a Xen guest has one console");
  for (size_t i = 0; i < def.consoles.size(); ++i)
    if (def.consoles[i].type == model::ConsoleType::virtio)
      return unsupported(at("consoles", i) + ": virtio consoles are QEMU's; a Xen guest has its PV console (pv, pvh) "
                                             "or an emulated serial port (hvm): use type serial");
  if (pvFamily && !def.graphics.empty())
    return unsupported("graphics: VNC and SPICE need an HVM guest (machine \"hvm\")");
  if (def.graphics.size() > 1) return unsupported("graphics: a Xen HVM guest has one display");
  if (!def.graphics.empty() && !def.graphics[0].tcp())
    return unsupported("graphics: vmm gives libxl no unix socket for the display: give a TCP listen address (a password is generated)");
  return {};
}

Result<XenConfig> buildXenConfig(const XenConfigInput& in) {
  const model::Domain& def = *in.def;
  VMM_TRY(checkXenDomain(def));
  if (in.disks.size() != def.disks.size()) return internalError("xen: resolved disks do not match the definition");
  XenConfig out;
  VMM_ASSIGN(out.type, guestTypeOf(def));

  json& c = out.libxl;
  c["c_info"] = {{"type", std::string(guestTypeName(out.type))}, {"name", def.name}, {"uuid", def.uuid}};

  json b = json::object();
  b["max_vcpus"] = def.vcpus;
  b["avail_vcpus"] = json::array();
  for (int i = 0; i < def.vcpus; ++i) b["avail_vcpus"].push_back(i);
  b["max_memkb"] = def.memory / 1024;
  b["target_memkb"] = def.memory / 1024;
  json sched = json::object();
  if (def.limits.cpuShares > 0) sched["weight"] = def.limits.cpuShares;
  if (def.limits.cpuQuotaPercent > 0) sched["cap"] = def.limits.cpuQuotaPercent;  // percent of one CPU, like Xen's cap
  if (!sched.empty()) b["sched_params"] = sched;
  if (!def.boot.kernel.empty()) b["kernel"] = def.boot.kernel;
  if (!def.boot.initrd.empty()) b["ramdisk"] = def.boot.initrd;
  if (!def.boot.cmdline.empty()) b["cmdline"] = def.boot.cmdline;
  if (out.type == GuestType::pv && def.boot.kernel.empty()) b["type.pv"] = {{"bootloader", "pygrub"}};
  if (out.type == GuestType::hvm) b["type.hvm"] = hvmOptions(def);
  c["b_info"] = b;

  if (!def.disks.empty()) {
    c["disks"] = json::array();
    for (size_t i = 0; i < def.disks.size(); ++i) {
      VMM_ASSIGN(auto dj, diskConfig(def.disks[i], in.disks[i], i));
      c["disks"].push_back(std::move(dj));
    }
  }
  if (!def.nics.empty()) {
    c["nics"] = json::array();
    for (size_t i = 0; i < def.nics.size(); ++i) {
      const auto& n = def.nics[i];
      c["nics"].push_back(nicConfig(out.type, n, i, in.vifScript));
      XenPort p;
      p.devid = static_cast<int>(i);
      p.ifname = n.ifname;
      p.emulated = out.type == GuestType::hvm && n.model != NicModel::virtio;
      p.hostNic = n;
      if (n.port.outbound && n.port.outbound->average > 0) p.hostNic.port.outbound.reset();  // netback enforces it
      out.ports.push_back(std::move(p));
    }
  }
  // libxl only records these; the driver acts on them when the guest stops (xen_driver.cc).
  auto action = [](model::LifecycleAction a) -> const char* {
    switch (a) {
      case model::LifecycleAction::destroy: return "destroy";
      case model::LifecycleAction::restart: return "restart";
      case model::LifecycleAction::preserve: return "preserve";
    }
    return "destroy";
  };
  if (def.onPoweroff != model::LifecycleAction::destroy) c["on_poweroff"] = action(def.onPoweroff);
  if (def.onReboot != model::LifecycleAction::destroy) c["on_reboot"] = action(def.onReboot);
  if (def.onCrash != model::LifecycleAction::destroy) c["on_crash"] = action(def.onCrash);
  return out;
}

std::string vifName(uint32_t domid, const XenPort& port) {
  if (!port.ifname.empty()) return port.ifname;
  return "vif" + std::to_string(domid) + "." + std::to_string(port.devid);
}

json describeXenConfig(const XenConfig& c) {
  json ports = json::array();
  for (const auto& p : c.ports) {
    model::Domain one;
    one.nics = {p.hostNic};
    json nic = model::formatDomain(one)["nics"][0];
    ports.push_back({{"devid", p.devid},
                     {"ifname", p.ifname.empty() ? "vif<domid>." + std::to_string(p.devid) : p.ifname},
                     {"emulated", p.emulated},
                     {"attach", {{"type", nic["type"]}, {"to", nic.value("network", nic.value("bridge", ""))},
                                 {"profile", nic.value("port", json::object())}}}});
  }
  return {{"type", std::string(guestTypeName(c.type))}, {"libxl", c.libxl}, {"ports", ports}};
}

}  // namespace vmm::drivers::xen
