// QEMU monitor and guest agent replies (QEMU and, for the agent, the guest control them):
// QmpClient over a socketpair and AgentClient over a unix socket, each talking to a fake peer
// that answers every request with the next reply of the input ("$ID" in a reply becomes the
// request's id, so well-formed replies are reachable) and hangs up when the input is used up.
// Every call returns by its deadline with a result or an error (never an exception, a crash or
// a hang); successful results have the documented shape and dump as JSON.
#include <fuzzer/FuzzedDataProvider.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "base/event_loop.h"
#include "base/json_util.h"
#include "base/socket_util.h"
#include "drivers/qemu/agent_client.h"
#include "drivers/qemu/qmp_client.h"
#include "fuzz/fuzz_util.h"

using namespace vmm;
using namespace vmm::drivers;
using namespace vmm::drivers::qemu;
using json = nlohmann::json;

namespace {

constexpr Millis kCallTime(100);

EventLoop& loop() {
  static EventLoop* l = [] {
    auto* e = new EventLoop;
    e->runInThread();
    return e;
  }();
  return *l;
}

const char* const kTemplates[] = {
    "{\"return\": {}, \"id\": $ID}\n",
    "{\"return\": {\"status\": \"running\", \"running\": true, \"singlestep\": false}, \"id\": $ID}\n",
    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": $ID}\n",
    "{\"error\": 1, \"id\": $ID}\n",
    "{\"return\": [1], \"id\": $ID}\n",
    "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"id\": \"j1\", \"status\": \"concluded\"}}\n",
    "{\"return\": [{\"id\": \"j1\", \"type\": \"stream\", \"status\": \"concluded\", \"current-progress\": 1, \"total-progress\": 1}], \"id\": $ID}\n",
    "{\"return\": [{\"id\": \"j1\", \"error\": \"failed\", \"status\": \"concluded\"}], \"id\": $ID}\n",
    "\xff{\"return\": $ID}\n",
    "{\"return\": {\"pid\": 42}}\n",
    "{\"return\": {\"exited\": true, \"exitcode\": 3, \"out-data\": \"/w==\", \"err-data\": \"aGk=\"}}\n",
    "{\"return\": {\"exited\": false}}\n",
    "{\"return\": [{\"name\": \"eth0\", \"hardware-address\": \"52:54:00:12:34:56\", \"ip-addresses\": [{\"ip-address\": \"10.0.0.2\", \"ip-address-type\": \"ipv4\", \"prefix\": 24}]}]}\n",
    "{\"return\": 2}\n",
    "{\"return\": {\"count\": 5, \"buf-b64\": \"aGVsbG8=\", \"eof\": true}}\n",
    "{\"return\": 7}\n",
};

// The replies of one run, handed out in order.
struct Script {
  std::vector<std::string> replies;
  size_t next = 0;
  std::string take(const json& id) {
    if (next >= replies.size()) return {};
    std::string r = replies[next++];
    std::string idText = dumpJson(id);
    for (size_t p; (p = r.find("$ID")) != std::string::npos;) r.replace(p, 3, idText);
    return r;
  }
  bool done() const { return next >= replies.size(); }
};

Script readScript(FuzzedDataProvider& fdp) {
  Script s;
  int n = fdp.ConsumeIntegralInRange<int>(0, 12);
  for (int i = 0; i < n && fdp.remaining_bytes(); ++i) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
      case 1: s.replies.push_back(fdp.PickValueInArray(kTemplates)); break;
      case 2: s.replies.push_back(fdp.ConsumeRandomLengthString(4096)); break;
      default: {
        // Deep nesting: what a hostile guest sends to overflow a recursive reader.
        size_t depth = fdp.ConsumeIntegralInRange<size_t>(1, 100000);
        s.replies.push_back("{\"return\": " + std::string(depth, '[') + std::string(depth, ']') + ", \"id\": $ID}\n");
        break;
      }
    }
  }
  return s;
}

// Reads requests (one JSON value each, agent requests may lack a newline and start with 0xFF)
// and answers each with the script's next reply; hangs up when the script is used up.
void servePeer(int fd, Script& script, bool agent) {
  std::string buf;
  char tmp[65536];
  while (true) {
    size_t start = buf.find_first_not_of("\xff\n ");
    if (start != std::string::npos && json::accept(buf.substr(start))) {
      json req = json::parse(buf.substr(start));
      buf.clear();
      json id = req.contains("id") ? req["id"] : json();
      std::string out;
      if (agent && jsonStringOr(req, "execute", "") == "guest-sync-delimited") {
        const json* args = jsonMember(req, "arguments");
        id = args ? args->value("id", json()) : json();
        out = script.done() ? std::string() : "\xff" + dumpJson(json{{"return", id}}) + "\n";
        if (!script.done() && script.replies[script.next].rfind("\xff", 0) == 0) out = script.take(id);
      } else {
        out = script.take(id);
      }
      if (out.empty() || !writeAllFd(fd, out, Deadline::after(Millis(2000))).ok()) break;
      continue;
    }
    if (buf.size() > (1 << 20)) break;
    // With every reply sent, a client that asks nothing more is left waiting: hang up soon.
    if (script.done()) {
      pollfd p{fd, POLLIN, 0};
      if (pollFor(&p, 1, Deadline::after(Millis(5))) <= 0) break;
    }
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  ::shutdown(fd, SHUT_RDWR);
}

template <typename Fn>
void timed(const char* what, Fn fn) {
  auto t0 = SteadyClock::now();
  fn();
  auto took = SteadyClock::now() - t0;
  FUZZ_CHECK(took < kCallTime + Millis(3000), std::string(what) + " overran its deadline: " +
                                                   std::to_string(std::chrono::duration_cast<Millis>(took).count()) + " ms");
}

void fuzzQmp(FuzzedDataProvider& fdp) {
  int sv[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
  Script script;
  if (fdp.ConsumeBool()) {
    script.replies.push_back("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\n");
    script.replies.push_back("{\"return\": {}, \"id\": $ID}\n");
  }
  Script rest = readScript(fdp);
  script.replies.insert(script.replies.end(), rest.replies.begin(), rest.replies.end());
  // The greeting comes unasked: send it first.
  std::thread peer([&, fd = sv[1]] {
    std::string greeting = script.take(json());
    if (!greeting.empty()) (void)writeAllFd(fd, greeting, Deadline::after(Millis(2000)));
    servePeer(fd, script, false);
  });
  std::atomic<int> events{0};
  std::shared_ptr<QmpClient> qmp;
  timed("QMP connect", [&] {
    auto c = QmpClient::connectFd(loop(), fs::UniqueFd(sv[0]), Deadline::after(kCallTime),
                                  [&](const std::string& ev, const json& data, int64_t) {
                                    ++events;
                                    (void)dumpJson(data), (void)ev;
                                  },
                                  [](const std::string&) {});
    if (c.ok()) qmp = *c;
  });
  if (qmp) {
    (void)qmp->qemuVersion();
    timed("query-status", [&] {
      auto r = qmp->execute("query-status", json::object(), Deadline::after(kCallTime));
      if (r.ok()) (void)r->dump();
    });
    timed("query-block", [&] {
      auto r = qmp->execute("query-block", json::object(), Deadline::after(kCallTime));
      if (r.ok()) (void)r->dump();
    });
    timed("runJob", [&] {
      (void)qmp->runJob("block-stream", {{"job-id", "j1"}, {"device", "d0"}, {"auto-dismiss", false}}, "j1",
                        Deadline::after(kCallTime));
    });
    qmp->close();
  }
  ::shutdown(sv[1], SHUT_RDWR);
  peer.join();
  ::close(sv[1]);
}

void fuzzAgent(FuzzedDataProvider& fdp) {
  static std::string dir = fuzz::tempDir("qga");
  std::string path = dir + "/qga.sock";
  ::unlink(path.c_str());
  auto listener = listenUnix(path, 0600);
  FUZZ_CHECK(listener.ok(), "listen");
  FUZZ_CHECK(setNonBlocking(listener->get(), false).ok(), "blocking");
  Script script = readScript(fdp);
  int lfd = listener->get();
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    // The client reconnects after a failed call: serve connections until the script is used up.
    while (!stop) {
      int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      servePeer(fd, script, true);
      ::close(fd);
    }
  });
  {
    AgentClient agent(loop(), path);
    int which = fdp.ConsumeIntegralInRange<int>(0, 3);
    timed("agent call", [&] {
      switch (which) {
        case 0: {
          auto r = agent.call("guest-info", json::object(), Deadline::after(kCallTime));
          if (r.ok()) (void)r->dump();
          break;
        }
        case 1: {
          auto r = agent.interfaces(Deadline::after(kCallTime));
          if (r.ok()) {
            FUZZ_CHECK(r->is_array(), "interfaces is not an array");
            for (const auto& i : *r) FUZZ_CHECK(i.is_object() && jsonString(i, "name"), "interface without a name");
            (void)r->dump();
          }
          break;
        }
        case 2: {
          auto r = agent.freezeFilesystems(fdp.ConsumeBool(), Deadline::after(kCallTime));
          if (r.ok()) FUZZ_CHECK(*r >= 0, "negative filesystem count");
          break;
        }
        default: {
          ExecRequest req;
          req.argv = {"/bin/true"};
          req.input = "in";
          if (fdp.ConsumeBool()) req.onOutput = [](int, std::string_view) {};
          auto r = agent.exec(req, Deadline::after(kCallTime));
          if (r.ok()) {
            json out = json::object();
            addExecOutput(out, *r);
            (void)out.dump();  // strict: the output part is always valid JSON text
          }
          break;
        }
      }
    });
    agent.disconnect();
  }
  stop = true;
  ::shutdown(lfd, SHUT_RDWR);
  peer.join();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 << 10) return 0;
  FuzzedDataProvider fdp(data, size);
  if (fdp.ConsumeBool()) fuzzQmp(fdp);
  else fuzzAgent(fdp);
  return 0;
}
