#include "client/vmmclient.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "client/http_connection.h"

namespace vmm::client {

std::string defaultUri() {
  if (const char* env = getenv("VMM_CONNECT"); env && *env) return env;
  if (geteuid() == 0) return "unix:///run/vmm/vmmd.sock";
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  return "unix://" + (xdg ? std::string(xdg) + "/vmm" : "/tmp/vmm-" + std::to_string(geteuid())) + "/vmmd.sock";
}

Error errorFromWire(const json& e) {
  if (!e.is_object()) return internalError("malformed error from vmmd");
  std::string kind = e.value("kind", "");
  if (kind.empty() && e.contains("data") && e["data"].is_object()) kind = e["data"].value("kind", "");
  std::string message = e.value("message", "unknown error");
  auto code = errorCodeFromName(kind);
  if (!code) {
    int c = e.contains("code") && e["code"].is_number_integer() ? e["code"].get<int>() : 0;
    if (c == -32601) code = ErrorCode::not_found;
    else if (c == -32700 || c == -32600 || c == -32602) code = ErrorCode::invalid_argument;
    else code = ErrorCode::internal;
  }
  return Error{*code, message};
}

Result<json> Connection::waitOperation(const json& operation, Deadline deadline,
                                       const std::function<void(const json&)>& onProgress) {
  json op = operation;
  std::string id = op.value("id", "");
  if (id.empty()) return internalError("vmmd did not return an operation");
  while (true) {
    if (onProgress) onProgress(op);
    std::string status = op.value("status", "");
    if (status == "succeeded" || status == "failed" || status == "cancelled") return op;
    if (deadline.expired()) return timeoutError("operation " + id + " (" + op.value("kind", "") + ") is still " + status);
    // Short waits when progress is being shown, so the bar moves.
    Millis slice = onProgress ? Millis(500) : Millis(30000);
    Millis left = deadline.remaining();
    Millis wait = std::min(slice, left);
    VMM_ASSIGN(op, call("operation.wait", {{"id", id}, {"timeout", std::to_string(wait.count()) + "ms"}}, wait + Millis(30000)));
  }
}

Result<json> Connection::callAndWait(const std::string& method, const json& params, Deadline deadline,
                                     const std::function<void(const json&)>& onProgress) {
  VMM_ASSIGN(auto op, call(method, params));
  if (!op.contains("status") || !op.contains("id")) return op;  // a synchronous answer
  VMM_ASSIGN(auto done, waitOperation(op, deadline, onProgress));
  if (done.value("status", "") != "succeeded") {
    if (done.contains("error") && done["error"].is_object()) {
      Error e = errorFromWire(done["error"]);
      if (done.value("status", "") == "cancelled") e.code = ErrorCode::cancelled;
      return e;
    }
    return internalError("operation " + done.value("id", "") + " " + done.value("status", ""));
  }
  return done.value("result", json());
}

namespace {

// JSON-RPC over the unix socket: one line per message.
class LineSocket {
 public:
  explicit LineSocket(fs::UniqueFd fd) : fd_(std::move(fd)) {}
  Status writeLine(const std::string& text, Deadline deadline) { return writeAllFd(fd_.get(), text + "\n", deadline); }
  // The next line, or nullopt at the deadline.
  Result<std::optional<std::string>> readLine(Deadline deadline) {
    while (true) {
      auto nl = buf_.find('\n', scanned_);
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        scanned_ = 0;
        return std::optional<std::string>(std::move(line));
      }
      scanned_ = buf_.size();
      pollfd p{fd_.get(), POLLIN, 0};
      int rc = ::poll(&p, 1, deadline.pollTimeoutMs());
      if (rc < 0 && errno == EINTR) continue;
      if (rc == 0) return std::optional<std::string>();
      size_t old = buf_.size();
      buf_.resize(old + (256 << 10));
      ssize_t n = ::read(fd_.get(), buf_.data() + old, 256 << 10);
      buf_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return unavailable("vmmd closed the connection");
    }
  }

  // After a switch to a raw stream: what was read beyond the last line, and the socket.
  std::string takeBuffered() { return std::exchange(buf_, std::string()); }
  fs::UniqueFd release() { return std::move(fd_); }

 private:
  fs::UniqueFd fd_;
  std::string buf_;
  size_t scanned_ = 0;  // bytes of buf_ known to hold no newline
};

class RpcEventStream : public EventStream {
 public:
  explicit RpcEventStream(std::unique_ptr<LineSocket> s) : s_(std::move(s)) {}
  Result<std::optional<json>> next(Deadline deadline) override {
    while (true) {
      VMM_ASSIGN(auto line, s_->readLine(deadline));
      if (!line) return std::optional<json>();
      auto msg = json::parse(*line, nullptr, false);
      if (msg.is_discarded() || msg.value("method", "") != "event") continue;
      return std::optional<json>(msg["params"]["event"]);
    }
  }

 private:
  std::unique_ptr<LineSocket> s_;
};

class RpcConnection : public Connection {
 public:
  RpcConnection(std::string path, Millis timeout) : path_(std::move(path)) { defaultTimeout_ = timeout; }

  Status open() {
    auto fd = connectUnix(path_, Deadline::after(Millis(5000)));
    if (!fd.ok()) return unavailable("cannot connect to vmmd at " + path_ + ": " + fd.error().message + " (is vmmd running?)");
    sock_ = std::make_unique<LineSocket>(std::move(*fd));
    return {};
  }

  Result<json> call(const std::string& method, const json& params, Millis timeout) override {
    Deadline deadline = Deadline::after(timeout);
    int64_t id = ++nextId_;
    json req = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
    VMM_TRY(sock_->writeLine(req.dump(-1, ' ', false, json::error_handler_t::replace), deadline));
    while (true) {
      VMM_ASSIGN(auto line, sock_->readLine(deadline));
      if (!line) return timeoutError(method + ": no reply from vmmd within " + formatDuration(timeout));
      auto msg = json::parse(*line, nullptr, false);
      if (msg.is_discarded()) return internalError("vmmd sent invalid JSON");
      if (!msg.contains("id") || msg["id"] != id) continue;  // a notification
      if (msg.contains("error")) return errorFromWire(msg["error"]);
      return msg["result"];
    }
  }

  Result<std::unique_ptr<EventStream>> subscribe(const std::vector<std::string>& types, const std::string& object) override {
    auto fd = connectUnix(path_, Deadline::after(Millis(5000)));
    if (!fd.ok()) return unavailable("cannot connect to vmmd at " + path_ + ": " + fd.error().message);
    auto s = std::make_unique<LineSocket>(std::move(*fd));
    json params = {{"types", types}};
    if (!object.empty()) params["object"] = object;
    Deadline d = Deadline::after(Millis(10000));
    VMM_TRY(s->writeLine(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "events.subscribe"}, {"params", params}}.dump(), d));
    while (true) {
      VMM_ASSIGN(auto line, s->readLine(d));
      if (!line) return timeoutError("vmmd did not confirm the subscription");
      auto msg = json::parse(*line, nullptr, false);
      if (msg.is_discarded() || !msg.contains("id")) continue;
      if (msg.contains("error")) return errorFromWire(msg["error"]);
      break;
    }
    return std::unique_ptr<EventStream>(new RpcEventStream(std::move(s)));
  }

  std::string describe() const override { return "unix://" + path_; }

  Result<ConsoleSession> openConsole(const std::string& domain) override {
    auto fd = connectUnix(path_, Deadline::after(Millis(5000)));
    if (!fd.ok()) return unavailable("cannot connect to vmmd at " + path_ + ": " + fd.error().message);
    auto s = std::make_unique<LineSocket>(std::move(*fd));
    Deadline d = Deadline::after(Millis(15000));
    VMM_TRY(s->writeLine(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "domain.console"}, {"params", {{"name", domain}}}}.dump(), d));
    VMM_ASSIGN(auto line, s->readLine(d));
    if (!line) return timeoutError("vmmd did not answer the console request");
    auto msg = json::parse(*line, nullptr, false);
    if (msg.is_discarded()) return internalError("vmmd sent invalid JSON");
    if (msg.contains("error")) return errorFromWire(msg["error"]);
    ConsoleSession session;
    session.initial = s->takeBuffered();
    session.fd = s->release();
    return session;
  }

 private:
  std::string path_;
  std::unique_ptr<LineSocket> sock_;
  int64_t nextId_ = 0;
};

}  // namespace

Result<std::unique_ptr<Connection>> connect(const ConnectOptions& options) {
  std::string uri = options.uri.empty() ? defaultUri() : options.uri;
  if (startsWith(uri, "http://") || startsWith(uri, "https://")) return connectHttp(uri, options);
  std::string path = startsWith(uri, "unix://") ? uri.substr(7) : uri;
  if (path.empty() || path[0] != '/')
    return invalidArgument("cannot connect to " + quote(uri) + ": expected unix:///path, /path, http:// or https://");
  auto c = std::make_unique<RpcConnection>(path, options.timeout);
  VMM_TRY(c->open());
  return std::unique_ptr<Connection>(std::move(c));
}

}  // namespace vmm::client
