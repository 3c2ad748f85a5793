// The logical (LVM) pool backend against real lvm2 on two loop devices over sparse files.
// Needs root and lvm2 (VMM_REQUIRE: skipped otherwise, a failure in strict mode). Each test
// uses its own VG names and removes its VGs, PVs, loop devices, files and lvm2's metadata
// backups, also when it fails.
#include <fcntl.h>
#include <glob.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "storage/logical/logical_backend.h"
#include "tests/support/host_tools.h"
#include "tests/support/loop_device.h"
#include "tests/support/require.h"

using namespace vmm;
using namespace vmm::storage;

namespace {

// The volume as the pool service hands it to the backend: only its name matters to a pool of
// raw volumes.
model::Volume named(const std::string& name) {
  model::Volume v;
  v.name = name;
  return v;
}

constexpr uint64_t MiB = 1 << 20;
constexpr uint64_t kDeviceSize = 64 * MiB;  // 15 extents of 4 MiB after the 1 MiB header
constexpr uint64_t kExtent = 4 * MiB;

Deadline dl() { return Deadline::after(Millis(60000)); }

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 16);
  }
  return s;
}

std::string readDevice(const std::string& device, uint64_t offset, size_t n) {
  fs::UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  std::string out(n, '\0');
  size_t got = 0;
  while (fd.valid() && got < n) {
    ssize_t r = ::pread(fd.get(), out.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

class LogicalPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string missing = testutil::missingRoot("loop devices, lvm2");
    if (missing.empty()) missing = testutil::missingTools({"lvm"}, "lvm2");
    VMM_REQUIRE(missing.empty(), missing);
    char tmpl[] = "/tmp/vmm-lvm-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    static int counter = 0;
    std::string prefix = "vmmtest_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    vg_ = prefix;
    otherVg_ = prefix + "_other";
    auto a = testutil::LoopDevice::create(dir_ + "/a.img", kDeviceSize);
    ASSERT_TRUE(a.ok()) << a.error().message;
    loopA_ = std::move(*a);
    auto b = testutil::LoopDevice::create(dir_ + "/b.img", kDeviceSize);
    ASSERT_TRUE(b.ok()) << b.error().message;
    loopB_ = std::move(*b);
    backend_ = makeBackend({loopA_->device(), loopB_->device()});
  }

  void TearDown() override {
    if (loopA_ && loopB_) {
      for (const auto& vg : {vg_, otherVg_}) (void)lvm({"vgremove", "--yes", "--force", vg});
      (void)lvm({"pvremove", "--yes", "--force", "--force", loopA_->device(), loopB_->device()});
    }
    backend_.reset();
    loopA_.reset();
    loopB_.reset();
    if (!dir_.empty()) (void)runCommand({"rm", "-rf", dir_});
    // lvm2 keeps metadata backups of every VG it changed.
    for (const auto& vg : {vg_, otherVg_}) {
      if (vg.empty()) continue;
      (void)fs::removeFile("/etc/lvm/backup/" + vg);
      glob_t g{};
      if (::glob(("/etc/lvm/archive/" + vg + "_[0-9]*.vg").c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) (void)fs::removeFile(g.gl_pathv[i]);
      ::globfree(&g);
    }
  }

  std::unique_ptr<LogicalBackend> makeBackend(std::vector<std::string> devices) {
    model::Pool p;
    p.name = "lvpool";
    p.type = model::PoolType::logical;
    p.source.devices = std::move(devices);
    p.source.vgName = vg_;
    return std::make_unique<LogicalBackend>(p);
  }

  // lvm2 run directly (not through the backend), on the test's devices only.
  Result<CommandResult> lvm(std::vector<std::string> args) {
    std::vector<std::string> argv{"lvm", args[0], "--devices", loopA_->device(), "--devices", loopB_->device(), "--config",
                                  "global/activation=0"};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    RunOptions opts;
    opts.deadline = dl();
    opts.env["LVM_SUPPRESS_FD_WARNINGS"] = "1";
    return runCommand(argv, opts);
  }

  // Rows of a JSON report made directly with lvm2.
  std::vector<nlohmann::json> lvmReport(std::vector<std::string> args) {
    args.insert(args.end(), {"--reportformat", "json", "--units", "b", "--nosuffix"});
    auto r = lvm(args);
    std::vector<nlohmann::json> rows;
    if (!r.ok() || !r->success()) return rows;
    auto doc = nlohmann::json::parse(r->out, nullptr, false);
    if (!doc.is_object()) return rows;
    for (const auto& rep : doc["report"])
      for (const auto& [kind, list] : rep.items())
        for (const auto& row : list) rows.push_back(row);
    return rows;
  }

  void buildPool() {
    auto built = backend_->build(dl());
    ASSERT_TRUE(built.ok()) << built.error().message;
    auto started = backend_->start(dl());
    ASSERT_TRUE(started.ok()) << started.error().message;
  }

  model::Volume create(const std::string& name, uint64_t size) {
    model::VolumeSpec s;
    s.name = name;
    s.capacity = size;
    s.format = model::DiskFormat::raw;
    auto v = backend_->createVolume(s, nullptr, dl());
    EXPECT_TRUE(v.ok()) << v.error().message;
    return v.ok() ? *v : model::Volume{};
  }

  void upload(const std::string& name, const std::string& data) {
    auto w = backend_->openVolume(name, StreamMode::write, dl());
    ASSERT_TRUE(w.ok()) << w.error().message;
    for (size_t off = 0; off < data.size(); off += MiB) {
      auto st = (*w)->write(off, data.data() + off, std::min<size_t>(MiB, data.size() - off), dl());
      ASSERT_TRUE(st.ok()) << st.error().message;
    }
    auto fin = (*w)->finish(dl());
    ASSERT_TRUE(fin.ok()) << fin.error().message;
  }

  std::string download(const std::string& name) {
    auto r = backend_->openVolume(name, StreamMode::read, dl());
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return "";
    std::string out((*r)->size(), '\0');
    uint64_t off = 0;
    while (off < out.size()) {
      auto n = (*r)->read(off, out.data() + off, std::min<size_t>(3 * MiB + 7, out.size() - off), dl());
      EXPECT_TRUE(n.ok()) << n.error().message;
      if (!n.ok() || *n == 0) break;
      off += *n;
    }
    auto end = (*r)->read(out.size(), out.data(), 1, dl());
    EXPECT_TRUE(end.ok() && *end == 0);
    out.resize(off);
    return out;
  }

  size_t volumeCount() {
    auto list = backend_->listVolumes(dl());
    EXPECT_TRUE(list.ok()) << list.error().message;
    return list.ok() ? list->size() : 0;
  }

  std::string dir_, vg_, otherVg_;
  std::unique_ptr<testutil::LoopDevice> loopA_, loopB_;
  std::unique_ptr<LogicalBackend> backend_;
};

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST_F(LogicalPoolTest, BuildStartCapacity) {
  EXPECT_EQ(backend_->type(), model::PoolType::logical);
  auto early = backend_->start(dl());
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code, ErrorCode::not_found);
  EXPECT_NE(early.error().message.find(vg_), std::string::npos) << early.error().message;

  buildPool();
  auto cap = backend_->capacity(dl());
  ASSERT_TRUE(cap.ok()) << cap.error().message;
  EXPECT_EQ(cap->capacity, 2 * 15 * kExtent);
  EXPECT_EQ(cap->available, cap->capacity);
  EXPECT_EQ(cap->allocation, 0u);
  EXPECT_TRUE(backend_->stop(dl()).ok());
  auto again = backend_->build(dl());  // same VG on the same devices: nothing to do
  EXPECT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(volumeCount(), 0u);
  EXPECT_EQ(lvmReport({"vgs", "-o", "vg_name,pv_count", vg_}).at(0)["pv_count"], "2");
}

TEST_F(LogicalPoolTest, BuildRefusesDeviceOfAnotherVg) {
  ASSERT_TRUE(lvm({"pvcreate", loopB_->device()})->success());
  ASSERT_TRUE(lvm({"vgcreate", otherVg_, loopB_->device()})->success());
  auto built = backend_->build(dl());
  ASSERT_FALSE(built.ok());
  EXPECT_EQ(built.error().code, ErrorCode::conflict);
  EXPECT_NE(built.error().message.find(otherVg_), std::string::npos) << built.error().message;
  EXPECT_NE(built.error().message.find(loopB_->device()), std::string::npos) << built.error().message;
  // Nothing changed: loopA is no PV, our VG does not exist, the other VG is intact.
  auto pvs = lvmReport({"pvs", "-o", "pv_name,vg_name"});
  ASSERT_EQ(pvs.size(), 1u);
  EXPECT_EQ(pvs[0]["pv_name"], loopB_->device());
  EXPECT_EQ(pvs[0]["vg_name"], otherVg_);
}

TEST_F(LogicalPoolTest, BuildRejectsBadDevices) {
  std::string file = dir_ + "/plain";
  ASSERT_TRUE(fs::writeFileAtomic(file, "x").ok());
  for (const auto& [device, words] : std::vector<std::pair<std::string, std::string>>{
           {"/dev/does-not-exist", "does not exist"}, {file, "not a block device"}, {"loop0", "absolute"}}) {
    auto b = makeBackend({loopA_->device(), device});
    auto built = b->build(dl());
    ASSERT_FALSE(built.ok()) << device;
    EXPECT_EQ(built.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(built.error().message.find(words), std::string::npos) << built.error().message;
  }
  auto none = makeBackend({})->build(dl());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::invalid_argument);
  EXPECT_TRUE(lvmReport({"pvs", "-o", "pv_name"}).empty());  // no PV was made
}

TEST_F(LogicalPoolTest, CreateListInfoResizeDelete) {
  buildPool();
  auto t0 = std::chrono::steady_clock::now();
  auto v = create("vol1", 10 * MiB);
  double createSeconds = secondsSince(t0);
  EXPECT_EQ(v.capacity, 12 * MiB);  // rounded up to whole 4 MiB extents
  EXPECT_EQ(v.allocation, 12 * MiB);
  EXPECT_EQ(v.format, model::DiskFormat::raw);
  EXPECT_EQ(v.path, "/dev/" + vg_ + "/vol1");

  auto list = backend_->listVolumes(dl());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "vol1");
  EXPECT_EQ((*list)[0].capacity, 12 * MiB);
  auto info = backend_->volumeInfo("vol1", dl());
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->capacity, 12 * MiB);
  EXPECT_EQ(backend_->capacity(dl())->allocation, 12 * MiB);

  model::VolumeSpec dup;
  dup.name = "vol1";
  dup.capacity = MiB;
  dup.format = model::DiskFormat::raw;
  auto again = backend_->createVolume(dup, nullptr, dl());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::conflict) << again.error().message;

  ASSERT_TRUE(backend_->resizeVolume(named("vol1"), 20 * MiB, false, dl()).ok());
  EXPECT_EQ(backend_->volumeInfo("vol1", dl())->capacity, 20 * MiB);
  auto shrink = backend_->resizeVolume(named("vol1"), 8 * MiB, false, dl());
  ASSERT_FALSE(shrink.ok());
  EXPECT_EQ(shrink.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(backend_->volumeInfo("vol1", dl())->capacity, 20 * MiB);
  auto shrunk = backend_->resizeVolume(named("vol1"), 8 * MiB, true, dl());
  ASSERT_TRUE(shrunk.ok()) << shrunk.error().message;
  EXPECT_EQ(backend_->volumeInfo("vol1", dl())->capacity, 8 * MiB);
  auto huge = backend_->resizeVolume(named("vol1"), 1ull << 30, false, dl());
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(huge.error().message.find("free"), std::string::npos) << huge.error().message;
  EXPECT_EQ(backend_->volumeInfo("vol1", dl())->capacity, 8 * MiB);

  t0 = std::chrono::steady_clock::now();
  auto del = backend_->deleteVolume("vol1", dl());
  double deleteSeconds = secondsSince(t0);
  ASSERT_TRUE(del.ok()) << del.error().message;
  auto gone = backend_->volumeInfo("vol1", dl());
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::not_found);
  auto delAgain = backend_->deleteVolume("vol1", dl());
  ASSERT_FALSE(delAgain.ok());
  EXPECT_EQ(delAgain.error().code, ErrorCode::not_found);
  EXPECT_EQ(volumeCount(), 0u);
  std::printf("[ timing ] createVolume %.3f s, deleteVolume %.3f s\n", createSeconds, deleteSeconds);
  RecordProperty("create_seconds", std::to_string(createSeconds));
  RecordProperty("delete_seconds", std::to_string(deleteSeconds));
}

TEST_F(LogicalPoolTest, BadSizesChangeNothing) {
  buildPool();
  model::VolumeSpec s;
  s.name = "v";
  s.format = model::DiskFormat::raw;
  s.capacity = 0;
  auto zero = backend_->createVolume(s, nullptr, dl());
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code, ErrorCode::invalid_argument);
  s.capacity = 1ull << 30;
  auto big = backend_->createVolume(s, nullptr, dl());
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(big.error().message.find("1GiB"), std::string::npos) << big.error().message;
  EXPECT_NE(big.error().message.find("120MiB"), std::string::npos) << big.error().message;
  EXPECT_EQ(volumeCount(), 0u);
}

TEST_F(LogicalPoolTest, BadNamesAndFormatsRefused) {
  buildPool();
  for (const std::string name : {"../x", "-x", "a/b", ".", "..", "", "snapshot1", "pvmove0", "a_mlog", "a b", "x\n"}) {
    model::VolumeSpec s;
    s.name = name;
    s.capacity = MiB;
    s.format = model::DiskFormat::raw;
    auto v = backend_->createVolume(s, nullptr, dl());
    ASSERT_FALSE(v.ok()) << quote(name);
    EXPECT_EQ(v.error().code, ErrorCode::invalid_argument) << quote(name) << ": " << v.error().message;
    EXPECT_FALSE(backend_->volumeInfo(name, dl()).ok());
  }
  model::VolumeSpec q;
  q.name = "disk";
  q.capacity = MiB;
  q.format = model::DiskFormat::qcow2;
  auto v = backend_->createVolume(q, nullptr, dl());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(v.error().message, "format: logical pools hold raw volumes");
  EXPECT_EQ(volumeCount(), 0u);
}

TEST_F(LogicalPoolTest, UploadLandsAtThePvOffsetAndReadsBack) {
  buildPool();
  create("first", 4 * MiB);  // so "data" does not start at extent 0
  create("data", 8 * MiB);
  std::string bytes = pattern(8 * MiB, 1);
  upload("data", bytes);
  EXPECT_EQ(download("data"), bytes);

  // Writes past the end are refused.
  auto w = backend_->openVolume("data", StreamMode::write, dl());
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->size(), 8 * MiB);
  auto past = (*w)->write(8 * MiB - 10, bytes.data(), 20, dl());
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::invalid_argument);
  EXPECT_TRUE((*w)->finish(dl()).ok());
  auto r = backend_->openVolume("data", StreamMode::read, dl());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE((*r)->write(0, "x", 1, dl()).ok());

  // Offset computed independently: pe_start + first extent * extent size from lvm2's own report.
  auto seg = lvmReport({"lvs", "-o", "lv_name,seg_pe_ranges,vg_extent_size", vg_ + "/data"});
  ASSERT_EQ(seg.size(), 1u);
  std::string ranges = seg[0]["seg_pe_ranges"];  // "/dev/loop0:3-4"
  auto colon = ranges.rfind(':');
  std::string device = ranges.substr(0, colon);
  uint64_t firstExtent = *parseUint(split(ranges.substr(colon + 1), '-')[0]);
  auto pv = lvmReport({"pvs", "-o", "pv_name,pe_start", device});
  ASSERT_EQ(pv.size(), 1u);
  uint64_t offset = *parseUint(pv[0]["pe_start"].get<std::string>()) + firstExtent * *parseUint(seg[0]["vg_extent_size"].get<std::string>());
  EXPECT_GT(firstExtent, 0u);
  EXPECT_EQ(readDevice(device, offset, bytes.size()), bytes);

  auto resolved = backend_->resolve(named("data"), dl());
  ASSERT_TRUE(resolved.ok()) << resolved.error().message;
  EXPECT_EQ(resolved->path, device);
  EXPECT_EQ(resolved->offset, offset);
  EXPECT_EQ(resolved->size, 8 * MiB);
  EXPECT_EQ(resolved->format, model::DiskFormat::raw);
  EXPECT_EQ(backend_->resolve(named("nothere"), dl()).error().code, ErrorCode::not_found);
}

TEST_F(LogicalPoolTest, WipeZeroes) {
  buildPool();
  create("w", 8 * MiB);
  upload("w", pattern(8 * MiB, 2));
  auto wiped = backend_->wipeVolume(named("w"), nullptr, dl());
  ASSERT_TRUE(wiped.ok()) << wiped.error().message;
  EXPECT_EQ(download("w"), std::string(8 * MiB, '\0'));
  auto where = backend_->resolve(named("w"), dl());
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(readDevice(where->path, where->offset, 8 * MiB), std::string(8 * MiB, '\0'));
}

TEST_F(LogicalPoolTest, FullCloneCopiesLinkedCloneNeedsDeviceMapper) {
  buildPool();
  create("src", 12 * MiB);
  std::string bytes = pattern(12 * MiB, 3);
  std::fill(bytes.begin() + 4 * MiB, bytes.begin() + 8 * MiB, '\0');  // a zero run takes the zero-out path
  upload("src", bytes);
  double lastProgress = 0;
  CloneOptions full;
  full.linked = false;
  full.progress = [&](double f) { lastProgress = f; };
  auto t0 = std::chrono::steady_clock::now();
  auto copy = backend_->cloneVolume(named("src"), "copy", full, dl());
  double cloneSeconds = secondsSince(t0);
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  EXPECT_EQ(copy->capacity, 12 * MiB);
  EXPECT_DOUBLE_EQ(lastProgress, 1.0);
  EXPECT_EQ(download("copy"), bytes);
  std::printf("[ timing ] full clone of 12 MiB %.3f s\n", cloneSeconds);

  CloneOptions linked;
  auto l = backend_->cloneVolume(named("src"), "linked", linked, dl());
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::unavailable);
  EXPECT_NE(l.error().message.find("device-mapper not available"), std::string::npos) << l.error().message;
  EXPECT_FALSE(backend_->cloneVolume(named("missing"), "c2", full, dl()).ok());
  EXPECT_EQ(volumeCount(), 2u);
}

TEST_F(LogicalPoolTest, VolumeAcrossPvsStreamsButCannotBeResolved) {
  buildPool();
  create("big", 80 * MiB);  // more than one 60 MiB PV holds
  std::string bytes = pattern(80 * MiB, 4);
  upload("big", bytes);
  EXPECT_EQ(download("big"), bytes);
  auto r = backend_->resolve(named("big"), dl());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_NE(r.error().message.find("device-mapper not available"), std::string::npos) << r.error().message;
}

TEST_F(LogicalPoolTest, StreamNoticesALayoutChange) {
  buildPool();
  create("moving", 8 * MiB);
  auto w = backend_->openVolume("moving", StreamMode::write, dl());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->write(0, "abc", 3, dl()).ok());
  ASSERT_TRUE(backend_->resizeVolume(named("moving"), 12 * MiB, false, dl()).ok());
  EXPECT_FALSE((*w)->finish(dl()).ok());
}

TEST_F(LogicalPoolTest, DestroyRefusedWhileVolumesExist) {
  buildPool();
  create("keep", 4 * MiB);
  auto refused = backend_->destroyStorage(dl());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_EQ(volumeCount(), 1u);
  ASSERT_TRUE(backend_->deleteVolume("keep", dl()).ok());
  auto destroyed = backend_->destroyStorage(dl());
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  EXPECT_TRUE(lvmReport({"pvs", "-o", "pv_name"}).empty());
  EXPECT_EQ(backend_->start(dl()).error().code, ErrorCode::not_found);
}

}  // namespace

namespace {

// lvm2 2.03.16 writes "...},\n]" in command logs; the runner must still parse it.
TEST(LvmJson, TrailingCommasRemovedOutsideStrings) {
  EXPECT_EQ(vmm::storage::stripTrailingCommas("{\"log\":[{\"a\":\"x,]\"},\n  ]}"), "{\"log\":[{\"a\":\"x,]\"}\n  ]}");
  EXPECT_EQ(vmm::storage::stripTrailingCommas("[1, 2,]"), "[1, 2]");
  EXPECT_EQ(vmm::storage::stripTrailingCommas("{\"q\":\"a\\\",}\",}"), "{\"q\":\"a\\\",}\"}");
}

}  // namespace
