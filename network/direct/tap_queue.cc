#include "network/direct/tap_queue.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>

#include "base/strings.h"

namespace vmm::net {

namespace {

bool isCharDevice(const std::string& path, dev_t device, bool& exists) {
  struct stat st{};
  exists = ::lstat(path.c_str(), &st) == 0;
  return exists && S_ISCHR(st.st_mode) && st.st_rdev == device;
}

// vnet_hdr=on: every frame read or written carries a virtio_net_hdr in front.
Status enableVnetHeader(int fd, const std::string& path) {
  ifreq ifr{};
  if (::ioctl(fd, TUNGETIFF, &ifr) != 0) return systemError("TUNGETIFF on " + path, errno);
  ifr.ifr_flags = static_cast<short>((ifr.ifr_flags & ~IFF_MULTI_QUEUE) | IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) return systemError("TUNSETIFF on " + path, errno);
  int size = kMacvtapVnetHeaderSize;
  if (::ioctl(fd, TUNSETVNETHDRSZ, &size) != 0) return systemError("TUNSETVNETHDRSZ on " + path, errno);
  return {};
}

Result<fs::UniqueFd> openQueue(const std::string& path) {
  fs::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return systemError("opening " + path, errno);
  VMM_TRY(enableVnetHeader(fd.get(), path));
  return fd;
}

// /dev/tapN is someone else's device: a node of our own, gone as soon as it is open.
Result<fs::UniqueFd> openThroughTemporaryNode(const std::string& name, dev_t device) {
  static std::atomic<unsigned> counter{0};
  std::string path = "/dev/.vmm-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  if (::mknod(path.c_str(), S_IFCHR | 0600, device) != 0) return systemError("mknod " + path, errno);
  auto fd = openQueue(path);
  ::unlink(path.c_str());
  return fd;
}

}  // namespace

std::string tapDevicePath(int ifindex) { return "/dev/tap" + std::to_string(ifindex); }

Result<dev_t> macvtapDeviceNumber(const std::string& name, int ifindex) {
  std::string sysPath = "/sys/class/net/" + name + "/macvtap/tap" + std::to_string(ifindex) + "/dev";
  auto text = fs::readFile(sysPath, 64);
  if (!text.ok()) return notFound("no tap device for macvtap " + name + " (" + sysPath + ")");
  auto parts = split(trim(*text), ':');
  std::optional<uint64_t> major, minor;
  if (parts.size() == 2) {
    major = parseUint(parts[0]);
    minor = parseUint(parts[1]);
  }
  if (!major || !minor) return internalError("unexpected content of " + sysPath + ": " + quote(trim(*text)));
  return makedev(static_cast<unsigned>(*major), static_cast<unsigned>(*minor));
}

Result<TapQueue> openMacvtapQueue(const std::string& name, int ifindex) {
  VMM_ASSIGN(dev_t device, macvtapDeviceNumber(name, ifindex));
  TapQueue queue;
  std::string path = tapDevicePath(ifindex);
  bool exists = false;
  if (!isCharDevice(path, device, exists)) {
    if (exists) {
      VMM_ASSIGN(queue.fd, openThroughTemporaryNode(name, device));
      return queue;
    }
    if (::mknod(path.c_str(), S_IFCHR | 0600, device) != 0) {
      int err = errno;
      // Made by devtmpfs in the meantime? Then it is fine as long as it is our device.
      if (err != EEXIST || !isCharDevice(path, device, exists)) return systemError("mknod " + path, err);
    } else {
      queue.nodeCreated = true;
    }
  }
  auto fd = openQueue(path);
  if (!fd.ok()) {
    if (queue.nodeCreated) ::unlink(path.c_str());
    return fd.error();
  }
  queue.fd = std::move(*fd);
  queue.devicePath = path;
  return queue;
}

bool removeLeftoverTapNode(int ifindex, dev_t device) {
  std::string path = tapDevicePath(ifindex);
  bool exists = false;
  if (!isCharDevice(path, device, exists)) return false;
  return ::unlink(path.c_str()) == 0;
}

}  // namespace vmm::net
