#include "client/vmmclient.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/types/json_text.h"
#include "base/fs.h"
#include "base/json_util.h"
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

bool projectScoped(const std::string& method) {
  for (const char* prefix : {"domain.", "snapshot.", "volume.", "image.", "operation."})
    if (startsWith(method, prefix)) return true;
  return false;
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

Result<json> Connection::call(const std::string& method, const json& params, Millis timeout) {
  VMM_ASSIGN(auto text, callText(method, params, timeout));
  // Nesting is capped: a hostile peer's reply must not exhaust the stack.
  auto reply = parseJson(text, text.size(), kStoredJsonDepth, "vmmd's reply");
  if (!reply.ok()) return internalError("vmmd sent invalid JSON");
  return std::move(*reply);
}

Result<std::vector<wire::DomainSummary>> listDomains(Connection& c, const DomainListRequest& request) {
  json p = json::object();
  if (request.activeOnly) p["active"] = true;
  if (!request.state.empty()) p["state"] = request.state;
  if (!request.type.empty()) p["type"] = request.type;
  if (!request.label.empty()) p["label"] = request.label;
  if (request.allProjects) p["all_projects"] = true;
  if (request.fields != wire::kAllSummaryFields) {
    std::string names;
    for (size_t i = 0; i < wire::kSummaryFieldNames.size(); ++i)
      if (request.fields & (1u << i)) names += (names.empty() ? "" : ",") + std::string(wire::kSummaryFieldNames[i]);
    p["fields"] = names;
  }
  VMM_ASSIGN(auto text, c.callText("domain.list", p, Millis(300000)));
  return wire::parseDomainSummaries(text);
}

namespace {

// `params` with "project" added, unless the call names its own project or spans all of them.
json inProject(const json& params, const std::string& project) {
  if (project.empty() || !params.is_object() || params.contains("project") || params.value("all_projects", json()) == true)
    return params;
  json p = params;
  p["project"] = project;
  return p;
}

// Adds ConnectOptions::project to the calls on a project's objects, whatever the transport.
// Subscriptions and streams name it in each transport's own way (RpcConnection, HttpConnection).
class ProjectConnection : public Connection {
 public:
  ProjectConnection(std::unique_ptr<Connection> inner, std::string project, Millis timeout)
      : inner_(std::move(inner)), project_(std::move(project)) {
    defaultTimeout_ = timeout;
  }
  Result<std::string> callText(const std::string& method, const json& params, Millis timeout) override {
    return inner_->callText(method, projectScoped(method) ? inProject(params, project_) : params, timeout);
  }
  Result<std::unique_ptr<EventStream>> subscribe(const std::vector<std::string>& types, const std::string& object) override {
    return inner_->subscribe(types, object);
  }
  std::string describe() const override { return inner_->describe(); }
  Result<ConsoleSession> openConsole(const std::string& domain) override {
    return inner_->openConsole(domain);
  }
  Result<json> uploadVolume(const std::string& pool, const std::string& name, int fd, uint64_t size,
                            const TransferProgress& progress) override {
    return inner_->uploadVolume(pool, name, fd, size, progress);
  }
  Result<uint64_t> downloadVolume(const std::string& pool, const std::string& name, int fd,
                                  const TransferProgress& progress) override {
    return inner_->downloadVolume(pool, name, fd, progress);
  }

 private:
  std::unique_ptr<Connection> inner_;
  std::string project_;
};

// JSON-RPC over the unix socket: one line per message.
class LineSocket {
 public:
  explicit LineSocket(fs::UniqueFd fd) : fd_(std::move(fd)) {}
  Status writeLine(const std::string& text, Deadline deadline) {
    auto written = writeAllFd(fd_.get(), text + "\n", deadline);
    if (!written.ok())
      if (auto refusal = refusalReason()) return *refusal;
    return written;
  }
  Status writeRaw(std::string_view data, Deadline deadline) { return writeAllFd(fd_.get(), data, deadline); }
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

  // vmmd answers a connection it refuses (no role, too many connections) with one error line
  // and closes it, so a write fails: the reason is that line, when it came.
  std::optional<Error> refusalReason() {
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return std::nullopt;
    std::string_view text(buf, static_cast<size_t>(n));
    auto msg = json::parse(text.substr(0, text.find('\n')), nullptr, false);
    if (!msg.is_object() || !msg.contains("error") || !msg["error"].is_object()) return std::nullopt;
    return errorFromWire(msg["error"]);
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
  RpcConnection(std::string path, Millis timeout, std::string project) : path_(std::move(path)), project_(std::move(project)) {
    defaultTimeout_ = timeout;
  }

  Status open() {
    auto fd = connectUnix(path_, Deadline::after(Millis(5000)));
    if (!fd.ok()) return unavailable("cannot connect to vmmd at " + path_ + ": " + fd.error().message + " (is vmmd running?)");
    sock_ = std::make_unique<LineSocket>(std::move(*fd));
    return {};
  }

  Result<std::string> callText(const std::string& method, const json& params, Millis timeout) override {
    Deadline deadline = Deadline::after(timeout);
    int64_t id = ++nextId_;
    json req = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
    VMM_TRY(sock_->writeLine(req.dump(-1, ' ', false, json::error_handler_t::replace), deadline));
    while (true) {
      VMM_ASSIGN(auto line, sock_->readLine(deadline));
      if (!line) return timeoutError(method + ": no reply from vmmd within " + formatDuration(timeout));
      auto reply = wire::splitRpcReply(std::move(*line));
      if (!reply.ok()) return internalError("vmmd sent invalid JSON");
      auto errorOf = [](std::string_view text) {
        auto e = parseJson(text, text.size(), kStoredJsonDepth, "vmmd's error");
        return e.ok() && e->is_object() ? errorFromWire(*e) : internalError("vmmd sent an invalid error");
      };
      // An error without an id is about the connection itself (vmmd refused it).
      if (reply->idIsNull && !reply->error.empty()) return errorOf(reply->error);
      if (reply->isNotification || !reply->hasId || reply->idIsNull || reply->id != id) continue;
      if (!reply->error.empty()) return errorOf(reply->error);
      if (reply->result.empty()) return internalError("vmmd sent a reply without a result");
      return std::move(reply->result);
    }
  }

  Result<std::unique_ptr<EventStream>> subscribe(const std::vector<std::string>& types, const std::string& object) override {
    auto fd = connectUnix(path_, Deadline::after(Millis(5000)));
    if (!fd.ok()) return unavailable("cannot connect to vmmd at " + path_ + ": " + fd.error().message);
    auto s = std::make_unique<LineSocket>(std::move(*fd));
    json params = inProject({{"types", types}}, project_);
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

 private:
  // A stream method on its own connection: the reply's result, and the socket that carries
  // the bytes after it.
  Result<std::pair<json, std::unique_ptr<LineSocket>>> openStream(const std::string& method, const json& params) {
    auto fd = connectUnix(path_, Deadline::after(Millis(5000)));
    if (!fd.ok()) return unavailable("cannot connect to vmmd at " + path_ + ": " + fd.error().message);
    auto s = std::make_unique<LineSocket>(std::move(*fd));
    Deadline d = Deadline::after(Millis(30000));
    json req = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", inProject(params, project_)}};
    VMM_TRY(s->writeLine(req.dump(), d));
    VMM_ASSIGN(auto line, s->readLine(d));
    if (!line) return timeoutError("vmmd did not answer " + method);
    auto msg = json::parse(*line, nullptr, false);
    if (msg.is_discarded()) return internalError("vmmd sent invalid JSON");
    if (msg.contains("error")) return errorFromWire(msg["error"]);
    return std::make_pair(msg["result"], std::move(s));
  }

 public:

  Result<ConsoleSession> openConsole(const std::string& domain) override {
    VMM_ASSIGN(auto s, openStream("domain.console", {{"name", domain}}));
    ConsoleSession session;
    session.initial = s.second->takeBuffered();
    session.fd = s.second->release();
    return session;
  }

  Result<json> uploadVolume(const std::string& pool, const std::string& name, int fd, uint64_t size,
                            const TransferProgress& progress) override {
    VMM_ASSIGN(auto s, openStream("volume.upload", {{"pool", pool}, {"name", name}, {"size", size}}));
    std::vector<char> buf(1 << 20);
    for (uint64_t done = 0; done < size;) {
      ssize_t n = ::read(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return systemError("reading the upload's source", errno);
      if (n == 0) return invalidArgument("the source ended after " + std::to_string(done) + " of " + std::to_string(size) + " bytes");
      auto st = s.second->writeRaw(std::string_view(buf.data(), static_cast<size_t>(n)), Deadline::after(Millis(120000)));
      if (!st.ok()) {
        // vmmd stopped reading: it says why in its result line.
        auto line = s.second->readLine(Deadline::after(Millis(2000)));
        if (line.ok() && *line) {
          auto msg = json::parse(**line, nullptr, false);
          if (!msg.is_discarded() && msg.contains("error")) return errorFromWire(msg["error"]);
        }
        return st.error();
      }
      done += static_cast<uint64_t>(n);
      if (progress) progress(done, size);
    }
    // vmmd answers once the bytes are safely in the volume.
    VMM_ASSIGN(auto line, s.second->readLine(Deadline::after(Millis(600000))));
    if (!line) return unavailable("vmmd closed the upload without a result");
    auto msg = json::parse(*line, nullptr, false);
    if (msg.is_discarded()) return internalError("vmmd sent invalid JSON");
    if (msg.contains("error")) return errorFromWire(msg["error"]);
    return msg["result"];
  }

  Result<uint64_t> downloadVolume(const std::string& pool, const std::string& name, int fd,
                                  const TransferProgress& progress) override {
    VMM_ASSIGN(auto s, openStream("volume.download", {{"pool", pool}, {"name", name}}));
    uint64_t size = s.first.value("size", uint64_t{0});
    std::string first = s.second->takeBuffered();
    auto sock = s.second->release();
    uint64_t done = 0;
    auto sink = [&](const char* data, size_t len) -> Status {
      if (done + len > size) return internalError("vmmd sent more bytes than announced");
      VMM_TRY(writeAllFd(fd, std::string_view(data, len), Deadline::after(Millis(120000))));
      done += len;
      if (progress) progress(done, size);
      return {};
    };
    if (!first.empty()) VMM_TRY(sink(first.data(), first.size()));
    std::vector<char> buf(1 << 20);
    while (done < size) {
      ssize_t n = ::read(sock.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return systemError("reading the download", errno);
      if (n == 0) return unavailable("the download ended after " + std::to_string(done) + " of " + std::to_string(size) + " bytes");
      VMM_TRY(sink(buf.data(), static_cast<size_t>(n)));
    }
    return done;
  }

 private:
  std::string path_;
  std::string project_;  // of event subscriptions and streams (consoles, volume transfers)
  std::unique_ptr<LineSocket> sock_;
  int64_t nextId_ = 0;
};

}  // namespace

Result<std::unique_ptr<Connection>> connect(const ConnectOptions& options) {
  std::string uri = options.uri.empty() ? defaultUri() : options.uri;
  std::unique_ptr<Connection> c;
  bool http = startsWith(uri, "http://") || startsWith(uri, "https://");
  if (http) {
    VMM_ASSIGN(c, connectHttp(uri, options));
  } else {
    std::string path = startsWith(uri, "unix://") ? uri.substr(7) : uri;
    if (path.empty() || path[0] != '/')
      return invalidArgument("cannot connect to " + quote(uri) + ": expected unix:///path, /path, http:// or https://");
    auto rpc = std::make_unique<RpcConnection>(path, options.timeout, options.project);
    VMM_TRY(rpc->open());
    c = std::move(rpc);
  }
  if (options.project.empty()) return c;
  return std::unique_ptr<Connection>(new ProjectConnection(std::move(c), options.project, options.timeout));
}

}  // namespace vmm::client
