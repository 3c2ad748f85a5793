#include "api/http/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "api/http/http_socket.h"
#include "api/volume_transfer.h"
#include "api/wire.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "model/json_reader.h"

namespace vmm::api {

using json = nlohmann::json;

namespace {

// Output of a stream above which its source stops producing until the client reads.
constexpr size_t kStreamHigh = 256 << 10;
constexpr Millis kSseKeepAlive = Millis(15000);
// What an authenticated client whose body was refused may still send before it is cut off.
constexpr size_t kDrainLimit = 256 << 20;
constexpr Millis kSweep = Millis(250);
constexpr Millis kTokenRecheck = Millis(1000);
constexpr const char* kContentRoute = "/v1/pools/{pool}/volumes/{name}/content";
constexpr const char* kConsoleRoute = "/v1/domains/{name}/console";

void sendError(HttpResponse& res, const Error& e) {
  res.status = httpStatusFor(e.code);
  res.setContent(toText(json{{"error", errorJson(e)}}), "application/json");
}

bool isLoopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET6) {
    const in6_addr& a6 = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
  }
  return sa->sa_family == AF_INET && (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
}

// An error of the protocol itself (no ErrorCode has these statuses).
HttpResponse statusError(int status, const std::string& kind, const std::string& message) {
  HttpResponse res;
  res.status = status;
  res.setContent(toText(json{{"error", {{"code", status}, {"kind", kind}, {"message", message}}}}), "application/json");
  return res;
}

// Matches "/v1/domains/{name}/start" against a request path; fills path parameters.
bool matchRoute(const std::string& pattern, const std::string& path, json& params) {
  auto pp = split(pattern, '/');
  auto rp = split(path, '/');
  if (pp.size() != rp.size()) return false;
  json found = json::object();
  for (size_t i = 0; i < pp.size(); ++i) {
    if (pp[i].size() > 2 && pp[i].front() == '{' && pp[i].back() == '}') {
      std::string decoded;
      if (rp[i].empty() || !percentDecode(rp[i], false, decoded)) return false;
      found[pp[i].substr(1, pp[i].size() - 2)] = decoded;
    } else if (pp[i] != rp[i]) {
      return false;
    }
  }
  for (auto it = found.begin(); it != found.end(); ++it) params[it.key()] = it.value();
  return true;
}

// The operation a method and path name; `pathKnown` when some operation has that path.
const OperationSpec* findRoute(const std::string& method, const std::string& path, json& params, bool& pathKnown) {
  pathKnown = false;
  for (const auto& s : operationSpecs()) {
    if (!s.http) continue;
    json found = json::object();
    if (!matchRoute(s.http->path, path, found)) continue;
    pathKnown = true;
    if (s.http->method != method) continue;
    params = std::move(found);
    return &s;
  }
  return nullptr;
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

std::string lowerCase(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string addressText(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
  else if (a.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  return buf[0] ? buf : "?";
}

}  // namespace

enum class Phase {
  head,     // reading a request head (or the TLS handshake, or idle between requests)
  body,     // reading a body into the request
  busy,     // a worker serves the request; nothing is read
  writing,  // a complete response is being written
  stream,   // an event stream, console output or download is being written
  upload,   // a volume upload's body is being read (a chunk at a time)
  linger,   // after a response with Connection: close: dropping what the client still sends
};

struct HttpServer::Conn {
  std::unique_ptr<HttpSocket> sock;
  std::string peer;
  Phase phase = Phase::head;
  bool closed = false;
  std::string in;        // bytes read and not consumed yet (at most a head and a little)
  std::string out;
  size_t outOffset = 0;
  uint32_t interest = 0;
  SteadyClock::time_point deadline;      // of a head or a lingering close
  SteadyClock::time_point lastProgress;  // the last byte moved either way
  bool headStarted = false;              // a byte of the current request arrived
  uint64_t serial = 0;                   // of the request served: later completions of older ones are dropped
  bool keepAlive = true;
  size_t lingered = 0;
  size_t lingerCap = 0;

  HttpRequest req;
  CallContext ctx;
  std::optional<TokenInfo> token;  // the token that authenticated the current request
  const OperationSpec* spec = nullptr;
  size_t bodyWanted = 0;
  std::function<void(const ConnPtr&)> afterBody;

  // Streams.
  std::string streamKey;  // the principal whose stream slot this holds
  bool throttled = false;  // the source stopped at kStreamHigh; flush() restarts it when drained
  std::function<void(const ConnPtr&)> onDrained;
  std::shared_ptr<Subscription> sub;
  SteadyClock::time_point nextKeepAlive;
  fs::UniqueFd console;
  bool consoleWatched = false;
  std::shared_ptr<storage::VolumeStream> volume;
  uint64_t transferOffset = 0, transferSize = 0;
  std::string transferPool, transferName;
  bool workerBusy = false;
  std::string chunkBuf;

  size_t pending() const { return out.size() - outOffset; }
};

HttpServer::HttpServer(Registry& registry, EventBus& events, TokenStore& tokens, std::function<std::string()> metrics,
                       HttpOptions options)
    : registry_(registry), events_(events), tokens_(tokens), metrics_(std::move(metrics)), options_(std::move(options)) {}

HttpServer::~HttpServer() { stop(); }

std::string HttpServer::url() const {
  return std::string(options_.tlsCert.empty() ? "http" : "https") + "://" + host_ + ":" + std::to_string(port_);
}

Status HttpServer::start() {
  for (auto& h : options_.allowedHosts) {
    h = lowerCase(h);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  }
  auto colon = options_.listen.rfind(':');
  if (colon == std::string::npos) return invalidArgument("http listen address must be host:port, got " + quote(options_.listen));
  host_ = options_.listen.substr(0, colon);
  if (host_.size() > 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
  auto port = parseInt(options_.listen.substr(colon + 1));
  if (!port || *port < 0 || *port > 65535) return invalidArgument("invalid port in " + quote(options_.listen));
  if (!options_.tlsCert.empty()) {
    std::string why;
    tls_ = makeTlsContext(options_.tlsCert, options_.tlsKey, why);
    if (!tls_) return invalidArgument("cannot load the TLS certificate " + options_.tlsCert + " or key " + options_.tlsKey + ": " + why);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(*port);
  if (getaddrinfo(host_.empty() ? nullptr : host_.c_str(), service.c_str(), &hints, &found) != 0 || !found)
    return unavailable("cannot listen on " + options_.listen + ": unknown host");
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addrs(found, freeaddrinfo);
  loopback_ = true;
  for (addrinfo* a = found; a; a = a->ai_next) loopback_ = loopback_ && isLoopback(a->ai_addr);
  if (!loopback_ && !tls_ && !options_.allowPlaintext)
    return invalidArgument("refusing to serve plain HTTP on " + options_.listen +
                           ", which is not a loopback address: tokens would cross the network in clear text. Set "
                           "[http] tls_cert and tls_key, or [http] allow_plaintext = true to serve it anyway");
  for (addrinfo* a = found; a && !listenFd_.valid(); a = a->ai_next) {
    fs::UniqueFd fd(::socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) continue;
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 1024) != 0) continue;
    listenFd_ = std::move(fd);
  }
  if (!listenFd_.valid()) return unavailable("cannot listen on " + options_.listen + ": address in use or not available");
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listenFd_.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                            : reinterpret_cast<sockaddr_in&>(bound).sin_port);

  pool_ = options_.pool;
  if (!pool_) {
    ownPool_ = std::make_unique<ThreadPool>(1, static_cast<size_t>(std::max(options_.threads, 2)));
    pool_ = ownPool_.get();
  }
  dispatcher_ = options_.dispatcher;
  if (!dispatcher_) {
    ownDispatcher_ = std::make_unique<Dispatcher>(*pool_, *pool_);
    dispatcher_ = ownDispatcher_.get();
  }
  stopping_ = false;
  loop_.runInThread();
  loop_.startWatchdog();
  loop_.runSync([this] {
    loop_.watch(listenFd_.get(), EPOLLIN, [this](uint32_t) { accept(); });
    rearm();
  });
  started_ = true;
  return {};
}

// The sweep runs every kSweep: timeouts of heads, bodies and lingering closes, and keep-alive
// comments on event streams.
void HttpServer::rearm() {
  if (!stopping_) sweepTimer_ = loop_.addTimer(kSweep, [this] { sweep(); rearm(); });
}

void HttpServer::stop() {
  if (!started_) return;
  started_ = false;
  stopping_ = true;  // completions of worker tasks are dropped from now on
  loop_.runSync([this] {
    loop_.cancelTimer(sweepTimer_);
    loop_.unwatch(listenFd_.get());
    auto conns = conns_;
    for (auto& [fd, c] : conns) close(c);
  });
  loop_.stop();
  loop_.join();
  listenFd_.reset();
  {
    std::unique_lock lock(tasksMu_);
    if (!tasksCv_.wait_for(lock, Millis(30000), [&] { return tasks_ == 0; }))
      log::warn("HTTP calls still running at shutdown", {{"count", static_cast<uint64_t>(tasks_)}});
  }
  freeTlsContext(tls_);
  tls_ = nullptr;
}

// ---- connections

void HttpServer::accept() {
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = ::accept4(listenFd_.get(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR) log::warn("accept failed on the HTTP socket", {{"errno", errno}});
      return;
    }
    std::string peer = addressText(addr);
    size_t& mine = perPeer_[peer];
    if (conns_.size() >= options_.maxConnections || mine >= options_.connectionsPerPeer) {
      // Closed unread: a client over a limit gets nothing to make it stay.
      ::close(fd);
      if (mine == 0) perPeer_.erase(peer);
      ++refused_;
      int64_t now = wallNowMicros();
      if (now - lastRefusalLogUs_ >= 10000000) {
        lastRefusalLogUs_ = now;
        log::warn("HTTP connection refused", {{"peer", peer},
                                              {"reason", conns_.size() >= options_.maxConnections ? "connections" : "connections per peer"},
                                              {"refused_total", refused_.load()}});
      }
      continue;
    }
    ++mine;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // replies go out at once
    auto c = std::make_shared<Conn>();
    c->sock = std::make_unique<HttpSocket>(fs::UniqueFd(fd), tls_);
    c->peer = peer;
    c->lastProgress = SteadyClock::now();
    c->deadline = c->lastProgress + options_.headerTimeout;  // the TLS handshake and first head
    c->serial = 1;
    c->interest = EPOLLIN | EPOLLRDHUP;
    conns_[fd] = c;
    connCount_ = conns_.size();
    std::weak_ptr<Conn> weak = c;
    loop_.watch(fd, c->interest, [this, weak](uint32_t ev) {
      auto conn = weak.lock();
      if (conn && !conn->closed) onEvent(conn, ev);
    });
  }
}

void HttpServer::close(const ConnPtr& c) {
  loop_.assertInLoopThread("HttpServer::close");
  if (c->closed) return;
  c->closed = true;
  int fd = c->sock->fd();
  loop_.unwatch(fd);
  if (c->consoleWatched) loop_.unwatch(c->console.get());
  c->consoleWatched = false;
  c->console.reset();
  if (c->sub) events_.unsubscribe(c->sub);
  c->sub.reset();
  c->onDrained = nullptr;
  c->afterBody = nullptr;
  if (!c->streamKey.empty()) {
    if (auto it = streams_.find(c->streamKey); it != streams_.end() && --it->second == 0) streams_.erase(it);
    c->streamKey.clear();
  }
  if (auto it = perPeer_.find(c->peer); it != perPeer_.end() && --it->second == 0) perPeer_.erase(it);
  conns_.erase(fd);
  connCount_ = conns_.size();
  c->sock.reset();
}

void HttpServer::onEvent(const ConnPtr& c, uint32_t events) {
  if (events & EPOLLERR) return close(c);
  if (c->pending() || c->sock->wantsWrite()) flush(c);
  if (!c->closed && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) onReadable(c);
  if (!c->closed && (events & EPOLLHUP) && c->phase == Phase::busy) close(c);  // gone while served
}

void HttpServer::updateInterest(const ConnPtr& c) {
  if (c->closed) return;
  bool reading = c->phase == Phase::head || c->phase == Phase::body || c->phase == Phase::stream ||
                 c->phase == Phase::linger || (c->phase == Phase::upload && !c->workerBusy);
  bool writing = c->pending() > 0 || c->sock->wantsWrite();
  uint32_t want = (reading ? static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP) : 0u) | (writing ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  if (want != c->interest) {
    c->interest = want;
    loop_.modify(c->sock->fd(), want);
  }
}

void HttpServer::flush(const ConnPtr& c) {
  while (!c->closed && c->pending()) {
    size_t n = 0;
    auto io = c->sock->write(std::string_view(c->out).substr(c->outOffset), n);
    if (io == HttpSocket::Io::ok) {
      c->outOffset += n;
      c->lastProgress = SteadyClock::now();
      continue;
    }
    if (io == HttpSocket::Io::wouldBlock) break;
    return close(c);
  }
  if (c->closed) return;
  if (!c->pending()) {
    c->out.clear();
    c->outOffset = 0;
    if (c->phase == Phase::writing) return afterResponse(c);
  } else if (c->outOffset > (1 << 20)) {
    c->out.erase(0, c->outOffset);
    c->outOffset = 0;
  }
  if (c->throttled && c->pending() < kStreamHigh / 2 && c->onDrained) {
    c->throttled = false;
    auto pump = c->onDrained;
    pump(c);
    if (c->closed) return;
  }
  updateInterest(c);
}

void HttpServer::onReadable(const ConnPtr& c) {
  loop_.assertInLoopThread("HttpServer::onReadable");
  // At most 16 reads (256 KiB) per turn: a peer that keeps its socket full (a body, a stream)
  // must not hold the event loop; epoll reports the rest on the next turn.
  for (int reads = 0; reads < 16 && !c->closed; ++reads) {
    size_t room = 0;
    std::string* into = &c->in;
    switch (c->phase) {
      case Phase::head: room = options_.head.maxHeadBytes + 1 > c->in.size() ? options_.head.maxHeadBytes + 1 - c->in.size() : 0; break;
      case Phase::body: room = c->bodyWanted - c->req.body.size(); into = &c->req.body; break;
      case Phase::upload:
        if (c->workerBusy) return updateInterest(c);
        room = std::min<uint64_t>(kTransferChunk - c->chunkBuf.size(), c->transferSize - c->transferOffset - c->chunkBuf.size());
        into = &c->chunkBuf;
        break;
      case Phase::stream: room = 16384; break;
      case Phase::linger: room = c->lingerCap - c->lingered; break;  // never past the cap
      case Phase::busy:
      case Phase::writing: return updateInterest(c);
    }
    if (room == 0) break;
    size_t before = into->size();
    auto io = c->sock->read(*into, room);
    if (io == HttpSocket::Io::wouldBlock) break;
    if (io != HttpSocket::Io::ok) return close(c);  // EOF or error: whatever was under way ends here
    size_t got = into->size() - before;
    received_ += got;
    c->lastProgress = SteadyClock::now();
    switch (c->phase) {
      case Phase::head: {
        if (!c->headStarted) {
          c->headStarted = true;
          c->deadline = c->lastProgress + options_.headerTimeout;  // slow senders get no longer
        }
        HttpRequest req;
        auto r = parseRequestHead(c->in, options_.head, req);
        if (r.state == HeadResult::State::error) {
          c->keepAlive = false;
          std::string kind = r.status == 431 ? "header-fields-too-large" : r.status == 414 ? "uri-too-long"
                           : r.status == 505 ? "version-not-supported" : "invalid-argument";
          auto res = statusError(r.status, kind, r.message);
          res.close = true;
          return respond(c, std::move(res));
        }
        if (r.state == HeadResult::State::complete) {
          c->req = std::move(req);
          return onHead(c, r.consumed);
        }
        break;
      }
      case Phase::body:
        if (c->req.body.size() >= c->bodyWanted) return onBody(c);
        break;
      case Phase::upload:
        onUploadBytes(c);
        break;
      case Phase::stream:
        c->in.clear();  // nothing is expected from a client being streamed to
        break;
      case Phase::linger:
        c->lingered += got;
        c->in.clear();
        if (c->lingered >= c->lingerCap) return close(c);
        break;
      default: break;
    }
  }
  updateInterest(c);
}

void HttpServer::sweep() {
  auto now = SteadyClock::now();
  std::vector<ConnPtr> all;
  all.reserve(conns_.size());
  for (auto& [fd, c] : conns_) all.push_back(c);
  // A request is authenticated when its head arrives; a stream (events, console, transfer)
  // lasts longer, so its token is checked again here: revoked or expired, the stream ends.
  bool checkTokens = now >= nextTokenCheck_;
  if (checkTokens) nextTokenCheck_ = now + kTokenRecheck;
  for (auto& c : all) {
    if (c->closed) continue;
    if (checkTokens && c->token && c->phase != Phase::head && c->phase != Phase::linger && !tokens_.stillValid(*c->token)) {
      log::info("closing the stream of a revoked or expired token", {{"principal", c->ctx.principal}});
      close(c);
      continue;
    }
    bool stalled = now - c->lastProgress > options_.bodyTimeout;
    switch (c->phase) {
      case Phase::head:
        if (now < c->deadline) break;
        if (!c->headStarted) {
          close(c);  // idle, or a handshake that never finished: nothing to answer
        } else {
          auto res = statusError(408, "request-timeout", "the request head did not arrive within " + formatDuration(options_.headerTimeout));
          res.close = true;
          respond(c, std::move(res));
        }
        break;
      case Phase::body:
      case Phase::upload:
        if (stalled && !c->workerBusy) {
          auto res = statusError(408, "request-timeout", "no byte of the request body for " + formatDuration(options_.bodyTimeout));
          res.close = true;
          c->volume.reset();
          respond(c, std::move(res));
        }
        break;
      case Phase::writing:
        if (stalled) close(c);  // the client reads nothing
        break;
      case Phase::stream:
        if (c->pending() && stalled) {
          close(c);
        } else if (c->sub && !c->pending() && now >= c->nextKeepAlive) {
          c->nextKeepAlive = now + kSseKeepAlive;
          c->out += chunk(": keep-alive\n\n");
          flush(c);
        }
        break;
      case Phase::linger:
        if (now >= c->deadline || now - c->lastProgress > options_.lingerTime) close(c);
        break;
      case Phase::busy: break;
    }
  }
}

// ---- requests

void HttpServer::startRequest(const ConnPtr& c) {
  c->phase = Phase::head;
  ++c->serial;
  c->req = HttpRequest();
  c->ctx = CallContext();
  c->spec = nullptr;
  c->afterBody = nullptr;
  c->onDrained = nullptr;
  c->throttled = false;
  c->headStarted = !c->in.empty();
  c->deadline = SteadyClock::now() + (c->headStarted ? options_.headerTimeout : options_.idleTimeout);
  updateInterest(c);
  // A pipelined request already read is handled from a fresh loop turn, never recursively.
  if (!c->in.empty() || c->sock->hasBuffered()) {
    std::weak_ptr<Conn> weak = c;
    uint64_t serial = c->serial;
    loop_.post([this, weak, serial] {
      auto conn = weak.lock();
      if (!conn || conn->closed || conn->serial != serial || conn->phase != Phase::head) return;
      HttpRequest req;
      auto r = parseRequestHead(conn->in, options_.head, req);
      if (r.state == HeadResult::State::complete) {
        conn->req = std::move(req);
        return onHead(conn, r.consumed);
      }
      if (r.state == HeadResult::State::error) {
        auto res = statusError(r.status, r.status == 431 ? "header-fields-too-large" : "invalid-argument", r.message);
        res.close = true;
        return respond(conn, std::move(res));
      }
      onReadable(conn);
    });
  }
}

// The head is in: who is asking is settled here, before a byte of any body is read.
void HttpServer::onHead(const ConnPtr& c, size_t headBytes) {
  c->in.erase(0, headBytes);
  c->req.peer = c->peer;
  c->req.clientCertificate = c->sock ? c->sock->clientCertificate() : "";
  c->keepAlive = c->req.keepAlive();
  HttpRequest& req = c->req;
  auto refuse = [&](HttpResponse res) {
    res.close = true;  // its body (if any) is not read: the connection cannot carry another request
    respond(c, std::move(res));
  };
  if (!hostAllowed(req.header("host"))) {
    return refuse(statusError(421, "misdirected-request", "this server does not answer to the host " + quote(req.header("host")) +
                                                              " ([http] allowed_hosts)"));
  }
  c->token.reset();
  auto ctx = authenticate(req, c->token);
  if (!ctx.ok()) {
    HttpResponse res;
    sendError(res, ctx.error());
    res.setHeader("WWW-Authenticate", "Bearer realm=\"vmm\"");
    return refuse(std::move(res));
  }
  c->ctx = *ctx;
  if (!req.header("transfer-encoding").empty())
    return refuse(statusError(411, "length-required", "send the body with a Content-Length (chunked request bodies are not accepted)"));
  std::string encoding = lowerCase(req.header("content-encoding"));
  if (!encoding.empty() && encoding != "identity")
    return refuse(statusError(415, "unsupported-media-type", "request bodies are accepted without Content-Encoding only, not " + quote(encoding)));
  uint64_t length = 0;
  size_t lengths = req.headerCount("content-length");
  if (lengths > 0) {
    std::string text = req.header("content-length");
    auto v = parseUint(text);
    bool consistent = true;
    for (const auto& [k, val] : req.headers)
      if (k == "content-length" && val != text) consistent = false;
    if (!v || !consistent) return refuse(statusError(400, "invalid-argument", "malformed Content-Length"));
    length = *v;
  }
  std::string expect = lowerCase(req.header("expect"));
  if (!expect.empty() && expect != "100-continue") return refuse(statusError(417, "expectation-failed", "only Expect: 100-continue is understood"));
  bool continueWanted = !expect.empty();
  bool operate = c->ctx.may(Role::operate);
  auto tooLarge = [&] {
    HttpResponse res;
    sendError(res, Error{ErrorCode::payload_too_large, "request body larger than " + std::to_string(options_.maxBodyBytes) + " bytes"});
    refuse(std::move(res));
  };
  // Reads a body of `length` bytes (at most maxBodyBytes), then runs `next`.
  auto readBody = [&](std::function<void(const ConnPtr&)> next) {
    if (length > options_.maxBodyBytes) return tooLarge();
    c->bodyWanted = static_cast<size_t>(length);
    size_t have = std::min(c->in.size(), c->bodyWanted);
    c->req.body.assign(c->in, 0, have);
    c->in.erase(0, have);
    c->afterBody = std::move(next);
    c->phase = Phase::body;
    if (continueWanted && c->req.body.size() < c->bodyWanted) {
      c->out += "HTTP/1.1 100 Continue\r\n\r\n";
      flush(c);
      if (c->closed) return;
    }
    if (c->req.body.size() >= c->bodyWanted) return onBody(c);
    updateInterest(c);
  };

  json found = json::object();
  if (req.method == "GET" && req.path == "/v1/events") {
    if (length) return refuse(statusError(400, "invalid-argument", "GET /v1/events takes no body"));
    return startEvents(c);
  }
  // Streams act in a project like calls do: `?project=`, else the principal's own.
  auto projectQuery = [&req]() -> std::string {
    for (const auto& [k, v] : req.params)
      if (k == "project") return v;
    return "";
  };
  if (matchRoute(kConsoleRoute, req.path, found)) {
    auto scopedDomain = registry_.enterStream(c->ctx, projectQuery(), found["name"].get<std::string>(), "domain");
    if (!scopedDomain.ok()) {
      HttpResponse res;
      sendError(res, scopedDomain.error());
      return length ? refuse(std::move(res)) : respond(c, std::move(res));
    }
    std::string domain = *scopedDomain;
    if (req.method != "GET" && req.method != "POST")
      return refuse(statusError(405, "method-not-allowed", req.method + " is not allowed on " + req.path));
    // The console is the guest's keyboard and may show secrets: operators and admins only.
    if (!operate) {
      HttpResponse res;
      Error refusal = permissionDenied("the console needs the operator role; " + c->ctx.principal + " has the read role");
      registry_.record(c->ctx, "domain.console", "domains/" + domain, refusal);
      sendError(res, refusal);
      return length ? refuse(std::move(res)) : respond(c, std::move(res));
    }
    if (req.method == "GET") return startConsole(c, domain);
    return readBody([this, domain](const ConnPtr& conn) {
      std::string input = std::move(conn->req.body);
      onWorker(conn, [this, conn, domain, input, serial = conn->serial] {
        HttpResponse res;
        res.status = 204;
        auto fd = options_.openConsole ? options_.openConsole(conn->ctx, domain) : Result<fs::UniqueFd>(unsupported("consoles are not available"));
        if (!fd.ok()) sendError(res, fd.error());
        else if (auto st = writeAllFd(fd->get(), input, Deadline::after(Millis(10000))); !st.ok()) sendError(res, st.error());
        backOnLoop(conn, serial, [this, res](const ConnPtr& cc) { respond(cc, res); });
      });
    });
  }
  found = json::object();
  if (matchRoute(kContentRoute, req.path, found)) {
    auto scopedVolume = registry_.enterStream(c->ctx, projectQuery(), found["name"].get<std::string>(), "volume");
    if (!scopedVolume.ok()) {
      HttpResponse res;
      sendError(res, scopedVolume.error());
      return length ? refuse(std::move(res)) : respond(c, std::move(res));
    }
    std::string pool = found["pool"].get<std::string>(), name = *scopedVolume;
    if (req.method != "GET" && req.method != "PUT")
      return refuse(statusError(405, "method-not-allowed", req.method + " is not allowed on " + req.path));
    std::string transfer = req.method == "GET" ? "volume.download" : "volume.upload";
    if (!operate) {
      HttpResponse res;
      Error refusal = permissionDenied(std::string(req.method == "GET" ? "downloading" : "uploading") +
                                       " a volume needs the operator role; " + c->ctx.principal + " has the read role");
      registry_.record(c->ctx, transfer, "pools/" + pool + "/volumes/" + name, refusal);
      sendError(res, refusal);
      return length ? refuse(std::move(res)) : respond(c, std::move(res));
    }
    registry_.record(c->ctx, transfer, "pools/" + pool + "/volumes/" + name, {});
    if (req.method == "GET") {
      if (length) return refuse(statusError(400, "invalid-argument", "a volume download takes no body"));
      return startDownload(c, pool, name);
    }
    if (lengths == 0) {
      HttpResponse res;
      sendError(res, invalidArgument("a volume upload needs a Content-Length header"));
      return refuse(std::move(res));
    }
    c->transferSize = length;
    return startUpload(c, pool, name);
  }

  bool special = req.method == "GET" && (req.path == "/metrics" || req.path == "/v1/openapi.json");
  if (!special) {
    json params;
    bool pathKnown = false;
    c->spec = findRoute(req.method, req.path, params, pathKnown);
    HttpResponse res;
    if (!c->spec && pathKnown) {
      res = statusError(405, "method-not-allowed", req.method + " is not allowed on " + req.path);
    } else if (!c->spec) {
      sendError(res, notFound("no such endpoint: " + req.method + " " + req.path));
    } else if (!c->ctx.may(c->spec->role)) {
      Error refusal = permissionDenied(c->spec->name + " needs the " + std::string(roleName(c->spec->role)) + " role; " +
                                       c->ctx.principal + " has the " + std::string(roleName(c->ctx.role)) + " role");
      registry_.recordRefusal(c->ctx, *c->spec, params, refusal);
      sendError(res, refusal);
    } else {
      return readBody([this](const ConnPtr& conn) { dispatch(conn); });
    }
    return length ? refuse(std::move(res)) : respond(c, std::move(res));
  }
  readBody([this](const ConnPtr& conn) { dispatch(conn); });
}

void HttpServer::onBody(const ConnPtr& c) {
  c->phase = Phase::busy;
  updateInterest(c);
  auto next = std::move(c->afterBody);
  c->afterBody = nullptr;
  if (next) next(c);
}

void HttpServer::dispatch(const ConnPtr& c) {
  c->phase = Phase::busy;
  updateInterest(c);
  if (c->spec && c->spec->lane == Lane::quick) {
    loop_.annotate("http " + c->spec->name);
    HttpResponse res;
    serveCall(c->req, res, c->ctx);
    return respond(c, std::move(res));
  }
  auto req = std::make_shared<HttpRequest>(std::move(c->req));
  CallContext ctx = c->ctx;
  uint64_t serial = c->serial;
  std::weak_ptr<Conn> weak = c;
  auto task = [this, req, ctx, weak, serial] {
    HttpResponse res;
    serveCall(*req, res, ctx);
    if (auto conn = weak.lock()) backOnLoop(conn, serial, [this, res](const ConnPtr& cc) { respond(cc, res); });
  };
  {
    std::lock_guard lock(tasksMu_);
    ++tasks_;
  }
  auto counted = [this, task] {
    task();
    std::lock_guard lock(tasksMu_);
    if (--tasks_ == 0) tasksCv_.notify_all();
  };
  Status queued;
  if (c->spec) {
    queued = dispatcher_->submit(*c->spec, ctx, counted);
  } else {
    pool_->submit(counted);
  }
  if (!queued.ok()) {
    {
      std::lock_guard lock(tasksMu_);
      if (--tasks_ == 0) tasksCv_.notify_all();
    }
    HttpResponse res;
    sendError(res, queued.error());
    respond(c, std::move(res));
  }
}

void HttpServer::onWorker(const ConnPtr& c, std::function<void()> task) {
  (void)c;
  {
    std::lock_guard lock(tasksMu_);
    ++tasks_;
  }
  pool_->submit([this, task = std::move(task)] {
    task();
    std::lock_guard lock(tasksMu_);
    if (--tasks_ == 0) tasksCv_.notify_all();
  });
}

void HttpServer::backOnLoop(const ConnPtr& c, uint64_t serial, std::function<void(const ConnPtr&)> fn) {
  std::weak_ptr<Conn> weak = c;
  loop_.post([this, weak, serial, fn = std::move(fn)] {
    if (stopping_) return;
    auto conn = weak.lock();
    if (!conn || conn->closed || conn->serial != serial) return;
    fn(conn);
  });
}

void HttpServer::respond(const ConnPtr& c, HttpResponse res) {
  if (c->closed) return;
  bool keep = c->keepAlive && !res.close && !stopping_;
  c->keepAlive = keep;
  bool noBody = res.status == 204;
  c->out += responseHead(res, noBody ? 0 : static_cast<long long>(res.body.size()), keep);
  if (!noBody) c->out += res.body;
  c->phase = Phase::writing;
  flush(c);
}

void HttpServer::respondError(const ConnPtr& c, int status, const Error& e, bool close) {
  HttpResponse res;
  sendError(res, e);
  if (status) res.status = status;
  res.close = close;
  respond(c, std::move(res));
}

void HttpServer::afterResponse(const ConnPtr& c) {
  if (!c->streamKey.empty()) {
    if (auto it = streams_.find(c->streamKey); it != streams_.end() && --it->second == 0) streams_.erase(it);
    c->streamKey.clear();
  }
  c->volume.reset();
  if (c->keepAlive) return startRequest(c);
  startLinger(c);
}

// After a response with Connection: close: the client may still be sending a body nobody will
// read. Closing at once could reset the connection before it reads our answer (and kill a
// simple client with SIGPIPE), so its bytes are read and dropped while they keep coming: at
// most lingerBytes from a client without a valid token, up to kDrainLimit (the body of an
// authenticated request that was refused, such as a 413) from one with a token.
void HttpServer::startLinger(const ConnPtr& c) {
  c->sock->shutdownWrite();
  c->phase = Phase::linger;
  // Bytes that came in with the head (the start of a refused body) count: the read that found
  // the head took up to 16 KiB.
  c->lingered = c->in.size();
  c->lingerCap = c->ctx.principal.empty() ? options_.lingerBytes : kDrainLimit;
  c->in.clear();
  if (c->lingered >= c->lingerCap) return close(c);
  c->lastProgress = SteadyClock::now();
  c->deadline = c->lastProgress + Millis(120000);
  updateInterest(c);
}

// ---- streams

bool HttpServer::takeStreamSlot(const ConnPtr& c) {
  std::string key = c->ctx.peer.empty() ? c->ctx.principal : c->ctx.peer;
  size_t& n = streams_[key];
  if (n >= options_.streamsPerPrincipal) return false;
  ++n;
  c->streamKey = key;
  return true;
}

void HttpServer::beginStream(const ConnPtr& c, HttpResponse head, long long contentLength) {
  c->out += responseHead(head, contentLength, contentLength >= 0 && c->keepAlive);
  if (contentLength < 0) c->keepAlive = false;  // a chunked stream ends with the connection
  c->phase = Phase::stream;
  c->lastProgress = SteadyClock::now();
}

void HttpServer::startEvents(const ConnPtr& c) {
  EventFilter filter;
  json scope = json::object();
  for (const auto& [key, value] : c->req.params) {
    if (key == "types") filter.types = split(value, ',', true);
    else if (key == "object") filter.object = value;
    else if (key == "project") scope["project"] = value;
    else if (key == "all_projects") scope["all_projects"] = value == "true" || value == "1";
    else return respondError(c, 0, invalidArgument(key + ": unknown query parameter of /v1/events (types, object, project, all_projects)"), false);
  }
  if (auto st = filter.check(); !st.ok()) return respondError(c, 0, st.error(), false);
  CallContext scoped = c->ctx;
  if (auto st = registry_.enterProject(scoped, scope); !st.ok()) return respondError(c, 0, st.error(), false);
  if (!scoped.allProjects) filter.project = scoped.project;
  filter.object = model::qualifyObject(filter.object, scoped.project);
  filter.guestOutput = c->ctx.may(Role::operate);
  filter.accessRecords = c->ctx.may(Role::admin);
  if (!takeStreamSlot(c))
    return respondError(c, 0, unavailable(c->ctx.principal + " already has " + std::to_string(options_.streamsPerPrincipal) + " event and console streams open"), false);
  // Read tokens get the read-only socket's queue bounds (rpc_server.h).
  c->sub = c->ctx.may(Role::operate) ? events_.subscribe(filter) : events_.subscribe(filter, 1024, 4 << 20);
  HttpResponse head;
  head.contentType = "text/event-stream";
  head.setHeader("Cache-Control", "no-cache");
  head.setHeader("X-Accel-Buffering", "no");
  beginStream(c, std::move(head), -1);
  c->out += chunk(": vmm events, last_seq=" + std::to_string(events_.lastSeq()) + "\n\n");
  c->nextKeepAlive = SteadyClock::now() + kSseKeepAlive;
  c->onDrained = [this](const ConnPtr& cc) { pumpEvents(cc); };
  std::weak_ptr<Conn> weak = c;
  c->sub->setNotify([this, weak] {
    loop_.post([this, weak] {
      if (stopping_) return;
      auto conn = weak.lock();
      if (conn && !conn->closed) pumpEvents(conn);
    });
  });
  pumpEvents(c);
}

void HttpServer::pumpEvents(const ConnPtr& c) {
  if (c->closed || c->phase != Phase::stream || !c->sub) return;
  if (c->pending() > kStreamHigh) {
    c->throttled = true;  // the subscription's bounded queue holds the rest meanwhile
    return;
  }
  bool closed = false;
  for (const auto& e : c->sub->drain(closed))
    c->out += chunk("id: " + std::to_string(e->seq) + "\nevent: " + e->type + "\ndata: " + c->sub->textOf(*e) + "\n\n");
  if (closed) {  // overflow (its notice is the last event) or shutdown
    events_.unsubscribe(c->sub);
    c->sub.reset();
    c->out += chunk("");
    c->phase = Phase::writing;
  }
  flush(c);
}

void HttpServer::startConsole(const ConnPtr& c, const std::string& domain) {
  if (!options_.openConsole) return respondError(c, 0, unsupported("consoles are not available"), false);
  if (!takeStreamSlot(c))
    return respondError(c, 0, unavailable(c->ctx.principal + " already has " + std::to_string(options_.streamsPerPrincipal) + " event and console streams open"), false);
  c->phase = Phase::busy;
  updateInterest(c);
  onWorker(c, [this, c, domain, serial = c->serial] {
    auto fd = std::make_shared<Result<fs::UniqueFd>>(options_.openConsole(c->ctx, domain));
    backOnLoop(c, serial, [this, fd](const ConnPtr& cc) {
      if (!fd->ok()) return respondError(cc, 0, fd->error(), false);
      cc->console = std::move(**fd);
      (void)setNonBlocking(cc->console.get());
      HttpResponse head;
      head.contentType = "application/octet-stream";
      head.setHeader("Cache-Control", "no-cache");
      head.setHeader("X-Accel-Buffering", "no");
      beginStream(cc, std::move(head), -1);
      cc->onDrained = [this](const ConnPtr& x) { pumpConsole(x); };
      std::weak_ptr<Conn> weak = cc;
      loop_.watch(cc->console.get(), EPOLLIN | EPOLLRDHUP, [this, weak](uint32_t) {
        auto conn = weak.lock();
        if (conn && !conn->closed) pumpConsole(conn);
      });
      cc->consoleWatched = true;
      flush(cc);
    });
  });
}

void HttpServer::pumpConsole(const ConnPtr& c) {
  if (c->closed || c->phase != Phase::stream || !c->console.valid()) return;
  if (c->pending() > kStreamHigh) {
    c->throttled = true;
    loop_.modify(c->console.get(), 0);  // the guest's output waits in the console's own buffer
    return;
  }
  loop_.modify(c->console.get(), EPOLLIN | EPOLLRDHUP);
  char buf[16384];
  ssize_t n = ::read(c->console.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) {
    c->out += chunk(std::string_view(buf, static_cast<size_t>(n)));
  } else {  // the domain stopped
    loop_.unwatch(c->console.get());
    c->consoleWatched = false;
    c->console.reset();
    c->out += chunk("");
    c->phase = Phase::writing;
  }
  flush(c);
}

void HttpServer::startDownload(const ConnPtr& c, const std::string& pool, const std::string& name) {
  if (!options_.pools) return respondError(c, 0, unsupported("volume downloads are not available"), false);
  if (!takeStreamSlot(c))
    return respondError(c, 0, unavailable(c->ctx.principal + " already has " + std::to_string(options_.streamsPerPrincipal) + " streams open"), false);
  c->phase = Phase::busy;
  updateInterest(c);
  onWorker(c, [this, c, pool, name, serial = c->serial] {
    auto opened = std::make_shared<Result<std::unique_ptr<storage::VolumeStream>>>(options_.pools->openVolume(pool, name, storage::StreamMode::read));
    backOnLoop(c, serial, [this, opened](const ConnPtr& cc) {
      if (!opened->ok()) return respondError(cc, 0, opened->error(), false);
      cc->volume = std::shared_ptr<storage::VolumeStream>(std::move(**opened));
      cc->transferOffset = 0;
      cc->transferSize = cc->volume->size();
      HttpResponse head;
      head.contentType = "application/octet-stream";
      head.setHeader("Cache-Control", "no-store");
      beginStream(cc, std::move(head), static_cast<long long>(cc->transferSize));
      cc->onDrained = [this](const ConnPtr& x) { pumpDownload(x); };
      pumpDownload(cc);
    });
  });
}

// One chunk at a time is read on a worker, and only while the client keeps up.
void HttpServer::pumpDownload(const ConnPtr& c) {
  if (c->closed || c->phase != Phase::stream || c->workerBusy || !c->volume) return;
  if (c->transferOffset >= c->transferSize) {
    c->phase = Phase::writing;
    return flush(c);
  }
  if (c->pending() > kStreamHigh) {
    c->throttled = true;
    return flush(c);
  }
  c->workerBusy = true;
  auto volume = c->volume;
  uint64_t offset = c->transferOffset;
  size_t len = static_cast<size_t>(std::min<uint64_t>(kTransferChunk, c->transferSize - offset));
  onWorker(c, [this, c, volume, offset, len, serial = c->serial] {
    auto buf = std::make_shared<std::string>(len, '\0');
    auto got = volume->read(offset, buf->data(), len, Deadline::after(kTransferIdle));
    auto result = std::make_shared<Result<size_t>>(std::move(got));
    backOnLoop(c, serial, [this, buf, result](const ConnPtr& cc) {
      cc->workerBusy = false;
      // The connection is cut: the client sees a short body.
      if (!result->ok() || **result == 0) return close(cc);
      cc->out.append(buf->data(), **result);
      cc->transferOffset += **result;
      flush(cc);
      pumpDownload(cc);
    });
  });
  flush(c);
}

void HttpServer::startUpload(const ConnPtr& c, const std::string& pool, const std::string& name) {
  if (!options_.pools) return respondError(c, 0, unsupported("volume uploads are not available"), true);
  if (!takeStreamSlot(c))
    return respondError(c, 0, unavailable(c->ctx.principal + " already has " + std::to_string(options_.streamsPerPrincipal) + " streams open"), true);
  bool continueWanted = !c->req.header("expect").empty();
  c->phase = Phase::busy;
  updateInterest(c);
  uint64_t size = c->transferSize;
  onWorker(c, [this, c, pool, name, size, continueWanted, serial = c->serial] {
    auto opened = std::make_shared<Result<std::unique_ptr<storage::VolumeStream>>>(options_.pools->openVolume(pool, name, storage::StreamMode::write));
    backOnLoop(c, serial, [this, opened, pool, name, size, continueWanted](const ConnPtr& cc) {
      if (!opened->ok()) return respondError(cc, 0, opened->error(), true);  // the body was not read
      auto volume = std::shared_ptr<storage::VolumeStream>(std::move(**opened));
      if (volume->size() && size > volume->size())
        return respondError(cc, 0, invalidArgument(std::to_string(size) + " bytes do not fit in volume " + pool + "/" + name + " (" +
                                                   std::to_string(volume->size()) + " bytes)"), true);
      cc->volume = volume;
      cc->transferOffset = 0;
      cc->transferPool = pool;
      cc->transferName = name;
      size_t have = static_cast<size_t>(std::min<uint64_t>(cc->in.size(), size));
      cc->chunkBuf.assign(cc->in, 0, have);
      cc->in.erase(0, have);
      cc->phase = Phase::upload;
      cc->lastProgress = SteadyClock::now();
      if (continueWanted && have < size) cc->out += "HTTP/1.1 100 Continue\r\n\r\n";
      flush(cc);
      if (!cc->closed) onUploadBytes(cc);
    });
  });
}

void HttpServer::onUploadBytes(const ConnPtr& c) {
  if (c->closed || c->phase != Phase::upload || c->workerBusy) return;
  uint64_t remaining = c->transferSize - c->transferOffset;
  auto volume = c->volume;
  uint64_t serial = c->serial;
  if (remaining == 0) {  // every byte is written: the volume changes now
    c->workerBusy = true;
    updateInterest(c);
    std::string pool = c->transferPool, name = c->transferName;
    return onWorker(c, [this, c, volume, pool, name, serial] {
      HttpResponse res;
      auto st = volume->finish(Deadline::after(kTransferIdle));
      if (!st.ok()) {
        sendError(res, st.error());
        res.close = true;
      } else if (auto v = options_.pools->getVolume(pool, name); !v.ok()) {
        sendError(res, v.error());
      } else {
        res.setContent(toText(model::formatVolume(*v)), "application/json");
      }
      backOnLoop(c, serial, [this, res](const ConnPtr& cc) {
        cc->workerBusy = false;
        cc->volume.reset();  // released before the reply
        respond(cc, res);
      });
    });
  }
  if (c->chunkBuf.size() < std::min<uint64_t>(kTransferChunk, remaining)) return updateInterest(c);
  c->workerBusy = true;
  updateInterest(c);  // not read while the chunk is written
  auto data = std::make_shared<std::string>(std::move(c->chunkBuf));
  c->chunkBuf.clear();
  uint64_t offset = c->transferOffset;
  onWorker(c, [this, c, volume, data, offset, serial] {
    auto st = std::make_shared<Status>(volume->write(offset, data->data(), data->size(), Deadline::after(kTransferIdle)));
    backOnLoop(c, serial, [this, st, n = data->size()](const ConnPtr& cc) {
      cc->workerBusy = false;
      if (!st->ok()) {
        cc->volume.reset();
        return respondError(cc, 0, st->error(), true);
      }
      cc->transferOffset += n;
      cc->lastProgress = SteadyClock::now();
      onUploadBytes(cc);
      if (!cc->closed && cc->phase == Phase::upload && !cc->workerBusy) onReadable(cc);
    });
  });
}

// ---- authentication and calls

bool HttpServer::hostAllowed(std::string_view header) const {
  // Clients other than browsers may leave it out; browsers (DNS rebinding) always send it.
  if (header.empty()) return true;
  std::string host = lowerCase(std::string(header));
  if (host.front() == '[') {
    auto end = host.find(']');
    host = end == std::string::npos ? host : host.substr(1, end - 1);
  } else if (auto colon = host.find(':'); colon != std::string::npos && host.find(':', colon + 1) == std::string::npos) {
    host.resize(colon);
  }
  const auto& allowed = options_.allowedHosts;
  if (!allowed.empty()) return std::find(allowed.begin(), allowed.end(), "*") != allowed.end() ||
                               std::find(allowed.begin(), allowed.end(), host) != allowed.end();
  if (!loopback_) return true;
  return host == "localhost" || host == "127.0.0.1" || host == "::1" || host == lowerCase(host_);
}

Result<CallContext> HttpServer::authenticate(const HttpRequest& req, std::optional<TokenInfo>& token) const {
  CallContext ctx;
  ctx.transport = "http";
  if (req.headerCount("authorization") > 1) return Error{ErrorCode::unauthenticated, "send one Authorization header, not several"};
  std::string auth = req.header("authorization");
  if (auth.empty() && !req.clientCertificate.empty()) {
    auto info = tokens_.verifyCertificate(req.clientCertificate);
    if (!info) return Error{ErrorCode::unauthenticated, "unknown, expired or revoked client certificate (SHA-256 " + req.clientCertificate + ")"};
    ctx.role = parseRole(info->role).value_or(Role::read);
    ctx.principal = "certificate " + info->name;
    ctx.peer = ctx.principal;
    ctx.boundProject = info->project;
    token = info;
    return ctx;
  }
  if (auth.empty()) {
    if (options_.anonymousAccess == "read") {
      ctx.role = Role::read;
      ctx.principal = "anonymous";
      ctx.peer = "anonymous " + req.peer;
      return ctx;
    }
    return Error{ErrorCode::unauthenticated, "authentication required: send \"Authorization: Bearer <token>\" (create one with `vmctl token create NAME`)"};
  }
  if (!startsWith(auth, "Bearer ")) return Error{ErrorCode::unauthenticated, "unsupported authorization scheme; use Bearer tokens"};
  auto info = tokens_.verify(std::string(trim(auth.substr(7))));
  if (!info) return Error{ErrorCode::unauthenticated, "unknown, expired or revoked token"};
  ctx.role = parseRole(info->role).value_or(Role::read);
  ctx.principal = "token " + info->name;
  ctx.boundProject = info->project;
  token = info;
  ctx.peer = ctx.principal;
  return ctx;
}

void HttpServer::serveCall(const HttpRequest& req, HttpResponse& res, const CallContext& ctx) {
  if (req.method == "GET" && req.path == "/metrics") {
    res.setContent(metrics_ ? metrics_() : std::string(), "text/plain; version=0.0.4");
    return;
  }
  if (req.method == "GET" && req.path == "/v1/openapi.json") {
    res.setContent(toText(registry_.openapi()), "application/json");
    return;
  }
  json params = json::object();
  bool pathKnown = false;
  const OperationSpec* spec = findRoute(req.method, req.path, params, pathKnown);
  if (!spec) return sendError(res, notFound("no such endpoint: " + req.method + " " + req.path));

  for (const auto& [key, value] : req.params) {
    const ParamSpec* p = nullptr;
    for (const auto& ps : spec->params)
      if (ps.name == key && ps.in == ParamIn::query) p = &ps;
    if (!p) return sendError(res, invalidArgument(key + ": unknown query parameter of " + spec->name));
    auto v = queryValue(*p, value);
    if (!v.ok()) return sendError(res, v.error());
    params[key] = *v;
  }
  if (!spec->http->ifMatchParam.empty()) {
    std::string ifMatch = req.header("If-Match");
    if (!ifMatch.empty()) {
      std::string g(trim(ifMatch));
      if (startsWith(g, "W/")) g = g.substr(2);
      if (g.size() >= 2 && g.front() == '"' && g.back() == '"') g = g.substr(1, g.size() - 2);
      auto gen = parseInt(g);
      if (!gen) return sendError(res, invalidArgument("If-Match: expected a generation such as \"3\""));
      params[spec->http->ifMatchParam] = *gen;
    }
  }
  if (!req.body.empty()) {
    std::string contentType = req.header("Content-Type");
    json body;
    bool xmlBody = startsWith(contentType, "application/xml") || startsWith(contentType, "text/xml");
    if (xmlBody && spec->http->xmlBody) {
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
  auto result = registry_.call(ctx, spec->name, std::move(params));
  if (!result.ok()) return sendError(res, result.error());
  res.status = result->status;
  for (const auto& [k, v] : result->headers) res.setHeader(k, v);
  if (!spec->http->xmlReply.empty() && req.header("Accept").find("xml") != std::string::npos)
    return res.setContent(result->body.value(spec->http->xmlReply, ""), "application/xml");
  res.setContent(replyText(*result), "application/json");
}

}  // namespace vmm::api
