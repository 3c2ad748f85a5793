// A fake guest agent and a fake QEMU monitor that answer with hostile replies (the security
// review's test plan item 11): deep JSON, replies of the wrong shape, bytes that are not UTF-8,
// a 64 MiB line. Every call ends with a clean error (or, for binary output, a clean success) in
// well under its deadline, and the client keeps working afterwards.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "base/base64.h"
#include "base/event_loop.h"
#include "base/json_util.h"
#include "base/socket_util.h"
#include "drivers/qemu/agent_client.h"
#include "drivers/qemu/qmp_client.h"
#include "test_util.h"

using namespace vmm;
using namespace vmm::drivers::qemu;
using nlohmann::json;

namespace {

// A qemu-ga stand-in on a unix socket. Requests arrive without newlines (agent style), so a
// request is complete when the buffer holds one JSON value. guest-sync-delimited is answered
// properly; every other command goes to `answer`, which returns the raw bytes to send back.
class FakeAgent {
 public:
  using Answer = std::function<std::string(const std::string& command, const json& request)>;
  FakeAgent(const std::string& path, Answer answer) : answer_(std::move(answer)) {
    auto l = listenUnix(path, 0600);
    EXPECT_TRUE(l.ok());
    listener_ = std::move(*l);
    EXPECT_TRUE(setNonBlocking(listener_.get(), false).ok());  // accept() below waits
    thread_ = std::thread([this] { run(); });
  }
  ~FakeAgent() {
    stop_ = true;
    ::shutdown(listener_.get(), SHUT_RDWR);
    {
      std::lock_guard lock(mu_);
      if (conn_ >= 0) ::shutdown(conn_, SHUT_RDWR);
    }
    thread_.join();
  }
  int connections() const { return connections_; }

 private:
  void run() {
    while (!stop_) {
      int fd = ::accept(listener_.get(), nullptr, nullptr);
      if (fd < 0) return;
      ++connections_;
      {
        std::lock_guard lock(mu_);
        conn_ = fd;
      }
      serve(fd);
      {
        std::lock_guard lock(mu_);
        conn_ = -1;
      }
      ::close(fd);
    }
  }
  void serve(int fd) {
    std::string buf;
    char tmp[65536];
    while (true) {
      ssize_t n = ::read(fd, tmp, sizeof tmp);
      if (n <= 0) return;
      buf.append(tmp, static_cast<size_t>(n));
      while (!buf.empty() && buf[0] == '\xff') buf.erase(0, 1);
      if (buf.empty() || !json::accept(buf)) continue;
      json req = json::parse(buf);
      buf.clear();
      std::string cmd = req.value("execute", "");
      std::string out;
      if (cmd == "guest-sync-delimited") out = "\xff" + json{{"return", req["arguments"]["id"]}}.dump() + "\n";
      else out = answer_(cmd, req);
      if (!writeAllFd(fd, out, Deadline::after(Millis(20000))).ok()) return;
    }
  }

  Answer answer_;
  fs::UniqueFd listener_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  int conn_ = -1;
};

class HostileAgent : public ::testing::Test {
 protected:
  void SetUp() override { loop.runInThread(); }
  void TearDown() override {
    loop.stop();
    loop.join();
  }
  std::string sock() { return dir / "qga.sock"; }
  // Runs `fn` and checks it finished well before its 10 s deadline (6 s: room for a 64 MiB
  // line under a sanitizer on a loaded machine).
  template <typename Fn>
  auto quickly(Fn fn) {
    auto t0 = SteadyClock::now();
    auto r = fn();
    EXPECT_LT(SteadyClock::now() - t0, Millis(6000)) << "the call waited for its deadline instead of failing";
    return r;
  }
  static Deadline soon() { return Deadline::after(Millis(10000)); }

  EventLoop loop;
  testutil::TempDir dir;
};

std::string reply(const json& j) { return j.dump() + "\n"; }

TEST_F(HostileAgent, DeepJsonFailsTheCallAndTheNextCallWorks) {
  std::atomic<int> pings{0};
  FakeAgent agent(sock(), [&](const std::string& cmd, const json&) -> std::string {
    if (cmd == "guest-ping" && pings++ == 0) return "{\"return\":" + std::string(200000, '[') + std::string(200000, ']') + "}\n";
    return reply({{"return", json::object()}});
  });
  AgentClient client(loop, sock());
  auto r = quickly([&] { return client.call("guest-ping", json::object(), soon()); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::internal);
  EXPECT_EQ(r.error().message, "guest agent: malformed reply: message: nested deeper than 64 levels");
  auto again = client.call("guest-ping", json::object(), soon());
  EXPECT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(agent.connections(), 2);  // the channel that sent garbage was dropped
}

TEST_F(HostileAgent, RepliesOfTheWrongShape) {
  std::string next;
  FakeAgent agent(sock(), [&](const std::string&, const json&) { return next; });
  AgentClient client(loop, sock());
  struct Case {
    std::string reply;
    std::string command;
    std::string error;
  };
  std::vector<Case> cases = {
      {R"({"error":1})", "guest-ping", "guest agent: malformed reply: an error reply without a string \"desc\""},
      {R"({"error":{"desc":7}})", "guest-ping", "guest agent: malformed reply: an error reply without a string \"desc\""},
      {R"({"neither":1})", "guest-ping", "guest agent: malformed reply: a reply with neither \"return\" nor \"error\""},
      {R"([1,2])", "guest-ping", "guest agent: malformed reply: the reply is not a JSON object"},
      {R"("x")", "guest-ping", "guest agent: malformed reply: the reply is not a JSON object"},
      {R"({"return":[1]})", "interfaces", "guest agent: malformed reply: guest-network-get-interfaces returned an interface that is not an object"},
      {R"({"return":{"a":1}})", "interfaces", "guest agent: malformed reply: guest-network-get-interfaces did not return an array"},
      {R"({"return":[{"name":"eth0","ip-addresses":{"x":1}}]})", "interfaces", "guest agent: malformed reply: ip-addresses is not an array"},
      {R"({"return":[{"name":"eth0","ip-addresses":[{"ip-address":1,"prefix":"24"}]}]})", "interfaces",
       "guest agent: malformed reply: an ip-addresses entry without ip-address and prefix"},
      {R"({"return":"many"})", "fsfreeze", "guest agent: malformed reply: guest-fsfreeze-freeze did not return a count"},
  };
  for (const auto& c : cases) {
    next = c.reply + "\n";
    Result<json> r = json();
    if (c.command == "interfaces") r = quickly([&] { return client.interfaces(soon()); });
    else if (c.command == "fsfreeze") {
      auto n = quickly([&] { return client.freezeFilesystems(true, soon()); });
      r = n.ok() ? Result<json>(json(*n)) : Result<json>(n.error());
    } else {
      r = quickly([&] { return client.call(c.command, json::object(), soon()); });
    }
    ASSERT_FALSE(r.ok()) << c.reply << " was accepted: " << r->dump();
    EXPECT_EQ(r.error().message, c.error) << c.reply;
  }
  // A well-formed error keeps its class and text; well-formed interfaces come through.
  next = reply({{"error", {{"class", "CommandNotFound"}, {"desc", "no such command"}}}});
  auto r = client.call("guest-ping", json::object(), soon());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unsupported);
  EXPECT_EQ(r.error().message, "guest agent: no such command");
  next = R"({"return":[{"name":"eth0","hardware-address":"52:54:00:00:00:01","ip-addresses":[{"ip-address":"10.0.0.2","prefix":24,"ip-address-type":"ipv4"}]},{"name":"lo"}]})" "\n";
  auto ifs = client.interfaces(soon());
  ASSERT_TRUE(ifs.ok()) << ifs.error().message;
  EXPECT_EQ(*ifs, json::parse(R"([{"name":"eth0","mac":"52:54:00:00:00:01","addresses":["10.0.0.2/24"]},{"name":"lo","mac":"","addresses":[]}])"));
}

TEST_F(HostileAgent, ExecRepliesOfTheWrongShape) {
  std::string started, status;
  FakeAgent agent(sock(), [&](const std::string& cmd, const json&) {
    if (cmd == "guest-exec") return started + "\n";
    return status + "\n";
  });
  AgentClient client(loop, sock());
  drivers::ExecRequest req;
  req.argv = {"/bin/true"};
  std::string okStart = R"({"return":{"pid":42}})";
  struct Case {
    std::string started, status, error;
  };
  std::vector<Case> cases = {
      {R"({"return":{"pid":"42"}})", "", "guest agent: malformed reply: guest-exec returned no numeric pid"},
      {R"({"return":{"pid":-1}})", "", "guest agent: malformed reply: guest-exec returned no numeric pid"},
      {R"({"return":{"pid":1e3}})", "", "guest agent: malformed reply: guest-exec returned no numeric pid"},
      {R"({"return":[1]})", "", "guest agent: malformed reply: guest-exec did not return an object"},
      {okStart, R"({"return":[true]})", "guest agent: malformed reply: guest-exec-status did not return an object"},
      {okStart, R"({"return":{"exited":"yes"}})", "guest agent: malformed reply: exited is not a boolean"},
      {okStart, R"({"return":{"exited":true,"exitcode":"0"}})", "guest agent: malformed reply: exitcode is not an integer in range"},
      {okStart, R"({"return":{"exited":true,"exitcode":4294967296}})", "guest agent: malformed reply: exitcode is not an integer in range"},
      {okStart, R"({"return":{"exited":true,"signal":-9}})", "guest agent: malformed reply: signal is not an integer in range"},
      {okStart, R"({"return":{"exited":true,"out-data":["AAAA"]}})", "guest agent: malformed reply: out-data is not a base64 string"},
      {okStart, R"({"return":{"exited":true,"err-data":"!!not base64!!"}})", "guest agent: malformed reply: err-data is not valid base64"},
      {okStart, R"({"return":{"exited":true,"out-truncated":1}})", "guest agent: malformed reply: out-truncated is not a boolean"},
  };
  for (const auto& c : cases) {
    started = c.started;
    status = c.status;
    auto r = quickly([&] { return client.exec(req, soon()); });
    ASSERT_FALSE(r.ok()) << c.started << " / " << c.status << " was accepted";
    EXPECT_EQ(r.error().message, c.error) << c.started << " / " << c.status;
  }
}

TEST_F(HostileAgent, OutputThatIsNotUtf8ArrivesByteExact) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(255 - i);  // every byte value, 0xff first
  FakeAgent agent(sock(), [&](const std::string& cmd, const json&) {
    if (cmd == "guest-exec") return reply({{"return", {{"pid", 9}}}});
    return reply({{"return", {{"exited", true}, {"exitcode", 0}, {"out-data", base64Encode(bytes)}, {"err-data", base64Encode("\xc0\xaf")}}}});
  });
  AgentClient client(loop, sock());
  drivers::ExecRequest req;
  req.argv = {"head", "-c", "256", "/dev/urandom"};
  auto r = client.exec(req, soon());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->out, bytes);
  EXPECT_EQ(r->err, "\xc0\xaf");
  json out = json::object();
  drivers::addExecOutput(out, *r);
  EXPECT_NO_THROW((void)out.dump());
  EXPECT_EQ(*base64Decode(out["stdout_b64"].get<std::string>()), bytes);
  EXPECT_EQ(out["stderr"], "\xef\xbf\xbd\xef\xbf\xbd");
}

TEST_F(HostileAgent, A64MiBLineClosesTheChannelCleanly) {
  FakeAgent agent(sock(), [&](const std::string& cmd, const json&) -> std::string {
    if (cmd == "guest-ping") return "{\"return\":\"" + std::string((64 << 20) + 16, 'a');  // no end, no newline
    return reply({{"return", json::object()}});
  });
  AgentClient client(loop, sock());
  auto r = quickly([&] { return client.call("guest-ping", json::object(), soon()); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_EQ(r.error().message, "the guest agent channel closed: message larger than 64 MiB");
  auto again = client.call("guest-info", json::object(), soon());
  EXPECT_TRUE(again.ok()) << again.error().message;
}

// ---------------------------------------------------------------- the QEMU monitor

TEST_F(HostileAgent, MonitorMessagesOfTheWrongShapeAreSkipped) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_TRUE(setNonBlocking(sv[0]).ok());
  fs::UniqueFd peer(sv[1]);
  std::atomic<int> events{0};
  std::thread qemu([&] {
    auto send = [&](const std::string& s) { (void)writeAllFd(peer.get(), s + "\n", Deadline::after(Millis(20000))); };
    send(R"({"QMP": 1})");  // a greeting of the wrong shape: still a greeting, no version
    std::string buf;
    char tmp[4096];
    while (true) {
      ssize_t n = ::read(peer.get(), tmp, sizeof tmp);
      if (n <= 0) return;
      buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        json req = json::parse(buf.substr(0, nl));
        buf.erase(0, nl + 1);
        json id = req["id"];
        std::string cmd = req["execute"];
        if (cmd == "qmp_capabilities") {
          send(json{{"return", json::object()}, {"id", id}}.dump());
          continue;
        }
        // Noise before the real answer: every line must be skipped without harm.
        send(R"([1,2,3])");
        send(R"({"event": 5, "data": {"x": 1}})");
        send(R"({"event": "STOP", "timestamp": {"seconds": "x", "microseconds": []}, "data": [1]})");
        send(R"({"event": "RESUME", "timestamp": {"seconds": 1e300}})");
        send(R"({"return": {}, "id": "not-a-number"})");
        send(R"({"return": {}, "id": -1})");
        send("{\"return\": " + std::string(5000, '[') + std::string(5000, ']') + ", \"id\": " + id.dump() + "}");
        send("{\"return\": \"\xff\", \"id\": " + id.dump() + "}");
        if (cmd == "bad-error") send(json{{"error", "just a string"}, {"id", id}}.dump());
        else send(json{{"return", {{"ok", true}}}, {"id", id}}.dump());
      }
    }
  });
  auto qmp = QmpClient::connectFd(
      loop, fs::UniqueFd(sv[0]), Deadline::after(Millis(5000)),
      [&](const std::string&, const json& data, int64_t ts) {
        EXPECT_TRUE(data.is_object());
        EXPECT_EQ(ts, 0);
        ++events;
      },
      nullptr);
  ASSERT_TRUE(qmp.ok()) << qmp.error().message;
  EXPECT_EQ((*qmp)->qemuVersion(), "");
  auto r = (*qmp)->execute("query-status", json::object(), Deadline::after(Millis(5000)));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, json({{"ok", true}}));
  auto e = (*qmp)->execute("bad-error", json::object(), Deadline::after(Millis(5000)));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, "QEMU bad-error: unknown error (malformed error reply)");
  EXPECT_EQ(events.load(), 4);  // STOP and RESUME, twice; the nameless event was dropped
  (*qmp)->close();  // the fake QEMU reads EOF and ends
  qemu.join();
}

}  // namespace
