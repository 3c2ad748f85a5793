// Integration: real QEMU (TCG) guests booted from the test guest (scripts/build-test-guest.sh)
// and driven through a real vmmd with vmctl and libvmmclient.
//
// The whole binary runs in a network namespace of its own (made in main()): the bridges and
// taps the tests create never touch the host's network and vanish with the namespace.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"
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

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

class QemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }

  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
    if (vmmd && vmmd->pid() > 0) {
      auto list = vmmd->vmctl({"list", "-o", "json"});
      auto doms = json::parse(list.out, nullptr, false);
      if (doms.is_array())
        for (const auto& d : doms) (void)vmmd->vmctl({"destroy", d["name"]});
    }
    // Guests that outlived a killed vmmd: stop them by the pids the tests recorded.
    for (pid_t pid : qemuPids)
      if (processAlive(pid)) ::kill(pid, SIGKILL);
    rpc.reset();
    vmmd.reset();
  }

  // A test guest: direct kernel boot of the PVH vmlinux, agent, serial console.
  json guest(const std::string& name, const std::string& extraCmdline = "") {
    std::string cmdline = "console=ttyS0 panic=-1 quiet tg.marker=MARKER-" + name;
    if (!extraCmdline.empty()) cmdline += " " + extraCmdline;
    return {{"name", name},
            {"type", "qemu"},
            {"vcpus", 1},
            {"memory", "256MiB"},
            {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"}, {"cmdline", cmdline}}}};
  }

  VmctlResult vmctl(const std::vector<std::string>& args, const std::string& input = "") { return vmmd->vmctl(args, input); }

  void define(const json& def) {
    std::string path = vmmd->dir() + "/" + def["name"].get<std::string>() + ".json";
    ASSERT_TRUE(fs::writeFileAtomic(path, def.dump()).ok());
    auto r = vmctl({"define", path});
    ASSERT_EQ(r.exitCode, 0) << r.err;
  }

  void startAndWaitForMarker(const std::string& name) {
    auto r = vmctl({"start", name});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    pid_t pid = info(name)["runtime"].value("pid", -1);
    ASSERT_GT(pid, 0);
    qemuPids.insert(pid);
    ASSERT_TRUE(waitFor([&] { return consoleLog(name).find("MARKER-" + name) != std::string::npos; }, Millis(30000)))
        << "no marker on the console:\n" << consoleLog(name);
  }

  json info(const std::string& name) {
    auto r = rpc->call("domain.get", {{"name", name}});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json::object();
  }
  std::string state(const std::string& name) { return info(name).value("state", "?"); }
  std::string consoleLog(const std::string& name) {
    auto r = rpc->call("domain.console_log", {{"name", name}});
    return r.ok() ? (*r)["log"].get<std::string>() : std::string();
  }
  // Runs a command in the guest through the agent (retrying while the agent starts).
  VmctlResult guestRun(const std::string& name, const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"exec", name, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    VmctlResult r;
    waitFor([&] {
      r = vmctl(args);
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(30000), Millis(200));
    return r;
  }
  std::string runDirOf(const std::string& name) { return vmmd->dir() + "/run/qemu/" + name; }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::set<pid_t> qemuPids;
};

// start -> console marker -> agent exec -> suspend/resume -> disk hot-plug seen by the guest
// -> graceful shutdown, with the lifecycle events in order.
TEST_F(QemuTest, FullLifecycleOfARealGuest) {
  define(guest("life"));
  auto events = vmmd->connect();
  ASSERT_TRUE(events.ok());
  auto stream = (*events)->subscribe({"domain"}, "domains/life");
  ASSERT_TRUE(stream.ok()) << stream.error().message;

  startAndWaitForMarker("life");
  EXPECT_EQ(state("life"), "running");
  // KVM when the host offers a usable one (the driver probes it), TCG otherwise.
  auto host = rpc->call("host.info", json::object());
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(info("life")["runtime"].value("accelerator", ""), (*host)["drivers"]["qemu"]["details"].value("accelerator", "?"));

  auto uname = guestRun("life", {"uname", "-a"});
  ASSERT_EQ(uname.exitCode, 0) << uname.err;
  EXPECT_NE(uname.out.find("Linux test-guest"), std::string::npos) << uname.out;
  auto failing = vmctl({"exec", "life", "--", "/bin/sh", "-c", "echo oops >&2; exit 3"});
  EXPECT_EQ(failing.exitCode, 3);
  EXPECT_EQ(failing.err, "oops\n");

  EXPECT_EQ(vmctl({"guest", "life", "ping"}).exitCode, 0);
  auto ifs = vmctl({"guest", "life", "interfaces", "-o", "json"});
  EXPECT_EQ(ifs.exitCode, 0) << ifs.err;
  EXPECT_NE(ifs.out.find("127.0.0.1/8"), std::string::npos) << ifs.out;

  ASSERT_EQ(vmctl({"suspend", "life"}).exitCode, 0);
  EXPECT_EQ(state("life"), "paused");
  ASSERT_EQ(vmctl({"resume", "life"}).exitCode, 0);
  EXPECT_EQ(state("life"), "running");

  // Hot-plug a qcow2 disk: the guest sees a 64 MiB block device.
  std::string disk = vmmd->dir() + "/hot.qcow2";
  ASSERT_EQ(run("qemu-img create -q -f qcow2 " + disk + " 64M"), 0);
  auto attach = vmctl({"attach-disk", "life", disk, "vdb", "--live"});
  ASSERT_EQ(attach.exitCode, 0) << attach.err;
  VmctlResult size;
  ASSERT_TRUE(waitFor([&] {
    size = vmctl({"exec", "life", "--", "cat", "/sys/block/vda/size"});
    return size.exitCode == 0;
  }, Millis(10000), Millis(200))) << size.err;
  EXPECT_EQ(trim(size.out), "131072");  // 512-byte sectors
  auto detach = vmctl({"detach-disk", "life", "vdb", "--live"});
  ASSERT_EQ(detach.exitCode, 0) << detach.err;
  EXPECT_NE(vmctl({"exec", "life", "--", "cat", "/sys/block/vda/size"}).exitCode, 0);

  // Without --live/--config a running domain changes both: the disk stays in the definition.
  ASSERT_EQ(vmctl({"attach-disk", "life", disk, "vdc"}).exitCode, 0);
  EXPECT_NE(vmctl({"dumpjson", "life"}).out.find("hot.qcow2"), std::string::npos);
  EXPECT_TRUE(waitFor([&] { return vmctl({"exec", "life", "--", "test", "-b", "/dev/vda"}).exitCode == 0; }, Millis(10000), Millis(200)));
  ASSERT_EQ(vmctl({"detach-disk", "life", "vdc"}).exitCode, 0);
  EXPECT_EQ(vmctl({"dumpjson", "life"}).out.find("hot.qcow2"), std::string::npos);

  // A hard reset reboots the guest in place: the marker shows up a second time.
  ASSERT_EQ(vmctl({"reset", "life"}).exitCode, 0);
  auto markers = [&] {
    std::string log = consoleLog("life");
    size_t n = 0;
    for (size_t pos = log.find("MARKER-life"); pos != std::string::npos; pos = log.find("MARKER-life", pos + 1)) ++n;
    return n;
  };
  EXPECT_TRUE(waitFor([&] { return markers() == 2; }, Millis(30000))) << consoleLog("life");
  EXPECT_EQ(state("life"), "running");
  EXPECT_EQ(guestRun("life", {"true"}).exitCode, 0);

  auto stats = rpc->call("domain.stats", {{"name", "life"}});
  ASSERT_TRUE(stats.ok());
  EXPECT_GT((*stats).value("cpu_time_ns", uint64_t{0}), 0u);
  EXPECT_GT((*stats)["memory"].value("rss_bytes", uint64_t{0}), 0u);

  // ACPI power button -> the guest powers off; well within the timeout.
  auto t0 = SteadyClock::now();
  auto down = vmctl({"shutdown", "life", "--timeout", "30s"});
  ASSERT_EQ(down.exitCode, 0) << down.err;
  EXPECT_LT(SteadyClock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(state("life"), "shutoff");
  EXPECT_FALSE(fs::exists(runDirOf("life")));

  std::vector<std::string> seen;
  while (true) {
    auto e = (*stream)->next(Deadline::after(Millis(500)));
    if (!e.ok() || !e->has_value()) break;
    const json& ev = **e;
    if (ev["type"] == "domain.lifecycle") seen.push_back(ev["data"]["event"]);
    if (ev["type"] == "domain.device") seen.push_back(ev["data"]["event"]);
  }
  std::vector<std::string> expected = {"starting", "started", "suspended", "resumed", "disk-attached", "disk-detached",
                                       "disk-attached", "disk-detached", "reset", "stopping", "stopped"};
  std::vector<std::string> relevant;
  for (const auto& s : seen)
    if (std::find(expected.begin(), expected.end(), s) != expected.end()) relevant.push_back(s);
  EXPECT_EQ(relevant, expected) << join(seen, ",");
}

TEST_F(QemuTest, VmmdKilledWithTwoGuestsReconnectsToBoth) {
  define(guest("ra"));
  define(guest("rb"));
  startAndWaitForMarker("ra");
  startAndWaitForMarker("rb");
  pid_t pidA = info("ra")["runtime"]["pid"];
  rpc.reset();
  vmmd->kill9();
  EXPECT_TRUE(processAlive(pidA));
  ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  auto c = vmmd->connect();
  ASSERT_TRUE(c.ok());
  rpc = std::move(*c);
  auto list = json::parse(vmctl({"list", "-o", "json"}).out);
  ASSERT_EQ(list.size(), 2u);
  for (const auto& d : list) EXPECT_EQ(d["state"], "running") << d.dump();
  EXPECT_EQ(info("ra")["runtime"]["pid"], pidA);
  // Both controllable: agent, monitor, console.
  EXPECT_EQ(guestRun("ra", {"true"}).exitCode, 0);
  EXPECT_EQ(guestRun("rb", {"true"}).exitCode, 0);
  ASSERT_EQ(vmctl({"suspend", "rb"}).exitCode, 0);
  EXPECT_EQ(state("rb"), "paused");
  ASSERT_EQ(vmctl({"destroy", "ra"}).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return !processAlive(pidA); }, Millis(5000)));
  ASSERT_EQ(vmctl({"destroy", "rb"}).exitCode, 0);
}

TEST_F(QemuTest, GuestDeadWhileVmmdWasDownIsMarkedShutOff) {
  define(guest("gone"));
  startAndWaitForMarker("gone");
  pid_t pid = info("gone")["runtime"]["pid"];
  rpc.reset();
  vmmd->kill9();
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(waitFor([&] { return !processAlive(pid); }, Millis(5000)));
  ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  rpc = std::move(*vmmd->connect());
  EXPECT_EQ(state("gone"), "shutoff");
  EXPECT_FALSE(fs::exists(runDirOf("gone")));
  startAndWaitForMarker("gone");  // and it starts again
}

TEST_F(QemuTest, KilledQemuShutsTheDomainOffAndReleasesItsTap) {
  ASSERT_EQ(run("ip link add vmmtbr0 type bridge && ip link set vmmtbr0 up"), 0);
  json def = guest("crash");
  def["nics"] = {{{"bridge", "vmmtbr0"}, {"mac", "52:54:00:00:00:c1"}}};
  define(def);
  auto events = vmmd->connect();
  auto stream = (*events)->subscribe({"domain.lifecycle"}, "domains/crash");
  ASSERT_TRUE(stream.ok());
  startAndWaitForMarker("crash");
  EXPECT_TRUE(fs::exists("/sys/class/net/vm5254000000c1"));
  EXPECT_TRUE(fs::exists("/sys/class/net/vmmtbr0/brif/vm5254000000c1"));
  pid_t pid = info("crash")["runtime"]["pid"];
  ::kill(pid, SIGKILL);
  bool stopped = false;
  std::string reason;
  auto deadline = Deadline::after(Millis(10000));
  while (!stopped && !deadline.expired()) {
    auto e = (*stream)->next(deadline);
    if (!e.ok() || !e->has_value()) break;
    if ((**e)["data"]["event"] == "crashed") {
      stopped = true;
      reason = (**e)["data"].value("reason", "");
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_NE(reason.find("QEMU ended unexpectedly"), std::string::npos) << reason;
  EXPECT_EQ(state("crash"), "shutoff");
  EXPECT_FALSE(fs::exists("/sys/class/net/vm5254000000c1"));
  EXPECT_FALSE(fs::exists(runDirOf("crash")));
  (void)run("ip link del vmmtbr0");
}

TEST_F(QemuTest, GuestWhoseAgentNeverAnswersDoesNotSlowList) {
  define(guest("mute", "tg.noga=1"));  // the agent channel exists; nobody answers on it
  startAndWaitForMarker("mute");
  auto slow = std::async(std::launch::async, [&] { return vmctl({"exec", "mute", "--timeout", "8s", "--", "true"}); });
  std::this_thread::sleep_for(Millis(300));
  Millis worst(0);
  for (int i = 0; i < 20; ++i) {
    auto t0 = SteadyClock::now();
    auto r = vmctl({"list"});
    worst = std::max(worst, std::chrono::duration_cast<Millis>(SteadyClock::now() - t0));
    EXPECT_EQ(r.exitCode, 0);
  }
  EXPECT_LT(worst.count(), 500) << "list took " << worst.count() << " ms while the agent was stuck";
  auto stats = vmctl({"domstats", "mute"});
  EXPECT_EQ(stats.exitCode, 0) << stats.err;
  auto all = vmctl({"domstats"});
  EXPECT_EQ(all.exitCode, 0) << all.err;
  EXPECT_NE(all.out.find("mute"), std::string::npos) << all.out;
  EXPECT_EQ(vmctl({"suspend", "mute"}).exitCode, 0);  // the monitor is not blocked by the agent
  EXPECT_EQ(vmctl({"resume", "mute"}).exitCode, 0);
  auto r = slow.get();
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("agent"), std::string::npos) << r.err;
}

TEST_F(QemuTest, ConsoleOverRpcAndHttp) {
  define(guest("tty", "tg.shell=1"));
  startAndWaitForMarker("tty");
  // RPC: the socket becomes the console stream.
  auto session = rpc->openConsole("tty");
  ASSERT_TRUE(session.ok()) << session.error().message;
  std::string cmd = "echo RPC-$((20+22))\n";
  ASSERT_TRUE(writeAllFd(session->fd.get(), cmd, Deadline::after(Millis(2000))).ok());
  std::string out = session->initial;
  ASSERT_TRUE(waitFor([&] {
    char buf[4096];
    ssize_t n = ::recv(session->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    return out.find("RPC-42") != std::string::npos;
  }, Millis(10000), Millis(20))) << out;

  // vmctl console with piped input (the interactive path minus the terminal).
  auto r = vmctl({"console", "tty"}, "echo VMCTL-$((1+2))\n");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_TRUE(waitFor([&] { return consoleLog("tty").find("VMCTL-3") != std::string::npos; }, Millis(5000)));

  // HTTP: streamed output, POSTed input, admin token required.
  auto admin = rpc->call("token.create", {{"name", "a"}, {"role", "admin"}});
  auto reader = rpc->call("token.create", {{"name", "r"}, {"role", "read"}});
  ASSERT_TRUE(admin.ok() && reader.ok());
  client::ConnectOptions o;
  o.uri = vmmd->httpUrl();
  o.token = (*reader)["token"];
  auto denied = (*client::connect(o))->openConsole("tty");
  ASSERT_TRUE(denied.ok());
  std::string deniedOut;
  waitFor([&] {
    char buf[512];
    ssize_t n = ::recv(denied->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) deniedOut.append(buf, static_cast<size_t>(n));
    return n == 0;
  }, Millis(5000));
  EXPECT_NE(deniedOut.find("admin token"), std::string::npos) << deniedOut;
  o.token = (*admin)["token"];
  auto http = client::connect(o);
  auto hs = (*http)->openConsole("tty");
  ASSERT_TRUE(hs.ok());
  std::this_thread::sleep_for(Millis(300));  // the GET stream is attached
  ASSERT_TRUE(writeAllFd(hs->fd.get(), "echo HTTP-$((2*4))\n", Deadline::after(Millis(2000))).ok());
  std::string hout;
  EXPECT_TRUE(waitFor([&] {
    char buf[4096];
    ssize_t n = ::recv(hs->fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) hout.append(buf, static_cast<size_t>(n));
    return hout.find("HTTP-8") != std::string::npos;
  }, Millis(10000), Millis(20))) << hout;
}

TEST_F(QemuTest, ManagedSaveAndRestoreKeepTheGuestRunning) {
  define(guest("sv"));
  startAndWaitForMarker("sv");
  ASSERT_EQ(guestRun("sv", {"sh", "-c", "echo kept > /tmp/state"}).exitCode, 0);
  auto r = vmctl({"save", "sv"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(state("sv"), "shutoff");
  EXPECT_TRUE(info("sv").value("managed_save", false));
  ASSERT_EQ(vmctl({"start", "sv"}).exitCode, 0);
  qemuPids.insert(info("sv")["runtime"].value("pid", -1));
  EXPECT_EQ(info("sv")["reason"], "restored");
  EXPECT_FALSE(info("sv").value("managed_save", true));
  auto cat = guestRun("sv", {"cat", "/tmp/state"});
  EXPECT_EQ(cat.out, "kept\n") << cat.err;

  std::string file = vmmd->dir() + "/sv.state";
  ASSERT_EQ(vmctl({"save", "sv", file}).exitCode, 0);
  ASSERT_EQ(vmctl({"restore", "sv", file}).exitCode, 0);
  qemuPids.insert(info("sv")["runtime"].value("pid", -1));
  EXPECT_EQ(guestRun("sv", {"cat", "/tmp/state"}).out, "kept\n");
  // A missing state file is refused and changes nothing.
  ASSERT_EQ(vmctl({"destroy", "sv"}).exitCode, 0);
  auto missing = vmctl({"restore", "sv", vmmd->dir() + "/nope.state"});
  EXPECT_EQ(missing.exitCode, 4) << missing.err;
  EXPECT_EQ(state("sv"), "shutoff");
}

TEST_F(QemuTest, NicHotplugOnABridge) {
  ASSERT_EQ(run("ip link add vmmtbr1 type bridge && ip link set vmmtbr1 up"), 0);
  define(guest("net"));
  startAndWaitForMarker("net");
  auto r = vmctl({"attach-nic", "net", "--bridge", "vmmtbr1", "--mac", "52:54:00:00:00:d1", "--live"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_TRUE(fs::exists("/sys/class/net/vmmtbr1/brif/vm5254000000d1"));
  VmctlResult addr;
  EXPECT_TRUE(waitFor([&] {
    addr = vmctl({"exec", "net", "--", "cat", "/sys/class/net/eth0/address"});
    return addr.exitCode == 0;
  }, Millis(10000), Millis(200)));
  EXPECT_EQ(addr.out, "52:54:00:00:00:d1\n");
  // No bridge of that name: a clear error and nothing left behind.
  auto bad = vmctl({"attach-nic", "net", "--bridge", "nosuchbr", "--mac", "52:54:00:00:00:d2", "--live"});
  EXPECT_EQ(bad.exitCode, 4) << bad.err;
  EXPECT_NE(bad.err.find("nosuchbr"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists("/sys/class/net/vm5254000000d2"));
  ASSERT_EQ(vmctl({"detach-nic", "net", "52:54:00:00:00:d1", "--live"}).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return !fs::exists("/sys/class/net/vm5254000000d1"); }, Millis(5000)));
  (void)run("ip link del vmmtbr1");
}

// Bad input gets a clear error and leaves no process, socket or tap behind.
TEST_F(QemuTest, BadInputLeavesNothingBehind) {
  auto childrenOfVmmd = [&] {
    int n = 0;
    for (const auto& e : fs::listDir("/proc").valueOr({})) {
      if (!std::isdigit(static_cast<unsigned char>(e[0]))) continue;
      auto stat = fs::readFile("/proc/" + e + "/stat", 4096);
      if (!stat.ok()) continue;
      auto fields = split(stat->substr(stat->rfind(')') + 2), ' ');
      if (fields.size() > 1 && fields[1] == std::to_string(vmmd->pid())) ++n;
    }
    return n;
  };
  json missingKernel = guest("nokernel");
  missingKernel["boot"]["kernel"] = "/nonexistent/vmlinux";
  define(missingKernel);
  auto r = vmctl({"start", "nokernel"});
  EXPECT_EQ(r.exitCode, 2) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/vmlinux"), std::string::npos) << r.err;
  EXPECT_EQ(state("nokernel"), "shutoff");

  json missingDisk = guest("nodisk");
  missingDisk["disks"] = {{{"source", {{"path", "/nonexistent/disk.qcow2"}}}}};
  define(missingDisk);
  r = vmctl({"start", "nodisk"});
  EXPECT_EQ(r.exitCode, 2) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/disk.qcow2 does not exist"), std::string::npos) << r.err;

  json badBridge = guest("nobridge");
  badBridge["nics"] = {{{"bridge", "nosuchbr0"}, {"mac", "52:54:00:00:00:e1"}}};
  define(badBridge);
  r = vmctl({"start", "nobridge"});
  EXPECT_NE(r.exitCode, 0);
  EXPECT_NE(r.err.find("nosuchbr0"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists("/sys/class/net/vm5254000000e1"));

  json badMachine = guest("badmachine");
  badMachine["machine"] = "pc-q35-99.9";
  std::string path = vmmd->dir() + "/badmachine.json";
  ASSERT_TRUE(fs::writeFileAtomic(path, badMachine.dump()).ok());
  r = vmctl({"define", path});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("pc-q35-99.9"), std::string::npos) << r.err;

  json badBus = guest("badbus");
  badBus["disks"] = {{{"source", {{"path", "/dev/null"}}}, {"bus", "ide"}}};  // q35 has no IDE
  path = vmmd->dir() + "/badbus.json";
  ASSERT_TRUE(fs::writeFileAtomic(path, badBus.dump()).ok());
  r = vmctl({"define", path});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("no IDE bus"), std::string::npos) << r.err;
  badBus["disks"][0]["bus"] = "floppy";
  ASSERT_TRUE(fs::writeFileAtomic(path, badBus.dump()).ok());
  r = vmctl({"define", path});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("floppy"), std::string::npos) << r.err;

  define(guest("twice"));
  startAndWaitForMarker("twice");
  r = vmctl({"start", "twice"});
  EXPECT_EQ(r.exitCode, 5) << r.err;
  EXPECT_NE(r.err.find("already running"), std::string::npos) << r.err;
  EXPECT_EQ(childrenOfVmmd(), 1);  // only the running guest
  ASSERT_EQ(vmctl({"destroy", "twice"}).exitCode, 0);
  EXPECT_TRUE(waitFor([&] { return childrenOfVmmd() == 0; }, Millis(5000)));
  auto runDir = fs::listDir(vmmd->dir() + "/run/qemu");
  EXPECT_TRUE(!runDir.ok() || runDir->empty()) << join(runDir.valueOr({}), ",");
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (auto missing = vmm::testutil::missingRoot("network and mount namespaces, QEMU with taps"); !missing.empty()) {
    vmm::testutil::requireForAllTests(missing);
    return RUN_ALL_TESTS();
  }
  // A private network namespace for the bridges and taps of these tests, with a sysfs that
  // shows its links (as `ip netns exec` does) in a private mount namespace.
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    std::perror("unshare(CLONE_NEWNET | CLONE_NEWNS)");
    return 1;
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0 || ::umount2("/sys", MNT_DETACH) != 0 ||
      ::mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) {
    std::perror("remounting /sys for the test's network namespace");
    return 1;
  }
  (void)std::system("ip link set lo up");
  return RUN_ALL_TESTS();
}
