// A real TCG guest (the test guest) that behaves as an attacker would (the security review's
// test plan items 11 and 12): its command output is not UTF-8, and it kills qemu-ga and answers
// vmmd's agent requests itself with JSON nested 100000 deep. vmmd must report clean results and
// errors, keep the output's exact bytes across a restart, and answer host.info within a second.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <thread>

#include "base/base64.h"
#include "base/fs.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "tests/support/host_tools.h"
#include "tests/support/require.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::guestDir;
using testutil::guestReady;
using testutil::VmmdProcess;
using testutil::waitFor;

namespace {

class HostileGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    VMM_REQUIRE(guestReady(), "the test guest in " << guestDir() << " (run scripts/build-test-guest.sh)");
    auto missing = testutil::missingRoot("QEMU guests");
    VMM_REQUIRE(missing.empty(), missing);
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "qemu"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    reconnect();
  }
  void TearDown() override {
    if (HasFailure() && vmmd) std::cerr << "---- vmmd log (tail) ----\n" << tail(vmmd->log()) << "\n";
    if (vmmd && vmmd->pid() > 0) (void)vmmd->vmctl({"destroy", "g"});
    if (qemuPid > 0 && processAlive(qemuPid)) ::kill(qemuPid, SIGKILL);
    rpc.reset();
    vmmd.reset();
  }
  static std::string tail(const std::string& s) { return s.size() > 6000 ? s.substr(s.size() - 6000) : s; }
  void reconnect() {
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
  }
  // "Alive": host.info answers on a new read-only connection within one second.
  void expectAlive(const std::string& after) {
    auto t0 = SteadyClock::now();
    auto fd = connectUnix(vmmd->roSocketPath(), Deadline::after(Millis(1000)));
    ASSERT_TRUE(fd.ok()) << "vmmd is gone after " << after << ": " << fd.error().message;
    ASSERT_TRUE(writeAllFd(fd->get(), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"host.info\"}\n", Deadline::after(Millis(1000))).ok());
    std::string got;
    char buf[65536];
    while (got.find('\n') == std::string::npos && SteadyClock::now() - t0 < Millis(1000)) {
      auto n = readSome(fd->get(), buf, sizeof buf, Deadline::after(Millis(1000)));
      if (!n.ok() || *n == 0) break;
      got.append(buf, *n);
    }
    EXPECT_LT(SteadyClock::now() - t0, Millis(1000)) << after;
    ASSERT_NE(got.find("\"result\""), std::string::npos) << "no host.info answer after " << after << ": " << got;
  }
  static Result<size_t> readSome(int fd, char* buf, size_t len, Deadline deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, deadline.pollTimeoutMs()) <= 0) return timeoutError("no data");
    ssize_t n = ::read(fd, buf, len);
    if (n < 0) return systemError("read", errno);
    return static_cast<size_t>(n);
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  pid_t qemuPid = -1;
};

TEST_F(HostileGuest, BinaryOutputSurvivesARestartAndADeepAgentReplyIsAnError) {
  json def = {{"name", "g"},
              {"type", "qemu"},
              {"vcpus", 1},
              {"memory", "256MiB"},
              {"boot", {{"kernel", guestDir() + "/vmlinux"}, {"initrd", guestDir() + "/full.cpio"}, {"cmdline", "console=ttyS0 panic=-1 quiet"}}}};
  std::string path = vmmd->dir() + "/g.json";
  ASSERT_TRUE(fs::writeFileAtomic(path, def.dump()).ok());
  ASSERT_EQ(vmmd->vmctl({"define", path}).exitCode, 0);
  auto started = vmmd->vmctl({"start", "g"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  auto info = rpc->call("domain.get", {{"name", "g"}});
  ASSERT_TRUE(info.ok());
  qemuPid = (*info)["runtime"].value("pid", -1);
  // The agent comes up a few seconds after boot under TCG.
  ASSERT_TRUE(waitFor([&] { return vmmd->vmctl({"exec", "g", "--", "true"}).exitCode == 0; }, Millis(60000), Millis(300)))
      << "the guest agent never answered";

  // Item 12: random bytes through vmctl exec, printed exactly.
  auto rnd = vmmd->vmctl({"exec", "g", "--", "head", "-c", "100", "/dev/urandom"});
  ASSERT_EQ(rnd.exitCode, 0) << rnd.err;
  EXPECT_EQ(rnd.out.size(), 100u);
  ASSERT_NO_FATAL_FAILURE(expectAlive("an exec with random output"));

  // Known bytes through the API: text with U+FFFD, and the exact bytes in stdout_b64.
  const std::string bytes("\xff\xfe\x00" "abc\n", 7);
  auto op = rpc->call("domain.exec", {{"name", "g"}, {"command", {"printf", "\\377\\376\\000abc\\n"}}});
  ASSERT_TRUE(op.ok()) << op.error().message;
  std::string opId = (*op)["id"];
  auto done = rpc->waitOperation(*op, Deadline::after(Millis(60000)));
  ASSERT_TRUE(done.ok()) << done.error().message;
  ASSERT_EQ((*done)["status"], "succeeded") << done->dump();
  const json& result = (*done)["result"];
  EXPECT_EQ(result["stdout"], std::string("\xef\xbf\xbd\xef\xbf\xbd\x00" "abc\n", 11));
  ASSERT_TRUE(result.contains("stdout_b64")) << result.dump();
  EXPECT_EQ(*base64Decode(result["stdout_b64"].get<std::string>()), bytes);
  EXPECT_FALSE(result.contains("stderr_b64"));

  // The operation was stored and reads back the same after a restart (the guest keeps running).
  rpc.reset();
  ASSERT_TRUE(vmmd->stop().ok());
  ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
  reconnect();
  auto reread = rpc->call("operation.get", {{"id", opId}});
  ASSERT_TRUE(reread.ok()) << reread.error().message;
  EXPECT_EQ((*reread)["status"], "succeeded");
  EXPECT_EQ(*base64Decode((*reread)["result"]["stdout_b64"].get<std::string>()), bytes);
  auto after = vmmd->vmctl({"exec", "g", "--", "echo", "still-here"});
  ASSERT_EQ(after.exitCode, 0) << after.err;
  EXPECT_EQ(after.out, "still-here\n");

  // Item 11 in a real guest: qemu-ga is killed and the guest answers every request on the
  // agent's port with {"return": [[[... 100000 levels ...]]]} (after a 0xFF resync byte).
  std::string attacker =
      "( sleep 0.5; kill $(pidof qemu-ga); sleep 0.5;"
      "  head -c 100000 /dev/zero | tr '\\000' '[' > /tmp/o; head -c 100000 /dev/zero | tr '\\000' ']' > /tmp/c;"
      "  while :; do printf '\\n\\377{\"return\":'; cat /tmp/o /tmp/c; printf '}\\n'; sleep 0.2; done"
      "  > /dev/virtio-ports/org.qemu.guest_agent.0 ) </dev/null >/dev/null 2>&1 &";
  auto launched = vmmd->vmctl({"exec", "g", "--", "sh", "-c", attacker});
  ASSERT_EQ(launched.exitCode, 0) << launched.err;
  std::this_thread::sleep_for(Millis(3000));  // qemu-ga is gone, the fake answers flow
  bool sawDepth = false;
  for (int i = 0; i < 4; ++i) {
    auto t0 = SteadyClock::now();
    auto r = rpc->call("domain.guest", {{"name", "g"}, {"command", "ping"}, {"timeout", "8s"}});
    EXPECT_LT(SteadyClock::now() - t0, Millis(9000));
    ASSERT_FALSE(r.ok()) << "a ping answered by the attacker succeeded: " << r->dump();
    sawDepth = sawDepth || r.error().message.find("nested deeper than 64 levels") != std::string::npos;
    ASSERT_NO_FATAL_FAILURE(expectAlive("agent replies nested 100000 deep"));
  }
  EXPECT_TRUE(sawDepth) << "the deep reply never reached the agent client's parser";
  EXPECT_NE(vmmd->log().find("ignoring a malformed message from QEMU or its agent"), std::string::npos);
  // The monitor is unaffected: the guest can still be stopped.
  auto destroyed = vmmd->vmctl({"destroy", "g"});
  EXPECT_EQ(destroyed.exitCode, 0) << destroyed.err;
}

}  // namespace
