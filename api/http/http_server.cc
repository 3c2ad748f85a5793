#include "api/http/http_server.h"

#include "api/volume_transfer.h"

#include <httplib.h>

#include <limits>
#include <poll.h>
#include <unistd.h>

#include "api/wire.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "model/json_reader.h"

namespace vmm::api {

using json = nlohmann::json;

namespace {

void sendError(httplib::Response& res, const Error& e) {
  res.status = httpStatusFor(e.code);
  res.set_content(toText(json{{"error", errorObject(e)}}), "application/json");
}

// Matches "/v1/domains/{name}/start" against a request path; fills path parameters.
// An oversized body is read and dropped up to this size, then the connection is cut.
constexpr size_t kDrainLimit = 256 << 20;

uint64_t contentLength(const httplib::Request& req) {
  auto v = parseUint(req.get_header_value("Content-Length"));
  return v ? *v : 0;
}

bool matchRoute(const std::string& pattern, const std::string& path, json& params) {
  auto pp = split(pattern, '/');
  auto rp = split(path, '/');
  if (pp.size() != rp.size()) return false;
  json found = json::object();
  for (size_t i = 0; i < pp.size(); ++i) {
    if (pp[i].size() > 2 && pp[i].front() == '{' && pp[i].back() == '}') {
      if (rp[i].empty()) return false;
      found[pp[i].substr(1, pp[i].size() - 2)] = httplib::detail::decode_url(rp[i], false);
    } else if (pp[i] != rp[i]) {
      return false;
    }
  }
  for (auto it = found.begin(); it != found.end(); ++it) params[it.key()] = it.value();
  return true;
}

Result<json> queryValue(const ParamSpec& p, const std::string& text) {
  switch (p.type) {
    case ParamType::boolean:
      if (text == "true" || text == "1" || text.empty()) return json(true);
      if (text == "false" || text == "0") return json(false);
      return invalidArgument(p.name + ": expected true or false, got " + quote(text));
    case ParamType::integer: {
      auto v = parseInt(text);
      if (!v) return invalidArgument(p.name + ": expected an integer, got " + quote(text));
      return json(*v);
    }
    default:
      return json(text);
  }
}

}  // namespace

HttpServer::HttpServer(Registry& registry, EventBus& events, TokenStore& tokens, std::function<std::string()> metrics,
                       HttpOptions options)
    : registry_(registry), events_(events), tokens_(tokens), metrics_(std::move(metrics)), options_(std::move(options)) {}

HttpServer::~HttpServer() { stop(); }

std::string HttpServer::url() const {
  return std::string(options_.tlsCert.empty() ? "http" : "https") + "://" + host_ + ":" + std::to_string(port_);
}

Status HttpServer::start() {
  auto colon = options_.listen.rfind(':');
  if (colon == std::string::npos) return invalidArgument("http listen address must be host:port, got " + quote(options_.listen));
  host_ = options_.listen.substr(0, colon);
  if (host_.size() > 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
  auto port = parseInt(options_.listen.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535) return invalidArgument("invalid port in " + quote(options_.listen));
  if (!options_.tlsCert.empty()) {
    auto ssl = std::make_unique<httplib::SSLServer>(options_.tlsCert.c_str(), options_.tlsKey.c_str());
    if (!ssl->is_valid()) return invalidArgument("cannot load the TLS certificate " + options_.tlsCert + " or key " + options_.tlsKey);
    server_ = std::move(ssl);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  int threads = options_.threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server_->set_tcp_nodelay(true);  // replies go out at once, not after a delayed ACK
  server_->set_keep_alive_max_count(100000);
  server_->set_keep_alive_timeout(60);
  server_->set_read_timeout(30, 0);
  // httplib applies one body limit to every route, but volume uploads stream any size: bodies
  // are read by our own content readers, which keep at most maxBodyBytes and drain the rest
  // of an oversized body (so the connection stays in sync) before answering 413.
  server_->set_payload_max_length(std::numeric_limits<size_t>::max());
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // Methods without a body route are read by httplib itself: refuse a large one unread.
    bool readsOwnBody = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE";
    if (!readsOwnBody && contentLength(req) > options_.maxBodyBytes) {
      sendError(res, Error{ErrorCode::payload_too_large, "request body larger than " + std::to_string(options_.maxBodyBytes) + " bytes"});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto withBody = [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    if (req.method == "PUT" && isContentPath(req.path)) return serveUpload(req, res, reader);
    httplib::Request copy = req;
    size_t total = 0;
    reader([&](const char* data, size_t len) {
      total += len;
      if (total <= options_.maxBodyBytes) copy.body.append(data, len);
      return total <= kDrainLimit;
    });
    if (total > options_.maxBodyBytes) {
      if (total > kDrainLimit) res.set_header("Connection", "close");
      return sendError(res, Error{ErrorCode::payload_too_large, "request body larger than " + std::to_string(options_.maxBodyBytes) + " bytes"});
    }
    route(copy, res);
  };
  server_->Post(".*", withBody);
  server_->Put(".*", withBody);
  server_->Patch(".*", withBody);
  server_->Delete(".*", withBody);
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { route(req, res); };
  server_->Get(".*", handler);
  server_->set_error_handler([this](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      sendError(res, Error{ErrorCode::payload_too_large, "request body larger than " + std::to_string(options_.maxBodyBytes) + " bytes"});
    else if (res.status == 400)
      sendError(res, invalidArgument("malformed HTTP request"));
  });
  server_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unexpected failure";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    sendError(res, internalError(what));
  });
  if (*port == 0) {
    port_ = server_->bind_to_any_port(host_);
    if (port_ <= 0) return unavailable("cannot listen on " + host_ + " (any port)");
  } else {
    if (!server_->bind_to_port(host_, static_cast<int>(*port))) return unavailable("cannot listen on " + options_.listen + ": address in use or not available");
    port_ = static_cast<int>(*port);
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return {};
}

void HttpServer::stop() {
  if (!server_) return;
  stopping_ = true;     // ends console streams
  events_.closeAll();  // ends SSE streams so their threads return
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

Result<CallContext> HttpServer::authenticate(const httplib::Request& req) const {
  CallContext ctx;
  ctx.transport = "http";
  std::string auth = req.get_header_value("Authorization");
  if (auth.empty()) {
    if (options_.anonymousAccess == "read") {
      ctx.access = Access::read;
      ctx.principal = "anonymous";
      return ctx;
    }
    return Error{ErrorCode::unauthenticated, "authentication required: send \"Authorization: Bearer <token>\" (create one with `vmctl token create NAME`)"};
  }
  if (!startsWith(auth, "Bearer ")) return Error{ErrorCode::unauthenticated, "unsupported authorization scheme; use Bearer tokens"};
  auto info = tokens_.verify(std::string(trim(auth.substr(7))));
  if (!info) return Error{ErrorCode::unauthenticated, "unknown or revoked token"};
  ctx.access = info->role == "admin" ? Access::write : Access::read;
  ctx.principal = "token " + info->name;
  return ctx;
}

void HttpServer::route(const httplib::Request& req, httplib::Response& res) {
  auto ctx = authenticate(req);
  if (!ctx.ok()) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"vmm\"");
    return sendError(res, ctx.error());
  }
  if (req.method == "GET" && req.path == "/metrics") {
    res.set_content(metrics_ ? metrics_() : std::string(), "text/plain; version=0.0.4");
    return;
  }
  if (req.method == "GET" && req.path == "/v1/openapi.json") {
    res.set_content(toText(registry_.openapi()), "application/json");
    return;
  }
  if (req.method == "GET" && req.path == "/v1/events") return serveEvents(req, res, *ctx);
  {
    json found = json::object();
    if (matchRoute("/v1/domains/{name}/console", req.path, found)) return serveConsole(found["name"].get<std::string>(), req, res, *ctx);
    if (req.method == "GET" && matchRoute(kContentRoute, req.path, found))
      return serveDownload(found["pool"].get<std::string>(), found["name"].get<std::string>(), res, *ctx);
  }

  const OperationSpec* spec = nullptr;
  json params = json::object();
  bool pathKnown = false;
  for (const auto& s : operationSpecs()) {
    if (!s.http) continue;
    json found = json::object();
    if (!matchRoute(s.http->path, req.path, found)) continue;
    pathKnown = true;
    if (s.http->method != req.method) continue;
    spec = &s;
    params = std::move(found);
    break;
  }
  if (!spec) {
    if (pathKnown) {
      res.status = 405;
      res.set_content(toText(json{{"error", {{"code", 405}, {"kind", "method-not-allowed"}, {"message", req.method + " is not allowed on " + req.path}}}}), "application/json");
      return;
    }
    return sendError(res, notFound("no such endpoint: " + req.method + " " + req.path));
  }

  for (const auto& [key, value] : req.params) {
    const ParamSpec* p = nullptr;
    for (const auto& ps : spec->params)
      if (ps.name == key && ps.in == ParamIn::query) p = &ps;
    if (!p) return sendError(res, invalidArgument(key + ": unknown query parameter of " + spec->name));
    auto v = queryValue(*p, value);
    if (!v.ok()) return sendError(res, v.error());
    params[key] = *v;
  }
  if (spec->name == "domain.update") {
    std::string ifMatch = req.get_header_value("If-Match");
    if (!ifMatch.empty()) {
      std::string g(trim(ifMatch));
      if (startsWith(g, "W/")) g = g.substr(2);
      if (g.size() >= 2 && g.front() == '"' && g.back() == '"') g = g.substr(1, g.size() - 2);
      auto gen = parseInt(g);
      if (!gen) return sendError(res, invalidArgument("If-Match: expected a generation such as \"3\""));
      params["generation"] = *gen;
    }
  }
  if (!req.body.empty()) {
    std::string contentType = req.get_header_value("Content-Type");
    json body;
    bool xmlBody = startsWith(contentType, "application/xml") || startsWith(contentType, "text/xml");
    if (xmlBody && !spec->http->bodyParam.empty()) {
      body = req.body;  // an XML document (libvirt domain XML) is handed to the handler as text
    } else {
      // Depth is capped while parsing; the parser's own message names the line and column.
      auto parsed = parseJson(req.body, options_.maxBodyBytes, kJsonMaxDepth, "request body");
      if (!parsed.ok()) return sendError(res, parsed.error());
      body = std::move(*parsed);
    }
    if (!spec->http->bodyParam.empty()) {
      params[spec->http->bodyParam] = std::move(body);
    } else {
      if (!body.is_object()) return sendError(res, invalidArgument("request body: expected a JSON object, got " + model::jsonTypeName(body)));
      for (auto it = body.begin(); it != body.end(); ++it) {
        if (params.contains(it.key())) return sendError(res, invalidArgument(it.key() + ": given both in the URL and in the body"));
        params[it.key()] = std::move(it.value());
      }
    }
  }
  auto result = registry_.call(*ctx, spec->name, std::move(params));
  if (!result.ok()) return sendError(res, result.error());
  res.status = result->status;
  for (const auto& [k, v] : result->headers) res.set_header(k, v);
  if (spec->name == "domain.xml" && req.get_header_value("Accept").find("xml") != std::string::npos)
    return res.set_content(result->body.value("xml", ""), "application/xml");
  res.set_content(replyText(*result), "application/json");
}

void HttpServer::serveEvents(const httplib::Request& req, httplib::Response& res, const CallContext&) {
  EventFilter filter;
  for (const auto& [key, value] : req.params) {
    if (key == "types") filter.types = split(value, ',', true);
    else if (key == "object") filter.object = value;
    else return sendError(res, invalidArgument(key + ": unknown query parameter of /v1/events (types, object)"));
  }
  auto sub = events_.subscribe(filter);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, sub, started = false](size_t, httplib::DataSink& sink) mutable {
        if (!started) {
          started = true;
          std::string hello = ": vmm events, last_seq=" + std::to_string(events_.lastSeq()) + "\n\n";
          if (!sink.write(hello.data(), hello.size())) return false;
        }
        auto next = sub->next(Deadline::after(Millis(15000)));
        if (!next.ok()) {  // closed: overflow notice already delivered, or shutdown
          sink.done();
          return true;
        }
        std::string chunk;
        if (!next->has_value()) {
          chunk = ": keep-alive\n\n";
        } else {
          const auto& e = **next;
          chunk = "id: " + std::to_string(e.seq) + "\nevent: " + e.type + "\ndata: " + toText(model::formatEvent(e)) + "\n\n";
        }
        return sink.write(chunk.data(), chunk.size());
      },
      [this, sub](bool) { events_.unsubscribe(sub); });
}

void HttpServer::serveConsole(const std::string& domain, const httplib::Request& req, httplib::Response& res,
                              const CallContext& ctx) {
  if (req.method != "GET" && req.method != "POST") {
    res.status = 405;
    res.set_content(toText(json{{"error", {{"code", 405}, {"kind", "method-not-allowed"}, {"message", req.method + " is not allowed on " + req.path}}}}), "application/json");
    return;
  }
  // The console is the guest's keyboard and may show secrets: admin tokens only.
  if (ctx.access != Access::write) return sendError(res, permissionDenied("the console needs an admin token"));
  if (!options_.openConsole) return sendError(res, unsupported("consoles are not available"));
  auto fd = options_.openConsole(domain);
  if (!fd.ok()) return sendError(res, fd.error());
  if (req.method == "POST") {  // keyboard input: the body's bytes, as they are
    auto st = writeAllFd(fd->get(), req.body, Deadline::after(Millis(10000)));
    if (!st.ok()) return sendError(res, st.error());
    res.status = 204;
    return;
  }
  auto stream = std::make_shared<fs::UniqueFd>(std::move(*fd));
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "application/octet-stream",
      [this, stream](size_t, httplib::DataSink& sink) {
        pollfd p{stream->get(), POLLIN, 0};
        while (!stopping_) {
          int n = ::poll(&p, 1, 1000);
          if (n == 0) {
            if (!sink.is_writable()) return false;
            continue;
          }
          if (n < 0 && errno == EINTR) continue;
          char buf[16384];
          ssize_t got = n > 0 ? ::read(stream->get(), buf, sizeof buf) : -1;
          if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
          if (got <= 0) break;  // the domain stopped
          return sink.write(buf, static_cast<size_t>(got));
        }
        sink.done();
        return true;
      },
      [stream](bool) { stream->reset(); });
}

}  // namespace vmm::api

namespace vmm::api {

bool HttpServer::isContentPath(const std::string& path) {
  json found = json::object();
  return matchRoute(kContentRoute, path, found);
}

void HttpServer::serveUpload(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
  auto ctx = authenticate(req);
  if (!ctx.ok()) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"vmm\"");
    return sendError(res, ctx.error());
  }
  if (ctx->access != Access::write) return sendError(res, permissionDenied("uploading a volume needs an admin token"));
  if (!options_.pools) return sendError(res, unsupported("volume uploads are not available"));
  json found = json::object();
  matchRoute(kContentRoute, req.path, found);
  std::string pool = found["pool"].get<std::string>(), name = found["name"].get<std::string>();
  if (!req.has_header("Content-Length")) {
    res.set_header("Connection", "close");
    return sendError(res, invalidArgument("a volume upload needs a Content-Length header"));
  }
  uint64_t size = contentLength(req);
  auto stream = options_.pools->openVolume(pool, name, storage::StreamMode::write);
  if (!stream.ok()) {
    res.set_header("Connection", "close");  // the body was not read
    return sendError(res, stream.error());
  }
  if ((*stream)->size() && size > (*stream)->size()) {
    res.set_header("Connection", "close");
    return sendError(res, invalidArgument(std::to_string(size) + " bytes do not fit in volume " + pool + "/" + name + " (" +
                                          std::to_string((*stream)->size()) + " bytes)"));
  }
  uint64_t done = 0;
  std::optional<Error> failed;
  reader([&](const char* data, size_t len) {
    auto st = (*stream)->write(done, data, len, Deadline::after(kTransferIdle));
    if (!st.ok()) {
      failed = st.error();
      return false;
    }
    done += len;
    return true;
  });
  if (!failed && done != size)
    failed = invalidArgument("upload ended after " + std::to_string(done) + " of " + std::to_string(size) + " bytes; the volume is unchanged");
  if (!failed) {
    auto st = (*stream)->finish(Deadline::after(kTransferIdle));
    if (!st.ok()) failed = st.error();
  }
  stream->reset();  // releases the volume before the reply
  if (failed) {
    res.set_header("Connection", "close");
    return sendError(res, *failed);
  }
  auto v = options_.pools->getVolume(pool, name);
  if (!v.ok()) return sendError(res, v.error());
  res.set_content(toText(model::formatVolume(*v)), "application/json");
}

void HttpServer::serveDownload(const std::string& pool, const std::string& name, httplib::Response& res, const CallContext& ctx) {
  if (ctx.access != Access::write) return sendError(res, permissionDenied("downloading a volume needs an admin token"));
  if (!options_.pools) return sendError(res, unsupported("volume downloads are not available"));
  auto opened = options_.pools->openVolume(pool, name, storage::StreamMode::read);
  if (!opened.ok()) return sendError(res, opened.error());
  auto stream = std::shared_ptr<storage::VolumeStream>(std::move(*opened));
  uint64_t size = stream->size();
  res.set_header("Cache-Control", "no-store");
  res.set_content_provider(
      static_cast<size_t>(size), "application/octet-stream",
      [stream](size_t offset, size_t length, httplib::DataSink& sink) {
        std::vector<char> buf(std::min<size_t>(length, kTransferChunk));
        auto got = stream->read(offset, buf.data(), buf.size(), Deadline::after(kTransferIdle));
        if (!got.ok() || *got == 0) return false;  // the connection is cut: the client sees a short body
        return sink.write(buf.data(), *got);
      },
      [stream](bool) {});
}

}  // namespace vmm::api
