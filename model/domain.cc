#include "model/domain.h"

#include <algorithm>
#include <set>

#include "base/random.h"
#include "base/strings.h"
#include "model/names.h"
#include "model/project.h"
#include "model/net_addr.h"
#include "model/units.h"

namespace vmm::model {

const EnumTable<DriverType> kDriverTypes = {
    {DriverType::qemu, "qemu"}, {DriverType::lxc, "lxc"}, {DriverType::xen, "xen"}, {DriverType::test, "test"}};
const EnumTable<DiskBus> kDiskBuses = {{DiskBus::virtio, "virtio"}, {DiskBus::scsi, "scsi"}, {DiskBus::sata, "sata"},
                                       {DiskBus::ide, "ide"},       {DiskBus::usb, "usb"},   {DiskBus::xen, "xen"}};
const EnumTable<DiskDevice> kDiskDevices = {{DiskDevice::disk, "disk"}, {DiskDevice::cdrom, "cdrom"}};
const EnumTable<DiskFormat> kDiskFormats = {{DiskFormat::raw, "raw"}, {DiskFormat::qcow2, "qcow2"}};
const EnumTable<DiskCache> kDiskCaches = {{DiskCache::none, "none"},
                                          {DiskCache::writeback, "writeback"},
                                          {DiskCache::writethrough, "writethrough"},
                                          {DiskCache::directsync, "directsync"},
                                          {DiskCache::unsafe, "unsafe"}};
const EnumTable<NicType> kNicTypes = {
    {NicType::network, "network"}, {NicType::bridge, "bridge"}, {NicType::user, "user"}, {NicType::direct, "direct"}};
const EnumTable<NicModel> kNicModels = {
    {NicModel::virtio, "virtio"}, {NicModel::e1000, "e1000"}, {NicModel::e1000e, "e1000e"}, {NicModel::rtl8139, "rtl8139"}};
const EnumTable<DirectMode> kDirectModes = {{DirectMode::vepa, "vepa"},
                                            {DirectMode::bridge, "bridge"},
                                            {DirectMode::private_, "private"},
                                            {DirectMode::passthrough, "passthrough"}};
const EnumTable<VlanMode> kVlanModes = {{VlanMode::access, "access"}, {VlanMode::trunk, "trunk"}};
const EnumTable<AclAction> kAclActions = {{AclAction::allow, "allow"}, {AclAction::deny, "deny"}};
const EnumTable<AclDirection> kAclDirections = {
    {AclDirection::in, "in"}, {AclDirection::out, "out"}, {AclDirection::both, "both"}};
const EnumTable<AclProtocol> kAclProtocols = {{AclProtocol::any, "any"},   {AclProtocol::tcp, "tcp"},
                                              {AclProtocol::udp, "udp"},   {AclProtocol::icmp, "icmp"},
                                              {AclProtocol::icmpv6, "icmpv6"}, {AclProtocol::arp, "arp"}};
const EnumTable<ConsoleType> kConsoleTypes = {{ConsoleType::serial, "serial"}, {ConsoleType::virtio, "virtio"}};
const EnumTable<GraphicsType> kGraphicsTypes = {{GraphicsType::vnc, "vnc"}, {GraphicsType::spice, "spice"}};
const EnumTable<BootDevice> kBootDevices = {
    {BootDevice::disk, "disk"}, {BootDevice::cdrom, "cdrom"}, {BootDevice::network, "network"}};
const EnumTable<Firmware> kFirmwares = {{Firmware::bios, "bios"}, {Firmware::uefi, "uefi"}};
const EnumTable<LifecycleAction> kLifecycleActions = {
    {LifecycleAction::destroy, "destroy"}, {LifecycleAction::restart, "restart"}, {LifecycleAction::preserve, "preserve"}};

namespace {

std::string checkPath(const std::string& path, std::string_view what) {
  auto st = validateAbsolutePath(path, what);
  return st.ok() ? "" : st.error().message;
}

void readDiskSource(JsonReader& r, DiskSource& s) {
  r.optional("path", s.path);
  r.optional("pool", s.pool);
  r.optional("volume", s.volume);
  if (!r.ok()) return;
  bool hasPath = !s.path.empty(), hasVol = !s.pool.empty() || !s.volume.empty();
  if (hasPath == hasVol) return r.failHere("give either \"path\" or \"pool\" and \"volume\"");
  if (hasPath) {
    auto e = checkPath(s.path, "path");
    if (!e.empty()) return r.fail("path", e);
  } else {
    if (s.pool.empty()) return r.fail("pool", "required with \"volume\"");
    if (s.volume.empty()) return r.fail("volume", "required with \"pool\"");
    if (auto st = validateName(s.pool, "pool name"); !st.ok()) return r.fail("pool", st.error().message);
    if (auto st = validateQualifiedVolumeName(s.volume); !st.ok()) return r.fail("volume", st.error().message);
  }
}

json formatDiskSource(const DiskSource& s) {
  if (s.isVolume()) return {{"pool", s.pool}, {"volume", s.volume}};
  return {{"path", s.path}};
}

void readDisk(JsonReader& r, Disk& d) {
  r.optional("target", d.target);
  r.optionalEnum("device", d.device, kDiskDevices);
  r.optionalEnum("bus", d.bus, kDiskBuses);
  if (r.has("format")) {
    DiskFormat f = DiskFormat::raw;
    r.optionalEnum("format", f, kDiskFormats);
    d.format = f;
  } else {
    r.accept("format");
  }
  r.optionalEnum("cache", d.cache, kDiskCaches);
  r.object("source", [&](JsonReader& s) { readDiskSource(s, d.source); }, true);
  r.optional("readonly", d.readonly);
  r.optional("boot_order", d.bootOrder, 1, 64);
  r.optional("serial", d.serial);
  if (!r.ok()) return;
  if (!d.target.empty()) {
    bool good = d.target.size() <= 8;
    for (char c : d.target) good = good && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
    if (!good) r.fail("target", "invalid target " + quote(d.target) + " (expected e.g. \"vda\", \"sdb\")");
  }
  if (d.serial.size() > 20) r.fail("serial", "at most 20 characters");
  for (char c : d.serial) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      r.fail("serial", "only letters, digits, '-' and '_' are allowed");
      break;
    }
  }
  if (d.device == DiskDevice::cdrom) d.readonly = true;
}

json formatDisk(const Disk& d) {
  json j = {{"target", d.target},
            {"device", enumName(kDiskDevices, d.device)},
            {"bus", enumName(kDiskBuses, d.bus)},
            {"cache", enumName(kDiskCaches, d.cache)},
            {"source", formatDiskSource(d.source)},
            {"readonly", d.readonly}};
  // A volume's format is the one its pool recorded: a definition names it only when it was given
  // (and it must then agree). A file's is given, or guessed from its name.
  if (d.format || !d.source.isVolume()) j["format"] = enumName(kDiskFormats, d.format.value_or(defaultDiskFormat(d)));
  if (d.bootOrder) j["boot_order"] = *d.bootOrder;
  if (!d.serial.empty()) j["serial"] = d.serial;
  return j;
}

void readBandwidth(JsonReader& r, Bandwidth& b) {
  r.optionalBitrate("average", b.average);
  r.optionalBitrate("peak", b.peak);
  r.optionalSize("burst", b.burst);
  if (!r.ok()) return;
  if (b.average == 0) return r.fail("average", "required and must be greater than 0");
  if (b.peak && b.peak < b.average) r.fail("peak", "must not be lower than average");
}

json formatBandwidth(const Bandwidth& b) {
  json j = {{"average", formatBitrate(b.average)}};
  if (b.peak) j["peak"] = formatBitrate(b.peak);
  if (b.burst) j["burst"] = formatSize(b.burst);
  return j;
}

std::string checkVlanId(const json& v) {
  if (!v.is_number_integer()) return "expected an integer VLAN id";
  auto id = v.get<int64_t>();
  if (id < 1 || id > 4094) return "VLAN id " + std::to_string(id) + " is out of range (1-4094)";
  return "";
}

void readVlan(JsonReader& r, Vlan& v) {
  r.optionalEnum("mode", v.mode, kVlanModes);
  r.optional("tag", v.tag, 0, 100000);
  r.array("tags", 4094, [&](const json& item, size_t) {
    auto e = checkVlanId(item);
    if (e.empty()) v.tags.push_back(item.get<int>());
    return e;
  });
  r.optional("native", v.native, 0, 100000);
  if (!r.ok()) return;
  if (v.mode == VlanMode::access) {
    if (!r.has("tag")) return r.fail("tag", "required for an access port");
    if (v.tag < 1 || v.tag > 4094) return r.fail("tag", "VLAN id " + std::to_string(v.tag) + " is out of range (1-4094)");
    if (!v.tags.empty()) return r.fail("tags", "only for trunk ports");
    if (v.native) return r.fail("native", "only for trunk ports");
  } else {
    if (r.has("tag")) return r.fail("tag", "a trunk port takes \"tags\", not \"tag\"");
    if (v.tags.empty()) return r.fail("tags", "a trunk port needs at least one VLAN id");
    std::set<int> seen;
    for (int t : v.tags)
      if (!seen.insert(t).second) return r.fail("tags", "VLAN " + std::to_string(t) + " is listed twice");
    if (v.native && (*v.native < 1 || *v.native > 4094))
      return r.fail("native", "VLAN id " + std::to_string(*v.native) + " is out of range (1-4094)");
  }
}

json formatVlan(const Vlan& v) {
  json j = {{"mode", enumName(kVlanModes, v.mode)}};
  if (v.mode == VlanMode::access) {
    j["tag"] = v.tag;
  } else {
    j["tags"] = v.tags;
    if (v.native) j["native"] = *v.native;
  }
  return j;
}

void readAclRule(JsonReader& r, AclRule& a) {
  r.optionalEnum("action", a.action, kAclActions);
  r.optionalEnum("direction", a.direction, kAclDirections);
  r.optionalEnum("protocol", a.protocol, kAclProtocols);
  r.optional("remote", a.remote);
  std::string ports;
  r.optional("port", ports);
  if (!r.ok()) return;
  if (!r.has("action")) return r.fail("action", "required (allow or deny)");
  if (!a.remote.empty()) {
    auto c = parseCidr(a.remote);
    if (!c.ok()) return r.fail("remote", c.error().message);
  }
  if (!ports.empty()) {
    if (a.protocol != AclProtocol::tcp && a.protocol != AclProtocol::udp)
      return r.fail("port", "ports need protocol tcp or udp");
    auto parts = split(ports, '-');
    auto lo = parseInt(parts[0]);
    auto hi = parts.size() == 2 ? parseInt(parts[1]) : lo;
    if (parts.size() > 2 || !lo || !hi || *lo < 1 || *hi > 65535 || *lo > *hi)
      return r.fail("port", "expected a port or range like \"80\" or \"8000-8100\"");
    a.portMin = static_cast<int>(*lo);
    a.portMax = static_cast<int>(*hi);
  }
}

json formatAclRule(const AclRule& a) {
  json j = {{"action", enumName(kAclActions, a.action)},
            {"direction", enumName(kAclDirections, a.direction)},
            {"protocol", enumName(kAclProtocols, a.protocol)}};
  if (!a.remote.empty()) j["remote"] = a.remote;
  if (a.portMin) j["port"] = a.portMin == a.portMax ? std::to_string(a.portMin)
                                                     : std::to_string(a.portMin) + "-" + std::to_string(a.portMax);
  return j;
}

void readPortProfile(JsonReader& r, PortProfile& p) {
  r.object("vlan", [&](JsonReader& v) {
    Vlan vlan;
    readVlan(v, vlan);
    p.vlan = vlan;
  });
  r.object("inbound", [&](JsonReader& b) {
    Bandwidth bw;
    readBandwidth(b, bw);
    p.inbound = bw;
  });
  r.object("outbound", [&](JsonReader& b) {
    Bandwidth bw;
    readBandwidth(b, bw);
    p.outbound = bw;
  });
  r.objectArray("acl", 256, [&](JsonReader& a, size_t) {
    AclRule rule;
    readAclRule(a, rule);
    p.acl.push_back(rule);
  });
  r.optional("spoof_check", p.spoofCheck);
  r.array("allowed_ips", 64, [&](const json& item, size_t) -> std::string {
    if (!item.is_string()) return "expected an IP address";
    auto ip = parseIp(item.get<std::string>());
    if (!ip.ok()) return ip.error().message;
    p.allowedIps.push_back(item.get<std::string>());
    return "";
  });
  r.optional("isolated", p.isolated);
  r.optional("mirror_to", p.mirrorTo);
  if (!r.ok()) return;
  if (!p.mirrorTo.empty()) {
    if (auto st = validateIfName(p.mirrorTo); !st.ok()) r.fail("mirror_to", st.error().message);
  }
}

json formatPortProfile(const PortProfile& p) {
  json j = json::object();
  if (p.vlan) j["vlan"] = formatVlan(*p.vlan);
  if (p.inbound) j["inbound"] = formatBandwidth(*p.inbound);
  if (p.outbound) j["outbound"] = formatBandwidth(*p.outbound);
  if (!p.acl.empty()) {
    j["acl"] = json::array();
    for (const auto& a : p.acl) j["acl"].push_back(formatAclRule(a));
  }
  if (p.spoofCheck) j["spoof_check"] = true;
  if (!p.allowedIps.empty()) j["allowed_ips"] = p.allowedIps;
  if (p.isolated) j["isolated"] = true;
  if (!p.mirrorTo.empty()) j["mirror_to"] = p.mirrorTo;
  return j;
}

void readForward(JsonReader& r, PortForward& f) {
  r.optional("protocol", f.protocol);
  r.optional("host_address", f.hostAddress);
  r.optional("host_port", f.hostPort, 1, 65535);
  r.optional("guest_port", f.guestPort, 1, 65535);
  if (!r.ok()) return;
  if (f.protocol != "tcp" && f.protocol != "udp") return r.fail("protocol", "expected tcp or udp");
  if (!r.has("host_port")) return r.fail("host_port", "required field is missing");
  if (!r.has("guest_port")) return r.fail("guest_port", "required field is missing");
  if (auto ip = parseIp(f.hostAddress); !ip.ok()) r.fail("host_address", ip.error().message);
}

void readNic(JsonReader& r, Nic& n) {
  bool typeGiven = r.has("type");
  r.optionalEnum("type", n.type, kNicTypes);
  r.optional("network", n.network);
  r.optional("bridge", n.bridge);
  r.optional("device", n.device);
  r.optionalEnum("mode", n.directMode, kDirectModes);
  r.optional("mac", n.mac);
  r.optionalEnum("model", n.model, kNicModels);
  r.optional("ifname", n.ifname);
  r.optional("host_loopback", n.hostLoopback);
  r.objectArray("forwards", 64, [&](JsonReader& f, size_t) {
    PortForward fw;
    readForward(f, fw);
    n.forwards.push_back(fw);
  });
  r.object("port", [&](JsonReader& p) { readPortProfile(p, n.port); });
  if (!r.ok()) return;
  if (!typeGiven) {  // inferred from the one source given
    int given = !n.network.empty() + !n.bridge.empty() + !n.device.empty();
    if (given > 1) return r.failHere("give only one of \"network\", \"bridge\" or \"device\"");
    if (!n.bridge.empty()) n.type = NicType::bridge;
    else if (!n.device.empty()) n.type = NicType::direct;
    else if (n.network.empty()) n.type = NicType::user;
  }
  switch (n.type) {
    case NicType::network:
      if (n.network.empty()) return r.fail("network", "required for a NIC of type network");
      if (auto st = validateName(n.network, "network name"); !st.ok()) return r.fail("network", st.error().message);
      break;
    case NicType::bridge:
      if (n.bridge.empty()) return r.fail("bridge", "required for a NIC of type bridge");
      if (auto st = validateIfName(n.bridge); !st.ok()) return r.fail("bridge", st.error().message);
      break;
    case NicType::direct:
      if (n.device.empty()) return r.fail("device", "required for a NIC of type direct (the host interface)");
      if (auto st = validateIfName(n.device); !st.ok()) return r.fail("device", st.error().message);
      break;
    case NicType::user:
      break;
  }
  if (n.type != NicType::network && !n.network.empty()) return r.fail("network", "only for NICs of type network");
  if (n.type != NicType::bridge && !n.bridge.empty()) return r.fail("bridge", "only for NICs of type bridge");
  if (n.type != NicType::direct && !n.device.empty()) return r.fail("device", "only for NICs of type direct");
  if (n.type != NicType::user && !n.forwards.empty()) return r.fail("forwards", "only for NICs of type user");
  if (n.type != NicType::user && n.hostLoopback) return r.fail("host_loopback", "only for NICs of type user");
  if (n.type == NicType::user && !n.port.empty()) return r.fail("port", "a user-mode NIC has no host port to configure");
  if (!n.mac.empty()) {
    auto m = normalizeMac(n.mac);
    if (!m.ok()) return r.fail("mac", m.error().message);
    n.mac = *m;
  } else {
    n.mac = generateMac();
  }
  if (!n.ifname.empty()) {
    if (auto st = validateIfName(n.ifname); !st.ok()) return r.fail("ifname", st.error().message);
  }
}

json formatNic(const Nic& n) {
  json j = {{"type", enumName(kNicTypes, n.type)}};
  switch (n.type) {
    case NicType::network: j["network"] = n.network; break;
    case NicType::bridge: j["bridge"] = n.bridge; break;
    case NicType::direct:
      j["device"] = n.device;
      j["mode"] = enumName(kDirectModes, n.directMode);
      break;
    case NicType::user: j["host_loopback"] = n.hostLoopback; break;
  }
  j["mac"] = n.mac;
  j["model"] = enumName(kNicModels, n.model);
  if (!n.ifname.empty()) j["ifname"] = n.ifname;
  if (!n.forwards.empty()) {
    j["forwards"] = json::array();
    for (const auto& f : n.forwards)
      j["forwards"].push_back({{"protocol", f.protocol},
                               {"host_address", f.hostAddress},
                               {"host_port", f.hostPort},
                               {"guest_port", f.guestPort}});
  }
  if (!n.port.empty()) j["port"] = formatPortProfile(n.port);
  return j;
}

void readBoot(JsonReader& r, Boot& b) {
  r.optional("kernel", b.kernel);
  r.optional("initrd", b.initrd);
  r.optional("cmdline", b.cmdline);
  r.array("order", 3, [&](const json& item, size_t) -> std::string {
    if (!item.is_string()) return "expected disk, cdrom or network";
    auto v = enumFromName(kBootDevices, item.get<std::string>());
    if (!v) return "unknown boot device " + quote(item.get<std::string>()) + " (expected disk, cdrom or network)";
    for (auto o : b.order)
      if (o == *v) return "boot device " + item.get<std::string>() + " is listed twice";
    b.order.push_back(*v);
    return "";
  });
  r.optionalEnum("firmware", b.firmware, kFirmwares);
  if (!r.ok()) return;
  if (!b.kernel.empty()) {
    if (auto e = checkPath(b.kernel, "kernel"); !e.empty()) return r.fail("kernel", e);
  }
  if (!b.initrd.empty()) {
    if (b.kernel.empty()) return r.fail("initrd", "needs a kernel");
    if (auto e = checkPath(b.initrd, "initrd"); !e.empty()) return r.fail("initrd", e);
  }
  if (!b.cmdline.empty() && b.kernel.empty()) return r.fail("cmdline", "needs a kernel");
  if (b.cmdline.size() > 4096) return r.fail("cmdline", "longer than 4096 characters");
}

json formatBoot(const Boot& b) {
  json j = json::object();
  if (!b.kernel.empty()) j["kernel"] = b.kernel;
  if (!b.initrd.empty()) j["initrd"] = b.initrd;
  if (!b.cmdline.empty()) j["cmdline"] = b.cmdline;
  j["order"] = json::array();
  for (auto o : b.order) j["order"].push_back(enumName(kBootDevices, o));
  j["firmware"] = enumName(kFirmwares, b.firmware);
  return j;
}

void readContainer(JsonReader& r, ContainerConfig& c) {
  r.object("rootfs", [&](JsonReader& s) { readDiskSource(s, c.rootfs); }, true);
  r.optional("init", c.init);
  r.optional("env", c.env);
  r.optional("hostname", c.hostname);
  r.objectArray("mounts", 64, [&](JsonReader& m, size_t) {
    Mount mount;
    m.required("source", mount.source);
    m.required("target", mount.target);
    m.optional("readonly", mount.readonly);
    if (!m.ok()) return;
    if (auto e = checkPath(mount.source, "source"); !e.empty()) return m.fail("source", e);
    if (auto e = checkPath(mount.target, "target"); !e.empty()) return m.fail("target", e);
    if (mount.target == "/") return m.fail("target", "cannot mount over the container's root");
    c.mounts.push_back(mount);
  });
  r.optional("privileged", c.privileged);
  int64_t base = c.idmapBase, size = c.idmapSize;
  r.optional("idmap_base", base, 1, 0xfffffffeLL);
  r.optional("idmap_size", size, 1, 0xffffffffLL);
  if (!r.ok()) return;
  c.idmapBase = static_cast<uint32_t>(base);
  c.idmapSize = static_cast<uint32_t>(size);
  if (c.init.empty()) c.init = {"/sbin/init"};
  if (c.init.size() > 256) return r.fail("init", "at most 256 arguments");
  if (c.init[0].empty() || c.init[0][0] != '/') return r.fail("init", "the command must be an absolute path");
  for (const auto& [k, v] : c.env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
      return r.fail("env", "invalid variable name " + quote(k));
    (void)v;
  }
  if (!c.hostname.empty()) {
    if (auto st = validateName(c.hostname, "hostname"); !st.ok()) return r.fail("hostname", st.error().message);
  }
}

json formatContainer(const ContainerConfig& c) {
  json j = {{"rootfs", formatDiskSource(c.rootfs)}, {"init", c.init}, {"env", c.env}};
  if (!c.hostname.empty()) j["hostname"] = c.hostname;
  j["mounts"] = json::array();
  for (const auto& m : c.mounts)
    j["mounts"].push_back({{"source", m.source}, {"target", m.target}, {"readonly", m.readonly}});
  j["privileged"] = c.privileged;
  if (!c.privileged) {
    if (c.idmapBase != 0) j["idmap_base"] = c.idmapBase;
    j["idmap_size"] = c.idmapSize;
  }
  return j;
}

}  // namespace

DiskFormat defaultDiskFormat(const Disk& disk) {
  const std::string& name = disk.source.isVolume() ? disk.source.volume : disk.source.path;
  return endsWith(name, ".qcow2") ? DiskFormat::qcow2 : DiskFormat::raw;
}

Status assignDiskTargets(Domain& d) {
  std::set<std::string> used;
  for (size_t i = 0; i < d.disks.size(); ++i) {
    const auto& t = d.disks[i].target;
    if (t.empty()) continue;
    if (!used.insert(t).second) return invalidArgument("disks[" + std::to_string(i) + "].target: " + quote(t) + " is used twice");
  }
  for (auto& disk : d.disks) {
    if (!disk.target.empty()) continue;
    std::string prefix;
    switch (disk.bus) {
      case DiskBus::virtio: prefix = "vd"; break;
      case DiskBus::ide: prefix = "hd"; break;
      case DiskBus::xen: prefix = "xvd"; break;
      default: prefix = "sd"; break;
    }
    for (char c = 'a'; c <= 'z'; ++c) {
      std::string cand = prefix + c;
      if (used.insert(cand).second) {
        disk.target = cand;
        break;
      }
    }
    if (disk.target.empty()) return invalidArgument("too many disks on bus " + std::string(enumName(kDiskBuses, disk.bus)));
  }
  return {};
}

namespace {

bool loopbackAddress(const std::string& a) { return a == "localhost" || a == "::1" || startsWith(a, "127."); }

}  // namespace

std::vector<HostReference> hostReferences(const Domain& d) {
  std::vector<HostReference> out;
  // The value is the whole element that carries the reference, as the API writes it: an
  // update that keeps a disk path but makes the disk writable changes the reference.
  json f = formatDomain(d, false);
  auto element = [&](const char* list, size_t i) { return f[list][i].dump(); };
  auto add = [&](std::string field, std::string kind, std::string value) {
    out.push_back({std::move(field), std::move(kind), std::move(value)});
  };
  for (size_t i = 0; i < d.disks.size(); ++i)
    if (!d.disks[i].source.isVolume() && !d.disks[i].source.path.empty())
      add("disks[" + std::to_string(i) + "].source.path", "disks", element("disks", i));
  if (!d.boot.kernel.empty()) add("boot.kernel", "boot.kernel", d.boot.kernel);
  if (!d.boot.initrd.empty()) add("boot.initrd", "boot.initrd", d.boot.initrd);
  for (size_t i = 0; i < d.nics.size(); ++i) {
    const Nic& n = d.nics[i];
    std::string at = "nics[" + std::to_string(i) + "].";
    auto nic = [&](const std::string& field) { add(at + field, "nics", element("nics", i)); };
    if (n.type == NicType::bridge) nic("bridge");
    else if (n.type == NicType::direct) nic("device");
    else if (!n.port.mirrorTo.empty()) nic("port.mirror_to");
    else if (n.hostLoopback) nic("host_loopback");
    else if (!n.ifname.empty()) nic("ifname");  // an existing host tap would be taken over
    else if (!n.forwards.empty()) nic("forwards");  // host ports, which QEMU binds in the host's network
  }
  for (size_t i = 0; i < d.graphics.size(); ++i)
    if (d.graphics[i].tcp() && !loopbackAddress(d.graphics[i].listen))
      add("graphics[" + std::to_string(i) + "].listen", "graphics", element("graphics", i));
  if (d.container) {
    const ContainerConfig& c = *d.container;
    if (!c.rootfs.isVolume() && !c.rootfs.path.empty()) add("container.rootfs.path", "container.rootfs.path", c.rootfs.path);
    for (size_t i = 0; i < c.mounts.size(); ++i)
      add("container.mounts[" + std::to_string(i) + "].source", "container.mounts", f["container"]["mounts"][i].dump());
    if (c.privileged) add("container.privileged", "container.privileged", "true");
    if (c.idmapBase != 0)
      add("container.idmap_base", "container.idmap", std::to_string(c.idmapBase) + "+" + std::to_string(c.idmapSize));
  }
  return out;
}

bool grantsHostRoot(const Domain& d) {
  if (!d.container) return false;
  if (d.container->privileged) return true;
  return std::any_of(d.container->mounts.begin(), d.container->mounts.end(), [](const Mount& m) { return !m.readonly; });
}

std::vector<HostReference> addedHostReferences(const Domain& next, const Domain* current) {
  auto refs = hostReferences(next);
  if (!current) return refs;
  auto had = hostReferences(*current);
  std::vector<HostReference> added;
  for (auto& r : refs) {
    bool known = std::any_of(had.begin(), had.end(), [&](const HostReference& h) { return h.kind == r.kind && h.value == r.value; });
    if (!known) added.push_back(std::move(r));
  }
  return added;
}

Result<Domain> parseDomain(const json& j) {
  Domain d;
  JsonReader r(j, "");
  r.required("name", d.name);
  r.optional("uuid", d.uuid);
  r.optionalEnum("type", d.type, kDriverTypes);
  r.optional("title", d.title);
  r.optional("description", d.description);
  r.optional("vcpus", d.vcpus, 1, DomainLimits::kMaxVcpus);
  r.optionalSize("memory", d.memory);
  r.object("cpu", [&](JsonReader& c) {
    c.optional("model", d.cpu.model);
    c.object("topology", [&](JsonReader& t) {
      CpuTopology topo;
      t.optional("sockets", topo.sockets, 1, 64);
      t.optional("cores", topo.cores, 1, 512);
      t.optional("threads", topo.threads, 1, 8);
      d.cpu.topology = topo;
    });
  });
  r.optional("machine", d.machine);
  r.object("boot", [&](JsonReader& b) { readBoot(b, d.boot); });
  r.objectArray("disks", DomainLimits::kMaxDisks, [&](JsonReader& dr, size_t) {
    Disk disk;
    readDisk(dr, disk);
    d.disks.push_back(std::move(disk));
  });
  r.objectArray("nics", DomainLimits::kMaxNics, [&](JsonReader& nr, size_t) {
    Nic nic;
    readNic(nr, nic);
    d.nics.push_back(std::move(nic));
  });
  bool consolesGiven = r.has("consoles");
  r.objectArray("consoles", 4, [&](JsonReader& cr, size_t) {
    Console c;
    cr.optionalEnum("type", c.type, kConsoleTypes);
    cr.optional("log", c.log);
    d.consoles.push_back(c);
  });
  r.objectArray("graphics", 2, [&](JsonReader& gr, size_t) {
    Graphics g;
    gr.optionalEnum("type", g.type, kGraphicsTypes);
    gr.optional("listen", g.listen);
    gr.optional("port", g.port, 0, 65535);
    gr.optional("password", g.password);
    if (g.listen == "unix") g.listen.clear();
    if (gr.ok()) {
      if (!g.tcp() && g.port != 0) gr.fail("port", "only with a TCP listen address (the default is a unix socket)");
      if (g.tcp())
        if (auto ip = parseIp(g.listen); !ip.ok()) gr.fail("listen", ip.error().message + " (or \"unix\")");
      if (g.port != 0 && g.port < 5900 && g.type == GraphicsType::vnc) gr.fail("port", "VNC ports start at 5900");
      if (g.password.size() > 64) gr.fail("password", "at most 64 characters");
    }
    d.graphics.push_back(g);
  });
  r.object("container", [&](JsonReader& cr) {
    ContainerConfig c;
    readContainer(cr, c);
    d.container = c;
  });
  r.object("limits", [&](JsonReader& lr) {
    lr.optional("cpu_shares", d.limits.cpuShares, 0, 262144);
    lr.optional("cpu_quota_percent", d.limits.cpuQuotaPercent, 0, 100 * DomainLimits::kMaxVcpus);
    lr.optional("pids", d.limits.pids, 0, 4194304);
  });
  r.object("lifecycle", [&](JsonReader& lr) {
    lr.optionalEnum("on_poweroff", d.onPoweroff, kLifecycleActions);
    lr.optionalEnum("on_reboot", d.onReboot, kLifecycleActions);
    lr.optionalEnum("on_crash", d.onCrash, kLifecycleActions);
  });
  r.optional("autostart", d.autostart);
  r.optional("guest_agent", d.guestAgent);
  r.optional("labels", d.labels);
  r.optionalAny("metadata", d.metadata);
  r.optionalAny("extensions", d.extensions);
  VMM_TRY(r.finish());

  if (auto st = validateQualifiedName(d.name, "domain name"); !st.ok()) return st.error().wrap("name");
  if (d.uuid.empty()) {
    d.uuid = newUuid();
  } else if (!isUuid(d.uuid)) {
    return invalidArgument("uuid: " + quote(d.uuid) + " is not a UUID");
  } else {
    d.uuid = toLower(d.uuid);
  }
  if (d.title.size() > 256) return invalidArgument("title: longer than 256 characters");
  if (d.description.size() > 4096) return invalidArgument("description: longer than 4096 characters");
  if (d.memory < DomainLimits::kMinMemory || d.memory > DomainLimits::kMaxMemory)
    return invalidArgument("memory: " + formatSize(d.memory) + " is out of range (" + formatSize(DomainLimits::kMinMemory) +
                           " to " + formatSize(DomainLimits::kMaxMemory) + ")");
  if (d.memory % 1024 != 0) return invalidArgument("memory: must be a multiple of 1KiB");
  if (d.cpu.topology) {
    const auto& t = *d.cpu.topology;
    if (t.sockets * t.cores * t.threads < d.vcpus)
      return invalidArgument("cpu.topology: " + std::to_string(t.sockets) + " sockets x " + std::to_string(t.cores) +
                             " cores x " + std::to_string(t.threads) + " threads is fewer than " +
                             std::to_string(d.vcpus) + " vcpus");
  }
  auto tokenOk = [](const std::string& s) {
    if (s.size() > 64) return false;
    for (char c : s)
      if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ',' && c != '=' && c != '+')
        return false;
    return true;
  };
  if (!tokenOk(d.cpu.model)) return invalidArgument("cpu.model: invalid CPU model " + quote(d.cpu.model));
  if (!tokenOk(d.machine) || d.machine.find(',') != std::string::npos)
    return invalidArgument("machine: invalid machine type " + quote(d.machine));
  if (!consolesGiven && d.type != DriverType::test) d.consoles.push_back(Console{});
  if (d.labels.size() > DomainLimits::kMaxLabels)
    return invalidArgument("labels: at most " + std::to_string(DomainLimits::kMaxLabels) + " labels");
  for (const auto& [k, v] : d.labels)
    if (auto st = validateLabel(k, v); !st.ok()) return st.error().wrap("labels");
  if (!d.metadata.is_object()) return invalidArgument("metadata: expected an object, got " + jsonTypeName(d.metadata));
  if (d.metadata.dump().size() > DomainLimits::kMaxMetadataBytes)
    return invalidArgument("metadata: larger than " + formatSize(DomainLimits::kMaxMetadataBytes));
  if (!d.extensions.is_object()) return invalidArgument("extensions: expected an object");
  if (d.extensions.dump().size() > DomainLimits::kMaxMetadataBytes * 4)
    return invalidArgument("extensions: larger than " + formatSize(DomainLimits::kMaxMetadataBytes * 4));

  std::set<std::string> macs, ifnames;
  for (size_t i = 0; i < d.nics.size(); ++i) {
    if (!macs.insert(d.nics[i].mac).second)
      return invalidArgument("nics[" + std::to_string(i) + "].mac: " + d.nics[i].mac + " is used by another NIC of this domain");
    if (!d.nics[i].ifname.empty() && !ifnames.insert(d.nics[i].ifname).second)
      return invalidArgument("nics[" + std::to_string(i) + "].ifname: " + d.nics[i].ifname + " is used twice");
  }
  std::set<int> bootOrders;
  for (size_t i = 0; i < d.disks.size(); ++i) {
    if (d.disks[i].bootOrder && !bootOrders.insert(*d.disks[i].bootOrder).second)
      return invalidArgument("disks[" + std::to_string(i) + "].boot_order: " + std::to_string(*d.disks[i].bootOrder) +
                             " is used twice");
  }
  if (d.type == DriverType::lxc && !d.container)
    return invalidArgument("container: required for a domain of type lxc (at least container.rootfs)");
  if (d.type != DriverType::lxc && d.container)
    return invalidArgument("container: only for domains of type lxc");
  VMM_TRY(assignDiskTargets(d));
  return d;
}

bool generateGraphicsPasswords(Domain& d) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  bool generated = false;
  for (auto& g : d.graphics) {
    if (!g.tcp() || !g.password.empty()) continue;
    size_t length = g.type == GraphicsType::vnc ? 8 : 16;
    // Bytes past the largest multiple of the alphabet size are drawn again: every character is equally likely.
    while (g.password.size() < length) {
      unsigned char b[32];
      randomBytes(b, sizeof b);
      for (unsigned char c : b)
        if (c < 256 / kAlphabet.size() * kAlphabet.size() && g.password.size() < length) g.password += kAlphabet[c % kAlphabet.size()];
    }
    generated = true;
  }
  return generated;
}

json formatDomain(const Domain& d, bool redactSecrets) {
  json j;
  j["name"] = d.name;
  j["uuid"] = d.uuid;
  j["type"] = enumName(kDriverTypes, d.type);
  if (!d.title.empty()) j["title"] = d.title;
  if (!d.description.empty()) j["description"] = d.description;
  j["vcpus"] = d.vcpus;
  j["memory"] = formatSize(d.memory);
  json cpu = json::object();
  if (!d.cpu.model.empty()) cpu["model"] = d.cpu.model;
  if (d.cpu.topology)
    cpu["topology"] = {{"sockets", d.cpu.topology->sockets},
                       {"cores", d.cpu.topology->cores},
                       {"threads", d.cpu.topology->threads}};
  j["cpu"] = cpu;
  if (!d.machine.empty()) j["machine"] = d.machine;
  j["boot"] = formatBoot(d.boot);
  j["disks"] = json::array();
  for (const auto& disk : d.disks) j["disks"].push_back(formatDisk(disk));
  j["nics"] = json::array();
  for (const auto& nic : d.nics) j["nics"].push_back(formatNic(nic));
  j["consoles"] = json::array();
  for (const auto& c : d.consoles) j["consoles"].push_back({{"type", enumName(kConsoleTypes, c.type)}, {"log", c.log}});
  j["graphics"] = json::array();
  for (const auto& g : d.graphics) {
    json gj = {{"type", enumName(kGraphicsTypes, g.type)}, {"listen", g.tcp() ? g.listen : "unix"}};
    if (g.tcp()) gj["port"] = g.port;
    if (!g.password.empty()) gj["password"] = redactSecrets ? std::string("********") : g.password;
    j["graphics"].push_back(gj);
  }
  if (d.container) j["container"] = formatContainer(*d.container);
  if (d.limits.cpuShares || d.limits.cpuQuotaPercent || d.limits.pids) {
    json l = json::object();
    if (d.limits.cpuShares) l["cpu_shares"] = d.limits.cpuShares;
    if (d.limits.cpuQuotaPercent) l["cpu_quota_percent"] = d.limits.cpuQuotaPercent;
    if (d.limits.pids) l["pids"] = d.limits.pids;
    j["limits"] = l;
  }
  j["lifecycle"] = {{"on_poweroff", enumName(kLifecycleActions, d.onPoweroff)},
                    {"on_reboot", enumName(kLifecycleActions, d.onReboot)},
                    {"on_crash", enumName(kLifecycleActions, d.onCrash)}};
  j["autostart"] = d.autostart;
  j["guest_agent"] = d.guestAgent;
  j["labels"] = d.labels;
  j["metadata"] = d.metadata;
  if (!d.extensions.empty()) j["extensions"] = d.extensions;
  return j;
}

}  // namespace vmm::model
