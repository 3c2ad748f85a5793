// The lxc driver's cgroup code against fake cgroup trees: hierarchy detection, the control
// files and values of each version, freezing and statistics. The cgroup v2 path is checked
// only here: this host mounts v1 (its cgroup2 hierarchy has only hugetlb).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "base/fs.h"
#include "drivers/lxc/cgroups.h"

using namespace vmm;
using vmm::drivers::lxc::ContainerCgroups;

namespace {

class FakeCgroupTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vmm-cgroups-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
  }
  void TearDown() override { (void)fs::removeTree(root); }
  void file(const std::string& rel, const std::string& content) {
    ASSERT_TRUE(fs::makeDirs(fs::dirName(root + "/" + rel)).ok());
    ASSERT_TRUE(fs::writeFileAtomic(root + "/" + rel, content).ok());
  }
  static model::Domain limited() {
    model::Domain d;
    d.name = "c1";
    d.memory = 64 << 20;
    d.limits.cpuShares = 512;
    d.limits.cpuQuotaPercent = 150;
    d.limits.pids = 20;
    return d;
  }
  std::string root;
};

TEST_F(FakeCgroupTree, UnifiedHierarchyIsDetectedAndNamesItsFiles) {
  file("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  auto cg = ContainerCgroups::forDomain("c1", root);
  ASSERT_TRUE(cg.ok()) << cg.error().message;
  EXPECT_TRUE(cg->v2());
  EXPECT_EQ(cg->paths(), std::vector<std::string>{root + "/vmm/c1"});
  const std::string g = root + "/vmm/c1";
  auto files = cg->limitFiles(limited());
  std::vector<std::pair<std::string, std::string>> want = {{g + "/memory.max", std::to_string(64 << 20)},
                                                          {g + "/memory.swap.max", "0"},
                                                          {g + "/cpu.weight", "50"},
                                                          {g + "/cpu.max", "150000 100000"},
                                                          {g + "/pids.max", "20"}};
  EXPECT_EQ(files, want);
}

TEST_F(FakeCgroupTree, UnifiedHierarchyWithoutMemoryIsRefused) {
  file("cgroup.controllers", "hugetlb\n");  // what this host's cgroup2 mount offers
  auto cg = ContainerCgroups::forDomain("c1", root);
  ASSERT_FALSE(cg.ok());
  EXPECT_NE(cg.error().message.find("lacks the memory or pids controller"), std::string::npos);
}

TEST_F(FakeCgroupTree, NoHierarchyIsAClearError) {
  auto cg = ContainerCgroups::forDomain("c1", root);
  ASSERT_FALSE(cg.ok());
  EXPECT_NE(cg.error().message.find("no usable cgroup hierarchy"), std::string::npos);
}

TEST_F(FakeCgroupTree, V1ControllersAndFiles) {
  file("memory/memory.limit_in_bytes", "9223372036854771712\n");
  for (const char* c : {"memory", "cpu", "cpuacct", "pids", "freezer"}) file(std::string(c) + "/cgroup.procs", "");
  auto cg = ContainerCgroups::forDomain("c1", root);
  ASSERT_TRUE(cg.ok()) << cg.error().message;
  EXPECT_FALSE(cg->v2());
  EXPECT_EQ(cg->paths().size(), 5u);
  auto files = cg->limitFiles(limited());
  std::vector<std::pair<std::string, std::string>> want = {
      {root + "/memory/vmm/c1/memory.limit_in_bytes", std::to_string(64 << 20)},
      {root + "/memory/vmm/c1/memory.memsw.limit_in_bytes", std::to_string(64 << 20)},
      {root + "/cpu/vmm/c1/cpu.shares", "512"},
      {root + "/cpu/vmm/c1/cpu.cfs_period_us", "100000"},
      {root + "/cpu/vmm/c1/cpu.cfs_quota_us", "150000"},
      {root + "/pids/vmm/c1/pids.max", "20"}};
  EXPECT_EQ(files, want);
}

// Without limits.pids the configured default ([containers] pids_max, 4096 unless set) applies;
// with a devices controller the group gets "deny all" and then the allow-list, no block device.
TEST_F(FakeCgroupTree, V1DefaultPidsAndDevicesAllowList) {
  file("memory/memory.limit_in_bytes", "9223372036854771712\n");
  for (const char* c : {"memory", "cpu", "pids", "devices"}) file(std::string(c) + "/cgroup.procs", "");
  auto cg = ContainerCgroups::forDomain("c1", root);
  ASSERT_TRUE(cg.ok()) << cg.error().message;
  EXPECT_TRUE(cg->hasDevices());
  model::Domain d = limited();
  d.limits.pids = 0;
  auto files = cg->limitFiles(d, 4096);
  auto at = [&](const std::string& f) {
    for (size_t i = 0; i < files.size(); ++i)
      if (files[i].first == f) return i;
    return files.size();
  };
  ASSERT_LT(at(root + "/pids/vmm/c1/pids.max"), files.size());
  EXPECT_EQ(files[at(root + "/pids/vmm/c1/pids.max")].second, "4096");
  size_t deny = at(root + "/devices/vmm/c1/devices.deny");
  ASSERT_LT(deny, files.size());
  EXPECT_EQ(files[deny].second, "a");
  std::vector<std::string> allowed;
  for (size_t i = deny + 1; i < files.size(); ++i) {
    EXPECT_EQ(files[i].first, root + "/devices/vmm/c1/devices.allow");
    allowed.push_back(files[i].second);
  }
  EXPECT_NE(std::find(allowed.begin(), allowed.end(), "c 1:3 rwm"), allowed.end());
  EXPECT_NE(std::find(allowed.begin(), allowed.end(), "c 136:* rwm"), allowed.end());
  for (const auto& a : allowed) EXPECT_NE(a[0], 'b') << a;
  // An explicit limit wins; 0 as the default means no pids.max at all.
  d.limits.pids = 20;
  EXPECT_EQ(cg->limitFiles(d, 4096)[at(root + "/pids/vmm/c1/pids.max")].second, "20");
  d.limits.pids = 0;
  for (const auto& [f, v] : cg->limitFiles(d, 0)) EXPECT_EQ(f.find("pids.max"), std::string::npos);
}

// Freezing writes cgroup.freeze and waits for cgroup.events to say so; stats read the v2 files.
TEST_F(FakeCgroupTree, UnifiedFreezeAndStats) {
  const std::string g = "vmm/c1/";
  file(g + "cgroup.freeze", "0\n");
  file(g + "cgroup.events", "populated 1\nfrozen 1\n");
  file(g + "memory.current", "1048576\n");
  file(g + "memory.max", "67108864\n");
  file(g + "memory.peak", "2097152\n");
  file(g + "cpu.stat", "usage_usec 1500\nuser_usec 1000\n");
  file(g + "pids.current", "3\n");
  auto cg = ContainerCgroups::fromPaths(true, {root + "/vmm/c1"});
  ASSERT_TRUE(cg.freeze(true, Deadline::after(Millis(1000))).ok());
  EXPECT_EQ(fs::readFile(root + "/" + g + "cgroup.freeze").valueOr(""), "1\n");
  EXPECT_TRUE(cg.frozen());
  // Not thawed (the fake kernel never says frozen 0): a timeout, not a hang.
  auto thaw = cg.freeze(false, Deadline::after(Millis(100)));
  ASSERT_FALSE(thaw.ok());
  EXPECT_EQ(thaw.error().code, ErrorCode::timeout);
  auto s = cg.stats();
  EXPECT_EQ(s["memory_bytes"], 1048576);
  EXPECT_EQ(s["memory_limit_bytes"], 67108864);
  EXPECT_EQ(s["memory_peak_bytes"], 2097152);
  EXPECT_EQ(s["cpu_time_ns"], 1500000);
  EXPECT_EQ(s["pids"], 3);
}

}  // namespace
