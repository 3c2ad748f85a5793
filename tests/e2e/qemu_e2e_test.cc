// Integration: real QEMU (TCG) guests booted from the test guest (scripts/build-test-guest.sh)
// and driven through a real vmmd with vmctl and libvmmclient.
//
// The whole binary runs in a network namespace of its own (made in main()): the bridges and
// taps the tests create never touch the host's network and vanish with the namespace.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
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
#include "tests/support/private_netns.h"
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
    if (vmmd) vmmd->destroyAllDomains();
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
    booting.insert(name);
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
  // Runs a command in the guest through the agent. Retried only while the agent of a freshly
  // booted guest comes up: after a vmmd restart or a restore the first call must work.
  VmctlResult guestRun(const std::string& name, const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"exec", name, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    if (!booting.count(name)) return vmctl(args);
    VmctlResult r;
    waitFor([&] {
      r = vmctl(args);
      return r.exitCode == 0 || r.err.find("agent") == std::string::npos;
    }, Millis(30000), Millis(200));
    if (r.exitCode == 0 || r.err.find("agent") == std::string::npos) booting.erase(name);
    return r;
  }
  // Reads what arrives on a console session until `text` shows up (or 10 s pass).
  bool consoleShows(client::ConsoleSession& session, std::string& out, const std::string& text) {
    return waitFor([&] {
      char buf[4096];
      ssize_t n = ::recv(session.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) out.append(buf, static_cast<size_t>(n));
      return out.find(text) != std::string::npos;
    }, Millis(10000), Millis(20));
  }
  // The `domain.shutdown` steps published for `stream`'s domain so far.
  static std::vector<std::string> shutdownSteps(client::EventStream& stream) {
    std::vector<std::string> steps;
    while (true) {
      auto e = stream.next(Deadline::after(Millis(300)));
      if (!e.ok() || !e->has_value()) return steps;
      if ((**e)["type"] == "domain.shutdown") steps.push_back((**e)["data"].value("step", "?"));
    }
  }
  std::string runDirOf(const std::string& name) { return vmmd->dir() + "/run/qemu/" + name; }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::set<pid_t> qemuPids;
  std::set<std::string> booting;  // booted afresh, the agent has not answered yet
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

  // ACPI power button -> the guest powers off (its acpid says so on the console); well within
  // the timeout, before the agent would be asked.
  auto shutdownEvents = vmmd->connect();
  ASSERT_TRUE(shutdownEvents.ok());
  auto steps = (*shutdownEvents)->subscribe({"domain.shutdown"}, "domains/life");
  ASSERT_TRUE(steps.ok()) << steps.error().message;
  auto t0 = SteadyClock::now();
  auto down = vmctl({"shutdown", "life", "--timeout", "30s"});
  ASSERT_EQ(down.exitCode, 0) << down.err;
  EXPECT_LT(SteadyClock::now() - t0, std::chrono::seconds(15));
  EXPECT_EQ(state("life"), "shutoff");
  EXPECT_FALSE(fs::exists(runDirOf("life")));
  EXPECT_EQ(shutdownSteps(**steps), std::vector<std::string>{"acpi"});
  EXPECT_NE(consoleLog("life").find("GUEST-POWERBUTTON"), std::string::npos) << consoleLog("life");
  EXPECT_EQ(consoleLog("life").find("GUEST-SHUTDOWN"), std::string::npos);

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
  define(guest("ra", "tg.shell=1"));
  define(guest("rb"));
  startAndWaitForMarker("ra");
  startAndWaitForMarker("rb");
  // The agents are up before the kill: after it, the first call of each must work.
  ASSERT_EQ(guestRun("ra", {"true"}).exitCode, 0);
  ASSERT_EQ(guestRun("rb", {"true"}).exitCode, 0);
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
  // Both controllable: agent (no retry), console, monitor.
  auto ra = guestRun("ra", {"echo", "agent-a"});
  EXPECT_EQ(ra.exitCode, 0) << ra.err;
  EXPECT_EQ(ra.out, "agent-a\n");
  auto rb = guestRun("rb", {"true"});
  EXPECT_EQ(rb.exitCode, 0) << rb.err;
  // Output the guest produces after the reconnect reaches the stream and the console log the
  // new vmmd keeps, and keyboard input reaches the guest's shell.
  size_t logBefore = consoleLog("ra").size();
  auto session = rpc->openConsole("ra");
  ASSERT_TRUE(session.ok()) << session.error().message;
  ASSERT_TRUE(writeAllFd(session->fd.get(), "echo AFTER-$((6*7))\n", Deadline::after(Millis(2000))).ok());
  std::string out = session->initial;
  EXPECT_TRUE(consoleShows(*session, out, "AFTER-42")) << out;
  EXPECT_TRUE(waitFor([&] { return consoleLog("ra").find("AFTER-42", logBefore) != std::string::npos; }, Millis(5000)))
      << consoleLog("ra").substr(logBefore);
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

  // HTTP: streamed output, POSTed input, operator role required.
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
  EXPECT_NE(deniedOut.find("the console needs the operator role"), std::string::npos) << deniedOut;
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

// shutdown: ACPI, then the agent, then destroy at the timeout (README). Two guests that ignore
// the power button (no acpid): one whose agent powers it off, one with no agent either, which
// is destroyed at the deadline. The steps are events; the guest's console says what reached it.
TEST_F(QemuTest, ShutdownFallsBackToTheAgentThenToDestroy) {
  define(guest("viaga", "tg.noacpi=1"));
  define(guest("viakill", "tg.noacpi=1 tg.noga=1"));
  startAndWaitForMarker("viaga");
  startAndWaitForMarker("viakill");
  ASSERT_EQ(guestRun("viaga", {"true"}).exitCode, 0);  // its agent is up
  auto c1 = vmmd->connect(), c2 = vmmd->connect();
  ASSERT_TRUE(c1.ok() && c2.ok());
  auto gaSteps = (*c1)->subscribe({"domain.shutdown"}, "domains/viaga");
  auto killSteps = (*c2)->subscribe({"domain.shutdown"}, "domains/viakill");
  ASSERT_TRUE(gaSteps.ok() && killSteps.ok());
  size_t logFrom = vmmd->log().size();
  auto timed = [&](const std::string& name, const std::string& timeout) {
    return std::async(std::launch::async, [this, name, timeout] {
      auto t0 = SteadyClock::now();
      auto r = vmctl({"shutdown", name, "--timeout", timeout});
      return std::make_pair(r, std::chrono::duration_cast<Millis>(SteadyClock::now() - t0));
    });
  };
  auto ga = timed("viaga", "10s");
  auto kill = timed("viakill", "6s");
  auto [gaResult, gaTime] = ga.get();
  auto [killResult, killTime] = kill.get();
  std::string log = vmmd->log().substr(logFrom);

  // The agent: after half the timeout on ACPI, before the deadline.
  EXPECT_EQ(gaResult.exitCode, 0) << gaResult.err;
  EXPECT_EQ(state("viaga"), "shutoff");
  EXPECT_EQ(shutdownSteps(**gaSteps), (std::vector<std::string>{"acpi", "agent"}));
  EXPECT_GE(gaTime.count(), 5000);
  EXPECT_LT(gaTime.count(), 10000);
  EXPECT_NE(consoleLog("viaga").find("GUEST-SHUTDOWN -h -P"), std::string::npos) << consoleLog("viaga");
  EXPECT_EQ(consoleLog("viaga").find("GUEST-POWERBUTTON"), std::string::npos);
  EXPECT_EQ(log.find("destroying it\" domain=viaga"), std::string::npos) << log;

  // Neither: destroyed at the deadline.
  EXPECT_EQ(killResult.exitCode, 0) << killResult.err;
  EXPECT_EQ(state("viakill"), "shutoff");
  EXPECT_EQ(shutdownSteps(**killSteps), (std::vector<std::string>{"acpi", "agent", "destroy"}));
  EXPECT_GE(killTime.count(), 6000);
  EXPECT_LT(killTime.count(), 6000 + 15000);
  EXPECT_NE(log.find("destroying it\" domain=viakill"), std::string::npos) << log;
  EXPECT_EQ(consoleLog("viakill").find("GUEST-SHUTDOWN"), std::string::npos);
  EXPECT_EQ(consoleLog("viakill").find("GUEST-POWERBUTTON"), std::string::npos);
  EXPECT_FALSE(fs::exists(runDirOf("viakill")));
}

// domstats: block counters follow what the guest writes to its disk, tap counters what crosses
// its NIC, in the guest's direction (rx: received by the guest).
TEST_F(QemuTest, DomstatsCountBlockAndTapTraffic) {
  ASSERT_EQ(run("ip link add vmmtbr2 type bridge && ip addr add 10.77.0.1/24 dev vmmtbr2 && ip link set vmmtbr2 up"), 0);
  std::string disk = vmmd->dir() + "/stats.qcow2";
  ASSERT_EQ(run("qemu-img create -q -f qcow2 " + disk + " 64M"), 0);
  json def = guest("st", "tg.ip=10.77.0.2/24");
  def["disks"] = {{{"source", {{"path", disk}}}, {"format", "qcow2"}}};
  def["nics"] = {{{"bridge", "vmmtbr2"}, {"mac", "52:54:00:00:00:f1"}}};
  define(def);
  startAndWaitForMarker("st");
  auto stats = [&] {
    auto r = vmctl({"domstats", "st"});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  };
  auto blockOf = [](const json& s, const char* key) {
    for (const auto& b : s.value("block", json::array()))
      if (b.value("target", "") == "vda") return b.value(key, uint64_t{0});
    return uint64_t{0};
  };
  auto netOf = [](const json& s, const char* key) {
    for (const auto& n : s.value("net", json::array()))
      if (n.value("mac", "") == "52:54:00:00:00:f1") return n.value(key, uint64_t{0});
    return uint64_t{0};
  };
  // The guest writes N bytes (synced to the device).
  constexpr uint64_t kWritten = 1 << 20;
  json s0 = stats();
  auto dd = guestRun("st", {"dd", "if=/dev/urandom", "of=/dev/vda", "bs=65536", "count=16", "conv=fsync"});
  ASSERT_EQ(dd.exitCode, 0) << dd.err;
  json s1 = stats();
  EXPECT_GE(blockOf(s1, "wr_bytes"), blockOf(s0, "wr_bytes") + kWritten) << s0.dump() << "\n" << s1.dump();
  EXPECT_GT(blockOf(s1, "wr_reqs"), blockOf(s0, "wr_reqs"));

  // Traffic both ways (ping), then a burst towards the guest only: 100 UDP datagrams of 1400
  // bytes to a closed port (the guest answers a few rate-limited ICMP errors at most).
  auto ping = guestRun("st", {"ping", "-c", "3", "-W", "2", "10.77.0.1"});
  ASSERT_EQ(ping.exitCode, 0) << ping.out << ping.err;
  json s2 = stats();
  EXPECT_GT(netOf(s2, "tx_packets"), netOf(s1, "tx_packets")) << s2.dump();
  EXPECT_GT(netOf(s2, "rx_packets"), netOf(s1, "rx_packets")) << s2.dump();
  EXPECT_GT(netOf(s2, "tx_bytes"), 0u);
  EXPECT_GT(netOf(s2, "rx_bytes"), 0u);
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  ::inet_pton(AF_INET, "10.77.0.2", &to.sin_addr);
  std::string payload(1400, 'x');
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(::sendto(sock, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(payload.size()));
    std::this_thread::sleep_for(Millis(2));
  }
  ::close(sock);
  std::this_thread::sleep_for(Millis(200));
  json s3 = stats();
  ASSERT_GE(netOf(s3, "rx_bytes"), netOf(s2, "rx_bytes"));
  ASSERT_GE(netOf(s3, "tx_bytes"), netOf(s2, "tx_bytes"));
  uint64_t rxDelta = netOf(s3, "rx_bytes") - netOf(s2, "rx_bytes"), txDelta = netOf(s3, "tx_bytes") - netOf(s2, "tx_bytes");
  EXPECT_GE(rxDelta, 100u * 1400) << s2.dump() << "\n" << s3.dump();
  EXPECT_LT(txDelta, rxDelta / 4) << s2.dump() << "\n" << s3.dump();
  EXPECT_GE(netOf(s3, "rx_packets"), netOf(s2, "rx_packets") + 100);
  ASSERT_EQ(vmctl({"destroy", "st"}).exitCode, 0);
  (void)run("ip link del vmmtbr2");
}

// UEFI on QEMU is refused (README support matrix) when the domain is defined, with the
// driver's error on both the CLI and the API, and nothing is left behind.
TEST_F(QemuTest, UefiFirmwareIsRefusedAtDefine) {
  const std::string expected = "boot.firmware: UEFI is not supported by this vmm yet";
  json def = guest("efi");
  def["boot"]["firmware"] = "uefi";
  std::string path = vmmd->dir() + "/efi.json";
  ASSERT_TRUE(fs::writeFileAtomic(path, def.dump()).ok());
  auto r = vmctl({"define", path});
  EXPECT_EQ(r.exitCode, 8) << r.err;  // unsupported
  EXPECT_EQ(r.err, "error: " + expected + "\n");
  auto created = rpc->call("domain.create", {{"definition", def}});
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code, ErrorCode::unsupported);
  EXPECT_EQ(created.error().message, expected);
  auto got = rpc->call("domain.get", {{"name", "efi"}});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::not_found);
  auto all = json::parse(vmctl({"list", "--all", "-o", "json"}).out, nullptr, false);
  EXPECT_TRUE(all.is_array() && all.empty()) << all.dump();
  EXPECT_FALSE(fs::exists(vmmd->dir() + "/state/qemu/efi"));
  EXPECT_FALSE(fs::exists(runDirOf("efi")));
}

}  // namespace

int main(int argc, char** argv) {
  return vmm::testutil::runTestsInPrivateNetworkNamespace(argc, argv, "network and mount namespaces, QEMU with taps");
}
