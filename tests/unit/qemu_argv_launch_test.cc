// The qemu-argv goldens given to the real QEMU: qemu_cmdline_test proves that the driver still
// produces each tests/data/qemu-argv/NAME.args, this test proves that QEMU accepts it. Each
// argv runs as written (it already has -S) with stand-ins for what it references - disks,
// kernels, the secret file, listening sockets and taps on the numbered fds, a loop device, a
// tgtd target, an NFS export - until QEMU answers query-status over QMP; then quit. How each
// golden is launched is listed in tests/data/qemu-argv/launch.list (every .args must be there).
// NAME.args is the output for Debian 12's capability set (tests/data/qemu-caps/qemu-7.2.json),
// this host's QEMU; NAME.SET.args, for other QEMU versions, are not launched.
//
// Needs root (a private network namespace for taps and fixed ports, loop devices, tgtd).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
#include "tests/support/loop_device.h"
#include "tests/support/nfs_server.h"
#include "tests/support/require.h"
#include "tests/support/tgt_target.h"
#include "tests/unit/test_util.h"

using namespace vmm;
using nlohmann::json;

namespace {

const std::string kDir = VMM_SOURCE_DIR "/tests/data/qemu-argv";
constexpr const char* kChapSecret = "golden-chap-secret-1";

// NAME -> MODE from launch.list.
std::map<std::string, std::string> launchList() {
  std::map<std::string, std::string> out;
  for (const auto& line : split(fs::readFile(kDir + "/launch.list").valueOr(""), '\n', true)) {
    auto t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    auto words = split(t, ' ', true);
    if (words.size() >= 2) out[words[0]] = words[1];
  }
  return out;
}

std::vector<std::string> goldensWithArgs() {
  std::vector<std::string> out;
  for (const auto& name : testutil::goldenCases(kDir))
    if (fs::exists(kDir + "/" + name + ".args")) out.push_back(name);
  return out;
}

// A bzImage as far as QEMU's loader reads it: the setup header of boot protocol 2.15, a loaded-
// high kernel, room for an initrd. No code: the vCPUs never leave -S.
Status writeStandInKernel(const std::string& path) {
  std::string k(16384, '\0');
  k[0x1f1] = 4;  // setup sectors
  k[0x1fe] = '\x55';
  k[0x1ff] = '\xaa';
  std::memcpy(&k[0x202], "HdrS", 4);
  k[0x206] = '\x0f';  // protocol 2.15
  k[0x207] = '\x02';
  k[0x211] = 0x01;                             // LOADED_HIGH
  std::memcpy(&k[0x22c], "\xff\xff\xff\x7f", 4);  // initrd_addr_max
  std::memcpy(&k[0x238], "\x00\x08\x00\x00", 4);  // cmdline_size 2048
  return fs::writeFileAtomic(path, k);
}

Result<fs::UniqueFd> openTap(const std::string& name) {
  fs::UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return systemError("open /dev/net/tun", errno);
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return systemError("TUNSETIFF " + name, errno);
  return fd;
}

// One line from QMP, or an error at the deadline / end of stream.
Result<json> qmpRead(int fd, std::string& buf, Deadline deadline) {
  while (true) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      auto j = json::parse(line, nullptr, false);
      if (j.is_discarded()) return internalError("QMP sent non-JSON: " + line);
      if (j.contains("event")) continue;
      return j;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, deadline.pollTimeoutMs()) <= 0) return timeoutError("no answer from QMP");
    char tmp[4096];
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) return unavailable("QMP closed the connection");
    buf.append(tmp, static_cast<size_t>(n));
  }
}

Result<json> qmpCall(int fd, std::string& buf, const std::string& command) {
  auto deadline = Deadline::after(Millis(10000));
  VMM_TRY(writeAllFd(fd, json{{"execute", command}}.dump() + "\n", deadline));
  VMM_ASSIGN(json reply, qmpRead(fd, buf, deadline));
  if (!reply.contains("return")) return internalError(command + ": " + reply.dump());
  return reply["return"];
}

// The driver's own KVM probe (QemuDriver::kvmUnusableReason): "" when -accel kvm -cpu host runs.
std::string kvmProblem() {
  if (testutil::pretendMissing("kvm")) return "KVM pretended missing (VMM_TEST_PRETEND_MISSING)";
  if (::access("/dev/kvm", R_OK | W_OK) != 0) return "no usable /dev/kvm";
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(20000));
  opts.stdinData = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n";
  auto r = runCommand({"qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-nodefaults", "-display",
                       "none", "-S", "-qmp", "stdio"},
                      opts);
  if (!r.ok()) return r.error().message;
  return r->success() ? "" : r->describe();
}

class GoldenLaunch : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string qemu = testutil::missingTools({"qemu-system-x86_64"}, "qemu-system-x86");
    VMM_REQUIRE(qemu.empty(), qemu);
    std::string img = testutil::missingTools({"qemu-img"}, "qemu-utils");
    VMM_REQUIRE(img.empty(), img);
    char tmpl[] = "/tmp/vmm-argv-launch-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      (void)ChildReaper::wait(pid_, Deadline::after(Millis(5000)));
    }
    nfs_.reset();
    tgt_.reset();
    loop_.reset();
    if (!tmp_.empty()) (void)runCommand({"rm", "-rf", tmp_});
  }

  // A stand-in for an absolute path the golden names, under the temporary directory.
  std::string standIn(const std::string& path) {
    std::string p = tmp_ + "/files" + path;
    (void)fs::makeDirs(p.substr(0, p.rfind('/')), 0755);
    return p;
  }

  Status makeImage(const std::string& path, const std::string& format, uint64_t size = 16 << 20) {
    (void)fs::makeDirs(path.substr(0, path.rfind('/')), 0755);
    VMM_ASSIGN(auto r, runCommand({"qemu-img", "create", "-q", "-f", format, path, std::to_string(size)}));
    if (!r.success()) return internalError("qemu-img create " + path + ": " + r.describe());
    return {};
  }

  // Rewrites the argv in place, creating what it references; fills fds_ (number -> fd).
  void prepare(std::vector<std::string>& argv) {
    std::map<std::string, json> nodes;  // node-name -> blockdev
    for (size_t i = 0; i + 1 < argv.size(); ++i)
      if (argv[i] == "-blockdev") {
        auto j = json::parse(argv[i + 1]);
        nodes[j.value("node-name", "")] = j;
      }
    auto formatOf = [&](const std::string& fileNode) {
      for (const auto& [name, j] : nodes)
        if (j.value("file", "") == fileNode) return j.value("driver", "raw");
      return std::string("raw");
    };
    // QEMU's working directory: relative names in the golden are made there.
    ASSERT_TRUE(fs::makeDirs(cwd(), 0755).ok());
    auto place = [&](const std::string& name) { return name[0] == '/' ? standIn(name) : cwd() + "/" + name; };
    // A file QEMU gets as an inherited descriptor ("/proc/self/fd/N"): made and opened here.
    auto inherited = [&](const std::string& name) -> std::string {
      std::string procFd = "/proc/self/fd/";
      return startsWith(name, procFd) ? tmp_ + "/fd" + name.substr(procFd.size()) : "";
    };
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      std::string& next = argv[i + 1];
      if ((argv[i] == "-kernel" || argv[i] == "-initrd") && !inherited(next).empty()) {
        std::string file = inherited(next);
        ASSERT_TRUE((argv[i] == "-kernel" ? writeStandInKernel(file) : fs::writeFileAtomic(file, std::string(4096, 'i'))).ok());
        fds_[std::stoi(next.substr(sizeof "/proc/self/fd/" - 1))] = fs::UniqueFd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
      } else if (argv[i] == "-kernel") {
        next = place(next);
        ASSERT_TRUE(writeStandInKernel(next).ok());
      } else if (argv[i] == "-initrd") {
        next = place(next);
        ASSERT_TRUE(fs::writeFileAtomic(next, std::string(4096, 'i')).ok());
      } else if (argv[i] == "-add-fd") {
        // An image layer as a descriptor: a stand-in image (or loop device) for the node that
        // opens "/dev/fdset/SET", opened as that node opens it.
        int fd = -1;
        std::string set;
        for (const auto& kv : split(next, ',', true)) {
          if (startsWith(kv, "fd=")) fd = std::stoi(kv.substr(3));
          if (startsWith(kv, "set=")) set = kv.substr(4);
        }
        ASSERT_GE(fd, 3) << next;
        json node;
        for (const auto& [name, j] : nodes)
          if (j.value("filename", "") == "/dev/fdset/" + set) node = j;
        ASSERT_TRUE(node.is_object()) << "no -blockdev opens /dev/fdset/" << set;
        std::string file = tmp_ + "/fdset" + set;
        if (node.value("driver", "") == "host_device") {
          auto loop = testutil::LoopDevice::create(tmp_ + "/pv.img", 16 << 20);
          ASSERT_TRUE(loop.ok()) << loop.error().message;
          loop_ = std::move(*loop);
          file = loop_->device();
        } else {
          ASSERT_TRUE(makeImage(file, formatOf(node.value("node-name", ""))).ok());
        }
        fds_[fd] = fs::UniqueFd(::open(file.c_str(), (node.value("read-only", false) ? O_RDONLY : O_RDWR) | O_CLOEXEC));
        ASSERT_TRUE(fds_[fd].valid()) << file;
      } else if (argv[i] == "-object") {
        auto j = json::parse(next);
        if (j.value("qom-type", "") == "secret" && j.contains("file")) {
          j["file"] = standIn(j["file"].get<std::string>());
          ASSERT_TRUE(fs::writeFileAtomic(j["file"].get<std::string>(), kChapSecret, 0600).ok());
          next = j.dump();
        }
      } else if (argv[i] == "-blockdev") {
        auto j = json::parse(next);
        std::string driver = j.value("driver", "");
        if (startsWith(j.value("filename", ""), "/dev/fdset/")) {
          // made by its -add-fd
        } else if (driver == "file") {
          j["filename"] = standIn(j["filename"].get<std::string>());
          ASSERT_TRUE(makeImage(j["filename"].get<std::string>(), formatOf(j["node-name"].get<std::string>())).ok());
        } else if (driver == "host_device") {
          uint64_t need = 0;
          for (const auto& [name, f] : nodes)
            if (f.value("file", "") == j.value("node-name", "")) need = f.value("offset", uint64_t{0}) + f.value("size", uint64_t{0});
          auto loop = testutil::LoopDevice::create(tmp_ + "/pv.img", std::max<uint64_t>(need, 16 << 20));
          ASSERT_TRUE(loop.ok()) << loop.error().message;
          loop_ = std::move(*loop);
          j["filename"] = loop_->device();
        } else if (driver == "iscsi") {
          startIscsi(j);
          if (HasFatalFailure() || IsSkipped()) return;
        } else if (driver == "nfs") {
          startNfs(j, formatOf(j["node-name"].get<std::string>()));
          if (HasFatalFailure() || IsSkipped()) return;
        }
        next = j.dump();
      } else if (argv[i] == "-vnc" && startsWith(next, "unix:")) {
        auto comma = next.find(',');
        std::string path = next.substr(5, comma == std::string::npos ? std::string::npos : comma - 5);
        next = "unix:" + place(path) + (comma == std::string::npos ? "" : next.substr(comma));
      } else if (argv[i] == "-spice" && next.find("unix=on") != std::string::npos) {
        std::vector<std::string> opts;
        for (auto& kv : split(next, ',', true)) opts.push_back(startsWith(kv, "addr=") ? "addr=" + place(kv.substr(5)) : kv);
        next = join(opts, ",");
      } else if (argv[i] == "-chardev" || argv[i] == "-netdev") {
        bool tap = startsWith(next, "{");
        int fd = -1;
        std::string id;
        if (tap) {
          auto j = json::parse(next);
          if (j.value("type", "") != "tap" || !j.contains("fd")) continue;
          fd = std::stoi(j["fd"].get<std::string>());
          id = j.value("id", "");
        } else {
          for (const auto& kv : split(next, ',', true)) {
            if (startsWith(kv, "fd=")) fd = std::stoi(kv.substr(3));
            if (startsWith(kv, "id=")) id = kv.substr(3);
          }
          if (fd < 0) continue;
        }
        if (tap) {
          auto t = openTap("gt" + std::to_string(fd));
          ASSERT_TRUE(t.ok()) << t.error().message;
          fds_[fd] = std::move(*t);
        } else {
          std::string path = tmp_ + "/" + id + ".sock";
          auto l = listenUnix(path, 0600);
          ASSERT_TRUE(l.ok()) << l.error().message;
          fds_[fd] = std::move(*l);
          if (id == "qmp") qmpPath_ = path;
        }
      }
    }
  }

  void startIscsi(json& j) {
    VMM_REQUIRE(testutil::TgtTarget::available(), testutil::TgtTarget::missing());
    auto portal = j.value("portal", "");
    int port = std::stoi(portal.substr(portal.rfind(':') + 1));
    tgt_ = std::make_unique<testutil::TgtTarget>();
    auto st = tgt_->start(port);
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto tid = tgt_->addTarget(j.value("target", ""));
    ASSERT_TRUE(tid.ok()) << tid.error().message;
    ASSERT_TRUE(testutil::makeSparseFile(tmp_ + "/lun.img", 16 << 20).ok());
    ASSERT_TRUE(tgt_->addLun(*tid, j.value("lun", 1), tmp_ + "/lun.img").ok());
    if (j.contains("user")) {
      ASSERT_TRUE(tgt_->setChap(*tid, j["user"].get<std::string>(), kChapSecret).ok());
    }
  }

  void startNfs(json& j, const std::string& format) {
    VMM_REQUIRE(testutil::NfsServer::available(), testutil::NfsServer::missing());
    nfs_ = std::make_unique<testutil::NfsServer>();
    std::string exportDir = tmp_ + "/export";
    std::string rel = j.value("path", "");
    ASSERT_TRUE(startsWith(rel, nfs_->exportPath() + "/")) << rel;
    ASSERT_TRUE(makeImage(exportDir + rel.substr(nfs_->exportPath().size()), format).ok());
    ASSERT_EQ(::chmod(exportDir.c_str(), 0777), 0);
    auto st = nfs_->start(exportDir);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  std::string cwd() const { return tmp_ + "/cwd"; }
  std::string qemuLog() const { return fs::readFile(tmp_ + "/qemu.log", 1 << 16).valueOr(""); }

  std::string tmp_;
  std::string qmpPath_;
  std::map<int, fs::UniqueFd> fds_;
  std::unique_ptr<testutil::LoopDevice> loop_;
  std::unique_ptr<testutil::TgtTarget> tgt_;
  std::unique_ptr<testutil::NfsServer> nfs_;
  pid_t pid_ = -1;
};

TEST(GoldenLaunchList, ListsEveryGoldenWithArgs) {
  auto list = launchList();
  std::set<std::string> modes{"launch", "needs-kvm"};
  for (const auto& name : goldensWithArgs()) {
    ASSERT_TRUE(list.count(name)) << name << ".args has no line in launch.list";
    EXPECT_TRUE(modes.count(list[name])) << name << ": unknown mode " << list[name];
  }
  for (const auto& [name, mode] : list) EXPECT_TRUE(fs::exists(kDir + "/" + name + ".args")) << name << " is listed but has no .args";
  EXPECT_GE(list.size(), 21u);
}

TEST_P(GoldenLaunch, QemuAcceptsTheArgv) {
  const std::string name = GetParam();
  std::string mode = launchList()[name];
  if (mode == "needs-kvm") {
    std::string problem = kvmProblem();
    if (!problem.empty()) {
      // Not a skip: the case is about KVM and this host has none QEMU can use.
      std::printf("[ not launched ] %s: needs KVM with -cpu host; here: %s\n", name.c_str(), problem.c_str());
      return;
    }
  }
  auto text = fs::readFile(kDir + "/" + name + ".args");
  ASSERT_TRUE(text.ok());
  auto argv = split(*text, '\n', true);
  ASSERT_FALSE(argv.empty());
  ASSERT_NE(std::find(argv.begin(), argv.end(), "-S"), argv.end()) << "the golden must start QEMU paused";
  prepare(argv);
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_FALSE(qmpPath_.empty()) << "no QMP chardev in the golden";

  // fds_ are placed at 3, 4, ... in order: a gap gets /dev/null.
  std::vector<fs::UniqueFd> fillers;
  SpawnOptions so;
  int top = fds_.empty() ? 2 : fds_.rbegin()->first;
  for (int n = 3; n <= top; ++n) {
    if (fds_.count(n)) {
      so.passFds.push_back(fds_[n].get());
    } else {
      fillers.emplace_back(::open("/dev/null", O_RDWR | O_CLOEXEC));
      so.passFds.push_back(fillers.back().get());
    }
  }
  fs::UniqueFd log(::open((tmp_ + "/qemu.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  so.stdoutFd = log.get();
  so.cwd = cwd();
  auto t0 = SteadyClock::now();
  auto pid = spawnProcess(argv, so);
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  pid_ = *pid;

  auto conn = connectUnix(qmpPath_, Deadline::after(Millis(5000)));
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  std::string buf;
  auto greeting = qmpRead(conn->get(), buf, Deadline::after(Millis(30000)));
  ASSERT_TRUE(greeting.ok()) << greeting.error().message << "\nQEMU log:\n" << qemuLog();
  ASSERT_TRUE(greeting->contains("QMP")) << greeting->dump();
  auto caps = qmpCall(conn->get(), buf, "qmp_capabilities");
  ASSERT_TRUE(caps.ok()) << caps.error().message << "\nQEMU log:\n" << qemuLog();
  auto status = qmpCall(conn->get(), buf, "query-status");
  ASSERT_TRUE(status.ok()) << status.error().message << "\nQEMU log:\n" << qemuLog();
  bool incoming = std::find(argv.begin(), argv.end(), "-incoming") != argv.end();
  EXPECT_EQ(status->value("status", ""), incoming ? "inmigrate" : "prelaunch") << status->dump();
  EXPECT_FALSE(status->value("running", true));
  double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  (void)qmpCall(conn->get(), buf, "quit");
  auto st = ChildReaper::wait(pid_, Deadline::after(Millis(10000)));
  ASSERT_TRUE(st.ok()) << "QEMU did not exit after quit";
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << describeWaitStatus(*st) << "\nQEMU log:\n" << qemuLog();
  std::printf("[ launched ] %s: QMP answered after %.0f ms\n", name.c_str(), ms);
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenLaunch, ::testing::ValuesIn(goldensWithArgs()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return "g" + n;
                         });

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = testutil::missingRoot("a network namespace for taps, loop devices, tgtd"); !missing.empty()) {
    testutil::requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  // Taps, fixed ports (VNC, SPICE, hostfwd, iSCSI 3260, NFS 111/2049) and rpcbind stay in here.
  if (auto st = testutil::enterPrivateNamespaces(); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
