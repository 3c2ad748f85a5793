#include "network/link.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if_arp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "base/strings.h"

namespace vmm::net {

namespace {

Status checkName(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) return invalidArgument("interface name " + quote(name) + " must have 1 to 15 characters");
  return {};
}

// A socket for link ioctls (any family works; AF_INET is always there).
Result<fs::UniqueFd> ctlSocket() {
  fs::UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return systemError("socket", errno);
  return fd;
}

ifreq requestFor(const std::string& name) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  return ifr;
}

Status linkIoctl(const std::string& name, unsigned long request, ifreq& ifr, const char* what) {
  VMM_TRY(checkName(name));
  VMM_ASSIGN(auto sock, ctlSocket());
  if (::ioctl(sock.get(), request, &ifr) != 0) return systemError(std::string(what) + " " + name, errno);
  return {};
}

Result<std::array<uint8_t, 6>> parseMac(const std::string& mac) {
  std::array<uint8_t, 6> out{};
  unsigned v[6];
  char tail;
  if (std::sscanf(mac.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
    return invalidArgument("bad MAC address " + quote(mac));
  for (int i = 0; i < 6; ++i) {
    if (v[i] > 0xff) return invalidArgument("bad MAC address " + quote(mac));
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(v[i]);
  }
  return out;
}

}  // namespace

bool linkExists(const std::string& name) { return !name.empty() && fs::exists("/sys/class/net/" + name); }
bool isBridge(const std::string& name) { return !name.empty() && fs::exists("/sys/class/net/" + name + "/bridge"); }

Result<unsigned> linkMtu(const std::string& name) {
  ifreq ifr = requestFor(name);
  VMM_TRY(linkIoctl(name, SIOCGIFMTU, ifr, "reading the MTU of"));
  return static_cast<unsigned>(ifr.ifr_mtu);
}

Status setLinkUp(const std::string& name, bool up) {
  ifreq ifr = requestFor(name);
  VMM_TRY(linkIoctl(name, SIOCGIFFLAGS, ifr, "reading the flags of"));
  if (up) ifr.ifr_flags |= IFF_UP;
  else ifr.ifr_flags &= ~IFF_UP;
  return linkIoctl(name, SIOCSIFFLAGS, ifr, up ? "bringing up" : "bringing down");
}

Status setLinkMtu(const std::string& name, unsigned mtu) {
  ifreq ifr = requestFor(name);
  ifr.ifr_mtu = static_cast<int>(mtu);
  return linkIoctl(name, SIOCSIFMTU, ifr, "setting the MTU of");
}

Status setLinkMac(const std::string& name, const std::string& mac) {
  VMM_ASSIGN(auto bytes, parseMac(mac));
  ifreq ifr = requestFor(name);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, bytes.data(), 6);
  return linkIoctl(name, SIOCSIFHWADDR, ifr, "setting the MAC of");
}

static Status bridgePort(const std::string& bridge, const std::string& port, bool add) {
  VMM_TRY(checkName(port));
  unsigned index = if_nametoindex(port.c_str());
  if (index == 0) return notFound("no network interface " + port);
  if (!isBridge(bridge)) return notFound("no bridge " + bridge + " on this host");
  ifreq ifr = requestFor(bridge);
  ifr.ifr_ifindex = static_cast<int>(index);
  return linkIoctl(bridge, add ? SIOCBRADDIF : SIOCBRDELIF, ifr, add ? "adding a port to bridge" : "removing a port from bridge");
}

Status addBridgePort(const std::string& bridge, const std::string& port) { return bridgePort(bridge, port, true); }
Status removeBridgePort(const std::string& bridge, const std::string& port) { return bridgePort(bridge, port, false); }

Result<fs::UniqueFd> createTap(const TapOptions& options) {
  VMM_TRY(checkName(options.name));
  if (!options.bridge.empty() && !isBridge(options.bridge)) return notFound("no bridge " + options.bridge + " on this host");
  fs::UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return systemError("cannot open /dev/net/tun", errno);
  ifreq ifr = requestFor(options.name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (options.vnetHeader ? IFF_VNET_HDR : 0);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int err = errno;
    if (err == EBUSY) return conflict("tap " + options.name + " is in use by another process");
    return systemError("cannot create tap " + options.name, err);
  }
  if (!options.mac.empty()) VMM_TRY(setLinkMac(options.name, options.mac));
  unsigned mtu = options.mtu;
  if (!mtu && !options.bridge.empty()) mtu = linkMtu(options.bridge).valueOr(0);
  if (mtu) VMM_TRY(setLinkMtu(options.name, mtu));
  if (!options.bridge.empty()) VMM_TRY(addBridgePort(options.bridge, options.name));
  VMM_TRY(setLinkUp(options.name, true));
  return fd;
}

std::string hostSideMac(const std::string& guestMac) {
  if (guestMac.size() != 17) return "";
  return "fe" + guestMac.substr(2);
}

std::string tapNameFor(const std::string& guestMac) {
  std::string name = "vm";
  for (char c : guestMac)
    if (c != ':') name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace vmm::net
