#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "base/byte_relay.h"
#include "base/command_runner.h"
#include "base/event_loop.h"
#include "base/fs.h"
#include "base/loop_window.h"
#include "base/private_root.h"
#include "base/process.h"
#include "base/random.h"
#include "base/recording_runner.h"
#include "base/reverter.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "base/thread_pool.h"
#include "base/time_util.h"
#include "base/toml_lite.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"

using namespace vmm;

TEST(Toml, ParsesSubset) {
  auto j = parseTomlLite(R"(
# comment
state_dir = "/var/lib/vmm"   # trailing
[http]
listen = '127.0.0.1:8470'
enabled = true
max_body = 4_194_304
[drivers.qemu]
binary = "qemu-system-x86_64"
args = ["a", "b",]
)");
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ((*j)["state_dir"], "/var/lib/vmm");
  EXPECT_EQ((*j)["http"]["listen"], "127.0.0.1:8470");
  EXPECT_EQ((*j)["http"]["max_body"], 4194304);
  EXPECT_EQ((*j)["drivers"]["qemu"]["args"][1], "b");
  EXPECT_EQ(parseTomlLite("a = b").error().message, "line 1: cannot parse value \"b\" (strings need quotes)");
  EXPECT_EQ(parseTomlLite("a = 1\na = 2").error().message, "line 2: duplicate key \"a\"");
  EXPECT_FALSE(parseTomlLite("[x").ok());
  EXPECT_FALSE(parseTomlLite("a = \"x").ok());
}

TEST(Time, Durations) {
  EXPECT_EQ(parseDuration("30s")->count(), 30000);
  EXPECT_EQ(parseDuration("5m")->count(), 300000);
  EXPECT_EQ(parseDuration("250ms")->count(), 250);
  EXPECT_EQ(parseDuration("2")->count(), 2000);
  EXPECT_FALSE(parseDuration("soon"));
  EXPECT_FALSE(parseDuration("-1s"));
  EXPECT_EQ(formatDuration(Millis(90000)), "90s");
  auto ts = wallNowMicros() / 1000 * 1000;
  EXPECT_EQ(*parseTimestamp(formatTimestamp(ts)), ts);
}

TEST(Random, Uuid) {
  auto u = newUuid();
  EXPECT_TRUE(isUuid(u));
  EXPECT_NE(u, newUuid());
  EXPECT_EQ(u[14], '4');
  EXPECT_FALSE(isUuid("not-a-uuid"));
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // In pieces, the same digest; reading it does not end the hash.
  Sha256 h;
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(h.hexDigest(), sha256Hex("abc"));
  h.update("d", 1);
  EXPECT_EQ(h.hexDigest(), sha256Hex("abcd"));
  EXPECT_EQ(Sha256().hexDigest(), sha256Hex(""));
}

TEST(Reverter, UndoesInReverseUnlessSuccess) {
  std::vector<int> undone;
  {
    Reverter r;
    r.add([&] { undone.push_back(1); });
    r.add([&] { undone.push_back(2); });
  }
  EXPECT_EQ(undone, (std::vector<int>{2, 1}));
  undone.clear();
  {
    Reverter r;
    r.add([&] { undone.push_back(1); });
    r.success();
  }
  EXPECT_TRUE(undone.empty());
}

TEST(Process, RunCapturesOutputAndStatus) {
  auto r = runCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exitCode, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  RunOptions o;
  o.stdinData = std::string(200000, 'x');
  auto c = runCommand({"wc", "-c"}, o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::stoi(c->out), 200000);
}

TEST(Process, DeadlineKillsChild) {
  RunOptions o;
  o.deadline = Deadline::after(Millis(200));
  auto t0 = SteadyClock::now();
  auto r = runCommand({"sleep", "10"}, o);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout);
  EXPECT_LT(SteadyClock::now() - t0, std::chrono::seconds(3));
}

TEST(Process, MissingCommand) {
  auto r = runCommand({"/nonexistent/cmd"});
  EXPECT_FALSE(r.ok());
}

// A recorder in scope answers every runCommand and runChecked (here a command that does not
// exist, which would otherwise fail to start); the real runner is back when the scope ends.
TEST(Process, RecordingRunnerAnswersInsteadOfTheSystem) {
  RecordingRunner recorder([](const RecordedCommand& c) -> Result<CommandResult> {
    CommandResult r;
    r.exitCode = c.argv.back() == "fail" ? 4 : 0;
    r.out = "recorded " + c.stdinData;
    return r;
  });
  {
    ScopedCommandRunner scope(recorder);
    EXPECT_EQ(&commandRunner(), &recorder);
    auto ran = runCommand({"/nonexistent/tool", "list"}, Deadline::after(Millis(1000)), "input");
    ASSERT_TRUE(ran.ok()) << ran.error().message;
    EXPECT_EQ(ran->out, "recorded input");
    RunOptions o;
    o.env["LC_ALL"] = "C";
    auto failed = runChecked({"/nonexistent/tool", "fail"}, o);
    ASSERT_FALSE(failed.ok());
    EXPECT_NE(failed.error().message.find("exit status 4"), std::string::npos) << failed.error().message;
  }
  EXPECT_EQ(&commandRunner(), &systemCommandRunner());
  auto commands = recorder.commands();
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0].argv, (std::vector<std::string>{"/nonexistent/tool", "list"}));
  EXPECT_EQ(commands[0].stdinData, "input");
  EXPECT_EQ(commands[1].env.at("LC_ALL"), "C");
  EXPECT_FALSE(commands[1].confined);
}

TEST(Process, NestedCommandRunnerScopesRestoreTheOuterOne) {
  RecordingRunner outer, inner;
  {
    ScopedCommandRunner a(outer);
    {
      ScopedCommandRunner b(inner);
      EXPECT_TRUE(runCommand({"true"}).ok());
    }
    EXPECT_TRUE(runCommand({"false"}).ok());
  }
  ASSERT_EQ(inner.commands().size(), 1u);
  EXPECT_EQ(inner.commands()[0].argv[0], "true");
  ASSERT_EQ(outer.commands().size(), 1u);
  EXPECT_EQ(outer.commands()[0].argv[0], "false");
}

// Several threads record through one recorder: every command is kept.
TEST(Process, RecordingRunnerIsThreadSafe) {
  RecordingRunner recorder;
  ScopedCommandRunner scope(recorder);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 50; ++i) (void)runCommand({"echo", std::to_string(t), std::to_string(i)});
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(recorder.commands().size(), 200u);
}

static std::string procLine(const std::string& text, const std::string& prefix) {
  for (const auto& line : split(text, '\n'))
    if (startsWith(line, prefix)) return line;
  return "(no " + prefix + " line)";
}

// A confined child (qemu-img on an untrusted image, a customisation helper): as /proc shows it
// from inside, its own uid and gid, no supplementary groups, no capabilities, no new
// privileges, its limits and a network namespace with nothing but a loopback.
TEST(Process, ConfinedChildHasItsUidNoCapabilitiesAndItsLimits) {
  VMM_REQUIRE(::geteuid() == 0, "root (to start a child as another uid)");
  RunOptions o;
  o.confinement.uid = 65534;
  o.confinement.gid = 65534;
  o.confinement.noNewPrivileges = true;
  o.confinement.newNetworkNamespace = true;
  o.confinement.limits = {{RLIMIT_AS, uint64_t{1} << 30}, {RLIMIT_CPU, 7}, {RLIMIT_NOFILE, 64}};
  auto r = runCommand({"sh", "-c", "cat /proc/self/status /proc/self/limits; readlink /proc/self/ns/net; cat /proc/net/dev"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->exitCode, 0) << r->describe();
  EXPECT_EQ(procLine(r->out, "Uid:"), "Uid:\t65534\t65534\t65534\t65534");
  EXPECT_EQ(procLine(r->out, "Gid:"), "Gid:\t65534\t65534\t65534\t65534");
  EXPECT_EQ(std::string(trim(procLine(r->out, "Groups:"))), "Groups:");
  for (const char* set : {"CapInh:", "CapPrm:", "CapEff:", "CapAmb:"})
    EXPECT_EQ(procLine(r->out, set), std::string(set) + "\t0000000000000000");
  EXPECT_EQ(procLine(r->out, "NoNewPrivs:"), "NoNewPrivs:\t1");
  auto limit = [&](const std::string& name) { return split(procLine(r->out, name), ' ', true); };
  EXPECT_EQ(limit("Max address space"), (std::vector<std::string>{"Max", "address", "space", "1073741824", "1073741824", "bytes"}));
  EXPECT_EQ(limit("Max cpu time"), (std::vector<std::string>{"Max", "cpu", "time", "7", "7", "seconds"}));
  EXPECT_EQ(limit("Max open files"), (std::vector<std::string>{"Max", "open", "files", "64", "64", "files"}));
  char ownNet[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/net", ownNet, sizeof ownNet - 1), 0);
  EXPECT_EQ(r->out.find(ownNet), std::string::npos) << "the child shares vmmd's network namespace";
  size_t interfaces = 0;
  for (const auto& line : split(r->out.substr(r->out.find("Inter-|")), '\n', true))
    if (line.find(':') != std::string::npos && line.find('|') == std::string::npos) ++interfaces;
  EXPECT_EQ(interfaces, 1u) << "only lo:\n" << r->out;
  EXPECT_NE(r->out.find(" lo:"), std::string::npos) << r->out;

  // What that means: a root-only file is out of reach, and so is any setuid way back.
  auto shadow = runCommand({"cat", "/etc/shadow"}, o);
  ASSERT_TRUE(shadow.ok()) << shadow.error().message;
  EXPECT_NE(shadow->exitCode, 0);
  EXPECT_NE(shadow->err.find("Permission denied"), std::string::npos) << shadow->err;
  // Unconfined children stay root (vmmd's own tools).
  auto root = runCommand({"id", "-u"});
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->out, "0\n");
}

TEST(Process, SpawnedChildIsConfinedToo) {
  VMM_REQUIRE(::geteuid() == 0, "root (to start a child as another uid)");
  SpawnOptions o;
  o.confinement.uid = 65534;
  o.confinement.gid = 65534;
  o.confinement.groups = {65533, 100};  // as QEMU gets kvm's
  auto pid = spawnProcess({"sleep", "30"}, o);
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  auto status = fs::readFile("/proc/" + std::to_string(*pid) + "/status");
  ::kill(*pid, SIGKILL);
  (void)ChildReaper::wait(*pid, Deadline::after(Millis(5000)));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(procLine(*status, "Uid:"), "Uid:\t65534\t65534\t65534\t65534");
  EXPECT_EQ(procLine(*status, "CapEff:"), "CapEff:\t0000000000000000");
  EXPECT_EQ(std::string(trim(procLine(*status, "Groups:"))), "Groups:\t100 65533");
}

// A private root: the child sees only what it was given (read-only unless writable), its own
// /proc and working directory, as a uid that cannot change any of it; the host's mounts are
// untouched.
TEST(Process, PrivateRootShowsOnlyWhatItWasGiven) {
  VMM_REQUIRE(::geteuid() == 0, "root (mount namespaces)");
  char tmpl[] = "/tmp/vmm-root-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  Reverter removeDir;
  removeDir.add([&] { (void)runCommand({"rm", "-rf", dir}); });
  ASSERT_TRUE(fs::makeDirs(dir + "/mnt", 0700).ok());
  ASSERT_TRUE(fs::makeDirs(dir + "/work", 0700).ok());
  ASSERT_EQ(::chown((dir + "/work").c_str(), 65534, 65534), 0);

  RunOptions o;
  o.confinement.uid = 65534;
  o.confinement.gid = 65534;
  PrivateRoot root;
  root.mountPoint = dir + "/mnt";
  for (const char* p : {"/usr", "/bin", "/sbin", "/lib", "/lib64"}) addHostPath(root, p);
  root.binds.push_back({"/etc/ld.so.cache", "/etc/ld.so.cache", false});
  root.binds.push_back({"/dev/null", "/dev/null", true});
  root.binds.push_back({dir + "/work", "/work", true});
  root.cwd = "/work";
  o.confinement.root = root;
  auto r = runCommand({"sh", "-c",
                       "ls -A /; ls -A /etc; pwd; echo made > here && echo wrote-work; touch /usr/x 2>/dev/null || echo usr-ro; "
                       "touch /new 2>/dev/null || echo root-ro; cat /etc/passwd 2>/dev/null || echo no-passwd; "
                       "test -e /proc/self/status && echo own-proc; echo x > /dev/null && echo null-ok"},
                      o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exitCode, 0) << r->describe();
  auto lines = split(r->out, '\n', true);
  std::string expectRoot;
  for (const char* e : {"bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "usr", "work"})
    if (std::string(e) == "dev" || std::string(e) == "etc" || std::string(e) == "proc" || std::string(e) == "work" ||
        fs::exists(std::string("/") + e))
      expectRoot += std::string(expectRoot.empty() ? "" : " ") + e;
  std::string gotRoot;
  for (const auto& l : lines) {
    if (l == "ld.so.cache") break;
    gotRoot += std::string(gotRoot.empty() ? "" : " ") + l;
  }
  EXPECT_EQ(gotRoot, expectRoot) << r->out;
  for (const char* want : {"ld.so.cache", "/work", "wrote-work", "usr-ro", "root-ro", "no-passwd", "own-proc", "null-ok"})
    EXPECT_NE(std::find(lines.begin(), lines.end(), want), lines.end()) << want << " in:\n" << r->out;
  EXPECT_EQ(fs::readFile(dir + "/work/here").valueOr(""), "made\n");
  EXPECT_EQ(fs::readFile("/proc/self/mountinfo", 1 << 20).valueOr("").find(dir), std::string::npos) << "a mount leaked to the host";

  // With a pid namespace the child is its init and its /proc lists it alone (a builtin glob:
  // no other process of its own exists meanwhile).
  o.confinement.newPidNamespace = true;
  auto alone = runCommand({"sh", "-c", "echo $$; for p in /proc/[0-9]*; do echo \"$p\"; done"}, o);
  ASSERT_TRUE(alone.ok()) << alone.error().message;
  EXPECT_EQ(alone->out, "1\n/proc/1\n") << alone->describe();
  o.confinement.newPidNamespace = false;

  // A device node of its own: the same device as the host's root-only node, the child's and
  // 0600, in a read-only /dev holding nothing else; the host's node unchanged.
  struct stat zeroBefore{};
  ASSERT_EQ(::stat("/dev/zero", &zeroBefore), 0);
  PrivateRoot withDevice = root;
  withDevice.devices.push_back({"/dev/zero", "/dev/disk0", 65534});
  o.confinement.root = withDevice;
  auto dev = runCommand({"sh", "-c", "ls -A /dev | tr '\\n' ' '; stat -c '%u %a %t:%T' /dev/disk0; head -c 3 /dev/disk0 | od -An -c; "
                                     "touch /dev/x 2>/dev/null || echo dev-ro"}, o);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  EXPECT_EQ(dev->exitCode, 0) << dev->describe();
  char rdev[32];
  std::snprintf(rdev, sizeof rdev, "%x:%x", major(zeroBefore.st_rdev), minor(zeroBefore.st_rdev));
  EXPECT_EQ(dev->out, "disk0 null 65534 600 " + std::string(rdev) + "\n  \\0  \\0  \\0\ndev-ro\n");
  struct stat zeroAfter{};
  ASSERT_EQ(::stat("/dev/zero", &zeroAfter), 0);
  EXPECT_EQ(zeroAfter.st_uid, zeroBefore.st_uid);
  EXPECT_EQ(zeroAfter.st_mode, zeroBefore.st_mode);
  withDevice.devices = {{"/etc/passwd", "/dev/disk0", 65534}};
  o.confinement.root = withDevice;
  EXPECT_EQ(runCommand({"true"}, o).error().code, ErrorCode::invalid_argument);
  withDevice.devices = {{"/dev/zero", "/dev/sub/disk0", 65534}};
  o.confinement.root = withDevice;
  EXPECT_EQ(runCommand({"true"}, o).error().code, ErrorCode::invalid_argument);
  o.confinement.root = root;

  // An idmapped bind: root's private files there are the child's own, and what it makes is
  // root's on disk. The same directory bound plainly stays closed to it.
  ASSERT_TRUE(fs::makeDirs(dir + "/vault", 0700).ok());
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/vault/secret", "root-only\n", 0600).ok());
  auto plain = o;
  plain.confinement.root->binds.push_back({dir + "/vault", "/vault", true});
  auto refused = runCommand({"sh", "-c", "cat /vault/secret"}, plain);
  ASSERT_TRUE(refused.ok()) << refused.error().message;
  EXPECT_NE(refused->exitCode, 0) << refused->out;
  // Bound deep in the new root, whose directories the child must cross whatever the parent's
  // umask (vmmd's is 077); the child gets that umask back.
  auto mapped = o;
  mapped.confinement.root->binds.push_back({dir + "/vault", "/deep/er/vault", true, 65534});
  mode_t umaskBefore = ::umask(077);
  auto through = runCommand({"sh", "-c", "id -u; stat -c %u /deep/er/vault/secret; cat /deep/er/vault/secret; echo new > /deep/er/vault/made; umask"},
                            mapped);
  ::umask(umaskBefore);
  ASSERT_TRUE(through.ok()) << through.error().message;
  EXPECT_EQ(through->out, "65534\n65534\nroot-only\n0077\n") << through->describe();
  struct stat made{};
  ASSERT_EQ(::stat((dir + "/vault/made").c_str(), &made), 0);
  EXPECT_EQ(made.st_uid, 0u) << "a file made through the idmapped bind is root's on disk";
  EXPECT_EQ(fs::readFile(dir + "/vault/made").valueOr(""), "new\n");
  mapped.confinement.root->binds.back().writable = false;
  auto readOnly = runCommand({"sh", "-c", "cat /deep/er/vault/secret && echo again > /deep/er/vault/made"}, mapped);
  ASSERT_TRUE(readOnly.ok());
  EXPECT_NE(readOnly->exitCode, 0);
  EXPECT_EQ(fs::readFile(dir + "/vault/made").valueOr(""), "new\n");

  // A source that does not exist is an error before anything runs.
  o.confinement.root->binds.push_back({dir + "/missing", "/missing", false});
  auto bad = runCommand({"true"}, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find(dir + "/missing"), std::string::npos) << bad.error().message;
}

// A private root's /proc can be read-only: /proc/sys's file modes alone decide some writes
// there (the hostname here, written back unchanged), which the mount stops whoever asks.
TEST(Process, PrivateRootsProcCanBeReadOnly) {
  VMM_REQUIRE(::geteuid() == 0, "root");
  char tmpl[] = "/tmp/vmm-roproc-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  Reverter removeDir;
  removeDir.add([&] { (void)runCommand({"rm", "-rf", dir}); });
  RunOptions o;
  ASSERT_TRUE(fs::makeDirs(dir + "/mnt", 0700).ok());
  PrivateRoot privateRoot;
  privateRoot.mountPoint = dir + "/mnt";
  privateRoot.procReadOnly = true;
  addSystemFiles(privateRoot);
  o.confinement.root = privateRoot;
  auto sysctl = runCommand({"sh", "-c", "read h < /proc/sys/kernel/hostname && echo \"$h\" > /proc/sys/kernel/hostname"}, o);
  ASSERT_TRUE(sysctl.ok()) << sysctl.error().message;
  EXPECT_NE(sysctl->exitCode, 0);
  EXPECT_NE(sysctl->err.find("Read-only file system"), std::string::npos) << sysctl->err;
}

// Root of a user namespace of its own (what NFS's qemu-img runs as): id 0 and no capability in
// its own eyes, another uid on the host, so a file only root may read stays closed to it.
TEST(Process, RootOfItsOwnUserNamespaceIsAnotherUidOnTheHost) {
  VMM_REQUIRE(::geteuid() == 0, "root");
  char tmpl[] = "/tmp/vmm-userns-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  Reverter removeDir;
  removeDir.add([&] { (void)runCommand({"rm", "-rf", dir}); });
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/roots", "ROOT ONLY\n", 0600).ok());
  RunOptions o;
  o.confinement.rootShownAs = 1001065500;
  auto r = runCommand({"sh", "-c", "id -u; id -g; cat /proc/self/uid_map; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status; cat " + dir + "/roots"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_NE(r->exitCode, 0) << "read a root-only file: " << r->out;
  auto lines = split(r->out, '\n', true);
  ASSERT_EQ(lines.size(), 8u) << r->out << r->err;
  EXPECT_EQ(lines[0], "0");
  EXPECT_EQ(lines[1], "0");
  EXPECT_EQ(split(lines[2], ' ', true), (std::vector<std::string>{"0", "1001065500", "1"}));
  for (size_t i = 3; i < 8; ++i) EXPECT_EQ(lines[i].substr(lines[i].find('\t') + 1), "0000000000000000") << lines[i];
  // Without the namespace the same child is the host's root and reads it.
  o.confinement.rootShownAs.reset();
  auto root = runCommand({"cat", dir + "/roots"}, o);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->out, "ROOT ONLY\n");
  // A uid and a namespace's root at once is a mistake, refused before anything runs.
  o.confinement.rootShownAs = 1001065500;
  o.confinement.uid = o.confinement.gid = 1001065500;
  EXPECT_EQ(runCommand({"true"}, o).error().code, ErrorCode::invalid_argument);
}

// A loop window shows exactly its bytes: reads end at its size, writes land inside it, a
// read-only one refuses them, and the device detaches itself once its last descriptor closes.
TEST(LoopWindow, ShowsOnlyItsBytesAndClearsItself) {
  VMM_REQUIRE(::geteuid() == 0 && fs::exists("/dev/loop-control"), "root and loop devices");
  char tmpl[] = "/tmp/vmm-window-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  Reverter removeDir;
  removeDir.add([&] { (void)runCommand({"rm", "-rf", dir}); });
  const size_t mib = 1 << 20;
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/pv", std::string(mib, 'a') + std::string(mib, 'b') + std::string(mib, 'c'), 0600).ok());
  fs::UniqueFd pv(::open((dir + "/pv").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(pv.valid());
  auto window = openLoopWindow(pv.get(), mib, mib, false);
  ASSERT_TRUE(window.ok()) << window.error().message;
  uint64_t bytes = 0;
  ASSERT_EQ(::ioctl(window->get(), BLKGETSIZE64, &bytes), 0);
  EXPECT_EQ(bytes, mib);
  std::string seen(2 * mib, '\0');
  ssize_t got = ::pread(window->get(), seen.data(), seen.size(), 0);
  ASSERT_EQ(got, static_cast<ssize_t>(mib)) << "read past the window's end";
  EXPECT_TRUE(seen.substr(0, mib) == std::string(mib, 'b'));
  std::string mark(4096, 'W');
  ASSERT_EQ(::pwrite(window->get(), mark.data(), mark.size(), 0), static_cast<ssize_t>(mark.size()));
  EXPECT_EQ(::pwrite(window->get(), mark.data(), mark.size(), mib), -1) << "wrote past the window's end";
  ASSERT_EQ(::fsync(window->get()), 0);
  auto read = fs::readFile(dir + "/pv", 4 * mib);
  ASSERT_TRUE(read.ok()) << read.error().message;
  const std::string& content = *read;
  EXPECT_TRUE(content.substr(0, mib) == std::string(mib, 'a'));
  EXPECT_EQ(content.substr(mib, 4096), mark);
  EXPECT_TRUE(content.substr(2 * mib) == std::string(mib, 'c'));

  auto readOnly = openLoopWindow(pv.get(), 0, mib, true);
  ASSERT_TRUE(readOnly.ok()) << readOnly.error().message;
  EXPECT_EQ(::pwrite(readOnly->get(), mark.data(), mark.size(), 0), -1);
  EXPECT_EQ(fs::readFile(dir + "/pv", 4 * mib).valueOr("").substr(0, 4096), std::string(4096, 'a'));

  struct stat st{};
  ASSERT_EQ(::fstat(window->get(), &st), 0);
  std::string backing = "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) + "/loop/backing_file";
  EXPECT_TRUE(fs::exists(backing));
  window->reset();
  readOnly->reset();
  EXPECT_TRUE(testutil::waitFor([&] { return !fs::exists(backing); }, Millis(5000))) << backing << " still attached";

  EXPECT_FALSE(openLoopWindow(pv.get(), 1, mib, false).ok());  // not in 512-byte units
}

// A step that fails is an error naming it, and the program never runs half-confined.
TEST(Process, ConfinementThatCannotBeAppliedIsAnError) {
  VMM_REQUIRE(::geteuid() == 0, "root (to start a child as another uid)");
  char tmpl[] = "/tmp/vmm-confined-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);  // 0700 root: not a directory uid 65534 may enter
  std::string dir = tmpl;
  Reverter removeDir;
  removeDir.add([&] { (void)runCommand({"rm", "-rf", dir}); });
  RunOptions o;
  o.confinement.uid = 65534;
  o.confinement.gid = 65534;
  o.cwd = dir;
  auto r = runCommand({"touch", "ran"}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot start touch: chdir " + dir), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(dir + "/ran"));
  o.confinement.limits = {{RLIMIT_NOFILE, uint64_t{1} << 40}};  // above the kernel's nr_open
  o.cwd.clear();
  r = runCommand({"true"}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("setrlimit(" + std::to_string(RLIMIT_NOFILE) + ")"), std::string::npos) << r.error().message;
  // A uid without a gid is refused before anything starts.
  RunOptions half;
  half.confinement.uid = 65534;
  r = runCommand({"true"}, half);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
}

// System tools are found in the sbin directories when the PATH lacks them (a daemon's or CI
// user's PATH): ldconfig is in /sbin on every Debian system (libc-bin is essential).
TEST(Process, SbinToolsRunWithoutSbinInPath) {
  EXPECT_EQ(findExecutable("ldconfig", "/usr/bin:/bin").rfind("/", 0), 0u);
  EXPECT_EQ(findExecutable("vmm-no-such-tool", "/usr/bin:/bin"), "");
  EXPECT_EQ(findExecutable("./relative", "/usr/bin"), "./relative");
  RunOptions o;
  o.env["PATH"] = "/usr/bin:/bin";
  auto r = runCommand({"ldconfig", "--version"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exitCode, 0) << r->describe();
  // A script without #! still runs through sh, as execvp would.
  char tmpl[] = "/tmp/vmm-findexe-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/vmm-plain-script", "echo plain\n", 0755).ok());
  o.env["PATH"] = dir + ":/usr/bin:/bin";
  auto plain = runCommand({"vmm-plain-script"}, o);
  (void)fs::removeTree(dir);
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->out, "plain\n") << plain->describe();
}

TEST(Fs, ConfinedPath) {
  char tmpl[] = "/tmp/vmm-fs-XXXXXX";
  std::string root = mkdtemp(tmpl);
  ASSERT_TRUE(fs::makeDirs(root + "/sub").ok());
  ASSERT_EQ(symlink("/etc", (root + "/escape").c_str()), 0);
  EXPECT_TRUE(fs::confinedPath(root, "a.qcow2").ok());
  EXPECT_TRUE(fs::confinedPath(root, "sub/a.qcow2").ok());
  EXPECT_FALSE(fs::confinedPath(root, "../a").ok());
  EXPECT_FALSE(fs::confinedPath(root, "sub/../../a").ok());
  EXPECT_FALSE(fs::confinedPath(root, "/etc/passwd").ok());
  auto esc = fs::confinedPath(root, "escape/passwd");
  ASSERT_FALSE(esc.ok());
  EXPECT_EQ(esc.error().code, ErrorCode::permission_denied);
  ASSERT_TRUE(fs::writeFileAtomic(root + "/f", "hello").ok());
  EXPECT_EQ(*fs::readFile(root + "/f"), "hello");
  EXPECT_FALSE(fs::readFile(root + "/f", 3).ok());
  ASSERT_EQ(system(("rm -rf " + root).c_str()), 0);
}

// vmmd runs with umask 077: a mode asked for explicitly is the mode a file or directory gets.
TEST(Fs, RequestedModeIsTheRealModeUnderUmask077) {
  char tmpl[] = "/tmp/vmm-fs-XXXXXX";
  std::string root = mkdtemp(tmpl);
  mode_t old = ::umask(077);
  auto mode = [](const std::string& p) {
    struct stat st{};
    return ::lstat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  };
  ASSERT_TRUE(fs::makeDirs(root + "/a/b", 0711).ok());
  EXPECT_EQ(mode(root + "/a"), 0711);
  EXPECT_EQ(mode(root + "/a/b"), 0711);
  ASSERT_EQ(::chmod((root + "/a/b").c_str(), 0755), 0);
  ASSERT_TRUE(fs::makeDirs(root + "/a/b", 0700).ok());  // an existing leaf gets the mode
  EXPECT_EQ(mode(root + "/a/b"), 0700);
  EXPECT_EQ(mode(root + "/a"), 0711);  // its parents are left alone
  ASSERT_EQ(::chmod(root.c_str(), 01777), 0);
  ASSERT_TRUE(fs::makeDirs(root + "/c").ok());  // no mode: new ones 0755, existing ones kept
  EXPECT_EQ(mode(root + "/c"), 0755);
  EXPECT_EQ(mode(root), 01777);
  ASSERT_TRUE(fs::writeFileAtomic(root + "/hosts", "x", 0644).ok());
  EXPECT_EQ(mode(root + "/hosts"), 0644);

  auto fd = fs::createExclusive(root + "/new", 0640);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  EXPECT_EQ(mode(root + "/new"), 0640);
  EXPECT_FALSE(fs::createExclusive(root + "/new", 0600).ok());  // never an existing file
  ASSERT_EQ(::symlink((root + "/hosts").c_str(), (root + "/link").c_str()), 0);
  EXPECT_FALSE(fs::createExclusive(root + "/link", 0600).ok());  // nor a symlink's target
  EXPECT_EQ(*fs::readFile(root + "/hosts"), "x");
  EXPECT_EQ(fs::refuseSymlink(root + "/link").error().code, ErrorCode::permission_denied);
  EXPECT_TRUE(fs::refuseSymlink(root + "/hosts").ok());
  EXPECT_TRUE(fs::refuseSymlink(root + "/none").ok());

  EXPECT_TRUE(fs::checkPrivateDirectory(root + "/a/b").ok());
  EXPECT_FALSE(fs::checkPrivateDirectory(root).ok());  // 1777
  ASSERT_EQ(::chmod((root + "/a/b").c_str(), 0770), 0);
  EXPECT_FALSE(fs::checkPrivateDirectory(root + "/a/b").ok());
  ::umask(old);
  ASSERT_EQ(system(("rm -rf " + root).c_str()), 0);
}

TEST(ThreadPool, GrowsForBlockingTasks) {
  ThreadPool pool(0, 8, Millis(100));
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::atomic<int> started{0};
  for (int i = 0; i < 4; ++i)
    pool.submit([&, gate] {
      ++started;
      gate.wait();
    });
  for (int i = 0; i < 200 && started < 4; ++i) usleep(5000);
  EXPECT_EQ(started.load(), 4);  // none waited for another
  release.set_value();
}

TEST(EventLoop, TimersPostsAndFds) {
  EventLoop loop;
  loop.runInThread();
  std::promise<int> p;
  auto t0 = SteadyClock::now();
  loop.addTimer(Millis(30), [&] { p.set_value(1); });
  EXPECT_EQ(p.get_future().get(), 1);
  EXPECT_GE(SteadyClock::now() - t0, Millis(29));
  auto cancelled = loop.addTimer(Millis(10), [] { FAIL() << "cancelled timer ran"; });
  loop.cancelTimer(cancelled);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::promise<char> got;
  loop.runSync([&] {
    loop.watch(fds[0], EPOLLIN, [&](uint32_t) {
      char c;
      if (read(fds[0], &c, 1) == 1) got.set_value(c);
      loop.unwatch(fds[0]);
    });
  });
  ASSERT_EQ(write(fds[1], "z", 1), 1);
  EXPECT_EQ(got.get_future().get(), 'z');
  usleep(20000);
  loop.stop();
  loop.join();
  close(fds[0]);
  close(fds[1]);
}

#include "daemon/config.h"

TEST(Config, FileAndFlags) {
  char tmpl[] = "/tmp/vmm-cfg-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  ASSERT_TRUE(fs::writeFileAtomic(dir + "/vmmd.toml", R"(
state_dir = "/srv/vmm"
log_level = "debug"
[http]
listen = "0.0.0.0:9000"
threads = 4
header_timeout = "3s"
idle_timeout = "20s"
[operations]
keep = 50
max_age = "2h"
[domains]
job_wait = "5s"
)").ok());
  std::string cfg = dir + "/vmmd.toml";
  const char* argv[] = {"vmmd", "--config", cfg.c_str(), "--listen", "none", "--run-dir", "/tmp/r"};
  bool run = false;
  auto c = loadConfig(7, const_cast<char**>(argv), run);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(run);
  EXPECT_EQ(c->stateDir, "/srv/vmm");
  EXPECT_EQ(c->httpListen, "");  // the flag wins over the file
  EXPECT_EQ(c->httpThreads, 4);
  EXPECT_EQ(c->httpHeaderTimeout, Millis(3000));
  EXPECT_EQ(c->httpIdleTimeout, Millis(20000));
  EXPECT_EQ(c->operationsKeep, 50u);
  EXPECT_EQ(c->operationsMaxAge, Millis(7200000));
  EXPECT_EQ(c->jobWait, Millis(5000));
  EXPECT_EQ(c->socketPath, "/tmp/r/vmmd.sock");

  ASSERT_TRUE(fs::writeFileAtomic(dir + "/bad.toml", "[http]\nlisten = \"x\"\nport = 3\n").ok());
  std::string bad = dir + "/bad.toml";
  const char* argv2[] = {"vmmd", "--config", bad.c_str()};
  auto b = loadConfig(3, const_cast<char**>(argv2), run);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().message, bad + ": http.port: unknown field");
  // A zero timeout would close every connection at once.
  ASSERT_TRUE(fs::writeFileAtomic(bad, "[http]\nheader_timeout = \"0s\"\n").ok());
  b = loadConfig(3, const_cast<char**>(argv2), run);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().message, bad + ": http.header_timeout: expected a duration from 1s to 1h");
  const char* argv3[] = {"vmmd", "--frobnicate", "1"};
  EXPECT_EQ(loadConfig(3, const_cast<char**>(argv3), run).error().message, "unknown option --frobnicate (see --help)");
  const char* argv4[] = {"vmmd", "--drivers", "qemu,vbox"};
  EXPECT_FALSE(loadConfig(3, const_cast<char**>(argv4), run).ok());
  ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

// QEMU's uids: their own range, never root's nor nobody's, never the containers' host ids.
TEST(Config, QemuUidRange) {
  Config c;
  c.containerIdmapRange = "1000000:1000000000";
  EXPECT_TRUE(c.qemuUnprivileged);
  auto r = qemuUidRange(c, "/nonexistent");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, std::make_pair(uint64_t{1001000000}, uint64_t{65536}));
  c.qemuUidRange = "1000500000:10";
  EXPECT_EQ(qemuUidRange(c, "/nonexistent").error().message,
            "qemu.uid_range 1000500000:10 overlaps the containers' host ids (1000000:1000000000)");
  for (const char* bad : {"0:100", "60000:6000", "5000", "x:1", "4294967290:100", "2000:0", "2000:1"}) {
    c.qemuUidRange = bad;
    EXPECT_FALSE(qemuUidRange(c, "/nonexistent").ok()) << bad;
  }
  c.qemuUidRange = "70000:100";
  EXPECT_TRUE(qemuUidRange(c, "/nonexistent").ok());
  const char* argv[] = {"vmmd", "--qemu-unprivileged", "no"};
  bool run = false;
  auto loaded = loadConfig(3, const_cast<char**>(argv), run);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_FALSE(loaded->qemuUnprivileged);
}

// A signal interrupts poll() (EINTR) whatever SA_RESTART says; pollFor keeps waiting until the
// deadline or the data. (libFuzzer's -timeout SIGALRM made the RPC harness's reads give up at
// once, which it reported as a stalled vmmd.)
TEST(Socket, PollForIsNotEndedBySignals) {
  struct sigaction quiet{}, old{};
  quiet.sa_handler = [](int) {};
  sigemptyset(&quiet.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &quiet, &old), 0);
  sigset_t usr2, oldMask;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &usr2, &oldMask), 0);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  fs::UniqueFd a(sv[0]), b(sv[1]);
  pthread_t self = pthread_self();

  std::thread signaller([self] {
    for (int i = 0; i < 5; ++i) {
      std::this_thread::sleep_for(Millis(40));
      pthread_kill(self, SIGUSR2);
    }
  });
  pollfd p{a.get(), POLLIN, 0};
  auto t0 = SteadyClock::now();
  int rc = pollFor(&p, 1, Deadline::after(Millis(400)));
  auto waited = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  signaller.join();
  EXPECT_EQ(rc, 0);
  EXPECT_GE(waited, 390) << "pollFor returned early, at a signal";

  std::thread writer([self, fd = b.get()] {
    std::this_thread::sleep_for(Millis(40));
    pthread_kill(self, SIGUSR2);
    std::this_thread::sleep_for(Millis(40));
    (void)!::write(fd, "x", 1);
  });
  p.revents = 0;
  rc = pollFor(&p, 1, Deadline::after(Millis(5000)));
  writer.join();
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(p.revents & POLLIN);
  pthread_sigmask(SIG_SETMASK, &oldMask, nullptr);
  sigaction(SIGUSR2, &old, nullptr);
}

// A half-close travels through the relay after every byte queued before it, and the other
// direction keeps working: an upload's result line comes back after the client's EOF.
TEST(ByteRelay, PassesEofOnAfterTheQueuedBytes) {
  EventLoop loop;
  loop.runInThread();
  int client[2], service[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, client), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, service), 0);
  std::atomic<bool> closed{false};
  ByteRelay::Options o;
  o.onClosed = [&] { closed = true; };
  auto relay = ByteRelay::start(loop, fs::UniqueFd(client[1]), fs::UniqueFd(service[1]), std::move(o));
  std::string payload(3 << 20, 'x');
  for (size_t i = 0; i < payload.size(); i += 4093) payload[i] = static_cast<char>('a' + i % 26);
  std::thread writer([&] {
    ASSERT_TRUE(writeAllFd(client[0], payload, Deadline::after(Millis(10000))).ok());
    ::shutdown(client[0], SHUT_WR);
  });
  std::string got;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(service[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  writer.join();
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload);
  // The reply direction still works after the client's EOF.
  ASSERT_TRUE(writeAllFd(service[0], "done\n", Deadline::after(Millis(5000))).ok());
  ::close(service[0]);
  std::string reply;
  while ((n = ::read(client[0], buf, sizeof buf)) > 0) reply.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(reply, "done\n");
  ::close(client[0]);
  for (int i = 0; i < 100 && !closed; ++i) std::this_thread::sleep_for(Millis(10));
  EXPECT_TRUE(closed);
  loop.stop();
}
