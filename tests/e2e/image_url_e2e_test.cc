// URL imports against a real vmmd (test driver, no guest) and local httplib servers on
// 127.0.0.1: https with a certificate from a CA the test makes, plain http next to it. Plain
// http is refused unless [images] allow_http is set; redirects are followed by hand (at most 5,
// relative Locations resolved, never from https to http, a malformed Location refused); an
// optional sha256 is checked for downloads and host files, and every image records the
// sha256 of its bytes. A refused import leaves no image, no volume and no temporary file.
#include <httplib.h>

#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <thread>

#include "base/fs.h"
#include "base/random.h"
#include "base/strings.h"
#include "tests/support/host_command.h"
#include "tests/support/host_tools.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

// Answers both servers the same way:
//   /disk.img, /a/c/disk.img, /a/b/disk.img: the image
//   /hop/N              N redirects (absolute paths), then the image
//   /a/b/rel            Location "../c/disk.img" (relative: /a/c/disk.img)
//   /a/b/rel2           Location "disk.img" (relative: /a/b/disk.img)
//   /down               Location http://127.0.0.1:PLAIN/disk.img (a downgrade)
//   /up                 Location https://127.0.0.1:TLS/disk.img
//   /bad                Location "ftp://127.0.0.1/disk.img"; /noloc: a 302 without one
void addRoutes(httplib::Server& s, const std::string& body, const int& tlsPort, const int& plainPort) {
  s.Get(R"(/disk\.img|/a/c/disk\.img|/a/b/disk\.img)", [&body](const httplib::Request&, httplib::Response& r) { r.set_content(body, "application/octet-stream"); });
  s.Get(R"(/hop/(\d+))", [&body](const httplib::Request& q, httplib::Response& r) {
    int n = std::stoi(q.matches[1].str());
    if (n == 0) return r.set_content(body, "application/octet-stream");
    r.status = n % 2 ? 302 : 301;
    r.set_header("Location", "/hop/" + std::to_string(n - 1));
  });
  auto redirect = [](std::function<std::string()> to) {
    return [to](const httplib::Request&, httplib::Response& r) {
      r.status = 302;
      r.set_header("Location", to());
    };
  };
  s.Get("/a/b/rel", redirect([] { return std::string("../c/disk.img"); }));
  s.Get("/a/b/rel2", redirect([] { return std::string("disk.img"); }));
  s.Get("/down", redirect([&plainPort] { return "http://127.0.0.1:" + std::to_string(plainPort) + "/disk.img"; }));
  s.Get("/up", redirect([&tlsPort] { return "https://127.0.0.1:" + std::to_string(tlsPort) + "/disk.img"; }));
  s.Get("/bad", redirect([] { return std::string("ftp://127.0.0.1/disk.img"); }));
  s.Get("/noloc", [](const httplib::Request&, httplib::Response& r) { r.status = 302; });
}

class ImageUrlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(!testutil::findTool("openssl").empty(), "openssl (to make the test CA)");
    VMM_REQUIRE(!testutil::findTool("qemu-img").empty(), "qemu-img");
    VMM_REQUIRE(!testutil::findTool("sha256sum").empty(), "sha256sum");
    char tmpl[] = "/tmp/vmm-image-url-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp = tmpl;
    // Readable text, so that no format prober mistakes it for anything but raw.
    body = randomHex(512 * 1024);
    ASSERT_TRUE(fs::writeFileAtomic(tmp + "/disk.img", body).ok());
    auto sum = testutil::hostCommand({"sha256sum", tmp + "/disk.img"});
    ASSERT_EQ(sum.exitCode, 0) << sum.err;
    goodSha = sum.out.substr(0, 64);

    ASSERT_TRUE(fs::writeFileAtomic(tmp + "/san.cnf", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").ok());
    std::string script =
        "set -e; cd " + tmp + "; "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=vmm-test-ca 2>/dev/null; "
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null; "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.cnf 2>/dev/null";
    auto made = testutil::hostCommand({"sh", "-c", script}, Millis(60000));
    ASSERT_EQ(made.exitCode, 0) << made.err;

    tls = std::make_unique<httplib::SSLServer>((tmp + "/server.pem").c_str(), (tmp + "/server.key").c_str());
    ASSERT_TRUE(tls->is_valid());
    plain = std::make_unique<httplib::Server>();
    addRoutes(*tls, body, tlsPort, plainPort);
    addRoutes(*plain, body, tlsPort, plainPort);
    tlsPort = tls->bind_to_any_port("127.0.0.1");
    plainPort = plain->bind_to_any_port("127.0.0.1");
    ASSERT_GT(tlsPort, 0);
    ASSERT_GT(plainPort, 0);
    // The sockets listen already (connections wait in the backlog until these threads accept).
    threads.emplace_back([this] { tls->listen_after_bind(); });
    threads.emplace_back([this] { plain->listen_after_bind(); });
  }

  void TearDown() override {
    rpc.reset();
    vmmd.reset();
    dirOwner.reset();
    if (tls) tls->stop();
    if (plain) plain->stop();
    for (auto& t : threads) t.join();
    if (!tmp.empty()) (void)fs::removeTree(tmp);
  }

  // vmmd trusting the test CA, with `extraConfig` lines in its [images] section.
  void startVmmd(const std::string& extraConfig = "") {
    rpc.reset();
    vmmd.reset();
    dirOwner = std::make_unique<VmmdProcess>();
    std::string config = "[images]\nca_file = \"" + tmp + "/ca.pem\"\n" + extraConfig;
    ASSERT_TRUE(fs::writeFileAtomic(dirOwner->dir() + "/vmmd.toml", config).ok());
    vmmd = std::make_unique<VmmdProcess>(dirOwner->dir(), std::vector<std::string>{"--config", dirOwner->dir() + "/vmmd.toml"});
    auto st = vmmd->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }

  std::string https(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(tlsPort) + path; }
  std::string http(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(plainPort) + path; }

  testutil::VmctlResult import(const std::string& name, const std::string& source, const std::string& sha = "") {
    std::vector<std::string> args = {"image", "import", name, source};
    if (!sha.empty()) args.insert(args.end(), {"--sha256", sha});
    return vmmd->vmctl(args);
  }

  // Files of the image pool and the download directory whose names start with `name`.
  std::vector<std::string> leftovers(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& dir : {vmmd->dir() + "/state/pools/images", vmmd->dir() + "/state/tmp/images"})
      for (const auto& f : fs::listDir(dir).valueOr({}))
        if (startsWith(f, name)) out.push_back(dir + "/" + f);
    return out;
  }

  bool listed(const std::string& name) const {
    auto list = rpc->call("image.list", json::object());
    EXPECT_TRUE(list.ok());
    if (!list.ok()) return false;
    for (const auto& i : *list)
      if (i["name"] == name) return true;
    return false;
  }

  // The import is refused with `message` in its error, and nothing of it remains.
  void expectRefused(const std::string& name, const std::string& source, const std::string& message, const std::string& sha = "") {
    auto r = import(name, source, sha);
    EXPECT_NE(r.exitCode, 0) << source << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << source << ": " << r.err;
    EXPECT_FALSE(rpc->call("image.get", {{"name", name}}).ok()) << source;
    EXPECT_FALSE(listed(name)) << source;
    EXPECT_EQ(leftovers(name), std::vector<std::string>{}) << source;
  }

  // The import succeeds; the image records the served file's sha256 and its volume holds its bytes.
  void expectImported(const std::string& name, const std::string& source, const std::string& sha = "") {
    auto r = import(name, source, sha);
    ASSERT_EQ(r.exitCode, 0) << source << "\n" << r.out << r.err;
    auto img = rpc->call("image.get", {{"name", name}});
    ASSERT_TRUE(img.ok()) << img.error().message;
    EXPECT_EQ((*img)["sha256"], goodSha) << img->dump();
    EXPECT_EQ((*img)["source"], source);
    EXPECT_TRUE(listed(name));
    std::string volume = vmmd->dir() + "/state/pools/images/" + (*img)["volume"].get<std::string>();
    auto sum = testutil::hostCommand({"sha256sum", volume});
    EXPECT_EQ(sum.out.substr(0, std::min<size_t>(64, sum.out.size())), goodSha) << sum.err;
    EXPECT_EQ(vmmd->vmctl({"image", "delete", name}).exitCode, 0);
  }

  std::string tmp, body, goodSha;
  int tlsPort = 0, plainPort = 0;
  std::unique_ptr<httplib::SSLServer> tls;
  std::unique_ptr<httplib::Server> plain;
  std::vector<std::thread> threads;
  std::unique_ptr<VmmdProcess> dirOwner;  // owns (and at the end removes) the directory
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
};

TEST_F(ImageUrlTest, PlainHttpIsRefusedByDefault) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  expectRefused("plain", http("/disk.img"), "plain http:// is refused");
  // Neither directly nor through a redirect.
  expectRefused("viahttp", https("/down"), "from https to plain http");
  expectImported("secure", https("/disk.img"));
}

TEST_F(ImageUrlTest, PlainHttpIsAcceptedWithAllowHttpButNeverAfterHttps) {
  ASSERT_NO_FATAL_FAILURE(startVmmd("allow_http = true\n"));
  expectImported("plain", http("/disk.img"));
  expectImported("upgraded", http("/up"));
  // allow_http never allows a downgrade.
  expectRefused("downgraded", https("/down"), "from https to plain http");
}

TEST_F(ImageUrlTest, RedirectsAreFollowedAtMostFiveTimes) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  expectImported("five", https("/hop/5"));
  expectRefused("six", https("/hop/6"), "more than 5 redirects");
  expectImported("relative", https("/a/b/rel"));
  expectImported("sibling", https("/a/b/rel2"));
  expectRefused("ftp", https("/bad"), "malformed redirect");
  expectRefused("noloc", https("/noloc"), "malformed redirect");
}

TEST_F(ImageUrlTest, Sha256IsCheckedAndRecorded) {
  ASSERT_NO_FATAL_FAILURE(startVmmd());
  std::string wrong = sha256Hex("not the image");
  // A download whose digest differs: refused with both digests, nothing kept.
  // The message says where: the download is checked before anything reads the file.
  expectRefused("badurl", https("/disk.img"), https("/disk.img") + ": sha256 mismatch: expected " + wrong + ", got " + goodSha, wrong);
  // The same for a host file: the copy in the pool is removed again.
  expectRefused("badfile", tmp + "/disk.img", "sha256 mismatch for " + tmp + "/disk.img: expected " + wrong + ", got " + goodSha, wrong);
  // Not 64 hex digits.
  expectRefused("short", https("/disk.img"), "sha256: expected 64 hexadecimal digits", "abc123");
  // Matching digests (in either case) are accepted, and the digest is recorded without one too.
  expectImported("goodurl", https("/disk.img"), toLower(goodSha));
  std::string upper = goodSha;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  expectImported("goodfile", tmp + "/disk.img", upper);
  expectImported("nodigest", tmp + "/disk.img");
  // image info shows it.
  ASSERT_EQ(import("shown", https("/disk.img")).exitCode, 0);
  auto info = vmmd->vmctl({"-o", "json", "image", "info", "shown"});
  ASSERT_EQ(info.exitCode, 0) << info.err;
  EXPECT_EQ(json::parse(info.out)["sha256"], goodSha) << info.out;
  info = vmmd->vmctl({"image", "info", "shown"});
  EXPECT_NE(info.out.find(goodSha), std::string::npos) << info.out;
}

}  // namespace
