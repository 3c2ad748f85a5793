#include "drivers/qemu/command_line.h"

#include "base/strings.h"

namespace vmm::drivers::qemu {

using model::DiskBus;
using model::DiskDevice;

namespace {

std::string macHex(const std::string& mac) {
  std::string out;
  for (char c : mac)
    if (c != ':') out += c;
  return out;
}

std::string memoryArg(uint64_t bytes) {
  if (bytes % (1ULL << 20) == 0) return std::to_string(bytes >> 20) + "M";
  return std::to_string(bytes >> 10) + "K";
}

std::string dump(const json& j) { return j.dump(); }

bool isPciMachine(const std::string& family) { return family == "q35" || family == "pc"; }

// virtio device names differ between PCI machines and microvm (virtio-mmio).
std::string virtioName(const std::string& base, const std::string& family) {
  return base + (family == "microvm" ? "-device" : "-pci");
}

}  // namespace

std::string machineFamily(const std::string& machine) {
  if (machine == "q35" || startsWith(machine, "pc-q35-")) return "q35";
  if (machine == "pc" || startsWith(machine, "pc-i440fx-")) return "pc";
  if (machine == "microvm") return "microvm";
  return "";
}

std::string diskDeviceId(const model::Disk& d) { return "disk-" + d.target; }
std::string diskFileNode(const model::Disk& d, size_t layer) {
  return "file-" + d.target + (layer ? "-" + std::to_string(layer) : "");
}
std::string diskFormatNode(const model::Disk& d, size_t layer) {
  return "fmt-" + d.target + (layer ? "-" + std::to_string(layer) : "");
}
std::string nicDeviceId(const model::Nic& n) { return "net-" + macHex(n.mac); }
std::string nicNetdevId(const model::Nic& n) { return "netdev-" + macHex(n.mac); }

namespace {

json fileNodeJson(const model::Disk& d, const ResolvedDisk& r, size_t layer) {
  json node;
  if (r.protocol.empty()) {
    node = {{"driver", r.blockDevice ? "host_device" : "file"}, {"filename", r.path}};
  } else {
    node = r.blockdev;
    node["driver"] = r.protocol;
  }
  // Layers below the top are only ever read (writes go to the top).
  bool readOnly = d.readonly || layer > 0;
  node["node-name"] = diskFileNode(d, layer);
  node["read-only"] = readOnly;
  bool direct = d.cache == model::DiskCache::none || d.cache == model::DiskCache::directsync;
  bool noFlush = d.cache == model::DiskCache::unsafe;
  if (r.protocol.empty()) node["cache"] = {{"direct", direct}, {"no-flush", noFlush}};
  if (!readOnly && r.protocol.empty()) node["discard"] = "unmap";
  return node;
}

json formatNodeJson(const model::Disk& d, const ResolvedDisk& r, size_t layer, const ResolvedDisk* below) {
  model::DiskFormat fmt = layer ? r.format : d.format.value_or(r.format);
  json node = {{"driver", model::enumName(model::kDiskFormats, fmt)},
               {"file", diskFileNode(d, layer)},
               {"node-name", diskFormatNode(d, layer)},
               {"read-only", d.readonly || layer > 0}};
  // A window of the file (a linear LV on its PV without device-mapper): the raw driver
  // exposes only that range, and the guest cannot reach the bytes around it. (A started QEMU
  // gets a loop device of just the window instead: openLayerFor in qemu_files.cc.)
  if (r.size) {
    node["offset"] = r.offset;
    node["size"] = r.size;
  }
  // The chain the pool recorded, ended explicitly: QEMU opens no backing file the image's
  // header names (a null backing is QEMU's "no detection"). Raw has no backing to name.
  if (fmt == model::DiskFormat::qcow2 && r.chainPinned)
    node["backing"] = below ? json(diskFormatNode(d, layer + 1)) : json(nullptr);
  return node;
}

}  // namespace

std::vector<json> diskNodesJson(const model::Disk& d, const ResolvedDisk& r) {
  std::vector<json> nodes;
  for (size_t i = r.backing.size(); i > 0; --i) {
    ResolvedDisk layer = r.backing[i - 1];
    layer.chainPinned = r.chainPinned;
    const ResolvedDisk* below = i < r.backing.size() ? &r.backing[i] : nullptr;
    nodes.push_back(fileNodeJson(d, layer, i));
    nodes.push_back(formatNodeJson(d, layer, i, below));
  }
  nodes.push_back(fileNodeJson(d, r, 0));
  nodes.push_back(formatNodeJson(d, r, 0, r.backing.empty() ? nullptr : &r.backing.front()));
  return nodes;
}

json diskDeviceJson(const model::Disk& d, const std::string& machine, const std::string& bus) {
  std::string family = machineFamily(machine);
  bool cdrom = d.device == DiskDevice::cdrom;
  json dev;
  switch (d.bus) {
    case DiskBus::virtio:
      dev = {{"driver", virtioName("virtio-blk", family)}};
      if (!bus.empty()) dev["bus"] = bus;
      break;
    case DiskBus::scsi:
      dev = {{"driver", cdrom ? "scsi-cd" : "scsi-hd"}, {"bus", "scsi0.0"}};
      break;
    case DiskBus::sata:
    case DiskBus::ide: {
      // q35: six AHCI ports ide.0..ide.5 (sda..sdf); pc: two IDE buses with two units.
      int index = d.target.back() - 'a';
      dev = {{"driver", cdrom ? "ide-cd" : "ide-hd"}};
      if (family == "pc") {
        dev["bus"] = "ide." + std::to_string(index / 2);
        dev["unit"] = index % 2;
      } else {
        dev["bus"] = "ide." + std::to_string(index);
      }
      break;
    }
    case DiskBus::usb:
      dev = {{"driver", "usb-storage"}, {"bus", "usb0.0"}};
      break;
    case DiskBus::xen:
      break;
  }
  dev["drive"] = diskFormatNode(d);
  dev["id"] = diskDeviceId(d);
  if (d.bootOrder) dev["bootindex"] = *d.bootOrder;
  if (!d.serial.empty()) dev["serial"] = d.serial;
  bool writeCacheOff = d.cache == model::DiskCache::writethrough || d.cache == model::DiskCache::directsync;
  if (writeCacheOff && !cdrom) dev["write-cache"] = "off";
  return dev;
}

json netdevJson(const model::Nic& n, const NicBackend& b) {
  json nd = {{"id", nicNetdevId(n)}};
  if (b.kind == "user") {
    nd["type"] = "user";
    // restrict=on: no connection out of slirp (host loopback included), only the forwards in.
    if (!n.hostLoopback) nd["restrict"] = true;
    if (!n.forwards.empty()) {
      json fwds = json::array();
      for (const auto& f : n.forwards)
        fwds.push_back({{"str", f.protocol + ":" + f.hostAddress + ":" + std::to_string(f.hostPort) + "-:" + std::to_string(f.guestPort)}});
      nd["hostfwd"] = fwds;
    }
  } else {
    nd["type"] = "tap";
    nd["fd"] = std::to_string(b.fd);
  }
  return nd;
}

json nicDeviceJson(const model::Nic& n, const std::string& machine, const std::string& bus) {
  std::string family = machineFamily(machine);
  std::string driver;
  switch (n.model) {
    case model::NicModel::virtio: driver = virtioName("virtio-net", family); break;
    case model::NicModel::e1000: driver = "e1000"; break;
    case model::NicModel::e1000e: driver = "e1000e"; break;
    case model::NicModel::rtl8139: driver = "rtl8139"; break;
  }
  json dev = {{"driver", driver}, {"netdev", nicNetdevId(n)}, {"mac", n.mac}, {"id", nicDeviceId(n)}};
  if (!bus.empty()) dev["bus"] = bus;
  return dev;
}

Result<CommandLine> buildCommandLine(const LaunchSpec& spec) {
  const model::Domain& d = *spec.def;
  CommandLine cl;
  auto& a = cl.argv;
  auto& layout = cl.layout;
  std::string requested = d.machine.empty() ? "q35" : d.machine;
  std::string family = machineFamily(requested);
  if (family.empty())
    return invalidArgument("machine: unknown machine type " + quote(requested) + " (known: q35, pc, microvm and their versions)");
  // Refused here rather than by QEMU at start.
  VMM_TRY(checkMachineOffered(spec.caps, requested, family));
  layout.machine = requested;
  if (spec.disks.size() != d.disks.size() || spec.nics.size() != d.nics.size())
    return internalError("launch spec does not match the definition");
  bool pci = isPciMachine(family);
  layout.hotplug = pci;

  // ---- checks the model cannot make: what this machine type offers
  int sataCount = 0;
  for (const auto& disk : d.disks) {
    if (disk.bus == DiskBus::xen) return invalidArgument("disk " + disk.target + ": bus xen is for the xen driver");
    if (family == "microvm" && disk.bus != DiskBus::virtio && disk.bus != DiskBus::scsi)
      return invalidArgument("disk " + disk.target + ": a microvm only has virtio and scsi disks");
    if (disk.bus == DiskBus::ide && family == "q35") return invalidArgument("disk " + disk.target + ": q35 has no IDE bus; use sata");
    if (disk.bus == DiskBus::sata && family == "pc") return invalidArgument("disk " + disk.target + ": pc has no SATA bus; use ide");
    if (disk.bus == DiskBus::sata || disk.bus == DiskBus::ide) {
      int index = disk.target.back() - 'a';
      int max = family == "pc" ? 4 : 6;
      if (index >= max) return invalidArgument("disk " + disk.target + ": the " + std::string(model::enumName(model::kDiskBuses, disk.bus)) + " bus has " + std::to_string(max) + " ports");
      ++sataCount;
    }
    if (disk.device == DiskDevice::cdrom && disk.bus == DiskBus::virtio)
      return invalidArgument("disk " + disk.target + ": a cdrom cannot be on the virtio bus; use sata, ide or scsi");
  }
  if (family == "microvm" && !d.graphics.empty()) return invalidArgument("graphics: a microvm has no display");
  if (d.boot.firmware == model::Firmware::uefi) return unsupported("boot.firmware: UEFI is not supported by this vmm yet");

  a.push_back(spec.binary);
  a.insert(a.end(), {"-name", "guest=" + d.name + ",debug-threads=on", "-uuid", d.uuid, "-no-user-config", "-nodefaults", "-S"});
  a.insert(a.end(), {"-machine", family == "microvm" ? "microvm" : layout.machine + ",usb=off,vmport=off,dump-guest-core=off"});
  a.insert(a.end(), {"-accel", spec.accel});
  std::string cpu = d.cpu.model.empty() ? (spec.accel == "kvm" ? "host" : "max") : d.cpu.model;
  if (cpu == "host-passthrough") cpu = "host";
  a.insert(a.end(), {"-cpu", cpu});
  a.insert(a.end(), {"-m", memoryArg(d.memory)});
  std::string smp = std::to_string(d.vcpus);
  if (d.cpu.topology)
    smp += ",sockets=" + std::to_string(d.cpu.topology->sockets) + ",cores=" + std::to_string(d.cpu.topology->cores) +
           ",threads=" + std::to_string(d.cpu.topology->threads);
  a.insert(a.end(), {"-smp", smp});
  if (d.onReboot == model::LifecycleAction::destroy) a.push_back("-no-reboot");
  a.insert(a.end(), {"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  a.insert(a.end(), {"-msg", "timestamp=on"});
  if (spec.qmpFd >= 0) {
    a.insert(a.end(), {"-chardev", "socket,id=qmp,fd=" + std::to_string(spec.qmpFd) + ",server=on,wait=off"});
    a.insert(a.end(), {"-mon", "chardev=qmp,mode=control"});
  }
  if (d.graphics.empty()) a.insert(a.end(), {"-display", "none"});

  // Images handed over as descriptors, one fd set each; `-add-fd` is read before any -blockdev.
  for (const auto& f : spec.fdSets) {
    std::string opaque;
    for (char c : f.path) opaque += c == ',' ? std::string(",,") : std::string(1, c);
    a.insert(a.end(), {"-add-fd", "fd=" + std::to_string(f.fd) + ",set=" + std::to_string(f.set) + ",opaque=" + opaque});
  }

  // ---- boot
  if (!d.boot.kernel.empty()) {
    a.insert(a.end(), {"-kernel", spec.kernel.empty() ? d.boot.kernel : spec.kernel});
    if (!d.boot.initrd.empty()) a.insert(a.end(), {"-initrd", spec.initrd.empty() ? d.boot.initrd : spec.initrd});
    if (!d.boot.cmdline.empty()) a.insert(a.end(), {"-append", d.boot.cmdline});
  }
  bool anyBootIndex = false;
  for (const auto& disk : d.disks) anyBootIndex = anyBootIndex || disk.bootOrder.has_value();
  if (!anyBootIndex && !d.boot.order.empty() && d.boot.kernel.empty()) {
    std::string order;
    for (auto o : d.boot.order) order += o == model::BootDevice::disk ? 'c' : o == model::BootDevice::cdrom ? 'd' : 'n';
    a.insert(a.end(), {"-boot", "order=" + order});
  }

  // ---- PCI topology: every PCI device gets its own root port on q35 (hot-unpluggable),
  // plus spare ports for hot-plugging later.
  int nextPort = 1;
  auto portFor = [&](const std::string& deviceId) -> std::string {
    if (family != "q35") return "";
    int p = nextPort++;
    layout.portOf[deviceId] = p;
    return "rp" + std::to_string(p);
  };
  std::vector<std::string> devices;  // -device JSON, after the root ports
  bool needScsi = false, needUsb = false, needSerial = d.guestAgent && spec.agentFd >= 0;
  for (const auto& disk : d.disks) {
    needScsi = needScsi || disk.bus == DiskBus::scsi;
    needUsb = needUsb || disk.bus == DiskBus::usb;
  }
  if (needScsi) {
    json ctl = {{"driver", virtioName("virtio-scsi", family)}, {"id", "scsi0"}};
    std::string bus = portFor("scsi0");
    if (!bus.empty()) ctl["bus"] = bus;
    devices.push_back(dump(ctl));
  }
  if (needUsb) {
    json ctl = {{"driver", "qemu-xhci"}, {"id", "usb0"}};
    std::string bus = portFor("usb0");
    if (!bus.empty()) ctl["bus"] = bus;
    devices.push_back(dump(ctl));
  }
  // Secrets (iSCSI CHAP) come from files, never from the command line; before their users.
  for (const auto& [id, file] : spec.secretFiles)
    a.insert(a.end(), {"-object", dump(json{{"qom-type", "secret"}, {"id", id}, {"file", file}, {"format", "raw"}})});
  for (size_t i = 0; i < d.disks.size(); ++i) {
    const auto& disk = d.disks[i];
    const auto& r = spec.disks[i];
    std::string bus = disk.bus == DiskBus::virtio ? portFor(diskDeviceId(disk)) : "";
    for (const auto& node : diskNodesJson(disk, r)) a.insert(a.end(), {"-blockdev", dump(node)});
    devices.push_back(dump(diskDeviceJson(disk, layout.machine, bus)));
  }
  std::vector<std::string> netdevs;
  for (size_t i = 0; i < d.nics.size(); ++i) {
    const auto& nic = d.nics[i];
    const auto& b = spec.nics[i];
    if (b.kind != "user" && b.fd < 0) return internalError("NIC " + nic.mac + " has no tap");
    netdevs.push_back(dump(netdevJson(nic, b)));
    std::string bus = pci && nic.model != model::NicModel::rtl8139 && nic.model != model::NicModel::e1000 ? portFor(nicDeviceId(nic)) : "";
    // e1000/rtl8139 are conventional PCI devices: on q35 they go on pcie.0 directly.
    devices.push_back(dump(nicDeviceJson(nic, layout.machine, bus)));
  }
  if (needSerial) {
    json vser = {{"driver", virtioName("virtio-serial", family)}, {"id", "vser0"}};
    std::string bus = portFor("vser0");
    if (!bus.empty()) vser["bus"] = bus;
    devices.push_back(dump(vser));
  }
  int usedPorts = nextPort - 1;
  layout.rootPorts = family == "q35" ? usedPorts + spec.sparePorts : 0;
  for (int p = 1; p <= layout.rootPorts; ++p) {
    int slot = 2 + (p - 1) / 8, fn = (p - 1) % 8;
    char addr[16];
    std::snprintf(addr, sizeof addr, "0x%x.0x%x", slot, fn);
    json rp = {{"driver", "pcie-root-port"}, {"id", "rp" + std::to_string(p)}, {"chassis", p}, {"port", 0x10 + p - 1},
               {"bus", "pcie.0"}, {"addr", addr}};
    if (fn == 0) rp["multifunction"] = true;
    a.insert(a.end(), {"-device", dump(rp)});
  }
  for (const auto& nd : netdevs) a.insert(a.end(), {"-netdev", nd});
  for (const auto& dev : devices) a.insert(a.end(), {"-device", dev});

  // ---- consoles and channels
  if (!d.consoles.empty() && spec.consoleFd >= 0) {
    a.insert(a.end(), {"-chardev", "socket,id=console0,fd=" + std::to_string(spec.consoleFd) + ",server=on,wait=off"});
    if (d.consoles[0].type == model::ConsoleType::serial) {
      a.insert(a.end(), {"-serial", "chardev:console0"});
    } else {
      if (!needSerial) return invalidArgument("consoles[0]: a virtio console needs the guest agent channel's virtio-serial bus");
      a.insert(a.end(), {"-device", dump(json{{"driver", "virtconsole"}, {"bus", "vser0.0"}, {"nr", 0}, {"chardev", "console0"}, {"id", "console0"}})});
    }
  }
  if (needSerial) {
    a.insert(a.end(), {"-chardev", "socket,id=qga0,fd=" + std::to_string(spec.agentFd) + ",server=on,wait=off"});
    a.insert(a.end(), {"-device", dump(json{{"driver", "virtserialport"}, {"bus", "vser0.0"}, {"nr", 1}, {"chardev", "qga0"},
                                            {"id", "channel0"}, {"name", "org.qemu.guest_agent.0"}})});
  }

  // ---- graphics
  // A unix socket in the private runtime directory (0700) by default: only root reaches it. A TCP
  // address always has a password (DomainService generates one), which goes over QMP, never argv.
  auto optValue = [](const std::string& v) {  // QemuOpts: a comma inside a value is doubled
    std::string out;
    for (char c : v) out += c == ',' ? std::string(",,") : std::string(1, c);
    return out;
  };
  for (size_t i = 0; i < d.graphics.size(); ++i) {
    const auto& g = d.graphics[i];
    std::string at = "graphics[" + std::to_string(i) + "]: ";
    if (g.tcp() && g.password.empty()) return invalidArgument(at + "a TCP listen address needs a password");
    if (!g.tcp() && spec.runDir.empty()) return internalError(at + "no runtime directory for its socket");
    if (g.type == model::GraphicsType::vnc) {
      std::string vnc;
      if (g.tcp()) {
        // to=100: the first free display from the requested one; the port is read back over QMP.
        vnc = g.listen + ":" + std::to_string(g.port ? g.port - 5900 : 0);
        if (!g.port) vnc += ",to=100";
      } else {
        vnc = "unix:" + optValue(graphicsSocketPath(spec.runDir, d, i));
      }
      if (!g.password.empty()) vnc += ",password=on";
      a.insert(a.end(), {"-vnc", vnc});
    } else {
      std::string s;
      if (g.tcp()) s = "addr=" + g.listen + ",port=" + std::to_string(g.port ? g.port : 5900);
      else s = "unix=on,addr=" + optValue(graphicsSocketPath(spec.runDir, d, i)) + (g.password.empty() ? ",disable-ticketing=on" : "");
      a.insert(a.end(), {"-spice", s});
    }
  }
  if (!d.graphics.empty()) a.insert(a.end(), {"-device", dump(json{{"driver", "VGA"}, {"id", "video0"}, {"bus", family == "q35" ? "pcie.0" : "pci.0"}})});
  if (spec.incoming) a.insert(a.end(), {"-incoming", "defer"});
  return cl;
}

std::string graphicsSocketPath(const std::string& runDir, const model::Domain& d, size_t index) {
  return runDir + "/" + std::string(model::enumName(model::kGraphicsTypes, d.graphics[index].type)) + std::to_string(index) + ".sock";
}

}  // namespace vmm::drivers::qemu
