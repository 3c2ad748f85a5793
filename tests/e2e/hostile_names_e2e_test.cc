// Hostile names against a real vmmd (the security review's test plan item 21, findings L3 and
// L6): a '/', "..", ',', '"', "$(...)", a newline, 256 characters or Unicode as the name of a
// domain, pool, volume (and clone target), network, token, snapshot and image, and as a NIC's
// ifname and bridge and a network's bridge and uplink -> 400 over JSON-RPC and HTTP, nothing
// created, vmmd alive. Interface names use the port layer's charset, so a bridge "a,b" (which
// dnsmasq would split into two interfaces) is refused. Volume names ending in vmm's own
// temporary suffixes (.partial, .err, .upload.partial) are refused, so that no volume can be
// mistaken for, or deleted as, the leftover of an unfinished one.
#include <gtest/gtest.h>
#include <httplib.h>

#include "base/fs.h"
#include "base/strings.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

const std::vector<std::string>& badNames() {
  static const std::vector<std::string> names = {
      "a/b", "..", "../etc", "a,b", "a\"b", "$(touch /tmp/vmm-pwned)", "a\nb", std::string(256, 'a'),
      "caf\xc3\xa9", "\xe5\x90\x8d\xe5\x89\x8d", "a b", "a;b", "", "-a"};
  return names;
}

// Interface names: shorter than 16 so that only the characters can be wrong.
const std::vector<std::string>& badIfNames() {
  static const std::vector<std::string> names = {"a/b", "..", "a,b", "vb0,eth0", "a\"b", "$(reboot)", "a\nb",
                                                 std::string(256, 'a'), "caf\xc3\xa9", "a b", "a;b", "a{b}", "a:b"};
  return names;
}

std::string shown(const std::string& name) { return name.size() > 40 ? quote(name.substr(0, 40)) + "..." : quote(name); }

class HostileNames : public ::testing::Test {
 protected:
  void SetUp() override {
    vmmd = std::make_unique<VmmdProcess>();
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
    auto admin = vmmd->createToken("admin", "admin");
    ASSERT_TRUE(admin.ok()) << admin.error().message;
    adminToken = *admin;
    ASSERT_TRUE(rpc->call("volume.create", {{"pool", "default"}, {"volume", {{"name", "base"}, {"capacity", "1M"}}}}).ok());
    ASSERT_TRUE(rpc->call("domain.create", {{"definition", domain("d1")}}).ok());
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << vmmd->log().substr(vmmd->log().size() > 6000 ? vmmd->log().size() - 6000 : 0) << "\n";
  }

  static json domain(const std::string& name) { return {{"name", name}, {"type", "test"}, {"vcpus", 1}, {"memory", "64MiB"}}; }

  // The call fails with invalid_argument (HTTP 400).
  // Operations (clone, snapshot, import) are waited for: a refusal may come as the operation's.
  void refused(const std::string& method, const json& params, const std::string& what) {
    bool async = method == "volume.clone" || method == "snapshot.create" || method == "image.import";
    auto r = async ? rpc->callAndWait(method, params, Deadline::after(Millis(30000))) : rpc->call(method, params);
    if (r.ok()) {
      ADD_FAILURE() << method << " accepted " << what << ": " << r->dump(-1, ' ', false, json::error_handler_t::replace);
      return;
    }
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << method << " " << what << ": " << r.error().message;
  }

  // Nothing was created by the refused calls, and vmmd answers.
  void expectNothingCreated() {
    auto count = [&](const std::string& method, const json& params) {
      auto r = rpc->call(method, params);
      EXPECT_TRUE(r.ok()) << method;
      return r.ok() ? r->size() : 0;
    };
    EXPECT_EQ(count("domain.list", {{"full", false}}), 1u);
    EXPECT_EQ(count("pool.list", json::object()), 1u);
    EXPECT_EQ(count("volume.list", {{"pool", "default"}}), 1u);
    EXPECT_EQ(count("network.list", json::object()), 0u);
    EXPECT_EQ(count("token.list", json::object()), 1u);
    EXPECT_EQ(count("snapshot.list", {{"name", "d1"}}), 0u);
    EXPECT_FALSE(fs::exists("/tmp/vmm-pwned"));
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok());
    auto t0 = SteadyClock::now();
    EXPECT_TRUE((*c)->call("host.info", json::object(), Millis(1000)).ok());
    EXPECT_LT(std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count(), 1000);
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::string adminToken;
};

}  // namespace

TEST_F(HostileNames, ObjectNamesAreRefused) {
  for (const auto& bad : badNames()) {
    std::string what = "name " + shown(bad);
    refused("domain.create", {{"definition", domain(bad)}}, what);
    refused("pool.create", {{"definition", {{"name", bad}, {"type", "dir"}, {"path", vmmd->dir() + "/p"}}}, {"build", true}}, what);
    refused("volume.create", {{"pool", "default"}, {"volume", {{"name", bad}, {"capacity", "1M"}}}}, what);
    refused("volume.create", {{"pool", "default"}, {"volume", {{"name", bad}, {"format", "dir"}}}}, what);
    refused("volume.clone", {{"pool", "default"}, {"name", "base"}, {"target", bad}}, what);
    refused("network.create", {{"definition", {{"name", bad}, {"mode", "isolated"}, {"ipv4", {{"address", "10.97.0.1"}, {"prefix", 24}}}}}, {"start", false}}, what);
    refused("token.create", {{"name", bad}, {"role", "read"}}, what);
    refused("snapshot.create", {{"name", "d1"}, {"snapshot", bad}}, what);
    refused("image.import", {{"name", bad}, {"file", "/nonexistent.qcow2"}}, what);
  }
  expectNothingCreated();
}

TEST_F(HostileNames, InterfaceNamesUseThePortLayersCharset) {
  for (const auto& bad : badIfNames()) {
    std::string what = "interface " + shown(bad);
    json bridged = domain("n1");
    bridged["nics"] = json::array({{{"type", "bridge"}, {"bridge", bad}}});
    refused("domain.create", {{"definition", bridged}}, "bridge " + what);
    json ifname = domain("n2");
    ifname["nics"] = json::array({{{"type", "bridge"}, {"bridge", "br0"}, {"ifname", bad}}});
    refused("domain.create", {{"definition", ifname}}, "ifname " + what);
    json direct = domain("n3");
    direct["nics"] = json::array({{{"type", "direct"}, {"device", bad}}});
    refused("domain.create", {{"definition", direct}}, "device " + what);
    refused("network.create", {{"definition", {{"name", "net1"}, {"mode", "bridge"}, {"bridge", bad}}}, {"start", false}}, "bridge " + what);
    refused("network.create",
            {{"definition", {{"name", "net2"}, {"mode", "nat"}, {"uplink", bad}, {"ipv4", {{"address", "10.97.1.1"}, {"prefix", 24}}}}}, {"start", false}},
            "uplink " + what);
    refused("domain.attach_nic", {{"name", "d1"}, {"nic", {{"type", "bridge"}, {"bridge", bad}}}}, "attached bridge " + what);
  }
  // The exact reason, for the case the review names (dnsmasq --interface=a,b).
  json bridged = domain("n1");
  bridged["nics"] = json::array({{{"type", "bridge"}, {"bridge", "a,b"}}});
  auto r = rpc->call("domain.create", {{"definition", bridged}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("may only contain letters, digits, '_', '.' and '-'"), std::string::npos) << r.error().message;
  // What stays valid.
  for (const char* good : {"br0", "vmm-br.1", "tap_x", "a"}) {
    json ok = domain(std::string("ok-") + good);
    ok["nics"] = json::array({{{"type", "bridge"}, {"bridge", good}}});
    auto created = rpc->call("domain.create", {{"definition", ok}});
    EXPECT_TRUE(created.ok()) << good << ": " << created.error().message;
    if (created.ok()) {
      EXPECT_TRUE(rpc->call("domain.delete", {{"name", std::string("ok-") + good}}).ok());
    }
  }
  expectNothingCreated();
}

TEST_F(HostileNames, VolumeNamesCannotTakeVmmsTemporarySuffixes) {
  for (const char* bad : {"x.partial", "x.err", "x.upload.partial", "base.partial", "x.PARTIAL.partial"}) {
    std::string what = std::string("volume name ") + bad;
    refused("volume.create", {{"pool", "default"}, {"volume", {{"name", bad}, {"capacity", "1M"}}}}, what);
    refused("volume.create", {{"pool", "default"}, {"volume", {{"name", bad}, {"format", "dir"}}}}, what);
    refused("volume.clone", {{"pool", "default"}, {"name", "base"}, {"target", bad}}, what);
    json disk = domain("dx");
    disk["disks"] = json::array({{{"source", {{"pool", "default"}, {"volume", bad}}}}});
    refused("domain.create", {{"definition", disk}}, "disk " + what);
  }
  auto r = rpc->call("volume.create", {{"pool", "default"}, {"volume", {{"name", "x.partial"}, {"capacity", "1M"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("must not end in \".partial\""), std::string::npos) << r.error().message;
  // Names that only contain the words stay valid.
  for (const char* good : {"partial", "x.partial1", "err.img", "x.errata"}) {
    auto created = rpc->call("volume.create", {{"pool", "default"}, {"volume", {{"name", good}, {"capacity", "1M"}}}});
    EXPECT_TRUE(created.ok()) << good << ": " << created.error().message;
    if (created.ok()) {
      EXPECT_TRUE(rpc->call("volume.delete", {{"pool", "default"}, {"name", good}}).ok());
    }
  }
  EXPECT_EQ(fs::listDir(vmmd->dir() + "/state/pools/default").valueOr({}), std::vector<std::string>{"base"});
  expectNothingCreated();
}

// The same refusals arrive as 400 over HTTP.
TEST_F(HostileNames, HttpAnswers400) {
  httplib::Client http("127.0.0.1", vmmd->httpPort());
  http.set_bearer_token_auth(adminToken.c_str());
  auto post = [&](const std::string& path, const json& body) {
    auto res = http.Post(path.c_str(), body.dump(), "application/json");
    return res ? res->status : -1;
  };
  for (const auto& bad : {std::string("a,b"), std::string("a\nb"), std::string("$(id)"), std::string(256, 'x'), std::string("\xc3\xa9")}) {
    EXPECT_EQ(post("/v1/domains", domain(bad)), 400) << shown(bad);
    EXPECT_EQ(post("/v1/pools/default/volumes", {{"name", bad}, {"capacity", "1M"}}), 400) << shown(bad);
    EXPECT_EQ(post("/v1/networks", {{"name", bad}, {"mode", "isolated"}, {"ipv4", {{"address", "10.97.0.1"}, {"prefix", 24}}}}), 400) << shown(bad);
    EXPECT_EQ(post("/v1/tokens", {{"name", bad}, {"role", "read"}}), 400) << shown(bad);
    json nic = domain("h1");
    nic["nics"] = json::array({{{"type", "bridge"}, {"bridge", bad}}});
    EXPECT_EQ(post("/v1/domains", nic), 400) << "bridge " << shown(bad);
  }
  EXPECT_EQ(post("/v1/pools/default/volumes", {{"name", "v.upload.partial"}, {"capacity", "1M"}}), 400);
  expectNothingCreated();
}
