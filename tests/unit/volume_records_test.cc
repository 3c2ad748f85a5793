// The pool service's volume records: what vmm decided about a volume is never re-read from its
// bytes, and a file vmm did not make is taken only when nothing in its header reaches outside
// the pool (daemon/volume_records.h).
#include <gtest/gtest.h>

#include "daemon/volume_records.h"

using namespace vmm;
using model::DiskFormat;

namespace {

// A volume as a backend describes it from its bytes.
model::Volume bytes(const std::string& name, DiskFormat format, const std::string& backing = "",
                    std::optional<DiskFormat> backingFormat = std::nullopt, const std::string& problem = "") {
  model::Volume v;
  v.name = name;
  v.format = format;
  v.capacity = format == DiskFormat::qcow2 ? 1 << 30 : 1 << 20;
  v.probe.fileSize = 1 << 20;
  v.backingVolume = backing;
  v.probe.backingFormat = backingFormat;
  v.probe.problem = problem;
  return v;
}

VolumeRecord record(DiskFormat format, const std::string& backing = "", bool backingKnown = true) {
  VolumeRecord r;
  r.format = format;
  r.backing = backing;
  r.backingKnown = backingKnown;
  return r;
}

const model::Volume& named(const std::vector<model::Volume>& vols, const std::string& name) {
  for (const auto& v : vols)
    if (v.name == name) return v;
  static model::Volume none;
  ADD_FAILURE() << "no volume " << name;
  return none;
}

}  // namespace

TEST(VolumeRecords, ARecordedRawVolumeStaysRawWhateverItsBytesSay) {
  std::map<std::string, VolumeRecord> records{{"victim", record(DiskFormat::raw)}};
  std::vector<model::Volume> vols{bytes("victim", DiskFormat::qcow2, "", std::nullopt, "its backing file \"/etc/shadow\" is not a volume of pool p")};
  EXPECT_TRUE(applyVolumeRecords(records, vols).empty());
  EXPECT_EQ(vols[0].format, DiskFormat::raw);
  EXPECT_TRUE(vols[0].backingVolume.empty());
  EXPECT_EQ(vols[0].capacity, 1u << 20);  // the file's size, not the forged header's
  EXPECT_TRUE(vols[0].refused.empty()) << vols[0].refused;
}

TEST(VolumeRecords, FilesSeenForTheFirstTimeAreAdoptedByTheRule) {
  std::map<std::string, VolumeRecord> records;
  std::vector<model::Volume> vols{
      bytes("disk.raw", DiskFormat::raw),
      bytes("base", DiskFormat::qcow2),
      bytes("overlay", DiskFormat::qcow2, "base", DiskFormat::qcow2),
      bytes("on-raw", DiskFormat::qcow2, "disk.raw", DiskFormat::raw),
      bytes("no-format", DiskFormat::qcow2, "base"),
      bytes("wrong-format", DiskFormat::qcow2, "disk.raw", DiskFormat::qcow2),
      bytes("missing-base", DiskFormat::qcow2, "gone", DiskFormat::raw),
      bytes("outside", DiskFormat::qcow2, "", std::nullopt, "its backing file \"../x\" is not a volume of pool p"),
      bytes("data-file", DiskFormat::qcow2, "", std::nullopt, "it names an external data file"),
      bytes("loop-a", DiskFormat::qcow2, "loop-b", DiskFormat::qcow2),
      bytes("loop-b", DiskFormat::qcow2, "loop-a", DiskFormat::qcow2),
      bytes("on-refused", DiskFormat::qcow2, "data-file", DiskFormat::qcow2),
  };
  auto changed = applyVolumeRecords(records, vols);
  EXPECT_EQ(changed.size(), vols.size());
  for (const char* usable : {"disk.raw", "base", "overlay", "on-raw"}) EXPECT_TRUE(named(vols, usable).refused.empty()) << usable;
  EXPECT_EQ(named(vols, "overlay").backingVolume, "base");
  EXPECT_EQ(named(vols, "on-raw").backingVolume, "disk.raw");
  EXPECT_EQ(records["overlay"].backing, "base");
  for (const char* refused : {"no-format", "wrong-format", "missing-base", "outside", "data-file", "loop-a", "loop-b", "on-refused"}) {
    EXPECT_FALSE(named(vols, refused).refused.empty()) << refused;
    EXPECT_FALSE(records[refused].refused.empty()) << refused;
    EXPECT_TRUE(records[refused].backing.empty()) << refused;
  }
  EXPECT_NE(named(vols, "no-format").refused.find("must name its backing's format"), std::string::npos);
  EXPECT_NE(named(vols, "loop-a").refused.find("loops"), std::string::npos);
  // Applying again changes nothing: the records decide now.
  EXPECT_TRUE(applyVolumeRecords(records, vols).empty());
}

TEST(VolumeRecords, ChainsDeeperThanTheLimitAreRefused) {
  std::map<std::string, VolumeRecord> records;
  std::vector<model::Volume> vols{bytes("l0", DiskFormat::qcow2)};
  for (size_t i = 1; i <= kMaxBackingDepth + 1; ++i)
    vols.push_back(bytes("l" + std::to_string(i), DiskFormat::qcow2, "l" + std::to_string(i - 1), DiskFormat::qcow2));
  applyVolumeRecords(records, vols);
  EXPECT_TRUE(named(vols, "l" + std::to_string(kMaxBackingDepth)).refused.empty());
  EXPECT_FALSE(named(vols, "l" + std::to_string(kMaxBackingDepth + 1)).refused.empty());
}

TEST(VolumeRecords, AHeaderChangedAfterRecordingShowsTheVolumeRefused) {
  std::map<std::string, VolumeRecord> records{{"base", record(DiskFormat::raw)}, {"vm", record(DiskFormat::qcow2, "base")}};
  auto check = [&](model::Volume v, const std::string& expected) {
    applyVolumeRecord(records, records["vm"], v);
    EXPECT_EQ(v.format, DiskFormat::qcow2);
    EXPECT_EQ(v.backingVolume, "base");
    if (expected.empty()) EXPECT_TRUE(v.refused.empty()) << v.refused;
    else EXPECT_NE(v.refused.find(expected), std::string::npos) << v.refused;
  };
  check(bytes("vm", DiskFormat::qcow2, "base", DiskFormat::raw), "");
  check(bytes("vm", DiskFormat::qcow2, "other", DiskFormat::raw), "changed outside vmm");
  check(bytes("vm", DiskFormat::qcow2, "base", DiskFormat::qcow2), "changed outside vmm");
  check(bytes("vm", DiskFormat::qcow2, "", std::nullopt, "it names an external data file"), "external data file");
  check(bytes("vm", DiskFormat::raw), "no longer a qcow2 image");
}

TEST(VolumeRecords, RowsFromBeforeBackingsWereRecordedAreSettledOnce) {
  auto v1 = parseVolumeRecord(nlohmann::json{{"format", "qcow2"}});
  ASSERT_TRUE(v1);
  EXPECT_FALSE(v1->backingKnown);
  std::map<std::string, VolumeRecord> records{{"base", record(DiskFormat::raw, "", false)}, {"vm", *v1}};
  std::vector<model::Volume> vols{bytes("base", DiskFormat::qcow2, "", std::nullopt, "forged"), bytes("vm", DiskFormat::qcow2, "base", DiskFormat::raw)};
  auto changed = applyVolumeRecords(records, vols);
  EXPECT_EQ(changed.size(), 2u);
  EXPECT_EQ(records["base"].format, DiskFormat::raw);  // the format recorded before is kept
  EXPECT_TRUE(records["base"].refused.empty());
  EXPECT_EQ(records["vm"].backing, "base");
  EXPECT_TRUE(records["vm"].backingKnown);
  // Round trip of a current row; anything malformed is not a record.
  auto again = parseVolumeRecord(formatVolumeRecord(records["vm"]));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->backing, "base");
  EXPECT_TRUE(again->backingKnown);
  EXPECT_FALSE(parseVolumeRecord(nlohmann::json{{"format", 3}}));
  EXPECT_FALSE(parseVolumeRecord(nlohmann::json::array()));
  EXPECT_FALSE(parseVolumeRecord(nlohmann::json{{"format", "vmdk"}}));
  auto rawWithBacking = parseVolumeRecord(nlohmann::json{{"format", "raw"}, {"backing", "x"}});
  ASSERT_TRUE(rawWithBacking);
  EXPECT_TRUE(rawWithBacking->backing.empty());
}
