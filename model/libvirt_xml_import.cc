// libvirt domain XML -> the canonical JSON definition -> parseDomain (which validates).
// Each mapped attribute, text and element is removed from the parsed tree; what remains is the
// residue kept in extensions (see libvirt_xml.h).
#include <algorithm>
#include <set>

#include "base/json_util.h"
#include "base/strings.h"
#include "model/libvirt_xml.h"
#include "model/libvirt_xml_tree.h"
#include "model/names.h"
#include "model/units.h"

namespace vmm::model {

using namespace libvirt_xml;

bool looksLikeXml(std::string_view text) {
  auto start = text.find_first_not_of(" \t\r\n");
  return start != std::string_view::npos && text[start] == '<';
}

namespace {

bool isText(const pugi::xml_node& n) { return n.type() == pugi::node_pcdata || n.type() == pugi::node_cdata; }
bool empty(const pugi::xml_node& n) { return !n.first_attribute() && !n.first_child(); }

std::vector<pugi::xml_node> elements(const pugi::xml_node& parent, const char* name = nullptr) {
  std::vector<pugi::xml_node> out;
  for (auto c : parent.children())
    if (c.type() == pugi::node_element && (!name || std::string_view(c.name()) == name)) out.push_back(c);
  return out;
}

// Takes values out of the tree and remembers which elements were looked into, so the
// remainder can be reported precisely ("devices/disk[vda]/driver@discard").
class Taker {
 public:
  std::string attr(pugi::xml_node n, const char* name) {
    touched_.insert(n);
    auto a = n.attribute(name);
    if (!a) return "";
    std::string v = a.value();
    n.remove_attribute(a);
    return v;
  }
  // Takes the attribute only when it has this value (e.g. a default vmm also applies).
  bool attrIf(pugi::xml_node n, const char* name, std::string_view value) {
    touched_.insert(n);
    auto a = n.attribute(name);
    if (!a || value != a.value()) return false;
    n.remove_attribute(a);
    return true;
  }
  std::string peek(const pugi::xml_node& n, const char* name) const { return n.attribute(name).value(); }
  std::string text(pugi::xml_node n) {
    touched_.insert(n);
    std::string v;
    std::vector<pugi::xml_node> texts;
    for (auto c : n.children())
      if (c.type() == pugi::node_element && textWithElements_.empty()) {
        textWithElements_ = toValidUtf8(n.name());
      } else if (isText(c)) {
        v += c.value();
        texts.push_back(c);
      }
    for (auto& c : texts) n.remove_child(c);
    return std::string(trim(v));
  }
  void touch(const pugi::xml_node& n) { touched_.insert(n); }
  // Removes n when nothing of it is left.
  void done(pugi::xml_node n) {
    touched_.insert(n);
    if (n && empty(n)) n.parent().remove_child(n);
  }
  // Text of the child element, which is removed when nothing else is left in it.
  std::string childText(pugi::xml_node parent, const char* name) {
    auto c = parent.child(name);
    if (!c) return "";
    auto v = text(c);
    done(c);
    return v;
  }
  bool wasTouched(const pugi::xml_node& n) const { return touched_.count(n) > 0; }
  // An element read as a value (<uuid>, <memory>...) that holds elements: the first one seen.
  const std::string& textWithElements() const { return textWithElements_; }


 private:
  std::set<pugi::xml_node> touched_;
  std::string textWithElements_;
};

// Paths of what is left: an element nobody looked into is listed whole.
void listResidue(const Taker& t, const pugi::xml_node& n, const std::string& path, std::vector<std::string>& out) {
  for (auto a : n.attributes())
    if (std::string_view(a.name()) != kKeyAttr && !startsWith(a.name(), "xmlns")) out.push_back(path + "@" + a.name());
  bool text = false;
  for (auto c : n.children()) text = text || isText(c);
  if (text) out.push_back(path + " (text)");
  for (auto c : elements(n)) {
    std::string p = path.empty() ? c.name() : path + "/" + c.name();
    if (auto key = c.attribute(kKeyAttr); key && key.value()[0] != '.') {
      std::string k = key.value();
      p = (path.empty() ? "" : path + "/") + c.name() + "[" + k.substr(k.find(':') + 1) + "]";
    }
    if (t.wasTouched(c) || c.attribute(kKeyAttr)) listResidue(t, c, p, out);
    else out.push_back(p);
  }
}

Result<uint64_t> memoryOf(Taker& t, pugi::xml_node n, const char* what) {
  std::string unit = t.attr(n, "unit");
  std::string value = t.text(n);
  auto bytes = parseSize(value + (unit.empty() ? "KiB" : unit));
  if (!bytes.ok()) return invalidArgument(std::string(what) + ": " + bytes.error().message);
  return *bytes;
}

const std::map<std::string, std::string> kBootDevs = {{"hd", "disk"}, {"cdrom", "cdrom"}, {"network", "network"}};

class Importer {
 public:
  explicit Importer(pugi::xml_node domain) : root_(domain) {}

  Result<json> run(std::vector<std::string>& warnings) {
    VMM_TRY(readType());
    def_["name"] = t_.childText(root_, "name");
    if (def_["name"].get<std::string>().empty()) return invalidArgument("libvirt XML: <name> is required");
    for (const char* k : {"uuid", "title", "description"}) {
      auto v = t_.childText(root_, k);
      if (!v.empty()) def_[k] = v;
    }
    VMM_TRY(readMemory(warnings));
    if (auto v = root_.child("vcpu")) {
      t_.attrIf(v, "placement", "static");
      auto n = parseInt(t_.text(v));
      if (!n) return invalidArgument("libvirt XML: <vcpu> must be a number");
      def_["vcpus"] = *n;
      t_.done(v);
    }
    readCpu();
    readOs();
    for (const char* k : {"on_poweroff", "on_reboot", "on_crash"}) {
      auto n = root_.child(k);
      if (!n) continue;
      std::string v = n.child_value();
      if (enumFromName(kLifecycleActions, v)) {
        def_["lifecycle"][k] = t_.text(n);
        t_.done(n);
      } else {
        t_.touch(n);  // kept; export writes this value instead of vmm's
      }
    }
    VMM_TRY(readMetadata());
    VMM_TRY(readDevices());
    if (!t_.textWithElements().empty())
      return invalidArgument("libvirt XML: <" + t_.textWithElements() + "> holds elements where a value belongs");
    t_.touch(root_);
    markPartial(root_);
    std::vector<std::string> kept;
    listResidue(t_, root_, "", kept);
    std::vector<std::string> unique;
    for (auto& k : kept)
      if (std::find(unique.begin(), unique.end(), k) == unique.end()) unique.push_back(k);
    kept.swap(unique);
    if (!kept.empty() || libvirtType_ != def_["type"].get<std::string>()) {
      json ext = {{"type", libvirtType_}};
      if (!kept.empty()) {
        sortAttributes(root_);
        ext["xml"] = printNode(root_, false);
      }
      def_["extensions"][kExtensionKey] = ext;
    }
    kept_ = kept;
    return def_;
  }
  const std::vector<std::string>& kept() const { return kept_; }

 private:
  // Elements vmm took something from but not everything are merged back into the element
  // export generates in their place (".name": the child of that name); devices already carry
  // their own key.
  // Keyed elements go first, by key, so that the remainder does not depend on the order of
  // the devices vmm models (import -> export -> import keeps the same remainder).
  void markPartial(pugi::xml_node n) {
    std::vector<std::pair<std::string, pugi::xml_node>> keyed;
    for (auto c : elements(n)) {
      if (!c.attribute(kKeyAttr) && t_.wasTouched(c)) c.append_attribute(kKeyAttr).set_value((std::string(".") + c.name()).c_str());
      if (auto k = c.attribute(kKeyAttr)) keyed.emplace_back(k.value(), c);
      markPartial(c);
    }
    std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto it = keyed.rbegin(); it != keyed.rend(); ++it) n.prepend_move(it->second);
  }

  Status readType() {
    libvirtType_ = t_.attr(root_, "type");
    static const std::map<std::string, std::string> types = {
        {"kvm", "qemu"}, {"qemu", "qemu"}, {"lxc", "lxc"}, {"xen", "xen"}, {"test", "test"}};
    auto it = types.find(libvirtType_);
    if (it == types.end())
      return unsupported("libvirt XML: domain type " + quote(libvirtType_) + " is not supported (kvm, qemu, lxc, xen, test)");
    def_["type"] = it->second;
    return {};
  }

  Status readMemory(std::vector<std::string>& warnings) {
    auto mem = root_.child("memory");
    if (!mem) return invalidArgument("libvirt XML: <memory> is required");
    VMM_ASSIGN(uint64_t bytes, memoryOf(t_, mem, "memory"));
    t_.done(mem);
    def_["memory"] = std::to_string(bytes);
    if (auto cur = root_.child("currentMemory")) {
      // vmm gives the guest all of <memory>; a different balloon target is kept, not applied.
      std::string unit = t_.peek(cur, "unit");
      auto curBytes = parseSize(std::string(trim(cur.child_value())) + (unit.empty() ? "KiB" : unit));
      if (!curBytes.ok()) return curBytes.error().wrap("libvirt XML: <currentMemory>");
      if (*curBytes == bytes) {
        t_.text(cur);
        t_.attr(cur, "unit");
        t_.done(cur);
      } else {
        // Kept in KiB, as export writes <currentMemory>, whose value it then replaces.
        warnings.push_back("currentMemory differs from memory: the guest gets " + formatSize(bytes));
        t_.text(cur);
        t_.attr(cur, "unit");
        cur.append_attribute("unit").set_value("KiB");
        cur.append_child(pugi::node_pcdata).set_value(std::to_string(*curBytes / 1024).c_str());
      }
    }
    return {};
  }

  void readCpu() {
    auto cpu = root_.child("cpu");
    if (!cpu) return;
    std::string mode = t_.peek(cpu, "mode");
    auto model = cpu.child("model");
    if (mode == "host-passthrough") {
      t_.attr(cpu, "mode");
      def_["cpu"]["model"] = "host";
    } else if (mode == "maximum") {
      t_.attr(cpu, "mode");
      def_["cpu"]["model"] = "max";
    } else if ((mode.empty() || mode == "custom") && model) {
      t_.attr(cpu, "mode");
      t_.attrIf(cpu, "match", "exact");
      t_.attrIf(model, "fallback", "allow");
      def_["cpu"]["model"] = t_.text(model);
      t_.done(model);
    }
    if (auto topo = cpu.child("topology")) {
      json j = json::object();
      for (const char* k : {"sockets", "cores", "threads"}) {
        auto v = parseInt(t_.peek(topo, k));
        if (v) j[k] = *v;
        t_.attr(topo, k);
      }
      t_.attrIf(topo, "dies", "1");
      def_["cpu"]["topology"] = j;
      t_.done(topo);
    }
    t_.done(cpu);
  }

  void readOs() {
    auto os = root_.child("os");
    if (!os) return;
    json boot = json::object();
    if (auto type = os.child("type")) {
      std::string kind = type.child_value();
      if (kind == "hvm" || kind == "exe") t_.text(type);
      std::string machine = t_.attr(type, "machine");
      if (!machine.empty()) def_["machine"] = machine;
      t_.done(type);
    }
    if (t_.attrIf(os, "firmware", "efi")) boot["firmware"] = "uefi";
    t_.attrIf(os, "firmware", "bios");
    if (auto loader = os.child("loader"); loader && t_.attrIf(loader, "type", "pflash")) {
      boot["firmware"] = "uefi";
      t_.done(loader);
    }
    for (const char* k : {"kernel", "initrd", "cmdline"}) {
      auto v = t_.childText(os, k);
      if (!v.empty()) boot[k] = v;
    }
    for (auto b : elements(os, "boot")) {
      auto it = kBootDevs.find(t_.peek(b, "dev"));
      if (it == kBootDevs.end()) continue;
      t_.attr(b, "dev");
      boot["order"].push_back(it->second);
      t_.done(b);
    }
    if (libvirtType_ == "lxc") {
      json c = json::object();
      if (auto init = t_.childText(os, "init"); !init.empty()) c["init"].push_back(init);
      for (auto a : elements(os, "initarg")) {
        if (c.contains("init")) c["init"].push_back(t_.text(a));
        t_.done(a);
      }
      for (auto e : elements(os, "initenv")) {
        std::string name = t_.attr(e, "name");
        c["env"][name] = t_.text(e);
        t_.done(e);
      }
      container_ = c;
    }
    if (!boot.empty()) def_["boot"] = boot;
    t_.done(os);
  }

  Status readMetadata() {
    auto md = root_.child("metadata");
    if (!md) return {};
    json libvirtXml = json::array();
    for (auto c : elements(md)) {
      std::string name = c.name();
      if (name.size() > 7 && name.substr(name.size() - 7) == ":domain" &&
          std::string_view(c.attribute(("xmlns:" + name.substr(0, name.size() - 7)).c_str()).value()) == kVmmNamespace) {
        auto parsed = parseJson(c.child_value(), LibvirtXmlLimits::kMaxBytes, kJsonMaxDepth,
                                std::string("libvirt XML: metadata/") + name + ": invalid JSON");
        if (!parsed.ok()) return parsed.error();
        vmm_ = std::move(*parsed);
        if (!vmm_.is_object()) return invalidArgument(std::string("libvirt XML: metadata/") + name + ": expected a JSON object");
      } else {
        libvirtXml.push_back(printNode(c, false));
      }
      md.remove_child(c);
    }
    json meta = vmm_.value("metadata", json::object());
    if (!libvirtXml.empty() && meta.is_object()) meta["libvirt_xml"] = libvirtXml;
    if (!meta.empty()) def_["metadata"] = meta;
    for (const char* k : {"labels", "autostart", "limits"})
      if (vmm_.contains(k)) def_[k] = vmm_[k];
    t_.done(md);
    return {};
  }

  Status readDevices() {
    auto devs = root_.child("devices");
    def_["disks"] = json::array();
    def_["nics"] = json::array();
    def_["consoles"] = json::array();
    def_["graphics"] = json::array();
    // Export writes the agent channel for qemu and test domains: its absence means no agent.
    if (libvirtType_ != "lxc" && libvirtType_ != "xen") def_["guest_agent"] = false;
    if (!devs) {
      finishContainer();
      return {};
    }
    for (auto d : elements(devs, "disk")) readDisk(d);
    for (auto n : elements(devs, "interface")) readInterface(n);
    readConsoles(devs);
    for (auto c : elements(devs, "channel")) {
      auto target = c.child("target");
      if (t_.peek(c, "type") != "unix" || t_.peek(target, "type") != "virtio" || t_.peek(target, "name") != kGuestAgentName ||
          def_.value("guest_agent", false))
        continue;
      def_["guest_agent"] = true;
      t_.attr(c, "type");
      t_.attr(target, "type");
      t_.attr(target, "name");
      t_.done(target);
      if (auto src = c.child("source")) {
        t_.attrIf(src, "mode", "bind");
        t_.done(src);
      }
      finishDevice(c, "channel:qemu-ga");
    }
    for (auto g : elements(devs, "graphics")) VMM_TRY(readGraphics(g));
    if (libvirtType_ == "lxc")
      for (auto f : elements(devs, "filesystem")) readContainerMount(f);
    finishContainer();
    t_.done(devs);
    return {};
  }

  void finishDevice(pugi::xml_node n, const std::string& key) {
    t_.touch(n);
    if (empty(n)) {
      n.parent().remove_child(n);
      return;
    }
    n.append_attribute(kKeyAttr).set_value(key.c_str());
  }

  void readDisk(pugi::xml_node d) {
    std::string type = t_.peek(d, "type"), device = t_.peek(d, "device");
    if (device.empty()) device = "disk";
    auto driver = d.child("driver"), source = d.child("source"), target = d.child("target");
    std::string format = t_.peek(driver, "type"), bus = t_.peek(target, "bus"), dev = t_.peek(target, "dev");
    if (bus.empty()) {
      if (startsWith(dev, "vd")) bus = "virtio";
      else if (startsWith(dev, "sd")) bus = "scsi";
      else if (startsWith(dev, "hd")) bus = "ide";
      else if (startsWith(dev, "xvd")) bus = "xen";
    }
    std::string path = type == "file" ? t_.peek(source, "file") : type == "block" ? t_.peek(source, "dev") : "";
    bool modelled = (type == "file" || type == "block" || type == "volume") && enumFromName(kDiskDevices, device) &&
                    enumFromName(kDiskBuses, bus) && (format.empty() || enumFromName(kDiskFormats, format)) &&
                    (type == "volume" ? !t_.peek(source, "pool").empty() : !path.empty()) && !dev.empty() &&
                    (t_.peek(driver, "name").empty() || t_.peek(driver, "name") == "qemu") &&
                    (t_.peek(driver, "cache").empty() || enumFromName(kDiskCaches, t_.peek(driver, "cache")));
    if (!modelled) return;  // network disks, floppies, empty cdroms, other formats: kept whole
    json j = {{"device", device}, {"bus", bus}, {"target", dev}};
    t_.attr(d, "type");
    t_.attr(d, "device");
    t_.attr(target, "bus");
    t_.attr(target, "dev");
    t_.done(target);
    if (type == "volume") {
      j["source"] = {{"pool", t_.attr(source, "pool")}, {"volume", t_.attr(source, "volume")}};
    } else {
      t_.attr(source, type == "file" ? "file" : "dev");
      j["source"] = {{"path", path}};
    }
    t_.done(source);
    if (driver) {
      t_.attr(driver, "name");
      if (!format.empty()) j["format"] = t_.attr(driver, "type");
      if (auto cache = t_.attr(driver, "cache"); !cache.empty()) j["cache"] = cache;
      t_.done(driver);
    }
    if (auto ro = d.child("readonly")) {
      j["readonly"] = true;
      t_.done(ro);
    }
    if (auto serial = t_.childText(d, "serial"); !serial.empty()) j["serial"] = serial;
    if (auto b = d.child("boot")) {
      if (auto order = parseInt(t_.peek(b, "order"))) {
        j["boot_order"] = *order;
        t_.attr(b, "order");
      }
      t_.done(b);
    }
    def_["disks"].push_back(j);
    finishDevice(d, "disk:" + dev);
  }

  static json bandwidthOf(Taker& t, pugi::xml_node n) {
    json j = json::object();
    auto average = parseUint(t.attr(n, "average"));
    auto peak = parseUint(t.peek(n, "peak"));
    auto burst = parseUint(t.peek(n, "burst"));
    j["average"] = std::to_string(average.value_or(0) * kRateUnitBits);
    if (peak) {
      t.attr(n, "peak");
      j["peak"] = std::to_string(*peak * kRateUnitBits);
    }
    if (burst) {
      t.attr(n, "burst");
      j["burst"] = std::to_string(*burst * kBurstUnitBytes);
    }
    t.done(n);
    return j;
  }

  void readInterface(pugi::xml_node n) {
    std::string type = t_.peek(n, "type");
    auto source = n.child("source"), model = n.child("model");
    std::string modelType = t_.peek(model, "type");
    bool modelled = enumFromName(kNicTypes, type) && (modelType.empty() || enumFromName(kNicModels, modelType)) &&
                    (type != "direct" || t_.peek(source, "mode").empty() || enumFromName(kDirectModes, t_.peek(source, "mode")));
    if (!modelled) return;  // ethernet, vhostuser, hostdev, unknown NIC models: kept whole
    json j = {{"type", type}};
    t_.attr(n, "type");
    if (type == "network") j["network"] = t_.attr(source, "network");
    if (type == "bridge") j["bridge"] = t_.attr(source, "bridge");
    if (type == "direct") {
      j["device"] = t_.attr(source, "dev");
      if (auto mode = t_.attr(source, "mode"); !mode.empty()) j["mode"] = mode;
    }
    if (source) t_.done(source);
    std::string mac;
    if (auto m = n.child("mac")) {
      mac = t_.attr(m, "address");
      t_.done(m);
    }
    // A NIC without an address gets one now, as libvirt gives it at define, so that what the
    // import kept of this <interface> stays keyed to the same NIC.
    if (mac.empty()) mac = generateMac();
    j["mac"] = mac;
    if (model) {
      j["model"] = t_.attr(model, "type");
      t_.done(model);
    }
    if (auto target = n.child("target")) {
      if (auto dev = t_.attr(target, "dev"); !dev.empty()) j["ifname"] = dev;
      t_.done(target);
    }
    json port = json::object();
    if (auto vlan = n.child("vlan")) {
      bool trunk = t_.attrIf(vlan, "trunk", "yes");
      json v = {{"mode", trunk ? "trunk" : "access"}};
      for (auto tag : elements(vlan, "tag")) {
        auto id = parseInt(t_.attr(tag, "id"));
        if (t_.attrIf(tag, "nativeMode", "untagged")) v["native"] = id.value_or(0);
        if (trunk) v["tags"].push_back(id.value_or(0));
        else v["tag"] = id.value_or(0);
        t_.done(tag);
      }
      port["vlan"] = v;
      t_.done(vlan);
    }
    if (auto bw = n.child("bandwidth")) {
      if (auto in = bw.child("inbound")) port["inbound"] = bandwidthOf(t_, in);
      if (auto out = bw.child("outbound")) port["outbound"] = bandwidthOf(t_, out);
      t_.done(bw);
    }
    // vmm-only NIC settings (forwards, ACLs, ...) travel in the vmm metadata, by MAC.
    const json* nics = jsonMember(vmm_, "nics");
    const json* extra = nics ? jsonMember(*nics, mac) : nullptr;
    if (extra && extra->is_object()) {
      for (auto it = extra->begin(); it != extra->end(); ++it) {
        if (it.key() == "port" && it->is_object()) {
          for (auto p = it->begin(); p != it->end(); ++p) port[p.key()] = p.value();
        } else {
          j[it.key()] = it.value();
        }
      }
    }
    if (!port.empty()) j["port"] = port;
    def_["nics"].push_back(j);
    finishDevice(n, "interface:" + mac);
  }

  // <serial type='pty'> is a serial console; <console> with a serial target repeats the serial
  // console of the same index (libvirt's convention) or stands for one; a virtio <console> is a
  // virtio console. Other kinds (file, tcp, unix ...) are kept whole.
  void readConsoles(pugi::xml_node devs) {
    std::vector<pugi::xml_node> serials;
    for (auto s : elements(devs, "serial")) {
      if (t_.peek(s, "type") != "pty") continue;
      size_t index = def_["consoles"].size();
      def_["consoles"].push_back({{"type", "serial"}});
      serials.push_back(s);
      takeCharTarget(s, {"isa-serial", "serial"});
      t_.attr(s, "type");
      finishDevice(s, "serial:" + std::to_string(index));
    }
    size_t consoleIndex = 0;
    for (auto c : elements(devs, "console")) {
      if (t_.peek(c, "type") != "pty") continue;
      std::string target = t_.peek(c.child("target"), "type");
      size_t index = def_["consoles"].size();
      if (target.empty() || target == "serial") {
        if (consoleIndex < serials.size()) index = consoleIndex;  // the same console as serial N
        else def_["consoles"].push_back({{"type", "serial"}});
        ++consoleIndex;
      } else if (target == "virtio") {
        def_["consoles"].push_back({{"type", "virtio"}});
      } else if (target == "lxc") {
        def_["consoles"].push_back({{"type", "serial"}});
      } else {
        continue;
      }
      takeCharTarget(c, {"serial", "virtio", "lxc"});
      t_.attr(c, "type");
      finishDevice(c, "console:" + std::to_string(index));
    }
  }

  void takeCharTarget(pugi::xml_node dev, std::initializer_list<const char*> types) {
    auto target = dev.child("target");
    if (!target) return;
    for (auto ty : types) t_.attrIf(target, "type", ty);
    t_.attr(target, "port");
    if (auto m = target.child("model")) {
      t_.attrIf(m, "name", "isa-serial");
      t_.done(m);
    }
    t_.done(target);
  }

  Status readGraphics(pugi::xml_node g) {
    std::string type = t_.peek(g, "type");
    if (!enumFromName(kGraphicsTypes, type) || def_["graphics"].size() >= 2) return {};
    json j = {{"type", t_.attr(g, "type")}};
    std::string port = t_.peek(g, "port"), autoportValue = t_.peek(g, "autoport");
    if (!autoportValue.empty() && autoportValue != "yes" && autoportValue != "no")
      return invalidArgument("<graphics type='" + type + "'>: autoport " + quote(autoportValue) + " is neither yes nor no");
    bool autoport = autoportValue == "yes" || port == "-1" || port.empty();
    if (autoport) {
      t_.attr(g, "port");
      t_.attr(g, "autoport");
    } else if (auto p = parseInt(port); p && *p >= 1 && *p <= 65535) {
      j["port"] = *p;
      t_.attr(g, "port");
      t_.attrIf(g, "autoport", "no");
    } else {
      return invalidArgument("<graphics type='" + type + "'>: port " + quote(port) + " is not a port number (1-65535, or -1 for any)");
    }
    // No address (libvirt's autoport default) is vmm's default, a unix socket in the domain's
    // private runtime directory; so is <listen type='socket'>, whose path vmm chooses itself.
    std::string listen = t_.attr(g, "listen");
    for (auto l : elements(g, "listen")) {
      std::string kind = t_.peek(l, "type");
      if (kind == "socket" && listen.empty()) {
        t_.attr(l, "type");
        t_.attr(l, "socket");
        t_.done(l);
        continue;
      }
      if (kind != "address") continue;
      std::string address = t_.peek(l, "address");
      if (!listen.empty() && address != listen) continue;
      listen = address;
      t_.attr(l, "type");
      t_.attr(l, "address");
      t_.done(l);
    }
    if (listen.empty() && j.contains("port")) listen = "127.0.0.1";  // a fixed port: TCP where libvirt listens by default
    if (!listen.empty()) j["listen"] = listen;
    if (auto pw = t_.attr(g, "passwd"); !pw.empty()) j["password"] = pw;
    size_t index = def_["graphics"].size();
    def_["graphics"].push_back(j);
    finishDevice(g, "graphics:" + std::to_string(index));
    return {};
  }

  // lxc: the filesystem mounted on "/" is the root filesystem; others are bind mounts.
  void readContainerMount(pugi::xml_node f) {
    std::string type = t_.peek(f, "type");
    auto source = f.child("source"), target = f.child("target");
    std::string dir = t_.peek(target, "dir");
    if (!container_) container_ = json::object();
    if (type == "mount" && dir == "/") {
      (*container_)["rootfs"] = {{"path", t_.attr(source, "dir")}};
    } else if (type == "volume" && dir == "/") {
      (*container_)["rootfs"] = {{"pool", t_.attr(source, "pool")}, {"volume", t_.attr(source, "volume")}};
    } else if (type == "mount") {
      json m = {{"source", t_.attr(source, "dir")}, {"target", dir}, {"readonly", false}};
      if (auto ro = f.child("readonly")) {
        m["readonly"] = true;
        t_.done(ro);
      }
      (*container_)["mounts"].push_back(m);
    } else {
      return;
    }
    t_.attr(f, "type");
    t_.attr(target, "dir");
    t_.done(source);
    t_.done(target);
    finishDevice(f, "filesystem:" + dir);
  }

  void finishContainer() {
    if (libvirtType_ != "lxc") return;
    json c = container_.value_or(json::object());
    if (vmm_.contains("container") && vmm_["container"].is_object())
      for (auto it = vmm_["container"].begin(); it != vmm_["container"].end(); ++it) c[it.key()] = it.value();
    // libvirt runs a container without <idmap> as the host's root: so does the import.
    if (!c.contains("privileged")) c["privileged"] = !root_.child("idmap");
    if (auto idmap = root_.child("idmap")) {
      auto uid = idmap.child("uid"), gid = idmap.child("gid");
      std::string target = t_.peek(uid, "target"), count = t_.peek(uid, "count");
      if (t_.peek(uid, "start") == "0" && t_.peek(gid, "start") == "0" && t_.peek(gid, "target") == target &&
          t_.peek(gid, "count") == count) {
        c["privileged"] = false;
        if (auto base = parseUint(target)) c["idmap_base"] = *base;
        if (auto size = parseUint(count)) c["idmap_size"] = *size;
        for (auto m : {uid, gid}) {
          for (const char* k : {"start", "target", "count"}) t_.attr(m, k);
          t_.done(m);
        }
      }
      t_.done(idmap);
    }
    def_["container"] = c;
  }

  pugi::xml_node root_;
  Taker t_;
  json def_ = json::object();
  json vmm_ = json::object();
  std::optional<json> container_;
  std::string libvirtType_;
  std::vector<std::string> kept_;
};

// Elements libvirt's schema allows once in their parent and that vmm reads as the one there:
// with a second one, which counts would depend on order (and the kept one would move).
Status checkSingletons(pugi::xml_node domain) {
  using Names = std::initializer_list<std::string_view>;
  auto check = [](pugi::xml_node parent, Names names) -> Status {
    for (auto name : names) {
      std::string wanted(name);  // the range keeps a pointer to it
      int n = 0;
      for (auto c : parent.children(wanted.c_str())) n += c.type() == pugi::node_element;
      if (n > 1)
        return invalidArgument("libvirt XML: <" + std::string(name) + "> appears " + std::to_string(n) + " times in <" +
                               toValidUtf8(parent.name()) + ">");
    }
    return {};
  };
  VMM_TRY(check(domain, {"name", "uuid", "title", "description", "memory", "currentMemory", "vcpu", "cpu", "os", "metadata",
                         "devices", "on_poweroff", "on_reboot", "on_crash"}));
  VMM_TRY(check(domain.child("os"), {"type", "kernel", "initrd", "cmdline", "loader"}));
  VMM_TRY(check(domain.child("cpu"), {"model", "topology"}));
  for (auto device : domain.child("devices").children()) {
    if (device.type() != pugi::node_element) continue;
    VMM_TRY(check(device, {"source", "target", "driver", "mac", "model", "readonly", "vlan", "bandwidth"}));
    VMM_TRY(check(device.child("bandwidth"), {"inbound", "outbound"}));
  }
  return {};
}

}  // namespace

Result<LibvirtImport> importLibvirtXml(std::string_view xml) {
  VMM_ASSIGN(auto doc, parseLimited(xml, "libvirt XML"));
  auto root = doc->document_element();
  if (std::string_view(root.name()) != "domain")
    return invalidArgument(std::string("libvirt XML: the root element must be <domain>, not <") + root.name() + ">");
  LibvirtImport out;
  if (hasKeyAttribute(root)) return invalidArgument(std::string("libvirt XML: the attribute ") + kKeyAttr + " is reserved for vmm");
  normalizeText(root);
  VMM_TRY(checkSingletons(root));
  Importer importer(root);
  VMM_ASSIGN(json def, importer.run(out.warnings));
  auto d = parseDomain(def);
  if (!d.ok()) return d.error().wrap("libvirt XML mapped to the vmm definition");
  out.domain = std::move(*d);
  out.kept = importer.kept();
  if (!out.kept.empty()) out.warnings.push_back("kept, not applied by vmm: " + join(out.kept, ", "));
  return out;
}

}  // namespace vmm::model
