// The domain model -> libvirt domain XML, then the kept remainder merged back in.
#include "base/strings.h"
#include "model/libvirt_xml.h"
#include "model/libvirt_xml_tree.h"

namespace vmm::model {

using namespace libvirt_xml;

namespace {

pugi::xml_node add(pugi::xml_node parent, const char* name) { return parent.append_child(name); }
pugi::xml_node addText(pugi::xml_node parent, const char* name, const std::string& text) {
  auto n = parent.append_child(name);
  n.text().set(text.c_str());
  return n;
}
void set(pugi::xml_node n, const char* name, const std::string& value) { n.append_attribute(name).set_value(value.c_str()); }

uint64_t ceilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

const char* bootDevName(BootDevice b) {
  switch (b) {
    case BootDevice::disk: return "hd";
    case BootDevice::cdrom: return "cdrom";
    case BootDevice::network: return "network";
  }
  return "hd";
}

class Exporter {
 public:
  Exporter(const Domain& d, bool withSecrets) : d_(d), withSecrets_(withSecrets) {}

  Result<std::string> run() {
    const json* ext = nullptr;
    if (d_.extensions.is_object() && d_.extensions.contains(kExtensionKey) && d_.extensions[kExtensionKey].is_object())
      ext = &d_.extensions[kExtensionKey];
    std::string type = std::string(enumName(kDriverTypes, d_.type));
    if (d_.type == DriverType::qemu) {
      type = "kvm";
      if (ext && ext->value("type", "") == "qemu") type = "qemu";
    }
    auto dom = add(doc_, "domain");
    set(dom, "type", type);
    addText(dom, "name", d_.name);
    addText(dom, "uuid", d_.uuid);
    if (!d_.title.empty()) addText(dom, "title", d_.title);
    if (!d_.description.empty()) addText(dom, "description", d_.description);
    VMM_TRY(writeMetadata(dom));
    set(addText(dom, "memory", std::to_string(d_.memory / 1024)), "unit", "KiB");
    set(addText(dom, "currentMemory", std::to_string(d_.memory / 1024)), "unit", "KiB");
    addText(dom, "vcpu", std::to_string(d_.vcpus));
    writeOs(dom);
    writeCpu(dom);
    addText(dom, "on_poweroff", std::string(enumName(kLifecycleActions, d_.onPoweroff)));
    addText(dom, "on_reboot", std::string(enumName(kLifecycleActions, d_.onReboot)));
    addText(dom, "on_crash", std::string(enumName(kLifecycleActions, d_.onCrash)));
    if (d_.container && !d_.container->privileged) {
      auto idmap = add(dom, "idmap");
      for (const char* k : {"uid", "gid"}) {
        auto m = add(idmap, k);
        set(m, "start", "0");
        set(m, "target", std::to_string(d_.container->idmapBase));
        set(m, "count", std::to_string(d_.container->idmapSize));
      }
    }
    writeDevices(add(dom, "devices"));
    if (ext && ext->contains("xml") && (*ext)["xml"].is_string()) {
      auto residue = parseLimited((*ext)["xml"].get<std::string>(), "extensions.libvirt.xml");
      if (!residue.ok()) return residue.error();
      mergeResidue(dom, (*residue)->document_element(), keyed_);
    }
    // An empty <devices/> is valid, but libvirt drops it: so do we, for identical output.
    if (auto devs = dom.child("devices"); devs && !devs.first_child()) dom.remove_child(devs);
    return printNode(doc_, true);
  }

 private:
  Status writeMetadata(pugi::xml_node dom) {
    json vmm = json::object();
    json meta = d_.metadata.is_object() ? d_.metadata : json::object();
    json libvirtXml = meta.contains("libvirt_xml") ? meta["libvirt_xml"] : json::array();
    meta.erase("libvirt_xml");
    if (!meta.empty()) vmm["metadata"] = meta;
    if (!d_.labels.empty()) vmm["labels"] = d_.labels;
    if (d_.autostart) vmm["autostart"] = true;
    json limits = formatDomain(d_).value("limits", json());
    if (!limits.is_null()) vmm["limits"] = limits;
    // NIC settings libvirt has no element for, by MAC.
    for (const auto& nic : d_.nics) {
      json j = json::object();
      json full = nicJson(nic);
      if (full.contains("forwards")) j["forwards"] = full["forwards"];
      if (full.contains("port")) {
        json p = full["port"];
        p.erase("vlan");
        p.erase("inbound");
        p.erase("outbound");
        if (!p.empty()) j["port"] = p;
      }
      if (!j.empty()) vmm["nics"][nic.mac] = j;
    }
    if (d_.container) {
      json c = json::object();
      if (!d_.container->hostname.empty()) c["hostname"] = d_.container->hostname;
      if (!c.empty()) vmm["container"] = c;
    }
    if (vmm.empty() && libvirtXml.empty()) return {};
    auto md = add(dom, "metadata");
    for (const auto& x : libvirtXml) {
      if (!x.is_string()) continue;
      auto frag = parseLimited(x.get<std::string>(), "metadata.libvirt_xml");
      if (!frag.ok()) return frag.error();
      md.append_copy((*frag)->document_element());
    }
    if (!vmm.empty()) {
      auto v = add(md, kVmmElement);
      set(v, "xmlns:vmm", kVmmNamespace);
      v.text().set(vmm.dump().c_str());
    }
    return {};
  }

  // The NIC as formatDomain writes it (the one place that knows the JSON shape).
  json nicJson(const Nic& nic) const {
    Domain one;
    one.nics.push_back(nic);
    return formatDomain(one)["nics"][0];
  }

  void writeOs(pugi::xml_node dom) {
    auto os = add(dom, "os");
    const auto& b = d_.boot;
    if (d_.type == DriverType::lxc) {
      addText(os, "type", "exe");
      if (d_.container && !d_.container->init.empty()) {
        addText(os, "init", d_.container->init[0]);
        for (size_t i = 1; i < d_.container->init.size(); ++i) addText(os, "initarg", d_.container->init[i]);
        for (const auto& [k, v] : d_.container->env) set(addText(os, "initenv", v), "name", k);
      }
      return;
    }
    auto type = addText(os, "type", "hvm");
    if (!d_.machine.empty()) set(type, "machine", d_.machine);
    if (b.firmware == Firmware::uefi) {
      // A loader kept from the imported XML names the firmware file; else libvirt picks one.
      if (residueHas("os", "loader")) set(add(os, "loader"), "type", "pflash");
      else set(os, "firmware", "efi");
    }
    if (!b.kernel.empty()) addText(os, "kernel", b.kernel);
    if (!b.initrd.empty()) addText(os, "initrd", b.initrd);
    if (!b.cmdline.empty()) addText(os, "cmdline", b.cmdline);
    bool perDevice = false;
    for (const auto& disk : d_.disks) perDevice = perDevice || disk.bootOrder.has_value();
    if (!perDevice)  // libvirt refuses <os><boot> together with per-device boot orders
      for (auto o : b.order) set(add(os, "boot"), "dev", bootDevName(o));
  }

  bool residueHas(const char* parent, const char* child) const {
    const json& ext = d_.extensions.value(kExtensionKey, json::object());
    if (!ext.is_object() || !ext.contains("xml") || !ext["xml"].is_string()) return false;
    auto doc = parseLimited(ext["xml"].get<std::string>(), "extensions");
    return doc.ok() && (*doc)->document_element().child(parent).child(child);
  }

  void writeCpu(pugi::xml_node dom) {
    if (d_.cpu.model.empty() && !d_.cpu.topology) return;
    auto cpu = add(dom, "cpu");
    if (d_.cpu.model == "host") {
      set(cpu, "mode", "host-passthrough");
    } else if (d_.cpu.model == "max") {
      set(cpu, "mode", "maximum");
    } else if (!d_.cpu.model.empty()) {
      set(cpu, "mode", "custom");
      set(cpu, "match", "exact");
      set(addText(cpu, "model", d_.cpu.model), "fallback", "allow");
    }
    if (d_.cpu.topology) {
      auto t = add(cpu, "topology");
      set(t, "sockets", std::to_string(d_.cpu.topology->sockets));
      set(t, "cores", std::to_string(d_.cpu.topology->cores));
      set(t, "threads", std::to_string(d_.cpu.topology->threads));
    }
  }

  void writeDevices(pugi::xml_node devs) {
    for (const auto& disk : d_.disks) writeDisk(devs, disk);
    if (d_.container) writeContainerFs(devs, *d_.container);
    for (const auto& nic : d_.nics) writeNic(devs, nic);
    for (size_t i = 0; i < d_.consoles.size(); ++i) writeConsole(devs, i);
    if (d_.guestAgent && (d_.type == DriverType::qemu || d_.type == DriverType::test)) {
      auto ch = add(devs, "channel");
      set(ch, "type", "unix");
      set(add(ch, "source"), "mode", "bind");
      auto t = add(ch, "target");
      set(t, "type", "virtio");
      set(t, "name", kGuestAgentName);
      keyed_["channel:qemu-ga"] = ch;
    }
    for (size_t i = 0; i < d_.graphics.size(); ++i) {
      const auto& g = d_.graphics[i];
      auto n = add(devs, "graphics");
      set(n, "type", std::string(enumName(kGraphicsTypes, g.type)));
      if (g.tcp()) {
        set(n, "port", g.port ? std::to_string(g.port) : "-1");
        set(n, "autoport", g.port ? "no" : "yes");
        set(n, "listen", g.listen);
      }
      if (withSecrets_ && !g.password.empty()) set(n, "passwd", g.password);
      auto l = add(n, "listen");
      set(l, "type", g.tcp() ? "address" : "socket");
      if (g.tcp()) set(l, "address", g.listen);
      keyed_["graphics:" + std::to_string(i)] = n;
    }
  }

  void writeDisk(pugi::xml_node devs, const Disk& disk) {
    auto n = add(devs, "disk");
    const auto& src = disk.source;
    std::string type = src.isVolume() ? "volume" : startsWith(src.path, "/dev/") ? "block" : "file";
    set(n, "type", type);
    set(n, "device", std::string(enumName(kDiskDevices, disk.device)));
    auto drv = add(n, "driver");
    if (d_.type != DriverType::xen) set(drv, "name", "qemu");
    set(drv, "type", std::string(enumName(kDiskFormats, disk.format.value_or(defaultDiskFormat(disk)))));
    set(drv, "cache", std::string(enumName(kDiskCaches, disk.cache)));
    auto s = add(n, "source");
    if (type == "volume") {
      set(s, "pool", src.pool);
      set(s, "volume", src.volume);
    } else {
      set(s, type == "block" ? "dev" : "file", src.path);
    }
    auto t = add(n, "target");
    set(t, "dev", disk.target);
    set(t, "bus", std::string(enumName(kDiskBuses, disk.bus)));
    if (disk.readonly) add(n, "readonly");
    if (!disk.serial.empty()) addText(n, "serial", disk.serial);
    if (disk.bootOrder) set(add(n, "boot"), "order", std::to_string(*disk.bootOrder));
    keyed_["disk:" + disk.target] = n;
  }

  static void writeBandwidth(pugi::xml_node bw, const char* name, const Bandwidth& b) {
    auto n = add(bw, name);
    set(n, "average", std::to_string(std::max<uint64_t>(1, ceilDiv(b.average, kRateUnitBits))));
    if (b.peak) set(n, "peak", std::to_string(ceilDiv(b.peak, kRateUnitBits)));
    if (b.burst) set(n, "burst", std::to_string(ceilDiv(b.burst, kBurstUnitBytes)));
  }

  void writeNic(pugi::xml_node devs, const Nic& nic) {
    auto n = add(devs, "interface");
    set(n, "type", std::string(enumName(kNicTypes, nic.type)));
    set(add(n, "mac"), "address", nic.mac);
    switch (nic.type) {
      case NicType::network: set(add(n, "source"), "network", nic.network); break;
      case NicType::bridge: set(add(n, "source"), "bridge", nic.bridge); break;
      case NicType::direct: {
        auto s = add(n, "source");
        set(s, "dev", nic.device);
        set(s, "mode", std::string(enumName(kDirectModes, nic.directMode)));
        break;
      }
      case NicType::user: break;
    }
    if (!nic.ifname.empty()) set(add(n, "target"), "dev", nic.ifname);
    set(add(n, "model"), "type", std::string(enumName(kNicModels, nic.model)));
    if (nic.port.vlan) {
      const auto& v = *nic.port.vlan;
      auto vl = add(n, "vlan");
      if (v.mode == VlanMode::access) {
        set(add(vl, "tag"), "id", std::to_string(v.tag));
      } else {
        set(vl, "trunk", "yes");
        for (int t : v.tags) {
          auto tag = add(vl, "tag");
          set(tag, "id", std::to_string(t));
          if (v.native && *v.native == t) set(tag, "nativeMode", "untagged");
        }
      }
    }
    if (nic.port.inbound || nic.port.outbound) {
      auto bw = add(n, "bandwidth");
      if (nic.port.inbound) writeBandwidth(bw, "inbound", *nic.port.inbound);
      if (nic.port.outbound) writeBandwidth(bw, "outbound", *nic.port.outbound);
    }
    keyed_["interface:" + nic.mac] = n;
  }

  // Serial console N: <serial> plus, for the first, the <console> that mirrors it (as libvirt
  // writes it). Virtio console: <console> with a virtio target.
  void writeConsole(pugi::xml_node devs, size_t i) {
    const auto& c = d_.consoles[i];
    if (d_.type == DriverType::lxc) {
      auto con = add(devs, "console");
      set(con, "type", "pty");
      set(add(con, "target"), "type", "lxc");
      keyed_["console:" + std::to_string(i)] = con;
    } else if (c.type == ConsoleType::serial) {
      auto s = add(devs, "serial");
      set(s, "type", "pty");
      set(add(s, "target"), "port", std::to_string(serialPort_));
      keyed_["serial:" + std::to_string(i)] = s;
      if (serialPort_++ == 0) {
        auto con = add(devs, "console");
        set(con, "type", "pty");
        auto t = add(con, "target");
        set(t, "type", "serial");
        set(t, "port", "0");
        keyed_["console:" + std::to_string(i)] = con;
      }
    } else {
      auto con = add(devs, "console");
      set(con, "type", "pty");
      set(add(con, "target"), "type", "virtio");
      keyed_["console:" + std::to_string(i)] = con;
    }
  }

  void writeContainerFs(pugi::xml_node devs, const ContainerConfig& c) {
    auto root = add(devs, "filesystem");
    if (c.rootfs.isVolume()) {
      set(root, "type", "volume");
      auto s = add(root, "source");
      set(s, "pool", c.rootfs.pool);
      set(s, "volume", c.rootfs.volume);
    } else {
      set(root, "type", "mount");
      set(add(root, "source"), "dir", c.rootfs.path);
    }
    set(add(root, "target"), "dir", "/");
    keyed_["filesystem:/"] = root;
    for (const auto& m : c.mounts) {
      auto f = add(devs, "filesystem");
      set(f, "type", "mount");
      set(add(f, "source"), "dir", m.source);
      set(add(f, "target"), "dir", m.target);
      if (m.readonly) add(f, "readonly");
      keyed_["filesystem:" + m.target] = f;
    }
  }

  const Domain& d_;
  bool withSecrets_;
  pugi::xml_document doc_;
  KeyedElements keyed_;
  int serialPort_ = 0;
};

}  // namespace

Result<std::string> exportLibvirtXml(const Domain& d, bool withSecrets) {
  Exporter e(d, withSecrets);
  return e.run();
}

}  // namespace vmm::model
