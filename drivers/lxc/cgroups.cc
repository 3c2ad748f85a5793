#include "drivers/lxc/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"

namespace vmm::drivers::lxc {

namespace {

const std::vector<std::string> kV1Controllers = {"memory", "cpu", "cpuacct", "pids", "freezer", "devices"};

// LXC's allow-list (common.conf) without "b *:* m": char nodes may be made, only these opened:
// null, zero, full, random, urandom, tty, console, ptmx, the ptys, fuse.
const std::vector<std::string> kAllowedDevices = {"c *:* m",   "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",   "c 1:8 rwm", "c 1:9 rwm",
                                                  "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:229 rwm"};

Status writeValue(const std::string& file, const std::string& value) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return systemError("cannot open " + file, errno);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) return systemError("cannot write " + quote(value) + " to " + file, err);
  return {};
}

std::string readValue(const std::string& file) { return std::string(trim(fs::readFile(file, 1 << 20).valueOr(""))); }

int64_t toInt(const std::string& s) { return parseInt(s).value_or(0); }

bool isCgroup2Root(const std::string& dir) { return fs::exists(dir + "/cgroup.controllers"); }

}  // namespace

Result<ContainerCgroups> ContainerCgroups::forDomain(const std::string& name, const std::string& root) {
  ContainerCgroups cg;
  cg.root_ = root;
  std::string v1Memory = root + "/memory";
  if (fs::exists(v1Memory + "/memory.limit_in_bytes")) {
    for (const auto& c : kV1Controllers) {
      std::string base = root + "/" + c;
      if (!fs::exists(base + "/cgroup.procs")) {
        if (c == "cpuacct" || c == "freezer" || c == "devices") continue;  // optional
        return unavailable("cgroup v1 controller " + c + " is not mounted at " + base);
      }
      cg.paths_.push_back(base + "/vmm/" + name);
    }
    return cg;
  }
  if (isCgroup2Root(root)) {
    std::string controllers = readValue(root + "/cgroup.controllers");
    if (controllers.find("memory") == std::string::npos || controllers.find("pids") == std::string::npos)
      return unavailable("cgroup v2 at " + root + " lacks the memory or pids controller");
    cg.v2_ = true;
    cg.paths_.push_back(root + "/vmm/" + name);
    return cg;
  }
  return unavailable("no usable cgroup hierarchy (neither v1 memory controller nor v2 with memory) under " + root);
}

ContainerCgroups ContainerCgroups::fromPaths(bool v2, std::vector<std::string> paths) {
  ContainerCgroups cg;
  cg.v2_ = v2;
  cg.paths_ = std::move(paths);
  return cg;
}

std::string ContainerCgroups::controller(const std::string& name) const {
  for (const auto& p : paths_)
    if (p.find("/" + name + "/vmm/") != std::string::npos) return p;
  return "";
}

Status ContainerCgroups::create(const model::Domain& def, int64_t defaultPids) {
  std::vector<std::string> made;
  auto undo = [&] {
    for (const auto& p : made) ::rmdir(p.c_str());
  };
  if (v2_) {
    // Controllers must be enabled for the children of every level above the group.
    (void)writeValue(root_ + "/cgroup.subtree_control", "+memory +pids +cpu");
    VMM_TRY(fs::makeDirs(root_ + "/vmm"));
    (void)writeValue(root_ + "/vmm/cgroup.subtree_control", "+memory +pids +cpu");
  }
  for (const auto& p : paths_) {
    if (fs::exists(p)) {
      undo();
      return conflict("cgroup " + p + " already exists (a container of this name is still running?)");
    }
    Status s = fs::makeDirs(p);
    if (!s.ok()) {
      undo();
      return s.error();
    }
    made.push_back(p);
  }
  for (const auto& [file, value] : limitFiles(def, defaultPids)) {
    if ((file.find("swap") != std::string::npos || file.find("memsw") != std::string::npos) && !fs::exists(file)) continue;
    Status s = writeValue(file, value);
    if (!s.ok()) {
      undo();
      return s.error().wrap("cannot apply the container's limits");
    }
  }
  return {};
}

std::vector<std::pair<std::string, std::string>> ContainerCgroups::limitFiles(const model::Domain& def, int64_t defaultPids) const {
  std::vector<std::pair<std::string, std::string>> settings;
  const auto& l = def.limits;
  int64_t pidsMax = l.pids > 0 ? l.pids : defaultPids;
  if (v2_) {
    const std::string& g = paths_[0];
    settings.push_back({g + "/memory.max", std::to_string(def.memory)});
    settings.push_back({g + "/memory.swap.max", "0"});
    if (l.cpuShares > 0) settings.push_back({g + "/cpu.weight", std::to_string(std::clamp(l.cpuShares * 100 / 1024, 1, 10000))});
    if (l.cpuQuotaPercent > 0) settings.push_back({g + "/cpu.max", std::to_string(l.cpuQuotaPercent * 1000) + " 100000"});
    if (pidsMax > 0) settings.push_back({g + "/pids.max", std::to_string(pidsMax)});
  } else {
    std::string mem = controller("memory"), cpu = controller("cpu"), pids = controller("pids");
    settings.push_back({mem + "/memory.limit_in_bytes", std::to_string(def.memory)});
    settings.push_back({mem + "/memory.memsw.limit_in_bytes", std::to_string(def.memory)});
    if (l.cpuShares > 0) settings.push_back({cpu + "/cpu.shares", std::to_string(l.cpuShares)});
    if (l.cpuQuotaPercent > 0) {
      settings.push_back({cpu + "/cpu.cfs_period_us", "100000"});
      settings.push_back({cpu + "/cpu.cfs_quota_us", std::to_string(l.cpuQuotaPercent * 1000)});
    }
    if (pidsMax > 0) settings.push_back({pids + "/pids.max", std::to_string(pidsMax)});
    if (std::string dev = controller("devices"); !dev.empty()) {
      settings.push_back({dev + "/devices.deny", "a"});
      for (const auto& rule : kAllowedDevices) settings.push_back({dev + "/devices.allow", rule});
      // Devices the definition mounts on purpose.
      if (def.container)
        for (const auto& m : def.container->mounts) {
          struct stat st{};
          if (::stat(m.source.c_str(), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
            settings.push_back({dev + "/devices.allow", std::string(S_ISCHR(st.st_mode) ? "c " : "b ") + std::to_string(major(st.st_rdev)) +
                                                            ":" + std::to_string(minor(st.st_rdev)) + " rwm"});
        }
    }
  }
  return settings;
}

std::optional<ContainerCgroups> ContainerCgroups::makeChild(const std::string& sub) const {
  if (v2_) return std::nullopt;
  ContainerCgroups child;
  for (const auto& p : paths_) {
    std::string path = p + "/" + sub;
    if (::mkdir(path.c_str(), 0755) != 0) {
      for (const auto& made : child.paths_) ::rmdir(made.c_str());
      return std::nullopt;
    }
    child.paths_.push_back(path);
  }
  return child;
}

void ContainerCgroups::mergeInto(const ContainerCgroups& parent) const {
  for (size_t i = 0; i < paths_.size() && i < parent.paths_.size(); ++i) {
    // A task forking while the others move can land in the group again: a few rounds.
    for (int round = 0; round < 5 && ::rmdir(paths_[i].c_str()) != 0; ++round)
      for (const auto& line : split(readValue(paths_[i] + "/cgroup.procs"), '\n', true))
        (void)writeValue(parent.paths_[i] + "/cgroup.procs", std::string(trim(line)));
  }
}

Status ContainerCgroups::addProcess(pid_t pid) const {
  for (const auto& p : paths_) VMM_TRY(writeValue(p + "/cgroup.procs", std::to_string(pid)));
  return {};
}

Status ContainerCgroups::freeze(bool frozen, Deadline deadline) const {
  std::string file, want;
  if (v2_) {
    file = paths_[0] + "/cgroup.freeze";
    VMM_TRY(writeValue(file, frozen ? "1" : "0"));
    file = paths_[0] + "/cgroup.events";
    want = frozen ? "frozen 1" : "frozen 0";
  } else {
    std::string g = controller("freezer");
    if (g.empty()) return unsupported("the freezer cgroup controller is not mounted");
    file = g + "/freezer.state";
    VMM_TRY(writeValue(file, frozen ? "FROZEN" : "THAWED"));
    want = frozen ? "FROZEN" : "THAWED";
  }
  while (readValue(file).find(want) == std::string::npos) {
    if (deadline.expired()) return timeoutError("the container's tasks did not become " + want);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {};
}

bool ContainerCgroups::frozen() const {
  if (v2_) return readValue(paths_[0] + "/cgroup.events").find("frozen 1") != std::string::npos;
  std::string g = controller("freezer");
  return !g.empty() && readValue(g + "/freezer.state") == "FROZEN";
}

std::vector<pid_t> ContainerCgroups::tasks() const {
  std::vector<pid_t> out;
  for (const auto& p : paths_) {
    for (const auto& line : split(readValue(p + "/cgroup.procs"), '\n', true)) {
      auto v = toInt(std::string(trim(line)));
      if (v > 0) out.push_back(static_cast<pid_t>(v));
    }
  }
  return out;
}

Status ContainerCgroups::remove(Deadline deadline) const {
  bool wasFrozen = false;
  // Killed tasks take a moment to leave: poll quickly first (1, 2, 4 ... up to 20 ms).
  int pauseMs = 1;
  for (;;) {
    bool any = false;
    for (const auto& p : paths_) any = any || fs::exists(p);
    if (!any) return {};
    if (v2_ && fs::exists(paths_[0] + "/cgroup.kill")) (void)writeValue(paths_[0] + "/cgroup.kill", "1");
    for (pid_t pid : tasks()) ::kill(pid, SIGKILL);
    // Frozen tasks cannot die: thaw them once they have their SIGKILL pending.
    if (!wasFrozen && frozen()) {
      wasFrozen = true;
      (void)freeze(false, Deadline::after(Millis(2000)));
    }
    bool removedAll = true;
    for (const auto& p : paths_)
      if (fs::exists(p) && ::rmdir(p.c_str()) != 0) removedAll = false;
    if (removedAll) return {};
    if (deadline.expired()) return timeoutError("the container's cgroups still have tasks: " + join(paths_, ", "));
    std::this_thread::sleep_for(std::chrono::milliseconds(pauseMs));
    pauseMs = std::min(pauseMs * 2, 20);
  }
}

model::json ContainerCgroups::stats() const {
  model::json s = model::json::object();
  if (v2_) {
    const std::string& g = paths_[0];
    s["memory_bytes"] = toInt(readValue(g + "/memory.current"));
    std::string max = readValue(g + "/memory.max");
    if (max != "max") s["memory_limit_bytes"] = toInt(max);
    if (auto peak = readValue(g + "/memory.peak"); !peak.empty()) s["memory_peak_bytes"] = toInt(peak);
    for (const auto& line : split(readValue(g + "/cpu.stat"), '\n', true))
      if (startsWith(line, "usage_usec ")) s["cpu_time_ns"] = toInt(line.substr(11)) * 1000;
    s["pids"] = toInt(readValue(g + "/pids.current"));
  } else {
    std::string mem = controller("memory"), acct = controller("cpuacct"), pids = controller("pids");
    s["memory_bytes"] = toInt(readValue(mem + "/memory.usage_in_bytes"));
    s["memory_limit_bytes"] = toInt(readValue(mem + "/memory.limit_in_bytes"));
    s["memory_failcnt"] = toInt(readValue(mem + "/memory.failcnt"));
    s["memory_peak_bytes"] = toInt(readValue(mem + "/memory.max_usage_in_bytes"));
    if (!acct.empty()) s["cpu_time_ns"] = toInt(readValue(acct + "/cpuacct.usage"));
    s["pids"] = toInt(readValue(pids + "/pids.current"));
  }
  return s;
}

}  // namespace vmm::drivers::lxc
