// QmpClient and AgentClient against scripted fake peers: the exact JSON QEMU and qemu-ga send
// (../shared/facts/qemu.md), replies out of order, errors, silence and hang-ups.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <functional>
#include <thread>

#include "base/event_loop.h"
#include "base/socket_util.h"
#include "drivers/qemu/agent_client.h"
#include "drivers/qemu/qmp_client.h"

using namespace vmm;
using namespace vmm::drivers::qemu;
using nlohmann::json;

namespace {

const char* kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}})";

// The peer side of a socket: reads lines and answers through a script.
class FakePeer {
 public:
  using Script = std::function<void(FakePeer&, const std::string& line)>;
  FakePeer(int fd, Script script) : fd_(fd), script_(std::move(script)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~FakePeer() {
    hangUp();
    if (thread_.joinable()) thread_.join();
  }
  void send(const std::string& text) { (void)writeAllFd(fd_, text + "\r\n", Deadline::after(Millis(2000))); }
  void sendRaw(const std::string& bytes) { (void)writeAllFd(fd_, bytes, Deadline::after(Millis(2000))); }
  void hangUp() {
    if (!hungUp_.exchange(true)) ::shutdown(fd_, SHUT_RDWR);
  }
  std::vector<std::string> received() {
    std::lock_guard lock(mu_);
    return lines_;
  }

 private:
  void loop() {
    std::string buf;
    char tmp[4096];
    while (true) {
      ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      // A message ends at a newline, or (agent requests carry none) where the buffer holds a
      // whole JSON value - a read can end inside one, right after an inner '}'.
      auto complete = [&] {
        std::string_view v(buf);
        while (!v.empty() && v[0] == '\xff') v.remove_prefix(1);
        return !v.empty() && v.back() == '}' && json::accept(v);
      };
      while ((nl = buf.find('\n')) != std::string::npos || complete()) {
        std::string line = nl == std::string::npos ? buf : buf.substr(0, nl);
        buf.erase(0, nl == std::string::npos ? buf.size() : nl + 1);
        while (!line.empty() && line[0] == '\xff') line.erase(0, 1);
        {
          std::lock_guard lock(mu_);
          lines_.push_back(line);
        }
        script_(*this, line);
      }
    }
    ::close(fd_);
  }

  int fd_;
  Script script_;
  std::thread thread_;
  std::atomic<bool> hungUp_{false};
  std::mutex mu_;
  std::vector<std::string> lines_;
};

struct Pair {
  fs::UniqueFd client;
  int peer = -1;
};
Pair socketPair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Pair p;
  p.client.reset(sv[0]);
  EXPECT_TRUE(setNonBlocking(sv[0]).ok());
  p.peer = sv[1];
  return p;
}

// Answers qmp_capabilities, query-status, and "stop" with an event before its reply.
void standardScript(FakePeer& peer, const std::string& line) {
  auto req = json::parse(line);
  json id = req.value("id", json());
  std::string cmd = req.value("execute", "");
  if (cmd == "qmp_capabilities") peer.send(json{{"return", json::object()}, {"id", id}}.dump());
  else if (cmd == "query-status") peer.send(json{{"return", {{"status", "running"}, {"singlestep", false}, {"running", true}}}, {"id", id}}.dump());
  else if (cmd == "stop") {
    peer.send(R"({"timestamp": {"seconds": 1732291200, "microseconds": 5}, "event": "STOP"})");
    peer.send(json{{"return", json::object()}, {"id", id}}.dump());
  } else if (cmd == "device_del") {
    peer.send(json{{"error", {{"class", "DeviceNotFound"}, {"desc", "Device 'nope' not found"}}}, {"id", id}}.dump());
  } else if (cmd == "silent") {
    // never answers
  }
}

class QmpTest : public ::testing::Test {
 protected:
  void SetUp() override { loop.runInThread(); }
  void TearDown() override {
    loop.stop();
    loop.join();
  }
  EventLoop loop;
};

TEST_F(QmpTest, NegotiatesThenRunsCommandsAndDeliversEvents) {
  auto p = socketPair();
  FakePeer peer(p.peer, standardScript);
  peer.send(kGreeting);
  std::mutex mu;
  std::vector<std::string> events;
  auto qmp = QmpClient::connectFd(
      loop, std::move(p.client), Deadline::after(Millis(2000)),
      [&](const std::string& e, const json&, int64_t ts) {
        std::lock_guard lock(mu);
        events.push_back(e + "@" + std::to_string(ts));
      },
      [](const std::string&) {});
  ASSERT_TRUE(qmp.ok()) << qmp.error().message;
  EXPECT_EQ((*qmp)->qemuVersion(), "7.2.22");
  auto st = (*qmp)->execute("query-status");
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_TRUE((*st)["running"].get<bool>());
  ASSERT_TRUE((*qmp)->execute("stop").ok());
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(events.size(), 1u);  // the event arrived before the reply and was dispatched first
    EXPECT_EQ(events[0], "STOP@1732291200000005");
  }
  auto lines = peer.received();
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines[0])["execute"], "qmp_capabilities");
  EXPECT_TRUE(json::parse(lines[1]).contains("id"));
}

TEST_F(QmpTest, ErrorsNameTheCommandAndTheClass) {
  auto p = socketPair();
  FakePeer peer(p.peer, standardScript);
  peer.send(kGreeting);
  auto qmp = QmpClient::connectFd(loop, std::move(p.client), Deadline::after(Millis(2000)), nullptr, nullptr);
  ASSERT_TRUE(qmp.ok());
  auto r = (*qmp)->execute("device_del", {{"id", "nope"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::not_found);
  EXPECT_NE(r.error().message.find("device_del"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Device 'nope' not found"), std::string::npos) << r.error().message;
}

TEST_F(QmpTest, RepliesOutOfOrderReachTheirCallers) {
  auto p = socketPair();
  std::atomic<int> held{0};
  json firstId;
  FakePeer peer(p.peer, [&](FakePeer& f, const std::string& line) {
    auto req = json::parse(line);
    if (req["execute"] == "qmp_capabilities") return f.send(json{{"return", json::object()}, {"id", req["id"]}}.dump());
    if (held++ == 0) {
      firstId = req["id"];  // hold the first reply back until the second request came
      return;
    }
    f.send(json{{"return", {{"n", 2}}}, {"id", req["id"]}}.dump());
    f.send(json{{"return", {{"n", 1}}}, {"id", firstId}}.dump());
  });
  peer.send(kGreeting);
  auto qmp = QmpClient::connectFd(loop, std::move(p.client), Deadline::after(Millis(2000)), nullptr, nullptr);
  ASSERT_TRUE(qmp.ok());
  auto first = std::async(std::launch::async, [&] { return (*qmp)->execute("a"); });
  while (held.load() == 0) std::this_thread::sleep_for(Millis(1));
  auto second = (*qmp)->execute("b");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)["n"], 2);
  auto r1 = first.get();
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ((*r1)["n"], 1);
}

TEST_F(QmpTest, DeadlinesAndHangUps) {
  // No greeting at all: the connect deadline holds.
  {
    auto p = socketPair();
    FakePeer peer(p.peer, standardScript);
    auto t0 = SteadyClock::now();
    auto qmp = QmpClient::connectFd(loop, std::move(p.client), Deadline::after(Millis(200)), nullptr, nullptr);
    ASSERT_FALSE(qmp.ok());
    EXPECT_EQ(qmp.error().code, ErrorCode::timeout);
    EXPECT_LT(SteadyClock::now() - t0, Millis(1000));
  }
  // A command that is never answered times out; the client stays usable.
  auto p = socketPair();
  FakePeer peer(p.peer, standardScript);
  peer.send(kGreeting);
  std::atomic<bool> closed{false};
  auto qmp = QmpClient::connectFd(loop, std::move(p.client), Deadline::after(Millis(2000)), nullptr,
                                  [&](const std::string&) { closed = true; });
  ASSERT_TRUE(qmp.ok());
  auto silent = (*qmp)->execute("silent", json::object(), Deadline::after(Millis(150)));
  ASSERT_FALSE(silent.ok());
  EXPECT_EQ(silent.error().code, ErrorCode::timeout);
  EXPECT_TRUE((*qmp)->execute("query-status").ok());
  // The monitor goes away during a command: the caller learns at once, not at its deadline.
  auto pending = std::async(std::launch::async, [&] { return (*qmp)->execute("silent", json::object(), Deadline::after(Millis(10000))); });
  std::this_thread::sleep_for(Millis(50));
  auto t0 = SteadyClock::now();
  peer.hangUp();
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_LT(SteadyClock::now() - t0, Millis(2000));
  EXPECT_TRUE(closed.load());
  EXPECT_FALSE((*qmp)->connected());
}

TEST_F(QmpTest, AgentResynchronisesAndRunsExec) {
  std::string dir = "/tmp/vmm-qga-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::shared_ptr<void> removeDir(nullptr, [dir](void*) { (void)fs::removeTree(dir); });
  std::string path = dir + "/qga.sock";
  auto listener = listenUnix(path, 0600);
  ASSERT_TRUE(listener.ok());
  std::unique_ptr<FakePeer> peer;
  std::thread acceptor([&] {
    // The listening socket is non-blocking: wait for the client before accepting it.
    pollfd pfd{listener->get(), POLLIN, 0};
    (void)::poll(&pfd, 1, 3000);
    int fd = ::accept(listener->get(), nullptr, nullptr);
    peer = std::make_unique<FakePeer>(fd, [](FakePeer& f, const std::string& line) {
      auto req = json::parse(line, nullptr, false);
      if (req.is_discarded()) return;
      std::string cmd = req.value("execute", "");
      if (cmd == "guest-sync-delimited") {
        // A stale reply from an earlier client first: it must be skipped.
        f.sendRaw("{\"return\": {\"stale\": true}}\n");
        f.sendRaw("\xff");
        f.send(json{{"return", req["arguments"]["id"]}}.dump());
      } else if (cmd == "guest-exec") {
        f.send(R"({"return": {"pid": 108}})");
      } else if (cmd == "guest-exec-status") {
        // "Linux test-guest\n" in base64, exit code 0
        f.send(R"({"return": {"exitcode": 0, "out-data": "TGludXggdGVzdC1ndWVzdAo=", "out-truncated": false, "exited": true}})");
      } else if (cmd == "guest-ping") {
        f.send(R"({"return": {}})");
      }
    });
  });
  AgentClient agent(loop, path);
  drivers::ExecRequest req;
  req.argv = {"uname", "-n"};
  auto r = agent.exec(req, Deadline::after(Millis(3000)));
  acceptor.join();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exitCode, 0);
  EXPECT_EQ(r->out, "Linux test-guest\n");
  EXPECT_TRUE(agent.call("guest-ping", json::object(), Deadline::after(Millis(1000))).ok());
  auto lines = peer->received();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(json::parse(lines[0])["execute"], "guest-sync-delimited");
  agent.disconnect();
  peer.reset();
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST_F(QmpTest, AgentThatNeverAnswersFailsByTheDeadline) {
  std::string dir = "/tmp/vmm-qga-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::shared_ptr<void> removeDir(nullptr, [dir](void*) { (void)fs::removeTree(dir); });
  std::string path = dir + "/qga.sock";
  auto listener = listenUnix(path, 0600);
  ASSERT_TRUE(listener.ok());
  AgentClient agent(loop, path);
  auto t0 = SteadyClock::now();
  auto r = agent.call("guest-ping", json::object(), Deadline::after(Millis(300)));
  ASSERT_FALSE(r.ok());
  EXPECT_LT(SteadyClock::now() - t0, Millis(1500));
  EXPECT_NE(r.error().message.find("agent"), std::string::npos) << r.error().message;
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
