// Integration: real QEMU (TCG) guests that BOOT from volumes of real pools - an iSCSI LUN on a
// tgtd target (with CHAP), a linked clone on an nfs-ganesha export reached by QEMU's own NFS
// client, an LVM logical volume read straight from its physical volume (no device-mapper here),
// and a linked clone in a dir pool. The test makes a bootable disk image (MBR + syslinux + the
// test guest's kernel and initramfs), puts it into the volume through vmm (upload, or a linked
// clone of an uploaded base) and defines a domain with no kernel at all: SeaBIOS loads syslinux
// from the volume, and the guest prints the marker of that disk's syslinux.cfg. The guest then
// reads a data marker from the volume and writes one back that the test downloads again.
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
#include "tests/support/process_scan.h"
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

// The bootable disk (makeBootableDisk): an MBR, one FAT16 partition from 1 MiB to 25 MiB, then
// the test's data marker and the guest's reply in the unpartitioned tail.
constexpr uint64_t kDiskSize = 32 << 20;
constexpr uint64_t kPartitionStart = 1 << 20;
constexpr uint64_t kPartitionSize = 24 << 20;
constexpr uint64_t kDataOffset = 26 << 20;
constexpr uint64_t kGuestWriteOffset = 28 << 20;
constexpr const char* kSyslinuxMbr = "/usr/lib/SYSLINUX/mbr.bin";

// What makeBootableDisk runs (absolute paths: /usr/sbin may be missing from PATH); the first
// one missing, or "".
std::string missingBootDiskTool() {
  for (const char* p : {"/usr/sbin/sfdisk", "/usr/sbin/mkfs.vfat", "/usr/bin/mcopy", "/usr/bin/syslinux", kSyslinuxMbr})
    if (!fs::exists(p)) return p;
  if (!fs::exists(guestDir() + "/vmlinuz")) return guestDir() + "/vmlinuz (rebuild the test guest)";
  return "";
}

Status runStep(const std::vector<std::string>& argv, const std::string& input = "") {
  RunOptions opts;
  opts.stdinData = input;
  opts.deadline = Deadline::after(Millis(30000));
  VMM_ASSIGN(auto r, runCommand(argv, opts));
  if (!r.success()) return internalError(join(argv, " ") + ": " + r.describe() + " " + r.err);
  return {};
}

// A raw disk a BIOS boots by itself: syslinux's MBR code, one active FAT16 partition holding
// syslinux, the test guest's bzImage and initramfs, and a syslinux.cfg whose APPEND line carries
// `bootMarker` (the guest's /init prints its tg.marker: seeing it proves the kernel was loaded
// from this disk with this disk's command line). `dataMarker` goes to kDataOffset. Built on the
// image file alone (mtools, syslinux --offset): no loop device, no mount.
Status makeBootableDisk(const std::string& path, const std::string& bootMarker, const std::string& dataMarker) {
  VMM_TRY(fs::writeFileAtomic(path, std::string()));
  if (::truncate(path.c_str(), kDiskSize) != 0) return systemError("truncate " + path, errno);
  VMM_TRY(runStep({"/usr/sbin/sfdisk", "-q", path}, "label: dos\nstart=" + std::to_string(kPartitionStart / 512) +
                                                         ", size=" + std::to_string(kPartitionSize / 512) + ", type=6, bootable\n"));
  VMM_TRY(runStep({"/usr/sbin/mkfs.vfat", "-F", "16", "-n", "VMMBOOT", "--offset", std::to_string(kPartitionStart / 512), path,
                   std::to_string(kPartitionSize / 1024)}));
  std::string cfg = path + ".syslinux.cfg";
  VMM_TRY(fs::writeFileAtomic(cfg, "DEFAULT guest\nPROMPT 0\nTIMEOUT 0\nLABEL guest\n  KERNEL /vmlinuz\n  INITRD /initrd\n"
                                   "  APPEND console=ttyS0 panic=-1 quiet tg.marker=" + bootMarker + "\n"));
  std::string fat = path + "@@" + std::to_string(kPartitionStart);
  VMM_TRY(runStep({"/usr/bin/mcopy", "-i", fat, guestDir() + "/vmlinuz", "::/vmlinuz"}));
  VMM_TRY(runStep({"/usr/bin/mcopy", "-i", fat, guestDir() + "/full.cpio", "::/initrd"}));
  VMM_TRY(runStep({"/usr/bin/mcopy", "-i", fat, cfg, "::/syslinux.cfg"}));
  VMM_TRY(runStep({"/usr/bin/syslinux", "--offset", std::to_string(kPartitionStart), "--install", path}));
  // The MBR's boot code is its first 440 bytes; the partition table after them stays.
  VMM_ASSIGN(auto mbr, fs::readFile(kSyslinuxMbr, 4096));
  fs::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || mbr.size() < 440 || ::pwrite(fd.get(), mbr.data(), 440, 0) != 440 ||
      ::pwrite(fd.get(), dataMarker.data(), dataMarker.size(), kDataOffset) != static_cast<ssize_t>(dataMarker.size()))
    return systemError("writing " + path, errno);
  return {};
}

class QemuStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    VMM_REQUIRE(missingBootDiskTool().empty(), missingBootDiskTool() << " (packages syslinux, mtools, dosfstools, fdisk)");
    tmp = "/tmp/vmm-qs-" + randomHex(6);
    ASSERT_TRUE(fs::makeDirs(tmp, 0700).ok());
    // Markers unique to this run: only the disk made here can show them.
    bootMarker = "BOOTED-FROM-VOLUME-" + randomHex(8);
    dataMarker = "DATA-" + randomHex(8);
    bootImage = tmp + "/boot.img";
    auto made = makeBootableDisk(bootImage, bootMarker, dataMarker);
    ASSERT_TRUE(made.ok()) << made.error().message;
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    auto started = vmmd->start();
    ASSERT_TRUE(started.ok()) << started.error().message << "\n" << vmmd->log();
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

  // The bootable image into pool/volume through vmm's volume upload.
  void uploadBootImage(const std::string& pool, const std::string& volume) {
    fs::UniqueFd fd(::open(bootImage.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    auto r = rpc->uploadVolume(pool, volume, fd.get(), kDiskSize, nullptr);
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

  std::string consoleLog(const std::string& name) {
    auto r = rpc->call("domain.console_log", {{"name", name}});
    return r.ok() ? (*r)["log"].get<std::string>() : std::string();
  }

  // Defines and starts a guest whose only disk - its boot disk - is pool/volume. The definition
  // has no kernel, initrd or command line: QEMU's BIOS must boot the volume. Returns QEMU's pid.
  pid_t bootFromVolume(const std::string& name, const std::string& pool, const std::string& volume) {
    json def = {{"name", name},
                {"type", "qemu"},
                {"vcpus", 1},
                {"memory", "256MiB"},
                {"disks", {{{"source", {{"pool", pool}, {"volume", volume}}}, {"boot_order", 1}}}}};
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

  // QEMU was given no kernel, and the guest runs with the command line of the disk's
  // syslinux.cfg: it was booted by the loader on the volume.
  void guestBootedFromTheVolume(const std::string& name, pid_t pid) {
    auto argv = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(argv->find(std::string("\0-kernel\0", 9)), std::string::npos) << "QEMU was given a kernel";
    EXPECT_EQ(argv->find(std::string("\0-initrd\0", 9)), std::string::npos) << "QEMU was given an initrd";
    auto t0 = SteadyClock::now();
    ASSERT_TRUE(waitFor([&] { return consoleLog(name).find(bootMarker) != std::string::npos; }, Millis(90000), Millis(250)))
        << "no " << bootMarker << " on the console:\n" << consoleLog(name);
    std::cerr << "[ time ] " << name << ": start -> disk's boot marker on the console "
              << std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count() << " ms\n";
    auto r = guestShell(name, "cat /proc/cmdline");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_NE(r.out.find("tg.marker=" + bootMarker), std::string::npos) << r.out;
  }

  // Runs a shell command in the guest through the agent. Retried only until the agent of a
  // QEMU process (a fresh boot) first answers: after that a failing call is not hidden.
  VmctlResult guestShell(const std::string& name, const std::string& script) {
    static std::map<std::string, pid_t> answered;  // vmmd dir + domain -> QEMU pid whose agent answered
    auto info = rpc->call("domain.get", {{"name", name}});
    pid_t pid = info.ok() ? (*info)["runtime"].value("pid", -1) : -1;
    std::string key = vmmd->dir() + "/" + name;
    auto once = [&] { return vmmd->vmctl({"exec", name, "--", "sh", "-c", script}); };
    if (pid > 0 && answered.count(key) && answered[key] == pid) return once();
    VmctlResult r;
    waitFor([&] {
      r = once();
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(60000), Millis(300));
    if (r.exitCode == 0 || r.err.find("agent") == std::string::npos) answered[key] = pid;
    return r;
  }

  // The guest sees the data marker at kDataOffset of /dev/vda and writes `reply` at
  // kGuestWriteOffset; then it is destroyed.
  void guestReadsAndWrites(const std::string& name, const std::string& reply) {
    auto r = guestShell(name, "dd if=/dev/vda bs=1M skip=" + std::to_string(kDataOffset >> 20) + " count=1 2>/dev/null | head -c " +
                                  std::to_string(dataMarker.size()));
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(r.out, dataMarker);
    r = guestShell(name, "printf " + reply + " | dd of=/dev/vda bs=1 seek=" + std::to_string(kGuestWriteOffset) +
                             " conv=notrunc,fsync 2>/dev/null && echo written");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(trim(r.out), "written");
    auto destroyed = rpc->call("domain.destroy", {{"name", name}});
    ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  }

  std::string tmp, bootImage, bootMarker, dataMarker;
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<std::string> domains;
  std::vector<std::pair<std::string, std::string>> volumesToDelete;
  std::vector<std::string> poolsToDelete;
  std::set<pid_t> qemuPids;
};

TEST_F(QemuStorageTest, GuestBootsFromIscsiLunWithChap) {
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
  uploadBootImage("san", "lun-1");

  pid_t pid = bootFromVolume("iscsi-guest", "san", "lun-1");
  ASSERT_GT(pid, 0);
  // The CHAP secret reaches QEMU in a file given to -object secret, never on its command line.
  auto cmdline = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
  ASSERT_TRUE(cmdline.ok());
  EXPECT_EQ(cmdline->find(secret), std::string::npos);
  EXPECT_NE(cmdline->find("\"driver\":\"iscsi\""), std::string::npos);
  EXPECT_EQ(vmmd->log().find(secret), std::string::npos);

  ASSERT_NO_FATAL_FAILURE(guestBootedFromTheVolume("iscsi-guest", pid));
  guestReadsAndWrites("iscsi-guest", "FROM-ISCSI-GUEST");
  auto disk = download("san", "lun-1");
  ASSERT_EQ(disk.size(), kDiskSize);
  EXPECT_EQ(disk.substr(kGuestWriteOffset, 16), "FROM-ISCSI-GUEST");
  // Only the guest's own bytes changed: the rest of the LUN is the image as uploaded.
  auto image = fs::readFile(bootImage, 64 << 20);
  ASSERT_TRUE(image.ok());
  EXPECT_TRUE(disk.substr(0, kGuestWriteOffset) == image->substr(0, kGuestWriteOffset));
  (void)rpc->call("domain.delete", {{"name", "iscsi-guest"}});
  (void)rpc->call("pool.delete", {{"name", "san"}});
}

TEST_F(QemuStorageTest, GuestBootsFromNfsLinkedClone) {
  VMM_REQUIRE(testutil::NfsServer::available(), testutil::NfsServer::missing());
  std::string exportDir = tmp + "/export";
  ASSERT_TRUE(fs::makeDirs(exportDir, 0777).ok());
  testutil::NfsServer nfs;
  ASSERT_TRUE(nfs.start(exportDir).ok()) << nfs.log();

  json pool = {{"name", "shared"}, {"type", "netfs"}, {"source", {{"host", nfs.host()}, {"dir", nfs.exportPath()}}}};
  call("pool.create", {{"definition", pool}});
  call("volume.create", {{"pool", "shared"}, {"volume", {{"name", "base.raw"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  uploadBootImage("shared", "base.raw");
  // The guest runs on a qcow2 overlay of the base, both on the NFS server.
  call("volume.clone", {{"pool", "shared"}, {"name", "base.raw"}, {"target", "vm.qcow2"}, {"linked", true}});

  pid_t pid = bootFromVolume("nfs-guest", "shared", "vm.qcow2");
  ASSERT_GT(pid, 0);
  auto cmdline = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
  ASSERT_TRUE(cmdline.ok());
  EXPECT_NE(cmdline->find("\"driver\":\"nfs\""), std::string::npos);
  ASSERT_NO_FATAL_FAILURE(guestBootedFromTheVolume("nfs-guest", pid));
  guestReadsAndWrites("nfs-guest", "FROM-NFS-GUEST");

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

TEST_F(QemuStorageTest, GuestBootsFromLogicalVolumeWithoutDeviceMapper) {
  VMM_REQUIRE(testutil::haveTool("lvm"), testutil::missingTools({"lvm"}, "lvm2"));
  auto loop = testutil::LoopDevice::create(tmp + "/pv.img", 64 << 20);
  ASSERT_TRUE(loop.ok()) << loop.error().message;
  std::string vg = "vmmqs" + randomHex(4);
  json pool = {{"name", "lvm"}, {"type", "logical"}, {"source", {{"devices", {(*loop)->device()}}, {"vg_name", vg}}}};
  call("pool.create", {{"definition", pool}, {"build", true}});
  poolsToDelete.push_back("lvm");
  call("volume.create", {{"pool", "lvm"}, {"volume", {{"name", "root"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  volumesToDelete.push_back({"lvm", "root"});
  uploadBootImage("lvm", "root");

  pid_t pid = bootFromVolume("lvm-guest", "lvm", "root");
  ASSERT_GT(pid, 0);
  auto cmdline = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
  ASSERT_TRUE(cmdline.ok());
  EXPECT_NE(cmdline->find("\"driver\":\"host_device\""), std::string::npos);
  // QEMU holds a loop device of exactly the LV's bytes, never the PV with the bytes around it.
  std::string window;
  for (const auto& target : testutil::openDescriptors(pid)) {
    EXPECT_NE(target, (*loop)->device()) << "QEMU holds the whole PV";
    if (startsWith(target, "/dev/loop")) window = target;
  }
  ASSERT_FALSE(window.empty()) << "QEMU holds no loop device";
  std::string sys = "/sys/block/" + fs::baseName(window);
  EXPECT_EQ(std::stoull(fs::readFile(sys + "/size").valueOr("0")) * 512, kDiskSize);
  EXPECT_NE(fs::readFile(sys + "/loop/offset").valueOr("0\n"), "0\n");
  auto snap = rpc->callAndWait("snapshot.create", {{"name", "lvm-guest"}, {"snapshot", "s1"}, {"external", true}}, Deadline::after(Millis(60000)));
  ASSERT_FALSE(snap.ok());
  EXPECT_NE(snap.error().message.find("window"), std::string::npos) << "[" << snap.error().message << "]";
  ASSERT_NO_FATAL_FAILURE(guestBootedFromTheVolume("lvm-guest", pid));
  guestReadsAndWrites("lvm-guest", "FROM-LVM-GUEST");
  auto disk = download("lvm", "root");
  ASSERT_EQ(disk.size(), kDiskSize);
  EXPECT_EQ(disk.substr(kGuestWriteOffset, 14), "FROM-LVM-GUEST");
  (void)rpc->call("domain.delete", {{"name", "lvm-guest"}});
  domains.clear();
  // The window cleared itself when QEMU, its last holder, ended.
  EXPECT_TRUE(waitFor([&] { return !fs::exists(sys + "/loop"); }, Millis(10000))) << window << " still attached";
}

TEST_F(QemuStorageTest, GuestBootsFromLinkedCloneInDirPoolAndVolumeInUseIsKept) {
  call("volume.create", {{"pool", "default"}, {"volume", {{"name", "golden.raw"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  uploadBootImage("default", "golden.raw");
  call("volume.clone", {{"pool", "default"}, {"name", "golden.raw"}, {"target", "ci-1.qcow2"}, {"linked", true}});
  pid_t pid = bootFromVolume("ci-1", "default", "ci-1.qcow2");
  ASSERT_GT(pid, 0);
  // In use by a running guest, and the base of a clone: neither can be deleted.
  auto del = rpc->call("volume.delete", {{"pool", "default"}, {"name", "ci-1.qcow2"}});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict);
  EXPECT_NE(del.error().message.find("ci-1"), std::string::npos) << del.error().message;
  del = rpc->call("volume.delete", {{"pool", "default"}, {"name", "golden.raw"}});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict);
  ASSERT_NO_FATAL_FAILURE(guestBootedFromTheVolume("ci-1", pid));
  guestReadsAndWrites("ci-1", "FROM-DIR-GUEST");
  auto golden = download("default", "golden.raw");
  EXPECT_EQ(golden.substr(kGuestWriteOffset, 14), std::string(14, '\0'));
}

// A guest's raw disk holding a qcow2 header that names a host file (what a guest writes into
// its own disk to reach the host, finding C1), named like a qcow2 image so that no guess from
// the name can stand in for the recorded format. Neither the guest using it - before and after
// vmmd restarts, through an external snapshot and its revert - nor a guest of its linked clone
// ever reads the host file: QEMU opens the volume as the raw bytes it is.
TEST_F(QemuStorageTest, AForgedQcow2HeaderInARawVolumeNeverReachesTheHostFile) {
  const std::string secret = tmp + "/secret";
  ASSERT_TRUE(fs::writeFileAtomic(secret, "TOPSECRET-host-file\n" + std::string(64 << 10, 'S'), 0600).ok());
  const std::string forged = tmp + "/forged.qcow2";
  ASSERT_TRUE(runStep({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", forged, "64M"}).ok());
  call("volume.create", {{"pool", "default"}, {"volume", {{"name", "victim.qcow2"}, {"capacity", "4MiB"}, {"format", "raw"}}}});
  fs::UniqueFd fd(::open(forged.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st{};
  ASSERT_TRUE(fd.valid() && ::fstat(fd.get(), &st) == 0);
  auto up = rpc->uploadVolume("default", "victim.qcow2", fd.get(), static_cast<uint64_t>(st.st_size), nullptr);
  ASSERT_TRUE(up.ok()) << up.error().message;
  call("volume.create", {{"pool", "default"}, {"volume", {{"name", "golden.raw"}, {"capacity", kDiskSize}, {"format", "raw"}}}});
  uploadBootImage("default", "golden.raw");

  // Defines and starts a guest booting a clone of the golden image, with `data` as vdb.
  auto startWithData = [&](const std::string& name, const std::string& data) {
    call("volume.clone", {{"pool", "default"}, {"name", "golden.raw"}, {"target", name + "-root"}, {"linked", true}});
    json def = {{"name", name}, {"type", "qemu"}, {"vcpus", 1}, {"memory", "256MiB"},
                {"disks", {{{"source", {{"pool", "default"}, {"volume", name + "-root"}}}, {"boot_order", 1}},
                           {{"source", {{"pool", "default"}, {"volume", data}}}}}}};
    auto created = rpc->call("domain.create", {{"definition", def}});
    ASSERT_TRUE(created.ok()) << created.error().message;
    domains.push_back(name);
    EXPECT_FALSE((*created)["definition"]["disks"][1].contains("format")) << created->dump();
  };
  auto guestReadsItsDataDisk = [&](const std::string& name) {
    auto started = rpc->callAndWait("domain.start", {{"name", name}}, Deadline::after(Millis(60000)));
    ASSERT_TRUE(started.ok()) << started.error().message;
    auto info = rpc->call("domain.get", {{"name", name}});
    if (info.ok()) qemuPids.insert((*info)["runtime"].value("pid", -1));
    auto r = guestShell(name, "head -c 3 /dev/vdb; echo; dd if=/dev/vdb bs=64k count=2 2>/dev/null | grep -c TOPSECRET; true");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(r.out, "QFI\n0\n") << "the guest must read the volume's own bytes";
    auto destroyed = rpc->call("domain.destroy", {{"name", name}});
    ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  };
  startWithData("victim-user", "victim.qcow2");
  guestReadsItsDataDisk("victim-user");

  // After a restart the stored definition still names no format: the pool's record decides.
  rpc.reset();
  ASSERT_TRUE(vmmd->stop().ok());
  auto restarted = vmmd->start();
  ASSERT_TRUE(restarted.ok()) << restarted.error().message;
  auto c = vmmd->connect();
  ASSERT_TRUE(c.ok()) << c.error().message;
  rpc = std::move(*c);
  guestReadsItsDataDisk("victim-user");

  // An external snapshot puts an overlay over the victim, naming it as raw; after a revert to
  // it the guest still reads the victim's own bytes.
  auto snap = rpc->callAndWait("snapshot.create", {{"name", "victim-user"}, {"snapshot", "s1"}, {"external", true}},
                               Deadline::after(Millis(60000)));
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  guestReadsItsDataDisk("victim-user");
  auto reverted = rpc->callAndWait("snapshot.revert", {{"name", "victim-user"}, {"snapshot", "s1"}}, Deadline::after(Millis(60000)));
  ASSERT_TRUE(reverted.ok()) << reverted.error().message;
  guestReadsItsDataDisk("victim-user");

  // A linked clone of the victim reads through it as raw.
  call("volume.clone", {{"pool", "default"}, {"name", "victim.qcow2"}, {"target", "victim-clone"}, {"linked", true}});
  startWithData("clone-user", "victim-clone");
  guestReadsItsDataDisk("clone-user");

  // A disk cannot ask for the volume to be opened as something else.
  json def = {{"name", "asks-qcow2"}, {"type", "qemu"}, {"vcpus", 1}, {"memory", "256MiB"},
              {"disks", {{{"source", {{"pool", "default"}, {"volume", "victim.qcow2"}}}, {"format", "qcow2"}}}}};
  auto created = rpc->call("domain.create", {{"definition", def}});
  if (created.ok()) {
    domains.push_back("asks-qcow2");
    auto started = rpc->callAndWait("domain.start", {{"name", "asks-qcow2"}}, Deadline::after(Millis(60000)));
    ASSERT_FALSE(started.ok()) << "a raw volume opened as qcow2";
    EXPECT_NE(started.error().message.find("is raw"), std::string::npos) << started.error().message;
  } else {
    EXPECT_NE(created.error().message.find("is raw"), std::string::npos) << created.error().message;
  }
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
    auto started = vmmd.start();
    ASSERT_TRUE(started.ok()) << started.error().message << "\n" << vmmd.log();
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
