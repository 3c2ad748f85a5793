// The netfs pool backend against a real nfs-ganesha (+ rpcbind) in a private network and mount
// namespace made by main(), the real libnfs and the real qemu-img. Needs root.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/process.h"
#include "storage/netfs/netfs_backend.h"
#include "storage/qemu_img.h"
#include "tests/support/host_tools.h"
#include "tests/support/nfs_server.h"
#include "tests/support/process_scan.h"
#include "tests/support/require.h"

using namespace vmm;
using namespace vmm::storage;
using vmm::testutil::NfsServer;

namespace {

double msSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

void timing(const std::string& what, double ms) { std::printf("[ timing   ] %s: %.1f ms\n", what.c_str(), ms); }

Deadline dl(int ms = 30000) { return Deadline::after(Millis(ms)); }

constexpr uint32_t kToolUid = 1001065535;

model::Pool netfsPool(const std::string& host, const std::string& dir) {
  model::Pool p;
  p.name = "nfs1";
  p.type = model::PoolType::netfs;
  p.source.host = host;
  p.source.dir = dir;
  return p;
}

model::VolumeSpec spec(const std::string& name, uint64_t size, model::DiskFormat f = model::DiskFormat::qcow2) {
  model::VolumeSpec s;
  s.name = name;
  s.capacity = size;
  s.format = f;
  return s;
}

std::string randomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&out[i], &v, 8);
  }
  return out;
}

nlohmann::json qemuImgInfo(const std::string& target) {
  auto r = runCommand({"qemu-img", "info", "-U", "--output=json", target});
  if (!r.ok() || !r->success()) return {};
  return nlohmann::json::parse(r->out, nullptr, false);
}

class NetfsPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vmm-netfs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
    exportDir = root + "/export";
    ASSERT_EQ(::mkdir(exportDir.c_str(), 0755), 0);
    auto t = SteadyClock::now();
    auto st = server.start(exportDir);
    ASSERT_TRUE(st.ok()) << st.error().message;
    timing("ganesha + rpcbind start", msSince(t));
    // qemu-img on the pool's URLs as vmmd runs it: sandboxed, as the image tools' uid.
    ASSERT_EQ(::mkdir((root + "/sandbox-root").c_str(), 0700), 0);
    setQemuImgSandbox({kToolUid, root + "/sandbox-root"});
    backend = std::make_unique<NetfsBackend>(netfsPool(server.host(), server.exportPath()));
    t = SteadyClock::now();
    auto started = backend->start(dl());
    ASSERT_TRUE(started.ok()) << started.error().message;
    timing("mount (libnfs, NFSv3)", msSince(t));
  }
  void TearDown() override {
    setQemuImgSandbox({});
    if (backend) (void)backend->stop(dl(5000));
    backend.reset();
    pid_t ganesha = server.ganeshaPid();
    server.stop();
    if (ganesha > 0) {
      EXPECT_FALSE(processAlive(ganesha));
    }
    if (!root.empty()) (void)runCommand({"rm", "-rf", root});
  }

  std::vector<std::string> exportEntries() { return fs::listDir(exportDir).valueOr({}); }
  // A volume as the backend describes it (the pool service would put its record over it).
  model::Volume vol(const std::string& name) {
    auto v = backend->volumeInfo(name, dl());
    EXPECT_TRUE(v.ok()) << name;
    return v.ok() ? *v : model::Volume{};
  }
  std::vector<std::string> volumeNames() {
    std::vector<std::string> out;
    auto list = backend->listVolumes(dl());
    EXPECT_TRUE(list.ok()) << list.error().message;
    for (const auto& v : list.valueOr({})) out.push_back(v.name);
    return out;
  }
  std::string readAll(const std::string& name) {
    auto s = backend->openVolume(name, StreamMode::read, dl());
    if (!s.ok()) return "<" + s.error().message + ">";
    std::string out((*s)->size(), '\0');
    uint64_t off = 0;
    while (off < out.size()) {
      auto n = (*s)->read(off, out.data() + off, std::min<size_t>(1 << 20, out.size() - off), dl());
      if (!n.ok()) return "<" + n.error().message + ">";
      if (*n == 0) break;
      off += *n;
    }
    out.resize(off);
    EXPECT_TRUE((*s)->finish(dl()).ok());
    return out;
  }
  Status upload(const std::string& name, const std::string& data) {
    VMM_ASSIGN(auto s, backend->openVolume(name, StreamMode::write, dl()));
    for (size_t off = 0; off < data.size(); off += 1 << 20)
      VMM_TRY(s->write(off, data.data() + off, std::min<size_t>(1 << 20, data.size() - off), dl()));
    return s->finish(dl());
  }

  NfsServer server;
  std::string root, exportDir;
  std::unique_ptr<NetfsBackend> backend;
};

TEST_F(NetfsPoolTest, CapacityCreateListInfo) {
  auto cap = backend->capacity(dl());
  ASSERT_TRUE(cap.ok()) << cap.error().message;
  EXPECT_GT(cap->capacity, 0u);
  EXPECT_GT(cap->available, 0u);
  EXPECT_LE(cap->allocation, cap->capacity);

  auto t = SteadyClock::now();
  auto raw = backend->createVolume(spec("a.raw", 64ULL << 20, model::DiskFormat::raw), nullptr, dl());
  timing("create raw 64 MiB (libnfs)", msSince(t));
  ASSERT_TRUE(raw.ok()) << raw.error().message;
  EXPECT_EQ(raw->format, model::DiskFormat::raw);
  EXPECT_EQ(raw->capacity, 64ULL << 20);
  EXPECT_LT(raw->allocation, 1ULL << 20);  // sparse
  EXPECT_EQ(raw->path, "nfs://127.0.0.1/export/a.raw");
  EXPECT_EQ(raw->pool, "nfs1");

  t = SteadyClock::now();
  auto q = backend->createVolume(spec("b.qcow2", 10ULL << 30), nullptr, dl());
  timing("create qcow2 10 GiB (qemu-img on nfs://)", msSince(t));
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(q->format, model::DiskFormat::qcow2);
  EXPECT_EQ(q->capacity, 10ULL << 30);
  EXPECT_GT(q->allocation, 0u);
  EXPECT_LT(q->allocation, 4ULL << 20);

  // The files really are in the exported directory.
  struct stat st{};
  ASSERT_EQ(::stat((exportDir + "/a.raw").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 64LL << 20);
  auto info = qemuImgInfo(exportDir + "/b.qcow2");
  EXPECT_EQ(info.value("format", ""), "qcow2");
  EXPECT_EQ(info.value("virtual-size", uint64_t{0}), 10ULL << 30);

  // Dot files, temporary files and directories are not volumes.
  ASSERT_TRUE(fs::writeFileAtomic(exportDir + "/.hidden", "x").ok());
  ASSERT_TRUE(fs::writeFileAtomic(exportDir + "/.c.qcow2.partial", "x").ok());
  ASSERT_EQ(::mkdir((exportDir + "/subdir").c_str(), 0755), 0);
  t = SteadyClock::now();
  auto names = volumeNames();
  timing("list 2 volumes", msSince(t));
  EXPECT_EQ(names, (std::vector<std::string>{"a.raw", "b.qcow2"}));

  auto list = backend->listVolumes(dl());
  ASSERT_TRUE(list.ok());
  for (const auto& v : *list) {
    auto i = backend->volumeInfo(v.name, dl());
    ASSERT_TRUE(i.ok()) << i.error().message;
    EXPECT_EQ(i->capacity, v.capacity);
    EXPECT_EQ(i->format, v.format);
    EXPECT_EQ(i->allocation, v.allocation);
  }

  // A volume written by someone else (here: on the server's disk) shows up with its format.
  ASSERT_TRUE(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", exportDir + "/outside.qcow2", "3G"})->success());
  auto o = backend->volumeInfo("outside.qcow2", dl());
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->format, model::DiskFormat::qcow2);
  EXPECT_EQ(o->capacity, 3ULL << 30);
}

TEST_F(NetfsPoolTest, ListManyVolumes) {
  for (int i = 0; i < 100; ++i) {
    std::string name = exportDir + "/v" + std::to_string(100 + i) + (i % 2 ? ".qcow2" : ".raw");
    if (i % 2) ASSERT_TRUE(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", name, "1G"})->success());
    else ASSERT_TRUE(fs::writeFileAtomic(name, std::string(1 << 20, 'x')).ok());
  }
  auto t = SteadyClock::now();
  auto list = backend->listVolumes(dl());
  timing("list 100 volumes (50 qcow2, 50 raw)", msSince(t));
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 100u);
  for (const auto& v : *list) {
    bool qcow = v.name.find(".qcow2") != std::string::npos;
    EXPECT_EQ(v.format, qcow ? model::DiskFormat::qcow2 : model::DiskFormat::raw) << v.name;
    EXPECT_EQ(v.capacity, qcow ? 1ULL << 30 : 1ULL << 20) << v.name;
  }
}

TEST_F(NetfsPoolTest, LinkedAndFullClones) {
  ASSERT_TRUE(backend->createVolume(spec("base.qcow2", 1ULL << 30), nullptr, dl()).ok());
  auto t = SteadyClock::now();
  CloneOptions linked;
  auto c = backend->cloneVolume(vol("base.qcow2"), "vm1.qcow2", linked, dl());
  timing("linked clone", msSince(t));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->format, model::DiskFormat::qcow2);
  EXPECT_EQ(c->capacity, 1ULL << 30);
  EXPECT_EQ(c->backingVolume, "base.qcow2");
  // The chain names the base by its nfs:// URL (QEMU's nfs driver mis-resolves relative names).
  auto info = qemuImgInfo(exportDir + "/vm1.qcow2");
  EXPECT_EQ(info.value("backing-filename", ""), "nfs://127.0.0.1/export/base.qcow2") << info.dump();
  EXPECT_EQ(info.value("backing-filename-format", ""), "qcow2");
  auto chain = runCommand({"qemu-img", "check", "-q", c->path});  // opens the whole chain over NFS
  EXPECT_TRUE(chain.ok() && chain->success()) << (chain.ok() ? chain->err : chain.error().message);

  // QEMU opens the chain from resolve()'s blockdev options, as a guest would.
  auto r = backend->resolve(vol("vm1.qcow2"), dl());
  ASSERT_TRUE(r.ok()) << r.error().message;
  nlohmann::json file = r->blockdev;
  file["driver"] = r->protocol;
  auto viaBlockdev = runCommand({"qemu-img", "info", "-U", "--backing-chain", "--output=json",
                                 "json:" + nlohmann::json{{"driver", "qcow2"}, {"file", file}}.dump()});
  ASSERT_TRUE(viaBlockdev.ok() && viaBlockdev->success()) << (viaBlockdev.ok() ? viaBlockdev->err : "");
  EXPECT_EQ(nlohmann::json::parse(viaBlockdev->out, nullptr, false).size(), 2u) << viaBlockdev->out;

  // Wiping a linked clone keeps it on its base.
  model::Volume baseRecord = vol("base.qcow2");
  ASSERT_TRUE(backend->wipeVolume(vol("vm1.qcow2"), &baseRecord, dl()).ok());
  EXPECT_EQ(backend->volumeInfo("vm1.qcow2", dl())->backingVolume, "base.qcow2");

  // The same through createVolume with a backing volume, and a bigger overlay.
  auto s = spec("vm2.qcow2", 2ULL << 30);
  s.backingVolume = "base.qcow2";
  model::Volume base = vol("base.qcow2");
  auto c2 = backend->createVolume(s, &base, dl());
  ASSERT_TRUE(c2.ok()) << c2.error().message;
  EXPECT_EQ(c2->capacity, 2ULL << 30);
  EXPECT_EQ(c2->backingVolume, "base.qcow2");
  s.name = "small.qcow2";
  s.capacity = 1 << 20;
  EXPECT_EQ(backend->createVolume(s, &base, dl()).error().code, ErrorCode::invalid_argument);
  s.name = "raw-on-base";
  s.format = model::DiskFormat::raw;
  EXPECT_EQ(backend->createVolume(s, &base, dl()).error().code, ErrorCode::invalid_argument);

  // A full clone of the linked clone is independent of the base.
  ASSERT_TRUE(upload("vm1.qcow2", readAll("vm1.qcow2")).ok());
  CloneOptions full;
  full.linked = false;
  double progress = 0;
  full.progress = [&](double f) { progress = f; };
  t = SteadyClock::now();
  auto f = backend->cloneVolume(vol("vm1.qcow2"), "copy.qcow2", full, dl());
  timing("full clone (qemu-img convert nfs:// -> nfs://)", msSince(t));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->format, model::DiskFormat::qcow2);
  EXPECT_EQ(f->capacity, 1ULL << 30);
  EXPECT_TRUE(f->backingVolume.empty());
  EXPECT_EQ(progress, 1.0);
  EXPECT_EQ(backend->cloneVolume(vol("base.qcow2"), "copy.qcow2", full, dl()).error().code, ErrorCode::conflict);

  auto names = volumeNames();
  EXPECT_EQ(names, (std::vector<std::string>{"base.qcow2", "copy.qcow2", "vm1.qcow2", "vm2.qcow2"}));
  for (const auto& e : exportEntries()) EXPECT_NE(e[0], '.') << e;  // no temporary file left
}

TEST_F(NetfsPoolTest, UploadDownloadAndAbandonedUpload) {
  ASSERT_TRUE(backend->createVolume(spec("disk.raw", 8ULL << 20, model::DiskFormat::raw), nullptr, dl()).ok());
  std::string data = randomBytes(8 << 20, 42);
  auto t = SteadyClock::now();
  auto up = upload("disk.raw", data);
  timing("upload 8 MiB", msSince(t));
  ASSERT_TRUE(up.ok()) << up.error().message;
  t = SteadyClock::now();
  std::string back = readAll("disk.raw");
  timing("download 8 MiB", msSince(t));
  EXPECT_TRUE(back == data) << "downloaded " << back.size() << " bytes differ";
  EXPECT_TRUE(fs::readFile(exportDir + "/disk.raw").valueOr("") == data);

  // An abandoned upload leaves the volume as it was, and no temporary file.
  {
    auto s = backend->openVolume("disk.raw", StreamMode::write, dl());
    ASSERT_TRUE(s.ok()) << s.error().message;
    std::string other = randomBytes(1 << 20, 7);
    ASSERT_TRUE((*s)->write(0, other.data(), other.size(), dl()).ok());
    EXPECT_TRUE(fs::exists(exportDir + "/.disk.raw.upload"));
  }
  EXPECT_FALSE(fs::exists(exportDir + "/.disk.raw.upload"));
  EXPECT_TRUE(readAll("disk.raw") == data);

  // Uploading an image changes what the volume is: a qcow2 file makes a qcow2 volume.
  ASSERT_TRUE(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", root + "/img.qcow2", "5G"})->success());
  ASSERT_TRUE(upload("disk.raw", fs::readFile(root + "/img.qcow2").valueOr("")).ok());
  auto v = backend->volumeInfo("disk.raw", dl());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->format, model::DiskFormat::qcow2);
  EXPECT_EQ(v->capacity, 5ULL << 30);
  EXPECT_EQ(backend->openVolume("missing", StreamMode::write, dl()).error().code, ErrorCode::not_found);
}

TEST_F(NetfsPoolTest, ResizeWipeDelete) {
  ASSERT_TRUE(backend->createVolume(spec("r.raw", 16ULL << 20, model::DiskFormat::raw), nullptr, dl()).ok());
  ASSERT_TRUE(backend->createVolume(spec("q.qcow2", 1ULL << 30), nullptr, dl()).ok());

  ASSERT_TRUE(backend->resizeVolume(vol("r.raw"), 32ULL << 20, false, dl()).ok());
  EXPECT_EQ(backend->volumeInfo("r.raw", dl())->capacity, 32ULL << 20);
  auto shrink = backend->resizeVolume(vol("r.raw"), 8ULL << 20, false, dl());
  EXPECT_EQ(shrink.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(backend->volumeInfo("r.raw", dl())->capacity, 32ULL << 20);
  ASSERT_TRUE(backend->resizeVolume(vol("r.raw"), 8ULL << 20, true, dl()).ok());
  EXPECT_EQ(backend->volumeInfo("r.raw", dl())->capacity, 8ULL << 20);
  EXPECT_EQ(backend->resizeVolume(vol("r.raw"), 0, true, dl()).error().code, ErrorCode::invalid_argument);

  // qemu-img runs for a few milliseconds: sampled every one, and again should a run be missed.
  std::set<std::string> seen;
  for (int attempt = 0; attempt < 5 && seen.empty(); ++attempt) {
    auto t = SteadyClock::now();
    testutil::IdentitySampler resizer(testutil::IdentitySampler::allProcesses, {"qemu-img"}, server.exportPath() + "/q.qcow2",
                                      Millis(1));
    auto grown = backend->resizeVolume(vol("q.qcow2"), 3ULL << 30, false, dl());
    seen = resizer.stop();
    timing("resize qcow2 (qemu-img resize nfs://)", msSince(t));
    ASSERT_TRUE(grown.ok()) << grown.error().message;
  }
  EXPECT_EQ(backend->volumeInfo("q.qcow2", dl())->capacity, 3ULL << 30);
  EXPECT_EQ(qemuImgInfo(exportDir + "/q.qcow2").value("virtual-size", uint64_t{0}), 3ULL << 30);
  // It ran as the image tools' uid without a capability, though the file is root's.
  EXPECT_EQ(seen, (std::set<std::string>{"qemu-img " + std::to_string(kToolUid) + " 0000000000000000"}));

  // Wipe: same size and format, content gone.
  ASSERT_TRUE(upload("r.raw", randomBytes(8 << 20, 3)).ok());
  ASSERT_TRUE(backend->wipeVolume(vol("r.raw"), nullptr, dl()).ok());
  EXPECT_TRUE(readAll("r.raw") == std::string(8 << 20, '\0'));
  ASSERT_TRUE(backend->wipeVolume(vol("q.qcow2"), nullptr, dl()).ok());
  auto q = backend->volumeInfo("q.qcow2", dl());
  EXPECT_EQ(q->format, model::DiskFormat::qcow2);
  EXPECT_EQ(q->capacity, 3ULL << 30);

  ASSERT_TRUE(backend->deleteVolume("r.raw", dl()).ok());
  EXPECT_FALSE(fs::exists(exportDir + "/r.raw"));
  EXPECT_EQ(backend->deleteVolume("r.raw", dl()).error().code, ErrorCode::not_found);
  EXPECT_EQ(backend->volumeInfo("r.raw", dl()).error().code, ErrorCode::not_found);
  EXPECT_EQ(volumeNames(), std::vector<std::string>{"q.qcow2"});
  EXPECT_EQ(backend->destroyStorage(dl()).error().code, ErrorCode::conflict);
  ASSERT_TRUE(backend->deleteVolume("q.qcow2", dl()).ok());
  EXPECT_TRUE(backend->destroyStorage(dl()).ok());
  EXPECT_TRUE(exportEntries().empty());
}

TEST_F(NetfsPoolTest, BadInputsChangeNothing) {
  ASSERT_TRUE(backend->createVolume(spec("keep.qcow2", 1 << 30), nullptr, dl()).ok());
  auto before = exportEntries();
  auto cap = backend->capacity(dl());
  ASSERT_TRUE(cap.ok());

  for (const char* bad : {"../x", "a/b", ".hidden", "", "x y", "x?y", "x%2f"}) {
    auto r = backend->createVolume(spec(bad, 1 << 20), nullptr, dl());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << bad;
  }
  EXPECT_EQ(backend->volumeInfo("../x", dl()).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(backend->deleteVolume("../keep.qcow2", dl()).error().code, ErrorCode::invalid_argument);

  auto zero = backend->createVolume(spec("zero.raw", 0, model::DiskFormat::raw), nullptr, dl());
  EXPECT_EQ(zero.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(zero.error().message.find("greater than 0"), std::string::npos) << zero.error().message;

  for (auto f : {model::DiskFormat::raw, model::DiskFormat::qcow2}) {
    auto huge = backend->createVolume(spec("huge", cap->available + (1ULL << 30), f), nullptr, dl());
    ASSERT_FALSE(huge.ok());
    EXPECT_EQ(huge.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(huge.error().message.find("free space"), std::string::npos) << huge.error().message;
  }

  auto dup = backend->createVolume(spec("keep.qcow2", 2 << 20, model::DiskFormat::raw), nullptr, dl());
  EXPECT_EQ(dup.error().code, ErrorCode::conflict);
  EXPECT_EQ(backend->volumeInfo("keep.qcow2", dl())->format, model::DiskFormat::qcow2);  // untouched

  EXPECT_EQ(exportEntries(), before);
  std::printf("[ messages ] %s | %s | %s\n", zero.error().message.c_str(), dup.error().message.c_str(),
              backend->createVolume(spec("../x", 1), nullptr, dl()).error().message.c_str());
}

TEST_F(NetfsPoolTest, ResolveGivesQemuBlockdev) {
  ASSERT_TRUE(backend->createVolume(spec("guest.qcow2", 2ULL << 30), nullptr, dl()).ok());
  auto r = backend->resolve(vol("guest.qcow2"), dl());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->protocol, "nfs");
  EXPECT_EQ(r->format, model::DiskFormat::qcow2);
  EXPECT_TRUE(r->path.empty());
  EXPECT_EQ(r->blockdev, (nlohmann::json{{"server", {{"type", "inet"}, {"host", "127.0.0.1"}}},
                                         {"path", "/export/guest.qcow2"},
                                         {"user", 0},
                                         {"group", 0}}));
  // QEMU opens exactly these options (the driver adds driver=nfs like the command line does).
  nlohmann::json file = r->blockdev;
  file["driver"] = r->protocol;
  nlohmann::json opts = {{"driver", "qcow2"}, {"file", file}};
  auto info = qemuImgInfo("json:" + opts.dump());
  EXPECT_EQ(info.value("virtual-size", uint64_t{0}), 2ULL << 30) << opts.dump();
}

TEST_F(NetfsPoolTest, StoppedPoolAndBadSources) {
  ASSERT_TRUE(backend->stop(dl()).ok());
  auto l = backend->listVolumes(dl());
  EXPECT_EQ(l.error().code, ErrorCode::unavailable);
  EXPECT_NE(l.error().message.find("not started"), std::string::npos) << l.error().message;
  ASSERT_TRUE(backend->start(dl()).ok());
  EXPECT_TRUE(backend->listVolumes(dl()).ok());

  // A directory the server does not export.
  NetfsBackend other(netfsPool(server.host(), "/not-exported"));
  auto t = SteadyClock::now();
  auto st = other.start(dl(5000));
  ASSERT_FALSE(st.ok());
  timing("start on a non-exported directory (error)", msSince(t));
  std::printf("[ messages ] %s\n", st.error().message.c_str());
  EXPECT_LT(msSince(t), 2000);

  for (auto p : {netfsPool("", "/export"), netfsPool("127.0.0.1", "export"), netfsPool("127.0.0.1", "/a/../b"),
                 netfsPool("host/x", "/export")}) {
    auto bad = NetfsBackend(p).start(dl());
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument) << p.source.host << " " << p.source.dir;
  }
  auto withPort = netfsPool("127.0.0.1", "/export");
  withPort.source.port = 2049;
  EXPECT_EQ(NetfsBackend(withPort).start(dl()).error().code, ErrorCode::invalid_argument);
}

TEST_F(NetfsPoolTest, HungServerTimesOutAndRecovers) {
  ASSERT_TRUE(backend->createVolume(spec("a.qcow2", 1 << 30), nullptr, dl()).ok());
  auto writer = backend->openVolume("a.qcow2", StreamMode::write, dl());
  ASSERT_TRUE(writer.ok()) << writer.error().message;
  ASSERT_TRUE(server.pause().ok());

  // A new mount of the hung server.
  NetfsBackend fresh(netfsPool(server.host(), server.exportPath()));
  auto t = SteadyClock::now();
  auto st = fresh.start(dl(2000));
  double ms = msSince(t);
  timing("start against a hung server (2 s deadline)", ms);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::timeout) << st.error().message;
  EXPECT_GE(ms, 1900);
  EXPECT_LT(ms, 2500);

  // Calls on the mounted pool: the first waits for the server, a concurrent one gives up at its
  // own deadline instead of queueing behind it.
  t = SteadyClock::now();
  auto slow = std::async(std::launch::async, [&] { return backend->listVolumes(dl(2000)); });
  std::this_thread::sleep_for(Millis(100));
  auto t2 = SteadyClock::now();
  auto cap = backend->capacity(dl(500));
  double capMs = msSince(t2);
  auto list = slow.get();
  ms = msSince(t);
  timing("listVolumes against a hung server (2 s deadline)", ms);
  timing("concurrent capacity (0.5 s deadline) while listVolumes waits", capMs);
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.error().code, ErrorCode::timeout) << list.error().message;
  EXPECT_LT(ms, 2500);
  ASSERT_FALSE(cap.ok());
  EXPECT_EQ(cap.error().code, ErrorCode::timeout) << cap.error().message;
  EXPECT_LT(capMs, 900);
  std::printf("[ messages ] %s | %s\n", st.error().message.c_str(), cap.error().message.c_str());

  auto create = backend->createVolume(spec("b.raw", 1 << 20, model::DiskFormat::raw), nullptr, dl(1000));
  EXPECT_EQ(create.error().code, ErrorCode::timeout);
  std::string chunk = randomBytes(1 << 20, 9);
  t = SteadyClock::now();
  auto w = (*writer)->write(0, chunk.data(), chunk.size(), dl(1000));
  timing("upload write against a hung server (1 s deadline)", msSince(t));
  EXPECT_EQ(w.error().code, ErrorCode::timeout);
  EXPECT_LT(msSince(t), 1500);

  // Once the server answers again, the same mount works (late answers are dropped).
  ASSERT_TRUE(server.resume().ok());
  writer->reset();  // the abandoned upload is cleaned up once the server answers
  EXPECT_FALSE(fs::exists(exportDir + "/.a.qcow2.upload"));
  t = SteadyClock::now();
  auto again = backend->listVolumes(dl(5000));
  timing("listVolumes after SIGCONT", msSince(t));
  ASSERT_TRUE(again.ok()) << again.error().message;
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].name, "a.qcow2");
  EXPECT_TRUE(backend->capacity(dl(5000)).ok());
  EXPECT_TRUE(backend->createVolume(spec("c.raw", 1 << 20, model::DiskFormat::raw), nullptr, dl(5000)).ok());
  EXPECT_TRUE(fresh.start(dl(5000)).ok());
  EXPECT_EQ(fresh.listVolumes(dl(5000))->size(), 2u);
  EXPECT_TRUE(fresh.stop(dl(5000)).ok());
}

TEST_F(NetfsPoolTest, ConcurrentCallsShareTheMount) {
  std::vector<std::future<std::string>> workers;
  for (int w = 0; w < 4; ++w) {
    workers.push_back(std::async(std::launch::async, [this, w]() -> std::string {
      for (int i = 0; i < 10; ++i) {
        std::string name = "w" + std::to_string(w) + "-" + std::to_string(i);
        auto c = backend->createVolume(spec(name, 1 << 20, model::DiskFormat::raw), nullptr, dl());
        if (!c.ok()) return c.error().message;
        auto l = backend->listVolumes(dl());
        if (!l.ok()) return l.error().message;
        auto up = upload(name, randomBytes(256 << 10, static_cast<uint64_t>(w * 100 + i)));
        if (!up.ok()) return up.error().message;
        if (i % 2 == 0) {
          auto d = backend->deleteVolume(name, dl());
          if (!d.ok()) return d.error().message;
        }
      }
      return "";
    }));
  }
  for (auto& f : workers) EXPECT_EQ(f.get(), "");
  EXPECT_EQ(volumeNames().size(), 20u);
}

TEST(NetfsUnreachable, StartFailsQuicklyAndClearly) {
  // No server at all in this namespace now: nothing listens on 127.0.0.1:111.
  NetfsBackend b(netfsPool("127.0.0.1", "/export"));
  auto t = SteadyClock::now();
  auto st = b.start(dl(5000));
  double ms = msSince(t);
  timing("start with nothing listening (error)", ms);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::unavailable) << st.error().message;
  EXPECT_NE(st.error().message.find("127.0.0.1"), std::string::npos) << st.error().message;
  EXPECT_LT(ms, 1000);
  std::printf("[ messages ] %s\n", st.error().message.c_str());
  EXPECT_EQ(b.listVolumes(dl()).error().code, ErrorCode::unavailable);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string missing = NfsServer::missing();
  if (missing.empty()) missing = vmm::testutil::missingTools({"qemu-img"}, "qemu-utils");
  if (!missing.empty()) {
    vmm::testutil::requireForAllTests(missing);
  } else if (auto st = vmm::testutil::enterPrivateNamespaces(); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.error().message.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
