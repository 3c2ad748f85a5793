// Integration: vmm networks with real QEMU (TCG) guests booted from the test guest.
//   - a NAT network made through the API: DHCP leases (dynamic and static), guests reaching each
//     other, the gateway and an "outside" host that only sees the masquerading address;
//   - a routed network: the outside host sees the guest's own address and connects into it;
//   - a bridge-mode network on a host bridge the test made: the guest talks to a host on it;
//   - nft tables under vmm's prefix that no running network owns are removed when vmmd starts,
//     a running network's table is kept (or made again) and its traffic still flows;
//   - port profiles on real taps: an ACL dropping ICMP but not TCP, VLANs keeping guests apart
//     (each VLAN shown to pass traffic inside itself);
//   - everything taken down again: taps, per-port nft tables and ifb devices with the guests;
//     bridge, table, dnsmasq and forwarding switches with the network;
//   - bad input refused without leftovers;
//   - direct NICs (macvtap, VEPA) that only meet through an external switch doing hairpin.
//
// The binary runs in private network and mount namespaces (made in main()), and so does the
// vmmd it starts: bridges, nft tables and dnsmasq are private. "Outside hosts" and "external
// switches" are child processes in network namespaces of their own.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
#include "tests/support/nfs_server.h"
#include "tests/support/host_command.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmctlResult;
using testutil::VmmdProcess;
using testutil::guestDir;
using testutil::guestReady;
using testutil::waitFor;

namespace {

// Runs a host command; the combined result (exit code -1 when it could not run).
CommandResult host(const std::vector<std::string>& argv) { return testutil::hostCommand(argv); }
int sh(const std::string& script) { return host({"sh", "-c", script}).exitCode; }

bool linkExists(const std::string& name) { return fs::exists("/sys/class/net/" + name); }

// Links of a kind ("ifb", "macvtap", "bridge", ...) in the test's namespace.
std::vector<std::string> linksOfKind(const std::string& kind) {
  std::vector<std::string> out;
  auto links = json::parse(host({"ip", "-j", "-d", "link"}).out, nullptr, false);
  if (!links.is_array()) return out;
  for (const auto& l : links)
    if (l.contains("linkinfo") && l["linkinfo"].value("info_kind", "") == kind) out.push_back(l.value("ifname", ""));
  return out;
}

std::string nftTables() { return host({"nft", "list", "tables"}).out; }

std::string readSysctl(const std::string& path) {
  std::string value = fs::readFile(path, 64).valueOr("?");
  return std::string(trim(value));
}

// The tap (or macvtap) vmm names after a guest MAC: "vm"/"mv" + the 12 hex digits.
std::string hostIfFor(const std::string& prefix, const std::string& mac) {
  std::string hex;
  for (char c : mac)
    if (c != ':') hex += c;
  return prefix + hex;
}

// A process alone in a fresh network namespace (an outside host, an external switch). It dies
// with the test process (PDEATHSIG) at the latest.
class ChildNetns {
 public:
  ChildNetns() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return;
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      char c = ::unshare(CLONE_NEWNET) == 0 ? 'k' : 'e';
      (void)!::write(p[1], &c, 1);
      for (;;) ::pause();
    }
    ::close(p[1]);
    char c = 0;
    if (pid > 0 && ::read(p[0], &c, 1) == 1 && c == 'k') pid_ = pid;
    else if (pid > 0) reap(pid);
    ::close(p[0]);
  }
  ~ChildNetns() {
    for (pid_t pid : background_) reap(pid);
    if (pid_ > 0) reap(pid_);
  }
  ChildNetns(const ChildNetns&) = delete;
  ChildNetns& operator=(const ChildNetns&) = delete;

  bool ok() const { return pid_ > 0; }
  std::string pidText() const { return std::to_string(pid_); }
  std::vector<std::string> in(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {"nsenter", "--net=/proc/" + pidText() + "/ns/net"});
    return argv;
  }
  int sh(const std::string& script) const { return host(in({"sh", "-c", script})).exitCode; }
  // A long-running program inside (killed with this namespace).
  pid_t spawn(const std::vector<std::string>& argv) {
    SpawnOptions so;
    so.newSession = false;
    auto pid = spawnProcess(in(argv), so);
    if (!pid.ok()) return -1;
    background_.push_back(*pid);
    return *pid;
  }

 private:
  static void reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  pid_t pid_ = -1;
  std::vector<pid_t> background_;
};

// A veth pair with `inside` in the test's namespace and `peer` moved into `ns`.
::testing::AssertionResult vethInto(const std::string& inside, const std::string& peer, const ChildNetns& ns) {
  if (sh("ip link add " + inside + " type veth peer name " + peer + " && ip link set " + peer + " netns " +
         ns.pidText() + " && ip link set " + inside + " up") != 0)
    return ::testing::AssertionFailure() << "cannot make veth " << inside << "/" << peer;
  if (ns.sh("ip link set lo up && ip link set " + peer + " up") != 0)
    return ::testing::AssertionFailure() << "cannot bring " << peer << " up";
  return ::testing::AssertionSuccess();
}

// A python TCP server for an outside host: answers every connection with the address it came
// from, so the test sees which source address reached it.
std::vector<std::string> peerEchoServer(const std::string& ip, int port) {
  return {"python3", "-c",
          "import socket\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('" + ip + "', " + std::to_string(port) + ")); s.listen(8)\n"
          "while True:\n"
          "    c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()\n"};
}

class QemuNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    t0 = SteadyClock::now();
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    auto started = vmmd->start();
    ASSERT_TRUE(started.ok()) << started.error().message << "\n" << vmmd->log();
    // As a real state directory (0755): dnsmasq re-reads its DHCP hosts file as user nobody,
    // which mkdtemp's 0700 would lock out.
    ASSERT_EQ(::chmod(vmmd->dir().c_str(), 0755), 0);
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }

  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
    if (rpc) {
      for (const auto& name : domains) {
        (void)rpc->call("domain.destroy", {{"name", name}});
        (void)rpc->call("domain.delete", {{"name", name}});
      }
      for (const auto& name : networks) {
        auto v = rpc->call("network.get", {{"name", name}});
        if (v.ok() && (*v).contains("runtime")) dnsmasqPids.insert((*v)["runtime"].value("dnsmasq_pid", 0));
        (void)rpc->call("network.delete", {{"name", name}});
      }
    }
    for (pid_t pid : qemuPids)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    for (pid_t pid : dnsmasqPids)
      if (pid > 0 && processAlive(pid)) ::kill(pid, SIGKILL);
    rpc.reset();
    vmmd.reset();
    for (const auto& l : links) (void)host({"ip", "link", "del", l});
    std::cerr << "[ time ] " << std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count() << " ms\n";
  }

  Result<json> tryCall(const std::string& method, const json& params) {
    return rpc->callAndWait(method, params, Deadline::after(Millis(60000)));
  }
  json call(const std::string& method, const json& params) {
    auto r = tryCall(method, params);
    EXPECT_TRUE(r.ok()) << method << ": " << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json();
  }

  json createNetwork(const json& def) {
    networks.push_back(def["name"]);
    return call("network.create", {{"definition", def}});
  }

  json guest(const std::string& name, const json& nics, const std::string& extraCmdline) {
    return {{"name", name},
            {"type", "qemu"},
            {"vcpus", 1},
            {"memory", "192MiB"},
            {"nics", nics},
            {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"},
                      {"cmdline", "console=ttyS0 panic=-1 quiet tg.marker=MARKER-" + name + " " + extraCmdline}}}};
  }

  // Defines and starts a guest; its QEMU pid (or -1).
  pid_t boot(const std::string& name, const json& nics, const std::string& extraCmdline) {
    auto created = rpc->call("domain.create", {{"definition", guest(name, nics, extraCmdline)}});
    EXPECT_TRUE(created.ok()) << (created.ok() ? "" : created.error().message);
    if (!created.ok()) return -1;
    domains.push_back(name);
    auto started = tryCall("domain.start", {{"name", name}});
    EXPECT_TRUE(started.ok()) << name << ": " << (started.ok() ? "" : started.error().message);
    if (!started.ok()) return -1;
    auto info = rpc->call("domain.get", {{"name", name}});
    pid_t pid = info.ok() ? (*info)["runtime"].value("pid", -1) : -1;
    if (pid > 0) qemuPids.insert(pid);
    return pid;
  }

  std::string consoleLog(const std::string& name) {
    auto r = rpc->call("domain.console_log", {{"name", name}});
    return r.ok() ? (*r)["log"].get<std::string>() : std::string();
  }
  bool consoleShows(const std::string& name, const std::string& text, Millis timeout = Millis(90000)) {
    return waitFor([&] { return consoleLog(name).find(text) != std::string::npos; }, timeout, Millis(250));
  }

  // Runs a shell command in the guest through the agent. Retried only until the agent of a
  // QEMU process (a fresh boot) first answers: after that a failing call is not hidden.
  VmctlResult guestShell(const std::string& name, const std::string& script) {
    static std::map<std::string, pid_t> answered;  // vmmd dir + domain -> QEMU pid whose agent answered
    auto info = rpc->call("domain.get", {{"name", name}});
    pid_t pid = info.ok() ? (*info)["runtime"].value("pid", -1) : -1;
    std::string key = vmmd->dir() + "/" + name;
    auto once = [&] { return vmmd->vmctl({"exec", name, "--timeout", "30s", "--", "sh", "-c", script}); };
    if (pid > 0 && answered.count(key) && answered[key] == pid) return once();
    VmctlResult r;
    waitFor([&] {
      r = once();
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(90000), Millis(300));
    if (r.exitCode == 0 || r.err.find("agent") == std::string::npos) answered[key] = pid;
    return r;
  }
  int guestPing(const std::string& name, const std::string& ip, int count = 1) {
    return guestShell(name, "ping -c " + std::to_string(count) + " -W 2 " + ip + " >/dev/null 2>&1").exitCode;
  }

  // Processes whose parent is vmmd (its QEMUs; dnsmasq is started in its own session but is
  // still vmmd's child).
  std::vector<std::string> childrenOfVmmd(const std::string& comm) {
    std::vector<std::string> out;
    for (const auto& e : fs::listDir("/proc").valueOr({})) {
      if (!std::isdigit(static_cast<unsigned char>(e[0]))) continue;
      auto stat = fs::readFile("/proc/" + e + "/stat", 4096);
      if (!stat.ok()) continue;
      std::string name = stat->substr(stat->find('(') + 1, stat->rfind(')') - stat->find('(') - 1);
      auto fields = split(stat->substr(stat->rfind(')') + 2), ' ');
      if (fields.size() > 1 && fields[1] == std::to_string(vmmd->pid()) && name.find(comm) != std::string::npos)
        out.push_back(e);
    }
    return out;
  }

  SteadyClock::time_point t0;
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<std::string> domains, networks, links;
  std::set<pid_t> qemuPids, dnsmasqPids;
};

// 1 (and 3 for a NAT network): DHCP, static lease, guest-to-guest, gateway, masquerading to an
// outside host; then guests and network are taken down and nothing of them remains.
TEST_F(QemuNetworkTest, NatNetworkWithDhcpReachesTheOutsideMasqueraded) {
  // The outside: 203.0.113.2 behind the uplink, with no route back to the guests' subnet.
  ChildNetns outside;
  ASSERT_TRUE(outside.ok());
  ASSERT_TRUE(vethInto("vmmup0", "out0", outside));
  links.push_back("vmmup0");
  ASSERT_EQ(sh("ip addr add 203.0.113.1/24 dev vmmup0"), 0);
  ASSERT_EQ(outside.sh("ip addr add 203.0.113.2/24 dev out0"), 0);
  // Answers every TCP connection with the address it came from.
  std::string server =
      "import socket\n"
      "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind(('203.0.113.2', 8080)); s.listen(8)\n"
      "while True:\n"
      "    c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()\n";
  ASSERT_GT(outside.spawn({"python3", "-c", server}), 0);

  std::string globalFwd = "/proc/sys/net/ipv4/ip_forward";
  std::string uplinkFwd = "/proc/sys/net/ipv4/conf/vmmup0/forwarding";
  std::string globalBefore = readSysctl(globalFwd), uplinkBefore = readSysctl(uplinkFwd);

  const std::string macA = "52:54:00:91:00:0a", macB = "52:54:00:91:00:0b";
  json def = {{"name", "natnet"}, {"mode", "nat"}, {"bridge", "vmmnat0"}, {"ipv4", "10.91.0.1/24"}, {"uplink", "vmmup0"},
              {"dhcp", {{"hosts", {{{"mac", macB}, {"ip", "10.91.0.50"}, {"name", "guestb"}}}}}}};
  json view = createNetwork(def);
  ASSERT_EQ(view.value("state", ""), "active") << view.dump();
  pid_t dnsmasq = view["runtime"].value("dnsmasq_pid", 0);
  ASSERT_GT(dnsmasq, 0);
  dnsmasqPids.insert(dnsmasq);
  EXPECT_TRUE(linkExists("vmmnat0"));
  EXPECT_NE(nftTables().find("vmm-net-natnet"), std::string::npos) << nftTables();

  ASSERT_GT(boot("nat-a", {{{"network", "natnet"}, {"mac", macA}}}, "tg.dhcp=1"), 0);
  ASSERT_GT(boot("nat-b", {{{"network", "natnet"}, {"mac", macB}}}, "tg.dhcp=1"), 0);
  EXPECT_TRUE(fs::exists("/sys/class/net/vmmnat0/brif/" + hostIfFor("vm", macA)));
  ASSERT_TRUE(consoleShows("nat-a", "NET-DHCP-OK")) << consoleLog("nat-a");
  ASSERT_TRUE(consoleShows("nat-b", "NET-DHCP-OK")) << consoleLog("nat-b");

  // Leases through vmctl: A from the dynamic range (upper half), B its static address.
  auto leasesOut = vmmd->vmctl({"net", "leases", "natnet", "-o", "json"});
  ASSERT_EQ(leasesOut.exitCode, 0) << leasesOut.err;
  auto leases = json::parse(leasesOut.out, nullptr, false);
  ASSERT_TRUE(leases.is_array()) << leasesOut.out;
  std::string ipA, ipB;
  for (const auto& l : leases) {
    if (l["mac"] == macA) ipA = l["ip"];
    if (l["mac"] == macB) ipB = l["ip"];
  }
  std::string stateDir = view["runtime"].value("state_dir", "");
  EXPECT_EQ(ipB, "10.91.0.50") << leases.dump() << "\nhosts file:\n" << fs::readFile(stateDir + "/dnsmasq.hosts", 1 << 16).valueOr("?")
                               << "\ndnsmasq log:\n" << fs::readFile(stateDir + "/dnsmasq.log", 1 << 16).valueOr("?");
  ASSERT_TRUE(startsWith(ipA, "10.91.0.")) << leases.dump();
  EXPECT_GE(std::stoi(ipA.substr(8)), 128) << ipA;
  auto shown = guestShell("nat-a", "ip -4 -o addr show dev eth0");
  EXPECT_NE(shown.out.find(ipA + "/24"), std::string::npos) << shown.out << shown.err;

  EXPECT_EQ(guestPing("nat-a", ipB), 0) << "guest A cannot reach guest B";
  EXPECT_EQ(guestPing("nat-a", "10.91.0.1"), 0) << "guest A cannot reach the gateway";
  EXPECT_EQ(guestPing("nat-b", ipA), 0) << "guest B cannot reach guest A";
  // The outside host only knows the uplink's address: replies come back through the NAT.
  EXPECT_EQ(guestPing("nat-a", "203.0.113.2"), 0) << "guest A cannot reach the outside";
  auto seen = guestShell("nat-a", "nc -w 5 203.0.113.2 8080 </dev/null");
  EXPECT_EQ(seen.exitCode, 0) << seen.err;
  EXPECT_EQ(trim(seen.out), "203.0.113.1") << "the outside saw the guest's own address";
  EXPECT_EQ(sh("ip route get 10.91.0.2 >/dev/null"), 0);
  EXPECT_NE(outside.sh("ip route get 10.91.0.2 >/dev/null 2>&1"), 0) << "the outside must not route to the guests";

  // In use by running guests: stop and delete are refused and change nothing.
  auto refused = rpc->call("network.stop", {{"name", "natnet"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_NE(refused.error().message.find("nat-a"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(linkExists("vmmnat0"));
  EXPECT_TRUE(processAlive(dnsmasq));

  // 3: destroying the guests removes their taps.
  call("domain.destroy", {{"name", "nat-a"}});
  call("domain.destroy", {{"name", "nat-b"}});
  EXPECT_TRUE(waitFor([&] { return !linkExists(hostIfFor("vm", macA)) && !linkExists(hostIfFor("vm", macB)); }, Millis(5000)));
  // Still defined on the network: delete is refused.
  refused = rpc->call("network.delete", {{"name", "natnet"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);

  // Stopping removes the bridge, the table and dnsmasq, and puts the forwarding switches back.
  EXPECT_EQ(readSysctl(uplinkFwd), "1");
  auto stopped = vmmd->vmctl({"net", "stop", "natnet"});
  ASSERT_EQ(stopped.exitCode, 0) << stopped.err;
  EXPECT_FALSE(linkExists("vmmnat0"));
  EXPECT_EQ(nftTables().find("vmm-net-"), std::string::npos) << nftTables();
  EXPECT_TRUE(waitFor([&] { return !processAlive(dnsmasq); }, Millis(5000))) << "dnsmasq " << dnsmasq << " still runs";
  EXPECT_TRUE(childrenOfVmmd("dnsmasq").empty());
  EXPECT_EQ(readSysctl(globalFwd), globalBefore);
  EXPECT_EQ(readSysctl(uplinkFwd), uplinkBefore);
  EXPECT_EQ(call("network.get", {{"name", "natnet"}}).value("state", ""), "inactive");

  call("domain.delete", {{"name", "nat-a"}});
  call("domain.delete", {{"name", "nat-b"}});
  domains.clear();
  auto deleted = vmmd->vmctl({"net", "delete", "natnet"});
  EXPECT_EQ(deleted.exitCode, 0) << deleted.err;
  EXPECT_EQ(call("network.list", json::object()).size(), 0u);
  EXPECT_FALSE(fs::exists(vmmd->dir() + "/state/networks/natnet"));
}

// A routed network: no masquerade - the outside host, which routes the guests' subnet to this
// host, sees the guest's own address and can open connections into the guest.
TEST_F(QemuNetworkTest, RoutedNetworkCarriesTheGuestsOwnAddressBothWays) {
  ChildNetns outside;
  ASSERT_TRUE(outside.ok());
  ASSERT_TRUE(vethInto("vmmup1", "out1", outside));
  links.push_back("vmmup1");
  ASSERT_EQ(sh("ip addr add 198.51.100.1/24 dev vmmup1"), 0);
  ASSERT_EQ(outside.sh("ip addr add 198.51.100.2/24 dev out1 && ip route add 10.94.0.0/24 via 198.51.100.1"), 0);
  ASSERT_GT(outside.spawn(peerEchoServer("198.51.100.2", 8080)), 0);

  const std::string mac = "52:54:00:94:00:0a";
  json view = createNetwork({{"name", "routed"}, {"mode", "routed"}, {"bridge", "vmmrt0"}, {"ipv4", "10.94.0.1/24"},
                             {"uplink", "vmmup1"}, {"dhcp", {{"hosts", {{{"mac", mac}, {"ip", "10.94.0.50"}, {"name", "rguest"}}}}}}});
  ASSERT_EQ(view.value("state", ""), "active") << view.dump();
  dnsmasqPids.insert(view["runtime"].value("dnsmasq_pid", 0));
  EXPECT_EQ(readSysctl("/proc/sys/net/ipv4/conf/vmmup1/forwarding"), "1");

  ASSERT_GT(boot("rt-a", {{{"network", "routed"}, {"mac", mac}}}, "tg.dhcp=1"), 0);
  ASSERT_TRUE(consoleShows("rt-a", "NET-DHCP-OK")) << consoleLog("rt-a");
  // Out: the guest's default route comes from DHCP; the outside sees 10.94.0.50, not the uplink.
  auto seen = guestShell("rt-a", "nc -w 5 198.51.100.2 8080 </dev/null");
  EXPECT_EQ(seen.exitCode, 0) << seen.err;
  EXPECT_EQ(trim(seen.out), "10.94.0.50") << "the outside must see the guest's own address (no masquerade)";
  // In: a new connection from the outside reaches a listener in the guest.
  ASSERT_EQ(guestShell("rt-a", "nc -l -p 5004 </dev/null >/tmp/in 2>&1 &").exitCode, 0);
  EXPECT_EQ(outside.sh("echo from-outside | busybox nc -w 3 10.94.0.50 5004"), 0) << "the outside cannot connect into the guest";
  EXPECT_EQ(trim(guestShell("rt-a", "sleep 1; cat /tmp/in").out), "from-outside");

  call("domain.destroy", {{"name", "rt-a"}});
  auto stopped = vmmd->vmctl({"net", "stop", "routed"});
  ASSERT_EQ(stopped.exitCode, 0) << stopped.err;
  EXPECT_FALSE(linkExists("vmmrt0"));
  EXPECT_EQ(nftTables().find("vmm-net-"), std::string::npos) << nftTables();
  EXPECT_EQ(readSysctl("/proc/sys/net/ipv4/conf/vmmup1/forwarding"), "0");
}

// A bridge-mode network attaches guests to a bridge the host already has: the guest and a host
// on that bridge reach each other both ways. vmm makes no table and no dnsmasq there, and the
// bridge outlives the network.
TEST_F(QemuNetworkTest, BridgeModeNetworkPutsTheGuestOnTheHostBridge) {
  ASSERT_EQ(sh("ip link add vmmhost0 type bridge && ip link set vmmhost0 up"), 0);
  links.push_back("vmmhost0");
  ChildNetns lanHost;
  ASSERT_TRUE(lanHost.ok());
  ASSERT_TRUE(vethInto("vmmlanp0", "lan0", lanHost));
  links.push_back("vmmlanp0");
  ASSERT_EQ(sh("ip link set vmmlanp0 master vmmhost0"), 0);
  ASSERT_EQ(lanHost.sh("ip addr add 10.96.0.2/24 dev lan0"), 0);
  ASSERT_GT(lanHost.spawn(peerEchoServer("10.96.0.2", 8080)), 0);
  std::string tablesBefore = nftTables();

  json view = createNetwork({{"name", "hostlan"}, {"mode", "bridge"}, {"bridge", "vmmhost0"}});
  ASSERT_EQ(view.value("state", ""), "active") << view.dump();
  EXPECT_EQ(view["runtime"].value("dnsmasq_pid", -1), 0) << view.dump();
  EXPECT_EQ(nftTables(), tablesBefore);

  const std::string mac = "52:54:00:96:00:0a";
  ASSERT_GT(boot("br-a", {{{"network", "hostlan"}, {"mac", mac}}}, "tg.ip=10.96.0.10/24"), 0);
  std::string tap = hostIfFor("vm", mac);
  EXPECT_TRUE(fs::exists("/sys/class/net/vmmhost0/brif/" + tap)) << tap << " is not on vmmhost0";
  EXPECT_EQ(guestPing("br-a", "10.96.0.2", 2), 0) << "the guest cannot reach the host on the bridge";
  auto seen = guestShell("br-a", "nc -w 5 10.96.0.2 8080 </dev/null");
  EXPECT_EQ(seen.exitCode, 0) << seen.err;
  EXPECT_EQ(trim(seen.out), "10.96.0.10");
  EXPECT_EQ(lanHost.sh("busybox ping -c 1 -W 2 10.96.0.10 >/dev/null"), 0) << "the host on the bridge cannot reach the guest";

  call("domain.destroy", {{"name", "br-a"}});
  EXPECT_TRUE(waitFor([&] { return !linkExists(tap); }, Millis(5000)));
  call("network.stop", {{"name", "hostlan"}});
  EXPECT_TRUE(linkExists("vmmhost0")) << "a bridge vmm did not create was deleted";
  EXPECT_TRUE(fs::exists("/sys/class/net/vmmhost0/brif/vmmlanp0"));
  EXPECT_EQ(nftTables(), tablesBefore);
}

// vmm-net-* tables that no running network owns - left by a crash, or the table of a network
// that is defined but stopped - are removed when vmmd starts; a running network's table is
// kept, and made again if it vanished while vmmd was down. Shown with traffic: an endpoint on
// the NAT bridge reaches the outside masqueraded, which fails both while a stray table with a
// drop policy sits in the forward hook and while the network's own table is missing.
TEST_F(QemuNetworkTest, StaleTablesAreRemovedAtStartAndLiveOnesKeptOrRebuilt) {
  ChildNetns outside, endpoint;
  ASSERT_TRUE(outside.ok() && endpoint.ok());
  ASSERT_TRUE(vethInto("vmmup2", "out2", outside));
  links.push_back("vmmup2");
  ASSERT_EQ(sh("ip addr add 203.0.113.1/24 dev vmmup2"), 0);
  ASSERT_EQ(outside.sh("ip addr add 203.0.113.2/24 dev out2"), 0);
  ASSERT_GT(outside.spawn(peerEchoServer("203.0.113.2", 8080)), 0);

  struct DropPlanted {
    ~DropPlanted() { (void)host({"sh", "-c", "nft delete table ip vmm-net-ghost; nft delete table ip hostfw; true"}); }
  } dropPlanted;

  json view = createNetwork({{"name", "keep"}, {"mode", "nat"}, {"bridge", "vmmkeep0"}, {"ipv4", "10.97.0.1/24"},
                             {"uplink", "vmmup2"}, {"dhcp", {{"enabled", false}}}});
  ASSERT_EQ(view.value("state", ""), "active") << view.dump();
  networks.push_back("idle");
  ASSERT_TRUE(rpc->call("network.create", {{"definition", {{"name", "idle"}, {"mode", "isolated"}, {"bridge", "vmmidle0"}, {"autostart", false}}},
                                           {"start", false}}).ok());
  ASSERT_TRUE(vethInto("vmmep0", "ep0", endpoint));
  links.push_back("vmmep0");
  ASSERT_EQ(sh("ip link set vmmep0 master vmmkeep0"), 0);
  ASSERT_EQ(endpoint.sh("ip addr add 10.97.0.7/24 dev ep0 && ip route add default via 10.97.0.1"), 0);
  // The address the outside sees for a connection from the endpoint ("" when none gets through).
  auto seenFromEndpoint = [&] {
    auto r = host(endpoint.in({"python3", "-c",
                               "import socket\n"
                               "c = socket.create_connection(('203.0.113.2', 8080), timeout=3)\n"
                               "print(c.recv(64).decode().strip())\n"}));
    return r.exitCode == 0 ? std::string(trim(r.out)) : std::string();
  };
  ASSERT_EQ(seenFromEndpoint(), "203.0.113.1");

  auto restartVmmd = [&] {
    rpc.reset();
    vmmd->kill9();
    auto started = vmmd->start();
    ASSERT_TRUE(started.ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  };
  auto hasTable = [&](const std::string& name) { return nftTables().find("table ip " + name + "\n") != std::string::npos; };

  // A crash left tables behind: a stray one whose drop policy stops all forwarding, and one of
  // the stopped network. A table that is not vmm's stays.
  vmmd->kill9();
  ASSERT_EQ(sh("nft add table ip vmm-net-ghost && "
               "nft add chain ip vmm-net-ghost forward '{ type filter hook forward priority 0; policy drop; }' && "
               "nft add table ip vmm-net-idle && nft add table ip hostfw"), 0);
  EXPECT_EQ(seenFromEndpoint(), "") << "the planted table does not stop forwarding: the check below would prove nothing";
  restartVmmd();
  if (HasFatalFailure()) return;
  EXPECT_FALSE(hasTable("vmm-net-ghost")) << nftTables();
  EXPECT_FALSE(hasTable("vmm-net-idle")) << nftTables();
  EXPECT_TRUE(hasTable("vmm-net-keep")) << nftTables();
  EXPECT_TRUE(hasTable("hostfw")) << nftTables();
  EXPECT_EQ(call("network.get", {{"name", "keep"}}).value("state", ""), "active");
  EXPECT_EQ(seenFromEndpoint(), "203.0.113.1");

  // The running network's table vanished while vmmd was down (a flushed ruleset): made again.
  vmmd->kill9();
  ASSERT_EQ(sh("nft delete table ip vmm-net-keep"), 0);
  EXPECT_NE(seenFromEndpoint(), "203.0.113.1") << "without its table the network still masquerades";
  restartVmmd();
  if (HasFatalFailure()) return;
  EXPECT_TRUE(hasTable("vmm-net-keep")) << nftTables();
  EXPECT_EQ(call("network.get", {{"name", "keep"}}).value("state", ""), "active") << "a second restart lost the running network";
  EXPECT_EQ(seenFromEndpoint(), "203.0.113.1");
}

// 2 (and 3 for port state): ACL and VLANs on real QEMU taps of an isolated network. A (VLAN 10)
// drops ICMP; B (VLAN 10, outbound limit through an ifb) talks to A over TCP; C (VLAN 20)
// reaches D (VLAN 20) but neither A nor B.
TEST_F(QemuNetworkTest, PortProfilesFilterAndSeparateGuests) {
  json view = createNetwork({{"name", "lan"}, {"mode", "isolated"}, {"bridge", "vmmlan0"}});
  ASSERT_EQ(view.value("state", ""), "active") << view.dump();

  const std::string macA = "52:54:00:92:00:0a", macB = "52:54:00:92:00:0b", macC = "52:54:00:92:00:0c",
                    macD = "52:54:00:92:00:0d";
  json portA = {{"vlan", {{"mode", "access"}, {"tag", 10}}}, {"acl", {{{"action", "deny"}, {"protocol", "icmp"}}}}};
  json portB = {{"vlan", {{"mode", "access"}, {"tag", 10}}}, {"outbound", {{"average", "10Mbit"}}}};
  json portC = {{"vlan", {{"mode", "access"}, {"tag", 20}}}};
  ASSERT_GT(boot("pa", {{{"network", "lan"}, {"mac", macA}, {"port", portA}}}, "tg.ip=10.92.0.11/24"), 0);
  ASSERT_GT(boot("pb", {{{"network", "lan"}, {"mac", macB}, {"port", portB}}}, "tg.ip=10.92.0.12/24"), 0);
  ASSERT_GT(boot("pc", {{{"network", "lan"}, {"mac", macC}, {"port", portC}}}, "tg.ip=10.92.0.13/24"), 0);
  ASSERT_GT(boot("pd", {{{"network", "lan"}, {"mac", macD}, {"port", portC}}}, "tg.ip=10.92.0.14/24"), 0);

  std::string tapA = hostIfFor("vm", macA);
  EXPECT_NE(host({"nft", "list", "tables", "bridge"}).out.find("vmm_port_" + tapA), std::string::npos)
      << host({"nft", "list", "tables", "bridge"}).out;
  EXPECT_EQ(linksOfKind("ifb").size(), 1u) << "B's outbound limit needs one ifb";

  // The busybox in the guest has the tools used below.
  auto applets = guestShell("pa", "busybox --list");
  ASSERT_EQ(applets.exitCode, 0) << applets.err;
  for (const char* tool : {"nc", "ping", "ip"}) EXPECT_NE(applets.out.find(std::string(tool) + "\n"), std::string::npos) << tool;
  ASSERT_EQ(guestShell("pa", "nc -l -p 5001 </dev/null >/tmp/got 2>&1 &").exitCode, 0);
  ASSERT_EQ(guestShell("pb", "true").exitCode, 0);
  ASSERT_EQ(guestShell("pc", "true").exitCode, 0);
  ASSERT_EQ(guestShell("pd", "true").exitCode, 0);

  // A's ACL drops ICMP both ways; TCP passes.
  EXPECT_NE(guestPing("pb", "10.92.0.11", 2), 0) << "ICMP to A passed its deny rule";
  EXPECT_NE(guestPing("pa", "10.92.0.12", 2), 0) << "ICMP from A passed its deny rule";
  auto sent = guestShell("pb", "echo hello-a | nc -w 3 10.92.0.11 5001");
  EXPECT_EQ(sent.exitCode, 0) << sent.out << sent.err;
  auto got = guestShell("pa", "sleep 1; cat /tmp/got");
  EXPECT_EQ(trim(got.out), "hello-a") << got.err;

  // VLAN 20 works inside itself: C reaches D (ICMP and TCP), so what C cannot reach below is
  // kept apart by the VLANs, not by a guest that cannot talk at all.
  EXPECT_EQ(guestPing("pc", "10.92.0.14", 2), 0) << "C cannot reach D in its own VLAN";
  ASSERT_EQ(guestShell("pd", "nc -l -p 5003 </dev/null >/tmp/got3 2>&1 &").exitCode, 0);
  EXPECT_EQ(guestShell("pc", "echo from-c | nc -w 3 10.92.0.14 5003").exitCode, 0);
  EXPECT_EQ(trim(guestShell("pd", "sleep 1; cat /tmp/got3").out), "from-c");

  // VLAN 20 reaches nobody in VLAN 10.
  ASSERT_EQ(guestShell("pa", "nc -l -p 5002 </dev/null >/tmp/got2 2>&1 &").exitCode, 0);
  EXPECT_NE(guestShell("pc", "echo from-c | nc -w 3 10.92.0.11 5002").exitCode, 0) << "C reached A across VLANs";
  EXPECT_NE(guestPing("pc", "10.92.0.12", 2), 0) << "C reached B across VLANs";
  EXPECT_EQ(trim(guestShell("pa", "cat /tmp/got2").out), "");
  // And B still reaches A on the second port: the listener was fine.
  EXPECT_EQ(guestShell("pb", "echo from-b | nc -w 3 10.92.0.11 5002").exitCode, 0);

  // 3: the guests take their port state with them.
  for (const char* name : {"pa", "pb", "pc", "pd"}) call("domain.destroy", {{"name", name}});
  EXPECT_TRUE(waitFor([&] { return !linkExists(tapA); }, Millis(5000)));
  std::string bridgeTables = host({"nft", "list", "tables", "bridge"}).out;
  EXPECT_EQ(bridgeTables.find("vmm_port_"), std::string::npos) << bridgeTables;
  EXPECT_TRUE(linksOfKind("ifb").empty()) << join(linksOfKind("ifb"), ",");
  EXPECT_TRUE(linksOfKind("tun").empty()) << join(linksOfKind("tun"), ",");
  EXPECT_TRUE(childrenOfVmmd("qemu").empty());

  for (const char* name : {"pa", "pb", "pc", "pd"}) call("domain.delete", {{"name", name}});
  domains.clear();
  call("network.stop", {{"name", "lan"}});
  EXPECT_FALSE(linkExists("vmmlan0"));
  std::string tables = nftTables();
  EXPECT_EQ(tables.find("vmm"), std::string::npos) << tables;  // neither vmm-net-lan nor vmm_vlan_vmmlan0
  call("network.delete", {{"name", "lan"}});
}

// 4: bad input through the API is refused with a clear error and leaves nothing behind.
TEST_F(QemuNetworkTest, BadInputIsRefusedAndLeavesNothing) {
  createNetwork({{"name", "base"}, {"mode", "isolated"}, {"bridge", "vmmbase0"}, {"ipv4", "10.93.0.1/24"}, {"dhcp", {{"enabled", false}}}});
  auto linksBefore = host({"ip", "-o", "link"}).out;
  std::string tablesBefore = nftTables();
  auto nothingNew = [&](const std::string& what) {
    EXPECT_EQ(host({"ip", "-o", "link"}).out, linksBefore) << what << " left a link";
    EXPECT_EQ(nftTables(), tablesBefore) << what << " left a table";
    auto list = call("network.list", json::object());
    EXPECT_EQ(list.size(), 1u) << what << ": " << list.dump();
    EXPECT_TRUE(childrenOfVmmd("").empty()) << what << " left a process";
  };

  auto r = rpc->call("network.create", {{"definition", {{"name", "overlap"}, {"mode", "nat"}, {"ipv4", "10.93.0.129/25"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  EXPECT_NE(r.error().message.find("overlaps network base"), std::string::npos) << r.error().message;
  nothingNew("an overlapping subnet");

  // A bridge name already taken by another link (not a bridge vmm made).
  ASSERT_EQ(sh("ip link add vmmtaken0 type veth peer name vmmtaken1"), 0);
  links.push_back("vmmtaken0");
  linksBefore = host({"ip", "-o", "link"}).out;
  r = rpc->call("network.create", {{"definition", {{"name", "taken"}, {"mode", "isolated"}, {"bridge", "vmmtaken0"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("vmmtaken0"), std::string::npos) << r.error().message;
  EXPECT_TRUE(linkExists("vmmtaken0"));
  nothingNew("a taken bridge name");
  // The same bridge as another vmm network.
  r = rpc->call("network.create", {{"definition", {{"name", "same"}, {"mode", "isolated"}, {"bridge", "vmmbase0"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  EXPECT_NE(r.error().message.find("network base"), std::string::npos) << r.error().message;
  nothingNew("a bridge of another network");

  r = rpc->call("network.create", {{"definition", {{"name", "badcidr"}, {"mode", "nat"}, {"ipv4", "10.0.0.1/33"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message.find("ipv4"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("10.0.0.1/33"), std::string::npos) << r.error().message;
  nothingNew("a bad CIDR");

  for (int tag : {0, 4095}) {
    json def = guest("badvlan", {{{"network", "base"}, {"port", {{"vlan", {{"mode", "access"}, {"tag", tag}}}}}}}, "");
    auto created = rpc->call("domain.create", {{"definition", def}});
    ASSERT_FALSE(created.ok()) << "VLAN " << tag << " accepted";
    EXPECT_EQ(created.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(created.error().message.find("out of range"), std::string::npos) << created.error().message;
    EXPECT_FALSE(rpc->call("domain.get", {{"name", "badvlan"}}).ok());
  }

  // A NIC on a network that does not exist: defined, but start fails and leaves no tap or QEMU.
  const std::string mac = "52:54:00:93:00:0e";
  auto created = rpc->call("domain.create", {{"definition", guest("lost", {{{"network", "nosuchnet"}, {"mac", mac}}}, "")}});
  ASSERT_TRUE(created.ok()) << created.error().message;
  domains.push_back("lost");
  auto started = tryCall("domain.start", {{"name", "lost"}});
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("nosuchnet"), std::string::npos) << started.error().message;
  EXPECT_EQ(started.error().message.find("NIC " + mac), started.error().message.rfind("NIC " + mac))
      << "the NIC is named twice: " << started.error().message;
  EXPECT_EQ(call("domain.get", {{"name", "lost"}}).value("state", ""), "shutoff");
  EXPECT_FALSE(linkExists(hostIfFor("vm", mac)));
  nothingNew("a NIC on an unknown network");
  // And on a defined network that is not running.
  call("network.stop", {{"name", "base"}});
  linksBefore = host({"ip", "-o", "link"}).out;
  tablesBefore = nftTables();
  auto created2 = rpc->call("domain.create", {{"definition", guest("idle", {{{"network", "base"}, {"mac", "52:54:00:93:00:0f"}}}, "")}});
  ASSERT_TRUE(created2.ok()) << created2.error().message;
  domains.push_back("idle");
  started = tryCall("domain.start", {{"name", "idle"}});
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("not active"), std::string::npos) << started.error().message;
  nothingNew("a NIC on a stopped network");
}

// 5: direct NICs (macvtap, VEPA) on one host interface meet only when the external switch
// reflects their frames (hairpin); destroying a guest deletes its macvtap link.
TEST_F(QemuNetworkTest, DirectNicsInVepaModeMeetThroughAHairpinSwitch) {
  ChildNetns sw;
  ASSERT_TRUE(sw.ok());
  ASSERT_TRUE(vethInto("vmmlow0", "swp0", sw));
  links.push_back("vmmlow0");
  ASSERT_EQ(sw.sh("ip link add sw0 type bridge && ip link set swp0 master sw0 && ip link set sw0 up && "
                  "bridge link set dev swp0 hairpin on"), 0);

  const std::string macD = "52:54:00:95:00:0d", macE = "52:54:00:95:00:0e";
  json nicD = {{"type", "direct"}, {"device", "vmmlow0"}, {"mode", "vepa"}, {"mac", macD}};
  json nicE = {{"type", "direct"}, {"device", "vmmlow0"}, {"mode", "vepa"}, {"mac", macE}};
  ASSERT_GT(boot("vd", json::array({nicD}), "tg.ip=192.0.2.11/24"), 0);
  ASSERT_GT(boot("ve", json::array({nicE}), "tg.ip=192.0.2.12/24"), 0);
  std::string mvD = hostIfFor("mv", macD);
  auto macvtaps = linksOfKind("macvtap");
  EXPECT_NE(std::find(macvtaps.begin(), macvtaps.end(), mvD), macvtaps.end()) << join(macvtaps, ",");

  EXPECT_EQ(guestPing("vd", "192.0.2.12", 2), 0) << "no reflective relay between the VEPA ports";
  EXPECT_EQ(guestPing("ve", "192.0.2.11", 1), 0);

  // Without hairpin the switch never sends a frame back out of the port it came in on.
  ASSERT_EQ(sw.sh("bridge link set dev swp0 hairpin off"), 0);
  EXPECT_NE(guestPing("vd", "192.0.2.12", 2), 0) << "VEPA ports met without the switch";
  ASSERT_EQ(sw.sh("bridge link set dev swp0 hairpin on"), 0);
  EXPECT_EQ(guestPing("vd", "192.0.2.12", 2), 0);

  call("domain.destroy", {{"name", "vd"}});
  EXPECT_FALSE(linkExists(mvD));
  call("domain.destroy", {{"name", "ve"}});
  EXPECT_TRUE(linksOfKind("macvtap").empty()) << join(linksOfKind("macvtap"), ",");
  EXPECT_TRUE(linkExists("vmmlow0"));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = vmm::testutil::missingRoot("network and mount namespaces, bridges and taps"); !missing.empty()) {
    vmm::testutil::requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  // Private network and mount namespaces, with a sysfs that shows this namespace's links.
  if (auto st = testutil::enterPrivateNamespaces(); !st.ok()) {
    std::cerr << st.error().message << "\n";
    return 1;
  }
  return RUN_ALL_TESTS();
}
