// Golden files: each tests/data/xen/NAME.json (a domain definition plus the disks the storage
// layer resolved for it) must produce exactly NAME.expected.json (the libxl domain config and
// the host-side port plan), or fail with exactly the message in NAME.error.
// VMM_UPDATE_GOLDEN=1 rewrites the expectations (check the diff by hand before keeping it).
//
// Beyond the golden text, every generated libxl config goes through libxl's own parser
// (libxl_domain_config_from_json) and back out (libxl_domain_config_to_json): libxl must accept
// it and write the same thing again - an unknown key, a misspelt enum value or a value of the
// wrong type is dropped or rejected there and shows up as a difference.
#include <gtest/gtest.h>

#include "tests/unit/test_util.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

extern "C" {
#include <libxl.h>
}

#include "base/fs.h"
#include "base/strings.h"
#include "drivers/xen/libxl_config.h"
#include "drivers/xen/xen_driver.h"
#include "tests/support/require.h"

using namespace vmm;
using namespace vmm::drivers;
using nlohmann::json;

namespace {

const std::string kDir = VMM_SOURCE_DIR "/tests/data/xen";

std::vector<std::string> cases() { return testutil::goldenCases(kDir, ".expected.json"); }

Result<xen::XenConfig> translate(const json& in, model::Domain& def) {
  auto parsed = model::parseDomain(in["domain"]);
  if (!parsed.ok()) return parsed.error();
  def = std::move(*parsed);
  xen::XenConfigInput input;
  input.def = &def;
  input.vifScript = "/run/vmm/xen/vif-vmm";
  for (size_t i = 0; i < def.disks.size(); ++i) {
    json r = in.contains("disks") && i < in["disks"].size() ? in["disks"][i] : json::object();
    ResolvedDisk rd;
    rd.path = r.value("path", def.disks[i].source.path);
    rd.protocol = r.value("protocol", "");
    rd.blockdev = r.value("blockdev", json::object());
    rd.offset = r.value("offset", uint64_t{0});
    rd.size = r.value("size", uint64_t{0});
    rd.blockDevice = r.value("block_device", false);
    rd.username = r.value("username", "");
    rd.secret = r.value("secret", "");
    rd.format = r.value("format", "") == "qcow2" ? model::DiskFormat::qcow2
                                                 : def.disks[i].format.value_or(model::defaultDiskFormat(def.disks[i]));
    input.disks.push_back(rd);
  }
  return xen::buildXenConfig(input);
}

// libxl's JSON parser needs a libxl_ctx only for logging (the ctx's first member, its
// xentoollog logger) and for allocations it does not track; libxl_ctx_alloc itself needs a
// hypervisor. So the test hands the parser a zeroed block whose first word is a logger.
// Allocations made by the parser without a real context leak; this is a test.
class LibxlParser {
 public:
  LibxlParser() {
    logger_ = reinterpret_cast<xentoollog_logger*>(xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0));
    block_ = calloc(1, 1 << 16);
    memcpy(block_, &logger_, sizeof logger_);
  }
  ~LibxlParser() {
    free(block_);
    xtl_logger_destroy(logger_);
  }
  // libxl's own re-serialisation of `config`, or an error when libxl rejects it.
  Result<json> roundTrip(const json& config) {
    auto* ctx = static_cast<libxl_ctx*>(block_);
    libxl_domain_config c;
    libxl_domain_config_init(&c);
    int rc = libxl_domain_config_from_json(ctx, &c, config.dump().c_str());
    Result<json> out = internalError("libxl_domain_config_from_json rc=" + std::to_string(rc));
    if (rc == 0) {
      char* s = libxl_domain_config_to_json(ctx, &c);
      if (s) out = json::parse(s);
      free(s);
    }
    libxl_domain_config_dispose(&c);
    return out;
  }

 private:
  xentoollog_logger* logger_ = nullptr;
  void* block_ = nullptr;
};

// libxl always writes some sub-objects ("sched_params", "arch_x86", ...) even when empty.
json withoutEmptyObjects(const json& j) {
  if (j.is_object()) {
    json out = json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      json v = withoutEmptyObjects(it.value());
      if (!(v.is_object() && v.empty())) out[it.key()] = v;
    }
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(withoutEmptyObjects(v));
    return out;
  }
  return j;
}

}  // namespace

TEST(XenConfig, GoldenFiles) {
  auto all = cases();
  ASSERT_GE(all.size(), 10u) << "golden cases in " << kDir;
  bool update = getenv("VMM_UPDATE_GOLDEN") != nullptr;
  LibxlParser libxl;
  int translated = 0;
  for (const auto& name : all) {
    SCOPED_TRACE(name);
    auto input = fs::readFile(kDir + "/" + name + ".json");
    ASSERT_TRUE(input.ok());
    model::Domain def;
    auto got = translate(json::parse(*input), def);
    std::string expectedPath = kDir + "/" + name + ".expected.json", errorPath = kDir + "/" + name + ".error";
    if (update) {
      if (got.ok()) ASSERT_TRUE(fs::writeFileAtomic(expectedPath, xen::describeXenConfig(*got).dump(2) + "\n").ok());
      else ASSERT_TRUE(fs::writeFileAtomic(errorPath, got.error().message + "\n").ok());
    }
    if (fs::exists(errorPath)) {
      ASSERT_FALSE(got.ok()) << "expected an error, got:\n" << xen::describeXenConfig(*got).dump(2);
      EXPECT_EQ(got.error().message + "\n", *fs::readFile(errorPath));
      continue;
    }
    ASSERT_TRUE(got.ok()) << got.error().message;
    ++translated;
    auto expected = fs::readFile(expectedPath);
    ASSERT_TRUE(expected.ok()) << "missing " << expectedPath;
    EXPECT_EQ(xen::describeXenConfig(*got).dump(2) + "\n", *expected);

    auto back = libxl.roundTrip(got->libxl);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(withoutEmptyObjects(*back), got->libxl) << "libxl wrote back:\n" << back->dump(2);
  }
  EXPECT_GE(translated, 10);
}

TEST(XenConfig, LibxlRejectsWhatItDoesNotKnow) {
  // The round trip catches mistakes: a misspelt enum fails, an unknown key disappears.
  LibxlParser libxl;
  EXPECT_FALSE(libxl.roundTrip({{"c_info", {{"type", "pvhh"}}}}).ok());
  auto dropped = libxl.roundTrip({{"c_info", {{"type", "pv"}, {"name", "x"}}}, {"b_info", {{"max_vcpu", 2}}}});
  ASSERT_TRUE(dropped.ok());
  EXPECT_FALSE(withoutEmptyObjects(*dropped)["b_info"].contains("max_vcpu"));
}

TEST(XenConfig, GuestTypeDefaults) {
  model::Domain d;
  d.type = model::DriverType::xen;
  EXPECT_EQ(xen::guestTypeOf(d).valueOr(xen::GuestType::pv), xen::GuestType::hvm);
  d.boot.kernel = "/boot/vmlinuz";
  EXPECT_EQ(xen::guestTypeOf(d).valueOr(xen::GuestType::hvm), xen::GuestType::pv);
  d.machine = "q35";
  ASSERT_FALSE(xen::guestTypeOf(d).ok());
  EXPECT_EQ(xen::guestTypeOf(d).error().message, "machine: Xen guest types are pv, pvh and hvm, not \"q35\"");
}

TEST(XenDriver, UnavailableWithoutHypervisor) {
  VMM_NOT_APPLICABLE(fs::exists("/proc/xen/capabilities"), "this host runs on Xen (the test is about hosts without it)");
  xen::XenDriver drv(DriverContext{});
  auto info = drv.probe();
  ASSERT_FALSE(info.available);
  EXPECT_NE(info.reason.find("no Xen hypervisor on this host"), std::string::npos) << info.reason;
  EXPECT_EQ(drv.probe().reason, info.reason);  // cached

  model::Domain def;
  def.name = "x";
  def.type = model::DriverType::xen;
  def.boot.kernel = "/boot/vmlinuz";
  EXPECT_TRUE(drv.validate(def).ok());  // definitions are still checked and accepted
  auto expectUnavailable = [&](const Error& e) {
    EXPECT_EQ(e.code, ErrorCode::unavailable) << e.message;
    EXPECT_TRUE(startsWith(e.message, "Xen: no Xen hypervisor on this host")) << e.message;
  };
  Deadline dl = Deadline::after(Millis(1000));
  auto started = drv.start(def, StartOptions{});
  ASSERT_FALSE(started.ok());
  expectUnavailable(started.error());
  expectUnavailable(drv.reconnect(def, {{"domid", 3}}).error());
  expectUnavailable(drv.shutdown(def, ShutdownOptions{}).error());
  expectUnavailable(drv.destroy(def, dl).error());
  expectUnavailable(drv.reboot(def, dl).error());
  expectUnavailable(drv.suspend(def, dl).error());
  expectUnavailable(drv.resume(def, dl).error());
  expectUnavailable(drv.save(def, "/nonexistent/x.save", dl).error());
  expectUnavailable(drv.stats(def, dl).error());
  expectUnavailable(drv.openConsole(def).error());
  expectUnavailable(drv.consoleLog(def, 100).error());
  expectUnavailable(drv.attachNic(def, model::Nic{}, dl).error());
  expectUnavailable(drv.snapshotCreate(def, drivers::SnapshotRequest{}, dl).error());
  drv.release(def, {{"domid", 3}});  // nothing to release, no crash
  EXPECT_FALSE(fs::exists("/nonexistent/x.save"));
}
