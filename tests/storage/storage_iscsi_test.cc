// The iscsi pool backend against a real tgtd on loopback, through libiscsi in-process.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>

#include "base/fs.h"
#include "base/process.h"
#include "model/json_reader.h"
#include "storage/iscsi/iscsi_backend.h"
#include "storage/iscsi/iscsi_session.h"
#include "tests/support/host_tools.h"
#include "tests/support/loop_device.h"
#include "tests/support/require.h"
#include "tests/support/tgt_target.h"

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

constexpr const char* kIqn = "iqn.2024-01.io.vmm.test:disks";
constexpr const char* kChapIqn = "iqn.2024-01.io.vmm.test:chap";
constexpr const char* kChapUser = "vmmuser";
constexpr const char* kChapSecret = "s3cret-Chap-Pw";
constexpr uint64_t kMiB = 1 << 20;

Deadline dl(int ms = 10000) { return Deadline::after(Millis(ms)); }

double msSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

std::string readAt(const std::string& path, uint64_t offset, size_t len) {
  fs::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string out(len, '\0');
  ssize_t n = fd.valid() ? ::pread(fd.get(), out.data(), len, static_cast<off_t>(offset)) : -1;
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

void writeAt(const std::string& path, uint64_t offset, const std::string& data) {
  fs::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(offset)), static_cast<ssize_t>(data.size()));
}

// A loopback socket: listening (accepts TCP, never answers) or bound only (refuses connections).
struct LoopbackSocket {
  fs::UniqueFd fd;
  int port = 0;
  explicit LoopbackSocket(bool listening) : fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    if (listening && ::listen(fd.get(), 4) != 0) return;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
};

class IscsiPoolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testutil::TgtTarget::available()) return;
    char tmpl[] = "/tmp/vmm-iscsipool-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    for (auto [path, size] : {std::pair{disk1(), 64 * kMiB}, {disk2(), 32 * kMiB}, {chapDisk(), 8 * kMiB}})
      ASSERT_TRUE(testutil::makeSparseFile(path, size).ok());
    tgt = new testutil::TgtTarget;
    auto st = tgt->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto tid = tgt->addTarget(kIqn);
    ASSERT_TRUE(tid.ok()) << tid.error().message;
    ASSERT_TRUE(tgt->addLun(*tid, 1, disk1()).ok());
    ASSERT_TRUE(tgt->addLun(*tid, 2, disk2()).ok());
    auto chapTid = tgt->addTarget(kChapIqn);
    ASSERT_TRUE(chapTid.ok()) << chapTid.error().message;
    ASSERT_TRUE(tgt->addLun(*chapTid, 1, chapDisk()).ok());
    auto chap = tgt->setChap(*chapTid, kChapUser, kChapSecret);
    ASSERT_TRUE(chap.ok()) << chap.error().message;
  }
  static void TearDownTestSuite() {
    delete tgt;  // stops tgtd
    tgt = nullptr;
    if (!dir.empty()) (void)runCommand({"rm", "-rf", dir});
  }
  void SetUp() override {
    VMM_REQUIRE(testutil::TgtTarget::available(), testutil::TgtTarget::missing());
    ASSERT_TRUE(tgt && tgt->running()) << (tgt ? tgt->log() : "");
  }

  static std::string disk1() { return dir + "/lun1.img"; }
  static std::string disk2() { return dir + "/lun2.img"; }
  static std::string chapDisk() { return dir + "/chap.img"; }

  static model::Pool pool(const std::string& target = kIqn, int port = 0) {
    model::Pool p;
    p.name = "san";
    p.type = model::PoolType::iscsi;
    p.source.host = "127.0.0.1";
    p.source.port = port ? port : tgt->port();
    p.source.target = target;
    p.source.initiator = "iqn.2024-01.io.vmm.test:initiator";
    return p;
  }
  static model::Pool chapPool(const std::string& secret) {
    model::Pool p = pool(kChapIqn);
    p.source.username = kChapUser;
    p.source.secret = secret;
    return p;
  }

  static inline testutil::TgtTarget* tgt = nullptr;
  static inline std::string dir;
};

TEST_F(IscsiPoolTest, StartListsDiskLunsWithExactSizes) {
  IscsiBackend b(pool());
  auto t0 = SteadyClock::now();
  auto st = b.start(dl());
  double startMs = msSince(t0);
  ASSERT_TRUE(st.ok()) << st.error().message;
  std::cout << "[timing] login + REPORT LUNS + logout: " << startMs << " ms\n";
  auto vols = b.listVolumes(dl());
  ASSERT_TRUE(vols.ok()) << vols.error().message;
  ASSERT_EQ(vols->size(), 2u);  // LUN 0 (tgtd's controller) is not a volume
  EXPECT_EQ((*vols)[0].name, "lun-1");
  EXPECT_EQ((*vols)[0].capacity, 64 * kMiB);
  EXPECT_EQ((*vols)[0].format, model::DiskFormat::raw);
  EXPECT_EQ((*vols)[0].path, "iscsi://" + tgt->portal() + "/" + kIqn + "/1");
  EXPECT_EQ((*vols)[1].name, "lun-2");
  EXPECT_EQ((*vols)[1].capacity, 32 * kMiB);
  EXPECT_TRUE(b.stop(dl()).ok());
}

TEST_F(IscsiPoolTest, VolumeInfoAndCapacity) {
  IscsiBackend b(pool());
  auto v = b.volumeInfo("lun-2", dl());
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->capacity, 32 * kMiB);
  EXPECT_EQ(v->pool, "san");
  for (const char* bad : {"lun-0", "lun-7", "lun-01", "lun-", "disk", "lun-99999999999"}) {
    auto missing = b.volumeInfo(bad, dl());
    ASSERT_FALSE(missing.ok()) << bad;
    EXPECT_EQ(missing.error().code, ErrorCode::not_found) << bad << ": " << missing.error().message;
  }
  auto cap = b.capacity(dl());
  ASSERT_TRUE(cap.ok()) << cap.error().message;
  EXPECT_EQ(cap->capacity, 96 * kMiB);
  EXPECT_EQ(cap->allocation, 96 * kMiB);
  EXPECT_EQ(cap->available, 0u);
}

TEST_F(IscsiPoolTest, UnalignedWritesReadBackAndLandInTheBackingFile) {
  IscsiBackend b(pool());
  // Neighbours of the written ranges must survive the read-modify-write of partial blocks.
  writeAt(disk1(), 0, std::string(8192, 'N'));
  writeAt(disk1(), 3 * kMiB - 4096, std::string(8192, 'M'));
  std::string small = "hello, iscsi";  // inside one block
  std::string big(2 * kMiB + 777, '\0');  // crosses chunk and block boundaries at both ends
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  const uint64_t smallAt = 1000, bigAt = kMiB - 333;
  {
    auto s = b.openVolume("lun-1", StreamMode::write, dl());
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ((*s)->size(), 64 * kMiB);
    auto w = (*s)->write(smallAt, small.data(), small.size(), dl());
    ASSERT_TRUE(w.ok()) << w.error().message;
    w = (*s)->write(bigAt, big.data(), big.size(), dl());
    ASSERT_TRUE(w.ok()) << w.error().message;
    auto beyond = (*s)->write(64 * kMiB - 10, big.data(), 11, dl());
    ASSERT_FALSE(beyond.ok());
    EXPECT_EQ(beyond.error().code, ErrorCode::invalid_argument);
    auto f = (*s)->finish(dl());
    ASSERT_TRUE(f.ok()) << f.error().message;
  }
  auto r = b.openVolume("lun-1", StreamMode::read, dl());
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string back(big.size(), '\0');
  auto n = (*r)->read(bigAt, back.data(), back.size(), dl());
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, big.size());
  EXPECT_TRUE(back == big);
  std::string s2(small.size(), '\0');
  ASSERT_TRUE((*r)->read(smallAt, s2.data(), s2.size(), dl()).ok());
  EXPECT_EQ(s2, small);
  // Reads stop at the end of the LUN.
  char tail[100];
  auto end = (*r)->read(64 * kMiB - 40, tail, sizeof tail, dl());
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(*end, 40u);
  EXPECT_EQ(*(*r)->read(64 * kMiB, tail, sizeof tail, dl()), 0u);
  EXPECT_FALSE((*r)->write(0, "x", 1, dl()).ok());  // opened for reading
  EXPECT_TRUE((*r)->finish(dl()).ok());

  // On the target's disk: the bytes, and the untouched neighbours.
  EXPECT_EQ(readAt(disk1(), smallAt, small.size()), small);
  EXPECT_TRUE(readAt(disk1(), bigAt, big.size()) == big);
  EXPECT_EQ(readAt(disk1(), 0, smallAt), std::string(smallAt, 'N'));
  EXPECT_EQ(readAt(disk1(), smallAt + small.size(), 8192 - smallAt - small.size()),
            std::string(8192 - smallAt - small.size(), 'N'));
  EXPECT_EQ(readAt(disk1(), bigAt + big.size(), 3 * kMiB + 4096 - bigAt - big.size()),
            std::string(3 * kMiB + 4096 - bigAt - big.size(), 'M'));
}

TEST_F(IscsiPoolTest, WipeZeroesTheLun) {
  IscsiBackend b(pool());
  writeAt(disk2(), 0, std::string(4096, 'x'));
  writeAt(disk2(), 32 * kMiB - 4096, std::string(4096, 'y'));
  auto t0 = SteadyClock::now();
  auto st = b.wipeVolume(named("lun-2"), nullptr, dl(60000));
  double wipeMs = msSince(t0);
  ASSERT_TRUE(st.ok()) << st.error().message;
  std::cout << "[timing] wipe of a 32 MiB LUN: " << wipeMs << " ms\n";
  std::string all = readAt(disk2(), 0, 32 * kMiB);
  ASSERT_EQ(all.size(), 32 * kMiB);
  EXPECT_EQ(all.find_first_not_of('\0'), std::string::npos);
  EXPECT_FALSE(b.wipeVolume(named("lun-9"), nullptr, dl()).ok());
}

TEST_F(IscsiPoolTest, WipeHonoursTheDeadline) {
  IscsiBackend b(pool());
  auto t0 = SteadyClock::now();
  auto st = b.wipeVolume(named("lun-1"), nullptr, Deadline::after(Millis(30)));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::timeout) << st.error().message;
  EXPECT_LT(msSince(t0), 1000);
}

TEST_F(IscsiPoolTest, HungTargetTimesOutMidSession) {
  IscsiBackend b(pool());
  auto s = b.openVolume("lun-1", StreamMode::read, dl());
  ASSERT_TRUE(s.ok()) << s.error().message;
  struct Resume {  // the target answers again whatever happens below
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{tgt->pid()};
  ASSERT_EQ(::kill(tgt->pid(), SIGSTOP), 0);
  char buf[4096];
  auto t0 = SteadyClock::now();
  auto r = (*s)->read(0, buf, sizeof buf, Deadline::after(Millis(500)));
  double ms = msSince(t0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout) << r.error().message;
  EXPECT_LT(ms, 800);
  // The session is unusable now; later calls fail at once instead of waiting again.
  auto again = (*s)->read(0, buf, sizeof buf, dl());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::unavailable);
}

TEST_F(IscsiPoolTest, ResolveGivesQemuBlockdevOptions) {
  IscsiBackend b(pool());
  auto r = b.resolve(named("lun-2"), dl());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->protocol, "iscsi");
  EXPECT_EQ(r->format, model::DiskFormat::raw);
  EXPECT_TRUE(r->path.empty());
  EXPECT_EQ(r->blockdev, (model::json{{"transport", "tcp"},
                                      {"portal", tgt->portal()},
                                      {"target", kIqn},
                                      {"lun", 2},
                                      {"initiator-name", "iqn.2024-01.io.vmm.test:initiator"}}));
  EXPECT_TRUE(r->secret.empty());

  IscsiBackend c(chapPool(kChapSecret));
  auto rc = c.resolve(named("lun-1"), dl());
  ASSERT_TRUE(rc.ok()) << rc.error().message;
  EXPECT_EQ(rc->blockdev["user"], kChapUser);
  EXPECT_EQ(rc->username, kChapUser);
  EXPECT_EQ(rc->secret, kChapSecret);
  EXPECT_EQ(rc->blockdev.dump().find(kChapSecret), std::string::npos);
}

TEST_F(IscsiPoolTest, ChapRightCredentialsWork) {
  IscsiBackend b(chapPool(kChapSecret));
  auto st = b.start(dl());
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto vols = b.listVolumes(dl());
  ASSERT_TRUE(vols.ok()) << vols.error().message;
  ASSERT_EQ(vols->size(), 1u);
  EXPECT_EQ((*vols)[0].capacity, 8 * kMiB);
  EXPECT_EQ((*vols)[0].path.find(kChapSecret), std::string::npos);
  EXPECT_EQ((*vols)[0].path.find(kChapUser), std::string::npos);
}

TEST_F(IscsiPoolTest, ChapWrongSecretIsAnAuthenticationError) {
  IscsiBackend b(chapPool("wrong-secret-123"));
  auto st = b.start(dl());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::permission_denied);
  EXPECT_NE(st.error().message.find("authentication"), std::string::npos) << st.error().message;
  EXPECT_EQ(st.error().message.find("wrong-secret-123"), std::string::npos) << st.error().message;
  std::cout << "[error] " << st.error().message << "\n";

  model::Pool none = pool(kChapIqn);  // no credentials at all
  auto st2 = IscsiBackend(none).start(dl());
  ASSERT_FALSE(st2.ok());
  EXPECT_NE(st2.error().message.find("authentication"), std::string::npos) << st2.error().message;
}

TEST_F(IscsiPoolTest, ClosedPortFailsFast) {
  LoopbackSocket closed(false);  // bound, not listening: connections are refused
  ASSERT_GT(closed.port, 0);
  IscsiBackend b(pool(kIqn, closed.port));
  auto t0 = SteadyClock::now();
  auto st = b.start(dl());
  double ms = msSince(t0);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::unavailable);
  EXPECT_NE(st.error().message.find("connect"), std::string::npos) << st.error().message;
  EXPECT_LT(ms, 500) << st.error().message;
  std::cout << "[error] " << st.error().message << " (" << ms << " ms)\n";
}

TEST_F(IscsiPoolTest, SilentPortalTimesOutAtTheDeadline) {
  LoopbackSocket silent(true);  // accepts TCP into the backlog, never reads or answers
  ASSERT_GT(silent.port, 0);
  IscsiBackend b(pool(kIqn, silent.port));
  auto t0 = SteadyClock::now();
  auto st = b.start(Deadline::after(Millis(1000)));
  double ms = msSince(t0);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::timeout) << st.error().message;
  EXPECT_GE(ms, 900);
  EXPECT_LT(ms, 1500);
  std::cout << "[error] " << st.error().message << " (" << ms << " ms)\n";
}

TEST_F(IscsiPoolTest, WrongTargetListsTheTargetsFound) {
  IscsiBackend b(pool("iqn.2024-01.io.vmm.test:nope"));
  auto st = b.start(dl());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::not_found);
  EXPECT_NE(st.error().message.find("iqn.2024-01.io.vmm.test:nope"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find(kIqn), std::string::npos) << st.error().message;

  auto empty = IscsiBackend(pool("")).start(dl());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(empty.error().message.find(kIqn), std::string::npos) << empty.error().message;
  EXPECT_NE(empty.error().message.find(kChapIqn), std::string::npos) << empty.error().message;
  std::cout << "[error] " << st.error().message << "\n[error] " << empty.error().message << "\n";
}

TEST_F(IscsiPoolTest, WrongTargetWithChapCredentialsStillListsTargets) {
  model::Pool p = chapPool(kChapSecret);
  p.source.target = "iqn.2024-01.io.vmm.test:other";
  auto st = IscsiBackend(p).start(dl());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::not_found);
  EXPECT_NE(st.error().message.find(kIqn), std::string::npos) << st.error().message;
}

TEST_F(IscsiPoolTest, LunManagementIsUnsupported) {
  IscsiBackend b(pool());
  model::VolumeSpec spec;
  spec.name = "new";
  spec.capacity = kMiB;
  auto c = b.createVolume(spec, nullptr, dl());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::unsupported);
  EXPECT_EQ(b.deleteVolume("lun-1", dl()).error().code, ErrorCode::unsupported);
  EXPECT_EQ(b.resizeVolume(named("lun-1"), 2 * kMiB, false, dl()).error().code, ErrorCode::unsupported);
  EXPECT_EQ(b.cloneVolume(named("lun-1"), "copy", {}, dl()).error().code, ErrorCode::unsupported);
  EXPECT_TRUE(b.build(dl()).ok());
  EXPECT_EQ(b.type(), model::PoolType::iscsi);
}

TEST_F(IscsiPoolTest, DefaultInitiatorIsAnIqn) {
  std::string iqn = IscsiBackend::defaultInitiator();
  EXPECT_EQ(iqn.rfind("iqn.2024-01.io.vmm:", 0), 0u) << iqn;
  EXPECT_GT(iqn.size(), std::string("iqn.2024-01.io.vmm:").size());
  model::Pool p = pool();
  p.source.initiator.clear();
  EXPECT_TRUE(IscsiBackend(p).start(dl()).ok());
}

TEST_F(IscsiPoolTest, QemuImgInfoAgreesOnTheSize) {
  std::string url = "iscsi://" + tgt->portal() + "/" + kIqn + "/1";
  RunOptions opts;
  opts.deadline = dl(30000);
  std::string missing = testutil::missingQemuBlockDriver("iscsi");
  VMM_REQUIRE(missing.empty(), missing);
  auto r = runCommand({"qemu-img", "info", "--output=json", url}, opts);
  ASSERT_TRUE(r.ok() && r->success()) << (r.ok() ? r->describe() : r.error().message);
  auto info = model::json::parse(r->out, nullptr, false);
  ASSERT_FALSE(info.is_discarded()) << r->out;
  auto v = IscsiBackend(pool()).volumeInfo("lun-1", dl());
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(info.value("virtual-size", uint64_t{0}), v->capacity);
}

}  // namespace

namespace {

// The blockdev options resolve() returns, opened by QEMU's own iscsi driver.
TEST_F(IscsiPoolTest, QemuImgOpensTheResolvedBlockdev) {
  RunOptions probe;
  probe.deadline = dl(30000);
  std::string missing = testutil::missingQemuBlockDriver("iscsi");
  VMM_REQUIRE(missing.empty(), missing);
  auto p = runCommand({"qemu-img", "info", "iscsi://" + tgt->portal() + "/" + kIqn + "/2"}, probe);
  ASSERT_TRUE(p.ok() && p->success()) << (p.ok() ? p->describe() : p.error().message);
  std::string secretFile = dir + "/chap.secret";
  ASSERT_TRUE(fs::writeFileAtomic(secretFile, kChapSecret, 0600).ok());
  for (bool chap : {false, true}) {
    IscsiBackend b(chap ? chapPool(kChapSecret) : pool());
    auto r = b.resolve(named(chap ? "lun-1" : "lun-2"), dl());
    ASSERT_TRUE(r.ok()) << r.error().message;
    model::json file = r->blockdev;
    file["driver"] = "iscsi";
    std::vector<std::string> argv{"qemu-img", "info", "--output=json"};
    if (chap) {
      file["password-secret"] = "chap0";
      argv.push_back("--object");
      argv.push_back("secret,id=chap0,file=" + secretFile);
    }
    argv.push_back("json:" + model::json{{"driver", "raw"}, {"file", file}}.dump());
    RunOptions opts;
    opts.deadline = dl(30000);
    auto out = runCommand(argv, opts);
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE(out->success()) << out->describe();
    auto info = model::json::parse(out->out, nullptr, false);
    EXPECT_EQ(info.value("virtual-size", uint64_t{0}), (chap ? 8 : 32) * kMiB) << out->out;
  }
}

}  // namespace
