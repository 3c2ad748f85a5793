// Direct attachment through macvtap against the real kernel.
//
// main() moves the binary into a private network + mount namespace before anything else, so
// every link made here vanishes with the process. The "external switch" of the VEPA tests is a
// bridge in one more network namespace, held by a child that dies with the test. Guests are
// userspace endpoints on the macvtap queue fds (vnet header included, as QEMU uses them) that
// answer ARP and ICMP echo for their address.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "network/direct/macvtap.h"
#include "tests/support/host_tools.h"
#include "tests/support/nfs_server.h"
#include "tests/support/require.h"

using namespace vmm;
using net::createMacvtap;
using net::deleteMacvtap;
using net::MacvtapOptions;
using net::MacvtapPort;
using model::DirectMode;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------- commands and host state

Status run(const std::vector<std::string>& argv) {
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(10000));
  auto r = runChecked(argv, opts);
  if (!r.ok()) return r.error();
  return {};
}

std::string output(const std::vector<std::string>& argv) {
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(10000));
  auto r = runChecked(argv, opts);
  return r.ok() ? r->out : "";
}

std::vector<std::string> inNetns(pid_t holder, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"nsenter", "--net=/proc/" + std::to_string(holder) + "/ns/net"});
  return argv;
}

std::set<std::string> linkNames() {
  auto names = fs::listDir("/sys/class/net").valueOr({});
  return {names.begin(), names.end()};
}

std::set<std::string> tapNodes() {
  std::set<std::string> out;
  for (const auto& n : fs::listDir("/dev").valueOr({}))
    if (startsWith(n, "tap") || startsWith(n, ".vmm-")) out.insert(n);
  return out;
}

std::string sysAttr(const std::string& link, const std::string& attr) {
  return std::string(trim(fs::readFile("/sys/class/net/" + link + "/" + attr, 4096).valueOr("")));
}

// `ip -d link` of one link as JSON (null when it does not exist).
json linkDetails(const std::string& name) {
  auto text = output({"ip", "-j", "-d", "link", "show", "dev", name});
  auto j = json::parse(text, nullptr, false);
  return j.is_array() && !j.empty() ? j[0] : json();
}

double msSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

// Deletes a macvtap when the test leaves the scope, whatever happened.
struct MacvtapGuard {
  std::string name;
  explicit MacvtapGuard(std::string n) : name(std::move(n)) {}
  ~MacvtapGuard() { (void)deleteMacvtap(name); }
};

// A network namespace held by a blocked child; SIGKILL (and reaped) on destruction, and killed
// by the kernel if the test dies first.
class NetnsHolder {
 public:
  NetnsHolder() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return;
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      char ok = ::unshare(CLONE_NEWNET) == 0 ? 1 : 0;
      if (::write(p[1], &ok, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(p[1]);
    char ok = 0;
    if (pid > 0 && ::read(p[0], &ok, 1) == 1 && ok) pid_ = pid;
    else if (pid > 0) reap(pid);
    ::close(p[0]);
  }
  ~NetnsHolder() {
    if (pid_ > 0) reap(pid_);
  }
  NetnsHolder(const NetnsHolder&) = delete;
  NetnsHolder& operator=(const NetnsHolder&) = delete;
  pid_t pid() const { return pid_; }

 private:
  static void reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  pid_t pid_ = -1;
};

// ---------------------------------------------------------------- ethernet frames

using Mac = std::array<uint8_t, 6>;
constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint16_t kTestEtherType = 0x88b5;  // IEEE "local experimental"

Mac parseMac(const std::string& s) {
  unsigned v[6] = {};
  std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
  Mac m{};
  for (size_t i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  return m;
}

uint32_t ipv4(const char* s) {
  in_addr a{};
  ::inet_pton(AF_INET, s, &a);
  return ntohl(a.s_addr);
}

void put16(std::vector<uint8_t>& f, size_t at, uint16_t v) {
  f[at] = static_cast<uint8_t>(v >> 8);
  f[at + 1] = static_cast<uint8_t>(v);
}
void put32(std::vector<uint8_t>& f, size_t at, uint32_t v) {
  put16(f, at, static_cast<uint16_t>(v >> 16));
  put16(f, at + 2, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t get32(const uint8_t* p) { return (uint32_t(get16(p)) << 16) | get16(p + 2); }
Mac getMac(const uint8_t* p) {
  Mac m{};
  std::memcpy(m.data(), p, 6);
  return m;
}

uint16_t checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += get16(p + i);
  if (n & 1) sum += uint32_t(p[n - 1]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::vector<uint8_t> ethernet(const Mac& dst, const Mac& src, uint16_t type, size_t payload) {
  std::vector<uint8_t> f(14 + payload, 0);
  std::memcpy(f.data(), dst.data(), 6);
  std::memcpy(f.data() + 6, src.data(), 6);
  put16(f, 12, type);
  return f;
}

std::vector<uint8_t> arp(uint16_t op, const Mac& dst, const Mac& sha, uint32_t spa, const Mac& tha, uint32_t tpa) {
  auto f = ethernet(dst, sha, ETHERTYPE_ARP, 28);
  put16(f, 14, 1);
  put16(f, 16, ETHERTYPE_IP);
  f[18] = 6;
  f[19] = 4;
  put16(f, 20, op);
  std::memcpy(f.data() + 22, sha.data(), 6);
  put32(f, 28, spa);
  std::memcpy(f.data() + 32, tha.data(), 6);
  put32(f, 38, tpa);
  return f;
}

std::vector<uint8_t> icmpEcho(uint8_t type, const Mac& dst, const Mac& src, uint32_t srcIp, uint32_t dstIp, uint16_t seq) {
  constexpr size_t kPayload = 16;
  auto f = ethernet(dst, src, ETHERTYPE_IP, 20 + 8 + kPayload);
  f[14] = 0x45;
  put16(f, 16, 20 + 8 + kPayload);
  f[22] = 64;
  f[23] = IPPROTO_ICMP;
  put32(f, 26, srcIp);
  put32(f, 30, dstIp);
  put16(f, 24, checksum(f.data() + 14, 20));
  f[34] = type;
  put16(f, 38, 0x7654);
  put16(f, 40, seq);
  for (size_t i = 0; i < kPayload; ++i) f[42 + i] = static_cast<uint8_t>(i);
  put16(f, 36, checksum(f.data() + 34, 8 + kPayload));
  return f;
}

// A guest on a macvtap queue fd: every frame is preceded by the virtio-net header.
struct Endpoint {
  int fd = -1;
  size_t vnetHeader = 10;
  Mac mac{};
  uint32_t ip = 0;
  std::optional<Mac> resolved;  // the MAC an ARP reply gave us
  int echoReplies = 0;
  int ownFramesSeen = 0;        // frames with our own source MAC that came back to us

  bool send(const std::vector<uint8_t>& frame) const {
    std::vector<uint8_t> buf(vnetHeader, 0);
    buf.insert(buf.end(), frame.begin(), frame.end());
    return ::write(fd, buf.data(), buf.size()) == static_cast<ssize_t>(buf.size());
  }

  void handle(const uint8_t* f, size_t n) {
    if (n < 14) return;
    Mac dst = getMac(f), src = getMac(f + 6);
    if (src == mac) ++ownFramesSeen;
    if (dst != mac && dst != kBroadcast) return;
    uint16_t type = get16(f + 12);
    if (type == ETHERTYPE_ARP && n >= 42) {
      uint16_t op = get16(f + 20);
      if (get32(f + 38) != ip) return;
      if (op == 1) send(arp(2, src, mac, ip, getMac(f + 22), get32(f + 28)));
      if (op == 2) resolved = getMac(f + 22);
    } else if (type == ETHERTYPE_IP && n >= 42 && f[23] == IPPROTO_ICMP && get32(f + 30) == ip) {
      if (f[34] == 8) send(icmpEcho(0, src, mac, ip, get32(f + 26), get16(f + 40)));
      if (f[34] == 0) ++echoReplies;
    }
  }
};

// Reads and answers frames on every endpoint until `done` holds or `timeout` passes.
template <typename Pred>
bool pump(const std::vector<Endpoint*>& eps, Pred done, Millis timeout) {
  auto deadline = Deadline::after(timeout);
  std::vector<uint8_t> buf(65536 + 64);
  while (!done()) {
    if (deadline.expired()) return false;
    std::vector<pollfd> pfds;
    for (auto* e : eps) pfds.push_back({e->fd, POLLIN, 0});
    if (::poll(pfds.data(), pfds.size(), deadline.pollTimeoutMs()) < 0 && errno != EINTR) return false;
    for (size_t i = 0; i < eps.size(); ++i) {
      if (!(pfds[i].revents & POLLIN)) continue;
      ssize_t n = ::read(eps[i]->fd, buf.data(), buf.size());
      if (n > static_cast<ssize_t>(eps[i]->vnetHeader))
        eps[i]->handle(buf.data() + eps[i]->vnetHeader, static_cast<size_t>(n) - eps[i]->vnetHeader);
    }
  }
  return true;
}

// `from` resolves `to` by ARP and pings it once.
bool reaches(Endpoint& from, Endpoint& to, Millis timeout) {
  std::vector<Endpoint*> eps = {&from, &to};
  from.resolved.reset();
  from.echoReplies = 0;
  from.send(arp(1, kBroadcast, from.mac, from.ip, Mac{}, to.ip));
  if (!pump(eps, [&] { return from.resolved.has_value(); }, timeout)) return false;
  if (*from.resolved != to.mac) return false;
  from.send(icmpEcho(8, to.mac, from.mac, from.ip, to.ip, 1));
  return pump(eps, [&] { return from.echoReplies > 0; }, timeout);
}

// A raw socket on a host interface: sees and sends whole frames.
class PacketSocket {
 public:
  explicit PacketSocket(const std::string& ifname) {
    fd_ = fs::UniqueFd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    ok_ = fd_.valid() && ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) == 0;
  }
  bool ok() const { return ok_; }
  bool send(const std::vector<uint8_t>& f) const { return ::send(fd_.get(), f.data(), f.size(), 0) == static_cast<ssize_t>(f.size()); }
  // Waits for a frame of kTestEtherType carrying `marker`.
  bool receive(const std::string& marker, Millis timeout) const { return waitForMarker(fd_.get(), 0, marker, timeout); }

  static bool waitForMarker(int fd, size_t skip, const std::string& marker, Millis timeout) {
    auto deadline = Deadline::after(timeout);
    std::vector<uint8_t> buf(65536);
    while (!deadline.expired()) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, deadline.pollTimeoutMs()) <= 0) continue;
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < static_cast<ssize_t>(skip + 14 + marker.size())) continue;
      const uint8_t* f = buf.data() + skip;
      if (get16(f + 12) == kTestEtherType && std::memcmp(f + 14, marker.data(), marker.size()) == 0) return true;
    }
    return false;
  }

 private:
  fs::UniqueFd fd_;
  bool ok_ = false;
};

std::vector<uint8_t> markedFrame(const Mac& dst, const Mac& src, const std::string& marker) {
  auto f = ethernet(dst, src, kTestEtherType, std::max<size_t>(marker.size(), 46));
  std::memcpy(f.data() + 14, marker.data(), marker.size());
  return f;
}

std::string kernelModeName(DirectMode m) {
  switch (m) {
    case DirectMode::vepa: return "vepa";
    case DirectMode::bridge: return "bridge";
    case DirectMode::private_: return "private";
    case DirectMode::passthrough: return "passthru";
  }
  return "";
}

// ---------------------------------------------------------------- fixtures

// A veth pair "uplink" (the host interface the macvtaps sit on) <-> "uplinkp" (its far end,
// here in the same namespace).
class MacvtapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    linksBefore_ = linkNames();
    nodesBefore_ = tapNodes();
    ASSERT_TRUE(run({"ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplinkp"}).ok());
    ASSERT_TRUE(run({"ip", "link", "set", "uplink", "up"}).ok());
    ASSERT_TRUE(run({"ip", "link", "set", "uplinkp", "up"}).ok());
  }
  void TearDown() override {
    (void)run({"ip", "link", "del", "uplink"});
    EXPECT_EQ(linkNames(), linksBefore_) << "links left behind";
    EXPECT_EQ(tapNodes(), nodesBefore_) << "device nodes left behind";
  }
  std::set<std::string> linksBefore_, nodesBefore_;
};

MacvtapOptions optionsFor(const std::string& mac, DirectMode mode, const std::string& lower = "uplink") {
  MacvtapOptions o;
  o.name = net::macvtapNameFor(mac);
  o.lower = lower;
  o.mode = mode;
  o.mac = mac;
  return o;
}

// Checks a created port: link, MAC, mode, fd flags, frames both ways through the lower.
void expectWorkingPort(const MacvtapPort& port, const MacvtapOptions& o) {
  EXPECT_EQ(port.ifindex, static_cast<int>(if_nametoindex(o.name.c_str())));
  EXPECT_EQ(sysAttr(o.name, "address"), o.mac);
  json d = linkDetails(o.name);
  EXPECT_EQ(d["linkinfo"]["info_kind"], "macvtap") << d.dump();
  EXPECT_EQ(d["linkinfo"]["info_data"]["mode"], kernelModeName(o.mode)) << d.dump();
  EXPECT_EQ(d.value("link", ""), o.lower) << d.dump();
  auto flags = d.value("flags", json::array());
  EXPECT_NE(std::find(flags.begin(), flags.end(), "UP"), flags.end()) << d.dump();

  ASSERT_TRUE(port.fd.valid());
  EXPECT_TRUE(::fcntl(port.fd.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(::fcntl(port.fd.get(), F_GETFL) & O_ACCMODE, O_RDWR);
  ifreq ifr{};
  ASSERT_EQ(::ioctl(port.fd.get(), TUNGETIFF, &ifr), 0);
  EXPECT_TRUE(ifr.ifr_flags & IFF_VNET_HDR);
  EXPECT_TRUE(ifr.ifr_flags & IFF_TAP);
  int hdr = 0;
  ASSERT_EQ(::ioctl(port.fd.get(), TUNGETVNETHDRSZ, &hdr), 0);
  EXPECT_EQ(hdr, port.vnetHeaderSize);

  if (!port.devicePath.empty()) {  // empty: opened through a temporary node (see the collision test)
    struct stat st{};
    ASSERT_EQ(::stat(port.devicePath.c_str(), &st), 0) << port.devicePath;
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)),
              trim(fs::readFile("/sys/class/net/" + o.name + "/macvtap/tap" + std::to_string(port.ifindex) + "/dev").valueOr("")));
  }

  // Guest -> wire: a frame written to the queue leaves through the lower to its veth peer.
  PacketSocket wire("uplinkp");
  ASSERT_TRUE(wire.ok());
  Endpoint guest;
  guest.fd = port.fd.get();
  guest.vnetHeader = static_cast<size_t>(port.vnetHeaderSize);
  guest.mac = parseMac(o.mac);
  ASSERT_TRUE(guest.send(markedFrame(kBroadcast, guest.mac, "out-" + o.name)));
  EXPECT_TRUE(wire.receive("out-" + o.name, Millis(2000))) << "written frame not seen on the wire";
  // Wire -> guest: a frame to the guest MAC arrives on the queue, after the vnet header.
  ASSERT_TRUE(wire.send(markedFrame(guest.mac, parseMac("02:00:00:00:00:99"), "in-" + o.name)));
  EXPECT_TRUE(PacketSocket::waitForMarker(port.fd.get(), guest.vnetHeader, "in-" + o.name, Millis(2000))) << "frame not delivered to the queue";
}

// ---------------------------------------------------------------- 1. every mode

TEST_F(MacvtapTest, CreatesWorkingPortInEveryModeAndDeletesIt) {
  std::string uplinkMac = sysAttr("uplink", "address");
  const DirectMode modes[] = {DirectMode::vepa, DirectMode::bridge, DirectMode::private_, DirectMode::passthrough};
  int i = 0;
  for (DirectMode mode : modes) {
    auto o = optionsFor("52:54:00:d1:00:0" + std::to_string(++i), mode);
    SCOPED_TRACE(kernelModeName(mode));
    MacvtapGuard guard(o.name);
    auto t0 = SteadyClock::now();
    auto port = createMacvtap(o);
    double createMs = msSince(t0);
    ASSERT_TRUE(port.ok()) << port.error().message;
    EXPECT_EQ(port->name, o.name);
    EXPECT_EQ(o.name, "mv525400d1000" + std::to_string(i));
    expectWorkingPort(*port, o);
    if (mode == DirectMode::passthrough) {
      EXPECT_EQ(sysAttr("uplink", "address"), o.mac) << "passthrough gives the interface the guest MAC";
    }

    std::string node = port->devicePath;
    t0 = SteadyClock::now();
    ASSERT_TRUE(deleteMacvtap(o.name).ok());
    double deleteMs = msSince(t0);
    EXPECT_FALSE(fs::exists("/sys/class/net/" + o.name));
    EXPECT_FALSE(fs::exists(node)) << node;
    EXPECT_EQ(sysAttr("uplink", "address"), uplinkMac) << "the interface gets its own MAC back";
    EXPECT_TRUE(deleteMacvtap(o.name).ok()) << "delete is idempotent";
    std::printf("[ timing ] %-8s create %.2f ms (node %s%s), delete %.2f ms\n", kernelModeName(mode).c_str(), createMs, node.c_str(),
                port->nodeCreated ? ", made by us" : ", made by devtmpfs", deleteMs);
  }

  // Steady-state cost: 20 create/delete rounds.
  std::vector<double> creates, deletes;
  auto o = optionsFor("52:54:00:d1:00:10", DirectMode::vepa);
  MacvtapGuard guard(o.name);
  for (int round = 0; round < 20; ++round) {
    auto t0 = SteadyClock::now();
    auto port = createMacvtap(o);
    creates.push_back(msSince(t0));
    ASSERT_TRUE(port.ok()) << port.error().message;
    t0 = SteadyClock::now();
    ASSERT_TRUE(deleteMacvtap(o.name).ok());
    deletes.push_back(msSince(t0));
  }
  std::sort(creates.begin(), creates.end());
  std::sort(deletes.begin(), deletes.end());
  std::printf("[ timing ] 20 rounds: create median %.2f ms max %.2f ms; delete median %.2f ms max %.2f ms\n", creates[10], creates.back(),
              deletes[10], deletes.back());
}

// No devtmpfs and no udev (a plain tmpfs /dev, as in many containers): createMacvtap makes
// /dev/tapN itself and deleteMacvtap removes it.
class PlainDev {
 public:
  PlainDev() {
    char tmpl[] = "/tmp/vmm-plaindev-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "mode=0755,size=1m") != 0) return;
    bool ok = true;
    for (const char* node : {"null", "zero", "urandom", "random", "net/tun"}) {
      std::string target = dir_ + "/" + node;
      if (std::string(node) == "net/tun") ::mkdir((dir_ + "/net").c_str(), 0755);
      fs::UniqueFd f(::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
      ok = ok && f.valid() && ::mount((std::string("/dev/") + node).c_str(), target.c_str(), nullptr, MS_BIND, nullptr) == 0;
    }
    mounted_ = ok && ::mount(dir_.c_str(), "/dev", nullptr, MS_MOVE, nullptr) == 0;
    if (!mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  ~PlainDev() {
    if (mounted_) ::umount2("/dev", MNT_DETACH);
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  bool ok() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST_F(MacvtapTest, MakesTheDeviceNodeWhenNothingElseDoes) {
  auto o = optionsFor("52:54:00:d2:00:01", DirectMode::vepa);
  MacvtapGuard guard(o.name);
  PlainDev dev;
  ASSERT_TRUE(dev.ok()) << "cannot mount a plain tmpfs on /dev";
  ASSERT_TRUE(fs::listDir("/dev").valueOr({}).size() <= 6u) << "not a plain /dev";
  auto t0 = SteadyClock::now();
  auto port = createMacvtap(o);
  double createMs = msSince(t0);
  ASSERT_TRUE(port.ok()) << port.error().message;
  EXPECT_TRUE(port->nodeCreated);
  EXPECT_EQ(port->devicePath, "/dev/tap" + std::to_string(port->ifindex));
  expectWorkingPort(*port, o);
  t0 = SteadyClock::now();
  ASSERT_TRUE(deleteMacvtap(o.name).ok());
  double deleteMs = msSince(t0);
  EXPECT_FALSE(fs::exists(port->devicePath)) << "the node we made must go with the link";
  std::printf("[ timing ] plain /dev: create (with mknod) %.2f ms, delete %.2f ms\n", createMs, deleteMs);
}

// The next ifindex of this namespace: indexes are handed out cyclically (after the last one
// given, even when lower ones are free), so after a probe veth pair (two indexes) is deleted
// the next link gets the one after them.
int predictNextIfindex() {
  if (!run({"ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"}).ok()) return -1;
  int next = static_cast<int>(std::max(if_nametoindex("probe0"), if_nametoindex("probe1"))) + 1;
  (void)run({"ip", "link", "del", "probe0"});
  return next;
}

// ifindexes repeat across network namespaces but devtmpfs is shared: /dev/tapN may be another
// namespace's device. It must be left alone and the queue opened anyway.
TEST_F(MacvtapTest, LeavesAForeignTapNodeAlone) {
  auto o = optionsFor("52:54:00:d2:00:02", DirectMode::bridge);
  MacvtapGuard guard(o.name);
  PlainDev dev;
  ASSERT_TRUE(dev.ok());
  int next = predictNextIfindex();
  ASSERT_GT(next, 0);
  std::string foreign = "/dev/tap" + std::to_string(next);
  ASSERT_EQ(::mknod(foreign.c_str(), S_IFCHR | 0600, makedev(1, 3)), 0);  // "someone else's" device
  auto port = createMacvtap(o);
  if (!port.ok() || port->ifindex != next) ::unlink(foreign.c_str());
  ASSERT_TRUE(port.ok()) << port.error().message;
  // Deterministic, not a guess: nothing else makes links in this private namespace, and the
  // kernel hands out the index after the last one it gave.
  ASSERT_EQ(port->ifindex, next) << "the macvtap did not get the predicted ifindex";
  EXPECT_TRUE(port->devicePath.empty()) << port->devicePath;
  EXPECT_FALSE(port->nodeCreated);
  expectWorkingPort(*port, o);
  ASSERT_TRUE(deleteMacvtap(o.name).ok());
  struct stat st{};
  ASSERT_EQ(::stat(foreign.c_str(), &st), 0) << "the foreign node must stay";
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  auto left = fs::listDir("/dev").valueOr({});
  EXPECT_EQ(std::count_if(left.begin(), left.end(), [](const std::string& n) { return startsWith(n, ".vmm-"); }), 0)
      << "temporary node left behind";
  ::unlink(foreign.c_str());
}

// All or nothing: a failure after the link exists (here: /dev is read-only, so no node can be
// made) removes the link again.
TEST_F(MacvtapTest, FailureAfterTheLinkExistsRemovesIt) {
  auto o = optionsFor("52:54:00:d2:00:03", DirectMode::vepa);
  MacvtapGuard guard(o.name);
  PlainDev dev;
  ASSERT_TRUE(dev.ok());
  ASSERT_EQ(::mount(nullptr, "/dev", nullptr, MS_REMOUNT | MS_RDONLY, "mode=0755,size=1m"), 0) << std::strerror(errno);
  auto links = linkNames();
  auto port = createMacvtap(o);
  ASSERT_FALSE(port.ok());
  std::printf("[ error  ] %s\n", port.error().message.c_str());
  EXPECT_NE(port.error().message.find("mknod /dev/tap"), std::string::npos) << port.error().message;
  EXPECT_EQ(linkNames(), links) << "the macvtap link must be deleted again";
}

// ---------------------------------------------------------------- 2. forwarding semantics

// "uplink" is a veth whose peer "swp1" is the only port of bridge "xsw" in another namespace:
// the external switch. Two guests sit on macvtaps of uplink.
class ExternalSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    linksBefore_ = linkNames();
    nodesBefore_ = tapNodes();
    ASSERT_GT(sw_.pid(), 0) << "cannot make the switch namespace";
    std::string pid = std::to_string(sw_.pid());
    ASSERT_TRUE(run({"ip", "link", "add", "uplink", "type", "veth", "peer", "name", "swp1", "netns", pid}).ok());
    ASSERT_TRUE(run(inNetns(sw_.pid(), {"ip", "link", "add", "xsw", "type", "bridge", "forward_delay", "0", "stp_state", "0"})).ok());
    ASSERT_TRUE(run(inNetns(sw_.pid(), {"ip", "link", "set", "swp1", "master", "xsw"})).ok());
    ASSERT_TRUE(run(inNetns(sw_.pid(), {"ip", "link", "set", "swp1", "up"})).ok());
    ASSERT_TRUE(run(inNetns(sw_.pid(), {"ip", "link", "set", "xsw", "up"})).ok());
    ASSERT_TRUE(run({"ip", "link", "set", "uplink", "up"}).ok());
  }
  void TearDown() override {
    (void)run({"ip", "link", "del", "uplink"});
    EXPECT_EQ(linkNames(), linksBefore_) << "links left behind";
    EXPECT_EQ(tapNodes(), nodesBefore_) << "device nodes left behind";
  }
  void setHairpin(bool on) {
    ASSERT_TRUE(run(inNetns(sw_.pid(), {"bridge", "link", "set", "dev", "swp1", "hairpin", on ? "on" : "off"})).ok());
    ASSERT_TRUE(run(inNetns(sw_.pid(), {"bridge", "fdb", "flush", "dev", "xsw", "brport", "swp1", "dynamic"})).ok());
  }
  bool switchLearned(const std::string& mac) {
    return output(inNetns(sw_.pid(), {"bridge", "fdb", "show", "dev", "swp1"})).find(mac) != std::string::npos;
  }

  struct Case {
    DirectMode mode;
    bool hairpin;
    bool expectTraffic;
  };
  void runCase(const Case& c) {
    SCOPED_TRACE(kernelModeName(c.mode) + (c.hairpin ? " with hairpin" : " without hairpin"));
    setHairpin(c.hairpin);
    auto oa = optionsFor("52:54:00:e0:00:0a", c.mode), ob = optionsFor("52:54:00:e0:00:0b", c.mode);
    MacvtapGuard ga(oa.name), gb(ob.name);
    auto a = createMacvtap(oa);
    ASSERT_TRUE(a.ok()) << a.error().message;
    auto b = createMacvtap(ob);
    ASSERT_TRUE(b.ok()) << b.error().message;
    Endpoint ea, eb;
    ea.fd = a->fd.get();
    ea.mac = parseMac(oa.mac);
    ea.ip = ipv4("192.0.2.10");
    eb.fd = b->fd.get();
    eb.mac = parseMac(ob.mac);
    eb.ip = ipv4("192.0.2.11");

    Millis wait(c.expectTraffic ? 3000 : 800);
    auto t0 = SteadyClock::now();
    bool ab = reaches(ea, eb, wait);
    double abMs = msSince(t0);
    bool ba = reaches(eb, ea, wait);
    EXPECT_EQ(ab, c.expectTraffic) << "A -> B (ARP + ICMP echo)";
    EXPECT_EQ(ba, c.expectTraffic) << "B -> A (ARP + ICMP echo)";
    bool seenA = switchLearned(oa.mac), seenB = switchLearned(ob.mac);
    // vepa and private send everything to the external switch; bridge mode keeps guest-to-guest
    // traffic inside the host (the switch may see only the broadcasts, which also go out).
    if (c.mode != DirectMode::bridge) {
      EXPECT_TRUE(seenA) << "A's frames never reached the external switch";
    }
    if (c.mode == DirectMode::private_ && c.hairpin) {
      // The switch did reflect: A's own ARP broadcast came back to A - and only to A.
      EXPECT_GT(ea.ownFramesSeen, 0);
    }
    std::printf("[ result ] %-8s hairpin %-3s: A->B %s, B->A %s (%.1f ms), switch learned A %s B %s, A saw own frames %d\n",
                kernelModeName(c.mode).c_str(), c.hairpin ? "on" : "off", ab ? "ok" : "none", ba ? "ok" : "none", abMs, seenA ? "yes" : "no",
                seenB ? "yes" : "no", ea.ownFramesSeen);
    EXPECT_TRUE(deleteMacvtap(oa.name).ok());
    EXPECT_TRUE(deleteMacvtap(ob.name).ok());
  }

  NetnsHolder sw_;
  std::set<std::string> linksBefore_, nodesBefore_;
};

TEST_F(ExternalSwitchTest, VepaTrafficFlowsOnlyThroughAHairpinPort) {
  runCase({DirectMode::vepa, false, false});
  runCase({DirectMode::vepa, true, true});
}

TEST_F(ExternalSwitchTest, BridgeModeFlowsWithoutHairpin) {
  runCase({DirectMode::bridge, false, true});
}

TEST_F(ExternalSwitchTest, PrivateModeNeverFlows) {
  runCase({DirectMode::private_, false, false});
  runCase({DirectMode::private_, true, false});
}

// ---------------------------------------------------------------- 3. bad input

TEST_F(MacvtapTest, BadInputGetsClearErrorsAndChangesNothing) {
  auto expectRefused = [&](const MacvtapOptions& o, ErrorCode code, const std::string& text) {
    SCOPED_TRACE(o.name + " on " + o.lower);
    auto links = linkNames();
    auto nodes = tapNodes();
    std::string uplinkMac = sysAttr("uplink", "address");
    auto r = createMacvtap(o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, code) << r.error().message;
    EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
    EXPECT_EQ(linkNames(), links);
    EXPECT_EQ(tapNodes(), nodes);
    EXPECT_EQ(sysAttr("uplink", "address"), uplinkMac);
    std::printf("[ error  ] %s\n", r.error().message.c_str());
  };
  const std::string mac = "52:54:00:d3:00:01";

  expectRefused(optionsFor(mac, DirectMode::vepa, "nosuchif0"), ErrorCode::not_found, "does not exist");
  expectRefused(optionsFor(mac, DirectMode::vepa, ""), ErrorCode::invalid_argument, "needs a host interface");
  expectRefused(optionsFor(mac, DirectMode::vepa, "lo"), ErrorCode::invalid_argument, "loopback");
  auto longName = optionsFor(mac, DirectMode::vepa);
  longName.name = "mv525400d30001xx";
  expectRefused(longName, ErrorCode::invalid_argument, "1 to 15 characters");
  auto badMac = optionsFor(mac, DirectMode::vepa);
  badMac.mac = "52:54:00:zz:00:01";
  expectRefused(badMac, ErrorCode::invalid_argument, "invalid MAC");
  badMac.mac = "01:00:5e:00:00:01";
  expectRefused(badMac, ErrorCode::invalid_argument, "multicast");
  auto badMode = optionsFor(mac, static_cast<DirectMode>(42));
  expectRefused(badMode, ErrorCode::invalid_argument, "unknown direct mode");
  auto bigMtu = optionsFor(mac, DirectMode::vepa);
  bigMtu.mtu = 9000;
  expectRefused(bigMtu, ErrorCode::invalid_argument, "MTU 9000");
  auto taken = optionsFor(mac, DirectMode::vepa);
  taken.name = "uplinkp";
  expectRefused(taken, ErrorCode::conflict, "already exists");
  EXPECT_TRUE(fs::exists("/sys/class/net/uplinkp"));

  // A bridge port belongs to its bridge.
  ASSERT_TRUE(run({"ip", "link", "add", "xbr0", "type", "bridge"}).ok());
  ASSERT_TRUE(run({"ip", "link", "add", "bport0", "type", "veth", "peer", "name", "bport0p"}).ok());
  ASSERT_TRUE(run({"ip", "link", "set", "bport0", "master", "xbr0"}).ok());
  expectRefused(optionsFor(mac, DirectMode::vepa, "bport0"), ErrorCode::invalid_argument, "port of bridge xbr0");
  (void)run({"ip", "link", "del", "bport0"});
  (void)run({"ip", "link", "del", "xbr0"});

  // Passthrough owns its interface: a second macvtap of any mode is refused, and so is
  // passthrough on an interface that already carries one.
  auto first = optionsFor("52:54:00:d3:00:0a", DirectMode::passthrough);
  MacvtapGuard g1(first.name);
  auto p1 = createMacvtap(first);
  ASSERT_TRUE(p1.ok()) << p1.error().message;
  expectRefused(optionsFor("52:54:00:d3:00:0b", DirectMode::passthrough), ErrorCode::conflict,
                "taken in passthrough mode by macvtap " + first.name);
  expectRefused(optionsFor("52:54:00:d3:00:0c", DirectMode::vepa), ErrorCode::conflict, "passthrough");
  expectWorkingPort(*p1, first);  // the first one is untouched
  ASSERT_TRUE(deleteMacvtap(first.name).ok());

  auto vepa = optionsFor("52:54:00:d3:00:0d", DirectMode::vepa);
  MacvtapGuard g2(vepa.name);
  auto p2 = createMacvtap(vepa);
  ASSERT_TRUE(p2.ok()) << p2.error().message;
  expectRefused(optionsFor("52:54:00:d3:00:0e", DirectMode::passthrough), ErrorCode::conflict, "to itself; it already carries macvtap " + vepa.name);
  ASSERT_TRUE(deleteMacvtap(vepa.name).ok());

  // deleteMacvtap never deletes what is not a macvtap.
  auto notMine = deleteMacvtap("uplinkp");
  EXPECT_EQ(notMine.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(notMine.error().message.find("not a macvtap"), std::string::npos) << notMine.error().message;
  EXPECT_TRUE(fs::exists("/sys/class/net/uplinkp"));
  EXPECT_EQ(deleteMacvtap("mv0123456789abcdef").error().code, ErrorCode::invalid_argument);
  EXPECT_TRUE(deleteMacvtap("mvnotthere").ok());
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = vmm::testutil::missingRoot("network namespaces, macvtap links"); !missing.empty()) {
    vmm::testutil::requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  // Before any thread exists: a private network namespace and mount namespace (with a sysfs
  // that shows this namespace's links).
  if (auto st = testutil::enterPrivateNamespaces(); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return 1;
  }
  // No IPv6 autoconfiguration chatter on the test links.
  for (const char* knob : {"/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv6/conf/all/disable_ipv6"}) {
    fs::UniqueFd f(::open(knob, O_WRONLY | O_CLOEXEC));
    if (f.valid() && ::write(f.get(), "1", 1) != 1) std::fprintf(stderr, "cannot write %s\n", knob);
  }
  return RUN_ALL_TESTS();
}
