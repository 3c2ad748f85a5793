// Private files against a real vmmd (the security review's test plan item 8, findings H4, L5 and
// L6): vmmd runs with umask 077; the state directory is 0711, the database and lock 0600, the
// private state directories 0700 and volumes 0600, and what an older vmmd left readable is
// repaired at the next start. Save files are 0600 and never written or read through a symlink or
// in a directory another user could write; temporary names are reserved and a symlink planted at
// one is replaced, never written through.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/strings.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

// "0600" for a path's permission bits, or "missing".
std::string modeOf(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return "missing";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return buf;
}

std::string statusField(pid_t pid, const std::string& field) {
  auto text = fs::readFile("/proc/" + std::to_string(pid) + "/status");
  if (!text.ok()) return "";
  for (const auto& line : split(*text, '\n'))
    if (startsWith(line, field + ":")) return std::string(trim(line.substr(field.size() + 1)));
  return "";
}

class PrivateFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_NOT_APPLICABLE(::geteuid() != 0, "the modes and owner checks are those of a root vmmd");
    vmmd = std::make_unique<VmmdProcess>();
    startVmmd();
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << vmmd->log().substr(vmmd->log().size() > 6000 ? vmmd->log().size() - 6000 : 0) << "\n";
  }
  void startVmmd() {
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }
  std::string state() const { return vmmd->dir() + "/state"; }
  std::string pool() const { return state() + "/pools/default"; }
  Result<json> call(const std::string& method, const json& params) { return rpc->call(method, params); }
  Result<json> wait(const std::string& method, const json& params) {
    return rpc->callAndWait(method, params, Deadline::after(Millis(60000)));
  }
  void upload(const std::string& name, const std::string& data) {
    std::string file = vmmd->dir() + "/up-" + name;
    ASSERT_TRUE(fs::writeFileAtomic(file, data).ok());
    fs::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    auto r = rpc->uploadVolume("default", name, fd.get(), data.size(), nullptr);
    ASSERT_TRUE(r.ok()) << r.error().message;
    (void)fs::removeFile(file);
  }
  void runningDomain(const std::string& name) {
    json def = {{"name", name}, {"type", "test"}, {"vcpus", 1}, {"memory", "64MiB"}};
    ASSERT_TRUE(call("domain.create", {{"definition", def}}).ok());
    auto st = wait("domain.start", {{"name", name}});
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  std::string domainState(const std::string& name) {
    auto r = call("domain.get", {{"name", name}});
    return r.ok() ? r->value("state", "") : "error: " + r.error().message;
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
};

}  // namespace

TEST_F(PrivateFiles, ModesAfterFirstStart) {
  EXPECT_EQ(statusField(vmmd->pid(), "Umask"), "0077");
  for (const auto& [name, format] : std::vector<std::pair<std::string, std::string>>{{"q", "qcow2"}, {"r", "raw"}})
    ASSERT_TRUE(call("volume.create", {{"pool", "default"}, {"volume", {{"name", name}, {"capacity", "1M"}, {"format", format}}}}).ok());
  auto linked = wait("volume.clone", {{"pool", "default"}, {"name", "q"}, {"target", "q-linked"}});
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  auto full = wait("volume.clone", {{"pool", "default"}, {"name", "r"}, {"target", "r-full"}, {"linked", false}});
  ASSERT_TRUE(full.ok()) << full.error().message;
  ASSERT_TRUE(call("volume.create", {{"pool", "default"}, {"volume", {{"name", "up"}, {"capacity", "4096"}, {"format", "raw"}}}}).ok());
  upload("up", std::string(4096, 'u'));
  ASSERT_TRUE(call("volume.create", {{"pool", "default"}, {"volume", {{"name", "tree"}, {"format", "dir"}}}}).ok());
  runningDomain("m");
  auto saved = wait("domain.save", {{"name", "m"}});  // managed: makes save/
  ASSERT_TRUE(saved.ok()) << saved.error().message;

  EXPECT_EQ(modeOf(state()), "0711");
  EXPECT_EQ(modeOf(state() + "/pools"), "0711");
  EXPECT_EQ(modeOf(pool()), "0700");
  EXPECT_EQ(modeOf(state() + "/vmm.db"), "0600");
  for (const char* side : {"-wal", "-shm"}) {
    if (fs::exists(state() + "/vmm.db" + side)) {
      EXPECT_EQ(modeOf(state() + "/vmm.db" + side), "0600") << side;
    }
  }
  EXPECT_EQ(modeOf(state() + "/vmmd.lock"), "0600");
  EXPECT_EQ(modeOf(state() + "/operations"), "0700");
  EXPECT_EQ(modeOf(state() + "/save"), "0700");
  EXPECT_EQ(modeOf(state() + "/save/m.save"), "0600");
  for (const char* v : {"q", "r", "q-linked", "r-full", "up"}) EXPECT_EQ(modeOf(pool() + "/" + v), "0600") << v;
  EXPECT_EQ(modeOf(pool() + "/tree"), "0755");  // a container's "/", out of reach behind the pool's 0700
  EXPECT_EQ(modeOf(vmmd->socketPath()), "0600");  // no socket group given: root only
  EXPECT_EQ(modeOf(vmmd->roSocketPath()), "0660");  // root only unless [rpc] ro_group opens it

  // What a vmmd with umask 022 left behind is made private at the next start.
  ASSERT_TRUE(vmmd->stop().ok());
  ASSERT_EQ(::chmod(state().c_str(), 0755), 0);
  for (const char* f : {"/vmm.db", "/vmmd.lock"}) ASSERT_EQ(::chmod((state() + f).c_str(), 0644), 0);
  ASSERT_EQ(::chmod((state() + "/save").c_str(), 0755), 0);
  ASSERT_EQ(::chmod((pool() + "/r").c_str(), 0644), 0);
  ASSERT_TRUE(fs::writeFileAtomic(pool() + "/planted.img", "old", 0644).ok());
  startVmmd();
  EXPECT_EQ(modeOf(state()), "0711");
  EXPECT_EQ(modeOf(state() + "/vmm.db"), "0600");
  EXPECT_EQ(modeOf(state() + "/vmmd.lock"), "0600");
  EXPECT_EQ(modeOf(state() + "/save"), "0700");
  EXPECT_EQ(modeOf(pool() + "/r"), "0600");
  EXPECT_EQ(modeOf(pool() + "/planted.img"), "0600");
  EXPECT_NE(vmmd->log().find("corrected the mode of a state file"), std::string::npos);

  // A pool restart repairs a file put there while vmmd ran, closes a pool directory that older
  // versions made 0711 and opens the 0700 top they gave a container's tree there.
  ASSERT_TRUE(fs::writeFileAtomic(pool() + "/late.img", "old", 0644).ok());
  ASSERT_EQ(::chmod(pool().c_str(), 0711), 0);
  ASSERT_EQ(::chmod((pool() + "/tree").c_str(), 0700), 0);
  ASSERT_TRUE(call("pool.stop", {{"name", "default"}}).ok());
  ASSERT_TRUE(call("pool.start", {{"name", "default"}}).ok());
  EXPECT_EQ(modeOf(pool() + "/late.img"), "0600");
  EXPECT_EQ(modeOf(pool()), "0700");
  EXPECT_EQ(modeOf(pool() + "/tree"), "0755");
}

TEST_F(PrivateFiles, SaveAndRestoreRefuseSymlinksAndOpenDirectories) {
  std::string dir = vmmd->dir() + "/saves";
  ASSERT_TRUE(fs::makeDirs(dir, 0700).ok());
  std::string victim = vmmd->dir() + "/victim";
  ASSERT_TRUE(fs::writeFileAtomic(victim, "precious", 0644).ok());
  runningDomain("s");

  // A symlink at the state file or at its temporary name.
  ASSERT_EQ(::symlink(victim.c_str(), (dir + "/a.partial").c_str()), 0);
  auto r = wait("domain.save", {{"name", "s"}, {"path", dir + "/a"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::permission_denied) << r.error().message;
  ASSERT_EQ(::symlink(victim.c_str(), (dir + "/b").c_str()), 0);
  r = wait("domain.save", {{"name", "s"}, {"path", dir + "/b"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::permission_denied) << r.error().message;
  // A directory others may write to, or that another user owns.
  std::string open = vmmd->dir() + "/open";
  ASSERT_TRUE(fs::makeDirs(open, 0777).ok());
  r = wait("domain.save", {{"name", "s"}, {"path", open + "/c"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("writable by group or others"), std::string::npos) << r.error().message;
  std::string foreign = vmmd->dir() + "/foreign";
  ASSERT_TRUE(fs::makeDirs(foreign, 0755).ok());
  ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
  r = wait("domain.save", {{"name", "s"}, {"path", foreign + "/c"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not root"), std::string::npos) << r.error().message;
  EXPECT_EQ(fs::readFile(victim).valueOr(""), "precious");
  EXPECT_EQ(domainState("s"), "running");

  // A good save is 0600.
  r = wait("domain.save", {{"name", "s"}, {"path", dir + "/good"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(modeOf(dir + "/good"), "0600");
  EXPECT_FALSE(fs::exists(dir + "/good.partial"));

  // Restore: never through a symlink, nor a file or directory another user could have planted.
  ASSERT_EQ(::symlink((dir + "/good").c_str(), (dir + "/link").c_str()), 0);
  r = wait("domain.restore", {{"name", "s"}, {"path", dir + "/link"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("symbolic link"), std::string::npos) << r.error().message;
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/theirs", fs::readFile(dir + "/good").valueOr(""), 0600).ok());
  ASSERT_EQ(::chown((dir + "/theirs").c_str(), 65534, 65534), 0);
  r = wait("domain.restore", {{"name", "s"}, {"path", dir + "/theirs"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not root"), std::string::npos) << r.error().message;
  ASSERT_TRUE(fs::writeFileAtomic(open + "/copy", fs::readFile(dir + "/good").valueOr(""), 0600).ok());
  r = wait("domain.restore", {{"name", "s"}, {"path", open + "/copy"}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("writable by group or others"), std::string::npos) << r.error().message;
  EXPECT_EQ(domainState("s"), "shutoff");
  r = wait("domain.restore", {{"name", "s"}, {"path", dir + "/good"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(domainState("s"), "running");
}

TEST_F(PrivateFiles, TemporaryNamesAreReservedAndNeverWrittenThrough) {
  for (const char* bad : {"x.revert-old", "x.err", "x.upload.partial"}) {
    auto r = call("volume.create", {{"pool", "default"}, {"volume", {{"name", bad}, {"capacity", "1M"}}}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << bad << ": " << r.error().message;
  }
  std::string victim = vmmd->dir() + "/victim";
  ASSERT_TRUE(fs::writeFileAtomic(victim, "precious", 0644).ok());

  // An upload's temporary file.
  ASSERT_TRUE(call("volume.create", {{"pool", "default"}, {"volume", {{"name", "x"}, {"capacity", "4096"}, {"format", "raw"}}}}).ok());
  ASSERT_EQ(::symlink(victim.c_str(), (pool() + "/x.upload.partial").c_str()), 0);
  upload("x", std::string(4096, 'x'));
  EXPECT_EQ(fs::readFile(victim).valueOr(""), "precious");
  EXPECT_EQ(fs::readFile(pool() + "/x").valueOr(""), std::string(4096, 'x'));
  EXPECT_FALSE(fs::exists(pool() + "/x.upload.partial"));
  EXPECT_EQ(modeOf(pool() + "/x"), "0600");

  // A full copy's target and qemu-img's captured stderr.
  ASSERT_EQ(::symlink(victim.c_str(), (pool() + "/y.partial").c_str()), 0);
  std::string victim2 = vmmd->dir() + "/victim2";
  ASSERT_TRUE(fs::writeFileAtomic(victim2, "precious too", 0644).ok());
  ASSERT_EQ(::symlink(victim2.c_str(), (pool() + "/y.partial.err").c_str()), 0);
  auto full = wait("volume.clone", {{"pool", "default"}, {"name", "x"}, {"target", "y"}, {"linked", false}});
  EXPECT_EQ(fs::readFile(victim).valueOr(""), "precious");
  EXPECT_EQ(fs::readFile(victim2).valueOr(""), "precious too");
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_EQ(fs::readFile(pool() + "/y").valueOr(""), std::string(4096, 'x'));
  EXPECT_FALSE(fs::exists(pool() + "/y.partial.err"));
  EXPECT_EQ(modeOf(victim), "0644");
}
