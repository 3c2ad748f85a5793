// QEMU driver: hot-plugging disks and NICs into a running guest.
//
// A q35 guest gets spare pcie-root-ports at start; each hot-plugged PCI device takes a free
// one (a device on its own port can be unplugged again). Unplug is a request to the guest:
// device_del returns at once and DEVICE_DELETED arrives when the guest let go of it; only
// then are the block nodes or the netdev removed.
#include <unistd.h>

#include "base/json_util.h"
#include "base/log.h"
#include "base/strings.h"
#include "base/reverter.h"
#include "drivers/qemu/qemu_instance.h"

namespace vmm::drivers::qemu {

Result<int> QemuDriver::freePort(Instance& inst, const std::string& deviceId) {
  MutexLock lock(inst.mu);
  for (int p = 1; p <= inst.layout.rootPorts; ++p) {
    if (inst.usedPorts.count(p)) continue;
    inst.usedPorts.insert(p);
    inst.layout.portOf[deviceId] = p;
    return p;
  }
  return conflict("no free PCIe root port left for hot-plugging (the domain was started with " +
                   std::to_string(inst.layout.rootPorts) + "); restart it to get new spare ports");
}

namespace {

// Gives a root port back (after a failed plug or an unplug).
void releasePort(QemuDriver::Instance& inst, const std::string& deviceId) {
  MutexLock lock(inst.mu);
  auto it = inst.layout.portOf.find(deviceId);
  if (it == inst.layout.portOf.end()) return;
  inst.usedPorts.erase(it->second);
  inst.layout.portOf.erase(it);
}

Status hotplugPossible(const QemuDriver::Instance& inst, const std::string& what) {
  if (!inst.layout.hotplug) return unsupported("a " + inst.layout.machine + " machine cannot hot-plug " + what);
  return {};
}

}  // namespace

Status QemuDriver::waitDeviceDeleted(Instance& inst, const std::string& deviceId, Deadline deadline) {
  MutexLock lock(inst.mu);
  bool gone = inst.cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(inst.mu) {
    return inst.deletedDevices.count(deviceId) > 0 || inst.exited;
  });
  if (!gone)
    return timeoutError("the guest did not release " + deviceId +
                        " before the deadline (it may not support hot-unplug or still use the device); "
                        "the unplug request stays pending");
  inst.deletedDevices.erase(deviceId);
  return {};
}

Status QemuDriver::unplugDevice(Instance& inst, const std::string& deviceId, Deadline deadline) {
  {
    MutexLock lock(inst.mu);
    inst.deletedDevices.erase(deviceId);
  }
  auto del = inst.qmp->execute("device_del", {{"id", deviceId}}, deadline);
  // A second detach while the guest still holds the first request: wait for that one.
  if (!del.ok() && del.error().message.find("already in the process of unplug") == std::string::npos) return del.error();
  return waitDeviceDeleted(inst, deviceId, deadline);
}

Status QemuDriver::attachDisk(const model::Domain& def, const model::Disk& disk, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  if (disk.bus != model::DiskBus::virtio && disk.bus != model::DiskBus::scsi && disk.bus != model::DiskBus::usb)
    return unsupported("disk " + disk.target + ": only virtio, scsi and usb disks can be hot-plugged");
  if (disk.bus == model::DiskBus::virtio) VMM_TRY(hotplugPossible(*inst, "virtio disks"));
  std::string controller = disk.bus == model::DiskBus::scsi ? "scsi0" : disk.bus == model::DiskBus::usb ? "usb0" : "";
  if (!controller.empty()) {
    bool present = false;
    for (const auto& d : def.disks)
      if (&d != &disk && d.bus == disk.bus) present = true;
    if (!present)
      return unsupported("disk " + disk.target + ": the domain was started without a " +
                         std::string(model::enumName(model::kDiskBuses, disk.bus)) + " controller; hot-plug a virtio disk instead");
  }

  VMM_ASSIGN(ResolvedDisk r, resolveDisk(disk));
  if (!r.secret.empty()) return unsupported("disk " + disk.target + ": hot-plugging disks with a secret is not supported yet");

  Reverter revert;
  std::string bus;
  std::string deviceId = diskDeviceId(disk);
  if (disk.bus == model::DiskBus::virtio && machineFamily(inst->layout.machine) == "q35") {
    VMM_ASSIGN(int port, freePort(*inst, deviceId));
    bus = "rp" + std::to_string(port);
    revert.add([inst, deviceId] { releasePort(*inst, deviceId); });
  }
  // Each local layer as a descriptor (qemu_files.cc), before the nodes that open it.
  auto giveLayer = [&](ResolvedDisk& layer, bool writable) -> Status {
    if (!layer.protocol.empty() || layer.path.empty()) return {};
    VMM_ASSIGN(auto fd, openLayerFor(layer, writable));
    VMM_ASSIGN(int set, passImageFd(*inst, std::move(fd), layer.path, deadline));
    revert.add([inst, set] { removeFdset(*inst, set); });
    layer.path = kFdsetPrefix + std::to_string(set);
    return {};
  };
  VMM_TRY(giveLayer(r, !disk.readonly));
  for (auto& layer : r.backing) VMM_TRY(giveLayer(layer, false));
  // Bottom layer first; a failure removes the nodes added, top first.
  for (const auto& node : diskNodesJson(disk, r)) {
    VMM_TRY(inst->qmp->execute("blockdev-add", node, deadline));
    revert.add([inst, name = node["node-name"].get<std::string>()] {
      (void)inst->qmp->execute("blockdev-del", {{"node-name", name}}, Deadline::after(Millis(5000)));
    });
  }
  VMM_TRY(inst->qmp->execute("device_add", diskDeviceJson(disk, inst->layout.machine, bus), deadline));
  revert.success();
  log::info("disk hot-plugged", {{"domain", def.name}, {"target", disk.target}, {"bus", bus}});
  return {};
}

Status QemuDriver::detachDisk(const model::Domain& def, const model::Disk& disk, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  if (disk.bus != model::DiskBus::virtio && disk.bus != model::DiskBus::scsi && disk.bus != model::DiskBus::usb)
    return unsupported("disk " + disk.target + ": only virtio, scsi and usb disks can be hot-unplugged");
  if (disk.bus == model::DiskBus::virtio) VMM_TRY(hotplugPossible(*inst, "virtio disks"));
  std::string deviceId = diskDeviceId(disk);
  VMM_TRY(unplugDevice(*inst, deviceId, deadline));
  // The fd sets behind the disk's protocol nodes, given back once the nodes are gone.
  std::vector<int> sets;
  if (auto nodes = inst->qmp->execute("query-named-block-nodes", {{"flat", true}}, deadline); nodes.ok() && nodes->is_array()) {
    std::string own = diskFileNode(disk);
    for (const auto& n : *nodes) {
      std::string name = jsonStringOr(n, "node-name", ""), file = jsonStringOr(n, "file", "");
      bool ours = name == own || (startsWith(name, own + "-") && parseInt(name.substr(own.size() + 1)).has_value());
      if (auto id = ours ? fdsetId(file) : std::nullopt) sets.push_back(*id);
    }
  }
  for (const auto& node : {diskFormatNode(disk), diskFileNode(disk)}) {
    auto r = inst->qmp->execute("blockdev-del", {{"node-name", node}}, deadline);
    if (!r.ok()) log::warn("blockdev-del failed", {{"domain", def.name}, {"node", node}, {"error", r.error().message}});
  }
  // The layers below it, top down, until the first that was never added (a disk without one).
  for (size_t layer = 1; layer <= kMaxBackingLayers; ++layer) {
    if (!inst->qmp->execute("blockdev-del", {{"node-name", diskFormatNode(disk, layer)}}, deadline).ok()) break;
    (void)inst->qmp->execute("blockdev-del", {{"node-name", diskFileNode(disk, layer)}}, deadline);
  }
  for (int set : sets) removeFdset(*inst, set);
  releasePort(*inst, deviceId);
  log::info("disk hot-unplugged", {{"domain", def.name}, {"target", disk.target}});
  return {};
}

Status QemuDriver::attachNic(const model::Domain& def, const model::Nic& nic, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  VMM_TRY(hotplugPossible(*inst, "NICs"));
  bool conventional = nic.model == model::NicModel::rtl8139 || nic.model == model::NicModel::e1000;
  if (conventional && machineFamily(inst->layout.machine) == "q35")
    return unsupported("NIC " + nic.mac + ": " + std::string(model::enumName(model::kNicModels, nic.model)) +
                       " is a conventional PCI device and cannot be hot-plugged on q35; use virtio");
  Reverter revert;
  NicBackend backend;
  fs::UniqueFd tapFd;
  if (nic.type == model::NicType::user) {
    backend.kind = "user";
  } else {
    if (!services_) return unavailable("NIC " + nic.mac + ": no network service to create its tap");
    auto port = services_->plugNic(def, nic, "tap");
    if (!port.ok()) return port.error().wrap("NIC " + nic.mac);
    tapFd.reset(port->fd);
    revert.add([this, def, nic, ifname = port->ifname] { services_->unplugNic(def, nic, ifname); });
    std::string fdName = "tap-" + nicNetdevId(nic);
    VMM_TRY(inst->qmp->execute("getfd", {{"fdname", fdName}}, deadline, tapFd.get()));
    revert.add([inst, fdName] { (void)inst->qmp->execute("closefd", {{"fdname", fdName}}, Deadline::after(Millis(5000))); });
    backend.kind = "tap";
    {
      MutexLock lock(inst->mu);
      inst->taps.push_back({port->ifname, nic.mac});
    }
    revert.add([inst, mac = nic.mac] {
      MutexLock lock(inst->mu);
      std::erase_if(inst->taps, [&](const Instance::Tap& t) { return t.mac == mac; });
    });
    // The netdev refers to the passed fd by name rather than by number.
    json netdev = netdevJson(nic, NicBackend{"tap", 0});
    netdev["fd"] = fdName;
    VMM_TRY(inst->qmp->execute("netdev_add", netdev, deadline));
  }
  if (backend.kind == "user") VMM_TRY(inst->qmp->execute("netdev_add", netdevJson(nic, backend), deadline));
  revert.add([inst, id = nicNetdevId(nic)] { (void)inst->qmp->execute("netdev_del", {{"id", id}}, Deadline::after(Millis(5000))); });

  std::string bus, deviceId = nicDeviceId(nic);
  if (machineFamily(inst->layout.machine) == "q35") {
    VMM_ASSIGN(int port, freePort(*inst, deviceId));
    bus = "rp" + std::to_string(port);
    revert.add([inst, deviceId] { releasePort(*inst, deviceId); });
  }
  VMM_TRY(inst->qmp->execute("device_add", nicDeviceJson(nic, inst->layout.machine, bus), deadline));
  revert.success();
  log::info("NIC hot-plugged", {{"domain", def.name}, {"mac", nic.mac}, {"bus", bus}});
  return {};
}

Status QemuDriver::detachNic(const model::Domain& def, const model::Nic& nic, Deadline deadline) {
  VMM_ASSIGN(auto inst, running(def));
  VMM_TRY(hotplugPossible(*inst, "NICs"));
  std::string deviceId = nicDeviceId(nic);
  VMM_TRY(unplugDevice(*inst, deviceId, deadline));
  auto nd = inst->qmp->execute("netdev_del", {{"id", nicNetdevId(nic)}}, deadline);
  if (!nd.ok()) log::warn("netdev_del failed", {{"domain", def.name}, {"mac", nic.mac}, {"error", nd.error().message}});
  releasePort(*inst, deviceId);
  std::string ifname;
  {
    MutexLock lock(inst->mu);
    for (const auto& t : inst->taps)
      if (t.mac == nic.mac) ifname = t.ifname;
    std::erase_if(inst->taps, [&](const Instance::Tap& t) { return t.mac == nic.mac; });
  }
  if (!ifname.empty() && services_) services_->unplugNic(def, nic, ifname);
  log::info("NIC hot-unplugged", {{"domain", def.name}, {"mac", nic.mac}});
  return {};
}

}  // namespace vmm::drivers::qemu
