#include "daemon/capabilities.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <set>

#include "base/fs.h"
#include "base/strings.h"

namespace vmm {

HostFacts probeHostFacts() {
  HostFacts f;
  struct utsname u;
  if (uname(&u) == 0) {
    f.hostname = u.nodename;
    f.kernel = u.release;
    f.arch = u.machine;
  }
  f.cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  f.memoryBytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    f.kvm = true;
    ::close(fd);
  } else {
    f.kvmReason = fs::exists("/dev/kvm") ? "/dev/kvm is not accessible" : "/dev/kvm does not exist (no hardware virtualisation)";
  }
  // cgroups from the mount table
  auto mounts = fs::readFile("/proc/self/mountinfo", 1 << 20);
  std::set<std::string> v1;
  if (mounts.ok()) {
    for (const auto& line : split(*mounts, '\n', true)) {
      auto sep = line.find(" - ");
      if (sep == std::string::npos) continue;
      auto pre = split(line.substr(0, sep), ' ');
      auto post = split(line.substr(sep + 3), ' ');
      if (pre.size() < 5 || post.empty()) continue;
      if (post[0] == "cgroup2") {
        f.cgroupV2Mount = pre[4];
        auto ctl = fs::readFile(pre[4] + "/cgroup.controllers", 4096);
        if (ctl.ok()) f.cgroupV2Controllers = split(std::string(trim(*ctl)), ' ', true);
      } else if (post[0] == "cgroup" && post.size() >= 3) {
        for (const auto& opt : split(post[2], ',')) {
          if (opt == "rw" || opt == "ro" || startsWith(opt, "name=") || opt == "relatime" || opt == "nosuid" ||
              opt == "nodev" || opt == "noexec" || opt == "clone_children" || startsWith(opt, "release_agent"))
            continue;
          v1.insert(opt);
        }
      }
    }
  }
  f.cgroupV1Controllers.assign(v1.begin(), v1.end());
  if (!v1.empty() && !f.cgroupV2Mount.empty()) f.cgroupLayout = "hybrid";
  else if (!v1.empty()) f.cgroupLayout = "v1";
  else if (!f.cgroupV2Mount.empty()) f.cgroupLayout = "v2";
  else f.cgroupLayout = "none";
  return f;
}

nlohmann::json formatHostFacts(const HostFacts& f) {
  return {{"hostname", f.hostname},
          {"kernel", f.kernel},
          {"arch", f.arch},
          {"cpus", f.cpus},
          {"memory_bytes", f.memoryBytes},
          {"kvm", {{"available", f.kvm}, {"reason", f.kvmReason}}},
          {"cgroups",
           {{"layout", f.cgroupLayout},
            {"v1_controllers", f.cgroupV1Controllers},
            {"v2_mount", f.cgroupV2Mount},
            {"v2_controllers", f.cgroupV2Controllers}}}};
}

}  // namespace vmm
