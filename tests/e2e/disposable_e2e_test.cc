// Integration: images and disposable VMs for CI with real QEMU (TCG) guests. `vmctl run --rm`
// prints the guest's output and passes its exit code through and leaves no domain, volume or
// tap behind; TTL leases are enforced after a vmmd restart; several runs share the host
// within a capacity budget; Ctrl-C and a killed client still clean up; the same over HTTP.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/random.h"
#include "base/strings.h"
#include "tests/support/host_command.h"
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
  // socket or monitor file under vmmd's run directory.
  void expectNothingLeft() {
    EXPECT_TRUE(domainNames().empty()) << join(domainNames(), ",");
    EXPECT_EQ(imageVolumes(), (std::vector<std::string>{"test-guest.initrd", "test-guest.kernel", "test-guest.qcow2"}))
        << join(imageVolumes(), ",");
    auto leases = fs::listDir(vmmd->dir() + "/run/qemu");
    if (leases.ok()) {
      EXPECT_TRUE(leases->empty()) << join(*leases, ",");
    }
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
  pid_t pid = spawnVmctl({"run", "--rm", "--image", "test-guest", "--", "sh", "-c", "echo first; sleep 8; echo second"}, outFile);
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

TEST_F(DisposableTest, ExpiredTtlIsReapedAfterARestart) {
  auto r = vmctl({"run", "--ttl", "4s", "--name", "leased", "--image", "test-guest", "--", "true"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto view = rpc->call("domain.get", {{"name", "leased"}});
  ASSERT_TRUE(view.ok());
  EXPECT_EQ((*view)["state"], "running");
  int pid = (*view)["runtime"].value("pid", 0);
  ASSERT_GT(pid, 0) << view->dump();
  // vmmd dies before the lease expires and comes back after it did.
  vmmd->kill9();
  std::this_thread::sleep_for(Millis(4500));
  ASSERT_TRUE(vmmd->restart().ok()) << vmmd->log();
  reconnect();
  EXPECT_TRUE(waitFor([&] { return domainNames().empty(); }, Millis(20000)));
  EXPECT_TRUE(waitFor([&] { return !processAlive(pid); }, Millis(10000)));
  expectNothingLeft();
}

TEST_F(DisposableTest, FourRunsInParallel) {
  auto t0 = SteadyClock::now();
  auto r = vmctl({"run", "--rm", "-j", "4", "--image", "test-guest", "--", "uname", "-r"});
  auto ms = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count();
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  for (int i = 1; i <= 4; ++i) EXPECT_NE(r.out.find("[" + std::to_string(i) + "] "), std::string::npos) << r.out;
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
  std::this_thread::sleep_for(Millis(3000));  // the command is running in the guest
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
  // A URL served on loopback by a child HTTP server.
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

  // Launch without starting, then make a template of it, then launch from the template.
  r = vmctl({"launch", "test-guest", "base", "--no-start"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  r = vmctl({"image", "from-domain", "base", "tmpl"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto img = rpc->call("image.get", {{"name", "tmpl"}});
  ASSERT_TRUE(img.ok());
  EXPECT_EQ((*img)["source"], "domain:base");
  EXPECT_EQ((*img)["template"]["memory"], "256MiB") << img->dump();
  // The base image is in use by "base"'s linked clone: deleting it is refused, nothing changes.
  r = vmctl({"image", "delete", "test-guest"});
  EXPECT_EQ(r.exitCode, 5) << r.out << r.err;
  EXPECT_EQ(vmctl({"rm", "base"}).exitCode, 0);
  EXPECT_EQ(vmctl({"image", "delete", "tmpl"}).exitCode, 0);
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

// An ISO becomes a cdrom image: launched domains boot from it, read-only, with no clone.
TEST_F(DisposableTest, IsoImagesAreAttachedAsCdroms) {
  ASSERT_TRUE(fs::makeDirs(tmp + "/iso").ok());
  ASSERT_TRUE(fs::writeFileAtomic(tmp + "/iso/README", "live\n").ok());
  ASSERT_EQ(run({"genisoimage", "-quiet", "-o", tmp + "/live.iso", "-V", "LIVE", "-R", tmp + "/iso"}), 0);
  auto r = vmctl({"image", "import", "live", tmp + "/live.iso"});
  ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
  auto img = rpc->call("image.get", {{"name", "live"}});
  ASSERT_TRUE(img.ok());
  EXPECT_EQ((*img)["media"], "cdrom");
  EXPECT_EQ((*img)["volume"], "live.iso");
  ASSERT_EQ(vmctl({"launch", "live", "livecd", "--no-start"}).exitCode, 0);
  auto d = rpc->call("domain.get", {{"name", "livecd"}});
  ASSERT_TRUE(d.ok());
  const auto& disks = (*d)["definition"]["disks"];
  ASSERT_EQ(disks.size(), 1u) << d->dump();
  EXPECT_EQ(disks[0]["device"], "cdrom");
  EXPECT_EQ(disks[0]["source"]["volume"], "live.iso");
  EXPECT_EQ((*d)["definition"]["boot"]["order"][0], "cdrom");
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
