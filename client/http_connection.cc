#include "client/http_connection.h"

#include <httplib.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "api/spec.h"
#include "base/socket_util.h"
#include "base/strings.h"

namespace vmm::client {

namespace {

std::string encodePathSegment(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') out += static_cast<char>(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string queryText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

std::unique_ptr<httplib::Client> makeClient(const std::string& uri, const ConnectOptions& o, Millis timeout) {
  auto cli = o.clientCert.empty() ? std::make_unique<httplib::Client>(uri)
                                  : std::make_unique<httplib::Client>(uri, o.clientCert, o.clientKey.empty() ? o.clientCert : o.clientKey);
  cli->set_keep_alive(true);
  cli->set_tcp_nodelay(true);
  cli->set_connection_timeout(5, 0);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 1;
  cli->set_read_timeout(secs, 0);
  cli->set_write_timeout(30, 0);
  if (!o.token.empty()) cli->set_bearer_token_auth(o.token.c_str());
  if (startsWith(uri, "https://")) {
    if (!o.caCert.empty()) cli->set_ca_cert_path(o.caCert.c_str());
    cli->enable_server_certificate_verification(!o.insecure);
  }
  return cli;
}

class SseStream : public EventStream {
 public:
  SseStream(std::string uri, ConnectOptions o, std::string path) {
    cli_ = makeClient(uri, o, Millis(24LL * 3600 * 1000));
    thread_ = std::thread([this, path] {
      auto res = cli_->Get(path.c_str(), [this](const char* data, size_t len) {
        std::lock_guard lock(mu_);
        if (closing_) return false;
        buf_.append(data, len);
        size_t pos;
        while ((pos = buf_.find("\n\n")) != std::string::npos) {
          std::string block = buf_.substr(0, pos);
          buf_.erase(0, pos + 2);
          for (const auto& line : split(block, '\n')) {
            if (startsWith(line, "data: ")) {
              auto ev = json::parse(line.substr(6), nullptr, false);
              if (!ev.is_discarded()) queue_.push_back(ev);
            }
          }
        }
        cv_.notify_all();
        return true;
      });
      std::lock_guard lock(mu_);
      ended_ = true;
      if (!res) endReason_ = "cannot stream events: " + httplib::to_string(res.error());
      else if (res->status != 200) endReason_ = "events request failed with HTTP " + std::to_string(res->status) + ": " + res->body;
      else endReason_ = "the event stream ended";
      cv_.notify_all();
    });
  }
  ~SseStream() override {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cli_->stop();
    if (thread_.joinable()) thread_.join();
  }
  Result<std::optional<json>> next(Deadline deadline) override {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline.at(), [&] { return !queue_.empty() || ended_; });
    if (!queue_.empty()) {
      auto e = std::move(queue_.front());
      queue_.pop_front();
      return std::optional<json>(std::move(e));
    }
    if (ended_) return unavailable(endReason_);
    return std::optional<json>();
  }

 private:
  std::unique_ptr<httplib::Client> cli_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<json> queue_;
  std::string buf_;
  bool ended_ = false, closing_ = false;
  std::string endReason_;
};

// The HTTP console: a socketpair whose far end two threads serve - one copies the streamed
// GET's body into it, one POSTs whatever is written to it.
class HttpConsoleRelay {
 public:
  HttpConsoleRelay(const std::string& uri, const ConnectOptions& o, std::string path, fs::UniqueFd end)
      : end_(std::move(end)) {
    output_ = makeClient(uri, o, Millis(24LL * 3600 * 1000));
    input_ = makeClient(uri, o, Millis(30000));
    reader_ = std::thread([this, path] {
      auto res = output_->Get(path.c_str(), [this](const char* data, size_t len) {
        return !stop_ && writeAllFd(end_.get(), std::string_view(data, len), Deadline::after(Millis(30000))).ok();
      });
      if (res && res->status >= 400) {
        auto reply = json::parse(res->body, nullptr, false);
        std::string msg = "\r\nconsole: " + (!reply.is_discarded() && reply.contains("error") ? reply["error"].value("message", "") : "HTTP " + std::to_string(res->status)) + "\r\n";
        (void)writeAllFd(end_.get(), msg, Deadline::after(Millis(1000)));
      }
      ::shutdown(end_.get(), SHUT_RDWR);  // the session is over: the reader sees EOF
    });
    writer_ = std::thread([this, path] {
      char buf[4096];
      while (!stop_) {
        ssize_t n = ::read(end_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        auto res = input_->Post(path.c_str(), std::string(buf, static_cast<size_t>(n)), "application/octet-stream");
        if (!res || res->status >= 400) break;
      }
    });
  }
  ~HttpConsoleRelay() {
    stop_ = true;
    ::shutdown(end_.get(), SHUT_RDWR);
    output_->stop();
    input_->stop();
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
  }

 private:
  fs::UniqueFd end_;
  std::unique_ptr<httplib::Client> output_, input_;
  std::thread reader_, writer_;
  std::atomic<bool> stop_{false};
};

class HttpConnection : public Connection {
 public:
  HttpConnection(std::string uri, ConnectOptions o) : uri_(std::move(uri)), options_(std::move(o)) {
    defaultTimeout_ = options_.timeout;
    cli_ = makeClient(uri_, options_, Millis(3600000));
  }

  Result<std::string> callText(const std::string& method, const json& params, Millis timeout) override {
    const api::OperationSpec* spec = api::findSpec(method);
    if (!spec || !spec->http) return notFound("unknown method " + quote(method));
    const auto& route = *spec->http;
    std::string path = route.path;
    std::vector<std::string> query;
    json body = json::object();
    bool haveBody = false;
    for (auto it = params.begin(); it != params.end(); ++it) {
      const api::ParamSpec* p = nullptr;
      for (const auto& ps : spec->params)
        if (ps.name == it.key()) p = &ps;
      if (!p) return invalidArgument(it.key() + ": unknown parameter of " + method);
      if (p->in == api::ParamIn::path) {
        std::string token = "{" + p->name + "}";
        auto pos = path.find(token);
        if (pos != std::string::npos) path.replace(pos, token.size(), encodePathSegment(queryText(*it)));
      } else if (p->in == api::ParamIn::query) {
        query.push_back(p->name + "=" + httplib::detail::encode_query_param(queryText(*it)));
      } else if (p->name == route.bodyParam) {
        body = *it;
        haveBody = true;
      } else {
        body[it.key()] = *it;
        haveBody = true;
      }
    }
    if (path.find('{') != std::string::npos) return invalidArgument(method + ": a path parameter is missing");
    if (!query.empty()) path += "?" + join(query, "&");
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 1;
    cli_->set_read_timeout(secs, 0);
    std::string text = haveBody ? body.dump(-1, ' ', false, json::error_handler_t::replace) : "";
    httplib::Result res{nullptr, httplib::Error::Unknown};
    if (route.method == "GET") res = cli_->Get(path.c_str());
    else if (route.method == "POST") res = cli_->Post(path.c_str(), text, "application/json");
    else if (route.method == "PUT") res = cli_->Put(path.c_str(), text, "application/json");
    else if (route.method == "DELETE") res = haveBody ? cli_->Delete(path.c_str(), text, "application/json") : cli_->Delete(path.c_str());
    else return internalError("unsupported HTTP method " + route.method);
    if (!res) {
      auto err = res.error();
      if (err == httplib::Error::Read) return timeoutError(method + ": no reply from vmmd within " + formatDuration(timeout));
      return unavailable("cannot reach vmmd at " + uri_ + ": " + httplib::to_string(err));
    }
    if (res->status >= 400) {
      auto reply = json::parse(res->body, nullptr, false);
      if (!reply.is_discarded() && reply.contains("error")) return errorFromWire(reply["error"]);
      return Error{res->status == 401 ? ErrorCode::unauthenticated : ErrorCode::internal,
                   "HTTP " + std::to_string(res->status) + " from vmmd"};
    }
    return std::move(res->body);
  }

  Result<std::unique_ptr<EventStream>> subscribe(const std::vector<std::string>& types, const std::string& object) override {
    std::string path = "/v1/events";
    std::vector<std::string> q;
    if (!types.empty()) q.push_back("types=" + httplib::detail::encode_query_param(join(types, ",")));
    if (!object.empty()) q.push_back("object=" + httplib::detail::encode_query_param(object));
    if (!options_.project.empty()) q.push_back("project=" + httplib::detail::encode_query_param(options_.project));
    if (!q.empty()) path += "?" + join(q, "&");
    return std::unique_ptr<EventStream>(new SseStream(uri_, options_, path));
  }

  std::string describe() const override { return uri_; }

  Result<json> uploadVolume(const std::string& pool, const std::string& name, int fd, uint64_t size,
                            const TransferProgress& progress) override {
    std::string path = contentPath(pool, name);
    std::optional<Error> failed;
    auto cli = makeClient(uri_, options_, Millis(600000));
    std::vector<char> buf(1 << 20);
    auto res = cli->Put(
        path.c_str(), static_cast<size_t>(size),
        [&](size_t offset, size_t length, httplib::DataSink& sink) {
          ssize_t n = ::read(fd, buf.data(), std::min(length, buf.size()));
          if (n < 0 && errno == EINTR) return true;
          if (n <= 0) {
            failed = n < 0 ? systemError("reading the upload's source", errno)
                           : invalidArgument("the source ended after " + std::to_string(offset) + " of " + std::to_string(size) + " bytes");
            return false;
          }
          if (!sink.write(buf.data(), static_cast<size_t>(n))) return false;
          if (progress) progress(offset + static_cast<uint64_t>(n), size);
          return true;
        },
        "application/octet-stream");
    if (failed) return *failed;
    return replyOf(res, "upload");
  }

  Result<uint64_t> downloadVolume(const std::string& pool, const std::string& name, int fd,
                                  const TransferProgress& progress) override {
    auto cli = makeClient(uri_, options_, Millis(600000));
    uint64_t done = 0, total = 0;
    int status = 0;
    std::string errorBody;
    std::optional<Error> failed;
    auto res = cli->Get(
        contentPath(pool, name).c_str(),
        [&](const httplib::Response& r) {
          status = r.status;
          total = parseUint(r.get_header_value("Content-Length")).value_or(0);
          return true;
        },
        [&](const char* data, size_t len) {
          if (status >= 400) {
            errorBody.append(data, len);
            return errorBody.size() < (1 << 20);
          }
          auto st = writeAllFd(fd, std::string_view(data, len), Deadline::after(Millis(120000)));
          if (!st.ok()) {
            failed = st.error();
            return false;
          }
          done += len;
          if (progress) progress(done, total);
          return true;
        });
    if (failed) return *failed;
    if (!res) return unavailable("download from " + uri_ + " failed after " + std::to_string(done) + " bytes: " + httplib::to_string(res.error()));
    if (status >= 400) {
      auto reply = json::parse(errorBody, nullptr, false);
      if (!reply.is_discarded() && reply.contains("error")) return errorFromWire(reply["error"]);
      return internalError("HTTP " + std::to_string(status) + " from vmmd");
    }
    if (done != total) return unavailable("the download ended after " + std::to_string(done) + " of " + std::to_string(total) + " bytes");
    return done;
  }

  Result<ConsoleSession> openConsole(const std::string& domain) override {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return systemError("socketpair", errno);
    ConsoleSession session;
    session.fd.reset(sv[0]);
    std::string path = "/v1/domains/" + encodePathSegment(domain) + "/console" + projectQuery();
    session.transport = std::make_shared<HttpConsoleRelay>(uri_, options_, path, fs::UniqueFd(sv[1]));
    return session;
  }

 private:
  // Streams act in the connection's project, as its calls do.
  std::string projectQuery() const {
    return options_.project.empty() ? "" : "?project=" + httplib::detail::encode_query_param(options_.project);
  }
  std::string contentPath(const std::string& pool, const std::string& name) const {
    return "/v1/pools/" + encodePathSegment(pool) + "/volumes/" + encodePathSegment(name) + "/content" + projectQuery();
  }
  Result<json> replyOf(const httplib::Result& res, const std::string& what) {
    if (!res) return unavailable(what + " to " + uri_ + " failed: " + httplib::to_string(res.error()));
    auto reply = json::parse(res->body, nullptr, false);
    if (res->status >= 400) {
      if (!reply.is_discarded() && reply.contains("error")) return errorFromWire(reply["error"]);
      return internalError("HTTP " + std::to_string(res->status) + " from vmmd");
    }
    if (reply.is_discarded()) return internalError("vmmd sent invalid JSON");
    return reply;
  }

  std::string uri_;
  ConnectOptions options_;
  std::unique_ptr<httplib::Client> cli_;
};

}  // namespace

Result<std::unique_ptr<Connection>> connectHttp(const std::string& uri, const ConnectOptions& options) {
  std::string base = uri;
  while (endsWith(base, "/")) base.pop_back();
  return std::unique_ptr<Connection>(new HttpConnection(base, options));
}

}  // namespace vmm::client
