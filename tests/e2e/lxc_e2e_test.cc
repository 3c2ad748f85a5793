// Integration: native system containers (drivers/lxc) on a busybox rootfs, driven through a
// real vmmd with vmctl: exec, limits, console, suspend/resume, shutdown/destroy cleanup and
// survival of a killed vmmd.
//
// The binary runs in private network and mount namespaces (made in main()): the bridge and
// veths vanish with them. /sys is remounted for the namespace, with the host's cgroup
// hierarchies moved back under it.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
#include "tests/support/private_netns.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmctlResult;
using testutil::VmmdProcess;
using testutil::waitFor;

namespace {

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

// The cgroup v1 controllers the driver makes a group in for each container (drivers/lxc/cgroups.cc).
const std::vector<std::string> kControllers = {"memory", "cpu", "cpuacct", "pids", "freezer", "devices"};

// The controllers (and "unified" for a v2 group) in which container `name` has a cgroup.
std::vector<std::string> cgroupsOf(const std::string& name) {
  std::vector<std::string> out;
  for (const auto& c : kControllers)
    if (fs::exists("/sys/fs/cgroup/" + c + "/vmm/" + name)) out.push_back(c);
  if (fs::exists("/sys/fs/cgroup/vmm/" + name)) out.push_back("unified");
  return out;
}
// The controllers of kControllers this host has mounted: a running container has a group in each.
std::vector<std::string> mountedControllers() {
  std::vector<std::string> out;
  for (const auto& c : kControllers)
    if (fs::exists("/sys/fs/cgroup/" + c + "/cgroup.procs")) out.push_back(c);
  return out;
}
const std::vector<std::string> kNone;

class LxcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(::geteuid() == 0, "root (containers need namespaces and cgroups)");
    // The rootfs inside a root-only directory, as vmm requires: files the container's root
    // writes are the host root's on disk.
    char tmpl[] = "/tmp/vmm-lxc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    top = tmpl;
    rootfs = top + "/rootfs";
    ASSERT_EQ(::mkdir(rootfs.c_str(), 0755), 0);
    ASSERT_EQ(run("set -e; cd " + rootfs + "; mkdir -p bin sbin etc proc sys dev tmp root; cp /bin/busybox bin/; "
                  "for a in $(bin/busybox --list); do [ -e bin/$a ] || ln -s busybox bin/$a; done; "
                  "echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd; echo 'root:x:0:' > etc/group"),
              0);
    ASSERT_EQ(run("ip link add lxcbr0 type bridge && ip link set lxcbr0 up"), 0);
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "lxc"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  }

  void TearDown() override {
    if (vmmd && vmmd->pid() > 0) {
      auto doms = json::parse(vmmd->vmctl({"list", "-o", "json"}).out, nullptr, false);
      if (doms.is_array())
        for (const auto& d : doms) (void)vmmd->vmctl({"destroy", d["name"]});
    }
    // Once every container is stopped none may keep a cgroup in any controller: checked before
    // the clean-up below removes what is left (which would hide it).
    for (const auto& n : names) EXPECT_EQ(cgroupsOf(n), kNone) << "cgroups of container " << n << " left behind";
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
    vmmd.reset();
    // Containers that outlived a killed vmmd: by the pids the tests recorded.
    for (pid_t pid : initPids)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    for (const auto& n : names)
      for (const auto& c : kControllers) {
        std::string group = "/sys/fs/cgroup/" + c + "/vmm/" + n;
        for (const auto& sub : fs::listDir(group).valueOr({}))  // per-exec sub-groups first
          if (fs::isDirectory(group + "/" + sub)) (void)::rmdir((group + "/" + sub).c_str());
        (void)::rmdir(group.c_str());
      }
    for (const auto& c : kControllers) (void)::rmdir(("/sys/fs/cgroup/" + c + "/vmm").c_str());
    (void)run("ip link del lxcbr0 2>/dev/null");
    if (!top.empty()) (void)run("rm -rf " + top);
    for (const auto& d : scratch) (void)fs::removeTree(d);
  }

  // A scratch directory removed after the test.
  std::string tempDir(const std::string& what) {
    std::string tmpl = "/tmp/vmm-lxc-" + what + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return "";
    scratch.push_back(tmpl);
    return tmpl;
  }

  json container(const std::string& name, json extra = json::object()) {
    names.push_back(name);
    json d = {{"name", name},
              {"type", "lxc"},
              {"memory", "64MiB"},
              {"container", {{"rootfs", {{"path", rootfs}}}, {"init", {"/bin/sh", "-c", "trap 'exit 0' TERM; echo BOOTED-" + name + "; sleep 100000 & wait"}}}}};
    d.merge_patch(extra);
    return d;
  }
  VmctlResult vmctl(const std::vector<std::string>& args) { return vmmd->vmctl(args); }
  VmctlResult define(const json& def) {
    std::string path = vmmd->dir() + "/" + def["name"].get<std::string>() + ".json";
    EXPECT_TRUE(fs::writeFileAtomic(path, def.dump()).ok());
    return vmctl({"define", path});
  }
  json info(const std::string& name) { return json::parse(vmctl({"info", name, "-o", "json"}).out, nullptr, false); }
  VmctlResult exec(const std::string& name, const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"exec", name, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return vmctl(args);
  }
  pid_t initPid(const std::string& name) {
    auto r = vmmd->connect();
    if (!r.ok()) return -1;
    auto d = (*r)->call("domain.get", {{"name", name}});
    pid_t pid = d.ok() ? (*d)["runtime"].value("pid", -1) : -1;
    if (pid > 0) initPids.push_back(pid);
    return pid;
  }

  std::string top, rootfs;
  std::unique_ptr<VmmdProcess> vmmd;
  std::vector<pid_t> initPids;
  std::vector<std::string> names;
  std::vector<std::string> scratch;
};

TEST_F(LxcTest, StartExecLimitsStop) {
  ASSERT_EQ(define(container("c1", {{"limits", {{"pids", 20}, {"cpu_shares", 512}}},
                                    {"nics", {{{"type", "bridge"}, {"bridge", "lxcbr0"}, {"mac", "52:54:00:11:22:33"}}}}}))
                .exitCode,
            0);
  auto t0 = std::chrono::steady_clock::now();
  auto started = vmctl({"start", "c1"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  auto host = exec("c1", {"hostname"});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "start -> first command (two vmctl round trips): " << ms << " ms\n";
  EXPECT_EQ(host.exitCode, 0) << host.err;
  EXPECT_EQ(trim(host.out), "c1");
  pid_t pid = initPid("c1");
  ASSERT_GT(pid, 0);
  EXPECT_EQ(cgroupsOf("c1"), mountedControllers());

  auto addr = exec("c1", {"ip", "addr"});
  EXPECT_NE(addr.out.find("eth0"), std::string::npos) << addr.out;
  EXPECT_NE(addr.out.find("52:54:00:11:22:33"), std::string::npos) << addr.out;
  EXPECT_EQ(run("ip link show master lxcbr0 | grep -q vc525400112233"), 0);
  auto ps = exec("c1", {"ps"});
  EXPECT_NE(ps.out.find("sleep 100000"), std::string::npos) << ps.out;
  auto fail = exec("c1", {"sh", "-c", "echo oops >&2; exit 3"});
  EXPECT_EQ(fail.exitCode, 3);
  EXPECT_TRUE(waitFor([&] { return vmctl({"console-log", "c1"}).out.find("BOOTED-c1") != std::string::npos; },
                      Millis(5000)));

  // An exec past its deadline fails and leaves no process behind in the container.
  auto t2 = std::chrono::steady_clock::now();
  auto slow = vmctl({"exec", "c1", "--timeout", "1s", "--", "sleep", "30"});
  EXPECT_NE(slow.exitCode, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t2, std::chrono::seconds(10));
  EXPECT_EQ(exec("c1", {"ps"}).out.find("sleep 30"), std::string::npos);
  // ...while what a finished exec started in the background keeps running.
  EXPECT_EQ(exec("c1", {"sh", "-c", "sleep 40 >/dev/null 2>&1 &"}).exitCode, 0);
  EXPECT_NE(exec("c1", {"ps"}).out.find("sleep 40"), std::string::npos);
  // Memory: a shell holding 200 MB in a variable is OOM-killed at 64 MiB; the container lives on.
  auto big = exec("c1", {"sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"});
  EXPECT_NE(big.exitCode, 0);
  EXPECT_EQ(big.out.find("survived"), std::string::npos);
  EXPECT_EQ(exec("c1", {"true"}).exitCode, 0);
  auto st = json::parse(vmctl({"stats", "c1"}).out, nullptr, false);
  EXPECT_EQ(st.value("memory_limit_bytes", int64_t{0}), 64 << 20) << st.dump();
  EXPECT_GT(st.value("memory_peak_bytes", int64_t{0}), 48 << 20) << st.dump();  // it reached the limit
  EXPECT_LT(st.value("memory_bytes", int64_t{1} << 40), 64 << 20) << st.dump();
  EXPECT_GE(st.value("pids", 0), 1) << st.dump();
  // Pids: 40 background sleeps do not fit in 20 pids.
  auto many = exec("c1", {"sh", "-c", "for i in $(seq 1 40); do sleep 2 & done 2>&1; wait"});
  EXPECT_NE((many.out + many.err).find("fork"), std::string::npos) << many.out << many.err;

  EXPECT_EQ(vmctl({"suspend", "c1"}).exitCode, 0);
  EXPECT_EQ(fs::readFile("/sys/fs/cgroup/freezer/vmm/c1/freezer.state").valueOr(""), "FROZEN\n");
  EXPECT_EQ(vmctl({"resume", "c1"}).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return exec("c1", {"true"}).exitCode == 0; }, Millis(5000)));

  auto t1 = std::chrono::steady_clock::now();
  auto down = vmctl({"shutdown", "c1", "--timeout", "10s"});
  EXPECT_EQ(down.exitCode, 0) << down.err;
  EXPECT_TRUE(waitFor([&] { return !processAlive(pid); }, Millis(15000)));
  std::cerr << "shutdown: " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count() << " ms\n";
  for (const auto& line : split(vmmd->log(), '\n', true))
    if (line.find("container started") != std::string::npos) std::cerr << line << "\n";
  EXPECT_TRUE(waitFor([&] { return cgroupsOf("c1").empty(); }, Millis(5000))) << join(cgroupsOf("c1"), ",");
  EXPECT_TRUE(waitFor([&] { return run("ip link show vc525400112233 >/dev/null 2>&1") != 0; }, Millis(5000)));

  // Started paused (frozen), then destroyed while frozen.
  ASSERT_EQ(vmctl({"start", "c1", "--paused"}).exitCode, 0);
  pid = initPid("c1");
  EXPECT_EQ(info("c1").value("state", ""), "paused");
  EXPECT_NE(exec("c1", {"true"}).exitCode, 0);
  EXPECT_EQ(vmctl({"destroy", "c1"}).exitCode, 0);
  EXPECT_FALSE(processAlive(pid));
  EXPECT_EQ(cgroupsOf("c1"), kNone);
}

// A container NIC on a vmm NAT network is a port like a VM's: it gets a DHCP lease from the
// network's dnsmasq, its port profile is applied (an ACL here) and removed with the container.
TEST_F(LxcTest, ContainerOnANatNetworkGetsALeaseAndItsPortProfile) {
  ASSERT_EQ(vmctl({"net", "define", "cnet", "--mode", "nat", "--ipv4", "10.95.0.1/24"}).exitCode, 0);
  json nic = {{"type", "network"}, {"network", "cnet"}, {"mac", "52:54:00:11:22:55"},
              {"port", {{"acl", {{{"action", "deny"}, {"protocol", "icmp"}}}}}}};
  ASSERT_EQ(define(container("netc", {{"nics", {nic}}})).exitCode, 0);
  auto started = vmctl({"start", "netc"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  initPid("netc");
  // -s /bin/true: only the lease is wanted (the test rootfs has no udhcpc script).
  auto lease = exec("netc", {"udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-s", "/bin/true"});
  EXPECT_EQ(lease.exitCode, 0) << lease.out << lease.err;
  auto leases = json::parse(vmctl({"net", "leases", "cnet", "-o", "json"}).out, nullptr, false);
  ASSERT_TRUE(leases.is_array());
  bool found = false;
  for (const auto& l : leases) found = found || l.value("mac", "") == "52:54:00:11:22:55";
  EXPECT_TRUE(found) << leases.dump();
  std::string tables;
  RunOptions opts;
  auto listed = runCommand({"nft", "list", "tables", "bridge"}, opts);
  ASSERT_TRUE(listed.ok());
  EXPECT_NE(listed->out.find("vmm_port_"), std::string::npos) << listed->out;
  ASSERT_EQ(vmctl({"destroy", "netc"}).exitCode, 0);
  listed = runCommand({"nft", "list", "tables", "bridge"}, opts);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->out.find("vmm_port_"), std::string::npos) << listed->out;
  EXPECT_EQ(vmctl({"undefine", "netc"}).exitCode, 0);
  EXPECT_EQ(vmctl({"net", "delete", "cnet"}).exitCode, 0);
}

// The port profile acts on the container's traffic. "guarded" has an ACL denying ICMP and a
// spoof check allowing only 10.95.1.50; "peer", on the same network without a profile, is the
// control. peer pings the gateway, guarded cannot; guarded still fetches a file from peer over
// TCP as 10.95.1.50, but not once it takes 10.95.1.51, and again after going back.
TEST_F(LxcTest, PortProfileAclAndSpoofCheckFilterTheContainersTraffic) {
  ASSERT_EQ(vmctl({"net", "define", "pnet", "--mode", "nat", "--ipv4", "10.95.1.1/24"}).exitCode, 0);
  json guardedNic = {{"type", "network"}, {"network", "pnet"}, {"mac", "52:54:00:11:22:66"},
                     {"port", {{"acl", {{{"action", "deny"}, {"protocol", "icmp"}}}}, {"spoof_check", true}, {"allowed_ips", {"10.95.1.50"}}}}};
  json peerNic = {{"type", "network"}, {"network", "pnet"}, {"mac", "52:54:00:11:22:77"}};
  ASSERT_EQ(define(container("guarded", {{"nics", {guardedNic}}})).exitCode, 0);
  ASSERT_EQ(define(container("peer", {{"nics", {peerNic}}})).exitCode, 0);
  for (const char* c : {"guarded", "peer"}) {
    auto started = vmctl({"start", c});
    ASSERT_EQ(started.exitCode, 0) << started.err;
    initPid(c);
  }
  auto address = [&](const std::string& c, const std::string& ip) {
    return exec(c, {"sh", "-c", "ip addr flush dev eth0 && ip addr add " + ip + "/24 dev eth0 && ip link set eth0 up"});
  };
  ASSERT_EQ(address("guarded", "10.95.1.50").exitCode, 0);
  ASSERT_EQ(address("peer", "10.95.1.60").exitCode, 0);
  auto served = exec("peer", {"sh", "-c", "mkdir -p /tmp/www && echo FROM-PEER > /tmp/www/f && httpd -p 8080 -h /tmp/www"});
  ASSERT_EQ(served.exitCode, 0) << served.out << served.err;
  auto ping = [&](const std::string& c) { return exec(c, {"ping", "-c", "2", "-W", "2", "10.95.1.1"}); };
  // busybox nc rather than wget (which crashes in this minimal rootfs); the body ends the reply.
  auto fetch = [&](const std::string& c) {
    return exec(c, {"sh", "-c", "r=$(printf 'GET /f HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.95.1.60 8080) || exit 1; echo \"$r\" | tail -n 1"});
  };

  // ICMP: the control reaches the gateway, the guarded port drops it.
  auto control = ping("peer");
  EXPECT_EQ(control.exitCode, 0) << control.out << control.err;
  auto denied = ping("guarded");
  EXPECT_NE(denied.exitCode, 0) << denied.out << denied.err;
  EXPECT_NE(denied.out.find("0 packets received"), std::string::npos) << denied.out;
  // TCP from the allowed address passes the same port.
  auto allowed = fetch("guarded");
  EXPECT_EQ(allowed.exitCode, 0) << allowed.err;
  EXPECT_EQ(allowed.out, "FROM-PEER\n");
  // Another source address is spoofing: dropped (ARP and IP); back to the allowed one, it works.
  ASSERT_EQ(address("guarded", "10.95.1.51").exitCode, 0);
  auto spoofed = fetch("guarded");
  EXPECT_NE(spoofed.exitCode, 0) << spoofed.out;
  EXPECT_EQ(spoofed.out, "");
  ASSERT_EQ(address("guarded", "10.95.1.50").exitCode, 0);
  auto again = fetch("guarded");
  EXPECT_EQ(again.exitCode, 0) << again.err;
  EXPECT_EQ(again.out, "FROM-PEER\n");

  for (const char* c : {"guarded", "peer"}) {
    EXPECT_EQ(vmctl({"destroy", c}).exitCode, 0);
    EXPECT_EQ(vmctl({"undefine", c}).exitCode, 0);
  }
  EXPECT_EQ(vmctl({"net", "delete", "pnet"}).exitCode, 0);
}

// Container snapshots copy the rootfs (the container frozen meanwhile); a revert stops the
// container and puts the copy back; a tree of two works like a VM's.
TEST_F(LxcTest, SnapshotsCopyAndRestoreTheRootfs) {
  ASSERT_EQ(define(container("snapc")).exitCode, 0);
  ASSERT_EQ(vmctl({"start", "snapc"}).exitCode, 0);
  initPid("snapc");
  ASSERT_EQ(exec("snapc", {"sh", "-c", "echo one > /root/state"}).exitCode, 0);
  auto taken = vmctl({"snapshot", "create", "snapc", "first"});
  ASSERT_EQ(taken.exitCode, 0) << taken.err;
  EXPECT_EQ(info("snapc").value("state", ""), "running");  // thawed again
  ASSERT_EQ(exec("snapc", {"sh", "-c", "echo two > /root/state; touch /root/later"}).exitCode, 0);
  ASSERT_EQ(vmctl({"snapshot", "create", "snapc", "second"}).exitCode, 0);
  auto reverted = vmctl({"snapshot", "revert", "snapc", "first"});
  ASSERT_EQ(reverted.exitCode, 0) << reverted.err;
  EXPECT_EQ(info("snapc").value("state", ""), "shutoff");
  auto content = fs::readFile(rootfs + "/root/state", 64);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "one\n");
  EXPECT_FALSE(fs::exists(rootfs + "/root/later"));
  auto tree = vmctl({"snapshot", "list", "snapc", "--tree"});
  EXPECT_NE(tree.out.find("first  (current)"), std::string::npos) << tree.out;
  ASSERT_EQ(vmctl({"start", "snapc"}).exitCode, 0);
  initPid("snapc");
  auto after = exec("snapc", {"cat", "/root/state"});
  EXPECT_EQ(after.out, "one\n");
  ASSERT_EQ(vmctl({"snapshot", "delete", "snapc", "first", "--children"}).exitCode, 0);
  EXPECT_EQ(json::parse(vmctl({"snapshot", "list", "snapc", "-o", "json"}).out, nullptr, false).size(), 0u);
}

// A reboot is a fresh init in new namespaces: processes started before it are gone, the
// domain stays running and controllable, and a vmmd restart afterwards still finds it.
TEST_F(LxcTest, RebootStartsAFreshInit) {
  ASSERT_EQ(define(container("reb")).exitCode, 0);
  ASSERT_EQ(vmctl({"start", "reb"}).exitCode, 0);
  pid_t before = initPid("reb");
  ASSERT_GT(before, 0);
  ASSERT_EQ(exec("reb", {"sh", "-c", "sleep 1001 >/dev/null 2>&1 &"}).exitCode, 0);
  auto r = vmctl({"reboot", "reb"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_FALSE(processAlive(before));
  // domain.get shows the new init.
  pid_t after = initPid("reb");
  EXPECT_GT(after, 0);
  EXPECT_NE(after, before);
  EXPECT_TRUE(processAlive(after));
  EXPECT_EQ(info("reb").value("state", ""), "running");
  // [s]: the pattern does not match the command line of the grep or the shell running it.
  auto ps = exec("reb", {"sh", "-c", "ps | grep -c '[s]leep 1001' || true"});
  EXPECT_EQ(trim(ps.out), "0") << ps.out;
  vmmd->kill9();
  ASSERT_TRUE(vmmd->restart().ok()) << vmmd->log();
  EXPECT_EQ(info("reb").value("state", ""), "running");
  EXPECT_EQ(exec("reb", {"hostname"}).exitCode, 0);
}

TEST_F(LxcTest, SurvivesVmmdKill) {
  ASSERT_EQ(define(container("c2")).exitCode, 0);
  ASSERT_EQ(vmctl({"start", "c2"}).exitCode, 0);
  pid_t pid = initPid("c2");
  ASSERT_GT(pid, 0);
  vmmd->kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(processAlive(pid));
  // Console output while vmmd is down is held by the monitor and reaches the log later.
  EXPECT_EQ(run("echo WHILE-DOWN > /proc/" + std::to_string(pid) + "/root/dev/console"), 0);
  ASSERT_TRUE(vmmd->restart().ok()) << vmmd->log();
  EXPECT_TRUE(waitFor([&] { return vmctl({"console-log", "c2"}).out.find("WHILE-DOWN") != std::string::npos; }, Millis(5000)))
      << vmctl({"console-log", "c2"}).out;
  EXPECT_TRUE(waitFor([&] { return info("c2").value("state", "") == "running"; }, Millis(5000))) << info("c2").dump();
  auto host = exec("c2", {"hostname"});
  EXPECT_EQ(trim(host.out), "c2") << host.err;
  EXPECT_EQ(vmctl({"suspend", "c2"}).exitCode, 0);
  EXPECT_EQ(vmctl({"resume", "c2"}).exitCode, 0);
  // The restarted vmmd watches init again: its death is noticed and cleaned up.
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(waitFor([&] { return info("c2").value("state", "") == "shutoff"; }, Millis(5000))) << info("c2").dump();
  EXPECT_TRUE(waitFor([&] { return cgroupsOf("c2").empty(); }, Millis(5000))) << join(cgroupsOf("c2"), ",");
}

// A rootfs on a dir pool: a directory volume unpacked from a busybox tarball. The volume is
// busy while a domain uses it; a bad tarball makes no volume.
TEST_F(LxcTest, RootfsOnADirectoryVolume) {
  std::string pool = tempDir("pool"), files = tempDir("tar");
  ASSERT_FALSE(pool.empty() || files.empty());
  ASSERT_EQ(run("echo ON-A-VOLUME > " + rootfs + "/etc/marker && echo 'user:x:1000:1000::/:/bin/sh' >> " + rootfs + "/etc/passwd && tar -czf " +
                files + "/busybox.tar.gz -C " + rootfs + " ."),
            0);
  auto defined = vmctl({"pool", "define", "rpool", "--path", pool + "/p", "--build"});
  ASSERT_EQ(defined.exitCode, 0) << defined.err;
  auto t0 = std::chrono::steady_clock::now();
  auto made = vmctl({"vol", "create", "rpool", "rfs", "--format", "dir", "--from-tar", files + "/busybox.tar.gz"});
  ASSERT_EQ(made.exitCode, 0) << made.err;
  std::cerr << "vol create --from-tar (busybox, gzip): "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms\n";
  auto vol = json::parse(vmctl({"vol", "info", "rpool", "rfs", "-o", "json"}).out, nullptr, false);
  EXPECT_EQ(vol.value("format", ""), "dir") << vol.dump();
  EXPECT_GT(vol.value("capacity", uint64_t{0}), 500000u) << vol.dump();  // busybox itself
  EXPECT_TRUE(fs::exists(pool + "/p/rfs/bin/busybox"));

  json def = container("volc");
  def["container"]["rootfs"] = {{"pool", "rpool"}, {"volume", "rfs"}};
  ASSERT_EQ(define(def).exitCode, 0);
  auto started = vmctl({"start", "volc"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  initPid("volc");
  EXPECT_EQ(trim(exec("volc", {"cat", "/etc/marker"}).out), "ON-A-VOLUME");
  EXPECT_EQ(trim(exec("volc", {"hostname"}).out), "volc");
  // The pool's directory keeps host users out, so the tree's top is 0755: the container's
  // users other than root reach its files too.
  struct stat st{};
  ASSERT_EQ(::stat((pool + "/p").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat((pool + "/p/rfs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  auto asUser = exec("volc", {"su", "-s", "/bin/sh", "user", "-c", "id -u; cat /etc/marker"});
  EXPECT_EQ(asUser.out, "1000\nON-A-VOLUME\n") << asUser.err;

  // In use: deleting it is a conflict (409), and it stays.
  auto conn = vmmd->connect();
  ASSERT_TRUE(conn.ok());
  auto del = (*conn)->call("volume.delete", {{"pool", "rpool"}, {"name", "rfs"}});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict) << del.error().message;
  EXPECT_NE(del.error().message.find("used by domain volc"), std::string::npos) << del.error().message;
  EXPECT_TRUE(fs::exists(pool + "/p/rfs/bin/busybox"));
  // Not something to upload into or to resize.
  auto resize = vmctl({"vol", "resize", "rpool", "rfs", "1G"});
  EXPECT_NE(resize.exitCode, 0);
  EXPECT_NE(resize.err.find("directory volume"), std::string::npos) << resize.err;

  // A bad tarball: a clear error, no volume, nothing left in the pool's directory.
  ASSERT_TRUE(fs::writeFileAtomic(files + "/bad.tar", "this is not an archive").ok());
  auto bad = vmctl({"vol", "create", "rpool", "bad", "--format", "dir", "--from-tar", files + "/bad.tar"});
  EXPECT_NE(bad.exitCode, 0);
  EXPECT_NE(bad.err.find("not a tar archive (accepted: uncompressed, gzip, xz, bzip2 or zstd)"), std::string::npos) << bad.err;
  EXPECT_EQ(vmctl({"vol", "info", "rpool", "bad"}).exitCode == 0, false);
  EXPECT_EQ(fs::listDir(pool + "/p").valueOr({}), std::vector<std::string>{"rfs"});
  // A rootfs volume that is not a directory is refused at start with the reason.
  ASSERT_EQ(vmctl({"vol", "create", "rpool", "img", "1M", "--format", "raw"}).exitCode, 0);
  json onFile = container("filec");
  onFile["container"]["rootfs"] = {{"pool", "rpool"}, {"volume", "img"}};
  ASSERT_EQ(define(onFile).exitCode, 0);
  auto refused = vmctl({"start", "filec"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("not a directory volume"), std::string::npos) << refused.err;
  EXPECT_EQ(cgroupsOf("filec"), kNone);
  EXPECT_EQ(vmctl({"undefine", "filec"}).exitCode, 0);
  EXPECT_EQ(vmctl({"vol", "delete", "rpool", "img"}).exitCode, 0);

  // Stopped and undefined: the volume can go, tree and all.
  EXPECT_EQ(vmctl({"destroy", "volc"}).exitCode, 0);
  EXPECT_EQ(vmctl({"undefine", "volc"}).exitCode, 0);
  auto gone = vmctl({"vol", "delete", "rpool", "rfs"});
  EXPECT_EQ(gone.exitCode, 0) << gone.err;
  EXPECT_FALSE(fs::exists(pool + "/p/rfs"));
  EXPECT_EQ(vmctl({"pool", "delete", "rpool", "--storage"}).exitCode, 0);
}

// The console: a shell on the container's pty, reached over RPC and through vmctl console.
TEST_F(LxcTest, ConsoleRunsCommands) {
  ASSERT_EQ(define(container("tty", {{"container", {{"init", {"/bin/sh"}}}}})).exitCode, 0);
  auto started = vmctl({"start", "tty"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  initPid("tty");
  auto conn = vmmd->connect();
  ASSERT_TRUE(conn.ok());
  auto session = (*conn)->openConsole("tty");
  ASSERT_TRUE(session.ok()) << session.error().message;
  ASSERT_TRUE(writeAllFd(session->fd.get(), "echo RPC-$((20+22)) $(hostname)\n", Deadline::after(Millis(2000))).ok());
  std::string out = session->initial;
  EXPECT_TRUE(waitFor([&] {
    char buf[4096];
    ssize_t n = ::recv(session->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    return out.find("RPC-42 tty") != std::string::npos;
  }, Millis(10000), Millis(20))) << out;
  session->fd.reset();

  auto r = vmmd->vmctl({"console", "tty"}, "echo VMCTL-$((1+2))\n");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_TRUE(waitFor([&] { return vmctl({"console-log", "tty"}).out.find("VMCTL-3") != std::string::npos; }, Millis(5000)))
      << vmctl({"console-log", "tty"}).out;
  EXPECT_EQ(vmctl({"destroy", "tty"}).exitCode, 0);
}

TEST_F(LxcTest, UserNamespace) {
  ASSERT_EQ(define(container("u1", {{"container", {{"privileged", false}}}})).exitCode, 0);
  auto started = vmctl({"start", "u1"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  initPid("u1");
  auto map = exec("u1", {"cat", "/proc/self/uid_map"});
  EXPECT_EQ(map.exitCode, 0) << map.err;
  // The range allocated at define (from root's /etc/subuid entry by default).
  auto base = info("u1")["definition"]["container"].value("idmap_base", int64_t{0});
  EXPECT_GT(base, 0);
  EXPECT_NE(map.out.find(" " + std::to_string(base) + " "), std::string::npos) << map.out;
  EXPECT_EQ(trim(exec("u1", {"id", "-u"}).out), "0");
  EXPECT_EQ(vmctl({"destroy", "u1"}).exitCode, 0);
  EXPECT_EQ(cgroupsOf("u1"), kNone);
}

TEST_F(LxcTest, FailedStartLeavesNothing) {
  ASSERT_EQ(run("printf '#!/no/such/interpreter\\n' > " + rootfs + "/init.sh && chmod +x " + rootfs + "/init.sh"), 0);
  ASSERT_EQ(define(container("f1", {{"container", {{"init", {"/init.sh"}}}},
                                    {"nics", {{{"type", "bridge"}, {"bridge", "lxcbr0"}, {"mac", "52:54:00:11:22:44"}}}}}))
                .exitCode,
            0);
  auto r = vmctl({"start", "f1"});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("cannot execute /init.sh"), std::string::npos) << r.err;
  EXPECT_EQ(cgroupsOf("f1"), kNone);
  EXPECT_NE(run("ip link show vc525400112244 >/dev/null 2>&1"), 0);
  EXPECT_EQ(info("f1").value("state", ""), "shutoff");
}

TEST_F(LxcTest, BadDefinitionsAreRefused) {
  auto noRootfs = define(container("bad1", {{"container", {{"rootfs", {{"path", "/nonexistent/rootfs"}}}}}}));
  EXPECT_NE(noRootfs.exitCode, 0);
  EXPECT_NE(noRootfs.err.find("not a directory"), std::string::npos) << noRootfs.err;
  auto noInit = define(container("bad2", {{"container", {{"init", {"/sbin/nothing-here"}}}}}));
  EXPECT_NE(noInit.exitCode, 0);
  EXPECT_NE(noInit.err.find("does not exist in the rootfs"), std::string::npos) << noInit.err;
  auto pids = define(container("bad3", {{"limits", {{"pids", 1}}}}));
  EXPECT_NE(pids.exitCode, 0);
  EXPECT_NE(pids.err.find("pids"), std::string::npos) << pids.err;
  EXPECT_EQ(cgroupsOf("bad1"), kNone);
  EXPECT_EQ(cgroupsOf("bad3"), kNone);
}

}  // namespace

int main(int argc, char** argv) {
  return vmm::testutil::runTestsInPrivateNetworkNamespace(argc, argv, "containers need namespaces and cgroups", true);
}
