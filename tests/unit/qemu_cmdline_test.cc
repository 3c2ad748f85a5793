// Golden files: each tests/data/qemu-argv/NAME.json (a domain definition plus what the driver
// resolved for it) is rendered against each QEMU capability set it names ("caps"; by default
// only "qemu-7.2", Debian 12's QEMU; the sets are tests/data/qemu-caps/SET.json) and must
// produce exactly the expected argv (one argument per line) or fail with exactly the expected
// message. Under qemu-7.2 that is NAME.args or NAME.error (what unit.qemu_argv_launch_test gives
// the real QEMU); under another set NAME.SET.args or NAME.SET.error where its output differs,
// else the same. Every (case, set) pair is a test of its own, e.g.
//   --gtest_filter='Goldens/QemuArgvGolden.Matches/05_microvm_virtio_on_qemu_8_2'
// VMM_UPDATE_GOLDEN=1 rewrites the expectations of the pairs that run.
#include <gtest/gtest.h>

#include "tests/unit/test_util.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <ostream>
#include <set>

#include "base/fs.h"
#include "base/strings.h"
#include "drivers/qemu/command_line.h"
#include "drivers/qemu/qemu_caps.h"

using namespace vmm;
using namespace vmm::drivers;
using nlohmann::json;

namespace {

const std::string kDir = VMM_SOURCE_DIR "/tests/data/qemu-argv";
const std::string kCapsDir = VMM_SOURCE_DIR "/tests/data/qemu-caps";
const std::string kDefaultCaps = "qemu-7.2";  // this host's QEMU (Debian 12): the one launched

json readJson(const std::string& path) {
  auto text = fs::readFile(path);
  return text.ok() ? json::parse(*text, nullptr, false) : json();
}

Result<qemu::QemuCaps> loadCaps(const std::string& set) {
  json j = readJson(kCapsDir + "/" + set + ".json");
  if (!j.is_object()) return notFound("no capability set " + kCapsDir + "/" + set + ".json");
  qemu::QemuCaps caps;
  caps.version = j.value("version", "");
  json machines = j.value("machines", json::array()), aliases = j.value("aliases", json::object());
  for (const auto& m : machines) caps.machines.insert(m.get<std::string>());
  for (const auto& [alias, machine] : aliases.items()) caps.aliases[alias] = machine.get<std::string>();
  return caps;
}

// The capability sets a case is rendered against.
std::vector<std::string> capsOf(const std::string& name) {
  json in = readJson(kDir + "/" + name + ".json");
  if (!in.is_object() || !in.contains("caps")) return {kDefaultCaps};
  std::vector<std::string> sets;
  for (const auto& set : in["caps"]) sets.push_back(set.is_string() ? set.get<std::string>() : "(not a name: " + set.dump() + ")");
  return sets;
}

struct GoldenRun {
  std::string name;  // NN-name
  std::string caps;  // capability set
};

void PrintTo(const GoldenRun& r, std::ostream* os) { *os << r.name << " on " << r.caps; }

std::vector<GoldenRun> goldenRuns() {
  std::vector<GoldenRun> out;
  for (const auto& name : testutil::goldenCases(kDir))
    for (const auto& caps : capsOf(name)) out.push_back({name, caps});
  return out;
}

// NAME.args / NAME.error under the default set; NAME.SET.* under another.
std::string expectationBase(const GoldenRun& r) {
  return kDir + "/" + r.name + (r.caps == kDefaultCaps ? "" : "." + r.caps);
}

Result<std::string> render(const json& in, const qemu::QemuCaps& caps) {
  auto def = model::parseDomain(in["domain"]);
  if (!def.ok()) return def.error();
  qemu::LaunchSpec spec;
  spec.def = &*def;
  spec.caps = caps;
  spec.accel = in.value("accel", "tcg");
  spec.sparePorts = in.value("spare_ports", 4);
  spec.incoming = in.value("incoming", false);
  spec.runDir = in.value("run_dir", "/run/vmm/qemu/" + def->name);
  auto fds = in.value("fds", json{{"qmp", 3}, {"agent", 4}, {"console", 5}});
  spec.qmpFd = fds.value("qmp", -1);
  spec.agentFd = fds.value("agent", -1);
  spec.consoleFd = fds.value("console", -1);
  for (size_t i = 0; i < def->disks.size(); ++i) {
    json r = in.contains("disks") && i < in["disks"].size() ? in["disks"][i] : json::object();
    ResolvedDisk rd;
    rd.path = r.value("path", def->disks[i].source.path);
    rd.protocol = r.value("protocol", "");
    rd.blockdev = r.value("blockdev", json::object());
    rd.offset = r.value("offset", uint64_t{0});
    rd.size = r.value("size", uint64_t{0});
    rd.blockDevice = r.value("block_device", false);
    rd.format = def->disks[i].format.value_or(model::defaultDiskFormat(def->disks[i]));
    if (r.contains("format")) rd.format = *model::enumFromName(model::kDiskFormats, r["format"].get<std::string>());
    // A volume's chain as its pool recorded it: the layers below, backing first.
    if (r.contains("backing")) {
      rd.chainPinned = true;
      for (const auto& layer : r["backing"]) {
        ResolvedDisk l;
        l.path = layer.value("path", "");
        l.format = *model::enumFromName(model::kDiskFormats, layer.value("format", "raw"));
        rd.backing.push_back(l);
      }
    }
    spec.disks.push_back(rd);
  }
  int nextFd = 6;
  for (size_t i = 0; i < def->nics.size(); ++i) {
    qemu::NicBackend b;
    b.kind = def->nics[i].type == model::NicType::user ? "user" : "tap";
    if (b.kind == "tap") b.fd = nextFd++;
    spec.nics.push_back(b);
  }
  // Images handed over as descriptors (disk paths "/dev/fdset/N") and boot files QEMU reads
  // from vmmd's descriptors.
  for (const auto& f : in.value("fd_sets", json::array()))
    spec.fdSets.push_back({f.value("fd", -1), f.value("set", 0), f.value("path", "")});
  spec.kernel = in.value("kernel", "");
  spec.initrd = in.value("initrd", "");
  if (in.contains("secrets"))
    for (auto it = in["secrets"].begin(); it != in["secrets"].end(); ++it) spec.secretFiles[it.key()] = it.value();
  auto cl = qemu::buildCommandLine(spec);
  if (!cl.ok()) return cl.error();
  return join(cl->argv, "\n") + "\n";
}

// The expected output of a run, "error: MESSAGE" for a refusal: its own files, else the
// default set's.
std::optional<std::string> expected(const GoldenRun& r) {
  for (const std::string& base : {expectationBase(r), kDir + "/" + r.name}) {
    if (auto args = fs::readFile(base + ".args"); args.ok()) return *args;
    if (auto error = fs::readFile(base + ".error"); error.ok()) return "error: " + *error;
  }
  return std::nullopt;
}

std::string outputOf(const Result<std::string>& got) { return got.ok() ? *got : "error: " + got.error().message + "\n"; }

class QemuArgvGolden : public ::testing::TestWithParam<GoldenRun> {};

TEST_P(QemuArgvGolden, Matches) {
  const GoldenRun& run = GetParam();
  json input = readJson(kDir + "/" + run.name + ".json");
  ASSERT_TRUE(input.is_object()) << run.name << ".json is not a JSON object";
  auto caps = loadCaps(run.caps);
  ASSERT_TRUE(caps.ok()) << caps.error().message;
  auto got = render(input, *caps);
  std::string base = expectationBase(run);

  if (getenv("VMM_UPDATE_GOLDEN")) {
    (void)fs::removeFile(base + ".args");
    (void)fs::removeFile(base + ".error");
    // Another set's files only where its output differs from the default set's.
    if (run.caps != kDefaultCaps && expected(run) == outputOf(got)) return;
    if (got.ok()) ASSERT_TRUE(fs::writeFileAtomic(base + ".args", *got).ok());
    else ASSERT_TRUE(fs::writeFileAtomic(base + ".error", got.error().message + "\n").ok());
    return;
  }
  auto want = expected(run);
  ASSERT_TRUE(want.has_value()) << "no " << base << ".args or .error (VMM_UPDATE_GOLDEN=1 writes it)";
  if (startsWith(*want, "error: ")) {
    ASSERT_FALSE(got.ok()) << "expected " << *want << "got:\n" << *got;
    EXPECT_EQ("error: " + got.error().message + "\n", *want);
  } else {
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(*got, *want);
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, QemuArgvGolden, ::testing::ValuesIn(goldenRuns()), [](const auto& info) {
  std::string n = info.param.name + "_on_" + info.param.caps;
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

TEST(QemuArgvGoldens, CasesAndSetsExist) {
  auto runs = goldenRuns();
  EXPECT_GE(testutil::goldenCases(kDir).size(), 15u) << "golden cases in " << kDir;
  std::set<std::string> sets;
  for (const auto& r : runs) sets.insert(r.caps);
  EXPECT_GE(sets.size(), 2u) << "capability sets the cases use";
  for (const auto& set : sets) EXPECT_TRUE(loadCaps(set).ok()) << set;
}

// Every NAME.args / NAME.error and NAME.SET.* belongs to a case run under that set.
TEST(QemuArgvGoldens, NoStrayExpectations) {
  std::set<std::string> owned;
  for (const auto& r : goldenRuns())
    for (const char* ext : {".args", ".error"}) owned.insert(expectationBase(r) + ext);
  auto files = fs::listDir(kDir);
  ASSERT_TRUE(files.ok());
  for (const auto& f : *files) {
    if (!endsWith(f, ".args") && !endsWith(f, ".error")) continue;
    EXPECT_TRUE(owned.count(kDir + "/" + f)) << f << " belongs to no (case, capability set)";
  }
}

// The Debian 12 set is what the driver's parser makes of that QEMU's own output.
TEST(QemuCapsData, Debian12SetIsParsedFromItsQemuOutput) {
  auto version = fs::readFile(kCapsDir + "/qemu-7.2.version.txt");
  auto help = fs::readFile(kCapsDir + "/qemu-7.2.machine-help.txt");
  ASSERT_TRUE(version.ok() && help.ok());
  auto parsed = qemu::parseQemuCaps(*version, *help);
  auto stored = loadCaps("qemu-7.2");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(parsed.version, stored->version);
  EXPECT_EQ(parsed.machines, stored->machines);
  EXPECT_EQ(parsed.aliases, stored->aliases);
  EXPECT_EQ(parsed.aliases["q35"], "pc-q35-7.2");
}

}  // namespace

// A binary that lists no machine of the family (QEMU can be built without microvm) says so.
TEST(QemuCaps, AFamilyTheBinaryDoesNotListIsRefusedByName) {
  auto caps = loadCaps(kDefaultCaps);
  ASSERT_TRUE(caps.ok());
  caps->machines.erase("microvm");
  Status r = qemu::checkMachineOffered(*caps, "microvm", "microvm");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "machine: \"microvm\" is not offered by this QEMU 7.2.22 (it has no microvm machine)");
  EXPECT_TRUE(qemu::checkMachineOffered(*caps, "q35", "q35").ok());
  EXPECT_TRUE(qemu::checkMachineOffered(qemu::QemuCaps{}, "microvm", "microvm").ok()) << "nothing probed: nothing refused";
}
