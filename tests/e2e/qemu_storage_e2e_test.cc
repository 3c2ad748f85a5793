// Integration: real QEMU (TCG) guests whose disks are volumes of real pools - an iSCSI LUN on
// a tgtd target (with CHAP), a file on an nfs-ganesha export reached by QEMU's own NFS client,
// an LVM logical volume read straight from its physical volume (no device-mapper here), and a
// linked clone in a dir pool. Each guest reads a marker the test uploaded through the API and
// writes one back that the test downloads again.
//
// The binary runs in private network and mount namespaces (made in main()): the iSCSI and NFS
// servers listen on a loopback nobody else sees.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/random.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
#include "tests/support/loop_device.h"
#include "tests/support/nfs_server.h"
#include "tests/support/require.h"
#include "tests/support/tgt_target.h"
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

constexpr uint64_t kDiskSize = 16 << 20;
constexpr uint64_t kGuestWriteOffset = 1 << 20;

// A disk image: `marker` at offset 0, zeros elsewhere.
std::string imageWithMarker(const std::string& marker, uint64_t size) {
  std::string data(size, '\0');
  data.replace(0, marker.size(), marker);
  return data;
}

class QemuStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    tmp = "/tmp/vmm-qs-" + randomHex(6);
    ASSERT_TRUE(fs::makeDirs(tmp, 0700).ok());
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
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
      // Pools with storage this test built (an LVM volume group) are taken apart again.
      for (const auto& [pool, vol] : volumesToDelete) (void)rpc->call("volume.delete", {{"pool", pool}, {"name", vol}});
      for (const auto& pool : poolsToDelete) (void)rpc->call("pool.delete", {{"name", pool}, {"storage", true}});
    }
    for (pid_t pid : qemuPids)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    rpc.reset();
    vmmd.reset();
    if (!tmp.empty()) (void)runCommand({"rm", "-rf", tmp}, RunOptions());
  }

  json call(const std::string& method, const json& params) {
    auto r = rpc->callAndWait(method, params, Deadline::after(Millis(60000)));
    EXPECT_TRUE(r.ok()) << method << ": " << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json();
  }

  void upload(const std::string& pool, const std::string& volume, const std::string& data) {
    std::string file = tmp + "/upload-" + randomHex(4);
    ASSERT_TRUE(fs::writeFileAtomic(file, data).ok());
    fs::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    auto r = rpc->uploadVolume(pool, volume, fd.get(), data.size(), nullptr);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  std::string download(const std::string& pool, const std::string& volume) {
    std::string file = tmp + "/download-" + randomHex(4);
    fs::UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    auto r = rpc->downloadVolume(pool, volume, fd.get(), nullptr);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    auto data = fs::readFile(file, 64 << 20);
    return data.ok() ? *data : std::string();
  }

  // Boots a guest whose first disk is pool/volume and returns QEMU's pid.
  pid_t bootWithDisk(const std::string& name, const std::string& pool, const std::string& volume) {
    json def = {{"name", name},
                {"type", "qemu"},
                {"vcpus", 1},
                {"memory", "256MiB"},
                {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"},
                          {"cmdline", "console=ttyS0 panic=-1 quiet tg.marker=MARKER-" + name}}},
                {"disks", {{{"source", {{"pool", pool}, {"volume", volume}}}}}}};
    auto created = rpc->call("domain.create", {{"definition", def}});
    EXPECT_TRUE(created.ok()) << (created.ok() ? "" : created.error().message);
    if (!created.ok()) return -1;
    domains.push_back(name);
    auto started = rpc->callAndWait("domain.start", {{"name", name}}, Deadline::after(Millis(60000)));
    EXPECT_TRUE(started.ok()) << (started.ok() ? "" : started.error().message);
    if (!started.ok()) return -1;
    auto info = rpc->call("domain.get", {{"name", name}});
    pid_t pid = info.ok() ? (*info)["runtime"].value("pid", -1) : -1;
    if (pid > 0) qemuPids.insert(pid);
    return pid;
  }

  // Runs a shell command in the guest through the agent (retrying while the agent starts).
  VmctlResult guestShell(const std::string& name, const std::string& script) {
    VmctlResult r;
    waitFor([&] {
      r = vmmd->vmctl({"exec", name, "--", "sh", "-c", script});
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(60000), Millis(300));
    return r;
  }

  // The guest sees the marker at the start of /dev/vda and writes its own at 1 MiB.
  void guestReadsAndWrites(const std::string& name, const std::string& marker, const std::string& reply) {
    auto r = guestShell(name, "head -c " + std::to_string(marker.size()) + " /dev/vda");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(r.out, marker);
    r = guestShell(name, "printf " + reply + " | dd of=/dev/vda bs=1 seek=" + std::to_string(kGuestWriteOffset) +
                             " conv=notrunc,fsync 2>/dev/null && echo written");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(trim(r.out), "written");
    auto destroyed = rpc->call("domain.destroy", {{"name", name}});
    ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  }

  std::string tmp;
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<std::string> domains;
  std::vector<std::pair<std::string, std::string>> volumesToDelete;
  std::vector<std::string> poolsToDelete;
  std::set<pid_t> qemuPids;
};

TEST_F(QemuStorageTest, GuestBootsWithDiskOnIscsiLunWithChap) {
  VMM_REQUIRE(testutil::TgtTarget::available(), testutil::TgtTarget::missing());
  std::string lunFile = tmp + "/lun1.img";
  ASSERT_TRUE(fs::writeFileAtomic(lunFile, std::string()).ok());
  ASSERT_EQ(::truncate(lunFile.c_str(), kDiskSize), 0);
  testutil::TgtTarget tgt;
  ASSERT_TRUE(tgt.start().ok()) << tgt.log();
  std::string iqn = "iqn.2026-11.io.vmm.test:qemu";
  auto tid = tgt.addTarget(iqn);
  ASSERT_TRUE(tid.ok()) << tid.error().message;
  ASSERT_TRUE(tgt.addLun(*tid, 1, lunFile).ok());
  std::string secret = "Chap-" + randomHex(8);
  ASSERT_TRUE(tgt.setChap(*tid, "vmmuser", secret).ok());

  json pool = {{"name", "san"}, {"type", "iscsi"},
               {"source", {{"host", tgt.host()}, {"port", tgt.port()}, {"target", iqn}, {"username", "vmmuser"}, {"secret", secret}}}};
  call("pool.create", {{"definition", pool}});
  std::string marker = "ISCSI-" + randomHex(8);
  upload("san", "lun-1", imageWithMarker(marker, kDiskSize));

  pid_t pid = bootWithDisk("iscsi-guest", "san", "lun-1");
  ASSERT_GT(pid, 0);
  // The CHAP secret reaches QEMU in a file given to -object secret, never on its command line.
  auto cmdline = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
  ASSERT_TRUE(cmdline.ok());
  EXPECT_EQ(cmdline->find(secret), std::string::npos);
  EXPECT_NE(cmdline->find("\"driver\":\"iscsi\""), std::string::npos);
  EXPECT_EQ(vmmd->log().find(secret), std::string::npos);

  guestReadsAndWrites("iscsi-guest", marker, "FROM-ISCSI-GUEST");
  auto disk = download("san", "lun-1");
  ASSERT_EQ(disk.size(), kDiskSize);
  EXPECT_EQ(disk.substr(kGuestWriteOffset, 16), "FROM-ISCSI-GUEST");
  // Only the test's own bytes: the rest of the LUN is untouched.
  EXPECT_EQ(disk.substr(0, marker.size()), marker);
  (void)rpc->call("domain.delete", {{"name", "iscsi-guest"}});
  (void)rpc->call("pool.delete", {{"name", "san"}});
}

TEST_F(QemuStorageTest, GuestBootsWithDiskOnNfsLinkedClone) {
  VMM_REQUIRE(testutil::NfsServer::available(), testutil::NfsServer::missing());
  std::string exportDir = tmp + "/export";
  ASSERT_TRUE(fs::makeDirs(exportDir, 0777).ok());
  testutil::NfsServer nfs;
  ASSERT_TRUE(nfs.start(exportDir).ok()) << nfs.log();

  json pool = {{"name", "shared"}, {"type", "netfs"}, {"source", {{"host", nfs.host()}, {"dir", nfs.exportPath()}}}};
  call("pool.create", {{"definition", pool}});
  call("volume.create", {{"pool", "shared"}, {"volume", {{"name", "base.raw"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  std::string marker = "NFS-" + randomHex(8);
  upload("shared", "base.raw", imageWithMarker(marker, kDiskSize));
  // The guest runs on a qcow2 overlay of the base, both on the NFS server.
  call("volume.clone", {{"pool", "shared"}, {"name", "base.raw"}, {"target", "vm.qcow2"}, {"linked", true}});

  pid_t pid = bootWithDisk("nfs-guest", "shared", "vm.qcow2");
  ASSERT_GT(pid, 0);
  auto cmdline = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
  ASSERT_TRUE(cmdline.ok());
  EXPECT_NE(cmdline->find("\"driver\":\"nfs\""), std::string::npos);
  guestReadsAndWrites("nfs-guest", marker, "FROM-NFS-GUEST");

  // The write went to the overlay on the server; the base is unchanged.
  auto base = download("shared", "base.raw");
  EXPECT_EQ(base.substr(kGuestWriteOffset, 14), std::string(14, '\0'));
  auto overlay = fs::readFile(exportDir + "/vm.qcow2", 64 << 20);
  ASSERT_TRUE(overlay.ok());
  EXPECT_NE(overlay->find("FROM-NFS-GUEST"), std::string::npos);
  // Taken apart while the server is still up (a pool whose server vanished stays in error).
  call("domain.delete", {{"name", "nfs-guest"}});
  domains.clear();
  call("volume.delete", {{"pool", "shared"}, {"name", "vm.qcow2"}});
  call("volume.delete", {{"pool", "shared"}, {"name", "base.raw"}});
  call("pool.delete", {{"name", "shared"}});
}

TEST_F(QemuStorageTest, GuestBootsWithDiskOnLogicalVolumeWithoutDeviceMapper) {
  VMM_REQUIRE(testutil::haveTool("lvm"), testutil::missingTools({"lvm"}, "lvm2"));
  auto loop = testutil::LoopDevice::create(tmp + "/pv.img", 64 << 20);
  ASSERT_TRUE(loop.ok()) << loop.error().message;
  std::string vg = "vmmqs" + randomHex(4);
  json pool = {{"name", "lvm"}, {"type", "logical"}, {"source", {{"devices", {(*loop)->device()}}, {"vg_name", vg}}}};
  call("pool.create", {{"definition", pool}, {"build", true}});
  poolsToDelete.push_back("lvm");
  call("volume.create", {{"pool", "lvm"}, {"volume", {{"name", "root"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  volumesToDelete.push_back({"lvm", "root"});
  std::string marker = "LVM-" + randomHex(8);
  upload("lvm", "root", imageWithMarker(marker, kDiskSize));

  pid_t pid = bootWithDisk("lvm-guest", "lvm", "root");
  ASSERT_GT(pid, 0);
  auto cmdline = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
  ASSERT_TRUE(cmdline.ok());
  EXPECT_NE(cmdline->find("\"driver\":\"host_device\""), std::string::npos);
  EXPECT_NE(cmdline->find("\"offset\":"), std::string::npos);
  guestReadsAndWrites("lvm-guest", marker, "FROM-LVM-GUEST");
  auto disk = download("lvm", "root");
  ASSERT_EQ(disk.size(), kDiskSize);
  EXPECT_EQ(disk.substr(kGuestWriteOffset, 14), "FROM-LVM-GUEST");
  (void)rpc->call("domain.delete", {{"name", "lvm-guest"}});
  domains.clear();
}

TEST_F(QemuStorageTest, GuestBootsFromLinkedCloneInDirPoolAndVolumeInUseIsKept) {
  call("volume.create", {{"pool", "default"}, {"volume", {{"name", "golden.raw"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  std::string marker = "DIR-" + randomHex(8);
  upload("default", "golden.raw", imageWithMarker(marker, kDiskSize));
  call("volume.clone", {{"pool", "default"}, {"name", "golden.raw"}, {"target", "ci-1.qcow2"}, {"linked", true}});
  ASSERT_GT(bootWithDisk("ci-1", "default", "ci-1.qcow2"), 0);
  // In use by a running guest, and the base of a clone: neither can be deleted.
  auto del = rpc->call("volume.delete", {{"pool", "default"}, {"name", "ci-1.qcow2"}});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict);
  EXPECT_NE(del.error().message.find("ci-1"), std::string::npos) << del.error().message;
  del = rpc->call("volume.delete", {{"pool", "default"}, {"name", "golden.raw"}});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict);
  guestReadsAndWrites("ci-1", marker, "FROM-DIR-GUEST");
  auto golden = download("default", "golden.raw");
  EXPECT_EQ(golden.substr(kGuestWriteOffset, 14), std::string(14, '\0'));
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = vmm::testutil::missingRoot("network and mount namespaces, loop devices, tgtd"); !missing.empty()) {
    vmm::testutil::requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  if (auto st = testutil::enterPrivateNamespaces(); !st.ok()) {
    std::cerr << st.error().message << "\n";
    return 1;
  }
  return RUN_ALL_TESTS();
}

namespace {

// A hung NFS server costs only the calls that need it, bounded by the storage deadline: the
// pool goes to the error state, everything else keeps answering, and a refresh after the
// server is back makes the pool usable again.
TEST(NfsHang, HungServerPutsThePoolInErrorWithoutBlockingTheDaemon) {
  VMM_REQUIRE(testutil::NfsServer::available(), testutil::NfsServer::missing());
  std::string tmp = "/tmp/vmm-qs-hang-" + randomHex(6);
  ASSERT_TRUE(fs::makeDirs(tmp + "/export", 0777).ok());
  ASSERT_TRUE(fs::writeFileAtomic(tmp + "/vmmd.toml", "[storage]\nio_timeout = \"2s\"\n").ok());
  testutil::NfsServer nfs;
  ASSERT_TRUE(nfs.start(tmp + "/export").ok()) << nfs.log();
  {
    VmmdProcess vmmd("", {"--drivers", "test", "--config", tmp + "/vmmd.toml"});
    ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
    auto rpc = vmmd.connect();
    ASSERT_TRUE(rpc.ok());
    auto& c = **rpc;
    json pool = {{"name", "shared"}, {"type", "netfs"}, {"source", {{"host", nfs.host()}, {"dir", nfs.exportPath()}}}};
    ASSERT_TRUE(c.call("pool.create", {{"definition", pool}}).ok());

    ASSERT_TRUE(nfs.pause().ok());
    auto hung = std::async(std::launch::async, [&] {
      auto other = vmmd.connect();
      auto t0 = SteadyClock::now();
      auto r = (*other)->call("volume.create", {{"pool", "shared"}, {"volume", {{"name", "v1"}, {"capacity", "1M"}, {"format", "raw"}}}});
      return std::make_pair(r.ok() ? ErrorCode::internal : r.error().code, SteadyClock::now() - t0);
    });
    // Meanwhile the daemon answers at once.
    std::this_thread::sleep_for(Millis(300));
    for (const char* method : {"pool.list", "domain.list", "host.info"}) {
      auto t0 = SteadyClock::now();
      ASSERT_TRUE(c.call(method, json::object()).ok()) << method;
      EXPECT_LT(SteadyClock::now() - t0, Millis(500)) << method << " waited for the hung server";
    }
    auto [code, took] = hung.get();
    EXPECT_EQ(code, ErrorCode::timeout);
    EXPECT_LT(took, Millis(6000));
    auto view = c.call("pool.get", {{"name", "shared"}});
    ASSERT_TRUE(view.ok());
    EXPECT_EQ((*view)["state"], "error") << view->dump();
    EXPECT_FALSE((*view).value("error", "").empty());

    ASSERT_TRUE(nfs.resume().ok());
    auto refreshed = c.call("pool.refresh", {{"name", "shared"}});
    ASSERT_TRUE(refreshed.ok()) << refreshed.error().message;
    EXPECT_EQ((*refreshed)["state"], "active");
    EXPECT_TRUE(c.call("volume.create", {{"pool", "shared"}, {"volume", {{"name", "v2"}, {"capacity", "1M"}, {"format", "raw"}}}}).ok());
    EXPECT_TRUE(c.call("volume.delete", {{"pool", "shared"}, {"name", "v2"}}).ok());
    EXPECT_TRUE(c.call("pool.delete", {{"name", "shared"}}).ok());
  }
  nfs.stop();
  (void)runCommand({"rm", "-rf", tmp}, RunOptions());
}

}  // namespace
