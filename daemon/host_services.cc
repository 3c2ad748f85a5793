#include "daemon/host_services.h"

#include <sys/stat.h>

#include <cstdlib>

#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "model/pool.h"
#include "network/direct/macvtap.h"
#include "network/link.h"
#include "network/port/port_profile.h"
#include "storage/image_inspect.h"
#include "storage/qemu_img.h"

namespace vmm {

namespace {

std::optional<model::DiskFormat> layerFormat(const std::optional<std::string>& name) {
  if (name == "qcow2") return model::DiskFormat::qcow2;
  if (name == "raw") return model::DiskFormat::raw;
  return std::nullopt;
}

// The backing file a layer's header names, as a path (relative names are the layer's directory's).
std::string backingPath(const std::string& layer, const std::string& named) {
  return named[0] == '/' ? named : fs::dirName(layer) + "/" + named;
}

}  // namespace

// A disk given by path is the admin's file. QEMU gets every layer of a qcow2 chain as a
// descriptor and has no view of the host's files, so vmmd follows the chain, but only through
// files it can vouch for: a volume of an active pool (from there on the pool's record
// decides), a file in the same directory whose header names its format (external snapshot
// overlays sit next to the image they cover), or a block device named by an overlay in vmmd's
// state directory (where overlays of block devices go). A header naming anything else, or
// one vmm does not open as it is, refuses the disk: nothing of it reaches QEMU.
Status DaemonHostServices::pinPathChain(drivers::ResolvedDisk& top) {
  std::vector<drivers::ResolvedDisk> layers;
  // The admin named the top, through symlinks or not: the chain starts at the file itself.
  VMM_ASSIGN(std::string path, fs::realPath(top.path));
  model::DiskFormat format = top.format;
  auto refuse = [&](const std::string& why) { return invalidArgument(path + ": " + why); };
  for (size_t depth = 0;; ++depth) {
    if (format != model::DiskFormat::qcow2) break;
    if (depth >= drivers::kMaxBackingLayers) return refuse("its backing chain is deeper than " + std::to_string(drivers::kMaxBackingLayers) + " layers");
    auto h = storage::readImageFileHeader(path);
    if (!h.ok()) return h.error();
    if (!h->image.qcow2) return refuse("the image is not qcow2");
    if (!h->problem.empty()) return refuse(h->problem);
    if (h->backing.empty()) break;
    std::string backing = backingPath(path, h->backing);
    auto named = layerFormat(h->image.backingFormat);
    VMM_ASSIGN(auto volume, pools_.resolvePath(backing));
    if (volume) {
      if (named && *named != volume->format) return refuse("its header says its backing " + backing + " is not the format its pool recorded");
      drivers::ResolvedDisk v = std::move(*volume);
      auto below = std::move(v.backing);
      v.backing.clear();
      layers.push_back(std::move(v));
      for (auto& l : below) layers.push_back(std::move(l));
      break;
    }
    struct stat st{};
    bool exists = ::lstat(backing.c_str(), &st) == 0;
    bool nextToIt = exists && S_ISREG(st.st_mode) && fs::dirName(backing) == fs::dirName(path);
    bool overlaidDevice = exists && S_ISBLK(st.st_mode) && startsWith(path, stateDir_ + "/");
    if (!nextToIt && !overlaidDevice)
      return refuse("its header names the backing file " + quote(backing) +
                    ", which is neither a volume of an active pool nor a file next to it; vmm gives QEMU no other file");
    if (!named) return refuse("its header names the backing file " + quote(backing) + " without its format");
    drivers::ResolvedDisk layer;
    layer.path = backing;
    layer.format = *named;
    layer.blockDevice = S_ISBLK(st.st_mode);
    layers.push_back(layer);
    path = backing;
    format = *named;
  }
  top.backing = std::move(layers);
  top.chainPinned = true;
  return {};
}

Result<drivers::ResolvedDisk> DaemonHostServices::resolveDisk(const model::Disk& disk) {
  if (disk.source.isVolume()) {
    auto r = pools_.resolve(disk.source.pool, disk.source.volume);
    if (!r.ok()) return r.error();
    // A directory volume is a container's rootfs: never a VM's disk (nor a rootfs a file).
    bool directory = r->directory;
    bool rootfs = disk.target == model::kContainerRootfsTarget;
    if (directory && !rootfs)
      return invalidArgument("disk " + disk.target + ": volume " + disk.source.describe() + " is a directory volume (a container rootfs), not a disk image");
    if (rootfs && !directory)
      return invalidArgument("container.rootfs: volume " + disk.source.describe() + " is not a directory volume (create one with format \"dir\")");
    // The format vmm recorded for the volume: a disk cannot open it as something else.
    if (disk.format && *disk.format != r->format)
      return invalidArgument("disk " + disk.target + ": format " + std::string(model::enumName(model::kDiskFormats, *disk.format)) +
                             ", but volume " + disk.source.describe() + " is " + std::string(model::enumName(model::kDiskFormats, r->format)));
    return r;
  }
  drivers::ResolvedDisk r;
  r.path = disk.source.path;
  r.format = disk.format.value_or(model::defaultDiskFormat(disk));
  struct stat st{};
  if (::stat(r.path.c_str(), &st) != 0) return invalidArgument("disk " + disk.target + ": " + r.path + " does not exist");
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return invalidArgument("disk " + disk.target + ": " + r.path + " is neither a file nor a block device");
  if (S_ISREG(st.st_mode))
    if (auto pinned = pinPathChain(r); !pinned.ok()) return pinned.error().wrap("disk " + disk.target);
  return r;
}

// Errors do not name the NIC: the drivers prefix "NIC <mac>: " themselves.
Result<drivers::PreparedPort> DaemonHostServices::plugNic(const model::Domain&, const model::Nic& nic, const std::string& kind) {
  if (kind != "tap") return unsupported("a " + kind + " port is not supported");
  if (nic.type == model::NicType::direct) {
    // macvtap: the guest's frames go straight to a host interface (vepa, bridge, private,
    // passthrough); its queue fd is used exactly like a tap's.
    net::MacvtapOptions mo;
    mo.name = nic.ifname.empty() ? net::macvtapNameFor(nic.mac) : nic.ifname;
    mo.lower = nic.device;
    mo.mode = nic.directMode;
    mo.mac = nic.mac;
    VMM_ASSIGN(auto mv, net::createMacvtap(mo));
    drivers::PreparedPort port;
    port.ifname = mv.name;
    port.kind = "macvtap";
    port.fd = mv.fd.release();
    log::debug("macvtap created", {{"ifname", port.ifname}, {"lower", nic.device}});
    return port;
  }
  VMM_ASSIGN(auto bridge, bridgeOf(nic));
  net::TapOptions opts;
  opts.name = nic.ifname.empty() ? net::tapNameFor(nic.mac) : nic.ifname;
  opts.mac = net::hostSideMac(nic.mac);
  opts.bridge = bridge;
  VMM_ASSIGN(auto fd, net::createTap(opts));
  // The port profile (VLAN, QoS, ACL, spoof check, isolation, mirroring) follows the NIC: it
  // is in the domain's definition and applied to whichever tap carries it. On failure the
  // tap closes with `fd` and nothing of the profile remains.
  net::PortSpec spec{opts.name, bridge, nic.mac, nic.port};
  VMM_TRY(net::applyPort(spec, Deadline::after(Millis(10000))));
  drivers::PreparedPort port;
  port.ifname = opts.name;
  port.kind = "tap";
  port.bridge = bridge;
  port.fd = fd.release();
  log::debug("tap created", {{"ifname", port.ifname}, {"bridge", bridge}});
  return port;
}

Result<std::string> DaemonHostServices::bridgeOf(const model::Nic& nic) const {
  switch (nic.type) {
    case model::NicType::bridge:
      return nic.bridge;
    case model::NicType::network:
      return networks_.bridgeFor(nic.network);
    default:
      return unsupported("this NIC type has no bridge port");
  }
}

Result<std::string> DaemonHostServices::attachPort(const model::Domain&, const model::Nic& nic, const std::string& ifname) {
  VMM_ASSIGN(auto bridge, bridgeOf(nic));
  if (!net::isBridge(bridge)) return invalidArgument(bridge + " is not a bridge");
  VMM_TRY(net::addBridgePort(bridge, ifname));
  net::PortSpec spec{ifname, bridge, nic.mac, nic.port};
  if (auto st = net::applyPort(spec, Deadline::after(Millis(10000))); !st.ok()) {
    (void)net::removeBridgePort(bridge, ifname);
    return st.error();
  }
  VMM_TRY(net::setLinkUp(ifname, true));
  return bridge;
}

void DaemonHostServices::unplugNic(const model::Domain&, const model::Nic& nic, const std::string& ifname) {
  if (ifname.empty()) return;
  releasePort(nic, ifname);  // also when the tap is gone: the ifb and nft state are not
  if (!net::linkExists(ifname)) return;
  // A macvtap link outlives its fd: it is deleted here. Taps are non-persistent and vanish
  // with the hypervisor's fd; one still present is held by its hypervisor until it exits.
  if (nic.type == model::NicType::direct || startsWith(ifname, "mv")) {
    if (auto st = net::deleteMacvtap(ifname); !st.ok())
      log::warn("cannot delete macvtap", {{"ifname", ifname}, {"error", st.error().message}});
    return;
  }
  log::debug("tap still present after unplug (held by its hypervisor until it exits)", {{"ifname", ifname}});
}

void DaemonHostServices::releasePort(const model::Nic& nic, const std::string& ifname) {
  if (nic.type == model::NicType::direct || nic.port.empty()) return;
  std::string bridge = nic.type == model::NicType::network ? networks_.bridgeFor(nic.network).valueOr("") : nic.bridge;
  net::PortSpec spec{ifname, bridge, nic.mac, nic.port};
  if (auto st = net::removePort(spec, Deadline::after(Millis(10000))); !st.ok())
    log::warn("cannot remove the port profile", {{"ifname", ifname}, {"error", st.error().message}});
}

Status DaemonHostServices::runQemuImg(const std::vector<std::string>& args, const drivers::QemuImgAccess& access, Deadline deadline) {
  return storage::runQemuImg(args, access, deadline, "qemu-img " + (args.empty() ? std::string() : args[0]));
}

std::pair<std::string, std::string> DaemonHostServices::recordedBacking(const std::string& file) {
  auto h = storage::readImageFileHeader(file);
  if (!h.ok() || !h->image.qcow2 || h->backing.empty() || !h->problem.empty()) return {"", ""};
  return {backingPath(file, h->backing), h->image.backingFormat.value_or("")};
}

}  // namespace vmm
