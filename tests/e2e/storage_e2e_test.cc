// End-to-end: storage pools and volumes through a real vmmd (test driver), over JSON-RPC,
// HTTP and vmctl. Dir pools everywhere; a logical pool on two loop devices and an iscsi pool
// on a real tgtd (CHAP) on loopback. Needs root for loop devices, lvm2 and tgtd.
#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/random.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
#include "tests/support/loop_device.h"
#include "tests/support/require.h"
#include "tests/support/tgt_target.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

constexpr uint64_t MiB = 1 << 20;
constexpr uint64_t GiB = 1ull << 30;

Deadline dl(int ms = 30000) { return Deadline::after(Millis(ms)); }

double msSince(SteadyClock::time_point t) { return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count(); }

std::string randomData(size_t n) {
  std::string s(n, '\0');
  randomBytes(s.data(), n);
  return s;
}

std::string readAll(const std::string& path) { return fs::readFile(path, 256 * MiB).valueOr(""); }

// Entries of a directory that look like an unfinished transfer.
std::vector<std::string> partialFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& n : fs::listDir(dir).valueOr({}))
    if (n.find("partial") != std::string::npos) out.push_back(n);
  return out;
}

std::vector<std::string> names(const json& list) {
  std::vector<std::string> out;
  for (const auto& v : list) out.push_back(v["name"]);
  return out;
}

// A loopback TCP socket connected to `port`, or -1.
fs::UniqueFd connectTcp(int port) {
  fs::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return fs::UniqueFd();
  return fd;
}

// Reads one line from a blocking socket (byte by byte: nothing after it is consumed).
std::string readLineFrom(int fd, int timeoutMs = 10000) {
  std::string line;
  char c;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) <= 0) return line;
    if (::read(fd, &c, 1) != 1 || c == '\n') return line;
    line += c;
  }
}

class StorageE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string root = testutil::missingRoot("vmmd's storage backends");
    VMM_REQUIRE(root.empty(), root);
    vmmd = std::make_unique<VmmdProcess>();
    startDaemon();
  }
  void TearDown() override {
    rpc.reset();
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << tail(vmmd->log()) << "\n";
  }
  static std::string tail(const std::string& s) { return s.size() > 20000 ? s.substr(s.size() - 20000) : s; }

  void startDaemon() {
    auto st = vmmd->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
    if (adminToken.empty()) {
      auto admin = rpc->call("token.create", {{"name", "admin"}, {"role", "admin"}});
      ASSERT_TRUE(admin.ok()) << admin.error().message;
      adminToken = (*admin)["token"];
      auto reader = rpc->call("token.create", {{"name", "reader"}, {"role", "read"}});
      ASSERT_TRUE(reader.ok()) << reader.error().message;
      readToken = (*reader)["token"];
    }
  }
  void restartDaemon() {
    rpc.reset();
    ASSERT_TRUE(vmmd->stop().ok());
    startDaemon();
  }

  // A call that must succeed.
  json must(const std::string& method, const json& params = json::object()) {
    auto r = rpc->call(method, params);
    EXPECT_TRUE(r.ok()) << method << " " << params.dump() << ": " << r.error().message;
    return r.ok() ? *r : json();
  }
  // A call that must fail: its error.
  Error fails(const std::string& method, const json& params) {
    auto r = rpc->call(method, params);
    EXPECT_FALSE(r.ok()) << method << " " << params.dump() << " unexpectedly succeeded: " << (r.ok() ? r->dump() : "");
    return r.ok() ? Error{} : r.error();
  }
  json createVolume(const std::string& pool, const json& spec) { return must("volume.create", {{"pool", pool}, {"volume", spec}}); }

  httplib::Client http(const std::string& token) {
    httplib::Client c("127.0.0.1", vmmd->httpPort());
    c.set_read_timeout(60, 0);
    c.set_write_timeout(60, 0);
    c.set_bearer_token_auth(token.c_str());
    return c;
  }
  static std::string contentPath(const std::string& pool, const std::string& name) {
    return "/v1/pools/" + pool + "/volumes/" + name + "/content";
  }

  // Upload and download through libvmmclient over JSON-RPC.
  void rpcUpload(const std::string& pool, const std::string& name, const std::string& data) {
    std::string file = vmmd->dir() + "/up-" + name;
    ASSERT_TRUE(fs::writeFileAtomic(file, data).ok());
    fs::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    auto r = rpc->uploadVolume(pool, name, fd.get(), data.size(), nullptr);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ((*r)["name"], name);
    (void)fs::removeFile(file);
  }
  std::string rpcDownload(const std::string& pool, const std::string& name) {
    std::string file = vmmd->dir() + "/down-" + name;
    fs::UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd.valid());
    auto n = rpc->downloadVolume(pool, name, fd.get(), nullptr);
    EXPECT_TRUE(n.ok()) << n.error().message;
    fd.reset();
    std::string out = readAll(file);
    if (n.ok()) {
      EXPECT_EQ(*n, out.size());
    }
    (void)fs::removeFile(file);
    return out;
  }

  // Waits until an abandoned upload has been cleaned up: no temp file and the volume free.
  void waitUploadReleased(const std::string& dir, const std::string& pool, const std::string& name) {
    auto until = SteadyClock::now() + Millis(10000);
    while (SteadyClock::now() < until) {
      bool clean = dir.empty() || partialFiles(dir).empty();
      // Resizing to the same size is a no-op that is refused while the volume is busy.
      auto v = rpc->call("volume.get", {{"pool", pool}, {"name", name}});
      if (clean && v.ok()) {
        auto r = rpc->call("volume.resize", {{"pool", pool}, {"name", name}, {"capacity", (*v)["capacity"]}});
        if (r.ok() || r.error().message.find("busy") == std::string::npos) return;
      }
      std::this_thread::sleep_for(Millis(20));
    }
    ADD_FAILURE() << "the abandoned upload of " << pool << "/" << name << " was not released";
  }

  std::string defaultDir() const { return vmmd->dir() + "/state/pools/default"; }

  // Runs qemu-img ARGS... PATH [SIZE] for a file NAME in the test's directory; its path.
  std::string qemuImg(const std::string& name, std::vector<std::string> argv, const std::string& size = "1M") {
    std::string path = vmmd->dir() + "/" + name;
    argv.insert(argv.begin(), "qemu-img");
    argv.push_back(path);
    if (!size.empty()) argv.push_back(size);
    auto r = runCommand(argv);
    EXPECT_TRUE(r.ok() && r->success()) << name << ": " << (r.ok() ? r->err : r.error().message);
    return path;
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::string adminToken, readToken;
};

}  // namespace

// ---------------------------------------------------------------- 1. the default pool

TEST_F(StorageE2E, DefaultDirPoolIsActiveAtFirstStart) {
  json list = must("pool.list");
  ASSERT_EQ(list.size(), 1u) << list.dump();
  const json& p = list[0];
  EXPECT_EQ(p["name"], "default");
  EXPECT_EQ(p["type"], "dir");
  EXPECT_EQ(p["state"], "active");
  EXPECT_EQ(p["path"], defaultDir());
  EXPECT_TRUE(fs::isDirectory(defaultDir()));
  EXPECT_EQ(p["autostart"], true);
  EXPECT_EQ(p["volumes"], 0);
  ASSERT_TRUE(p["capacity"].is_number_unsigned());
  ASSERT_TRUE(p["available"].is_number_unsigned());
  EXPECT_GT(p["capacity"].get<uint64_t>(), 0u);
  EXPECT_GT(p["available"].get<uint64_t>(), 0u);
  EXPECT_LE(p["available"].get<uint64_t>(), p["capacity"].get<uint64_t>());
  EXPECT_LE(p["allocation"].get<uint64_t>(), p["capacity"].get<uint64_t>());
  EXPECT_FALSE(p.contains("error"));

  json got = must("pool.get", {{"name", "default"}});
  for (const char* k : {"name", "uuid", "type", "path", "state", "capacity", "volumes"}) EXPECT_EQ(got[k], p[k]) << k;
  EXPECT_EQ(must("volume.list", {{"pool", "default"}}), json::array());

  // The same over HTTP with a read-only token.
  auto res = http(readToken).Get("/v1/pools");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)[0]["name"], "default");
  res = http(readToken).Get("/v1/pools/default");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["uuid"], p["uuid"]);
  res = http(readToken).Get("/v1/pools/nosuch");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);

  // vmctl shows it.
  auto r = vmmd->vmctl({"pool", "list"});
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("default"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("active"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------- 2. volumes through RPC

TEST_F(StorageE2E, VolumeCreateListGetResizeDeleteCloneWipe) {
  json v = createVolume("default", {{"name", "disk1"}, {"capacity", "1G"}});
  EXPECT_EQ(v["name"], "disk1");
  EXPECT_EQ(v["pool"], "default");
  EXPECT_EQ(v["format"], "qcow2");
  EXPECT_EQ(v["capacity"], GiB);
  EXPECT_EQ(v["path"], defaultDir() + "/disk1");
  EXPECT_EQ(v["used_by"], json::array());
  EXPECT_TRUE(fs::exists(defaultDir() + "/disk1"));
  EXPECT_EQ(names(must("volume.list", {{"pool", "default"}})), std::vector<std::string>{"disk1"});
  EXPECT_EQ(must("pool.get", {{"name", "default"}})["volumes"], 1);
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "disk1"}}), v);

  json resized = must("volume.resize", {{"pool", "default"}, {"name", "disk1"}, {"capacity", "2G"}});
  EXPECT_EQ(resized["capacity"], 2 * GiB);
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "disk1"}})["capacity"], 2 * GiB);
  Error e = fails("volume.resize", {{"pool", "default"}, {"name", "disk1"}, {"capacity", "1G"}});
  EXPECT_EQ(e.code, ErrorCode::invalid_argument);
  EXPECT_NE(e.message.find("shrink"), std::string::npos) << e.message;
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "disk1"}})["capacity"], 2 * GiB);
  must("volume.delete", {{"pool", "default"}, {"name", "disk1"}});
  EXPECT_FALSE(fs::exists(defaultDir() + "/disk1"));
  EXPECT_EQ(must("volume.list", {{"pool", "default"}}), json::array());
  EXPECT_EQ(fails("volume.get", {{"pool", "default"}, {"name", "disk1"}}).code, ErrorCode::not_found);

  // A linked clone of a 10 GiB qcow2 is an overlay: instant.
  createVolume("default", {{"name", "base"}, {"capacity", "10G"}});
  auto t0 = SteadyClock::now();
  auto linked = rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", "base"}, {"target", "overlay"}}, dl());
  double ms = msSince(t0);
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  std::cout << "[timing] linked clone of a 10 GiB qcow2 through the API: " << ms << " ms\n";
  EXPECT_LT(ms, 1000);
  EXPECT_EQ((*linked)["backing_volume"], "base");
  EXPECT_EQ((*linked)["capacity"], 10 * GiB);
  EXPECT_EQ((*linked)["format"], "qcow2");
  EXPECT_LT((*linked)["allocation"].get<uint64_t>(), 10 * MiB);

  // A full clone copies the bytes, with progress, as an operation.
  createVolume("default", {{"name", "data"}, {"capacity", "20M"}, {"format", "raw"}});
  std::string bytes = randomData(20 * MiB);
  rpcUpload("default", "data", bytes);
  auto op = rpc->call("volume.clone", {{"pool", "default"}, {"name", "data"}, {"target", "copy"}, {"linked", false}});
  ASSERT_TRUE(op.ok()) << op.error().message;
  EXPECT_EQ((*op)["kind"], "volume.clone");
  std::vector<int> seen;
  auto done = rpc->waitOperation(*op, dl(), [&](const json& o) { seen.push_back(o["progress"]["percent"].get<int>()); });
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ((*done)["status"], "succeeded") << done->dump();
  EXPECT_EQ((*done)["progress"]["percent"], 100);
  std::cout << "[progress] full clone percentages seen:";
  for (int p : seen) std::cout << " " << p;
  std::cout << " -> " << (*done)["progress"]["percent"] << "\n";
  json copy = (*done)["result"];
  EXPECT_EQ(copy["name"], "copy");
  EXPECT_EQ(copy["format"], "raw");
  EXPECT_EQ(copy["capacity"], 20 * MiB);
  EXPECT_FALSE(copy.contains("backing_volume"));
  EXPECT_EQ(sha256Hex(rpcDownload("default", "copy")), sha256Hex(bytes));

  // Wipe keeps size and format and zeroes the content.
  auto wiped = rpc->callAndWait("volume.wipe", {{"pool", "default"}, {"name", "copy"}}, dl());
  ASSERT_TRUE(wiped.ok()) << wiped.error().message;
  EXPECT_EQ((*wiped)["capacity"], 20 * MiB);
  EXPECT_EQ((*wiped)["format"], "raw");
  std::string after = rpcDownload("default", "copy");
  EXPECT_EQ(after, std::string(20 * MiB, '\0'));
  EXPECT_EQ(sha256Hex(rpcDownload("default", "data")), sha256Hex(bytes));  // the source is untouched

  EXPECT_EQ(names(must("volume.list", {{"pool", "default"}})), (std::vector<std::string>{"base", "copy", "data", "overlay"}));
  EXPECT_TRUE(partialFiles(defaultDir()).empty());
}

// ---------------------------------------------------------------- 3. byte transfers

TEST_F(StorageE2E, UploadDownloadRoundTripOverRpcHttpAndVmctl) {
  createVolume("default", {{"name", "blob"}, {"capacity", "20M"}, {"format", "raw"}});

  // JSON-RPC (libvmmclient).
  std::string a = randomData(20 * MiB);
  auto t0 = SteadyClock::now();
  rpcUpload("default", "blob", a);
  double upMs = msSince(t0);
  t0 = SteadyClock::now();
  std::string back = rpcDownload("default", "blob");
  std::cout << "[timing] 20 MiB over JSON-RPC: upload " << upMs << " ms, download " << msSince(t0) << " ms\n";
  EXPECT_EQ(back.size(), a.size());
  EXPECT_EQ(sha256Hex(back), sha256Hex(a));

  // HTTP with an admin token.
  std::string b = randomData(20 * MiB - 12345);  // not a multiple of the chunk size
  auto admin = http(adminToken);
  auto res = admin.Put(contentPath("default", "blob").c_str(), b, "application/octet-stream");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  auto vol = json::parse(res->body);
  EXPECT_EQ(vol["name"], "blob");
  EXPECT_EQ(vol["capacity"], b.size());
  res = admin.Get(contentPath("default", "blob").c_str());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/octet-stream");
  EXPECT_EQ(res->body.size(), b.size());
  EXPECT_EQ(sha256Hex(res->body), sha256Hex(b));
  EXPECT_EQ(sha256Hex(rpcDownload("default", "blob")), sha256Hex(b));  // one volume, whatever the transport

  // A read-only token may neither upload nor download.
  auto reader = http(readToken);
  res = reader.Put(contentPath("default", "blob").c_str(), std::string(4096, 'x'), "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403) << res->body;
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "permission-denied");
  res = reader.Get(contentPath("default", "blob").c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403) << res->body.substr(0, 200);
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "permission-denied");
  // Nor the read-only socket.
  client::ConnectOptions ro;
  ro.uri = "unix://" + vmmd->roSocketPath();
  auto roConn = client::connect(ro);
  ASSERT_TRUE(roConn.ok());
  fs::UniqueFd devZero(::open("/dev/zero", O_RDONLY | O_CLOEXEC));
  auto denied = (*roConn)->uploadVolume("default", "blob", devZero.get(), 4096, nullptr);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, ErrorCode::permission_denied);
  fs::UniqueFd devNull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  auto deniedDown = (*roConn)->downloadVolume("default", "blob", devNull.get(), nullptr);
  ASSERT_FALSE(deniedDown.ok());
  EXPECT_EQ(deniedDown.error().code, ErrorCode::permission_denied);
  EXPECT_EQ(sha256Hex(rpcDownload("default", "blob")), sha256Hex(b));

  // vmctl as a process.
  std::string c = randomData(20 * MiB);
  std::string in = vmmd->dir() + "/vmctl-in.bin", out = vmmd->dir() + "/vmctl-out.bin";
  ASSERT_TRUE(fs::writeFileAtomic(in, c).ok());
  auto r = vmmd->vmctl({"vol", "upload", "default", "blob", in});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("Uploaded"), std::string::npos) << r.out;
  r = vmmd->vmctl({"vol", "download", "default", "blob", out});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("Downloaded"), std::string::npos) << r.out;
  EXPECT_EQ(sha256Hex(readAll(out)), sha256Hex(c));
  EXPECT_FALSE(fs::exists(out + ".partial"));
  // vmctl over HTTP with a token: upload from standard input, download to a file.
  std::string d = randomData(20 * MiB);
  std::vector<std::pair<std::string, std::string>> tokenEnv = {{"VMM_TOKEN", adminToken}};
  r = vmmd->vmctl({"-c", vmmd->httpUrl(), "vol", "upload", "default", "blob", "-", "--size", std::to_string(d.size())}, d, tokenEnv);
  ASSERT_EQ(r.exitCode, 0) << r.err;
  std::string out2 = vmmd->dir() + "/vmctl-http-out.bin";
  r = vmmd->vmctl({"-c", vmmd->httpUrl(), "vol", "download", "default", "blob", out2}, "", tokenEnv);
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(sha256Hex(readAll(out2)), sha256Hex(d));
  // A read token is refused by vmctl too.
  r = vmmd->vmctl({"-c", vmmd->httpUrl(), "vol", "download", "default", "blob", out2 + ".ro"}, "", {{"VMM_TOKEN", readToken}});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("needs the operator role"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out2 + ".ro"));
  EXPECT_FALSE(fs::exists(out2 + ".ro.partial"));
  r = vmmd->vmctl({"vol", "info", "default", "blob"});
  EXPECT_NE(r.out.find("20MiB"), std::string::npos) << r.out;
  EXPECT_TRUE(partialFiles(defaultDir()).empty());
}

TEST_F(StorageE2E, UploadEndingEarlyLeavesTheVolumeUnchanged) {
  createVolume("default", {{"name", "keep"}, {"capacity", "4M"}, {"format", "raw"}});
  std::string original = randomData(4 * MiB);
  rpcUpload("default", "keep", original);
  std::string half = randomData(2 * MiB + 17);

  {
    // JSON-RPC: announce 4 MiB, send half, close.
    auto fd = connectUnix(vmmd->socketPath(), dl(5000));
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    json req = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", "volume.upload"}, {"params", {{"pool", "default"}, {"name", "keep"}, {"size", 4 * MiB}}}};
    ASSERT_TRUE(writeAllFd(fd->get(), req.dump() + "\n", dl(5000)).ok());
    auto reply = json::parse(readLineFrom(fd->get()), nullptr, false);
    ASSERT_TRUE(reply.is_object() && reply.contains("result")) << reply.dump();
    EXPECT_EQ(reply["result"]["size"], 4 * MiB);
    ASSERT_TRUE(writeAllFd(fd->get(), half, dl(5000)).ok());
  }  // closed
  waitUploadReleased(defaultDir(), "default", "keep");
  EXPECT_EQ(sha256Hex(rpcDownload("default", "keep")), sha256Hex(original));
  EXPECT_EQ(partialFiles(defaultDir()), std::vector<std::string>{});

  {
    // HTTP: Content-Length 4 MiB, half the body, then the connection closes.
    fs::UniqueFd fd = connectTcp(vmmd->httpPort());
    ASSERT_TRUE(fd.valid());
    std::string head = "PUT " + contentPath("default", "keep") + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + adminToken +
                       "\r\nContent-Type: application/octet-stream\r\nContent-Length: " + std::to_string(4 * MiB) + "\r\n\r\n";
    ASSERT_TRUE(writeAllFd(fd.get(), head, dl(5000)).ok());
    ASSERT_TRUE(writeAllFd(fd.get(), half, dl(5000)).ok());
    // Close only once vmmd is inside the upload (its temporary file exists).
    auto until = SteadyClock::now() + Millis(5000);
    while (partialFiles(defaultDir()).empty() && SteadyClock::now() < until) std::this_thread::sleep_for(Millis(5));
    EXPECT_FALSE(partialFiles(defaultDir()).empty()) << "vmmd never started the upload";
  }
  waitUploadReleased(defaultDir(), "default", "keep");
  EXPECT_EQ(sha256Hex(rpcDownload("default", "keep")), sha256Hex(original));
  EXPECT_EQ(partialFiles(defaultDir()), std::vector<std::string>{});
  EXPECT_EQ(names(must("volume.list", {{"pool", "default"}})), std::vector<std::string>{"keep"});

  // The volume can still be uploaded afterwards: nothing stayed busy.
  std::string fresh = randomData(3 * MiB);
  rpcUpload("default", "keep", fresh);
  EXPECT_EQ(sha256Hex(rpcDownload("default", "keep")), sha256Hex(fresh));
}

// ---------------------------------------------------------------- 4. bad input

TEST_F(StorageE2E, BadInputsGetClearErrorsAndCreateNothing) {
  createVolume("default", {{"name", "exists"}, {"capacity", "1M"}, {"format", "raw"}});
  json poolsBefore = must("pool.list");
  json volsBefore = must("volume.list", {{"pool", "default"}});
  auto filesBefore = fs::listDir(defaultDir()).valueOr({});
  uint64_t available = must("pool.get", {{"name", "default"}})["available"];

  struct Case {
    json volume;
    ErrorCode code;
    std::string message;
  };
  std::vector<Case> cases = {
      {{{"name", "../x"}, {"capacity", "1M"}}, ErrorCode::invalid_argument, "name: volume name \"../x\" must start with a letter or digit"},
      {{{"name", "a/b"}, {"capacity", "1M"}}, ErrorCode::invalid_argument, "contains \"/\""},
      {{{"name", "zero"}, {"capacity", 0}}, ErrorCode::invalid_argument, "capacity: must be greater than 0"},
      {{{"name", "zero2"}, {"capacity", "0"}}, ErrorCode::invalid_argument, "capacity"},
      {{{"name", "huge"}, {"capacity", available + 10 * GiB}, {"format", "raw"}}, ErrorCode::invalid_argument, "free space"},
      {{{"name", "huge2"}, {"capacity", available + 10 * GiB}}, ErrorCode::invalid_argument, "free space"},
      {{{"name", "exists"}, {"capacity", "1M"}}, ErrorCode::conflict, "already has a volume \"exists\""},
      {{{"name", "orphan"}, {"backing_volume", "nosuch"}}, ErrorCode::not_found, "nosuch"},
      {{{"name", "fmt"}, {"capacity", "1M"}, {"format", "vmdk"}}, ErrorCode::invalid_argument, "format"},
  };
  for (const auto& c : cases) {
    Error e = fails("volume.create", {{"pool", "default"}, {"volume", c.volume}});
    EXPECT_EQ(e.code, c.code) << c.volume.dump() << ": " << e.message;
    EXPECT_NE(e.message.find(c.message), std::string::npos) << c.volume.dump() << ": " << e.message;
    std::cout << "[error] " << c.volume.dump() << " -> " << e.message << "\n";
  }
  Error e = fails("volume.create", {{"pool", "nosuch"}, {"volume", {{"name", "x"}, {"capacity", "1M"}}}});
  EXPECT_EQ(e.code, ErrorCode::not_found);
  EXPECT_EQ(e.message, "pool \"nosuch\" not found");
  e = fails("volume.clone", {{"pool", "default"}, {"name", "exists"}, {"target", "../evil"}});
  EXPECT_EQ(e.code, ErrorCode::invalid_argument) << e.message;
  e = fails("volume.delete", {{"pool", "default"}, {"name", "../../vmm.db"}});
  EXPECT_NE(e.code, ErrorCode::internal) << e.message;
  EXPECT_TRUE(fs::exists(vmmd->dir() + "/state/vmm.db"));

  // The same through HTTP: status codes.
  auto admin = http(adminToken);
  auto res = admin.Post("/v1/pools/default/volumes", R"({"name":"exists","capacity":"1M"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 409) << res->body;
  res = admin.Post("/v1/pools/nosuch/volumes", R"({"name":"x","capacity":"1M"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404) << res->body;
  res = admin.Post("/v1/pools/default/volumes", R"({"name":"../x","capacity":"1M"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  res = admin.Get("/v1/pools/nosuch/volumes");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = admin.Put(contentPath("nosuch", "x").c_str(), std::string(10, 'x'), "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404) << res->body;
  res = admin.Put(contentPath("default", "nothere").c_str(), std::string(10, 'x'), "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404) << res->body;

  // pool.create failures define nothing.
  std::string missing = vmmd->dir() + "/no-such-dir";
  e = fails("pool.create", {{"definition", {{"name", "nodir"}, {"type", "dir"}, {"path", missing}}}, {"build", false}});
  EXPECT_EQ(e.code, ErrorCode::not_found) << e.message;
  EXPECT_NE(e.message.find("does not exist"), std::string::npos) << e.message;
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_EQ(fails("pool.get", {{"name", "nodir"}}).code, ErrorCode::not_found);

  e = fails("pool.create", {{"definition", {{"name", "dup"}, {"type", "dir"}, {"path", defaultDir()}}}});
  EXPECT_EQ(e.code, ErrorCode::conflict) << e.message;
  e = fails("pool.create", {{"definition", {{"name", "default"}, {"type", "dir"}, {"path", vmmd->dir() + "/other"}}}, {"build", true}});
  EXPECT_EQ(e.code, ErrorCode::conflict) << e.message;
  EXPECT_FALSE(fs::exists(vmmd->dir() + "/other"));
  e = fails("pool.create", {{"definition", {{"name", "rel"}, {"type", "dir"}, {"path", "relative/dir"}}}, {"build", true}});
  EXPECT_EQ(e.code, ErrorCode::invalid_argument) << e.message;

  for (bool build : {false, true}) {
    auto t0 = SteadyClock::now();
    e = fails("pool.create", {{"definition", {{"name", "lvbad"}, {"type", "logical"}, {"source", {{"devices", {"/dev/vmm-no-such-disk"}}, {"vg_name", "vmm_e2e_never"}}}}},
                              {"build", build}});
    std::cout << "[error] logical on a missing device (build=" << build << "): " << e.message << " (" << msSince(t0) << " ms)\n";
    EXPECT_NE(e.code, ErrorCode::internal) << e.message;
    EXPECT_TRUE(e.message.find("/dev/vmm-no-such-disk") != std::string::npos || e.message.find("vmm_e2e_never") != std::string::npos)
        << e.message;
    EXPECT_EQ(fails("pool.get", {{"name", "lvbad"}}).code, ErrorCode::not_found);
  }

  {
    // A loopback port that refuses connections.
    fs::UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&a), &len);
    int port = ntohs(a.sin_port);
    auto t0 = SteadyClock::now();
    e = fails("pool.create", {{"definition", {{"name", "san"}, {"type", "iscsi"},
                                              {"source", {{"host", "127.0.0.1"}, {"port", port}, {"target", "iqn.2024-01.io.vmm.test:none"}}}}}});
    double ms = msSince(t0);
    std::cout << "[error] iscsi to a closed port: " << e.message << " (" << ms << " ms)\n";
    EXPECT_EQ(e.code, ErrorCode::unavailable) << e.message;
    EXPECT_LT(ms, 2000);
    EXPECT_EQ(fails("pool.get", {{"name", "san"}}).code, ErrorCode::not_found);
  }

  EXPECT_EQ(must("pool.list"), poolsBefore);
  EXPECT_EQ(must("volume.list", {{"pool", "default"}}), volsBefore);
  EXPECT_EQ(fs::listDir(defaultDir()).valueOr({}), filesBefore);
}

// ---------------------------------------------------------------- 5. volumes in use

TEST_F(StorageE2E, VolumeUsedByADomainOrACloneCannotBeDeleted) {
  createVolume("default", {{"name", "x"}, {"capacity", "64M"}});
  must("domain.create", {{"definition", {{"name", "d1"}, {"type", "test"}, {"disks", {{{"source", {{"pool", "default"}, {"volume", "x"}}}}}}}}});
  Error e = fails("volume.delete", {{"pool", "default"}, {"name", "x"}});
  EXPECT_EQ(e.code, ErrorCode::conflict);
  EXPECT_NE(e.message.find("d1"), std::string::npos) << e.message;
  auto res = http(adminToken).Delete("/v1/pools/default/volumes/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 409);
  EXPECT_NE(res->body.find("d1"), std::string::npos) << res->body;
  json list = must("volume.list", {{"pool", "default"}});
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["used_by"], json::array({"d1"}));
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "x"}})["used_by"], json::array({"d1"}));
  // Neither wiped nor overwritten while in use.
  EXPECT_EQ(fails("volume.wipe", {{"pool", "default"}, {"name", "x"}}).code, ErrorCode::conflict);
  fs::UniqueFd zero(::open("/dev/zero", O_RDONLY | O_CLOEXEC));
  auto up = rpc->uploadVolume("default", "x", zero.get(), 4096, nullptr);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::conflict) << up.error().message;
  auto r = vmmd->vmctl({"vol", "list", "default"});
  EXPECT_NE(r.out.find("d1"), std::string::npos) << r.out;

  must("domain.delete", {{"name", "d1"}});
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "x"}})["used_by"], json::array());
  must("volume.delete", {{"pool", "default"}, {"name", "x"}});
  EXPECT_EQ(must("volume.list", {{"pool", "default"}}), json::array());

  // The backing volume of a linked clone.
  createVolume("default", {{"name", "golden"}, {"capacity", "1G"}});
  ASSERT_TRUE(rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", "golden"}, {"target", "vm1"}}, dl()).ok());
  e = fails("volume.delete", {{"pool", "default"}, {"name", "golden"}});
  EXPECT_EQ(e.code, ErrorCode::conflict);
  EXPECT_NE(e.message.find("vm1"), std::string::npos) << e.message;
  EXPECT_TRUE(fs::exists(defaultDir() + "/golden"));
  // Its content cannot be wiped or replaced under the clone either.
  auto wipe = rpc->callAndWait("volume.wipe", {{"pool", "default"}, {"name", "golden"}}, dl());
  ASSERT_FALSE(wipe.ok());
  EXPECT_EQ(wipe.error().code, ErrorCode::conflict) << wipe.error().message;
  up = rpc->uploadVolume("default", "golden", zero.get(), 4096, nullptr);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::conflict) << up.error().message;
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "golden"}})["format"], "qcow2");
  must("volume.delete", {{"pool", "default"}, {"name", "vm1"}});
  must("volume.delete", {{"pool", "default"}, {"name", "golden"}});
  EXPECT_EQ(must("volume.list", {{"pool", "default"}}), json::array());
}

// ---------------------------------------------------------------- 6. persistence, pool delete

TEST_F(StorageE2E, PoolsPersistAcrossRestartAndDeleteRemovesStorage) {
  std::string path = vmmd->dir() + "/extra-pool";
  json created = must("pool.create", {{"definition", {{"name", "extra"}, {"type", "dir"}, {"path", path}}}, {"build", true}});
  EXPECT_EQ(created["state"], "active");
  EXPECT_TRUE(fs::isDirectory(path));
  createVolume("extra", {{"name", "v1"}, {"capacity", "1G"}});
  createVolume("extra", {{"name", "v2"}, {"capacity", "8M"}, {"format", "raw"}});
  std::string bytes = randomData(8 * MiB);
  rpcUpload("extra", "v2", bytes);

  restartDaemon();
  json p = must("pool.get", {{"name", "extra"}});
  EXPECT_EQ(p["state"], "active");
  EXPECT_EQ(p["uuid"], created["uuid"]);
  EXPECT_EQ(p["volumes"], 2);
  EXPECT_EQ(names(must("volume.list", {{"pool", "extra"}})), (std::vector<std::string>{"v1", "v2"}));
  EXPECT_EQ(must("volume.get", {{"pool", "extra"}, {"name", "v1"}})["capacity"], GiB);
  EXPECT_EQ(sha256Hex(rpcDownload("extra", "v2")), sha256Hex(bytes));
  EXPECT_EQ(names(must("pool.list")), (std::vector<std::string>{"default", "extra"}));

  // A pool whose volume a domain uses cannot be deleted.
  must("domain.create", {{"definition", {{"name", "user1"}, {"type", "test"}, {"disks", {{{"source", {{"pool", "extra"}, {"volume", "v1"}}}}}}}}});
  for (bool storage : {false, true}) {
    Error e = fails("pool.delete", {{"name", "extra"}, {"storage", storage}});
    EXPECT_EQ(e.code, ErrorCode::conflict);
    EXPECT_NE(e.message.find("user1"), std::string::npos) << e.message;
  }
  auto res = http(adminToken).Delete("/v1/pools/extra?storage=true");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 409) << res->body;
  // Also when the pool is stopped (its volumes are not cached then).
  EXPECT_EQ(must("pool.stop", {{"name", "extra"}})["state"], "inactive");
  Error stopped = fails("pool.delete", {{"name", "extra"}});
  EXPECT_EQ(stopped.code, ErrorCode::conflict) << stopped.message;
  EXPECT_NE(stopped.message.find("user1"), std::string::npos) << stopped.message;
  if (stopped.code != ErrorCode::conflict) return;  // the pool is gone; the rest cannot run
  EXPECT_EQ(must("pool.start", {{"name", "extra"}})["state"], "active");
  must("domain.delete", {{"name", "user1"}});
  // Storage with volumes is not deleted either.
  Error e = fails("pool.delete", {{"name", "extra"}, {"storage", true}});
  EXPECT_EQ(e.code, ErrorCode::conflict) << e.message;
  EXPECT_EQ(must("pool.get", {{"name", "extra"}})["state"], "active");
  must("volume.delete", {{"pool", "extra"}, {"name", "v1"}});
  must("volume.delete", {{"pool", "extra"}, {"name", "v2"}});
  must("pool.delete", {{"name", "extra"}, {"storage", true}});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(fails("pool.get", {{"name", "extra"}}).code, ErrorCode::not_found);

  // And it stays deleted.
  restartDaemon();
  EXPECT_EQ(names(must("pool.list")), std::vector<std::string>{"default"});
  EXPECT_FALSE(fs::exists(path));
}

// ---------------------------------------------------------------- 7. logical pool

namespace {

Result<CommandResult> lvmOn(const std::vector<std::string>& devices, std::vector<std::string> args) {
  std::vector<std::string> argv{"lvm", args[0]};
  for (const auto& d : devices) argv.insert(argv.end(), {"--devices", d});
  argv.insert(argv.end(), {"--config", "global/activation=0"});
  argv.insert(argv.end(), args.begin() + 1, args.end());
  RunOptions opts;
  opts.deadline = dl();
  opts.env["LVM_SUPPRESS_FD_WARNINGS"] = "1";
  return runCommand(argv, opts);
}

}  // namespace

class LogicalE2E : public StorageE2E {
 protected:
  void SetUp() override {
    std::string lvm = testutil::missingTools({"lvm"}, "lvm2");
    VMM_REQUIRE(lvm.empty(), lvm);
    StorageE2E::SetUp();
    if (HasFatalFailure()) return;
    vg = "vmme2e_" + std::to_string(::getpid());
    for (const char* n : {"a", "b"}) {
      auto d = testutil::LoopDevice::create(vmmd->dir() + "/pv-" + n + ".img", 64 * MiB);
      ASSERT_TRUE(d.ok()) << d.error().message;
      loops.push_back(std::move(*d));
      devices.push_back(loops.back()->device());
    }
  }
  void TearDown() override {
    if (!devices.empty()) {
      (void)lvmOn(devices, {"vgremove", "--yes", "--force", vg});
      (void)lvmOn(devices, {"pvremove", "--yes", "--force", "--force", devices[0], devices[1]});
    }
    StorageE2E::TearDown();
    // vmmd goes first (it may hold the devices open), then the loop devices.
    vmmd.reset();
    loops.clear();
    if (!vg.empty()) {
      (void)fs::removeFile("/etc/lvm/backup/" + vg);
      glob_t g{};
      if (::glob(("/etc/lvm/archive/" + vg + "_[0-9]*.vg").c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) (void)fs::removeFile(g.gl_pathv[i]);
      ::globfree(&g);
    }
  }
  std::string pvsOn(const std::string& device) {
    auto r = lvmOn({device}, {"pvs", "--noheadings", "-o", "pv_name,vg_name"});
    return r.ok() ? std::string(trim(r->out)) : "error";
  }

  std::string vg;
  std::vector<std::unique_ptr<testutil::LoopDevice>> loops;
  std::vector<std::string> devices;
};

TEST_F(LogicalE2E, LogicalPoolOnTwoLoopDevicesEndToEnd) {
  auto t0 = SteadyClock::now();
  json p = must("pool.create", {{"definition", {{"name", "lvm"}, {"type", "logical"}, {"source", {{"devices", devices}, {"vg_name", vg}}}}},
                                {"build", true}});
  std::cout << "[timing] logical pool build + start: " << msSince(t0) << " ms\n";
  ASSERT_EQ(p["state"], "active") << p.dump();
  EXPECT_EQ(p["type"], "logical");
  EXPECT_GT(p["capacity"].get<uint64_t>(), 100 * MiB);
  EXPECT_EQ(p["volumes"], 0);
  for (const auto& d : devices) EXPECT_NE(pvsOn(d).find(vg), std::string::npos) << d << ": " << pvsOn(d);

  json v = createVolume("lvm", {{"name", "lv1"}, {"capacity", "8M"}, {"format", "raw"}});
  EXPECT_EQ(v["capacity"], 8 * MiB);
  EXPECT_EQ(v["format"], "raw");
  EXPECT_EQ(names(must("volume.list", {{"pool", "lvm"}})), std::vector<std::string>{"lv1"});
  // qcow2 on a logical pool, or a size beyond the VG, are refused and create nothing.
  Error e = fails("volume.create", {{"pool", "lvm"}, {"volume", {{"name", "big"}, {"capacity", "1G"}, {"format", "raw"}}}});
  EXPECT_NE(e.code, ErrorCode::internal) << e.message;
  EXPECT_EQ(names(must("volume.list", {{"pool", "lvm"}})), std::vector<std::string>{"lv1"});

  std::string bytes = randomData(8 * MiB);
  rpcUpload("lvm", "lv1", bytes);
  EXPECT_EQ(sha256Hex(rpcDownload("lvm", "lv1")), sha256Hex(bytes));
  auto res = http(adminToken).Get(contentPath("lvm", "lv1").c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(sha256Hex(res->body), sha256Hex(bytes));
  // More bytes than the LV holds are refused before anything is written.
  fs::UniqueFd zero(::open("/dev/zero", O_RDONLY | O_CLOEXEC));
  auto tooMuch = rpc->uploadVolume("lvm", "lv1", zero.get(), 8 * MiB + 1, nullptr);
  ASSERT_FALSE(tooMuch.ok());
  EXPECT_EQ(tooMuch.error().code, ErrorCode::invalid_argument) << tooMuch.error().message;
  EXPECT_EQ(sha256Hex(rpcDownload("lvm", "lv1")), sha256Hex(bytes));

  Error stillThere = fails("pool.delete", {{"name", "lvm"}, {"storage", true}});
  EXPECT_EQ(stillThere.code, ErrorCode::conflict) << stillThere.message;
  must("volume.delete", {{"pool", "lvm"}, {"name", "lv1"}});
  EXPECT_EQ(must("volume.list", {{"pool", "lvm"}}), json::array());
  must("pool.delete", {{"name", "lvm"}, {"storage", true}});
  EXPECT_EQ(fails("pool.get", {{"name", "lvm"}}).code, ErrorCode::not_found);
  for (const auto& d : devices) EXPECT_EQ(pvsOn(d), "") << d;
  auto vgs = lvmOn(devices, {"vgs", vg});
  ASSERT_TRUE(vgs.ok());
  EXPECT_NE(vgs->exitCode, 0) << vgs->out;
}

// ---------------------------------------------------------------- 8. iscsi pool

namespace {
constexpr const char* kIqn = "iqn.2024-01.io.vmm.e2e:disks";
constexpr const char* kChapUser = "e2euser";
constexpr const char* kChapSecret = "Very-S3cret-e2e-Chap";
}  // namespace

class IscsiE2E : public StorageE2E {
 protected:
  static void SetUpTestSuite() {
    if (!testutil::TgtTarget::available()) return;
    char tmpl[] = "/tmp/vmm-e2e-tgt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    for (auto [file, size] : {std::pair{dir + "/lun1.img", 16 * MiB}, {dir + "/lun2.img", 8 * MiB}})
      ASSERT_TRUE(testutil::makeSparseFile(file, size).ok());
    tgt = new testutil::TgtTarget;
    auto st = tgt->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto tid = tgt->addTarget(kIqn);
    ASSERT_TRUE(tid.ok()) << tid.error().message;
    ASSERT_TRUE(tgt->addLun(*tid, 1, dir + "/lun1.img").ok());
    ASSERT_TRUE(tgt->addLun(*tid, 2, dir + "/lun2.img").ok());
    auto chap = tgt->setChap(*tid, kChapUser, kChapSecret);
    ASSERT_TRUE(chap.ok()) << chap.error().message;
  }
  static void TearDownTestSuite() {
    delete tgt;
    tgt = nullptr;
    if (!dir.empty()) (void)runCommand({"rm", "-rf", dir});
  }
  void SetUp() override {
    VMM_REQUIRE(testutil::TgtTarget::available(), testutil::TgtTarget::missing());
    ASSERT_TRUE(tgt && tgt->running()) << (tgt ? tgt->log() : "");
    StorageE2E::SetUp();
  }
  json definition(const std::string& name, const std::string& secret) {
    return {{"name", name}, {"type", "iscsi"},
            {"source", {{"host", "127.0.0.1"}, {"port", tgt->port()}, {"target", kIqn}, {"username", kChapUser}, {"secret", secret}}}};
  }

  static inline testutil::TgtTarget* tgt = nullptr;
  static inline std::string dir;
};

TEST_F(IscsiE2E, IscsiPoolWithChapEndToEnd) {
  auto t0 = SteadyClock::now();
  json p = must("pool.create", {{"definition", definition("san", kChapSecret)}});
  std::cout << "[timing] iscsi pool create (login, report LUNs): " << msSince(t0) << " ms\n";
  ASSERT_EQ(p["state"], "active") << p.dump();
  EXPECT_EQ(p["volumes"], 2);
  EXPECT_EQ(p["capacity"], 24 * MiB);
  json vols = must("volume.list", {{"pool", "san"}});
  ASSERT_EQ(names(vols), (std::vector<std::string>{"lun-1", "lun-2"}));
  EXPECT_EQ(vols[0]["capacity"], 16 * MiB);
  EXPECT_EQ(vols[1]["capacity"], 8 * MiB);
  EXPECT_EQ(vols[0]["format"], "raw");

  std::string bytes = randomData(16 * MiB);
  rpcUpload("san", "lun-1", bytes);
  EXPECT_EQ(sha256Hex(rpcDownload("san", "lun-1")), sha256Hex(bytes));
  EXPECT_EQ(sha256Hex(readAll(dir + "/lun1.img")), sha256Hex(bytes));  // it reached the target's disk
  std::string small = randomData(8 * MiB);
  auto res = http(adminToken).Put(contentPath("san", "lun-2").c_str(), small, "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  res = http(adminToken).Get(contentPath("san", "lun-2").c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(sha256Hex(res->body), sha256Hex(small));

  // The CHAP secret never comes back.
  std::vector<std::string> texts = {must("pool.get", {{"name", "san"}}).dump(), must("pool.list").dump(),
                                    must("volume.list", {{"pool", "san"}}).dump(), p.dump(),
                                    http(readToken).Get("/v1/pools/san")->body, http(readToken).Get("/v1/pools")->body,
                                    vmmd->vmctl({"pool", "info", "san"}).out, vmmd->vmctl({"pool", "list", "-o", "json"}).out,
                                    vmmd->vmctl({"vol", "info", "san", "lun-1"}).out};
  for (const auto& t : texts) EXPECT_EQ(t.find(kChapSecret), std::string::npos) << t;
  EXPECT_EQ(must("pool.get", {{"name", "san"}})["source"]["username"], kChapUser);
  EXPECT_EQ(vmmd->log().find(kChapSecret), std::string::npos);

  // LUNs are not created or deleted through vmm.
  EXPECT_NE(fails("volume.create", {{"pool", "san"}, {"volume", {{"name", "lun-3"}, {"capacity", "1M"}, {"format", "raw"}}}}).code,
            ErrorCode::internal);
  EXPECT_EQ(names(must("volume.list", {{"pool", "san"}})), (std::vector<std::string>{"lun-1", "lun-2"}));

  // Survives a restart (the secret is stored), then goes away cleanly.
  restartDaemon();
  EXPECT_EQ(must("pool.get", {{"name", "san"}})["state"], "active");
  EXPECT_EQ(sha256Hex(rpcDownload("san", "lun-1")), sha256Hex(bytes));
  must("pool.delete", {{"name", "san"}});
  EXPECT_EQ(fails("pool.get", {{"name", "san"}}).code, ErrorCode::not_found);
}

TEST_F(IscsiE2E, WrongChapSecretDefinesNothing) {
  json before = must("pool.list");
  const std::string wrong = "Wrong-secret-4567";
  Error e = fails("pool.create", {{"definition", definition("badsan", wrong)}});
  std::cout << "[error] wrong CHAP: " << e.message << "\n";
  EXPECT_EQ(e.code, ErrorCode::permission_denied) << e.message;
  EXPECT_NE(e.message.find("uthentication"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find(wrong), std::string::npos) << e.message;
  EXPECT_EQ(fails("pool.get", {{"name", "badsan"}}).code, ErrorCode::not_found);
  EXPECT_EQ(must("pool.list"), before);
  EXPECT_EQ(vmmd->log().find(wrong), std::string::npos);
  // No credentials at all.
  json def = definition("nochap", kChapSecret);
  def["source"].erase("username");
  def["source"].erase("secret");
  e = fails("pool.create", {{"definition", def}});
  EXPECT_NE(e.message.find("uthentication"), std::string::npos) << e.message;
  EXPECT_EQ(fails("pool.get", {{"name", "nochap"}}).code, ErrorCode::not_found);
  // The right secret works afterwards (nothing half-defined blocks the name).
  must("pool.create", {{"definition", definition("badsan", kChapSecret)}});
  must("pool.delete", {{"name", "badsan"}});
}

// A volume's format is fixed when vmm first sees it: bytes that look like a qcow2 header
// (written by a guest into its raw disk, or uploaded) never turn a raw volume into an image
// with a backing file elsewhere on the host - not after a refresh, not after a restart, and not
// through a clone, a full copy, a volume created on it, a wipe or a resize (finding C1). The
// victim is named like a qcow2 image so that no name-based guess can pass for the record.
TEST_F(StorageE2E, VolumeFormatIsRecordedNotRedetected) {
  const std::string secret = vmmd->dir() + "/secret";
  ASSERT_TRUE(fs::writeFileAtomic(secret, "TOPSECRET-host-file\n" + std::string(64 << 10, 'S'), 0600).ok());
  createVolume("default", {{"name", "victim.qcow2"}, {"capacity", "1MiB"}, {"format", "raw"}});
  std::string evil = vmmd->dir() + "/evil.qcow2";
  auto made = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", evil, "1G"});
  ASSERT_TRUE(made.ok() && made->success()) << (made.ok() ? made->err : made.error().message);
  auto header = fs::readFile(evil, 16 << 20);
  ASSERT_TRUE(header.ok());
  std::string forged = *header + std::string((1 << 20) - header->size(), '\0');
  rpcUpload("default", "victim.qcow2", forged);
  auto check = [&] {
    auto v = must("volume.get", {{"pool", "default"}, {"name", "victim.qcow2"}});
    EXPECT_EQ(v["format"], "raw") << v.dump();
    EXPECT_EQ(v["capacity"], MiB) << v.dump();
    EXPECT_FALSE(v.contains("backing_volume")) << v.dump();
    EXPECT_FALSE(v.contains("refused")) << v.dump();
  };
  check();
  must("pool.refresh", {{"name", "default"}});
  check();
  restartDaemon();
  check();

  // What a guest of each resulting volume would read: QEMU opens it in its recorded format.
  auto guestView = [&](const std::string& name) {
    json v = must("volume.get", {{"pool", "default"}, {"name", name}});
    std::string out = vmmd->dir() + "/view.raw";
    auto r = runCommand({"qemu-img", "convert", "-f", v.value("format", "raw"), "-O", "raw", v.value("path", ""), out});
    EXPECT_TRUE(r.ok() && r->success()) << name << ": " << (r.ok() ? r->err : r.error().message);
    std::string bytes = readAll(out);
    (void)fs::removeFile(out);
    EXPECT_EQ(bytes.find("TOPSECRET"), std::string::npos) << name << " reads the host file";
    EXPECT_EQ(bytes.substr(0, header->size()), *header) << name << " does not read the victim's bytes";
    return bytes;
  };
  auto linked = rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", "victim.qcow2"}, {"target", "linked"}}, dl());
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  EXPECT_EQ((*linked)["capacity"], MiB);
  EXPECT_EQ((*linked)["backing_volume"], "victim.qcow2");
  guestView("linked");
  auto full = rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", "victim.qcow2"}, {"target", "full"}, {"linked", false}}, dl());
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_EQ((*full)["format"], "raw");
  EXPECT_EQ(rpcDownload("default", "full"), forged);
  createVolume("default", {{"name", "on-victim"}, {"format", "qcow2"}, {"backing_volume", "victim.qcow2"}});
  guestView("on-victim");
  auto wiped = rpc->callAndWait("volume.wipe", {{"pool", "default"}, {"name", "linked"}}, dl());
  ASSERT_TRUE(wiped.ok()) << wiped.error().message;
  EXPECT_EQ((*wiped)["backing_volume"], "victim.qcow2");
  guestView("linked");
  restartDaemon();
  guestView("linked");
  guestView("on-victim");
  must("volume.delete", {{"pool", "default"}, {"name", "linked"}});
  must("volume.delete", {{"pool", "default"}, {"name", "on-victim"}});
  json resized = must("volume.resize", {{"pool", "default"}, {"name", "victim.qcow2"}, {"capacity", "2MiB"}});
  EXPECT_EQ(resized["capacity"], 2 * MiB);
  EXPECT_EQ(rpcDownload("default", "victim.qcow2").substr(0, header->size()), *header);

  // An image made from a domain whose disk is the victim holds the victim's bytes.
  json def = {{"name", "holder"}, {"type", "test"}, {"disks", {{{"source", {{"pool", "default"}, {"volume", "victim.qcow2"}}}}}}};
  must("domain.create", {{"definition", def}});
  auto image = rpc->callAndWait("image.from_domain", {{"name", "tmpl"}, {"domain", "holder"}}, dl());
  ASSERT_TRUE(image.ok()) << image.error().message;
  json tv = must("volume.get", {{"pool", (*image)["pool"]}, {"name", (*image)["volume"]}});
  std::string out = vmmd->dir() + "/tmpl.raw";
  auto r = runCommand({"qemu-img", "convert", "-f", tv.value("format", "raw"), "-O", "raw", tv.value("path", ""), out});
  ASSERT_TRUE(r.ok() && r->success()) << (r.ok() ? r->err : r.error().message);
  std::string bytes = readAll(out);
  EXPECT_EQ(bytes.find("TOPSECRET"), std::string::npos) << "the template reads the host file";
  EXPECT_EQ(bytes.substr(0, header->size()), *header);
  EXPECT_EQ(bytes.size(), 2 * MiB);
}

// Files planted in a pool directory are taken only when nothing in their header reaches outside
// the pool: a backing by absolute path, relative path or json: name, an external data file, or
// a backing without a format are listed as refused, and cannot be cloned, used as a backing or
// resized (finding C2 and the adoption rule).
TEST_F(StorageE2E, PlantedImagesThatReachOutsideThePoolAreRefused) {
  const std::string secret = vmmd->dir() + "/secret";
  ASSERT_TRUE(fs::writeFileAtomic(secret, "TOPSECRET-host-file\n", 0600).ok());
  auto plant = [&](const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", "qcow2"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {defaultDir() + "/" + name, "1M"});
    auto r = runCommand(argv);
    ASSERT_TRUE(r.ok() && r->success()) << name << ": " << (r.ok() ? r->err : r.error().message);
  };
  plant("abs", {"-u", "-b", secret, "-F", "raw"});
  plant("rel", {"-u", "-b", "../../secret", "-F", "raw"});
  plant("json", {"-u", "-b", "json:{\"driver\":\"file\",\"filename\":\"" + secret + "\"}", "-F", "raw"});
  plant("datafile", {"-o", "data_file=" + secret + ",data_file_raw=on"});
  plant("base", {});
  plant("good", {"-u", "-b", "base", "-F", "qcow2"});
  plant("noformat", {"-u", "-b", "base", "-F", "raw"});  // names the wrong format for its base
  must("pool.refresh", {{"name", "default"}});
  for (const char* name : {"abs", "rel", "json", "datafile", "noformat"}) {
    json v = must("volume.get", {{"pool", "default"}, {"name", name}});
    EXPECT_TRUE(v.contains("refused")) << v.dump();
    EXPECT_FALSE(v.contains("backing_volume")) << v.dump();
    auto clone = rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", name}, {"target", std::string(name) + "-clone"}, {"linked", false}}, dl());
    ASSERT_FALSE(clone.ok()) << name;
    EXPECT_NE(clone.error().message.find("refused"), std::string::npos) << clone.error().message;
    Error e = fails("volume.create", {{"pool", "default"}, {"volume", {{"name", std::string(name) + "-on"}, {"backing_volume", name}}}});
    EXPECT_NE(e.message.find("refused"), std::string::npos) << e.message;
    e = fails("volume.resize", {{"pool", "default"}, {"name", name}, {"capacity", "2M"}});
    EXPECT_NE(e.message.find("refused"), std::string::npos) << e.message;
  }
  json good = must("volume.get", {{"pool", "default"}, {"name", "good"}});
  EXPECT_FALSE(good.contains("refused")) << good.dump();
  EXPECT_EQ(good["backing_volume"], "base");
  // Recorded: a restart does not give a refused volume a second chance.
  restartDaemon();
  EXPECT_TRUE(must("volume.get", {{"pool", "default"}, {"name", "abs"}}).contains("refused"));
  // A recorded standalone image whose header is later changed to name a host file is refused.
  plant("later", {});
  must("pool.refresh", {{"name", "default"}});
  ASSERT_EQ(::unlink((defaultDir() + "/later").c_str()), 0);
  plant("later", {"-u", "-b", secret, "-F", "raw"});
  must("pool.refresh", {{"name", "default"}});
  json later = must("volume.get", {{"pool", "default"}, {"name", "later"}});
  EXPECT_NE(later.value("refused", "").find("changed outside vmm"), std::string::npos) << later.dump();
  EXPECT_FALSE(rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", "later"}, {"target", "later-clone"}}, dl()).ok());
}

// An image vmm did not make is judged by its header, read by vmmd itself: anything QEMU would
// open besides the file (a backing file by any name, an external data file), an encrypted or
// foreign format, or a disk claiming more than the size limit is refused before a byte is
// copied, and leaves no image, volume or temporary file (findings C2 and M5).
TEST_F(StorageE2E, ImportedImagesThatReachOutsideTheFileAreRefused) {
  const std::string secret = vmmd->dir() + "/secret";
  ASSERT_TRUE(fs::writeFileAtomic(secret, "TOPSECRET-host-file\n", 0600).ok());
  auto make = [&](const std::string& name, const std::vector<std::string>& args, const std::string& size = "1M") {
    return qemuImg(name, args, size);
  };
  std::vector<std::pair<std::string, std::string>> refused = {
      {make("datafile.qcow2", {"create", "-q", "-f", "qcow2", "-o", "data_file=" + secret + ",data_file_raw=on"}), "data file"},
      {make("absolute.qcow2", {"create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw"}), "backing file"},
      {make("relative.qcow2", {"create", "-q", "-f", "qcow2", "-u", "-b", "../../secret", "-F", "raw"}), "backing file"},
      {make("json.qcow2", {"create", "-q", "-f", "qcow2", "-u", "-b", "json:{\"driver\":\"file\",\"filename\":\"" + secret + "\"}",
                           "-F", "raw"}), "backing file"},
      {make("disk.vmdk", {"create", "-q", "-f", "vmdk"}), "vmdk"},
      {make("huge.qcow2", {"create", "-q", "-f", "qcow2"}, "3T"), "over the limit"},
  };
  for (const auto& [file, reason] : refused) {
    auto r = rpc->callAndWait("image.import", {{"name", "bad"}, {"file", file}}, dl());
    ASSERT_FALSE(r.ok()) << file;
    EXPECT_NE(r.error().message.find("refused"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(reason), std::string::npos) << r.error().message;
    EXPECT_EQ(must("image.list"), json::array());
    auto vols = rpc->call("volume.list", {{"pool", "images"}});
    if (vols.ok()) {
      EXPECT_EQ(*vols, json::array()) << file;
    }
  }
  // A self-contained compressed qcow2 is taken and rewritten by qemu-img: the same disk, but
  // nothing else its maker put in (an internal snapshot here), and no copy left aside.
  std::string raw = vmmd->dir() + "/plain.raw";
  ASSERT_TRUE(fs::writeFileAtomic(raw, randomData(4 * MiB)).ok());
  std::string good = make("good.qcow2", {"convert", "-q", "-c", "-f", "raw", "-O", "qcow2", raw}, "");
  ASSERT_TRUE(runCommand({"qemu-img", "snapshot", "-c", "from-the-maker", good}).ok());
  auto ok = rpc->callAndWait("image.import", {{"name", "good"}, {"file", good}}, dl());
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ((*ok)["format"], "qcow2");
  EXPECT_EQ((*ok)["size"], 4 * MiB);
  json v = must("volume.get", {{"pool", "images"}, {"name", (*ok)["volume"]}});
  EXPECT_FALSE(v.contains("refused")) << v.dump();
  EXPECT_FALSE(v.contains("backing_volume")) << v.dump();
  std::string imported = v.value("path", "");
  auto same = runCommand({"qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2", raw, imported});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->exitCode, 0) << same->out << same->err;
  auto snapshots = runCommand({"qemu-img", "snapshot", "-l", imported});
  ASSERT_TRUE(snapshots.ok());
  EXPECT_EQ(snapshots->out.find("from-the-maker"), std::string::npos) << snapshots->out;
  auto sourceSnapshots = runCommand({"qemu-img", "snapshot", "-l", good});
  ASSERT_TRUE(sourceSnapshots.ok());
  EXPECT_NE(sourceSnapshots->out.find("from-the-maker"), std::string::npos) << "the source changed";
  EXPECT_EQ(must("volume.list", {{"pool", "images"}}).size(), 1u) << must("volume.list", {{"pool", "images"}}).dump();

  // A judged copy a killed vmmd left behind goes with the next qcow2 import; a volume that only
  // looks like one stays.
  createVolume("images", {{"name", "old.import-0123abcd.qcow2"}, {"capacity", "1MiB"}});
  createVolume("images", {{"name", "mine.import-notacopy.qcow2"}, {"capacity", "1MiB"}});
  ASSERT_TRUE(rpc->callAndWait("image.import", {{"name", "again"}, {"file", good}}, dl()).ok());
  std::set<std::string> names;
  for (const auto& v : must("volume.list", {{"pool", "images"}})) names.insert(v.value("name", ""));
  EXPECT_EQ(names, (std::set<std::string>{"again.qcow2", "good.qcow2", "mine.import-notacopy.qcow2"}));
}

// The new bytes of a qcow2 volume are judged before they replace the old ones: an upload of an
// image naming a data file or a backing file, or of bytes that are not qcow2, is refused and
// the volume keeps its content; a linked clone's content cannot be replaced by an upload at all
// (finding C2 for uploads).
TEST_F(StorageE2E, UploadsOntoAQcow2VolumeAreJudgedBeforeTheyReplaceIt) {
  const std::string secret = vmmd->dir() + "/secret";
  ASSERT_TRUE(fs::writeFileAtomic(secret, "TOPSECRET-host-file\n", 0600).ok());
  createVolume("default", {{"name", "q"}, {"capacity", "1MiB"}});
  const std::string before = rpcDownload("default", "q");
  auto upload = [&](const std::string& file) {
    auto bytes = fs::readFile(file, 64 << 20);
    EXPECT_TRUE(bytes.ok()) << file;
    fs::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    return rpc->uploadVolume("default", "q", fd.get(), bytes.ok() ? bytes->size() : 0, nullptr);
  };
  std::vector<std::string> refused = {
      qemuImg("datafile.qcow2", {"create", "-q", "-f", "qcow2", "-o", "data_file=" + secret + ",data_file_raw=on"}),
      qemuImg("absolute.qcow2", {"create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw"}),
      qemuImg("json.qcow2", {"create", "-q", "-f", "qcow2", "-u", "-b", "json:{\"driver\":\"file\",\"filename\":\"" + secret + "\"}", "-F", "raw"}),
      qemuImg("raw.img", {"create", "-q", "-f", "raw"}),
  };
  for (const auto& file : refused) {
    auto r = upload(file);
    ASSERT_FALSE(r.ok()) << file;
    EXPECT_NE(r.error().message.find("refused"), std::string::npos) << r.error().message;
    EXPECT_EQ(rpcDownload("default", "q"), before) << file;
    json v = must("volume.get", {{"pool", "default"}, {"name", "q"}});
    EXPECT_FALSE(v.contains("refused")) << v.dump();
    EXPECT_FALSE(v.contains("backing_volume")) << v.dump();
  }
  EXPECT_TRUE(partialFiles(defaultDir()).empty());
  // A self-contained image is taken.
  std::string good = qemuImg("good.qcow2", {"create", "-q", "-f", "qcow2"}, "2M");
  ASSERT_TRUE(upload(good).ok());
  EXPECT_EQ(must("volume.get", {{"pool", "default"}, {"name", "q"}})["capacity"], 2 * MiB);
  // A linked clone's content is its overlay on the base: never replaced by an upload.
  ASSERT_TRUE(rpc->callAndWait("volume.clone", {{"pool", "default"}, {"name", "q"}, {"target", "c"}}, dl()).ok());
  fs::UniqueFd fd(::open(good.c_str(), O_RDONLY | O_CLOEXEC));
  auto onClone = rpc->uploadVolume("default", "c", fd.get(), 4096, nullptr);
  ASSERT_FALSE(onClone.ok());
  EXPECT_EQ(onClone.error().code, ErrorCode::conflict) << onClone.error().message;
}
