#include "network/port/port_sysfs.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>

#include "base/strings.h"

namespace vmm::net {
namespace {

std::string linkPath(const std::string& ifname, const std::string& rest) { return "/sys/class/net/" + ifname + "/" + rest; }

std::optional<std::string> readSmall(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 0) return std::nullopt;
  return std::string(trim(std::string_view(buf, static_cast<size_t>(n))));
}

}  // namespace

std::string bridgeOf(const std::string& ifname) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(linkPath(ifname, "master").c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string target(buf, static_cast<size_t>(n));
  if (::access(linkPath(ifname, "brport").c_str(), F_OK) != 0) return "";
  auto slash = target.rfind('/');
  return slash == std::string::npos ? target : target.substr(slash + 1);
}

std::optional<uint64_t> linkStatistic(const std::string& ifname, const std::string& name) {
  auto text = readSmall(linkPath(ifname, "statistics/" + name));
  if (!text) return std::nullopt;
  return parseUint(*text);
}

Status setBridgePortFlag(const std::string& ifname, const std::string& flag, bool on) {
  std::string path = linkPath(ifname, "brport/" + flag);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return systemError("opening " + path, errno);
  ssize_t n = ::write(fd, on ? "1\n" : "0\n", 2);
  int err = errno;
  ::close(fd);
  if (n != 2) return systemError("writing " + path, err);
  return {};
}

std::optional<bool> bridgePortFlag(const std::string& ifname, const std::string& flag) {
  auto text = readSmall(linkPath(ifname, "brport/" + flag));
  if (!text) return std::nullopt;
  return *text == "1";
}

std::string linkAlias(const std::string& ifname) { return readSmall(linkPath(ifname, "ifalias")).value_or(""); }

}  // namespace vmm::net
