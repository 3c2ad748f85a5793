// End-to-end on a host WITHOUT a Xen hypervisor: a real vmmd with the xen driver built in,
// driven through vmctl, JSON-RPC and HTTP. Xen must show as unavailable with its reason;
// definitions are still checked and stored; starting says "unavailable" (503) at once; nothing
// is left behind and vmmd keeps answering. Skipped on a Xen host.
#include <gtest/gtest.h>
#include <httplib.h>

#include "base/fs.h"
#include "base/strings.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

class XenUnavailableE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_NOT_APPLICABLE(fs::exists("/proc/xen/capabilities"), "this host runs on Xen (the test is about hosts without it)");
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "xen,test"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
  }
  std::string writeDef(const std::string& name, const json& def) {
    std::string path = vmmd->dir() + "/" + name + ".json";
    EXPECT_TRUE(fs::writeFileAtomic(path, def.dump()).ok());
    return path;
  }
  std::unique_ptr<VmmdProcess> vmmd;
};

json pvGuest(const std::string& name) {
  return {{"name", name},
          {"type", "xen"},
          {"machine", "pv"},
          {"vcpus", 2},
          {"memory", "256MiB"},
          {"boot", {{"kernel", "/boot/vmlinuz-xen"}, {"cmdline", "console=hvc0"}}},
          {"disks", {{{"source", {{"path", "/var/lib/vmm/images/" + name + ".img"}}}, {"bus", "xen"}}}},
          {"nics", {{{"type", "bridge"}, {"bridge", "br0"}}}}};
}

}  // namespace

TEST_F(XenUnavailableE2E, NoHypervisorMeansUnavailableNeverACrash) {
  // Capabilities: xen is there, unavailable, with the reason libxl gave.
  auto r = vmmd->vmctl({"host", "info"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("unavailable: no Xen hypervisor on this host (libxl_ctx_alloc failed:"), std::string::npos) << r.out;
  r = vmmd->vmctl({"-o", "json", "host", "info"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  json info = json::parse(r.out);
  ASSERT_TRUE(info["drivers"].contains("xen")) << r.out;
  EXPECT_FALSE(info["drivers"]["xen"]["available"].get<bool>());
  std::string reason = info["drivers"]["xen"]["reason"];
  EXPECT_TRUE(startsWith(reason, "no Xen hypervisor on this host")) << reason;
  EXPECT_TRUE(info["drivers"]["test"]["available"].get<bool>());

  // Defining works (it is checked by the xen driver); what Xen cannot do is refused clearly.
  r = vmmd->vmctl({"define", writeDef("xen1", pvGuest("xen1"))});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  json bad = pvGuest("xen2");
  bad["nics"] = {{{"type", "user"}}};
  r = vmmd->vmctl({"define", writeDef("xen2", bad)});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("nics[0]: user-mode networking is a QEMU feature"), std::string::npos) << r.err;
  EXPECT_EQ(vmmd->vmctl({"dumpjson", "xen2"}).exitCode, 4) << "a refused definition is not stored";

  // Starting says unavailable, with the reason, and exits non-zero (8: unavailable here).
  r = vmmd->vmctl({"start", "xen1"});
  EXPECT_EQ(r.exitCode, 8) << r.out << r.err;
  EXPECT_NE(r.err.find("unavailable on this host: no Xen hypervisor on this host"), std::string::npos) << r.err;

  // The same through JSON-RPC and HTTP: the start is refused at once with kind "unavailable"
  // (HTTP 503), not accepted as an operation that fails later.
  auto rpc = vmmd->connect();
  ASSERT_TRUE(rpc.ok()) << rpc.error().message;
  auto started = (*rpc)->call("domain.start", {{"name", "xen1"}});
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, ErrorCode::unavailable) << started.error().message;
  EXPECT_NE(started.error().message.find("no Xen hypervisor"), std::string::npos) << started.error().message;
  auto token = (*rpc)->call("token.create", {{"name", "admin"}, {"role", "admin"}});
  ASSERT_TRUE(token.ok());
  httplib::Client http("127.0.0.1", vmmd->httpPort());
  http.set_read_timeout(30, 0);
  http.set_bearer_token_auth(std::string((*token)["token"]).c_str());
  auto res = http.Post("/v1/domains/xen1/start", "{}", "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 503) << res->body;
  json httpErr = json::parse(res->body);
  EXPECT_EQ(httpErr["error"]["kind"], "unavailable") << res->body;
  EXPECT_NE(httpErr["error"]["message"].get<std::string>().find("no Xen hypervisor"), std::string::npos) << res->body;

  // Nothing changed: the domain is shut off, no Xen run files, and other ops say the same.
  r = vmmd->vmctl({"list", "--all"});
  EXPECT_NE(r.out.find("xen1"), std::string::npos);
  EXPECT_NE(r.out.find("shutoff"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(vmmd->dir() + "/run/xen"));
  r = vmmd->vmctl({"destroy", "xen1"});
  EXPECT_NE(r.exitCode, 0);

  // vmmd keeps answering, and other drivers keep working.
  r = vmmd->vmctl({"define", writeDef("t1", {{"name", "t1"}, {"type", "test"}})});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(vmmd->vmctl({"start", "t1"}).exitCode, 0);
  EXPECT_EQ(vmmd->vmctl({"destroy", "t1"}).exitCode, 0);
  EXPECT_EQ(vmmd->vmctl({"undefine", "xen1"}).exitCode, 0);
  EXPECT_EQ(vmmd->vmctl({"host", "info"}).exitCode, 0);
}
