// The drivers' runtime records: written and read back, read when written before records had
// versions, and refused loudly - naming the key - when a key is missing or mistyped.
#include <gtest/gtest.h>

#include "drivers/lxc/lxc_record.h"
#include "drivers/qemu/qemu_record.h"
#include "drivers/snapshot_types.h"
#include "drivers/test/test_record.h"
#ifdef VMM_HAVE_XEN
#include "drivers/xen/xen_record.h"
#endif

using namespace vmm;
using namespace vmm::drivers;
using nlohmann::json;

namespace {

// A qemu record as the tree before versioned records wrote it.
json oldQemuRecord() {
  return {{"pid", 4242},          {"uid", 64000},         {"gid", 64000},
          {"start_time", 987654}, {"run_id", "r-1"},      {"accel", "kvm"},
          {"machine", "pc-q35-7.2"}, {"root_ports", 4},   {"ports", {{"net0", 1}, {"virtio-disk1", 2}}},
          {"taps", json::array({{{"ifname", "vmtap0"}, {"mac", "52:54:00:00:00:01"}}})}};
}

void expectFailsNaming(const Status& st, const std::string& key) {
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("\"" + key + "\""), std::string::npos) << st.error().message;
}

TEST(QemuRecord, RoundTrips) {
  auto old = qemu::QemuRecord::parse(oldQemuRecord());
  ASSERT_TRUE(old.ok()) << old.error().message;
  auto again = qemu::QemuRecord::parse(old->toJson());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->toJson(), old->toJson());
  EXPECT_EQ(old->toJson()["version"], 1);
  // As stored: through text, where non-negative numbers come back unsigned.
  auto stored = qemu::QemuRecord::parse(json::parse(old->toJson().dump()));
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(stored->toJson(), old->toJson());
  auto test = TestRecord::parse(json::parse(R"({"run_id":"r","boot_us":1733400000000000,"paused":true,"paused_us":0,
                                               "paused_since_us":1733400000000001,"disks":[],"nics":["net0"]})"));
  ASSERT_TRUE(test.ok()) << test.error().message;
  EXPECT_EQ(test->pausedSinceUs, 1733400000000001);
}

TEST(QemuRecord, ReadsARecordWithoutVersionAsVersion1) {
  auto r = qemu::QemuRecord::parse(oldQemuRecord());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->pid, 4242);
  EXPECT_EQ(r->uid, 64000u);
  EXPECT_EQ(r->startTime, 987654u);
  EXPECT_EQ(r->runId, "r-1");
  EXPECT_EQ(r->accel, "kvm");
  EXPECT_EQ(r->machine, "pc-q35-7.2");
  EXPECT_EQ(r->rootPorts, 4);
  EXPECT_EQ(r->ports.at("virtio-disk1"), 2);
  ASSERT_EQ(r->taps.size(), 1u);
  EXPECT_EQ(r->taps[0].ifname, "vmtap0");
  EXPECT_EQ(r->taps[0].mac, "52:54:00:00:00:01");
  // Every key the record carries is written back under its old name.
  const json written = oldQemuRecord();
  for (const auto& [key, value] : written.items()) EXPECT_EQ(r->toJson()[key], value) << key;
}

TEST(QemuRecord, RecordFromBeforeUnprivilegedQemuRunsAsRoot) {
  json j = oldQemuRecord();
  j.erase("uid");
  j.erase("gid");
  auto r = qemu::QemuRecord::parse(j);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 0u);
  EXPECT_EQ(r->gid, 0u);
  j["uid"] = "qemu";
  r = qemu::QemuRecord::parse(j);
  ASSERT_FALSE(r.ok());
  expectFailsNaming(r.error(), "uid");
}

TEST(QemuRecord, MissingKeyIsAnErrorNamingIt) {
  for (const char* key : {"pid", "start_time", "run_id", "accel", "machine", "root_ports", "taps", "ports"}) {
    json j = oldQemuRecord();
    j.erase(key);
    auto r = qemu::QemuRecord::parse(j);
    ASSERT_FALSE(r.ok()) << key;
    expectFailsNaming(r.error(), key);
    EXPECT_NE(r.error().message.find("missing"), std::string::npos) << r.error().message;
  }
}

TEST(QemuRecord, WrongTypeIsAnErrorNamingIt) {
  json j = oldQemuRecord();
  j["pid"] = "4242";
  auto r = qemu::QemuRecord::parse(j);
  ASSERT_FALSE(r.ok());
  expectFailsNaming(r.error(), "pid");
  EXPECT_NE(r.error().message.find("expected an integer"), std::string::npos) << r.error().message;

  j = oldQemuRecord();
  j["taps"][0]["mac"] = 5;
  r = qemu::QemuRecord::parse(j);
  ASSERT_FALSE(r.ok());
  expectFailsNaming(r.error(), "mac");
  EXPECT_NE(r.error().message.find("taps[0]"), std::string::npos) << r.error().message;

  j = oldQemuRecord();
  j["uid"] = -1;
  r = qemu::QemuRecord::parse(j);
  ASSERT_FALSE(r.ok());
  expectFailsNaming(r.error(), "uid");

  r = qemu::QemuRecord::parse(json::array());
  ASSERT_FALSE(r.ok());
}

TEST(QemuRecord, NewerVersionIsRefused) {
  json j = oldQemuRecord();
  j["version"] = 2;
  auto r = qemu::QemuRecord::parse(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("version 2"), std::string::npos) << r.error().message;
  j["version"] = "1";
  r = qemu::QemuRecord::parse(j);
  ASSERT_FALSE(r.ok());
  expectFailsNaming(r.error(), "version");
}

json oldLxcRecord() {
  return {{"pid", 77},       {"start_time", 1234}, {"monitor_pid", 76}, {"run_id", "r-2"},
          {"userns", true},  {"cgroup_v2", true},  {"cgroups", {"/sys/fs/cgroup/vmm/c1"}},
          {"veths", json::array({{{"ifname", "vmveth0"}, {"mac", "52:54:00:00:00:02"}, {"bridge", "br0"}}})}};
}

TEST(LxcRecord, ReadsOldRecordsAndRefusesBadOnes) {
  auto r = lxc::LxcRecord::parse(oldLxcRecord());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->initPid, 77);
  EXPECT_EQ(r->monitorPid, 76);
  EXPECT_TRUE(r->cgroupV2);
  ASSERT_EQ(r->veths.size(), 1u);
  EXPECT_EQ(r->veths[0].bridge, "br0");
  const json written = oldLxcRecord();
  for (const auto& [key, value] : written.items()) EXPECT_EQ(r->toJson()[key], value) << key;

  json j = oldLxcRecord();
  j.erase("monitor_pid");
  auto missing = lxc::LxcRecord::parse(j);
  ASSERT_FALSE(missing.ok());
  expectFailsNaming(missing.error(), "monitor_pid");

  j = oldLxcRecord();
  j["cgroups"] = json::array({1});
  auto mistyped = lxc::LxcRecord::parse(j);
  ASSERT_FALSE(mistyped.ok());
  EXPECT_NE(mistyped.error().message.find("cgroups[0]"), std::string::npos) << mistyped.error().message;
}

json oldTestRecord() {
  return {{"run_id", "r-3"}, {"boot_us", 100}, {"paused", false}, {"paused_us", 5},
          {"paused_since_us", 0}, {"disks", {"vdb"}}, {"nics", json::array()}};
}

TEST(TestRecord, ReadsOldRecordsAndRefusesBadOnes) {
  auto r = TestRecord::parse(oldTestRecord());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->bootUs, 100);
  EXPECT_EQ(r->disks, std::vector<std::string>{"vdb"});
  const json written = oldTestRecord();
  for (const auto& [key, value] : written.items()) EXPECT_EQ(r->toJson()[key], value) << key;

  json j = oldTestRecord();
  j.erase("boot_us");
  auto missing = TestRecord::parse(j);
  ASSERT_FALSE(missing.ok());
  expectFailsNaming(missing.error(), "boot_us");

  j = oldTestRecord();
  j["paused"] = 0;
  auto mistyped = TestRecord::parse(j);
  ASSERT_FALSE(mistyped.ok());
  expectFailsNaming(mistyped.error(), "paused");
  EXPECT_NE(mistyped.error().message.find("expected a boolean"), std::string::npos) << mistyped.error().message;
}

#ifdef VMM_HAVE_XEN
TEST(XenRecord, ReadsOldRecordsAndRefusesBadOnes) {
  json old = {{"run_id", "r-4"}, {"domid", 12}, {"guest_type", "hvm"},
              {"ports", json::array({{{"devid", 0}, {"ifname", "vif12.0"}}})}};
  auto r = xen::XenRecord::parse(old);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->domid, 12u);
  ASSERT_EQ(r->ports.size(), 1u);
  EXPECT_EQ(r->ports[0].ifname, "vif12.0");
  for (const auto& [key, value] : old.items()) EXPECT_EQ(r->toJson()[key], value) << key;

  json j = old;
  j.erase("domid");
  auto missing = xen::XenRecord::parse(j);
  ASSERT_FALSE(missing.ok());
  expectFailsNaming(missing.error(), "domid");
  j = old;
  j["ports"] = json::object();
  auto mistyped = xen::XenRecord::parse(j);
  ASSERT_FALSE(mistyped.ok());
  expectFailsNaming(mistyped.error(), "ports");
}
#endif

TEST(SnapshotTypes, DiskMovesAndDisksFromDriverData) {
  json data = {{"disks", json::array({{{"target", "vda"}, {"file", "/a.snap.qcow2"}, {"backing", "/a.qcow2"}, {"format", "qcow2"}}})},
               {"disk_sources", {{"vda", "/a.snap.qcow2"}, {"vdb", "/b.img"}}},
               {"disk_formats", {{"vdb", "raw"}}}};
  auto disks = snapshotDisksOf(data);
  ASSERT_EQ(disks.size(), 1u);
  EXPECT_EQ(disks[0].target, "vda");
  EXPECT_EQ(disks[0].file, "/a.snap.qcow2");
  EXPECT_EQ(disks[0].backing, "/a.qcow2");
  auto moves = diskMovesOf(data);
  EXPECT_EQ(moves.sources.at("vda"), "/a.snap.qcow2");
  EXPECT_EQ(moves.formats.count("vda"), 0u);  // an overlay: qcow2
  EXPECT_EQ(moves.formats.at("vdb"), model::DiskFormat::raw);
  EXPECT_TRUE(diskMovesOf(json::object()).empty());
  EXPECT_EQ(toJson(SnapshotRequest{.name = "s1", .kind = model::SnapshotKind::external, .memory = true})["kind"], "external");
}

}  // namespace
