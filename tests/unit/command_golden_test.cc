// Golden command lines: each tests/data/command-golden/NAME.json names a production function
// ("driver") and its input; the function runs with a RecordingRunner installed, so nothing is
// executed, and the commands it would have run (one a line, standard input below each) plus
// its outcome must equal NAME.txt. Canned answers ("replies") are handed out in order to the
// commands containing their "expect" text; later commands get the case's "default_reply", or
// exit 0 and no output. A "comment" is for the reader.
// VMM_UPDATE_GOLDEN=1 rewrites the .txt files. Needs no root and no tools: a command outside a
// case fails the run.
#include <gtest/gtest.h>

#include <cctype>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "base/fs.h"
#include "base/recording_runner.h"
#include "base/strings.h"
#include "model/domain.h"
#include "model/network.h"
#include "model/pool.h"
#include "network/port/nft_exec.h"
#include "network/port/nft_port_rules.h"
#include "network/port/port_profile.h"
#include "network/port/port_tc.h"
#include "network/port/vlan.h"
#include "network/virtual/dnsmasq.h"
#include "network/virtual/nftables.h"
#include "network/virtual/virtual_network.h"
#include "storage/logical/logical_backend.h"
#include "storage/qemu_img.h"
#include "tests/unit/test_util.h"

using namespace vmm;
using nlohmann::json;

namespace {

const std::string kDir = VMM_SOURCE_DIR "/tests/data/command-golden";

Deadline soon() { return Deadline::after(Millis(10000)); }

// ---- rendering

bool plainWord(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!(std::isalnum(c) || std::string_view("_./:=,@%+-").find(static_cast<char>(c)) != std::string_view::npos)) return false;
  return true;
}

std::string shellQuote(const std::string& s) {
  if (plainWord(s)) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// argv[0] as a name: lookups (lvm in /usr/sbin or on PATH) differ between hosts.
std::string commandLine(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string w = argv[i];
    if (i == 0 && w.find('/') != std::string::npos) w = fs::baseName(w);
    words.push_back(shellQuote(w));
  }
  return "$ " + join(words, " ") + "\n";
}

// `heading`, then the text's lines, each behind "  | ".
std::string quotedLines(const std::string& heading, const std::string& text) {
  bool newlineAtEnd = !text.empty() && text.back() == '\n';
  std::string out = "  " + heading + ":\n";
  for (const auto& line : split(newlineAtEnd ? text.substr(0, text.size() - 1) : text, '\n', false)) out += "  | " + line + "\n";
  if (!newlineAtEnd) out += "  (no newline at the end)\n";
  return out;
}

std::string renderStdin(const std::string& data) {
  if (data.empty()) return "";
  auto doc = json::parse(data, nullptr, false);
  if (!doc.is_discarded() && doc.is_object() && doc.size() == 1 && doc.contains("nftables") && doc["nftables"].is_array()) {
    std::string out = "  stdin (nft JSON, one command a line):\n";
    for (const auto& cmd : doc["nftables"]) out += "  | " + cmd.dump() + "\n";
    return out;
  }
  return quotedLines("stdin", data);
}

std::string render(const RecordedCommand& c) {
  std::string out = commandLine(c.argv);
  if (!c.env.empty() || c.clearEnv) {
    std::vector<std::string> vars;
    for (const auto& [k, v] : c.env) vars.push_back(k + "=" + shellQuote(v));
    out += std::string("  env") + (c.clearEnv ? " (cleared)" : "") + ": " + join(vars, " ") + "\n";
  }
  if (!c.cwd.empty()) out += "  cwd: " + c.cwd + "\n";
  if (c.confined) out += "  confined\n";
  return out + renderStdin(c.stdinData);
}

std::string outcome(const Result<std::string>& r) {
  if (!r.ok()) return "= error " + std::string(errorCodeName(r.error().code)) + ": " + r.error().message + "\n";
  return r->empty() ? "= ok\n" : "= ok: " + *r + "\n";
}

// ---- canned answers

struct Reply {
  std::string expect;
  CommandResult result;
};

// {"expect": TEXT, "exit": N, "out": TEXT or JSON, "err": TEXT}
Reply replyFrom(const json& r) {
  Reply reply;
  reply.expect = r.value("expect", "");
  reply.result.exitCode = r.value("exit", 0);
  const json& out = r.contains("out") ? r["out"] : json("");
  reply.result.out = out.is_string() ? out.get<std::string>() : out.dump();
  reply.result.err = r.value("err", "");
  return reply;
}

// The case's "replies" in order, then its "default_reply" (lvm2 always prints JSON, say), or
// exit 0 and no output. A "comment" is for the reader.
class Replies {
 public:
  explicit Replies(const json& in) : fallback_(replyFrom(in.value("default_reply", json::object()))) {
    for (const auto& r : in.value("replies", json::array())) pending_.push_back(replyFrom(r));
  }

  Result<CommandResult> answer(const RecordedCommand& c) {
    std::string line = join(c.argv, " ");
    if (pending_.empty()) return fallback_.result;
    Reply next = pending_.front();
    if (line.find(next.expect) == std::string::npos) {
      ADD_FAILURE() << "unexpected command " << line << " (the next reply is for one with " << quote(next.expect) << ")";
      return internalError("unexpected command in a golden case: " + line);
    }
    pending_.pop_front();
    return next.result;
  }

  size_t unused() const { return pending_.size(); }

 private:
  Reply fallback_;
  std::deque<Reply> pending_;
};

// ---- inputs

Result<model::Network> networkOf(const json& in) { return model::parseNetwork(in.at("network")); }

Result<std::optional<model::Cidr>> subnetOf(const model::Network& n) {
  if (n.ipv4.empty()) return std::optional<model::Cidr>();
  VMM_ASSIGN(auto c, model::parseCidr(n.ipv4));
  return std::optional<model::Cidr>(c);
}

net::NetworkRuntime runtimeOf(const model::Network& n, const json& in) {
  net::NetworkRuntime rt;
  rt.network = n.name;
  rt.mode = n.mode;
  rt.bridge = net::effectiveBridgeName(n);
  rt.stateDir = in.value("state_dir", "/var/lib/vmm/networks/" + n.name);
  rt.nftTable = net::nft::tableNameFor(n.name);
  return rt;
}

// The first NIC of a domain definition, as the domain service hands it to applyPort.
Result<net::PortSpec> portOf(const json& in) {
  VMM_ASSIGN(auto def, model::parseDomain(in.at("domain")));
  if (def.nics.empty()) return invalidArgument("the case's domain has no NIC");
  const auto& nic = def.nics.front();
  return net::PortSpec{nic.ifname, nic.bridge, nic.mac, nic.port};
}

Result<storage::LogicalBackend> logicalPoolOf(const json& in) {
  VMM_ASSIGN(auto pool, model::parsePool(in.at("pool")));
  return storage::LogicalBackend(pool);
}

std::string describe(const model::Volume& v) {
  return "volume " + v.name + " capacity " + std::to_string(v.capacity) + " path " + v.path;
}

model::DiskFormat formatOf(const json& in, const char* key, model::DiskFormat fallback) {
  if (!in.contains(key)) return fallback;
  return model::enumFromName(model::kDiskFormats, in[key].get<std::string>()).value_or(fallback);
}

// ---- drivers: each runs one production function and says what came back

// `shown`: what the function makes that does not go through the runner, printed before the
// outcome.
using Driver = Result<std::string> (*)(const json& in, std::string& shown);

Result<std::string> networkBridge(const json& in, std::string&) {
  VMM_ASSIGN(auto n, networkOf(in));
  VMM_ASSIGN(auto subnet, subnetOf(n));
  VMM_TRY(net::createNetworkBridge(n, net::effectiveBridgeName(n), subnet, soon()));
  return std::string();
}

Result<std::string> networkTable(const json& in, std::string&) {
  VMM_ASSIGN(auto n, networkOf(in));
  VMM_TRY(net::restoreNetworkTable(n, runtimeOf(n, in), soon()));
  return std::string();
}

// A network whose bridge vmm did not create and that has no dnsmasq: only its table goes.
Result<std::string> networkStop(const json& in, std::string&) {
  VMM_ASSIGN(auto n, networkOf(in));
  VMM_TRY(net::stopNetwork(n, runtimeOf(n, in), soon()));
  return std::string();
}

Result<std::string> networkOwnedTables(const json&, std::string&) {
  VMM_ASSIGN(auto names, net::nft::listOwnedTables(soon()));
  return join(names, " ");
}

// dnsmasq is a long-lived child (spawnProcess, outside the runner): its argv is rendered as
// startNetwork would spawn it.
Result<std::string> networkDnsmasq(const json& in, std::string& shown) {
  VMM_ASSIGN(auto n, networkOf(in));
  VMM_ASSIGN(auto subnet, subnetOf(n));
  if (!subnet) return invalidArgument("a network without ipv4 has no dnsmasq");
  auto config = net::dnsmasqConfigFor(n, *subnet, runtimeOf(n, in), in.value("binary", "dnsmasq"));
  config.staticHosts = n.dhcpHosts;
  shown = "spawned (long-lived, not through the runner):\n" + commandLine(net::dnsmasqArgv(config));
  std::string hosts = net::dhcpHostsFileText(n.dhcpHosts);
  if (!hosts.empty()) shown += quotedLines("hosts file", hosts);
  return std::string();
}

Result<std::string> portTable(const json& in, std::string&) {
  VMM_ASSIGN(auto spec, portOf(in));
  VMM_ASSIGN(auto script, net::renderPortTable(spec));
  VMM_TRY(net::runNftScript(script, soon()));
  return std::string();
}

Result<std::string> portRemove(const json& in, std::string&) {
  VMM_ASSIGN(auto spec, portOf(in));
  VMM_TRY(net::removePort(spec, soon()));
  return std::string();
}

Result<std::string> portTc(const json& in, std::string&) {
  VMM_ASSIGN(auto spec, portOf(in));
  VMM_TRY(net::applyPortTc(spec, soon()));
  return std::string();
}

Result<std::string> portVlan(const json& in, std::string&) {
  VMM_ASSIGN(auto spec, portOf(in));
  auto method = in.value("vlan_method", "nft-port-sets") == "bridge-vlan-filtering" ? net::VlanMethod::bridgeVlanFiltering
                                                                                      : net::VlanMethod::nftPortSets;
  VMM_TRY(net::addPortVlan(method, spec, soon()));
  return std::string();
}

Result<std::string> portListTable(const json& in, std::string&) {
  VMM_ASSIGN(auto spec, portOf(in));
  VMM_ASSIGN(auto listing, net::listBridgeTable("vmm_port_" + spec.ifname, soon()));
  return listing ? std::to_string(listing->size()) + " items" : std::string("no table");
}

Result<std::string> lvmCreate(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  VMM_ASSIGN(auto spec, model::parseVolumeSpec(in.at("volume")));
  VMM_ASSIGN(auto v, pool.createVolume(spec, nullptr, soon()));
  return describe(v);
}

Result<std::string> lvmInfo(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  VMM_ASSIGN(auto v, pool.volumeInfo(in.at("name").get<std::string>(), soon()));
  return describe(v);
}

Result<std::string> lvmList(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  VMM_ASSIGN(auto vs, pool.listVolumes(soon()));
  std::vector<std::string> out;
  for (const auto& v : vs) out.push_back(v.name + "=" + std::to_string(v.capacity));
  return join(out, " ");
}

Result<std::string> lvmCapacity(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  VMM_ASSIGN(auto c, pool.capacity(soon()));
  return "capacity " + std::to_string(c.capacity) + " allocation " + std::to_string(c.allocation) + " available " +
         std::to_string(c.available);
}

Result<std::string> lvmResize(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  model::Volume v;
  v.name = in.at("name").get<std::string>();
  VMM_TRY(pool.resizeVolume(v, in.at("capacity").get<uint64_t>(), in.value("allow_shrink", false), soon()));
  return std::string();
}

Result<std::string> lvmDelete(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  VMM_TRY(pool.deleteVolume(in.at("name").get<std::string>(), soon()));
  return std::string();
}

Result<std::string> lvmResolve(const json& in, std::string&) {
  VMM_ASSIGN(auto pool, logicalPoolOf(in));
  model::Volume v;
  v.name = in.at("name").get<std::string>();
  VMM_ASSIGN(auto d, pool.resolve(v, soon()));
  return d.path + " offset " + std::to_string(d.offset) + " size " + std::to_string(d.size);
}

// With "sandbox_uid" qemu-img runs confined as that uid (the setting is process-wide; it is
// put back afterwards).
struct SandboxFor {
  explicit SandboxFor(const json& in) {
    if (in.contains("sandbox_uid")) storage::setQemuImgSandbox({in["sandbox_uid"].get<uint32_t>(), "/run/vmm/qemu-img-root"});
  }
  ~SandboxFor() { storage::setQemuImgSandbox({}); }
};

Result<std::string> qemuImgCreate(const json& in, std::string&) {
  SandboxFor sandbox(in);
  storage::CreateImage c;
  c.path = in.at("path").get<std::string>();
  c.format = formatOf(in, "format", model::DiskFormat::qcow2);
  c.size = in.value("size", uint64_t{0});
  c.backingFile = in.value("backing_file", "");
  c.backingFormat = formatOf(in, "backing_format", model::DiskFormat::qcow2);
  c.preallocate = in.value("preallocate", false);
  VMM_TRY(storage::createImage(c, soon()));
  return std::string();
}

Result<std::string> qemuImgResize(const json& in, std::string&) {
  SandboxFor sandbox(in);
  VMM_TRY(storage::resizeImage(in.at("path").get<std::string>(), formatOf(in, "format", model::DiskFormat::qcow2),
                               in.at("size").get<uint64_t>(), in.value("allow_shrink", false), soon()));
  return std::string();
}

Result<std::string> qemuImgInfo(const json& in, std::string&) {
  SandboxFor sandbox(in);
  VMM_ASSIGN(auto info, storage::imageInfo(in.at("path").get<std::string>(), soon(), in.value("shared", true)));
  return std::string(model::enumName(model::kDiskFormats, info.format)) + " virtual " + std::to_string(info.virtualSize) + " actual " +
         std::to_string(info.actualSize) + " backing " + (info.backingFile.empty() ? "none" : info.backingFile);
}

const std::map<std::string, Driver>& drivers() {
  static const std::map<std::string, Driver> all = {
      {"network.bridge", networkBridge},     {"network.table", networkTable},     {"network.stop", networkStop},
      {"network.owned-tables", networkOwnedTables}, {"network.dnsmasq", networkDnsmasq}, {"port.table", portTable},
      {"port.remove", portRemove},           {"port.tc", portTc},                 {"port.vlan", portVlan},
      {"port.list-table", portListTable},        {"lvm.create", lvmCreate},           {"lvm.info", lvmInfo},
      {"lvm.list", lvmList},                 {"lvm.capacity", lvmCapacity},       {"lvm.resize", lvmResize},
      {"lvm.delete", lvmDelete},             {"lvm.resolve", lvmResolve},         {"qemu-img.create", qemuImgCreate},
      {"qemu-img.resize", qemuImgResize},    {"qemu-img.info", qemuImgInfo},
  };
  return all;
}

// What a case produces: the recorded commands and the outcome.
std::string runCase(const json& in) {
  auto driver = drivers().find(in.value("driver", ""));
  if (driver == drivers().end()) {
    ADD_FAILURE() << "unknown driver " << quote(in.value("driver", ""));
    return "";
  }
  Replies replies(in);
  RecordingRunner recorder([&](const RecordedCommand& c) { return replies.answer(c); });
  Result<std::string> result = std::string();
  std::string shown;
  {
    ScopedCommandRunner scope(recorder);
    result = driver->second(in, shown);
  }
  EXPECT_EQ(replies.unused(), 0u) << "replies no command asked for";
  std::string out;
  for (const auto& c : recorder.commands()) out += render(c);
  return out + shown + outcome(result);
}

// Between cases nothing may run a command: it would be a real one.
class RefuseCommands final : public CommandRunner {
 public:
  Result<CommandResult> run(const std::vector<std::string>& argv, const RunOptions&) override {
    ADD_FAILURE() << "a command outside a golden case: " << join(argv, " ");
    return internalError("command_golden_test runs no commands: " + join(argv, " "));
  }
};

class NoCommandsEnvironment final : public ::testing::Environment {
 public:
  void SetUp() override { scope_.emplace(refuse_); }
  void TearDown() override { scope_.reset(); }

 private:
  RefuseCommands refuse_;
  std::optional<ScopedCommandRunner> scope_;
};

[[maybe_unused]] const auto* const kNoCommands = ::testing::AddGlobalTestEnvironment(new NoCommandsEnvironment);

class CommandGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CommandGolden, MatchesGoldenFile) {
  const std::string& name = GetParam();
  auto input = fs::readFile(kDir + "/" + name + ".json");
  ASSERT_TRUE(input.ok()) << input.error().message;
  std::string got = runCase(json::parse(*input));
  std::string path = kDir + "/" + name + ".txt";
  if (getenv("VMM_UPDATE_GOLDEN")) {
    ASSERT_TRUE(fs::writeFileAtomic(path, got).ok());
    return;
  }
  EXPECT_EQ(got, fs::readFile(path).valueOr("<missing " + path + ">"));
}

INSTANTIATE_TEST_SUITE_P(Cases, CommandGolden, ::testing::ValuesIn(testutil::goldenCases(kDir)),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string id;
                           for (char c : info.param) id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return id;
                         });

TEST(CommandGolden, EveryDriverHasACase) {
  std::set<std::string> used;
  for (const auto& name : testutil::goldenCases(kDir)) {
    auto input = fs::readFile(kDir + "/" + name + ".json");
    ASSERT_TRUE(input.ok());
    used.insert(json::parse(*input).value("driver", ""));
  }
  for (const auto& [driver, fn] : drivers()) EXPECT_TRUE(used.count(driver)) << "no case drives " << driver;
}

}  // namespace
