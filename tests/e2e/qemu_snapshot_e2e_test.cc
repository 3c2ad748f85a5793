// Integration: snapshots of real QEMU (TCG) guests through the API. The guest writes marker
// bytes straight to its qcow2 disk (dd at an offset), the test snapshots, changes them,
// reverts and reads the original back with O_DIRECT (the disk, not the guest's page cache,
// which a revert with memory restores too) or with qemu-io on the host: internal snapshots
// with memory of a running and of a paused guest, internal snapshots of a shut-off domain
// (qemu-img), a tree with a branch, external chains, and a vmmd killed at each point of a
// snapshot's creation (fault points, base/fault_point.h) with the image checked as well as
// the API.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
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

  // Stops vmmd (its guests keep running) and starts it again, with `faultPoints` armed
  // (VMM_FAULT_POINTS, base/fault_point.h). Returns where the new run's log starts.
  size_t restartVmmd(const std::string& faultPoints = "") {
    rpc.reset();
    EXPECT_TRUE(vmmd->stop().ok());
    size_t logFrom = vmmd->log().size();
    if (!faultPoints.empty()) ::setenv("VMM_FAULT_POINTS", faultPoints.c_str(), 1);
    auto started = vmmd->start();
    ::unsetenv("VMM_FAULT_POINTS");
    EXPECT_TRUE(started.ok()) << vmmd->log();
    if (started.ok()) reconnect();
    return logFrom;
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

  // A qcow2 overlay on a raw base next to it (a chain qemu-img must be given whole).
  std::string qcow2OnRawBase(const std::string& name) {
    std::string base = tmp + "/" + name + ".base.raw", path = tmp + "/" + name;
    auto b = runCommand({"qemu-img", "create", "-q", "-f", "raw", base, "16M"}, RunOptions());
    auto r = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", path}, RunOptions());
    EXPECT_TRUE(b.ok() && b->success() && r.ok() && r->success());
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
    booting.insert(name);
    auto info = rpc->call("domain.get", {{"name", name}});
    ASSERT_TRUE(info.ok());
    pid_t pid = (*info)["runtime"].value("pid", -1);
    if (pid > 0) qemuPids.insert(pid);
  }

  std::string state(const std::string& name) {
    auto info = rpc->call("domain.get", {{"name", name}});
    return info.ok() ? info->value("state", "") : "";
  }

  // Runs a shell command in the guest through the agent. Retried only while the agent of a
  // freshly booted guest comes up: after a vmmd restart or a revert the first call must work.
  VmctlResult guestShell(const std::string& name, const std::string& script) {
    auto once = [&] { return vmmd->vmctl({"exec", name, "--", "sh", "-c", script}); };
    if (!booting.count(name)) return once();
    VmctlResult r;
    waitFor([&] {
      r = once();
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(60000), Millis(300));
    if (r.exitCode == 0 || r.err.find("agent") == std::string::npos) booting.erase(name);
    return r;
  }

  // Writes an 8-character marker at 1 MiB of /dev/vda (synced to the image).
  void writeMarker(const std::string& name, const std::string& marker) {
    auto r = guestShell(name, "printf " + marker + " | dd of=/dev/vda bs=1 seek=" + std::to_string(kMarkerOffset) +
                                   " conv=notrunc,fsync 2>/dev/null && echo written");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    ASSERT_EQ(trim(r.out), "written");
  }

  // The marker as the disk holds it: one aligned 4 KiB block read with O_DIRECT, so neither a
  // revert with memory (which restores the guest's page cache) nor a stale cache after a
  // disk-only revert can answer instead of the disk.
  std::string readMarker(const std::string& name) {
    auto r = guestShell(name, "dd if=/dev/vda bs=4096 skip=" + std::to_string(kMarkerOffset / 4096) +
                                  " count=1 iflag=direct 2>/dev/null | head -c 8");
    EXPECT_EQ(r.exitCode, 0) << r.err;
    return r.out;
  }

  // The marker in an image (and its backing chain) read on the host; the domain must be off.
  std::string imageMarker(const std::string& path) {
    auto r = runCommand({"qemu-io", "-r", "-c", "read -v " + std::to_string(kMarkerOffset) + " 8", path}, RunOptions());
    if (!r.ok() || !r->success()) return "qemu-io failed: " + (r.ok() ? r->err : r.error().message);
    // "00100000:  4f 4e 45 2d 4f 4e 45 2d  ONE.ONE." (the text column shows '-' as '.')
    std::string line = split(r->out, '\n')[0], bytes;
    auto hex = split(line.substr(line.find(':') + 1), ' ', true);
    for (size_t i = 0; i < hex.size() && bytes.size() < 8; ++i)
      bytes += static_cast<char>(std::stoi(hex[i], nullptr, 16));
    return bytes;
  }

  std::string diskPath(const std::string& name) {
    auto info = rpc->call("domain.get", {{"name", name}});
    return info.ok() ? (*info)["definition"]["disks"][0]["source"].value("path", "") : "";
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
  // The tags of the internal snapshots in an image (qemu-img snapshot -l: ID TAG VM-SIZE ...).
  std::set<std::string> tags(const std::string& path) {
    std::set<std::string> out;
    for (const auto& line : split(internalSnapshots(path), '\n', true)) {
      auto cols = split(std::string(trim(line)), ' ', true);
      if (cols.size() >= 2 && !cols[0].empty() && std::isdigit(static_cast<unsigned char>(cols[0][0]))) out.insert(cols[1]);
    }
    return out;
  }
  bool listed(const std::string& dom, const std::string& snap) {
    for (const auto& s : listSnapshots(dom))
      if (s.value("name", "") == snap) return true;
    return false;
  }

  std::string tmp;
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<std::string> domains;
  std::set<pid_t> qemuPids;
  std::set<std::string> booting;  // booted afresh, the agent has not answered yet
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
// revert restores both, and the guest runs again where it was. The restored memory holds the
// old marker in the guest's page cache whatever the disk says: the disk is read with O_DIRECT
// in the guest and with qemu-io on the host.
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
  std::string top = diskPath("extmem");
  EXPECT_NE(top, disk);
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "extmem"}}).ok());
  EXPECT_EQ(imageMarker(top), "MEMDISK1");
}

// Internal snapshots of a shut-off domain are qemu-img's (no QEMU runs): taken off, reverted
// while the guest runs (a snapshot without memory stops it first and leaves it off, as it was
// when taken) and deleted off; the image is read on the host and by the guest after a boot.
// The disk is an overlay: sandboxed qemu-img sees its base only because vmm names it.
TEST_F(QemuSnapshotTest, InternalSnapshotOfAShutOffDomain) {
  std::string disk = qcow2OnRawBase("off.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("off", disk));
  writeMarker("off", "OFF-ONE-");
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "off"}}).ok());
  auto s = snapshot("off", "o1");
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto got = call("snapshot.get", {{"name", "off"}, {"snapshot", "o1"}});
  EXPECT_EQ(got["kind"], "internal");
  EXPECT_EQ(got["memory"], false);
  EXPECT_EQ(got["domain_state"], "shutoff");
  EXPECT_EQ(tags(disk), std::set<std::string>{"o1"}) << internalSnapshots(disk);
  ASSERT_NO_FATAL_FAILURE(start("off"));
  writeMarker("off", "OFF-TWO-");
  auto r = revert("off", "o1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(state("off"), "shutoff");
  EXPECT_EQ(imageMarker(disk), "OFF-ONE-");
  ASSERT_NO_FATAL_FAILURE(start("off"));
  EXPECT_EQ(readMarker("off"), "OFF-ONE-");
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "off"}}).ok());
  ASSERT_TRUE(removeSnapshot("off", "o1").ok());
  EXPECT_TRUE(tags(disk).empty()) << internalSnapshots(disk);
  EXPECT_TRUE(listSnapshots("off").empty());
}

// A snapshot keeps the state it was taken in: reverting a paused guest to a snapshot taken
// while it ran leaves it running, and a running guest reverted to one taken paused is paused.
TEST_F(QemuSnapshotTest, RevertOfAPausedGuestRestoresTheSnapshotsState) {
  std::string disk = qcow2("paused.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("pau", disk));
  writeMarker("pau", "RUNNING1");
  ASSERT_TRUE(snapshot("pau", "r").ok());
  writeMarker("pau", "PAUSED-1");
  ASSERT_TRUE(rpc->call("domain.suspend", {{"name", "pau"}}).ok());
  ASSERT_TRUE(snapshot("pau", "p").ok());
  EXPECT_EQ(state("pau"), "paused");
  EXPECT_EQ(call("snapshot.get", {{"name", "pau"}, {"snapshot", "p"}})["domain_state"], "paused");
  ASSERT_TRUE(rpc->call("domain.resume", {{"name", "pau"}}).ok());
  writeMarker("pau", "CHANGED3");
  ASSERT_TRUE(rpc->call("domain.suspend", {{"name", "pau"}}).ok());
  ASSERT_EQ(state("pau"), "paused");
  auto r = revert("pau", "r");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(state("pau"), "running");
  EXPECT_EQ(readMarker("pau"), "RUNNING1");
  r = revert("pau", "p");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(state("pau"), "paused");
  ASSERT_TRUE(rpc->call("domain.resume", {{"name", "pau"}}).ok());
  EXPECT_EQ(readMarker("pau"), "PAUSED-1");
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

// The same merge on a shut-off domain: a sandboxed qemu-img commit of each overlay into the
// file under it, the disk's source moved down as it goes.
TEST_F(QemuSnapshotTest, ExternalDiskOnlyChainOfAShutOffDomainIsMergedOnDelete) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("extoff", disk));
  writeMarker("extoff", "BASEBASE");
  auto e1 = snapshot("extoff", "e1", {{"external", true}, {"disk_only", true}});
  ASSERT_TRUE(e1.ok()) << e1.error().message;
  writeMarker("extoff", "FIRSTOVL");
  auto e2 = snapshot("extoff", "e2", {{"external", true}, {"disk_only", true}});
  ASSERT_TRUE(e2.ok()) << e2.error().message;
  writeMarker("extoff", "SECONDOV");
  std::string o1 = tmp + "/disk.e1.qcow2", o2 = tmp + "/disk.e1.e2.qcow2";
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "extoff"}}).ok());
  EXPECT_EQ(chain(o2), (std::vector<std::string>{o2, o1, disk}));

  auto d2 = removeSnapshot("extoff", "e2");
  ASSERT_TRUE(d2.ok()) << d2.error().message;
  EXPECT_FALSE(fs::exists(o2));
  EXPECT_EQ(chain(o1), (std::vector<std::string>{o1, disk}));
  auto info = rpc->call("domain.get", {{"name", "extoff"}});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ((*info)["definition"]["disks"][0]["source"].value("path", ""), o1) << info->dump();
  auto d1 = removeSnapshot("extoff", "e1");
  ASSERT_TRUE(d1.ok()) << d1.error().message;
  EXPECT_FALSE(fs::exists(o1));
  EXPECT_EQ(chain(disk), (std::vector<std::string>{disk}));
  info = rpc->call("domain.get", {{"name", "extoff"}});
  EXPECT_EQ((*info)["definition"]["disks"][0]["source"].value("path", ""), disk);
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

// vmmd killed at each point of a snapshot's creation (base/fault_point.h), deterministically.
// Before the record - QEMU's job started (it finishes without vmmd), the overlays in use, or the
// driver done - the snapshot is absent from the API and from the disks: the next start deletes
// the tag nobody recorded and merges back the overlays. After the record it is complete:
// listed, in the image, and reverts. Each time the guest keeps running and its agent answers
// the first call after the restart.
TEST_F(QemuSnapshotTest, KilledDaemonDuringSnapshotLeavesItCompleteOrAbsent) {
  std::string disk = qcow2("disk.qcow2");
  ASSERT_NO_FATAL_FAILURE(boot("crash", disk));
  writeMarker("crash", "BEFORE--");
  pid_t qemu = call("domain.get", {{"name", "crash"}})["runtime"].value("pid", -1);

  // Creates `snap` with vmmd set to die at `point`; returns where the next run's log starts.
  auto createKilledAt = [&](const std::string& point, const std::string& snap, json options = json::object()) -> size_t {
    size_t armedFrom = restartVmmd(point);
    options["name"] = "crash";
    options["snapshot"] = snap;
    auto r = tryCall("snapshot.create", options);
    EXPECT_FALSE(r.ok()) << "vmmd did not die at " << point;
    EXPECT_NE(vmmd->log().find("point=" + point, armedFrom), std::string::npos) << vmmd->log().substr(armedFrom);
    rpc.reset();
    vmmd->kill9();  // only reaps it: it killed itself
    size_t from = vmmd->log().size();
    EXPECT_TRUE(vmmd->start().ok()) << vmmd->log();
    reconnect();
    return from;
  };

  for (std::string point : {"snapshot.after-job-start", "snapshot.before-record"}) {
    SCOPED_TRACE(point);
    size_t from = createKilledAt(point, "k1");
    std::string log = vmmd->log().substr(from);
    // QEMU ran the job to its end without vmmd; the new vmmd saw it end, then deleted the tag.
    if (point == "snapshot.after-job-start") {
      EXPECT_NE(log.find("a snapshot job of an earlier vmmd ended"), std::string::npos) << log;
    }
    EXPECT_NE(log.find("removed a snapshot a stopped vmmd took but did not record"), std::string::npos) << log;
    EXPECT_FALSE(listed("crash", "k1"));
    EXPECT_EQ(tags(disk).count("k1"), 0u) << internalSnapshots(disk);
    EXPECT_EQ(state("crash"), "running");
    EXPECT_EQ(call("domain.get", {{"name", "crash"}})["runtime"].value("pid", -1), qemu);
    EXPECT_EQ(readMarker("crash"), "BEFORE--");  // the agent's first call after the restart
  }

  (void)createKilledAt("snapshot.after-record", "k1");
  EXPECT_TRUE(listed("crash", "k1"));
  EXPECT_EQ(tags(disk), std::set<std::string>{"k1"}) << internalSnapshots(disk);
  EXPECT_EQ(state("crash"), "running");
  writeMarker("crash", "AFTER---");
  auto r = revert("crash", "k1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(state("crash"), "running");
  EXPECT_EQ(readMarker("crash"), "BEFORE--");  // the agent's first call after the revert

  // External: QEMU writes to the new overlay from the transaction on, whether or not the
  // definition followed it yet. The next start merges the overlay back into the image and
  // removes it: the definition names the image, and what the guest writes lands there.
  const json external = {{"external", true}, {"disk_only", true}};
  std::string overlay = tmp + "/disk.e1.qcow2";
  for (std::string point : {"snapshot.after-overlays", "snapshot.before-record"}) {
    SCOPED_TRACE(point);
    size_t from = createKilledAt(point, "e1", external);
    EXPECT_NE(vmmd->log().find("removed a snapshot a stopped vmmd took but did not record", from), std::string::npos);
    EXPECT_FALSE(listed("crash", "e1"));
    EXPECT_FALSE(fs::exists(overlay));
    EXPECT_EQ(diskPath("crash"), disk);
    EXPECT_EQ(state("crash"), "running");
    writeMarker("crash", point == "snapshot.after-overlays" ? "EXTKILL1" : "EXTKILL2");
  }
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "crash"}}).ok());
  EXPECT_EQ(chain(disk), std::vector<std::string>{disk});
  EXPECT_EQ(imageMarker(disk), "EXTKILL2");

  // Shut off: qemu-img took the snapshot (and made the overlay); the next start removes them
  // the same way.
  size_t from = createKilledAt("snapshot.before-record", "k2");
  EXPECT_NE(vmmd->log().find("removed a snapshot a stopped vmmd took but did not record", from), std::string::npos);
  EXPECT_FALSE(listed("crash", "k2"));
  EXPECT_EQ(tags(disk), std::set<std::string>{"k1"}) << internalSnapshots(disk);
  from = createKilledAt("snapshot.before-record", "e2", external);
  EXPECT_NE(vmmd->log().find("removed a snapshot a stopped vmmd took but did not record", from), std::string::npos);
  EXPECT_FALSE(listed("crash", "e2"));
  EXPECT_FALSE(fs::exists(tmp + "/disk.e2.qcow2"));
  EXPECT_EQ(diskPath("crash"), disk);
  EXPECT_EQ(chain(disk), std::vector<std::string>{disk});
  EXPECT_EQ(imageMarker(disk), "EXTKILL2");
  EXPECT_EQ(state("crash"), "shutoff");
}

}  // namespace
