// Offline image customisation through vmm-customize and a real libguestfs appliance (SLOW:
// each launch is 10-30 s under TCG; ctest label "slow"). The appliance's kernel comes from
// scripts/setup-guestfs.sh (the setup.guestfs fixture). Results are read back independently
// with debugfs. The helper runs sandboxed (as vmmd runs it: an unprivileged uid, a private
// root) unless a test says otherwise. Needs root; skipped when the setup is missing.
//
// Leak checks (TearDown): the helper keeps libguestfs's temporary files on a tmpfs that only
// its own mount namespace sees, freed when the last process of that namespace is gone. So what
// can leak is a process - the helper, supermin, libguestfs's QEMU and recovery process - and, if
// the isolation failed, libguestfs's directories in the host's /tmp: both are checked.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "storage/customize/guestfs_customizer.h"
#include "tests/support/process_scan.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"

using namespace vmm;
using namespace vmm::customize;

namespace {

Deadline dl() { return Deadline::after(Millis(300000)); }

constexpr uid_t kSandboxUid = 1001065535;

// The directories the current test made (its images are in them).
std::vector<std::string>& testDirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/vmm-guestfs-test-XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
    if (!path_.empty()) testDirs().push_back(path_);
  }
  ~TempDir() {
    if (!path_.empty()) (void)fs::removeTree(path_);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::set<std::string> libguestfsTempDirs() {
  std::set<std::string> out;
  auto names = fs::listDir("/tmp");
  if (names.ok())
    for (const auto& n : *names)
      if (startsWith(n, "libguestfs")) out.insert(n);
  return out;
}

Result<CommandResult> run(const std::vector<std::string>& argv) {
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(60000));
  return runChecked(argv, opts);
}

// A 64 MiB ext4 image (no partition table) holding /etc/passwd, /etc/hosts and busybox as
// /bin/sh, so that commands can run inside it.
std::string makeImage(const TempDir& dir) {
  std::string root = dir / "root";
  EXPECT_TRUE(fs::makeDirs(root + "/etc").ok());
  EXPECT_TRUE(fs::makeDirs(root + "/bin").ok());
  EXPECT_TRUE(fs::makeDirs(root + "/root").ok());
  EXPECT_TRUE(fs::writeFileAtomic(root + "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n").ok());
  EXPECT_TRUE(fs::writeFileAtomic(root + "/etc/group", "root:x:0:\nalice:x:1000:\nweb:x:33:\n").ok());
  EXPECT_TRUE(fs::writeFileAtomic(root + "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 old-name\n").ok());
  EXPECT_TRUE(run({"cp", "/bin/busybox", root + "/bin/busybox"}).ok());
  EXPECT_EQ(symlink("busybox", (root + "/bin/sh").c_str()), 0);
  std::string img = dir / "disk.raw";
  EXPECT_TRUE(run({"truncate", "-s", "64M", img}).ok());
  auto mk = run({"mkfs.ext4", "-q", "-F", "-d", root, img});
  EXPECT_TRUE(mk.ok()) << (mk.ok() ? "" : mk.error().message);
  return img;
}

CustomizeSpec rawWithHostname(const std::string& hostname) {
  CustomizeSpec spec;
  spec.format = "raw";
  spec.hostname = hostname;
  return spec;
}

std::string debugfsCat(const std::string& img, const std::string& path) {
  auto r = run({"debugfs", "-R", "cat " + path, img});
  return r.ok() ? r->out : "<" + r.error().message + ">";
}

// "Mode:  0640" and "User:  1000   Group:    33" from debugfs stat.
std::string debugfsStat(const std::string& img, const std::string& path) {
  auto r = run({"debugfs", "-R", "stat " + path, img});
  return r.ok() ? r->out : "";
}

class GuestfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(geteuid() == 0, "root (the customisation helper mounts and unshares)");
    auto rt = GuestfsRuntime::fromEnvFile(VMM_GUESTFS_ENV, VMM_CUSTOMIZE_HELPER);
    VMM_REQUIRE(rt.ok(), "the libguestfs setup (run scripts/setup-guestfs.sh): " << rt.error().message);
    runtime_ = *rt;
    runtime_.onSpawn = [this](pid_t pid) {
      helpers_.push_back(pid);
      latestHelper_ = pid;
    };
    testDirs().clear();
    sandboxRoot_ = std::make_unique<TempDir>();
    runtime_.sandbox = GuestfsSandbox{kSandboxUid, sandboxRoot_->path()};
    before_ = libguestfsTempDirs();
  }
  void TearDown() override {
    if (runtime_.helperPath.empty()) return;
    expectNoProcessLeft();
    auto after = libguestfsTempDirs();
    for (const auto& d : after) EXPECT_TRUE(before_.count(d)) << "left behind in the host's /tmp: /tmp/" << d;
  }

  // customizeImage returns only once nothing of the helper's session runs: checked at once,
  // with no grace period. A process is the test's when it is in a helper's session, below this
  // test process, or has one of the test's directories in its command line (QEMU's drive).
  void expectNoProcessLeft() {
    auto all = testutil::listProcesses();
    std::vector<testutil::ProcessEntry> left;
    for (const auto& p : all) {
      bool mine = std::count(helpers_.begin(), helpers_.end(), p.sid) > 0 || testutil::descendsFrom(all, p.pid, ::getpid());
      for (const auto& d : testDirs()) mine = mine || p.argvContains(d);
      if (mine) left.push_back(p);
    }
    EXPECT_TRUE(left.empty()) << "processes of this test still run:" << testutil::describe(left);
  }

  // "comm uid CapEff" of the helper and its QEMU, from the next helper's spawn on.
  std::unique_ptr<testutil::IdentitySampler> sampleHelperSession() {
    latestHelper_ = 0;
    return std::make_unique<testutil::IdentitySampler>(
        [this] {
          pid_t session = latestHelper_;
          return session ? sessionMembers(session) : std::vector<pid_t>{};
        },
        std::vector<std::string>{"vmm-customize", "qemu-system"});
  }

  GuestfsRuntime runtime_;
  std::unique_ptr<TempDir> sandboxRoot_;
  std::vector<pid_t> helpers_;  // each helper's pid = its session id
  std::atomic<pid_t> latestHelper_{0};
  std::set<std::string> before_;
};

}  // namespace

TEST_F(GuestfsTest, CustomisesRawImageAndReadsBackWithDebugfs) {
  TempDir dir;
  std::string img = makeImage(dir);
  CustomizeSpec spec;
  spec.format = "raw";
  spec.files.push_back({"/etc/vmm-test", "known content\nline two\n", 0640, "alice:web"});
  spec.files.push_back({"/opt/app/deep/config.bin", std::string("\0\x01\xff binary", 10), 0600, "1000:1000"});
  spec.sshKeys.push_back({"root", {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI vmm-test"}});
  spec.sshKeys.push_back({"alice", {"ssh-rsa AAAAB3 alice@laptop", "ssh-rsa AAAAB3 alice@laptop"}});
  spec.hostname = "web1.example.test";
  spec.commands = {"echo ran > /root/ran", "read h < /etc/hostname; echo hello-from-$h"};

  auto t0 = SteadyClock::now();
  auto report = customizeImage(img, spec, runtime_, dl());
  auto wall = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  ASSERT_TRUE(report.ok()) << report.error().message;
  std::printf("guestfs: launch %lld ms, total %lld ms (helper wall %lld ms), root %s, os %s\n",
              static_cast<long long>(report->launchMillis), static_cast<long long>(report->totalMillis),
              static_cast<long long>(wall), report->rootDevice.c_str(), report->osType.c_str());
  RecordProperty("launch_ms", std::to_string(report->launchMillis));
  RecordProperty("total_ms", std::to_string(report->totalMillis));
  EXPECT_GT(report->launchMillis, 0);
  EXPECT_EQ(report->rootDevice, "/dev/sda");
  ASSERT_EQ(report->commandOutputs.size(), 2u);
  EXPECT_EQ(report->commandOutputs[1], "hello-from-web1.example.test\n");

  EXPECT_EQ(debugfsCat(img, "/etc/vmm-test"), "known content\nline two\n");
  auto st = debugfsStat(img, "/etc/vmm-test");
  EXPECT_NE(st.find("Mode:  0640"), std::string::npos) << st;
  EXPECT_NE(st.find("User:  1000   Group:    33"), std::string::npos) << st;
  EXPECT_EQ(debugfsCat(img, "/opt/app/deep/config.bin"), std::string("\0\x01\xff binary", 10));
  EXPECT_EQ(debugfsCat(img, "/root/.ssh/authorized_keys"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI vmm-test\n");
  EXPECT_NE(debugfsStat(img, "/root/.ssh/authorized_keys").find("Mode:  0600"), std::string::npos);
  EXPECT_NE(debugfsStat(img, "/root/.ssh").find("Mode:  0700"), std::string::npos);
  EXPECT_EQ(debugfsCat(img, "/home/alice/.ssh/authorized_keys"), "ssh-rsa AAAAB3 alice@laptop\n");  // once
  EXPECT_NE(debugfsStat(img, "/home/alice/.ssh/authorized_keys").find("User:  1000"), std::string::npos);
  EXPECT_EQ(debugfsCat(img, "/etc/hostname"), "web1.example.test\n");
  EXPECT_EQ(debugfsCat(img, "/etc/hosts"), "127.0.0.1 localhost\n127.0.1.1\tweb1.example.test web1\n");
  EXPECT_EQ(debugfsCat(img, "/root/ran"), "ran\n");
}

TEST_F(GuestfsTest, DeadlineKillsTheApplianceAndItsProcessGroup) {
  TempDir dir;
  std::string img = makeImage(dir);
  CustomizeSpec spec = rawWithHostname("never");
  pid_t group = 0;
  auto record = runtime_.onSpawn;
  runtime_.onSpawn = [&](pid_t pid) {
    group = pid;
    record(pid);
  };
  // Long enough for supermin and QEMU to start, far too short for the appliance to boot.
  auto t0 = SteadyClock::now();
  auto r = customizeImage(img, spec, runtime_, Deadline::after(Millis(4000)));
  auto took = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout) << r.error().message;
  EXPECT_LT(took, 9000);
  ASSERT_GT(group, 0);
  // Orphaned members are reaped by init; give it a moment.
  bool gone = testutil::waitFor([&] { return ::kill(-group, 0) != 0 && errno == ESRCH; }, Millis(5000));
  EXPECT_TRUE(gone) << "process group " << group << " still has members";
  EXPECT_EQ(debugfsCat(img, "/etc/hostname").find("never"), std::string::npos);
}

TEST_F(GuestfsTest, NotAnImageGivesAClearError) {
  TempDir dir;
  std::string text = dir / "notes.txt";
  ASSERT_TRUE(fs::writeFileAtomic(text, std::string(1 << 20, 'x')).ok());
  CustomizeSpec spec;
  spec.format = "raw";
  spec.hostname = "web1";
  auto r = customizeImage(text, spec, runtime_, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << r.error().message;
  EXPECT_NE(r.error().message.find("no filesystem"), std::string::npos) << r.error().message;

  // A text file claimed to be qcow2: QEMU's own complaint comes back.
  spec.format = "qcow2";
  r = customizeImage(text, spec, runtime_, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("qcow2"), std::string::npos) << r.error().message;
  std::printf("qcow2 error: %s\n", r.error().message.c_str());
}

TEST_F(GuestfsTest, BadRequestsFailBeforeAnyLaunch) {
  TempDir dir;
  CustomizeSpec spec;
  auto r = customizeImage(dir / "missing.raw", spec, runtime_, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("format"), std::string::npos) << r.error().message;  // never detected
  spec.format = "raw";
  r = customizeImage(dir / "missing.raw", spec, runtime_, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::not_found);
  spec.files.push_back({"relative/path", "x", 0644, ""});
  r = customizeImage(dir / "missing.raw", spec, runtime_, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  spec.files.clear();
  spec.sshKeys.push_back({"root", {"ssh-rsa A\nssh-rsa B"}});
  r = customizeImage(dir / "missing.raw", spec, runtime_, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  spec.sshKeys.clear();
  GuestfsRuntime noHelper = runtime_;
  noHelper.helperPath = dir / "no-such-helper";
  ASSERT_TRUE(fs::writeFileAtomic(dir / "x.raw", "x").ok());
  r = customizeImage(dir / "x.raw", spec, noHelper, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
}

TEST_F(GuestfsTest, SandboxedHelperRunsUnprivilegedAndSeesOnlyTheLayersItIsGiven) {
  TempDir dir;  // 0700: nothing in it is any other uid's to open
  std::string base = makeImage(dir), overlay = dir / "overlay.qcow2";
  ASSERT_TRUE(run({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay}).ok());
  auto watcher = sampleHelperSession();
  CustomizeSpec spec;
  spec.format = "qcow2";
  spec.files.push_back({"/etc/layered", "through the chain\n", 0644, ""});
  auto r = customizeImage(DiskToCustomize(overlay, {base}), spec, runtime_, dl());
  auto seen = watcher->stop();
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::string unprivileged = " " + std::to_string(kSandboxUid) + " 0000000000000000";
  EXPECT_TRUE(seen.count("vmm-customize" + unprivileged)) << join(std::vector<std::string>(seen.begin(), seen.end()), "; ");
  EXPECT_TRUE(seen.count("qemu-system-x86" + unprivileged)) << join(std::vector<std::string>(seen.begin(), seen.end()), "; ");
  for (const auto& s : seen) EXPECT_NE(s.find(unprivileged), std::string::npos) << "privileged: " << s;
  // Written to the overlay, the base unchanged; both still root's on disk.
  EXPECT_EQ(debugfsCat(base, "/etc/layered").find("through"), std::string::npos);
  ASSERT_TRUE(run({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay, dir / "flat.raw"}).ok());
  EXPECT_EQ(debugfsCat(dir / "flat.raw", "/etc/layered"), "through the chain\n");
  for (const auto& path : {base, overlay}) {
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << path;
  }

  // Hostile: the same overlay without its base. The header still names the root-only file,
  // which a root appliance would open; the sandbox has no such file.
  spec.files = {{"/etc/leaked", "x", 0644, ""}};
  r = customizeImage(overlay, spec, runtime_, dl());
  ASSERT_FALSE(r.ok()) << "the appliance opened a backing file it was not given";
  EXPECT_NE(r.error().message.find("No such file"), std::string::npos) << r.error().message;
}

// A block device keeps its owner and mode (root's, 0600 here without udev): the helper, still
// unprivileged, opens a node of its own for the same device in its private root.
TEST_F(GuestfsTest, SandboxCustomisesABlockDeviceThroughANodeOfItsOwn) {
  TempDir dir;
  std::string img = makeImage(dir);
  auto loop = run({"losetup", "--find", "--show", img});
  ASSERT_TRUE(loop.ok()) << loop.error().message;
  std::string device(trim(loop->out));
  struct Detach {
    std::string device;
    ~Detach() { (void)run({"losetup", "-d", device}); }
  } detach{device};
  struct stat before{};
  ASSERT_EQ(::stat(device.c_str(), &before), 0);
  auto watcher = sampleHelperSession();
  auto r = customizeImage(device, rawWithHostname("on-a-device"), runtime_, dl());
  auto seen = watcher->stop();
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::string unprivileged = " " + std::to_string(kSandboxUid) + " 0000000000000000";
  EXPECT_TRUE(seen.count("qemu-system-x86" + unprivileged)) << join(std::vector<std::string>(seen.begin(), seen.end()), "; ");
  for (const auto& s : seen) EXPECT_NE(s.find(unprivileged), std::string::npos) << "privileged: " << s;
  struct stat after{};
  ASSERT_EQ(::stat(device.c_str(), &after), 0);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_gid, before.st_gid);
  EXPECT_EQ(after.st_mode, before.st_mode);
  (void)run({"losetup", "-d", device});
  EXPECT_EQ(debugfsCat(img, "/etc/hostname"), "on-a-device\n");
}

TEST_F(GuestfsTest, SandboxNeedsTheFixedAppliance) {
  TempDir dir;
  std::string img = makeImage(dir);
  CustomizeSpec spec = rawWithHostname("x");
  GuestfsRuntime supermin = runtime_;
  supermin.env.erase("LIBGUESTFS_PATH");
  auto r = customizeImage(img, spec, supermin, dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable) << r.error().message;
  EXPECT_NE(r.error().message.find("setup-guestfs.sh"), std::string::npos) << r.error().message;
  EXPECT_NE(debugfsCat(img, "/etc/hostname"), "x\n");
}
