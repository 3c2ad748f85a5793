// A whole vmmd in the fuzzing process (Daemon with only the test driver, no default pool or
// network, state in a temporary directory, HTTP on a free loopback port), and a line-based
// JSON-RPC client for it. Used by the RPC and HTTP targets.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "base/json_util.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "app/daemon.h"
#include "fuzz/fuzz_util.h"

namespace vmm::fuzz {

// One connection; lines in, lines out, with deadlines.
class RpcConn {
 public:
  explicit RpcConn(const std::string& path) {
    auto fd = connectUnix(path, Deadline::after(Millis(5000)));
    FUZZ_CHECK(fd.ok(), "connect " + path + ": " + (fd.ok() ? "" : fd.error().message));
    fd_ = std::move(*fd);
  }
  int fd() const { return fd_.get(); }
  bool closed() const { return closed_; }
  // Writes everything it can before the deadline; false when the peer closed.
  bool write(std::string_view data, Deadline deadline) {
    while (!data.empty() && !closed_) {
      // A peer that answers while we write must not block us both: read what it sends.
      pollfd p{fd_.get(), POLLOUT | POLLIN, 0};
      if (pollFor(&p, 1, deadline) <= 0) return false;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) readAvailable();
      if (!(p.revents & POLLOUT)) continue;
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        closed_ = true;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return !closed_;
  }
  // The next complete line, or nullopt at the deadline or when the peer closed.
  std::optional<std::string> readLine(Deadline deadline) {
    while (true) {
      auto nl = in_.find('\n');
      if (nl != std::string::npos) {
        std::string line = in_.substr(0, nl);
        in_.erase(0, nl + 1);
        return line;
      }
      if (closed_) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      // libFuzzer's SIGALRM (its -timeout check) interrupts poll(): that is not the deadline.
      if (pollFor(&p, 1, deadline) <= 0) return std::nullopt;
      readAvailable();
    }
  }

 private:
  void readAvailable() {
    char buf[65536];
    while (true) {
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) closed_ = true;
      return;
    }
  }
  fs::UniqueFd fd_;
  std::string in_;
  bool closed_ = false;
};

// A call on connection `c`: the reply's JSON, or nullopt.
inline std::optional<nlohmann::json> rpcCallOn(RpcConn& c, const std::string& method, const nlohmann::json& params,
                                               Millis timeout) {
  nlohmann::json req = {{"jsonrpc", "2.0"}, {"id", "harness"}, {"method", method}, {"params", params}};
  Deadline d = Deadline::after(timeout);
  if (!c.write(dumpJson(req) + "\n", d)) return std::nullopt;
  while (auto line = c.readLine(d)) {
    auto j = parseJson(*line, 1 << 30, 1 << 20);
    if (j.ok() && j->is_object() && jsonStringOr(*j, "id", "") == "harness") return *j;
  }
  return std::nullopt;
}

// A call on a fresh connection.
inline std::optional<nlohmann::json> rpcCall(const std::string& socket, const std::string& method, const nlohmann::json& params,
                                             Millis timeout = Millis(10000)) {
  RpcConn c(socket);
  return rpcCallOn(c, method, params, timeout);
}

struct DaemonHarness {
  std::string dir, socket, roSocket;
  int httpPort = 0;
  std::string readToken, adminToken;
  std::unique_ptr<Daemon> daemon;

  static DaemonHarness& get() {
    static DaemonHarness* h = new DaemonHarness;  // never destroyed: threads outlive main
    return *h;
  }

  // For the message of a failed check: the end of vmmd's log (level warn and above) and, for
  // a stall, where every thread of the process is (gdb's backtraces, when gdb is installed).
  std::string stallReport(size_t bytes = 4000) const {
    std::string text = fs::readFile(dir + "/vmmd.log").valueOr("");
    std::string out = "vmmd's log ends:\n" + (text.size() > bytes ? text.substr(text.size() - bytes) : text);
    out += "\nRPC connections:\n" + daemon->describeRpcConnections();
    std::string stacks = dir + "/stacks.txt";
    std::string cmd = "gdb -p " + std::to_string(::getpid()) +
                      " -batch -nx -ex 'set pagination off' -ex 'thread apply all bt 25' >" + stacks + " 2>&1";
    (void)std::system(cmd.c_str());
    out += "\nthreads:\n" + fs::readFile(stacks).valueOr("(gdb gave nothing)");
    return out;
  }

  // vmmd is alive: host.info answers on a new read-only connection.
  // The report is taken with the connection still open.
  void checkAlive(const std::string& after) {
    RpcConn c(roSocket);
    auto r = rpcCallOn(c, "host.info", nlohmann::json::object(), Millis(15000));
    FUZZ_CHECK(r && r->contains("result"), "vmmd does not answer host.info after " + after + (c.closed() ? " (it closed the connection)" : "") +
                             "\n" + stallReport());
  }

 private:
  DaemonHarness() {
    // Writes to closed sockets return EPIPE; children are reaped through vmmd's signalfd.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    dir = fuzz::tempDir("daemon");
    httpPort = freePort();
    Config c;
    c.stateDir = dir + "/state";
    c.runDir = dir + "/run";
    c.socketPath = c.runDir + "/vmmd.sock";
    c.roSocketPath = c.runDir + "/vmmd-ro.sock";
    c.httpListen = "127.0.0.1:" + std::to_string(httpPort);
    c.drivers = {"test"};
    c.defaultPool = false;
    c.defaultNetwork = false;
    c.syncFull = false;
    c.logLevel = "warn";
    c.logFile = dir + "/vmmd.log";
    c.customizeHelper = "/nonexistent";
    socket = c.socketPath;
    roSocket = c.roSocketPath;
    daemon = std::make_unique<Daemon>(c);
    auto st = daemon->start();
    FUZZ_CHECK(st.ok(), "vmmd did not start: " + (st.ok() ? "" : st.error().message));
    readToken = token("fuzz-read", "read");
    adminToken = token("fuzz-admin", "admin");
    // Something for read calls to find: a running test domain with a snapshot.
    auto created = rpcCall(socket, "domain.create",
                           {{"definition", {{"name", "fz1"}, {"type", "test"}, {"memory", "64MiB"},
                                            {"disks", {{{"source", {{"path", "/nonexistent/fz1.qcow2"}}}}}}}}});
    FUZZ_CHECK(created && created->contains("result"), "domain.create: " + (created ? dumpJson(*created) : "no reply"));
    (void)rpcCall(socket, "domain.start", {{"name", "fz1"}});
  }
  std::string token(const std::string& name, const std::string& role) {
    auto r = rpcCall(socket, "token.create", {{"name", name}, {"role", role}});
    FUZZ_CHECK(r && r->contains("result"), "token.create: " + (r ? dumpJson(*r) : "no reply"));
    return jsonStringOr((*r)["result"], "token", "");
  }
  static int freePort() {
    fs::UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
    socklen_t len = sizeof a;
    ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }
};

}  // namespace vmm::fuzz
