// Virtual networks against the real kernel, nftables and dnsmasq. The binary runs in private
// network and mount namespaces (entered in main() before any thread exists), which act as "the
// host"; guests and an "outside" host are further network namespaces (sleeping children that
// die with the test) joined by veth pairs. Traffic stays inside these namespaces, on test ranges.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include "tests/support/host_command.h"
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "model/network.h"
#include "network/link.h"
#include "network/virtual/dnsmasq.h"
#include "network/virtual/forwarding.h"
#include "network/virtual/nftables.h"
#include "network/virtual/virtual_network.h"
#include "tests/support/host_tools.h"
#include "tests/support/nfs_server.h"
#include "tests/support/require.h"

namespace vmm::net {
namespace {

using model::json;

Deadline soon(int ms = 10000) { return Deadline::after(Millis(ms)); }

CommandResult run(const std::vector<std::string>& argv, int timeoutMs = 10000, const std::string& input = "") {
  return testutil::hostCommand(argv, Millis(timeoutMs), input);
}

void must(const std::vector<std::string>& argv) {
  auto r = run(argv);
  ASSERT_TRUE(r.success()) << join(argv, " ") << ": " << r.describe() << " " << r.err;
}

model::Network parse(json j) {
  auto n = model::parseNetwork(j);
  EXPECT_TRUE(n.ok()) << (n.ok() ? "" : n.error().message);
  return n.ok() ? *n : model::Network{};
}

std::string sysctl(const std::string& path) { return readSysctl(path).valueOr("?"); }

// Links, vmm tables, tables at all, and child processes of this test: what must be unchanged
// after a failed or stopped network.
struct HostSnapshot {
  std::set<std::string> links;
  std::string tables;
  std::set<std::string> children;
  bool operator==(const HostSnapshot& o) const { return links == o.links && tables == o.tables && children == o.children; }
};

std::set<std::string> childPids() {
  std::set<std::string> out;
  auto tasks = fs::listDir("/proc/self/task");
  if (!tasks.ok()) return out;
  for (const auto& t : *tasks) {
    auto text = fs::readFile("/proc/self/task/" + t + "/children", 1 << 16);
    if (text.ok())
      for (const auto& p : split(*text, ' ', true))
        if (processRunning(static_cast<pid_t>(parseInt(p).value_or(0)))) out.insert(p);
  }
  return out;
}

HostSnapshot snapshot() {
  HostSnapshot s;
  for (const auto& l : fs::listDir("/sys/class/net").valueOr({})) s.links.insert(l);
  s.tables = run({"nft", "list", "tables"}).out;
  s.children = childPids();
  return s;
}

std::string describe(const HostSnapshot& s) {
  return "links=" + join(std::vector<std::string>(s.links.begin(), s.links.end()), ",") + " tables=[" + s.tables +
         "] children=" + join(std::vector<std::string>(s.children.begin(), s.children.end()), ",");
}

// A network namespace held by a sleeping child (killed with the test at the latest).
class Netns {
 public:
  Netns() {
    auto pid = spawnProcess({"/usr/bin/setpriv", "--pdeathsig", "KILL", "unshare", "--net", "sleep", "3600"});
    if (!pid.ok()) return;
    pid_ = *pid;
    struct stat self{}, child{};
    ::stat("/proc/self/ns/net", &self);
    for (int i = 0; i < 500; ++i) {
      if (::stat(nsPath().c_str(), &child) == 0 && child.st_ino != self.st_ino) {
        ready_ = true;
        break;
      }
      std::this_thread::sleep_for(Millis(2));
    }
    if (ready_) exec({"ip", "link", "set", "lo", "up"});
  }
  ~Netns() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)ChildReaper::wait(pid_, soon(5000));
    }
  }
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  bool ready() const { return ready_; }
  pid_t pid() const { return pid_; }
  std::string nsPath() const { return "/proc/" + std::to_string(pid_) + "/ns/net"; }
  std::vector<std::string> inside(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {"nsenter", "--net=" + nsPath()});
    return argv;
  }
  CommandResult exec(const std::vector<std::string>& argv, int timeoutMs = 10000) const { return run(inside(argv), timeoutMs); }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

// A veth pair: `host` stays here, the peer goes into `ns` as eth0 with `mac`.
class Cable {
 public:
  Cable(const std::string& host, const Netns& ns, const std::string& mac) : host_(host) {
    std::string peer = host + "p";
    must({"ip", "link", "add", host, "type", "veth", "peer", "name", peer});
    must({"ip", "link", "set", peer, "address", mac, "netns", std::to_string(ns.pid())});
    auto r = ns.exec({"ip", "link", "set", peer, "name", "eth0"});
    EXPECT_TRUE(r.success()) << r.err;
    r = ns.exec({"ip", "link", "set", "eth0", "up"});
    EXPECT_TRUE(r.success()) << r.err;
    must({"ip", "link", "set", host, "up"});
  }
  ~Cable() {
    if (linkExists(host_)) (void)run({"ip", "link", "del", host_});
  }
  Cable(const Cable&) = delete;
  Cable& operator=(const Cable&) = delete;
  const std::string& host() const { return host_; }

 private:
  std::string host_;
};

// A guest: its own namespace plugged into a bridge.
struct Guest {
  Guest(const std::string& port, const std::string& bridge, const std::string& macAddress)
      : mac(macAddress), cable(port, ns, macAddress) {
    auto st = addBridgePort(bridge, port);
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().message);
  }
  std::string mac;
  Netns ns;
  Cable cable;

  // busybox udhcpc with a script that applies the lease; returns the address on eth0.
  std::string dhcp(const std::string& script) {
    auto r = ns.exec({"busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", script}, 20000);
    if (!r.success()) return "";
    auto a = ns.exec({"ip", "-j", "-4", "addr", "show", "dev", "eth0"});
    auto j = json::parse(a.out, nullptr, false);
    if (j.is_discarded() || j.empty() || j[0]["addr_info"].empty()) return "";
    return j[0]["addr_info"][0].value("local", "");
  }
  bool ping(const std::string& ip) { return ns.exec({"busybox", "ping", "-c", "1", "-W", "2", ip}, 10000).success(); }
};

// Stops the network at scope exit unless the test already did.
class Running {
 public:
  Running(model::Network n, NetworkRuntime rt) : net_(std::move(n)), rt_(std::move(rt)) {}
  ~Running() { (void)stop(); }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;
  Status stop() {
    if (stopped_) return {};
    stopped_ = true;
    return stopNetwork(net_, rt_, soon());
  }
  const NetworkRuntime& runtime() const { return rt_; }

 private:
  model::Network net_;
  NetworkRuntime rt_;
  bool stopped_ = false;
};

class VirtualNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vmm-vnet-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);
    script_ = dir_ + "/udhcpc.script";
    std::ofstream(script_) << "#!/bin/sh\n"
                              "case \"$1\" in bound|renew)\n"
                              "  ip addr flush dev \"$interface\"\n"
                              "  ip addr add \"$ip/$mask\" dev \"$interface\"\n"
                              "  if [ -n \"$router\" ]; then ip route replace default via \"${router%% *}\" dev \"$interface\"; fi\n"
                              ";; esac\n";
    ::chmod(script_.c_str(), 0755);
    for (const char* p : {kGlobalForwarding, "/proc/sys/net/ipv4/conf/default/forwarding"}) (void)writeSysctl(p, "0");
    before_ = snapshot();
  }
  void TearDown() override {
    (void)run({"rm", "-rf", dir_});
    for (const char* p : {kGlobalForwarding, "/proc/sys/net/ipv4/conf/default/forwarding"}) (void)writeSysctl(p, "0");
  }
  std::string stateDir(const std::string& name) { return dir_ + "/" + name; }

  // An "outside" host behind the uplink up0: 203.0.113.1 here, 203.0.113.2 there.
  void makeOutside() {
    outside_.emplace();
    ASSERT_TRUE(outside_->ready());
    uplink_.emplace("up0", *outside_, "02:00:00:00:99:02");
    must({"ip", "addr", "add", "203.0.113.1/24", "dev", "up0"});
    auto r = outside_->exec({"ip", "addr", "add", "203.0.113.2/24", "dev", "eth0"});
    ASSERT_TRUE(r.success()) << r.err;
  }

  // The source address the outside host (203.0.113.2) sees on a TCP connection from `g` ("" if
  // none arrives).
  std::string sourceSeenOutside(const Guest& g) {
    std::string peerFile = dir_ + "/peer";
    fs::UniqueFd out(::open(peerFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    SpawnOptions so;
    so.stdoutFd = out.get();
    auto listener = spawnProcess(outside_->inside({"timeout", "15", "python3", "-c",
                                                   "import socket\n"
                                                   "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                                   "s.bind(('203.0.113.2', 8080)); s.listen(1)\n"
                                                   "c, a = s.accept(); print(a[0], flush=True)\n"}),
                                 so);
    if (!listener.ok()) {
      ADD_FAILURE() << "cannot start the outside's listener: " << listener.error().message;
      return "";
    }
    auto client = g.ns.exec({"python3", "-c",
                             "import socket, time\n"
                             "for i in range(100):\n"
                             "  try:\n"
                             "    socket.create_connection(('203.0.113.2', 8080), timeout=2).close(); break\n"
                             "  except OSError: time.sleep(0.05)\n"
                             "else: raise SystemExit(1)\n"},
                            20000);
    if (!client.success()) ADD_FAILURE() << "no connection to the outside: " << client.err;
    auto status = ChildReaper::wait(*listener, soon(15000));
    if (!status.ok()) {
      ::kill(*listener, SIGKILL);
      (void)ChildReaper::wait(*listener, soon(5000));
    }
    return std::string(trim(fs::readFile(peerFile).valueOr("")));
  }

  std::string dir_, script_;
  HostSnapshot before_;
  std::optional<Netns> outside_;
  std::optional<Cable> uplink_;
};

// ---- pure pieces ----------------------------------------------------------------------------

TEST(DnsmasqArgv, HasTheMeasuredFlags) {
  DnsmasqConfig c;
  c.interface = "br9";
  c.listenAddress = "10.9.0.1";
  c.rangeStart = "10.9.0.128";
  c.rangeEnd = "10.9.0.254";
  c.netmask = "255.255.255.0";
  c.leaseSeconds = 600;
  c.domain = "lab";
  c.pidFile = "/s/p";
  c.leaseFile = "/s/l";
  c.hostsFile = "/s/h";
  auto argv = dnsmasqArgv(c);
  std::set<std::string> got(argv.begin(), argv.end());
  for (const char* want : {"--keep-in-foreground", "--conf-file=/dev/null", "--bind-interfaces", "--interface=br9",
                           "--except-interface=lo", "--listen-address=10.9.0.1", "--pid-file=/s/p", "--dhcp-leasefile=/s/l",
                           "--dhcp-hostsfile=/s/h", "--dhcp-range=10.9.0.128,10.9.0.254,255.255.255.0,600", "--domain=lab",
                           "--local=/lab/", "--no-resolv", "--no-hosts", "--no-ping"})
    EXPECT_TRUE(got.count(want)) << want;
  EXPECT_FALSE(got.count("--dhcp-option=3"));
  c.advertiseRouter = false;
  argv = dnsmasqArgv(c);
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--dhcp-option=3"), argv.end());
  EXPECT_EQ(dhcpHostsFileText({{"52:54:00:00:00:01", "10.9.0.5", "a"}, {"52:54:00:00:00:02", "10.9.0.6", ""}}),
            "52:54:00:00:00:01,10.9.0.5,a\n52:54:00:00:00:02,10.9.0.6\n");
}

TEST(Leases, ParsesDnsmasqLines) {
  auto leases = parseLeases(
      "1700000000 52:54:00:AA:00:01 10.77.0.200 guest1 01:52:54:00:aa:00:01\n"
      "1700000001 52:54:00:aa:00:02 10.77.0.50 * *\n"
      "duid 00:01:00:01:2c:aa\n"
      "garbage\n"
      "0 52:54:00:aa:00:03 10.77.0.51 fixed\n");
  ASSERT_EQ(leases.size(), 3u);
  EXPECT_EQ(leases[0].expiry, 1700000000);
  EXPECT_EQ(leases[0].mac, "52:54:00:aa:00:01");
  EXPECT_EQ(leases[0].ip, "10.77.0.200");
  EXPECT_EQ(leases[0].hostname, "guest1");
  EXPECT_EQ(leases[0].clientId, "01:52:54:00:aa:00:01");
  EXPECT_EQ(leases[1].hostname, "");
  EXPECT_EQ(leases[1].clientId, "");
  EXPECT_EQ(leases[2].expiry, 0);
}

TEST(NftBatch, NatHasMasqueradeAndOnlyBridgeDrops) {
  nft::NetworkRules r{"vmm-net-n1", model::NetworkMode::nat, "br-n1", "10.77.0.0/24", "up0"};
  std::string text = nft::networkTableBatch(r).dump();
  EXPECT_NE(text.find("\"create\":{\"table\""), std::string::npos);
  EXPECT_NE(text.find("masquerade"), std::string::npos);
  EXPECT_NE(text.find("\"policy\":\"accept\""), std::string::npos);
  EXPECT_EQ(text.find("\"policy\":\"drop\""), std::string::npos);
  r.mode = model::NetworkMode::routed;
  EXPECT_EQ(nft::networkTableBatch(r).dump().find("masquerade"), std::string::npos);
  r.mode = model::NetworkMode::isolated;
  text = nft::networkTableBatch(r).dump();
  EXPECT_EQ(text.find("masquerade"), std::string::npos);
  EXPECT_NE(text.find("drop"), std::string::npos);
}

TEST(Runtime, JsonRoundTripAndBridgeName) {
  NetworkRuntime rt;
  rt.network = "n1";
  rt.mode = model::NetworkMode::routed;
  rt.bridge = "br-n1";
  rt.createdBridge = true;
  rt.dnsmasqPid = 1234;
  rt.dnsmasqStartTime = 99;
  rt.stateDir = "/var/lib/vmm/networks/n1";
  rt.nftTable = "vmm-net-n1";
  rt.sysctls = {{interfaceForwardingPath("up0"), "0", "1"}};
  auto back = NetworkRuntime::fromJson(json::parse(rt.toJson().dump()));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->toJson(), rt.toJson());
  EXPECT_TRUE(back->forwardingChanged());
  json bad = rt.toJson();
  bad["nft_table"] = "filter";
  EXPECT_FALSE(NetworkRuntime::fromJson(bad).ok());

  model::Network n;
  n.name = "a-rather-long-network-name";
  std::string b = effectiveBridgeName(n);
  EXPECT_LE(b.size(), 15u);
  EXPECT_EQ(b, effectiveBridgeName(n));
  n.bridge = "mybr";
  EXPECT_EQ(effectiveBridgeName(n), "mybr");
}

// ---- against the kernel --------------------------------------------------------------------

// 1. NAT with DHCP: a guest gets a lease (visible in networkLeases with its MAC) and a static
// host gets its fixed address. Also measures start and stop.
TEST_F(VirtualNetworkTest, NatDhcpLeasesAndStaticHost) {
  auto n = parse({{"name", "nat1"},
                  {"mode", "nat"},
                  {"bridge", "vmmnat1"},
                  {"ipv4", "10.77.0.1/24"},
                  {"domain", "lab"},
                  {"dhcp", {{"hosts", {{{"mac", "52:54:00:aa:00:02"}, {"ip", "10.77.0.50"}, {"name", "fixed"}}}}}}});
  auto t0 = SteadyClock::now();
  auto rt = startNetwork(n, stateDir("nat1"), soon());
  auto startMs = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  Running net(n, *rt);
  std::printf("[ timing ] NAT+DHCP network start: %lld ms\n", static_cast<long long>(startMs));
  EXPECT_TRUE(isBridge("vmmnat1"));
  EXPECT_GT(rt->dnsmasqPid, 0);
  EXPECT_TRUE(processRunning(rt->dnsmasqPid));
  EXPECT_EQ(fs::readFile("/sys/class/net/vmmnat1/bridge/stp_state").valueOr(""), "0\n");
  EXPECT_EQ(fs::readFile("/sys/class/net/vmmnat1/bridge/forward_delay").valueOr(""), "0\n");

  Guest g1("vg1", "vmmnat1", "52:54:00:aa:00:01");
  Guest g2("vg2", "vmmnat1", "52:54:00:aa:00:02");
  ASSERT_TRUE(g1.ns.ready() && g2.ns.ready());
  auto d0 = SteadyClock::now();
  std::string ip1 = g1.dhcp(script_);
  auto dhcpMs = std::chrono::duration_cast<Millis>(SteadyClock::now() - d0).count();
  std::printf("[ timing ] first DHCP lease: %lld ms\n", static_cast<long long>(dhcpMs));
  std::string ip2 = g2.dhcp(script_);
  EXPECT_TRUE(startsWith(ip1, "10.77.0.")) << ip1;
  EXPECT_EQ(ip2, "10.77.0.50");
  EXPECT_TRUE(g1.ping("10.77.0.1"));
  EXPECT_TRUE(g1.ping(ip2));  // guest to guest across the bridge (br_netfilter on)

  auto leases = networkLeases(*rt);
  ASSERT_TRUE(leases.ok()) << leases.error().message;
  std::map<std::string, std::string> byMac;
  for (const auto& l : *leases) byMac[l.mac] = l.ip;
  EXPECT_EQ(byMac["52:54:00:aa:00:01"], ip1);
  EXPECT_EQ(byMac["52:54:00:aa:00:02"], "10.77.0.50");

  // A static host added at run time (hosts file + SIGHUP).
  Guest g3("vg3", "vmmnat1", "52:54:00:aa:00:03");
  ASSERT_TRUE(updateDhcpHosts(*rt, {{"52:54:00:aa:00:02", "10.77.0.50", "fixed"}, {"52:54:00:aa:00:03", "10.77.0.60", "late"}}).ok());
  std::this_thread::sleep_for(Millis(100));
  EXPECT_EQ(g3.dhcp(script_), "10.77.0.60");

  auto s0 = SteadyClock::now();
  ASSERT_TRUE(net.stop().ok());
  auto stopMs = std::chrono::duration_cast<Millis>(SteadyClock::now() - s0).count();
  std::printf("[ timing ] NAT+DHCP network stop: %lld ms\n", static_cast<long long>(stopMs));
}

// 2. NAT to an outside host: the outside sees the host's uplink address as the source.
TEST_F(VirtualNetworkTest, NatMasqueradesToTheUplink) {
  makeOutside();
  auto n = parse({{"name", "nat2"}, {"mode", "nat"}, {"bridge", "vmmnat2"}, {"ipv4", "10.78.0.1/24"}, {"uplink", "up0"}});
  auto rt = startNetwork(n, stateDir("nat2"), soon());
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  Running net(n, *rt);
  EXPECT_EQ(sysctl(interfaceForwardingPath("up0")), "1");
  EXPECT_EQ(sysctl(interfaceForwardingPath("vmmnat2")), "1");
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");  // only the bridge and its uplink forward

  Guest g("vg1", "vmmnat2", "52:54:00:bb:00:01");
  ASSERT_TRUE(g.ns.ready());
  std::string guestIp = g.dhcp(script_);
  ASSERT_TRUE(startsWith(guestIp, "10.78.0.")) << guestIp;
  EXPECT_TRUE(g.ping("203.0.113.2"));

  EXPECT_EQ(sourceSeenOutside(g), "203.0.113.1");

  // The outside cannot open connections into the NAT network.
  EXPECT_TRUE(outside_->exec({"ip", "route", "add", "10.78.0.0/24", "via", "203.0.113.1"}).success());
  EXPECT_FALSE(outside_->exec({"busybox", "ping", "-c", "1", "-W", "1", guestIp}).success());
  ASSERT_TRUE(net.stop().ok());
  EXPECT_EQ(sysctl(interfaceForwardingPath("up0")), "0");
}

// 2b. Routed: no masquerade. The outside host, which routes the network's subnet to this host,
// sees the guest's own address and reaches the guest directly.
TEST_F(VirtualNetworkTest, RoutedForwardsWithTheGuestsOwnAddress) {
  makeOutside();
  ASSERT_TRUE(outside_->exec({"ip", "route", "add", "10.87.0.0/24", "via", "203.0.113.1"}).success());
  auto n = parse({{"name", "rt1"}, {"mode", "routed"}, {"bridge", "vmmrt1"}, {"ipv4", "10.87.0.1/24"}, {"uplink", "up0"}});
  auto rt = startNetwork(n, stateDir("rt1"), soon());
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  Running net(n, *rt);
  Guest g("vg1", "vmmrt1", "52:54:00:dd:00:01");
  ASSERT_TRUE(g.ns.ready());
  std::string guestIp = g.dhcp(script_);
  ASSERT_TRUE(startsWith(guestIp, "10.87.0.")) << guestIp;
  EXPECT_TRUE(g.ping("203.0.113.2"));
  EXPECT_EQ(sourceSeenOutside(g), guestIp) << "a routed network must not masquerade";
  EXPECT_TRUE(outside_->exec({"busybox", "ping", "-c", "1", "-W", "2", guestIp}).success()) << "the outside cannot reach the guest";
  ASSERT_TRUE(net.stop().ok());
  EXPECT_EQ(sysctl(interfaceForwardingPath("up0")), "0");
}

// 3. Isolated: the guest reaches the gateway but not the outside, even on a host that forwards.
TEST_F(VirtualNetworkTest, IsolatedReachesOnlyTheGateway) {
  makeOutside();
  ASSERT_TRUE(writeSysctl(kGlobalForwarding, "1").ok());  // a host that routes anyway
  EXPECT_TRUE(outside_->exec({"ip", "route", "add", "10.79.0.0/24", "via", "203.0.113.1"}).success());
  auto n = parse({{"name", "iso"}, {"mode", "isolated"}, {"bridge", "vmmiso"}, {"ipv4", "10.79.0.1/24"}});
  auto rt = startNetwork(n, stateDir("iso"), soon());
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  Running net(n, *rt);
  EXPECT_EQ(sysctl(interfaceForwardingPath("vmmiso")), "0");

  // The br_netfilter gotcha holds here: bridged frames go through the ip forward hook.
  EXPECT_EQ(sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables"), "1");
  Guest g("vg1", "vmmiso", "52:54:00:cc:00:01");
  Guest peer("vg2", "vmmiso", "52:54:00:cc:00:02");
  ASSERT_TRUE(g.ns.ready() && peer.ns.ready());
  ASSERT_TRUE(startsWith(g.dhcp(script_), "10.79.0."));
  std::string peerIp = peer.dhcp(script_);
  ASSERT_TRUE(startsWith(peerIp, "10.79.0.")) << peerIp;
  EXPECT_TRUE(g.ping(peerIp));  // guests of one network reach each other despite the drops
  // No router offered: add one by hand, as a guest trying to get out would.
  EXPECT_TRUE(g.ns.exec({"ip", "route", "add", "default", "via", "10.79.0.1"}).success());
  EXPECT_TRUE(g.ping("10.79.0.1"));
  EXPECT_FALSE(g.ping("203.0.113.2"));
  // Even with the bridge's forwarding switched back on, the table drops it.
  ASSERT_TRUE(writeSysctl(interfaceForwardingPath("vmmiso"), "1").ok());
  EXPECT_FALSE(g.ping("203.0.113.2"));
  // Control: without vmm's table the same packet gets through, so the table is what stops it.
  ASSERT_TRUE(nft::deleteOwnedTable(rt->nftTable, soon()).ok());
  EXPECT_TRUE(g.ping("203.0.113.2"));
  ASSERT_TRUE(net.stop().ok());
}

// 4. Stop removes every link, the table and dnsmasq, and restores forwarding; it is idempotent,
// works from the persisted runtime and tolerates pieces already gone.
TEST_F(VirtualNetworkTest, StopRemovesEverythingAndRestoresForwarding) {
  // No uplink: the global switch.
  auto n = parse({{"name", "nat4"}, {"mode", "nat"}, {"bridge", "vmmnat4"}, {"ipv4", "10.80.0.1/24"}});
  auto rt = startNetwork(n, stateDir("nat4"), soon());
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  EXPECT_EQ(sysctl(kGlobalForwarding), "1");
  EXPECT_TRUE(rt->forwardingChanged());
  auto tables = nft::listOwnedTables(soon());
  ASSERT_TRUE(tables.ok());
  EXPECT_EQ(*tables, std::vector<std::string>{"vmm-net-nat4"});
  pid_t dnsmasq = rt->dnsmasqPid;
  ASSERT_TRUE(processRunning(dnsmasq));

  auto persisted = NetworkRuntime::fromJson(json::parse(rt->toJson().dump()));
  ASSERT_TRUE(persisted.ok());
  ASSERT_TRUE(stopNetwork(n, *persisted, soon()).ok());
  EXPECT_FALSE(linkExists("vmmnat4"));
  EXPECT_FALSE(processAlive(dnsmasq));
  EXPECT_EQ(run({"nft", "list", "tables"}).out, "");
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");
  EXPECT_EQ(sysctl("/proc/sys/net/ipv4/conf/default/forwarding"), "0");
  EXPECT_TRUE(snapshot() == before_) << describe(snapshot()) << " vs " << describe(before_);
  EXPECT_TRUE(stopNetwork(n, *persisted, soon()).ok());  // again: nothing to do

  // Pieces gone behind vmm's back (a crash): stop still cleans up the rest.
  rt = startNetwork(n, stateDir("nat4"), soon());
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  ::kill(rt->dnsmasqPid, SIGKILL);
  (void)ChildReaper::wait(rt->dnsmasqPid, soon());
  must({"ip", "link", "del", "vmmnat4"});
  EXPECT_TRUE(stopNetwork(n, *rt, soon()).ok());
  EXPECT_EQ(run({"nft", "list", "tables"}).out, "");
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");
  EXPECT_TRUE(snapshot() == before_) << describe(snapshot());
}

// Two networks sharing forwarding switches: stopping one leaves the other working; the last
// one restores the host.
TEST_F(VirtualNetworkTest, SharedForwardingRestoredByTheLastNetwork) {
  Netns far;
  ASSERT_TRUE(far.ready());
  Cable up("up0", far, "02:00:00:00:99:05");
  auto a = parse({{"name", "shA"}, {"mode", "nat"}, {"bridge", "vmmshA"}, {"ipv4", "10.81.0.1/24"}, {"dhcp", {{"enabled", false}}}});
  auto b = parse({{"name", "shB"}, {"mode", "routed"}, {"bridge", "vmmshB"}, {"ipv4", "10.82.0.1/24"}, {"uplink", "up0"},
                  {"dhcp", {{"enabled", false}}}});
  auto ra = startNetwork(a, stateDir("shA"), soon());
  ASSERT_TRUE(ra.ok()) << ra.error().message;
  Running runA(a, *ra);
  NetworkOptions withA;
  withA.running = {*ra};
  auto rb = startNetwork(b, stateDir("shB"), soon(), withA);
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  Running runB(b, *rb);
  EXPECT_EQ(rb->dnsmasqPid, 0);
  NetworkOptions withB;
  withB.running = {*rb};
  ASSERT_TRUE(stopNetwork(a, *ra, soon(), withB).ok());
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");
  EXPECT_EQ(sysctl(interfaceForwardingPath("up0")), "1");
  EXPECT_EQ(sysctl(interfaceForwardingPath("vmmshB")), "1");
  (void)runA.stop();
  ASSERT_TRUE(runB.stop().ok());
  EXPECT_EQ(sysctl(interfaceForwardingPath("up0")), "0");
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");
}

// 5. Bad input: clear errors and nothing left behind.
TEST_F(VirtualNetworkTest, BadInputChangesNothing) {
  Netns other;
  ASSERT_TRUE(other.ready());
  Cable taken("vmmtaken", other, "02:00:00:00:99:03");
  HostSnapshot start = snapshot();

  auto n = parse({{"name", "bad1"}, {"mode", "nat"}, {"bridge", "vmmtaken"}, {"ipv4", "10.83.0.1/24"}});
  auto rt = startNetwork(n, stateDir("bad1"), soon());
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.error().code, ErrorCode::conflict);
  EXPECT_NE(rt.error().message.find("vmmtaken is already used"), std::string::npos) << rt.error().message;

  n = parse({{"name", "bad2"}, {"mode", "bridge"}, {"bridge", "nosuchbr"}});
  rt = startNetwork(n, stateDir("bad2"), soon());
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.error().code, ErrorCode::not_found);
  EXPECT_NE(rt.error().message.find("nosuchbr does not exist"), std::string::npos) << rt.error().message;

  n = parse({{"name", "bad3"}, {"mode", "bridge"}, {"bridge", "vmmtaken"}});
  rt = startNetwork(n, stateDir("bad3"), soon());
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.error().message.find("not a bridge"), std::string::npos) << rt.error().message;

  must({"ip", "addr", "add", "10.84.3.7/16", "dev", "vmmtaken"});
  start = snapshot();
  n = parse({{"name", "bad4"}, {"mode", "nat"}, {"bridge", "vmmbad4"}, {"ipv4", "10.84.0.1/24"}});
  rt = startNetwork(n, stateDir("bad4"), soon());
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.error().code, ErrorCode::conflict);
  EXPECT_NE(rt.error().message.find("overlaps address 10.84.3.7/16 of host interface vmmtaken"), std::string::npos)
      << rt.error().message;

  n = parse({{"name", "bad5"}, {"mode", "nat"}, {"bridge", "vmmbad5"}, {"ipv4", "10.85.0.1/24"}, {"uplink", "nosuchup"}});
  rt = startNetwork(n, stateDir("bad5"), soon());
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.error().message.find("uplink interface nosuchup does not exist"), std::string::npos) << rt.error().message;

  EXPECT_TRUE(snapshot() == start) << describe(snapshot()) << " vs " << describe(start);
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");

  // An existing bridge in bridge mode: attached, nothing created, nothing removed on stop.
  must({"ip", "link", "add", "hostbr0", "type", "bridge"});
  n = parse({{"name", "ext"}, {"mode", "bridge"}, {"bridge", "hostbr0"}});
  rt = startNetwork(n, stateDir("ext"), soon());
  ASSERT_TRUE(rt.ok()) << rt.error().message;
  EXPECT_FALSE(rt->createdBridge);
  EXPECT_TRUE(rt->nftTable.empty());
  EXPECT_TRUE(stopNetwork(n, *rt, soon()).ok());
  EXPECT_TRUE(isBridge("hostbr0"));
  must({"ip", "link", "del", "hostbr0"});
}

// 6. A failure midway (dnsmasq missing, or its port taken) undoes the bridge, the table and the
// forwarding change.
TEST_F(VirtualNetworkTest, FailureMidwayUndoesEverything) {
  // A table vmm does not own must survive everything.
  must({"nft", "add", "table", "ip", "hostfw"});
  HostSnapshot start = snapshot();
  auto n = parse({{"name", "mid"}, {"mode", "nat"}, {"bridge", "vmmmid"}, {"ipv4", "10.86.0.1/24"}});
  NetworkOptions broken;
  broken.dnsmasqBinary = dir_ + "/no-such-dnsmasq";
  auto rt = startNetwork(n, stateDir("mid"), soon(), broken);
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.error().message.find("no-such-dnsmasq"), std::string::npos) << rt.error().message;
  EXPECT_TRUE(snapshot() == start) << describe(snapshot()) << " vs " << describe(start);
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");

  // DNS port taken on every address: dnsmasq exits at start-up with its reason.
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(53);
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  rt = startNetwork(n, stateDir("mid"), soon());
  ::close(sock);
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.error().message.find("dnsmasq"), std::string::npos) << rt.error().message;
  std::printf("[ error  ] %s\n", rt.error().message.c_str());
  EXPECT_TRUE(snapshot() == start) << describe(snapshot()) << " vs " << describe(start);
  EXPECT_EQ(sysctl(kGlobalForwarding), "0");

  auto owned = nft::listOwnedTables(soon());
  ASSERT_TRUE(owned.ok());
  EXPECT_TRUE(owned->empty());
  EXPECT_FALSE(nft::deleteOwnedTable("hostfw", soon()).ok());
  must({"nft", "delete", "table", "ip", "hostfw"});
}

}  // namespace
}  // namespace vmm::net

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = vmm::testutil::missingRoot("network namespaces"); !missing.empty()) {
    vmm::testutil::requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  auto st = vmm::testutil::enterPrivateNamespaces();
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
