#include "network/virtual/forwarding.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/strings.h"

namespace vmm::net {

std::string interfaceForwardingPath(const std::string& ifname) { return "/proc/sys/net/ipv4/conf/" + ifname + "/forwarding"; }

Result<std::string> readSysctl(const std::string& path) {
  VMM_ASSIGN(auto text, fs::readFile(path, 4096));
  return std::string(trim(text));
}

Status writeSysctl(const std::string& path, const std::string& value) {
  // /proc/sys files take a plain write (no temporary file + rename).
  fs::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return systemError("cannot open " + path, errno);
  std::string line = value + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) return systemError("writing " + path, errno);
  return {};
}

Result<SysctlChange> applySysctl(const std::string& path, const std::string& value, const std::vector<SysctlChange>& others) {
  VMM_ASSIGN(std::string current, readSysctl(path));
  SysctlChange change{path, current, value};
  // The global switch rewrote every interface: their value before it is the global's before.
  for (const auto& o : others)
    if (o.path == kGlobalForwarding && path != kGlobalForwarding) change.previous = o.previous;
  for (const auto& o : others)
    if (o.path == path) change.previous = o.previous;
  if (current != value) VMM_TRY(writeSysctl(path, value));
  return change;
}

Status restoreSysctl(const SysctlChange& change, const std::vector<SysctlChange>& others) {
  if (change.previous == change.applied) return {};
  for (const auto& o : others)
    if (o.path == change.path) return {};
  if (!fs::exists(change.path)) return {};
  auto current = readSysctl(change.path);
  if (!current.ok()) return {};
  if (*current != change.applied) return {};
  VMM_TRY(writeSysctl(change.path, change.previous));
  if (change.path == kGlobalForwarding) {
    for (const auto& o : others)
      if (o.path != kGlobalForwarding && fs::exists(o.path)) (void)writeSysctl(o.path, o.applied);
  }
  return {};
}

}  // namespace vmm::net
