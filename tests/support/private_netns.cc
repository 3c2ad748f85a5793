#include "tests/support/private_netns.h"

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <string>

#include "tests/support/host_tools.h"
#include "tests/support/require.h"

namespace vmm::testutil {

Status enterPrivateNetworkNamespace(bool keepCgroups) {
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return systemError("unshare(CLONE_NEWNET | CLONE_NEWNS)", errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return systemError("making / a slave mount", errno);
  std::string keep;
  if (keepCgroups) {
    char dir[] = "/tmp/vmm-cgroup-keep-XXXXXX";
    if (!::mkdtemp(dir)) return systemError("mkdtemp", errno);
    keep = dir;
    if (::mount("/sys/fs/cgroup", keep.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return systemError("keeping /sys/fs/cgroup", errno);
  }
  if (::umount2("/sys", MNT_DETACH) != 0 || ::mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0)
    return systemError("remounting /sys for the test's network namespace", errno);
  if (keepCgroups) {
    if (::mount(keep.c_str(), "/sys/fs/cgroup", nullptr, MS_MOVE, nullptr) != 0)
      return systemError("moving the cgroup mounts back", errno);
    ::rmdir(keep.c_str());
  }
  (void)std::system("ip link set lo up");
  return {};
}

int runTestsInPrivateNetworkNamespace(int argc, char** argv, const std::string& whyRoot, bool keepCgroups) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = missingRoot(whyRoot); !missing.empty()) {
    requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  if (auto ns = enterPrivateNetworkNamespace(keepCgroups); !ns.ok()) {
    std::fprintf(stderr, "%s\n", ns.error().message.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}

}  // namespace vmm::testutil
