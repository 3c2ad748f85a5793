#include "daemon/host_services.h"

#include <sys/stat.h>

#include "base/log.h"
#include "base/strings.h"
#include "network/link.h"

namespace vmm {

Result<drivers::ResolvedDisk> DaemonHostServices::resolveDisk(const model::Disk& disk) {
  if (disk.source.isVolume()) {
    auto r = pools_.resolve(disk.source.pool, disk.source.volume);
    if (!r.ok()) return r.error();
    // The volume's own format unless the disk overrides it.
    if (disk.format) r->format = *disk.format;
    return r;
  }
  drivers::ResolvedDisk r;
  r.path = disk.source.path;
  r.format = disk.format.value_or(model::defaultDiskFormat(disk));
  struct stat st{};
  if (::stat(r.path.c_str(), &st) != 0) return invalidArgument("disk " + disk.target + ": " + r.path + " does not exist");
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return invalidArgument("disk " + disk.target + ": " + r.path + " is neither a file nor a block device");
  return r;
}

Result<drivers::PreparedPort> DaemonHostServices::plugNic(const model::Domain&, const model::Nic& nic, const std::string& kind) {
  if (kind != "tap") return unsupported("NIC " + nic.mac + ": a " + kind + " port is not supported");
  std::string bridge;
  switch (nic.type) {
    case model::NicType::bridge:
      bridge = nic.bridge;
      break;
    case model::NicType::network:
      return unavailable("NIC " + nic.mac + ": network " + quote(nic.network) + " cannot be used: managed networks are not available in this vmmd");
    default:
      return unsupported("NIC " + nic.mac + ": this NIC type needs no tap");
  }
  net::TapOptions opts;
  opts.name = nic.ifname.empty() ? net::tapNameFor(nic.mac) : nic.ifname;
  opts.mac = net::hostSideMac(nic.mac);
  opts.bridge = bridge;
  VMM_ASSIGN(auto fd, net::createTap(opts));
  drivers::PreparedPort port;
  port.ifname = opts.name;
  port.kind = "tap";
  port.bridge = bridge;
  port.fd = fd.release();
  log::debug("tap created", {{"ifname", port.ifname}, {"bridge", bridge}});
  return port;
}

void DaemonHostServices::unplugNic(const model::Domain&, const model::Nic&, const std::string& ifname) {
  // Taps are non-persistent: they vanish with the hypervisor's fd. Only a tap another process
  // still holds would remain, and that one is not ours to delete.
  if (ifname.empty() || !net::linkExists(ifname)) return;
  log::debug("tap still present after unplug (held by its hypervisor until it exits)", {{"ifname", ifname}});
}

}  // namespace vmm
