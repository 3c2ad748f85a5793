// Integration: what confines a native container beyond its namespaces, for a privileged one
// and an unprivileged one (the default), in init and in exec: capabilities gone from the
// bounding set, a seccomp deny-list answering EPERM, /proc/sys and sysrq-trigger read-only with
// /proc/kcore and friends masked, no block devices (devices cgroup, nodev), and a default
// pids.max that stops a fork bomb while vmmd keeps answering.
//
// Runs in private network and mount namespaces like lxc_e2e_test.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <map>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "tests/support/private_netns.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmctlResult;
using testutil::VmmdProcess;

namespace {

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

const std::vector<std::string> kControllers = {"memory", "cpu", "cpuacct", "pids", "freezer", "devices"};

// Capabilities no container process may hold (drivers/lxc/confinement.cc).
constexpr int kDropped[] = {16 /*sys_module*/,     17 /*sys_rawio*/,    22 /*sys_boot*/,     25 /*sys_time*/,
                            30 /*audit_control*/,  32 /*mac_override*/, 33 /*mac_admin*/,    34 /*syslog*/,
                            35 /*wake_alarm*/,     36 /*block_suspend*/};

// "Key:\tvalue" lines of a /proc/PID/status text.
std::map<std::string, std::string> statusFields(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& line : split(text, '\n', true)) {
    auto colon = line.find(':');
    if (colon != std::string::npos) out[line.substr(0, colon)] = std::string(trim(line.substr(colon + 1)));
  }
  return out;
}
uint64_t hex(const std::string& s) { return s.empty() ? ~uint64_t{0} : std::stoull(s, nullptr, 16); }
std::string droppedButHeld(uint64_t caps) {
  std::string held;
  for (int cap : kDropped)
    if ((caps >> cap) & 1) held += std::to_string(cap) + " ";
  return held;
}

class LxcConfinementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(::geteuid() == 0, "root (containers need namespaces and cgroups)");
    // The rootfs inside a root-only directory, as vmm requires: files the container's root
    // writes are the host root's on disk.
    char tmpl[] = "/tmp/vmm-lxcconf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    top = tmpl;
    rootfs = top + "/rootfs";
    ASSERT_EQ(::mkdir(rootfs.c_str(), 0755), 0);
    ASSERT_EQ(run("set -e; cd " + rootfs + "; mkdir -p bin sbin etc proc sys dev tmp root; cp /bin/busybox bin/; "
                  "for a in $(bin/busybox --list); do [ -e bin/$a ] || ln -s busybox bin/$a; done; "
                  "cp " VMM_SYSCALL_PROBE " bin/probe; chmod 0755 bin/probe; "
                  "echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd; echo 'root:x:0:' > etc/group"),
              0);
  }

  void startVmmd(const std::string& configText = "") {
    std::vector<std::string> args = {"--drivers", "lxc"};
    if (!configText.empty()) {
      config = rootfs + ".toml";
      ASSERT_TRUE(fs::writeFileAtomic(config, configText).ok());
      args.insert(args.end(), {"--config", config});
    }
    vmmd = std::make_unique<VmmdProcess>("", args);
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  }

  void TearDown() override {
    if (vmmd && vmmd->pid() > 0)
      for (const auto& n : names) (void)vmmd->vmctl({"destroy", n});
    for (const auto& n : names)
      for (const auto& c : kControllers) EXPECT_FALSE(fs::exists("/sys/fs/cgroup/" + c + "/vmm/" + n)) << c << " group of " << n << " left";
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
    vmmd.reset();
    for (pid_t pid : initPids)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    for (const auto& n : names)
      for (const auto& c : kControllers) {
        std::string group = "/sys/fs/cgroup/" + c + "/vmm/" + n;
        for (const auto& sub : fs::listDir(group).valueOr({}))
          if (fs::isDirectory(group + "/" + sub)) (void)::rmdir((group + "/" + sub).c_str());
        (void)::rmdir(group.c_str());
      }
    for (const auto& c : kControllers) (void)::rmdir(("/sys/fs/cgroup/" + c + "/vmm").c_str());
    if (!top.empty()) (void)run("rm -rf " + top);
    if (!config.empty()) (void)::unlink(config.c_str());
  }

  // Defines and starts a container; returns its init's pid in this pid namespace.
  pid_t start(const std::string& name, json extra = json::object()) {
    names.push_back(name);
    json d = {{"name", name},
              {"type", "lxc"},
              {"memory", "128MiB"},
              {"container", {{"rootfs", {{"path", rootfs}}}, {"init", {"/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"}}}}};
    d.merge_patch(extra);
    std::string path = vmmd->dir() + "/" + name + ".json";
    EXPECT_TRUE(fs::writeFileAtomic(path, d.dump()).ok());
    auto defined = vmmd->vmctl({"define", path});
    EXPECT_EQ(defined.exitCode, 0) << defined.err;
    auto started = vmmd->vmctl({"start", name});
    EXPECT_EQ(started.exitCode, 0) << started.err;
    auto conn = vmmd->connect();
    if (!conn.ok()) return -1;
    auto got = (*conn)->call("domain.get", {{"name", name}});
    pid_t pid = got.ok() ? (*got)["runtime"].value("pid", -1) : -1;
    if (pid > 0) initPids.push_back(pid);
    return pid;
  }
  VmctlResult exec(const std::string& name, const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"exec", name, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return vmmd->vmctl(args);
  }
  std::map<std::string, std::string> probe(const std::string& name) {
    auto r = exec(name, {"/bin/probe"});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    std::map<std::string, std::string> out;
    for (const auto& line : split(r.out, '\n', true))
      if (auto eq = line.find('='); eq != std::string::npos) out[line.substr(0, eq)] = std::string(trim(line.substr(eq + 1)));
    return out;
  }

  // T1/T7: init and an exec'd process hold none of the dropped capabilities, have the same
  // bounding set and run under seccomp.
  void expectConfinedCapabilities(const std::string& name, pid_t init) {
    auto initStatus = statusFields(fs::readFile("/proc/" + std::to_string(init) + "/status").valueOr(""));
    EXPECT_EQ(droppedButHeld(hex(initStatus["CapBnd"])), "") << name << " init CapBnd " << initStatus["CapBnd"];
    EXPECT_EQ(droppedButHeld(hex(initStatus["CapEff"])), "") << name << " init CapEff " << initStatus["CapEff"];
    EXPECT_EQ(initStatus["Seccomp"], "2") << name << " init";
    auto self = exec(name, {"cat", "/proc/self/status"});
    ASSERT_EQ(self.exitCode, 0) << self.err;
    auto execStatus = statusFields(self.out);
    EXPECT_EQ(execStatus["CapBnd"], initStatus["CapBnd"]) << name << " exec";
    EXPECT_EQ(droppedButHeld(hex(execStatus["CapEff"])), "") << name << " exec CapEff " << execStatus["CapEff"];
    EXPECT_EQ(execStatus["Seccomp"], "2") << name << " exec";
    EXPECT_EQ(execStatus["Uid"].substr(0, 1), "0") << name << " exec runs as the container's root";
    // vmmd runs with umask 077; the container's processes get the usual 022.
    EXPECT_EQ(initStatus["Umask"], "0022") << name << " init";
    EXPECT_EQ(execStatus["Umask"], "0022") << name << " exec";
  }

  // T2: /proc/sys read-only (the host's core_pattern cannot be rewritten, even with its own
  // value), sysrq-trigger read-only, kcore masked, the container's own net knobs writable.
  void expectProcMixed(const std::string& name) {
    std::string hostCore = fs::readFile("/proc/sys/kernel/core_pattern").valueOr("?");
    auto core = exec(name, {"sh", "-c", "v=$(cat /proc/sys/kernel/core_pattern) && echo \"$v\" > /proc/sys/kernel/core_pattern"});
    EXPECT_NE(core.exitCode, 0) << name << ": core_pattern was writable";
    EXPECT_NE(core.err.find("Read-only file system"), std::string::npos) << name << ": " << core.err;
    EXPECT_EQ(fs::readFile("/proc/sys/kernel/core_pattern").valueOr(""), hostCore);
    if (fs::exists("/proc/sysrq-trigger")) {  // this kernel may lack CONFIG_MAGIC_SYSRQ
      auto sysrq = exec(name, {"sh", "-c", "echo h > /proc/sysrq-trigger"});
      EXPECT_NE(sysrq.exitCode, 0) << name << ": sysrq-trigger was writable";
    }
    // The files of this kernel that show host memory, symbols, keys and timers read empty.
    for (const char* f : {"kcore", "kallsyms", "keys", "timer_list", "sched_debug", "latency_stats"}) {
      if (!fs::exists(std::string("/proc/") + f)) continue;
      auto read = exec(name, {"sh", "-c", std::string("head -c 16 /proc/") + f + " | wc -c"});
      EXPECT_EQ(trim(read.out), "0") << name << ": /proc/" << f << " is not masked";
    }
    auto net = exec(name, {"sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward"});
    EXPECT_EQ(net.exitCode, 0) << name << ": " << net.err;
    EXPECT_EQ(trim(net.out), "1");
  }

  // T3: no block device can be made or opened; a char node made outside the allow-list
  // cannot be opened (nodev rootfs and /dev, devices cgroup).
  void expectNoDevices(const std::string& name) {
    auto blk = exec(name, {"sh", "-c", "mknod /dev/sda b 8 0 || mknod /tmp/sda b 8 0"});
    EXPECT_NE(blk.exitCode, 0) << name << ": a block device node was made";
    auto mem = exec(name, {"sh", "-c", "mknod /tmp/mem c 1 1 2>/dev/null; head -c 1 /tmp/mem | wc -c"});
    EXPECT_EQ(trim(mem.out), "0") << name << ": /dev/mem opened from a node made in the container";
    auto devmem = exec(name, {"sh", "-c", "rm -f /dev/mem; mknod /dev/mem c 1 1 2>/dev/null; head -c 1 /dev/mem | wc -c"});
    EXPECT_EQ(trim(devmem.out), "0") << name << ": /dev/mem opened from a node made in /dev";
    EXPECT_EQ(trim(exec(name, {"sh", "-c", "echo x > /dev/null && head -c 4 /dev/zero | wc -c"}).out), "4") << name;
  }

  std::string top, rootfs, config;
  std::unique_ptr<VmmdProcess> vmmd;
  std::vector<pid_t> initPids;
  std::vector<std::string> names;
};

TEST_F(LxcConfinementTest, PrivilegedContainerIsConfined) {
  startVmmd();
  pid_t init = start("p1", {{"container", {{"privileged", true}}}});
  ASSERT_GT(init, 0);
  expectConfinedCapabilities("p1", init);
  expectProcMixed("p1");
  expectNoDevices("p1");
  // T6: the deny-list answers EPERM where the call would otherwise fail differently or work:
  // modules are not built in here (ENOSYS), the container's root has CAP_DAC_READ_SEARCH and
  // CAP_SYS_ADMIN (EFAULT, EINVAL), the session keyring exists.
  auto p = probe("p1");
  for (const char* call : {"init_module", "finit_module", "kexec_load", "open_by_handle_at", "bpf", "keyctl", "umount2_force"})
    EXPECT_EQ(p[call], std::to_string(EPERM)) << call;
  EXPECT_EQ(p["umount2"], std::to_string(ENOENT)) << "umount2 without MNT_FORCE is not filtered";
  // The devices cgroup holds the allow-list (cgroup v1 here).
  if (fs::exists("/sys/fs/cgroup/devices/cgroup.procs")) {
    auto list = fs::readFile("/sys/fs/cgroup/devices/vmm/p1/devices.list").valueOr("");
    EXPECT_EQ(list.find("a *:* rwm"), std::string::npos) << list;
    EXPECT_NE(list.find("c 1:3 rwm"), std::string::npos) << list;
    EXPECT_EQ(list.find("b "), std::string::npos) << list;
  }
}

// A container defined without "privileged" has a user namespace of its own; its rootfs is
// idmapped, so its root owns the files the host's root owns on disk and what it writes stays
// the host root's there.
TEST_F(LxcConfinementTest, DefaultContainerIsUnprivilegedAndConfined) {
  startVmmd();
  pid_t init = start("u1");
  ASSERT_GT(init, 0);
  auto info = json::parse(vmmd->vmctl({"info", "u1", "-o", "json"}).out, nullptr, false);
  ASSERT_TRUE(info.is_object());
  EXPECT_EQ(info["definition"]["container"].value("privileged", true), false);
  int64_t base = info["definition"]["container"].value("idmap_base", int64_t{0});
  EXPECT_GT(base, 0);
  auto initStatus = statusFields(fs::readFile("/proc/" + std::to_string(init) + "/status").valueOr(""));
  EXPECT_EQ(split(initStatus["Uid"], '\t', true).at(0), std::to_string(base)) << "init runs as the range's first host uid";
  expectConfinedCapabilities("u1", init);
  expectProcMixed("u1");
  expectNoDevices("u1");
  auto p = probe("u1");
  for (const char* call : {"init_module", "finit_module", "open_by_handle_at", "umount2_force"}) EXPECT_EQ(p[call], std::to_string(EPERM)) << call;

  auto owner = exec("u1", {"stat", "-c", "%u %g", "/", "/root"});
  EXPECT_EQ(owner.out, "0 0\n0 0\n") << owner.err;
  auto made = exec("u1", {"sh", "-c", "echo inside > /root/made && chown 1000:1000 /root/made && ls -ln /root/made"});
  ASSERT_EQ(made.exitCode, 0) << made.err;
  EXPECT_NE(made.out.find(" 1000 "), std::string::npos) << made.out;
  struct stat st{};
  ASSERT_EQ(::stat((rootfs + "/root/made").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u) << "ids on disk are the container's, not shifted by the range";
  EXPECT_EQ(fs::readFile(rootfs + "/root/made").valueOr(""), "inside\n");
}

// Files the container's root writes are the host root's on disk (set-user-ID programs too), so
// a rootfs that every host user can reach is refused at define and at start.
TEST_F(LxcConfinementTest, RootfsWithinHostUsersReachIsRefused) {
  startVmmd();
  ASSERT_EQ(::chmod(top.c_str(), 0755), 0);
  std::string path = vmmd->dir() + "/open.json";
  json d = {{"name", "open"}, {"type", "lxc"}, {"memory", "64MiB"}, {"container", {{"rootfs", {{"path", rootfs}}}, {"init", {"/bin/sh"}}}}};
  ASSERT_TRUE(fs::writeFileAtomic(path, d.dump()).ok());
  auto refused = vmmd->vmctl({"define", path});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("can be reached by host users"), std::string::npos) << refused.err;
  ASSERT_EQ(::chmod(top.c_str(), 0700), 0);
  names.push_back("open");
  auto defined = vmmd->vmctl({"define", path});
  ASSERT_EQ(defined.exitCode, 0) << defined.err;
  ASSERT_EQ(::chmod(top.c_str(), 0755), 0);
  auto notStarted = vmmd->vmctl({"start", "open"});
  EXPECT_NE(notStarted.exitCode, 0);
  EXPECT_NE(notStarted.err.find("can be reached by host users"), std::string::npos) << notStarted.err;
  ASSERT_EQ(::chmod(top.c_str(), 0700), 0);
}

// T4: without limits.pids a container gets [containers] pids_max; a fork bomb stops there and
// vmmd keeps answering.
TEST_F(LxcConfinementTest, ForkBombStopsAtDefaultPidsMax) {
  startVmmd("[containers]\npids_max = 256\n");
  pid_t init = start("bomb", {{"memory", "512MiB"}});
  ASSERT_GT(init, 0);
  EXPECT_EQ(trim(fs::readFile("/sys/fs/cgroup/pids/vmm/bomb/pids.max").valueOr("")), "256");
  auto t0 = std::chrono::steady_clock::now();
  auto bomb = vmmd->vmctl({"exec", "bomb", "--timeout", "60s", "--", "sh", "-c",
                           "i=0; while [ $i -lt 600 ]; do sleep 1000 >/dev/null 2>&1 & i=$((i+1)); done; echo spawned"});
  std::cerr << "fork bomb: " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  EXPECT_NE(bomb.err.find("fork"), std::string::npos) << "no fork was refused: " << bomb.err.substr(0, 500);
  // What is left once the exec's shell and vmm-nsexec are gone: the limit minus those two.
  int64_t current = parseInt(std::string(trim(fs::readFile("/sys/fs/cgroup/pids/vmm/bomb/pids.current").valueOr("")))).value_or(0);
  EXPECT_GE(current, 250);
  EXPECT_LE(current, 256);
  auto t1 = std::chrono::steady_clock::now();
  auto list = vmmd->vmctl({"list"});
  EXPECT_EQ(list.exitCode, 0) << list.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(1));
  EXPECT_EQ(vmmd->vmctl({"destroy", "bomb"}).exitCode, 0);
}

// T5: unprivileged containers get disjoint host id ranges from [containers] idmap_range, kept
// in their definitions across a vmmd restart; an explicit range overlapping another is refused.
TEST_F(LxcConfinementTest, UnprivilegedContainersGetDisjointIdmaps) {
  startVmmd("[containers]\nidmap_range = \"3000000:1000000\"\n");
  auto baseOf = [&](const std::string& name) {
    auto d = json::parse(vmmd->vmctl({"info", name, "-o", "json"}).out, nullptr, false);
    return d.is_object() ? d["definition"]["container"].value("idmap_base", int64_t{0}) : int64_t{-1};
  };
  auto hostUid = [](pid_t pid) {
    auto f = statusFields(fs::readFile("/proc/" + std::to_string(pid) + "/status").valueOr(""));
    return parseInt(split(f["Uid"], '\t', true).empty() ? "" : split(f["Uid"], '\t', true)[0]).value_or(-1);
  };
  pid_t a = start("ua", {{"container", {{"privileged", false}}}});
  pid_t b = start("ub", {{"container", {{"privileged", false}}}});
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  int64_t baseA = baseOf("ua"), baseB = baseOf("ub");
  EXPECT_EQ(baseA, 3000000);
  EXPECT_EQ(baseB, 3000000 + 65536);
  EXPECT_EQ(hostUid(a), baseA);
  EXPECT_EQ(hostUid(b), baseB);
  auto map = exec("ub", {"cat", "/proc/self/uid_map"});
  EXPECT_EQ(split(std::string(trim(map.out)), ' ', true), (std::vector<std::string>{"0", std::to_string(baseB), "65536"})) << map.out;
  // An explicit base inside ua's range is refused; one outside every range is taken as given.
  std::string path = vmmd->dir() + "/uc.json";
  json uc = {{"name", "uc"},
             {"type", "lxc"},
             {"memory", "64MiB"},
             {"container", {{"rootfs", {{"path", rootfs}}}, {"init", {"/bin/sh"}}, {"privileged", false}, {"idmap_base", baseA + 1000}}}};
  ASSERT_TRUE(fs::writeFileAtomic(path, uc.dump()).ok());
  auto refused = vmmd->vmctl({"define", path});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("overlap those of container u"), std::string::npos) << refused.err;
  // The ranges are in the stored definitions: the same after a restart, and a new container
  // gets the next free one.
  ASSERT_TRUE(vmmd->stop().ok());
  ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  EXPECT_EQ(baseOf("ua"), baseA);
  EXPECT_EQ(baseOf("ub"), baseB);
  EXPECT_EQ(vmmd->vmctl({"destroy", "ua"}).exitCode, 0);
  EXPECT_EQ(vmmd->vmctl({"undefine", "ua"}).exitCode, 0);
  pid_t d = start("ud", {{"container", {{"privileged", false}}}});
  ASSERT_GT(d, 0);
  EXPECT_EQ(baseOf("ud"), baseA) << "the freed range is reused first";
  EXPECT_EQ(hostUid(d), baseA);
}

}  // namespace

int main(int argc, char** argv) {
  return vmm::testutil::runTestsInPrivateNetworkNamespace(argc, argv, "containers need namespaces and cgroups", true);
}
