// QEMU without root (vmmd's default, [qemu] unprivileged), on real TCG guests:
//   - each running QEMU has a uid and gid of its own from [qemu] uid_range (two guests, two
//     uids), no capabilities in any set, no_new_privs, and a mount namespace of its own whose
//     read-only root holds only its programs, a few /etc files, its device nodes, /sys, its
//     /proc and its working directory (/guest, the only directory it owns);
//   - its images are descriptors vmmd opened: the volume files stay root's and 0600, QEMU's
//     argv gives their paths only as fd set labels, /proc/PID/fd shows them; a hot-plugged volume arrives the same
//     way and its descriptor goes with the detach; the guest reads what the host wrote;
//   - a backing file the header of a disk given by path names reaches QEMU only when vmm
//     vouches for it (next to the image, or a pool volume): one elsewhere - root-only or
//     world-readable - refuses the start; one next to it is handed over and the guest reads it.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "tests/support/process_scan.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;
using testutil::guestDir;
using testutil::guestReady;
using testutil::waitFor;

namespace {

std::string statusLine(const std::string& status, const std::string& key) {
  for (const auto& line : split(status, '\n', true))
    if (startsWith(line, key)) return line;
  return "";
}

// What PID's descriptors point at.
std::set<std::string> openFiles(pid_t pid) {
  auto all = testutil::openDescriptors(pid);
  return {all.begin(), all.end()};
}

std::string cmdlineOf(pid_t pid) {
  auto raw = fs::readFile("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20).valueOr("");
  for (auto& c : raw)
    if (c == '\0') c = ' ';
  return raw;
}

class QemuUnprivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(::geteuid() == 0, "root (vmmd starts QEMU as other uids)");
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
    char tmpl[] = "/tmp/vmm-unpriv-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp = tmpl;
    ASSERT_EQ(::chmod(tmp.c_str(), 0755), 0);  // any uid may look inside: only file modes decide
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << vmmd->logTail() << "\n";
    if (vmmd) vmmd->destroyAllDomains();
    rpc.reset();
    vmmd.reset();
    if (!tmp.empty()) (void)runCommand({"rm", "-rf", tmp}, RunOptions());
  }

  json guest(const std::string& name) {
    return {{"name", name}, {"type", "qemu"}, {"vcpus", 1}, {"memory", "256MiB"},
            {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"},
                      {"cmdline", "console=ttyS0 panic=-1 quiet tg.marker=MARKER-" + name}}}};
  }
  Result<json> call(const std::string& method, const json& params) { return rpc->call(method, params); }
  json info(const std::string& name) {
    auto r = call("domain.get", {{"name", name}});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json::object();
  }
  void waitForAgent(const std::string& name) {
    auto up = vmmd->waitForAgent(name);
    ASSERT_TRUE(up.ok()) << up.error().message;
  }
  // The first `n` bytes of the guest's block device `dev`, as the guest reads them.
  std::string guestRead(const std::string& name, const std::string& dev, int n) {
    auto r = vmmd->vmctl({"exec", name, "--", "head", "-c", std::to_string(n), "/dev/" + dev});
    return r.exitCode == 0 ? r.out : "exit " + std::to_string(r.exitCode) + ": " + r.err;
  }
  // A raw volume of the default pool whose first bytes are `marker`; its path.
  std::string markedVolume(const std::string& name, const std::string& marker) {
    auto v = call("volume.create", {{"pool", "default"}, {"volume", {{"name", name}, {"format", "raw"}, {"capacity", "4MiB"}}}});
    EXPECT_TRUE(v.ok()) << (v.ok() ? "" : v.error().message);
    std::string path = v.ok() ? v->value("path", "") : "";
    auto fd = fs::UniqueFd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << path;
    if (fd.valid()) {
      EXPECT_EQ(::pwrite(fd.get(), marker.data(), marker.size(), 0), static_cast<ssize_t>(marker.size()));
    }
    return path;
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::string tmp;
};

TEST_F(QemuUnprivileged, EachQemuHasAUidOfItsOwnNoCapabilitiesAndItsImagesAsDescriptors) {
  std::string vda = markedVolume("una-disk", "VOLUME-A-BYTES");
  std::string vdb = markedVolume("una-hot", "HOTPLUG-BYTES");
  json a = guest("una");
  a["disks"] = {{{"target", "vda"}, {"source", {{"pool", "default"}, {"volume", "una-disk"}}}}};
  ASSERT_TRUE(call("domain.create", {{"definition", a}, {"start", true}}).ok());
  ASSERT_TRUE(call("domain.create", {{"definition", guest("unb")}, {"start", true}}).ok());

  json ia = info("una"), ib = info("unb");
  pid_t pid = ia["runtime"].value("pid", -1);
  uid_t uid = ia["runtime"].value("uid", uid_t{0}), uidB = ib["runtime"].value("uid", uid_t{0});
  ASSERT_GT(pid, 0) << ia.dump();
  EXPECT_NE(uid, 0u);
  EXPECT_NE(uidB, 0u);
  EXPECT_NE(uid, uidB) << "two guests share a uid";
  EXPECT_GE(uid, 1001000000u);  // the default [qemu] uid_range
  auto status = fs::readFile("/proc/" + std::to_string(pid) + "/status");
  ASSERT_TRUE(status.ok());
  std::string u = std::to_string(uid);
  EXPECT_EQ(statusLine(*status, "Uid:"), "Uid:\t" + u + "\t" + u + "\t" + u + "\t" + u);
  EXPECT_EQ(statusLine(*status, "Gid:"), "Gid:\t" + u + "\t" + u + "\t" + u + "\t" + u);
  for (const char* set : {"CapInh:", "CapPrm:", "CapEff:", "CapAmb:"})
    EXPECT_EQ(statusLine(*status, set), std::string(set) + "\t0000000000000000");
  EXPECT_EQ(statusLine(*status, "NoNewPrivs:"), "NoNewPrivs:\t1");
  // Its own mount namespace: a read-only root holding its programs, a few /etc files, the
  // device nodes it opens, /sys, its /proc and its working directory as /guest - no /home,
  // /root, /var, /run, /tmp, no /etc/shadow, none of vmmd's state.
  std::string proc = "/proc/" + std::to_string(pid);
  char ownNs[64] = {}, qemuNs[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/mnt", ownNs, sizeof ownNs - 1), 0);
  ASSERT_GT(::readlink((proc + "/ns/mnt").c_str(), qemuNs, sizeof qemuNs - 1), 0);
  EXPECT_STRNE(ownNs, qemuNs);
  auto top = fs::listDir(proc + "/root");
  ASSERT_TRUE(top.ok());
  std::set<std::string> seen(top->begin(), top->end()), allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
                                                                    "etc", "dev", "sys", "proc", "guest"};
  for (const auto& name : seen) EXPECT_TRUE(allowed.count(name)) << "QEMU sees /" << name;
  for (const char* need : {"usr", "etc", "dev", "proc", "guest"}) EXPECT_TRUE(seen.count(need)) << need;
  EXPECT_FALSE(fs::exists(proc + "/root/etc/shadow"));
  EXPECT_FALSE(fs::exists(proc + "/root/etc/passwd"));
  EXPECT_FALSE(fs::exists(proc + "/root" + vmmd->dir()));
  // Its own pid namespace, of which it is the init: its /proc lists no other process.
  EXPECT_EQ(statusLine(*status, "NSpid:"), "NSpid:\t" + std::to_string(pid) + "\t1");
  std::vector<std::string> pids;
  for (const auto& name : fs::listDir(proc + "/root/proc").valueOr({}))
    if (!name.empty() && std::isdigit(static_cast<unsigned char>(name[0]))) pids.push_back(name);
  EXPECT_EQ(pids, std::vector<std::string>{"1"});
  EXPECT_TRUE(fs::exists(proc + "/root/usr/bin/qemu-system-x86_64"));
  char cwd[4096] = {};
  ASSERT_GT(::readlink((proc + "/cwd").c_str(), cwd, sizeof cwd - 1), 0);
  EXPECT_STREQ(cwd, "/guest");
  struct stat st{};
  ASSERT_EQ(::stat((proc + "/cwd").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  // The volume stays root's and private; QEMU holds it without having been told its path.
  ASSERT_EQ(::stat(vda.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << std::oct << st.st_mode;
  // Its path is only the fd set's label, never a file name QEMU opens.
  EXPECT_EQ(cmdlineOf(pid).find("\"filename\":\"" + vda), std::string::npos) << cmdlineOf(pid);
  EXPECT_NE(cmdlineOf(pid).find("opaque=" + vda + " "), std::string::npos) << cmdlineOf(pid);
  EXPECT_NE(cmdlineOf(pid).find("\"filename\":\"/dev/fdset/"), std::string::npos) << cmdlineOf(pid);
  EXPECT_TRUE(openFiles(pid).count(vda)) << "QEMU does not hold " << vda;
  ASSERT_NO_FATAL_FAILURE(waitForAgent("una"));
  EXPECT_EQ(guestRead("una", "vda", 14), "VOLUME-A-BYTES");

  // Hot-plug: the same, over QMP (add-fd); a detach gives the descriptor back.
  auto attach = vmmd->vmctl({"attach-disk", "una", "default/una-hot", "vdb", "--live"});
  ASSERT_EQ(attach.exitCode, 0) << attach.err;
  EXPECT_TRUE(openFiles(pid).count(vdb));
  EXPECT_TRUE(waitFor([&] { return guestRead("una", "vdb", 13) == "HOTPLUG-BYTES"; }, Millis(20000), Millis(500)))
      << guestRead("una", "vdb", 13);
  auto detach = vmmd->vmctl({"detach-disk", "una", "vdb", "--live"});
  ASSERT_EQ(detach.exitCode, 0) << detach.err;
  EXPECT_TRUE(waitFor([&] { return !openFiles(pid).count(vdb); }, Millis(10000))) << "QEMU still holds " << vdb;

  // A uid is QEMU's for one run: given back at the stop, taken by the next start.
  ASSERT_EQ(vmmd->vmctl({"destroy", "unb"}).exitCode, 0);
  ASSERT_EQ(vmmd->vmctl({"start", "unb"}).exitCode, 0);
  EXPECT_EQ(info("unb")["runtime"].value("uid", uid_t{0}), uidB);
}

TEST_F(QemuUnprivileged, OnlyBackingFilesVmmVouchesForReachQemu) {
  ASSERT_TRUE(fs::makeDirs(tmp + "/other", 0755).ok());
  ASSERT_TRUE(fs::makeDirs(tmp + "/disks", 0755).ok());
  std::string secret = tmp + "/other/root-only.raw", open = tmp + "/other/world-readable.raw", base = tmp + "/disks/base.raw";
  ASSERT_TRUE(fs::writeFileAtomic(secret, "ROOT-ONLY-SECRET" + std::string(1 << 20, '\0'), 0600).ok());
  ASSERT_TRUE(fs::writeFileAtomic(open, "WORLD-READABLE" + std::string(1 << 20, '\0'), 0644).ok());
  ASSERT_TRUE(fs::writeFileAtomic(base, "BASE-NEXT-TO-IT" + std::string(1 << 20, '\0'), 0600).ok());
  auto overlay = [&](const std::string& name, const std::string& backing) {
    std::string path = tmp + "/disks/" + name;
    auto r = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, path}, RunOptions());
    EXPECT_TRUE(r.ok() && r->success()) << (r.ok() ? r->describe() : r.error().message);
    EXPECT_EQ(::chmod(path.c_str(), 0600), 0);
    return path;
  };
  auto defineOn = [&](const std::string& name, const std::string& disk) {
    json d = guest(name);
    d["disks"] = {{{"target", "vda"}, {"source", {{"path", disk}}}, {"format", "qcow2"}}};
    ASSERT_TRUE(call("domain.create", {{"definition", d}}).ok());
  };

  // Named by a header, elsewhere than next to the image and outside any pool: refused before
  // QEMU starts, whoever may read the file (QEMU could not see it in its namespace anyway).
  for (const auto& [name, target] : {std::pair{"unsecret", secret}, std::pair{"unopen", open}}) {
    SCOPED_TRACE(name);
    defineOn(name, overlay(std::string(name) + ".qcow2", target));
    auto refused = vmmd->vmctl({"start", name});  // waits for the start to end
    ASSERT_NE(refused.exitCode, 0) << refused.out;
    EXPECT_NE(refused.err.find("names the backing file \"" + target + "\""), std::string::npos) << refused.err;
    EXPECT_EQ(info(name)["state"], "shutoff");
  }

  // Next to it: vmm vouches for it and hands it over, root-only as it is; the guest reads it.
  // The disk is named through a symlink elsewhere: "next to it" means next to the image itself.
  std::string image = overlay("unbase.qcow2", base), link = tmp + "/other/link.qcow2";
  ASSERT_EQ(::symlink(image.c_str(), link.c_str()), 0);
  // Its initrd is root-only: QEMU gets a private copy in its working directory.
  std::string initrd = tmp + "/other/initrd.cpio";
  auto cpio = fs::readFile(guestDir() + "/full.cpio", 64 << 20);
  ASSERT_TRUE(cpio.ok());
  ASSERT_TRUE(fs::writeFileAtomic(initrd, *cpio, 0600).ok());
  json d = guest("unbase");
  d["boot"]["initrd"] = initrd;
  d["disks"] = {{{"target", "vda"}, {"source", {{"path", link}}}, {"format", "qcow2"}}};
  ASSERT_TRUE(call("domain.create", {{"definition", d}}).ok());
  ASSERT_EQ(vmmd->vmctl({"start", "unbase"}).exitCode, 0);
  ASSERT_NO_FATAL_FAILURE(waitForAgent("unbase"));
  EXPECT_EQ(guestRead("unbase", "vda", 15), "BASE-NEXT-TO-IT");
  pid_t pid = info("unbase")["runtime"].value("pid", -1);
  EXPECT_TRUE(openFiles(pid).count(base));
  struct stat st{};
  std::string copy = "/proc/" + std::to_string(pid) + "/root/guest/initrd";
  ASSERT_EQ(::stat(copy.c_str(), &st), 0) << copy;
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  EXPECT_EQ(st.st_uid, info("unbase")["runtime"].value("uid", uid_t{0}));
  EXPECT_EQ(static_cast<size_t>(st.st_size), cpio->size());
}

}  // namespace
