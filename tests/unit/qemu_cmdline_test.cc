// Golden files: each tests/data/qemu-argv/NAME.json (a domain definition plus what the
// driver resolved for it) must produce exactly NAME.args (one argument per line), or fail
// with exactly the message in NAME.error. VMM_UPDATE_GOLDEN=1 rewrites the expectations.
#include <gtest/gtest.h>

#include "tests/unit/test_util.h"

#include <algorithm>

#include "base/fs.h"
#include "base/strings.h"
#include "drivers/qemu/command_line.h"

using namespace vmm;
using namespace vmm::drivers;
using nlohmann::json;

namespace {

const std::string kDir = VMM_SOURCE_DIR "/tests/data/qemu-argv";

std::vector<std::string> cases() { return testutil::goldenCases(kDir); }

Result<std::string> render(const json& in) {
  auto def = model::parseDomain(in["domain"]);
  if (!def.ok()) return def.error();
  qemu::LaunchSpec spec;
  spec.def = &*def;
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

}  // namespace

TEST(QemuCommandLine, GoldenFiles) {
  auto all = cases();
  ASSERT_GE(all.size(), 15u) << "golden cases in " << kDir;
  bool update = getenv("VMM_UPDATE_GOLDEN") != nullptr;
  for (const auto& name : all) {
    SCOPED_TRACE(name);
    auto input = fs::readFile(kDir + "/" + name + ".json");
    ASSERT_TRUE(input.ok());
    auto got = render(json::parse(*input));
    std::string argsPath = kDir + "/" + name + ".args", errorPath = kDir + "/" + name + ".error";
    if (update) {
      if (got.ok()) ASSERT_TRUE(fs::writeFileAtomic(argsPath, *got).ok());
      else ASSERT_TRUE(fs::writeFileAtomic(errorPath, got.error().message + "\n").ok());
      continue;
    }
    if (fs::exists(errorPath)) {
      ASSERT_FALSE(got.ok()) << "expected an error, got:\n" << *got;
      EXPECT_EQ(got.error().message + "\n", *fs::readFile(errorPath));
    } else {
      ASSERT_TRUE(got.ok()) << got.error().message;
      EXPECT_EQ(*got, fs::readFile(argsPath).valueOr("<missing " + argsPath + ">"));
    }
  }
}
