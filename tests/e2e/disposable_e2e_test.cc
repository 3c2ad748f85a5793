// Integration: images and disposable VMs for CI with real QEMU (TCG) guests. `vmctl run --rm`
// prints the guest's output and passes its exit code through and leaves no domain, volume or
// tap behind (nor a QEMU process or a lease record); TTL leases are enforced after a vmmd
// restart, and a run cut by a restart is removed at the next start; several runs share the host
// within a capacity budget (the default one shown and enforced); Ctrl-C and a killed client
// still clean up; the same over HTTP; https imports verify the server's certificate.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/random.h"
#include "base/strings.h"
#include "tests/support/host_command.h"
#include "tests/support/process_scan.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmctlResult;
using testutil::VmmdProcess;
using testutil::guestDir;
using testutil::guestReady;
using testutil::waitFor;

namespace {

int run(const std::vector<std::string>& argv) { return testutil::hostCommand(argv, Millis(120000)).exitCode; }

class DisposableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    tmp = "/tmp/vmm-disp-" + randomHex(6);
    ASSERT_TRUE(fs::makeDirs(tmp, 0700).ok());
    startVmmd({});
    importTestGuest("test-guest");
  }

  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
    if (rpc) {
      for (const auto& d : domainNames()) (void)rpc->call("domain.remove", {{"name", d}});
      (void)rpc->call("network.stop", {{"name", "ci"}, {"force", true}});
      (void)rpc->call("network.delete", {{"name", "ci"}});
    }
    for (pid_t pid : children)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    rpc.reset();
    vmmd.reset();
    if (!tmp.empty()) (void)fs::removeTree(tmp);
  }

  void startVmmd(std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--drivers", "qemu"});
    vmmd = std::make_unique<VmmdProcess>("", extra);
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    reconnect();
  }

  void reconnect() {
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }

  Result<json> tryCall(const std::string& method, const json& params) {
    return rpc->callAndWait(method, params, Deadline::after(Millis(180000)));
  }

  // The test guest as an image: a blank qcow2 disk, the kernel and initramfs, boot settings.
  void importTestGuest(const std::string& name) {
    std::string disk = tmp + "/disk.qcow2";
    if (!fs::exists(disk)) {
      ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"}), 0);
    }
    json tmpl = {{"memory", "256MiB"}, {"vcpus", 1}, {"boot", {{"cmdline", "console=ttyS0 panic=-1 quiet"}}}};
    ASSERT_TRUE(fs::writeFileAtomic(tmp + "/template.json", tmpl.dump()).ok());
    auto r = vmctl({"image", "import", name, disk, "--kernel", guestDir() + "/vmlinux", "--initrd", guestDir() + "/full.cpio",
                    "--os", "busybox", "--description", "the vmm test guest", "--template", tmp + "/template.json"});
    ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  }

  VmctlResult vmctl(const std::vector<std::string>& args) { return vmmd->vmctl(args); }

  std::string volumePath(const std::string& volume) {
    auto v = rpc->call("volume.get", {{"pool", "images"}, {"name", volume}});
    EXPECT_TRUE(v.ok()) << volume << ": " << (v.ok() ? "" : v.error().message);
    return v.ok() ? (*v)["path"].get<std::string>() : "";
  }

  // A command in a guest that has just been started: retried only until its agent first answers.
  Result<json> execInGuest(const std::string& name, const std::vector<std::string>& argv) {
    Result<json> out = internalError("not run");
    waitFor([&] {
      out = rpc->callAndWait("domain.exec", {{"name", name}, {"command", argv}}, Deadline::after(Millis(30000)));
      return out.ok() || out.error().message.find("agent") == std::string::npos;
    }, Millis(90000), Millis(500));
    return out;
  }

  std::vector<std::string> domainNames() {
    std::vector<std::string> out;
    auto l = rpc->call("domain.list", json::object());
    if (l.ok())
      for (const auto& d : *l) out.push_back(d["name"]);
    return out;
  }

  std::vector<std::string> imageVolumes() {
    std::vector<std::string> out;
    auto l = rpc->call("volume.list", {{"pool", "images"}});
    if (l.ok())
      for (const auto& v : *l) out.push_back(v["name"]);
    std::sort(out.begin(), out.end());
    return out;
  }

  // Nothing of any launched domain is left: no domain, only the image's own volumes, no QEMU
  // socket or monitor file under vmmd's run directory, no guest process and no lease record.
  void expectNothingLeft() {
    EXPECT_TRUE(domainNames().empty()) << join(domainNames(), ",");
    // The domain leaves the list first; its volumes and then its lease go right after it (the
    // removal's last steps, which a client that was killed does not wait for).
    (void)waitFor([&] { return imageVolumes().size() == 3 && leaseRecords().empty(); }, Millis(10000));
    EXPECT_EQ(imageVolumes(), (std::vector<std::string>{"test-guest.initrd", "test-guest.kernel", "test-guest.qcow2"}))
        << join(imageVolumes(), ",");
    auto sockets = fs::listDir(vmmd->dir() + "/run/qemu");
    if (sockets.ok()) {
      EXPECT_TRUE(sockets->empty()) << join(*sockets, ",");
    }
    auto procs = guestProcesses();
    EXPECT_TRUE(procs.empty()) << "processes of this test's vmmd still run:" << testutil::describe(procs);
    EXPECT_EQ(leaseRecords(), std::vector<std::string>{});
  }

  // Processes this vmmd started for guests (QEMU): its children, and anything else with its
  // directory (state and run dirs) in the command line - a QEMU outlives a killed vmmd and is
  // then no child of the new one. vmmd itself and the dnsmasq of a network that is still
  // defined (its files are under state/networks) do not count.
  std::vector<testutil::ProcessEntry> guestProcesses() {
    std::vector<testutil::ProcessEntry> out;
    pid_t daemon = vmmd->pid();
    std::string dir = vmmd->dir() + "/";
    for (const auto& p : testutil::listProcesses()) {
      if (p.pid == daemon || p.argvContains(dir + "state/networks/")) continue;
      if ((daemon > 0 && p.ppid == daemon) || p.argvContains(dir)) out.push_back(p);
    }
    return out;
  }

  // The domains named by lease records in vmmd's state database (read beside the running vmmd).
  std::vector<std::string> leaseRecords() {
    auto r = testutil::hostCommand({"sqlite3", "-readonly", vmmd->dir() + "/state/vmm.db", "SELECT key FROM leases ORDER BY key;"});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    return split(r.out, '\n', true);
  }

  // vmctl in the background; its pid is returned (stdout/stderr to files in tmp).
  pid_t spawnVmctl(const std::vector<std::string>& args, const std::string& outFile) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(outFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<std::string> argv = {testutil::vmctlBinary(), "-c", vmmd->socketPath()};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      ::execv(cargv[0], cargv.data());
      _exit(127);
    }
    children.push_back(pid);
    return pid;
  }

  int waitExit(pid_t pid, Millis timeout) {
    int status = 0;
    bool done = waitFor([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout, Millis(50));
    if (!done) return -1;
    children.erase(std::remove(children.begin(), children.end(), pid), children.end());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::string tmp;
  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<pid_t> children;
};

TEST_F(DisposableTest, RunRmPrintsTheGuestKernelAndLeavesNothing) {
  auto t0 = SteadyClock::now();
  auto r = vmctl({"run", "--rm", "--image", "test-guest", "--", "uname", "-a"});
  auto ms = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Linux test-guest"), std::string::npos) << r.out;
  std::cerr << "vmctl run --rm -- uname -a: " << ms << " ms\n";
  expectNothingLeft();
}

// Output arrives while the command runs, not only when it ends.
TEST_F(DisposableTest, OutputIsStreamedWhileTheCommandRuns) {
  std::string outFile = tmp + "/stream.out";
  pid_t pid = spawnVmctl({"run", "--rm", "--image", "test-guest", "--", "sh", "-c", "echo first; sleep 3; echo second"}, outFile);
  EXPECT_TRUE(waitFor([&] { return fs::readFile(outFile).valueOr("").find("first") != std::string::npos; }, Millis(60000), Millis(50)));
  std::string early = fs::readFile(outFile).valueOr("");
  EXPECT_EQ(early.find("second"), std::string::npos) << "printed only at the end: " << early;
  EXPECT_EQ(waitExit(pid, Millis(60000)), 0);
  std::string all = fs::readFile(outFile).valueOr("");
  EXPECT_EQ(all, "first\nsecond\n");
  expectNothingLeft();
}

TEST_F(DisposableTest, ExitCodeAndStderrPassThrough) {
  auto r = vmctl({"run", "--rm", "--image", "test-guest", "--", "sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(r.exitCode, 7) << r.out << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_NE(r.err.find("err\n"), std::string::npos) << r.err;
  // A program that does not exist: the shell's 127 and its message, nothing left.
  r = vmctl({"run", "--rm", "--image", "test-guest", "--", "/nonexistent/program"});
  EXPECT_EQ(r.exitCode, 127) << r.out << r.err;
  EXPECT_NE(r.err.find("/nonexistent/program"), std::string::npos) << r.err;
  expectNothingLeft();
}

TEST_F(DisposableTest, BadInputIsRefusedAndChangesNothing) {
  auto r = vmctl({"run", "--rm", "--image", "nosuch", "--", "true"});
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  EXPECT_NE(r.err.find("no image named \"nosuch\""), std::string::npos) << r.err;
  r = vmctl({"run", "--rm", "--image", "test-guest", "--memory", "1TiB", "--", "true"});
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  EXPECT_NE(r.err.find("budget"), std::string::npos) << r.err;
  r = vmctl({"run", "--rm", "--image", "test-guest", "--network", "nosuchnet", "--", "true"});
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  r = vmctl({"run", "--rm", "--image", "test-guest", "--ttl", "soon", "--", "true"});
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  // Image imports: a missing file, a duplicate name, an image with a backing file.
  r = vmctl({"image", "import", "missing", "/nonexistent.qcow2"});
  EXPECT_EQ(r.exitCode, 4) << r.out << r.err;
  r = vmctl({"image", "import", "test-guest", tmp + "/disk.qcow2"});
  EXPECT_EQ(r.exitCode, 5) << r.out << r.err;
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", tmp + "/evil.qcow2"}), 0);
  r = vmctl({"image", "import", "evil", tmp + "/evil.qcow2"});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("backing file"), std::string::npos) << r.err;
  auto images = rpc->call("image.list", json::object());
  ASSERT_TRUE(images.ok());
  EXPECT_EQ(images->size(), 1u) << images->dump();
  expectNothingLeft();
}

// The lease is long enough for a slow boot (a busy 2-core host has taken more than 4 s, a quiet
// one takes 2 s); the restart waits until it has run out.
TEST_F(DisposableTest, ExpiredTtlIsReapedAfterARestart) {
  const Millis ttl(10000);
  auto t0 = SteadyClock::now();
  auto r = vmctl({"run", "--ttl", "10s", "--name", "leased", "--image", "test-guest", "--", "true"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto view = rpc->call("domain.get", {{"name", "leased"}});
  ASSERT_TRUE(view.ok());
  EXPECT_EQ((*view)["state"], "running");
  int pid = (*view)["runtime"].value("pid", 0);
  ASSERT_GT(pid, 0) << view->dump();
  // vmmd dies before the lease expires and comes back after it did.
  vmmd->kill9();
  ASSERT_LT(SteadyClock::now() - t0, ttl) << "the lease ran out before vmmd was killed";
  std::this_thread::sleep_until(t0 + ttl + Millis(500));
  ASSERT_TRUE(vmmd->restart().ok()) << vmmd->log();
  reconnect();
  EXPECT_TRUE(waitFor([&] { return domainNames().empty(); }, Millis(20000)));
  EXPECT_TRUE(waitFor([&] { return !processAlive(pid); }, Millis(10000)));
  EXPECT_NE(vmmd->log().find("why=\"its lease expired\""), std::string::npos) << vmmd->log();
  expectNothingLeft();
}

// Each of the four runs prints its own guest's output: the test guest's kernel release and the
// boot id of the VM it ran in (four different VMs), on lines prefixed with the run's number.
TEST_F(DisposableTest, FourRunsInParallel) {
  auto release = testutil::hostCommand({"sh", "-c", "grep -a -o -m1 'Linux version [^ ]*' '" + guestDir() + "/vmlinux'"});
  ASSERT_EQ(release.exitCode, 0) << release.err;
  std::string kernel = std::string(trim(release.out)).substr(std::string("Linux version ").size());
  auto t0 = SteadyClock::now();
  auto r = vmctl({"run", "--rm", "-j", "4", "--image", "test-guest", "--", "sh", "-c", "uname -r; cat /proc/sys/kernel/random/boot_id"});
  auto ms = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  std::map<std::string, std::vector<std::string>> byRun;
  for (const auto& line : split(r.out, '\n', true)) {
    auto close = line.find("] ");
    ASSERT_TRUE(startsWith(line, "[") && close != std::string::npos) << "unprefixed line: " << line << "\n" << r.out;
    byRun[line.substr(0, close + 1)].push_back(line.substr(close + 2));
  }
  std::set<std::string> bootIds;
  for (int i = 1; i <= 4; ++i) {
    const auto& lines = byRun["[" + std::to_string(i) + "]"];
    ASSERT_EQ(lines.size(), 2u) << "run " << i << ":\n" << r.out;
    EXPECT_EQ(lines[0], kernel) << r.out;
    EXPECT_EQ(lines[1].size(), 36u) << lines[1];  // a UUID
    bootIds.insert(lines[1]);
    bool exited0 = false;  // "[i] NAME exited 0" on stderr
    for (const auto& line : split(r.err, '\n', true))
      exited0 = exited0 || (startsWith(line, "[" + std::to_string(i) + "] ") && endsWith(line, " exited 0"));
    EXPECT_TRUE(exited0) << r.err;
  }
  EXPECT_EQ(byRun.size(), 4u) << r.out;
  EXPECT_EQ(bootIds.size(), 4u) << "the runs did not each get a VM of their own:\n" << r.out;
  std::cerr << "4 disposable runs on " << std::thread::hardware_concurrency() << " cores: " << ms << " ms\n";
  // Full copies of one image read it together.
  r = vmctl({"run", "--rm", "-j", "2", "--full-copy", "--image", "test-guest", "--", "true"});
  EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
  expectNothingLeft();
}

TEST_F(DisposableTest, CapacityBudgetQueuesRunsInsteadOfOvercommitting) {
  // Room for two 256 MiB guests: of three runs, one waits for another to finish.
  vmmd.reset();
  startVmmd({"--capacity-memory", "600MiB"});
  importTestGuest("test-guest");
  std::vector<json> ops;
  for (int i = 0; i < 3; ++i) {
    auto op = rpc->call("domain.run", {{"image", "test-guest"}, {"command", {"sleep", "1"}}, {"name", "cap" + std::to_string(i)}});
    ASSERT_TRUE(op.ok()) << op.error().message;
    ops.push_back(*op);
  }
  int queued = 0;
  for (auto& op : ops) {
    auto done = rpc->waitOperation(op, Deadline::after(Millis(180000)));
    ASSERT_TRUE(done.ok());
    ASSERT_EQ((*done)["status"], "succeeded") << done->dump();
    int64_t q = (*done)["result"]["timings"].value("queued_ms", int64_t{0});
    if (q > 1000) ++queued;
  }
  EXPECT_EQ(queued, 1);
  expectNothingLeft();
}

TEST_F(DisposableTest, InterruptAndKilledClientStillRemoveTheDomain) {
  // Ctrl-C: vmctl cancels the run; vmmd destroys and removes the domain; exit code 130.
  pid_t pid = spawnVmctl({"run", "--rm", "--name", "ctrlc", "--image", "test-guest", "--", "sleep", "60"}, tmp + "/ctrlc.out");
  ASSERT_TRUE(waitFor([&] {
    auto v = rpc->call("domain.get", {{"name", "ctrlc"}});
    return v.ok() && (*v)["state"] == "running";
  }, Millis(60000)));
  std::this_thread::sleep_for(Millis(1000));  // the command is running in the guest
  ::kill(pid, SIGINT);
  EXPECT_EQ(waitExit(pid, Millis(30000)), 130) << fs::readFile(tmp + "/ctrlc.out").valueOr("");
  EXPECT_TRUE(waitFor([&] { return domainNames().empty(); }, Millis(10000)));
  // A client killed outright: the run ends in vmmd and the domain goes with it.
  pid = spawnVmctl({"run", "--rm", "--name", "killed", "--image", "test-guest", "--", "sleep", "2"}, tmp + "/killed.out");
  ASSERT_TRUE(waitFor([&] { return !domainNames().empty(); }, Millis(30000)));
  ::kill(pid, SIGKILL);
  waitExit(pid, Millis(5000));
  EXPECT_TRUE(waitFor([&] { return domainNames().empty(); }, Millis(60000)));
  expectNothingLeft();
}

TEST_F(DisposableTest, LaunchExecAndRemoveOverHttp) {
  auto token = rpc->call("token.create", {{"name", "ci"}, {"role", "admin"}});
  ASSERT_TRUE(token.ok());
  client::ConnectOptions ho;
  ho.uri = vmmd->httpUrl();
  ho.token = (*token)["token"];
  auto http = client::connect(ho);
  ASSERT_TRUE(http.ok()) << http.error().message;
  auto launched = (*http)->callAndWait("domain.launch", {{"image", "test-guest"}, {"name", "web"}, {"ttl", "10m"}},
                                       Deadline::after(Millis(120000)));
  ASSERT_TRUE(launched.ok()) << launched.error().message;
  EXPECT_EQ((*launched)["state"], "running");
  // The guest agent needs a moment after boot: exec is an operation with the output.
  Result<json> out = internalError("not run");
  ASSERT_TRUE(waitFor([&] {
    out = (*http)->callAndWait("domain.exec", {{"name", "web"}, {"command", {"cat", "/proc/version"}}}, Deadline::after(Millis(30000)));
    return out.ok();
  }, Millis(60000), Millis(500))) << out.error().message;
  EXPECT_NE((*out)["stdout"].get<std::string>().find("Linux version"), std::string::npos);
  EXPECT_TRUE((*http)->call("domain.remove", {{"name", "web"}}).ok());
  expectNothingLeft();
}

TEST_F(DisposableTest, ImagesFromUrlAndFromAStoppedDomain) {
  // A URL served on loopback by a child plain-HTTP server, which vmmd refuses unless allowed.
  vmmd.reset();
  startVmmd({"--image-allow-http", "yes"});
  importTestGuest("test-guest");
  ASSERT_EQ(run({"cp", tmp + "/disk.qcow2", tmp + "/served.qcow2"}), 0);
  uint16_t r16 = 0;
  randomBytes(&r16, sizeof r16);
  int port = 20000 + r16 % 20000;
  pid_t server = ::fork();
  if (server == 0) {
    ::chdir(tmp.c_str());
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    execlp("python3", "python3", "-m", "http.server", "--bind", "127.0.0.1", std::to_string(port).c_str(), nullptr);
    _exit(127);
  }
  children.push_back(server);
  std::string url = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(waitFor([&] { return run({"curl", "-sf", "-o", "/dev/null", url + "/served.qcow2"}) == 0; }, Millis(10000)));
  auto r = vmctl({"image", "import", "fromurl", url + "/served.qcow2"});
  EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
  r = vmctl({"image", "import", "missing", url + "/nosuch.qcow2"});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("404"), std::string::npos) << r.err;
  EXPECT_FALSE(rpc->call("image.get", {{"name", "missing"}}).ok());
  EXPECT_EQ(vmctl({"image", "delete", "fromurl"}).exitCode, 0);

  // Launch without starting, mark its disk (64 KiB of 'Z' at 1 MiB, written into the linked
  // clone), make a template of it, then launch from the template.
  r = vmctl({"launch", "test-guest", "base", "--no-start"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  std::string baseDisk = volumePath("base-root.qcow2");
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 64k", baseDisk}), 0);
  r = vmctl({"image", "from-domain", "base", "tmpl"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto img = rpc->call("image.get", {{"name", "tmpl"}});
  ASSERT_TRUE(img.ok());
  EXPECT_EQ((*img)["source"], "domain:base");
  EXPECT_EQ((*img)["template"]["memory"], "256MiB") << img->dump();
  // The template's disk holds the marker, on its own (flattened: no backing file); the image
  // the domain was cloned from does not.
  std::string tmplDisk = volumePath((*img)["volume"]);
  auto verify = [&](const std::string& disk, const std::string& pattern) {
    return testutil::hostCommand({"qemu-io", "-r", "-f", "qcow2", "-c", "read -P " + pattern + " 1M 64k", disk});
  };
  auto marked = verify(tmplDisk, "0x5a");
  EXPECT_EQ(marked.exitCode, 0) << marked.out << marked.err;
  EXPECT_EQ(marked.out.find("Pattern verification failed"), std::string::npos) << marked.out;
  auto info = testutil::hostCommand({"qemu-img", "info", "--output=json", tmplDisk});
  EXPECT_EQ(json::parse(info.out, nullptr, false).count("backing-filename"), 0u) << info.out;
  auto pristine = verify(volumePath("test-guest.qcow2"), "0");
  EXPECT_EQ(pristine.out.find("Pattern verification failed"), std::string::npos) << pristine.out;
  // A domain launched from the template boots and reads the marker from its own disk.
  r = vmctl({"launch", "tmpl", "fromtmpl"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto seen = execInGuest("fromtmpl", {"sh", "-c", "r() { dd if=/dev/vda bs=65536 skip=16 count=1 2>/dev/null; }; "
                                                   "echo $(( $(r | tr -d Z | wc -c) )); echo $(( $(r | wc -c) ))"});
  ASSERT_TRUE(seen.ok()) << seen.error().message;
  EXPECT_EQ((*seen)["stdout"], "0\n65536\n") << seen->dump();  // 65536 bytes read, all of them 'Z'
  EXPECT_EQ(vmctl({"rm", "fromtmpl"}).exitCode, 0);
  // The base image is in use by "base"'s linked clone: deleting it is refused, nothing changes.
  r = vmctl({"image", "delete", "test-guest"});
  EXPECT_EQ(r.exitCode, 5) << r.out << r.err;
  EXPECT_EQ(vmctl({"rm", "base"}).exitCode, 0);
  EXPECT_EQ(vmctl({"image", "delete", "tmpl"}).exitCode, 0);

  // A disk given by path, an overlay in a directory of its own on the image's volume: the
  // sandboxed qemu-img is shown the chain vmm vouches for (the volume lies elsewhere).
  ASSERT_TRUE(fs::makeDirs(tmp + "/own", 0700).ok());
  std::string overlay = tmp + "/own/overlay.qcow2";
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", "-b", volumePath("test-guest.qcow2"), "-F", "qcow2", overlay}), 0);
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 1M 64k", overlay}), 0);
  json def = {{"name", "pathdisk"}, {"type", "qemu"}, {"vcpus", 1}, {"memory", "256MiB"},
              {"disks", {{{"source", {{"path", overlay}}}, {"format", "qcow2"}}}}};
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", def}}).ok());
  r = vmctl({"image", "from-domain", "pathdisk", "frompath"});
  EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
  auto fromPath = rpc->call("image.get", {{"name", "frompath"}});
  ASSERT_TRUE(fromPath.ok());
  marked = verify(volumePath((*fromPath)["volume"]), "0x6b");
  EXPECT_EQ(marked.exitCode, 0) << marked.out << marked.err;
  EXPECT_EQ(marked.out.find("Pattern verification failed"), std::string::npos) << marked.out;
  EXPECT_EQ(vmctl({"image", "delete", "frompath"}).exitCode, 0);
  EXPECT_TRUE(rpc->call("domain.delete", {{"name", "pathdisk"}}).ok());
  expectNothingLeft();
}

}  // namespace

namespace {

TEST_F(DisposableTest, CloudInitSeedIsAttachedWithItsContent) {
  json ci = {{"ssh_authorized_keys", {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC0test ci@vmm"}},
             {"runcmd", {"echo hello > /tmp/hello"}},
             {"packages", {"curl"}}};
  auto v = tryCall("domain.launch", {{"image", "test-guest"}, {"name", "seeded"}, {"start", false}, {"cloud_init", ci}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  auto full = rpc->call("domain.get", {{"name", "seeded"}});
  ASSERT_TRUE(full.ok());
  bool hasSeed = false;
  for (const auto& d : (*full)["definition"]["disks"])
    if (d["device"] == "cdrom" && d["source"]["volume"] == "seeded-seed.iso") hasSeed = true;
  EXPECT_TRUE(hasSeed) << full->dump();
  auto vol = rpc->call("volume.get", {{"pool", "images"}, {"name", "seeded-seed.iso"}});
  ASSERT_TRUE(vol.ok());
  std::string iso = (*vol)["path"];
  auto read = [&](const std::string& file) {
    auto r = runCommand({"isoinfo", "-R", "-i", iso, "-x", file}, RunOptions());
    return r.ok() ? r->out : std::string();
  };
  std::string userData = read("/user-data"), metaData = read("/meta-data");
  EXPECT_TRUE(startsWith(userData, "#cloud-config")) << userData;
  EXPECT_NE(userData.find("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC0test ci@vmm"), std::string::npos) << userData;
  EXPECT_NE(userData.find("echo hello > /tmp/hello"), std::string::npos) << userData;
  EXPECT_NE(metaData.find("seeded"), std::string::npos) << metaData;
  auto label = runCommand({"isoinfo", "-d", "-i", iso}, RunOptions());
  ASSERT_TRUE(label.ok());
  EXPECT_NE(label->out.find("Volume id: cidata"), std::string::npos) << label->out;
  // A bad seed is refused before anything is made.
  auto bad = rpc->call("domain.launch", {{"image", "test-guest"}, {"name", "badseed"}, {"cloud_init", {{"hostname", "bad host!"}}}});
  if (bad.ok()) bad = rpc->waitOperation(*bad, Deadline::after(Millis(30000)));
  EXPECT_TRUE(!bad.ok() || (*bad)["status"] == "failed");
  EXPECT_FALSE(rpc->call("domain.get", {{"name", "badseed"}}).ok());
  EXPECT_EQ(vmctl({"rm", "seeded"}).exitCode, 0);
  expectNothingLeft();
}

// Offline customisation with libguestfs (a TCG appliance: tens of seconds).
TEST_F(DisposableTest, LibguestfsCustomisesTheClonedDisk) {
  VMM_REQUIRE(fs::exists(testutil::guestDir() + "/../guestfs/guestfs.env"),
              "the libguestfs appliance in " << testutil::guestDir() << "/../guestfs (run scripts/setup-guestfs.sh)");
  // An image with an ext4 filesystem holding /etc.
  ASSERT_TRUE(fs::makeDirs(tmp + "/root/etc").ok());
  ASSERT_TRUE(fs::writeFileAtomic(tmp + "/root/etc/hostname", "blank\n").ok());
  ASSERT_EQ(run({"truncate", "-s", "64M", tmp + "/fs.raw"}), 0);
  ASSERT_EQ(run({"mkfs.ext4", "-q", "-F", "-d", tmp + "/root", tmp + "/fs.raw"}), 0);
  ASSERT_EQ(run({"qemu-img", "convert", "-O", "qcow2", tmp + "/fs.raw", tmp + "/fs.qcow2"}), 0);
  ASSERT_EQ(vmctl({"image", "import", "fsimg", tmp + "/fs.qcow2"}).exitCode, 0);
  json cz = {{"files", {{{"path", "/etc/vmm-injected"}, {"content", "injected by vmm\n"}, {"mode", 0600}}}},
             {"hostname", "custom1"}};
  auto t0 = SteadyClock::now();
  auto v = tryCall("domain.launch", {{"image", "fsimg"}, {"name", "custom"}, {"start", false}, {"customize", cz}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  std::cerr << "launch with libguestfs customisation: "
            << std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count() << " ms\n";
  // Read back independently: the clone flattened to raw, then debugfs.
  auto vol = rpc->call("volume.get", {{"pool", "images"}, {"name", "custom-root.qcow2"}});
  ASSERT_TRUE(vol.ok());
  ASSERT_EQ(run({"qemu-img", "convert", "-U", "-O", "raw", (*vol)["path"], tmp + "/check.raw"}), 0);
  auto cat = [&](const std::string& f) {
    auto r = runCommand({"debugfs", "-R", "cat " + f, tmp + "/check.raw"}, RunOptions());
    return r.ok() ? r->out : std::string();
  };
  EXPECT_EQ(cat("/etc/vmm-injected"), "injected by vmm\n");
  EXPECT_EQ(cat("/etc/hostname"), "custom1\n");
  // The image itself is untouched (the change went into the linked clone).
  ASSERT_EQ(run({"qemu-img", "convert", "-O", "raw", tmp + "/fs.qcow2", tmp + "/orig.raw"}), 0);
  auto orig = runCommand({"debugfs", "-R", "cat /etc/hostname", tmp + "/orig.raw"}, RunOptions());
  ASSERT_TRUE(orig.ok());
  EXPECT_EQ(orig->out, "blank\n");
  EXPECT_EQ(vmctl({"rm", "custom"}).exitCode, 0);
  EXPECT_EQ(vmctl({"image", "delete", "fsimg"}).exitCode, 0);
  expectNothingLeft();
}

}  // namespace

namespace {

// A disposable VM on a vmm network: its tap joins the bridge and is gone with the VM.
TEST_F(DisposableTest, RunOnANetworkLeavesNoPortBehind) {
  auto net = rpc->call("network.create", {{"definition", {{"name", "ci"}, {"mode", "isolated"}, {"bridge", "vmmci0"},
                                                           {"ipv4", "10.97.0.1/24"}, {"dhcp", {{"enabled", false}}}}}});
  ASSERT_TRUE(net.ok()) << net.error().message;
  auto r = vmctl({"run", "--rm", "--network", "ci", "--image", "test-guest", "--", "cat", "/sys/class/net/eth0/address"});
  EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
  EXPECT_TRUE(startsWith(r.out, "52:54:00:")) << r.out;
  auto ports = fs::listDir("/sys/class/net/vmmci0/brif");
  ASSERT_TRUE(ports.ok());
  EXPECT_TRUE(ports->empty()) << join(*ports, ",");
  expectNothingLeft();
  EXPECT_TRUE(rpc->call("network.stop", {{"name", "ci"}}).ok());
  EXPECT_TRUE(rpc->call("network.delete", {{"name", "ci"}}).ok());
  EXPECT_FALSE(fs::exists("/sys/class/net/vmmci0"));
}

// An ISO becomes a cdrom image: a launched domain gets it read-only, without a clone, first in
// its boot order, and the running guest reads the ISO's files from that cdrom. (The test guest
// boots its kernel directly, so the boot order is checked in the definition only.)
TEST_F(DisposableTest, IsoImagesAreAttachedAsCdroms) {
  // The test guest's initramfs has no SATA (AHCI), CD-ROM or ISO 9660 drivers: a second cpio
  // archive appended to it adds them from the cached kernel package; they are loaded by hand.
  std::string deb = testutil::hostCommand({"sh", "-c", "ls " + guestDir() + "/cache/linux-image-*_amd64.deb | grep -v -- -dbg | head -n1"}).out;
  deb = std::string(trim(deb));
  VMM_REQUIRE(!deb.empty(), "the cached kernel package in " << guestDir() << "/cache (run scripts/build-test-guest.sh)");
  const std::vector<std::string> modules = {"drivers/ata/libata", "drivers/ata/libahci", "drivers/ata/ahci", "drivers/cdrom/cdrom",
                                            "drivers/scsi/sr_mod", "fs/isofs/isofs"};
  std::string extract = "set -e; cd " + tmp + "; mkdir -p ex mods/lib/modules; dpkg-deb --fsys-tarfile " + deb + " | tar -x -C ex --wildcards";
  for (const auto& m : modules) extract += " '*/kernel/" + m + ".ko'";
  extract += "; find ex -name '*.ko' -exec cp {} mods/lib/modules/ ';'; (cd mods && find . | cpio -o -H newc --quiet) > mods.cpio; "
             "cat " + guestDir() + "/full.cpio mods.cpio > initrd-cdrom.cpio";
  auto built = testutil::hostCommand({"sh", "-c", extract}, Millis(120000));
  ASSERT_EQ(built.exitCode, 0) << built.err;

  ASSERT_TRUE(fs::makeDirs(tmp + "/iso").ok());
  ASSERT_TRUE(fs::writeFileAtomic(tmp + "/iso/README", "live\n").ok());
  ASSERT_EQ(run({"genisoimage", "-quiet", "-o", tmp + "/live.iso", "-V", "LIVE", "-R", tmp + "/iso"}), 0);
  auto r = vmctl({"image", "import", "live", tmp + "/live.iso", "--kernel", guestDir() + "/vmlinux", "--initrd",
                  tmp + "/initrd-cdrom.cpio", "--template", tmp + "/template.json"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto img = rpc->call("image.get", {{"name", "live"}});
  ASSERT_TRUE(img.ok());
  EXPECT_EQ((*img)["media"], "cdrom");
  EXPECT_EQ((*img)["volume"], "live.iso");
  auto volumesBefore = imageVolumes();
  r = vmctl({"launch", "live", "livecd"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  EXPECT_EQ(imageVolumes(), volumesBefore) << "an ISO launch made a volume";
  auto d = rpc->call("domain.get", {{"name", "livecd"}});
  ASSERT_TRUE(d.ok());
  const auto& disks = (*d)["definition"]["disks"];
  ASSERT_EQ(disks.size(), 1u) << d->dump();
  EXPECT_EQ(disks[0]["device"], "cdrom");
  EXPECT_EQ(disks[0]["source"]["volume"], "live.iso");
  EXPECT_EQ(disks[0]["readonly"], true) << d->dump();
  EXPECT_EQ((*d)["definition"]["boot"]["order"][0], "cdrom");
  std::string read = "for m in libata libahci ahci cdrom sr_mod isofs; do insmod /lib/modules/$m.ko || exit 9; done; "
                     "i=0; while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
                     "mkdir -p /tmp/cd && mount -t iso9660 -o ro /dev/sr0 /tmp/cd && cat /tmp/cd/README && cat /sys/block/sr0/ro";
  auto seen = execInGuest("livecd", {"sh", "-c", read});
  ASSERT_TRUE(seen.ok()) << seen.error().message;
  EXPECT_EQ((*seen)["stdout"], "live\n1\n") << seen->dump();
  EXPECT_EQ(vmctl({"rm", "livecd"}).exitCode, 0);
  EXPECT_EQ(vmctl({"image", "delete", "live"}).exitCode, 0);
  expectNothingLeft();
}

}  // namespace

namespace {

// Leases are enforced while a run is in progress too, and a launched domain undefined by hand
// takes its volumes with it.
TEST_F(DisposableTest, LeasesHoldDuringRunsAndAfterAPlainUndefine) {
  auto t0 = SteadyClock::now();
  auto r = vmctl({"run", "--rm", "--ttl", "3s", "--name", "overdue", "--image", "test-guest", "--", "sleep", "60"});
  auto ms = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  EXPECT_LT(ms, 30000) << "the run outlived its 3 s lease";
  EXPECT_TRUE(waitFor([&] { return domainNames().empty(); }, Millis(10000)));

  ASSERT_EQ(vmctl({"launch", "test-guest", "plain", "--no-start"}).exitCode, 0);
  ASSERT_EQ(vmctl({"undefine", "plain"}).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return imageVolumes().size() == 3; }, Millis(10000))) << join(imageVolumes(), ",");
  // remove-on-stop needs a started domain (it would be removed at once).
  EXPECT_EQ(vmctl({"launch", "test-guest", "never", "--no-start", "--rm-on-stop"}).exitCode, 2);
  expectNothingLeft();
}

}  // namespace

namespace {

// A disposable run interrupted by a vmmd restart: vmmd is killed while the command runs in the
// guest; the restarted vmmd finds the run's lease and removes the domain, its QEMU (which outlived
// the old vmmd) and its volumes, then the lease itself.
TEST_F(DisposableTest, RunInterruptedByARestartIsRemovedAtTheNextStart) {
  std::string outFile = tmp + "/cut.out";
  pid_t client = spawnVmctl({"run", "--rm", "--name", "cut", "--image", "test-guest", "--", "sh", "-c", "echo started; sleep 300"}, outFile);
  ASSERT_TRUE(waitFor([&] { return fs::readFile(outFile).valueOr("").find("started") != std::string::npos; }, Millis(120000), Millis(100)))
      << fs::readFile(outFile).valueOr("");
  auto view = rpc->call("domain.get", {{"name", "cut"}});
  ASSERT_TRUE(view.ok()) << view.error().message;
  pid_t qemu = (*view)["runtime"].value("pid", 0);
  ASSERT_GT(qemu, 0) << view->dump();
  EXPECT_EQ(leaseRecords(), std::vector<std::string>{"cut"});
  auto volumes = imageVolumes();
  EXPECT_NE(std::find(volumes.begin(), volumes.end(), "cut-root.qcow2"), volumes.end()) << join(volumes, ",");

  vmmd->kill9();
  int code = waitExit(client, Millis(30000));
  EXPECT_EQ(code, 125) << "vmctl, its vmmd gone: " << fs::readFile(outFile).valueOr("");
  EXPECT_TRUE(processRunning(qemu)) << "QEMU should outlive vmmd";
  ASSERT_TRUE(vmmd->restart().ok()) << vmmd->log();
  reconnect();
  EXPECT_TRUE(waitFor([&] { return domainNames().empty(); }, Millis(30000))) << join(domainNames(), ",");
  EXPECT_TRUE(waitFor([&] { return !processRunning(qemu); }, Millis(10000))) << "QEMU " << qemu << " still runs";
  EXPECT_NE(vmmd->log().find("why=\"its disposable run was interrupted\""), std::string::npos) << vmmd->log();
  expectNothingLeft();
}

// The default launch budget (no --capacity-* flag): host memory minus 1 GiB and 8 vCPUs per
// host CPU, shown by host.info. A launch larger than the budget is refused at once; one that
// takes every vCPU of it is admitted, and while it runs the next launch waits in line.
TEST_F(DisposableTest, DefaultCapacityBudgetIsShownAndEnforced) {
  uint64_t hostMemory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  int64_t vcpus = 8 * sysconf(_SC_NPROCESSORS_ONLN);
  auto info = rpc->call("host.info", json::object());
  ASSERT_TRUE(info.ok());
  const json cap = (*info)["capacity"];
  EXPECT_EQ(cap.value("memory_bytes", uint64_t{0}), hostMemory - (1ULL << 30)) << info->dump();
  EXPECT_EQ(cap.value("vcpus", int64_t{0}), vcpus) << info->dump();
  EXPECT_EQ(cap.value("used_vcpus", int64_t{-1}), 0) << info->dump();
  auto shown = vmctl({"host", "info"});
  std::string line = "0 of " + std::to_string((hostMemory - (1ULL << 30)) >> 20) + " MiB memory, 0 of " + std::to_string(vcpus) + " vCPUs in use";
  EXPECT_NE(shown.out.find(line), std::string::npos) << shown.out;

  // Beyond the budget: refused at once, naming it; nothing is made.
  auto r = vmctl({"run", "--rm", "--image", "test-guest", "--cpus", std::to_string(vcpus + 1), "--", "true"});
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  EXPECT_NE(r.err.find("budget is "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" and " + std::to_string(vcpus) + " vCPUs"), std::string::npos) << r.err;
  r = vmctl({"run", "--rm", "--image", "test-guest", "--memory", std::to_string(hostMemory - (1ULL << 30) + (1 << 20)), "--", "true"});
  EXPECT_EQ(r.exitCode, 125) << r.out << r.err;
  EXPECT_NE(r.err.find("budget"), std::string::npos) << r.err;
  expectNothingLeft();

  // Every vCPU of the budget: admitted, and counted while it runs.
  r = vmctl({"launch", "test-guest", "wide", "--cpus", std::to_string(vcpus)});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  info = rpc->call("host.info", json::object());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ((*info)["capacity"].value("used_vcpus", int64_t{0}), vcpus) << info->dump();
  EXPECT_EQ((*info)["capacity"].value("used_memory_bytes", uint64_t{0}), 256u << 20) << info->dump();
  // One more vCPU does not fit: the next launch waits in line until "wide" is removed.
  auto op = rpc->call("domain.launch", {{"image", "test-guest"}, {"name", "next"}});
  ASSERT_TRUE(op.ok()) << op.error().message;
  Result<json> waiting = internalError("not asked");
  EXPECT_TRUE(waitFor([&] {
    waiting = rpc->call("operation.get", {{"id", (*op)["id"]}});
    return waiting.ok() && waiting->dump().find("waiting for host capacity") != std::string::npos;
  }, Millis(10000)));
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ((*waiting)["status"], "running") << waiting->dump();
  EXPECT_FALSE(rpc->call("domain.get", {{"name", "next"}}).ok());
  EXPECT_EQ(vmctl({"rm", "wide"}).exitCode, 0);
  auto done = rpc->waitOperation(*op, Deadline::after(Millis(60000)));
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ((*done)["status"], "succeeded") << done->dump();
  EXPECT_EQ(vmctl({"rm", "next"}).exitCode, 0);
  expectNothingLeft();
}

}  // namespace

namespace {

// A tiny https server on loopback (python3's http.server with ssl) serving `dir`; its port is
// written to `portFile` once it listens.
const char kHttpsServer[] = R"(import functools, http.server, ssl, sys
cert, key, root, port_file = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(port_file + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
)";

// https imports verify the server: a CA made by the test signs the certificate of a loopback
// server. Without being told about that CA vmmd refuses the server; with --image-ca-file it
// imports the image (same bytes); a server whose certificate another CA signed is still refused.
TEST_F(DisposableTest, HttpsImportVerifiesTheServerCertificate) {
  std::string pki = tmp + "/pki";
  ASSERT_TRUE(fs::makeDirs(pki).ok());
  ASSERT_TRUE(fs::makeDirs(tmp + "/www").ok());
  ASSERT_EQ(run({"cp", tmp + "/disk.qcow2", tmp + "/www/served.qcow2"}), 0);
  // Writes "served.qcow2" content that differs from the blank disk so that the copy is checked.
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 64k", tmp + "/www/served.qcow2"}), 0);
  ASSERT_TRUE(fs::writeFileAtomic(pki + "/san.cnf", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").ok());
  std::string script =
      "set -e; cd " + pki + "; "
      "for ca in ca rogue; do openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.pem -days 2 -subj /CN=vmm-test-$ca 2>/dev/null; "
      "openssl req -newkey rsa:2048 -nodes -keyout $ca-server.key -out $ca-server.csr -subj /CN=127.0.0.1 2>/dev/null; "
      "openssl x509 -req -in $ca-server.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $ca-server.pem -days 2 -extfile san.cnf 2>/dev/null; done";
  auto made = testutil::hostCommand({"sh", "-c", script}, Millis(60000));
  ASSERT_EQ(made.exitCode, 0) << made.err;
  ASSERT_TRUE(fs::writeFileAtomic(tmp + "/https.py", kHttpsServer).ok());
  auto serve = [&](const std::string& ca) -> std::string {
    std::string portFile = tmp + "/" + ca + ".port";
    pid_t pid = ::fork();
    if (pid == 0) {
      int log = ::open((tmp + "/" + ca + "-https.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(log, 1);
      ::dup2(log, 2);
      execlp("python3", "python3", (tmp + "/https.py").c_str(), (pki + "/" + ca + "-server.pem").c_str(),
             (pki + "/" + ca + "-server.key").c_str(), (tmp + "/www").c_str(), portFile.c_str(), nullptr);
      _exit(127);
    }
    children.push_back(pid);
    EXPECT_TRUE(waitFor([&] { return fs::exists(portFile); }, Millis(20000))) << fs::readFile(tmp + "/" + ca + "-https.log").valueOr("");
    return "https://127.0.0.1:" + fs::readFile(portFile).valueOr("0") + "/served.qcow2";
  };
  std::string trusted = serve("ca"), rogue = serve("rogue");
  // The server works for a client that trusts the CA.
  ASSERT_EQ(run({"curl", "-sf", "--cacert", pki + "/ca.pem", "-o", "/dev/null", trusted}), 0);
  auto downloads = [&] { return fs::listDir(vmmd->dir() + "/state/tmp/images").valueOr({}); };

  // Not told about the CA (the system's store does not have it): refused, nothing kept.
  auto r = vmctl({"image", "import", "web", trusted});
  EXPECT_NE(r.exitCode, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("certificate is not trusted"), std::string::npos) << r.err;
  EXPECT_FALSE(rpc->call("image.get", {{"name", "web"}}).ok());
  EXPECT_EQ(downloads(), std::vector<std::string>{});

  // A CA file that is not there is a start-up error, not a silent fallback to the system's.
  auto noCa = testutil::hostCommand({testutil::vmmdBinary(), "--state-dir", tmp + "/noca", "--run-dir", tmp + "/noca-run", "--listen",
                                     "none", "--drivers", "test", "--image-ca-file", pki + "/missing.pem"});
  EXPECT_NE(noCa.exitCode, 0);
  EXPECT_NE((noCa.out + noCa.err).find("missing.pem\" does not exist"), std::string::npos) << noCa.out << noCa.err;

  // Told: the image arrives with the server's bytes.
  vmmd.reset();
  startVmmd({"--image-ca-file", pki + "/ca.pem"});
  importTestGuest("test-guest");
  r = vmctl({"image", "import", "web", trusted});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto img = rpc->call("image.get", {{"name", "web"}});
  ASSERT_TRUE(img.ok());
  EXPECT_EQ((*img)["source"], trusted);
  auto same = testutil::hostCommand({"qemu-img", "compare", tmp + "/www/served.qcow2", volumePath((*img)["volume"])});
  EXPECT_EQ(same.exitCode, 0) << same.out << same.err;
  // A certificate from another CA is refused all the same.
  r = vmctl({"image", "import", "rogue", rogue});
  EXPECT_NE(r.exitCode, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("certificate is not trusted"), std::string::npos) << r.err;
  EXPECT_FALSE(rpc->call("image.get", {{"name", "rogue"}}).ok());
  EXPECT_EQ(downloads(), std::vector<std::string>{});
  EXPECT_EQ(vmctl({"image", "delete", "web"}).exitCode, 0);
  expectNothingLeft();
}

}  // namespace
