// Integration: snapshots of real QEMU (TCG) guests through the API. The guest writes marker
// bytes straight to its qcow2 disk (dd at an offset), the test snapshots, changes them,
// reverts and reads the original back: internal snapshots with memory of a running guest, a
// tree with a branch, an external disk-only chain merged again on delete (checked with
// qemu-img), and a vmmd killed during a snapshot.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <future>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/random.h"
#include "base/strings.h"
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

constexpr uint64_t kMarkerOffset = 1 << 20;

class QemuSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    tmp = "/tmp/vmm-snap-" + randomHex(6);
    ASSERT_TRUE(fs::makeDirs(tmp, 0700).ok());
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    reconnect();
  }

  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
    if (rpc) {
      for (const auto& name : domains) {
        (void)rpc->call("domain.destroy", {{"name", name}});
        (void)rpc->call("domain.delete", {{"name", name}});
      }
    }
    for (pid_t pid : qemuPids)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    rpc.reset();
    vmmd.reset();
    if (!tmp.empty()) (void)runCommand({"rm", "-rf", tmp}, RunOptions());
  }

  void reconnect() {
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }

  Result<json> tryCall(const std::string& method, const json& params) {
    return rpc->callAndWait(method, params, Deadline::after(Millis(120000)));
  }

  json call(const std::string& method, const json& params) {
    auto r = tryCall(method, params);
    EXPECT_TRUE(r.ok()) << method << ": " << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json();
  }

  // The snapshot service's API (async operations).
  Result<json> snapshot(const std::string& dom, const std::string& snap, json options = json::object()) {
    options["name"] = dom;
    options["snapshot"] = snap;
    return tryCall("snapshot.create", options);
  }
  Result<json> revert(const std::string& dom, const std::string& snap) {
    return tryCall("snapshot.revert", {{"name", dom}, {"snapshot", snap}});
  }
  Result<json> removeSnapshot(const std::string& dom, const std::string& snap) {
    return tryCall("snapshot.delete", {{"name", dom}, {"snapshot", snap}});
  }
  json listSnapshots(const std::string& dom) { return call("snapshot.list", {{"name", dom}}); }

  // A qcow2 image of `size` bytes in the test's directory.
  std::string qcow2(const std::string& name, const std::string& size = "16M") {
    std::string path = tmp + "/" + name;
    auto r = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", path, size}, RunOptions());
    EXPECT_TRUE(r.ok() && r->success());
    return path;
  }

  // Defines and starts a guest whose only disk is `disk` (qcow2).
  void boot(const std::string& name, const std::string& disk) {
    json def = {{"name", name},
                {"type", "qemu"},
                {"vcpus", 1},
                {"memory", "256MiB"},
                {"guest_agent", true},
                {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"},
                          {"cmdline", "console=ttyS0 panic=-1 quiet"}}},
                {"disks", {{{"source", {{"path", disk}}}, {"format", "qcow2"}}}}};
    auto created = rpc->call("domain.create", {{"definition", def}});
    ASSERT_TRUE(created.ok()) << created.error().message;
    domains.push_back(name);
    start(name);
  }

  void start(const std::string& name) {
    auto started = tryCall("domain.start", {{"name", name}});
    ASSERT_TRUE(started.ok()) << started.error().message;
    auto info = rpc->call("domain.get", {{"name", name}});
    ASSERT_TRUE(info.ok());
    pid_t pid = (*info)["runtime"].value("pid", -1);
    if (pid > 0) qemuPids.insert(pid);
  }

  std::string state(const std::string& name) {
    auto info = rpc->call("domain.get", {{"name", name}});
    return info.ok() ? info->value("state", "") : "";
  }

  VmctlResult guestShell(const std::string& name, const std::string& script) {
    VmctlResult r;
    waitFor([&] {
      r = vmmd->vmctl({"exec", name, "--", "sh", "-c", script});
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(60000), Millis(300));
    return r;
  }

  // Writes an 8-character marker at 1 MiB of /dev/vda (synced to the image).
  void writeMarker(const std::string& name, const std::string& marker) {
    auto r = guestShell(name, "printf " + marker + " | dd of=/dev/vda bs=1 seek=" + std::to_string(kMarkerOffset) +
                                   " conv=notrunc,fsync 2>/dev/null && echo written");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    ASSERT_EQ(trim(r.out), "written");
  }

  std::string readMarker(const std::string& name) {
    // O_DIRECT where dd offers it, so a disk-only revert is not hidden by the guest's cache.
    auto r = guestShell(name, "dd if=/dev/vda bs=1 skip=" + std::to_string(kMarkerOffset) + " count=8 2>/dev/null");
    EXPECT_EQ(r.exitCode, 0) << r.err;
    return r.out;
  }

  // The files of an image's backing chain, top first.
  std::vector<std::string> chain(const std::string& path) {
    auto r = runCommand({"qemu-img", "info", "-U", "--backing-chain", "--output=json", path}, RunOptions());
    std::vector<std::string> out;
    if (!r.ok() || !r->success()) return out;
    for (const auto& i : json::parse(r->out)) out.push_back(i.value("filename", ""));
    return out;
  }

  std::string internalSnapshots(const std::string& path) {
    auto r = runCommand({"qemu-img", "snapshot", "-U", "-l", path}, RunOptions());
    return r.ok() ? r->out : "";
  }

  std::string tmp;
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<std::string> domains;
  std::set<pid_t> qemuPids;
};

TEST_F(QemuSnapshotTest, InternalSnapshotWithMemoryRevertsARunningGuest) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("snap1", disk));
  writeMarker("snap1", "ONE-ONE-");
  auto t0 = SteadyClock::now();
  auto s = snapshot("snap1", "s1");
  ASSERT_TRUE(s.ok()) << s.error().message;
  std::cerr << "internal snapshot with memory: " << std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count() << " ms\n";
  EXPECT_NE(internalSnapshots(disk).find("s1"), std::string::npos);
  EXPECT_EQ(state("snap1"), "running");
  writeMarker("snap1", "TWO-TWO-");
  EXPECT_EQ(readMarker("snap1"), "TWO-TWO-");
  t0 = SteadyClock::now();
  auto r = revert("snap1", "s1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::cerr << "revert: " << std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count() << " ms\n";
  EXPECT_EQ(state("snap1"), "running");
  EXPECT_EQ(readMarker("snap1"), "ONE-ONE-");
  ASSERT_TRUE(removeSnapshot("snap1", "s1").ok());
  EXPECT_EQ(internalSnapshots(disk).find("s1"), std::string::npos);
}

// Raw disks cannot hold internal snapshots: they get an external one (an overlay) instead of
// the refusal libvirt gives, and the definition follows the overlay.
TEST_F(QemuSnapshotTest, RawDiskGetsAnExternalSnapshot) {
  std::string disk = tmp + "/disk.raw";
  ASSERT_TRUE(runCommand({"qemu-img", "create", "-q", "-f", "raw", disk, "16M"}, RunOptions()).ok());
  json def = {{"name", "rawdom"}, {"type", "qemu"}, {"memory", "256MiB"},
              {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"}}},
              {"disks", {{{"source", {{"path", disk}}}, {"format", "raw"}}}}};
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", def}}).ok());
  domains.push_back("rawdom");
  auto s = snapshot("rawdom", "s1");
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto got = rpc->call("snapshot.get", {{"name", "rawdom"}, {"snapshot", "s1"}});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)["kind"], "external");
  auto dom = rpc->call("domain.get", {{"name", "rawdom"}});
  ASSERT_TRUE(dom.ok());
  std::string overlay = (*dom)["definition"]["disks"][0]["source"].value("path", "");
  EXPECT_NE(overlay, disk);
  RunOptions opts;
  auto info = runCommand({"qemu-img", "info", "-U", "--output=json", overlay}, opts);
  ASSERT_TRUE(info.ok() && info->success());
  auto j = json::parse(info->out);
  EXPECT_EQ(j.value("format", ""), "qcow2");
  EXPECT_EQ(j.value("backing-filename-format", ""), "raw");
}

// An external snapshot with memory of a running guest: overlays plus the saved memory; the
// revert restores both, and the guest runs again where it was.
TEST_F(QemuSnapshotTest, ExternalSnapshotWithMemoryRevertsARunningGuest) {
  std::string disk = qcow2("ext-mem.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("extmem", disk));
  writeMarker("extmem", "MEMDISK1");
  auto s = snapshot("extmem", "m1", {{"external", true}, {"memory", true}});
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto got = call("snapshot.get", {{"name", "extmem"}, {"snapshot", "m1"}});
  EXPECT_EQ(got["kind"], "external");
  EXPECT_EQ(got["memory"], true);
  writeMarker("extmem", "CHANGED2");
  auto r = revert("extmem", "m1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto dom = call("domain.get", {{"name", "extmem"}});
  EXPECT_EQ(dom["state"], "running") << dom.dump();
  EXPECT_EQ(readMarker("extmem"), "MEMDISK1");
}

TEST_F(QemuSnapshotTest, TreeOfThreeLevelsWithBranchRevert) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("tree", disk));
  writeMarker("tree", "AAAAAAAA");
  ASSERT_TRUE(snapshot("tree", "a").ok());
  writeMarker("tree", "BBBBBBBB");
  ASSERT_TRUE(snapshot("tree", "b").ok());
  writeMarker("tree", "CCCCCCCC");
  ASSERT_TRUE(snapshot("tree", "c").ok());
  // Branch: back to a, change, snapshot d (a second child of a).
  ASSERT_TRUE(revert("tree", "a").ok());
  EXPECT_EQ(readMarker("tree"), "AAAAAAAA");
  writeMarker("tree", "DDDDDDDD");
  ASSERT_TRUE(snapshot("tree", "d").ok());
  json list = listSnapshots("tree");
  std::map<std::string, std::string> parent;
  for (const auto& s : list)
    parent[s.value("name", "")] = s["parent"].is_string() ? s["parent"].get<std::string>() : "";
  EXPECT_EQ(parent["b"], "a");
  EXPECT_EQ(parent["c"], "b");
  EXPECT_EQ(parent["d"], "a");
  ASSERT_TRUE(revert("tree", "c").ok());
  EXPECT_EQ(readMarker("tree"), "CCCCCCCC");
  ASSERT_TRUE(revert("tree", "b").ok());
  EXPECT_EQ(readMarker("tree"), "BBBBBBBB");
  ASSERT_TRUE(revert("tree", "d").ok());
  EXPECT_EQ(readMarker("tree"), "DDDDDDDD");
  // Deleting the middle of a branch keeps its child usable.
  ASSERT_TRUE(removeSnapshot("tree", "b").ok());
  ASSERT_TRUE(revert("tree", "c").ok());
  EXPECT_EQ(readMarker("tree"), "CCCCCCCC");
  EXPECT_EQ(state("tree"), "running");
}

TEST_F(QemuSnapshotTest, ExternalDiskOnlyChainIsMergedOnDelete) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("ext", disk));
  writeMarker("ext", "BASEBASE");
  auto e1 = snapshot("ext", "e1", {{"external", true}, {"disk_only", true}});
  ASSERT_TRUE(e1.ok()) << e1.error().message;
  std::string o1 = tmp + "/disk.e1.qcow2", o2 = tmp + "/disk.e1.e2.qcow2";
  EXPECT_EQ(chain(o1), (std::vector<std::string>{o1, disk}));
  writeMarker("ext", "FIRSTOVL");
  auto e2 = snapshot("ext", "e2", {{"external", true}, {"disk_only", true}});
  ASSERT_TRUE(e2.ok()) << e2.error().message;
  EXPECT_EQ(chain(o2), (std::vector<std::string>{o2, o1, disk}));
  writeMarker("ext", "SECONDOV");
  // The definition now points at the newest overlay.
  auto info = rpc->call("domain.get", {{"name", "ext"}});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ((*info)["definition"]["disks"][0]["source"].value("path", ""), o2) << info->dump();

  // e1 has a child: the service refuses to merge it away under e2.
  auto refused = removeSnapshot("ext", "e1");
  ASSERT_FALSE(refused.ok());
  // Deleting e2 merges the active overlay into e1's (active commit: the disk moves down)...
  auto d2 = removeSnapshot("ext", "e2");
  ASSERT_TRUE(d2.ok()) << d2.error().message;
  EXPECT_FALSE(fs::exists(o2));
  EXPECT_EQ(chain(o1), (std::vector<std::string>{o1, disk}));
  info = rpc->call("domain.get", {{"name", "ext"}});
  EXPECT_EQ((*info)["definition"]["disks"][0]["source"].value("path", ""), o1);
  // ...and deleting e1 then merges into the base.
  auto d1 = removeSnapshot("ext", "e1");
  ASSERT_TRUE(d1.ok()) << d1.error().message;
  EXPECT_FALSE(fs::exists(o1));
  EXPECT_EQ(chain(disk), (std::vector<std::string>{disk}));
  info = rpc->call("domain.get", {{"name", "ext"}});
  EXPECT_EQ((*info)["definition"]["disks"][0]["source"].value("path", ""), disk);
  EXPECT_EQ(readMarker("ext"), "SECONDOV");
  EXPECT_EQ(state("ext"), "running");
  // Nothing was lost: the base alone holds the last write after the guest stops.
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "ext"}}).ok());
  auto r = runCommand({"qemu-io", "-r", "-f", "qcow2", "-c", "read -v 1M 8", disk}, RunOptions());
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->out.find("SECONDOV"), std::string::npos) << r->out;
}

TEST_F(QemuSnapshotTest, ExternalDiskOnlyRevertOfAShutOffDomain) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("extrev", disk));
  writeMarker("extrev", "KEEPKEEP");
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "extrev"}}).ok());
  auto e1 = snapshot("extrev", "e1", {{"external", true}, {"disk_only", true}});
  ASSERT_TRUE(e1.ok()) << e1.error().message;
  std::string o1 = tmp + "/disk.e1.qcow2";
  EXPECT_EQ(chain(o1), (std::vector<std::string>{o1, disk}));
  ASSERT_NO_FATAL_FAILURE(start("extrev"));
  writeMarker("extrev", "LOSTLOST");
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "extrev"}}).ok());
  auto r = revert("extrev", "e1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  if (state("extrev") != "running") {
    ASSERT_NO_FATAL_FAILURE(start("extrev"));
  }
  EXPECT_EQ(readMarker("extrev"), "KEEPKEEP");
}

TEST_F(QemuSnapshotTest, KilledDaemonDuringSnapshotLeavesAConsistentState) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("crash", disk));
  writeMarker("crash", "BEFORE--");
  std::thread taker([&] {
    auto c = vmmd->connect();
    if (c.ok()) (void)(*c)->callAndWait("snapshot.create", {{"name", "crash"}, {"snapshot", "k1"}},
                                        Deadline::after(Millis(20000)));
  });
  // Early enough to hit the snapshot itself on this machine (it takes ~100 ms).
  std::this_thread::sleep_for(Millis(40));
  vmmd->kill9();
  taker.join();
  ASSERT_TRUE(vmmd->restart().ok()) << vmmd->log();
  reconnect();
  EXPECT_EQ(state("crash"), "running");
  json list = listSnapshots("crash");
  bool listed = false;
  for (const auto& s : list) listed |= s.value("name", "") == "k1";
  std::cerr << "snapshot k1 after the crash: " << (listed ? "listed" : "not listed") << "\n";
  writeMarker("crash", "AFTER---");
  if (listed) {
    auto r = revert("crash", "k1");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(readMarker("crash"), "BEFORE--");
  } else {
    // A snapshot the daemon did not record can be taken again under the same name.
    auto s = snapshot("crash", "k1");
    ASSERT_TRUE(s.ok()) << s.error().message;
  }
  EXPECT_EQ(state("crash"), "running");
}

}  // namespace
