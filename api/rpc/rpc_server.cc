#include "api/rpc/rpc_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "api/wire.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/socket_util.h"
#include "base/strings.h"

namespace vmm::api {

using json = nlohmann::json;

namespace {
// Members of one batch line; each may be answered by the worker pool.
constexpr size_t kMaxBatch = 256;

// A JSON-RPC error object: the HTTP status as its code, the error's kind in data (errorJson's
// fields, in the places JSON-RPC 2.0 gives them).
json rpcError(const Error& e) {
  json wire = errorJson(e);
  return {{"code", wire["code"]}, {"message", wire["message"]}, {"data", {{"kind", wire["kind"]}}}};
}
}  // namespace

// Unread replies above which a connection's requests are not read.
constexpr size_t kPauseOutput = 1 << 20;
// One loop turn serves a connection at most this much: a client that keeps its socket full
// (a flood of bad lines) must not hold the event loop while every other client waits. Reading
// stops while read lines wait; the rest are handled from the next turns.
constexpr int kReadsPerTurn = 4;
constexpr int kLinesPerTurn = 64;
// The throttle of connections sending only bad lines (rpc_server.h).
constexpr int kFaultsBeforePause = 64;
constexpr Millis kFirstPause{50};
constexpr Millis kLongestPause{2000};

struct RpcServer::Connection {
  fs::UniqueFd fd;
  CallContext ctx;
  std::string usageKey;   // "ro:1000"
  bool readOnly = true;
  size_t maxRequest = 0;  // bytes of one line
  size_t maxPending = 0;  // bytes of unread replies before the peer is disconnected
  std::string in;
  size_t scanned = 0;  // in[0, scanned) holds no newline: each byte is searched once
  std::string out;
  size_t outOffset = 0;
  bool closed = false;
  bool closeAfterFlush = false;
  uint32_t interest = 0;  // the epoll mask now set
  size_t inFlight = 0;    // lines read and not answered yet
  bool processing = false;
  bool resumePosted = false;
  bool delivering = false;  // deliverEvents() is on the stack
  int faultStreak = 0;      // lines refused in a row as the client's mistake
  Millis nextPause = kFirstPause;
  bool paused = false;      // not read until its pause timer fires
  EventLoop::TimerId pauseTimer = 0;
  std::map<uint64_t, std::shared_ptr<Subscription>> subs;
  size_t pending() const { return out.size() - outOffset; }
  bool lineWaiting() const { return in.find('\n', scanned) != std::string::npos; }
};

RpcServer::RpcServer(EventLoop& loop, ThreadPool& pool, Registry& registry, EventBus& events, RpcOptions options)
    : loop_(loop), pool_(pool), registry_(registry), events_(events), options_(std::move(options)) {
  if (options_.dispatcher) {
    dispatcher_ = options_.dispatcher;
  } else {
    ownDispatcher_ = std::make_unique<Dispatcher>(pool_, pool_);
    dispatcher_ = ownDispatcher_.get();
  }
}

RpcServer::~RpcServer() { stop(); }

Status RpcServer::start() {
  // With operators as well as the socket group, the file cannot name both groups: it is open
  // to all and roleOf() refuses whoever has no role.
  bool operators = options_.operatorGroup != static_cast<gid_t>(-1);
  VMM_ASSIGN(auto rw, listenUnix(options_.socketPath, operators ? 0666 : options_.group != static_cast<gid_t>(-1) ? 0660 : 0600,
                                 operators ? static_cast<gid_t>(-1) : options_.group));
  rwFd_ = std::move(rw);
  if (!options_.roSocketPath.empty()) {
    VMM_ASSIGN(auto ro, listenUnix(options_.roSocketPath, options_.roEveryone ? 0666 : 0660, options_.roGroup));
    roFd_ = std::move(ro);
  }
  loop_.runSync([this] {
    loop_.watch(rwFd_.get(), EPOLLIN, [this](uint32_t) { accept(rwFd_.get(), false); });
    if (roFd_.valid()) loop_.watch(roFd_.get(), EPOLLIN, [this](uint32_t) { accept(roFd_.get(), true); });
  });
  return {};
}

void RpcServer::stop() {
  if (!rwFd_.valid()) return;
  loop_.runSync([this] {
    loop_.unwatch(rwFd_.get());
    if (roFd_.valid()) loop_.unwatch(roFd_.get());
    auto conns = conns_;
    for (auto& [fd, c] : conns) close(c);
    auto relays = relays_;
    for (auto& [p, r] : relays) r->stop();
    relays_.clear();
  });
  ::unlink(options_.socketPath.c_str());
  if (!options_.roSocketPath.empty()) ::unlink(options_.roSocketPath.c_str());
  rwFd_.reset();
  roFd_.reset();
}

size_t RpcServer::connectionCount() const { return connCount_.load(); }

std::string RpcServer::describeConnections() {
  std::string out;
  loop_.runSync([&] {
    for (const auto& [fd, c] : conns_) {
      out += "fd " + std::to_string(fd) + " " + c->usageKey + ": in " + std::to_string(c->in.size()) + " scanned " +
             std::to_string(c->scanned) + " line_waiting " + std::to_string(c->lineWaiting()) + " in_flight " +
             std::to_string(c->inFlight) + " pending " + std::to_string(c->pending()) + " interest " +
             std::to_string(c->interest) + " paused " + std::to_string(c->paused) + " processing " +
             std::to_string(c->processing) + " resume_posted " + std::to_string(c->resumePosted) + " close_after_flush " +
             std::to_string(c->closeAfterFlush) + " fault_streak " + std::to_string(c->faultStreak) + " subs " +
             std::to_string(c->subs.size()) + "\n";
    }
  });
  return out;
}

void RpcServer::accept(int listenFd, bool readOnly) {
  while (true) {
    int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR) log::warn("accept failed on the RPC socket", {{"errno", errno}});
      return;
    }
    // A large send buffer lets a big reply (a list of thousands of domains) leave in one
    // write instead of many EPOLLOUT rounds; root may exceed net.core.wmem_max.
    int sndbuf = 4 << 20;
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) != 0)
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    auto c = std::make_shared<Connection>();
    c->fd.reset(fd);
    c->ctx.transport = "rpc";
    auto cred = peerCredentials(fd);
    if (cred.ok()) {
      c->ctx.principal = "uid " + std::to_string(cred->uid) + " (pid " + std::to_string(cred->pid) + ")";
      c->ctx.peer = "uid " + std::to_string(cred->uid);
      auto role = roleOf(*cred, readOnly);
      if (!role) {
        refuse(c->fd.release(), "uid " + std::to_string(cred->uid),
               "uid " + std::to_string(cred->uid) + " may not use this socket: it is in none of the groups given a role "
               "([rpc] group, operator_group, ro_group)", ErrorCode::permission_denied);
        continue;
      }
      c->ctx.role = *role;
      // Operators are bound on either socket: the read-only one must not be their way out.
      if (*role != Role::admin && options_.operatorGroup != static_cast<gid_t>(-1) && peerInGroup(*cred, options_.operatorGroup))
        c->ctx.boundProject = options_.operatorProject;
    } else if (!readOnly) {
      refuse(c->fd.release(), "?", "vmmd cannot tell who you are (SO_PEERCRED failed)", ErrorCode::permission_denied);
      continue;
    } else {
      c->ctx.principal = c->ctx.peer = "unknown peer";
      c->ctx.role = Role::read;
    }
    c->readOnly = c->ctx.role == Role::read;
    c->usageKey = std::string(c->readOnly ? "ro:" : "rw:") + (cred.ok() ? std::to_string(cred->uid) : "?");
    c->maxRequest = c->readOnly ? std::min(options_.maxReadOnlyRequestBytes, options_.maxRequestBytes) : options_.maxRequestBytes;
    c->maxPending = c->readOnly ? std::min(options_.maxReadOnlyPendingOutput, options_.maxPendingOutput) : options_.maxPendingOutput;
    size_t perUid = c->readOnly ? options_.readOnlyConnectionsPerUid : options_.connectionsPerUid;
    auto& usage = usage_[c->usageKey];
    if (conns_.size() >= options_.maxConnections) {
      refuse(c->fd.release(), c->usageKey, "vmmd has " + std::to_string(conns_.size()) + " RPC connections, its limit; retry later");
      continue;
    }
    if (usage.connections >= perUid) {
      refuse(c->fd.release(), c->usageKey,
             c->ctx.peer + " already has " + std::to_string(usage.connections) + " " + (c->readOnly ? "read-only " : "") +
                 "RPC connections, the limit per uid; close one first");
      continue;
    }
    ++usage.connections;
    conns_[fd] = c;
    connCount_ = conns_.size();
    std::weak_ptr<Connection> weak = c;
    c->interest = EPOLLIN | EPOLLRDHUP;
    loop_.watch(fd, c->interest, [this, weak](uint32_t ev) {
      auto conn = weak.lock();
      if (!conn || conn->closed) return;
      if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) onReadable(conn);
      if (!conn->closed && (ev & EPOLLOUT)) onWritable(conn);
    });
  }
}

std::optional<Role> RpcServer::roleOf(const PeerCred& cred, bool readOnlySocket) const {
  if (readOnlySocket) return Role::read;  // the socket file's mode chose who connects
  if (peerInGroup(cred, options_.group)) return Role::admin;
  if (options_.operatorGroup == static_cast<gid_t>(-1)) return Role::read;  // the file's mode let it in
  if (peerInGroup(cred, options_.operatorGroup)) return Role::operate;
  // The socket is open to every user: the rest get what the read-only socket would give them.
  if (options_.roEveryone || (options_.roGroup != 0 && peerInGroup(cred, options_.roGroup))) return Role::read;
  return std::nullopt;
}

// The one line a refused connection gets; it is closed at once (nothing of it is read).
void RpcServer::refuse(int fd, const std::string& key, const std::string& message, ErrorCode code) {
  fs::UniqueFd owned(fd);
  ++refused_;
  std::string line = toText({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", rpcError(Error{code, message})}}) + "\n";
  (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  // One log line per 10 s at most: refusals come in floods.
  int64_t now = wallNowMicros();
  if (now - lastRefusalLogUs_ >= 10000000) {
    lastRefusalLogUs_ = now;
    log::warn("RPC connection refused", {{"peer", key}, {"reason", message}, {"refused_total", refused_.load()}});
  }
}

void RpcServer::dropSubscriptions(Connection& c) {
  for (auto& [id, sub] : c.subs) events_.unsubscribe(sub);
  auto it = usage_.find(c.usageKey);
  if (it != usage_.end()) it->second.subscriptions -= std::min(it->second.subscriptions, c.subs.size());
  c.subs.clear();
}

void RpcServer::close(const std::shared_ptr<Connection>& c) {
  loop_.assertInLoopThread("RpcServer::close");
  if (c->closed) return;
  c->closed = true;
  dropSubscriptions(*c);
  auto it = usage_.find(c->usageKey);
  if (it != usage_.end() && --it->second.connections == 0 && it->second.subscriptions == 0) usage_.erase(it);
  loop_.unwatch(c->fd.get());
  conns_.erase(c->fd.get());
  connCount_ = conns_.size();
  c->fd.reset();
  if (c->pauseTimer) loop_.cancelTimer(c->pauseTimer);
}

bool RpcServer::overloaded(const Connection& c) const {
  return c.inFlight >= options_.inFlightPerConnection || c.pending() > kPauseOutput;
}

void RpcServer::updateInterest(const std::shared_ptr<Connection>& c) {
  if (c->closed) return;
  bool reading = !overloaded(*c) && !c->closeAfterFlush && !c->paused;
  bool lineWaiting = c->lineWaiting();
  uint32_t want = (reading && !lineWaiting ? static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP) : 0u) |
                  (c->pending() ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  if (want != c->interest) {
    c->interest = want;
    loop_.modify(c->fd.get(), want);
  }
  // Lines that arrived while it was paused are handled now, from a fresh loop turn (this may
  // run inside processLines, through a quick call's reply).
  if (reading && !c->processing && !c->resumePosted && lineWaiting) {
    c->resumePosted = true;
    std::weak_ptr<Connection> weak = c;
    loop_.post([this, weak] {
      auto conn = weak.lock();
      if (!conn || conn->closed) return;
      conn->resumePosted = false;
      processLines(conn);
    });
  }
}

void RpcServer::requestDone(const std::shared_ptr<Connection>& c, bool fault) {
  if (c->inFlight > 0) --c->inFlight;
  if (!fault) {
    c->faultStreak = 0;
    c->nextPause = kFirstPause;
  } else if (++c->faultStreak >= kFaultsBeforePause) {
    pauseFaultyConnection(c);
  }
  updateInterest(c);
}

void RpcServer::pauseFaultyConnection(const std::shared_ptr<Connection>& c) {
  c->faultStreak = 0;
  if (c->paused || c->closed) return;
  c->paused = true;
  ++throttled_;
  Millis pause = c->nextPause;
  c->nextPause = std::min(pause * 2, kLongestPause);
  std::weak_ptr<Connection> weak = c;
  c->pauseTimer = loop_.addTimer(pause, [this, weak] {
    auto conn = weak.lock();
    if (!conn || conn->closed) return;
    conn->paused = false;
    conn->pauseTimer = 0;
    updateInterest(conn);
  });
  // One log line per 10 s at most: a flood pauses its connections many times a second.
  int64_t now = wallNowMicros();
  if (now - lastThrottleLogUs_ >= 10000000) {
    lastThrottleLogUs_ = now;
    log::warn("RPC connection paused: its last lines were all refused",
              {{"principal", c->ctx.principal}, {"lines", kFaultsBeforePause}, {"pause_ms", pause.count()},
               {"throttled_total", throttled_.load()}});
  }
}

void RpcServer::onReadable(const std::shared_ptr<Connection>& c) {
  loop_.assertInLoopThread("RpcServer::onReadable");
  char buf[65536];
  for (int reads = 0; reads < kReadsPerTurn && !c->closed && !overloaded(*c) && !c->closeAfterFlush && !c->paused &&
                       !c->lineWaiting();
       ++reads) {
    ssize_t n = ::read(c->fd.get(), buf, sizeof buf);
    if (n > 0) {
      c->in.append(buf, static_cast<size_t>(n));
      processLines(c);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    close(c);  // EOF or error
    return;
  }
  updateInterest(c);
}

void RpcServer::processLines(const std::shared_ptr<Connection>& c) {
  auto tooLarge = [&] {
    json err = {{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", kRpcInvalidRequest}, {"message", "request larger than " + std::to_string(c->maxRequest) + " bytes" + (c->readOnly ? " (the limit of read-only connections)" : "")}}}};
    c->in.clear();
    c->scanned = 0;
    c->closeAfterFlush = true;  // before send(): a reply flushed at once closes right there
    send(c, toText(err));
  };
  c->processing = true;
  size_t start = 0;
  for (int lines = 0; lines < kLinesPerTurn && !c->closed && !c->paused && !overloaded(*c);) {
    size_t nl = c->in.find('\n', std::max(start, c->scanned));
    if (nl == std::string::npos) {
      c->scanned = c->in.size();
      break;
    }
    std::string_view line(c->in.data() + start, nl - start);
    if (line.size() > c->maxRequest) {
      c->processing = false;
      return tooLarge();
    }
    start = nl + 1;
    if (!trim(line).empty()) {
      ++c->inFlight;
      ++lines;
      handleLine(c, line);
    }
  }
  c->processing = false;
  if (c->closed) return;
  c->in.erase(0, start);
  c->scanned = c->scanned > start ? c->scanned - start : 0;
  // Nothing can be answered on a stream we can no longer frame: say why, then close.
  if (c->in.size() > c->maxRequest && c->in.find('\n', c->scanned) == std::string::npos) return tooLarge();
  updateInterest(c);
}

void RpcServer::onWritable(const std::shared_ptr<Connection>& c) {
  loop_.assertInLoopThread("RpcServer::onWritable");
  while (c->outOffset < c->out.size()) {
    ssize_t n = ::send(c->fd.get(), c->out.data() + c->outOffset, c->out.size() - c->outOffset, MSG_NOSIGNAL);
    if (n > 0) {
      c->outOffset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    close(c);
    return;
  }
  if (c->outOffset == c->out.size()) {
    c->out.clear();
    c->outOffset = 0;
    if (c->closeAfterFlush) {
      close(c);
      return;
    }
    // Events may have waited for the buffer to drain.
    if (!c->subs.empty()) deliverEvents(c);
  } else if (c->outOffset > (1 << 20)) {
    c->out.erase(0, c->outOffset);
    c->outOffset = 0;
  }
  updateInterest(c);
}

// Loop thread only.
void RpcServer::send(const std::shared_ptr<Connection>& c, std::string text) {
  loop_.assertInLoopThread("RpcServer::send");
  if (c->closed) return;
  if (c->pending() > c->maxPending) {
    log::warn("RPC client is not reading its replies; disconnecting", {{"principal", c->ctx.principal}});
    close(c);
    return;
  }
  text += '\n';
  if (c->out.empty()) {
    c->out = std::move(text);
    c->outOffset = 0;
  } else {
    c->out += text;
  }
  onWritable(c);
}

void RpcServer::deliverEvents(const std::shared_ptr<Connection>& c) {
  loop_.assertInLoopThread("RpcServer::deliverEvents");
  // Leave events in the subscription's bounded queue while the client is not reading.
  if (c->pending() > kPauseOutput) return;
  // send() flushes, and a flush that empties the buffer delivers events: called again from
  // there, this would erase from c->subs under the loop below (and reorder a subscription's
  // events). The loop below delivers them; events queued after its drain() post a new call.
  if (c->delivering) return;
  c->delivering = true;
  for (auto it = c->subs.begin(); it != c->subs.end();) {
    bool closed = false;
    auto events = it->second->drain(closed);
    for (const auto& e : events) {
      // The event's text was made once by the bus, for every subscriber.
      send(c, "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"subscription\":" + std::to_string(it->first) +
                  ",\"event\":" + it->second->textOf(*e) + "}}");
      if (c->closed) break;
    }
    if (c->closed) break;
    if (closed) {
      events_.unsubscribe(it->second);
      if (auto u = usage_.find(c->usageKey); u != usage_.end() && u->second.subscriptions > 0) --u->second.subscriptions;
      it = c->subs.erase(it);
    } else {
      ++it;
    }
  }
  c->delivering = false;
}

void RpcServer::becomeStream(const std::shared_ptr<Connection>& c, const std::string& replyText, fs::UniqueFd stream) {
  // Whatever the client sent after its request is already console input.
  std::string pendingOut = c->out.substr(c->outOffset) + replyText + "\n";
  std::string pendingIn = std::move(c->in);
  dropSubscriptions(*c);
  c->closed = true;
  if (auto u = usage_.find(c->usageKey); u != usage_.end() && u->second.connections > 0) --u->second.connections;
  loop_.unwatch(c->fd.get());
  conns_.erase(c->fd.get());
  connCount_ = conns_.size();
  ByteRelay::Options o;
  o.pendingToA = std::move(pendingOut);
  o.pendingToB = std::move(pendingIn);
  auto holder = std::make_shared<ByteRelay*>(nullptr);
  o.onClosed = [this, holder] {
    // Deferred: the relay is still on the stack when it reports closing.
    loop_.post([this, holder] { relays_.erase(*holder); });
  };
  auto relay = ByteRelay::start(loop_, std::move(c->fd), std::move(stream), std::move(o));
  *holder = relay.get();
  relays_[relay.get()] = relay;
}

void RpcServer::handleLine(const std::shared_ptr<Connection>& c, std::string_view line) {
  // Depth is capped while parsing: nothing below can recurse deeper than kJsonMaxDepth.
  auto doc = parseJson(line, options_.maxRequestBytes, kJsonMaxDepth, "invalid JSON");
  if (!doc.ok()) {
    send(c, toText({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", kRpcParseError}, {"message", "parse error: " + doc.error().message}}}}));
    return requestDone(c, true);
  }
  json parsed = std::move(*doc);
  std::weak_ptr<Connection> weak = c;
  // Called once per line read (text "" when nothing is to be sent): the line is answered.
  auto respondOnLoop = [this, weak](Answer answer) {
    auto deliver = [this, weak](Answer a) {
      auto conn = weak.lock();
      if (!conn || conn->closed) return;
      if (!a.text.empty()) send(conn, std::move(a.text));
      if (!conn->closed) requestDone(conn, a.fault);
    };
    if (loop_.inLoopThread()) return deliver(std::move(answer));  // a quick call answered inline
    loop_.post([deliver, answer = std::move(answer)]() mutable { deliver(std::move(answer)); });
  };
  if (parsed.is_array()) {
    if (parsed.empty()) {
      send(c, toText({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", kRpcInvalidRequest}, {"message", "empty batch"}}}}));
      return requestDone(c, true);
    }
    if (parsed.size() > kMaxBatch) {
      send(c, toText({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", kRpcInvalidRequest}, {"message", "batch of " + std::to_string(parsed.size()) + " requests; at most " + std::to_string(kMaxBatch) + " are accepted"}}}}));
      return requestDone(c, true);
    }
    // A batch: answer with one array once every member has answered.
    struct Batch {
      std::mutex mu;
      json replies = json::array();
      size_t pending;
      bool allFaults = true;  // the batch counts as one bad line when every member was
    };
    auto batch = std::make_shared<Batch>();
    batch->pending = parsed.size();
    for (auto& req : parsed) {
      handleRequest(c, std::move(req), [batch, respondOnLoop](Answer reply) {
        json all;
        bool fault;
        {
          std::lock_guard lock(batch->mu);
          if (!reply.text.empty()) batch->replies.push_back(json::parse(reply.text, nullptr, false));
          batch->allFaults = batch->allFaults && reply.fault;
          if (--batch->pending > 0) return;
          all = std::move(batch->replies);
          fault = batch->allFaults;
        }
        respondOnLoop(Answer{all.empty() ? std::string() : toText(all), fault});
      });
    }
    return;
  }
  handleRequest(c, std::move(parsed), respondOnLoop);
}

// Loop thread. `respond` may be called from any thread, with null for notifications.
void RpcServer::handleRequest(const std::shared_ptr<Connection>& c, json req, std::function<void(Answer)> respond) {
  auto invalid = [&](const std::string& msg, json id) {
    respond({toText({{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", kRpcInvalidRequest}, {"message", msg}}}}), true});
  };
  if (!req.is_object()) return invalid("invalid request: expected a JSON object", nullptr);
  // Members are type-checked before use and moved out, never copied.
  auto idIt = req.find("id");
  bool notification = idIt == req.end();
  json id = notification ? json() : std::move(*idIt);
  if (!id.is_null() && !id.is_string() && !id.is_number_integer()) return invalid("invalid request: id must be a string or an integer", nullptr);
  if (jsonStringOr(req, "jsonrpc", "") != "2.0") return invalid("invalid request: \"jsonrpc\" must be \"2.0\"", id);
  auto methodName = jsonString(req, "method");
  if (!methodName) return invalid("invalid request: \"method\" must be a string", id);
  for (auto it = req.begin(); it != req.end(); ++it)
    if (it.key() != "jsonrpc" && it.key() != "id" && it.key() != "method" && it.key() != "params")
      return invalid("invalid request: unknown member " + quote(it.key()), id);
  std::string method = std::move(*methodName);
  auto paramsIt = req.find("params");
  json params = paramsIt == req.end() ? json::object() : std::move(*paramsIt);
  auto reply = [respond, id, notification](Result<Reply> r) {
    // Refusals of what the request asked for, not of the state it met (not found, conflict).
    bool fault = !r.ok() && (r.error().code == ErrorCode::invalid_argument ||
                             r.error().code == ErrorCode::permission_denied);
    if (notification) return respond({std::string(), fault});
    if (r.ok()) return respond({"{\"jsonrpc\":\"2.0\",\"id\":" + toText(id) + ",\"result\":" + replyText(*r) + "}"});
    const Error& e = r.error();
    respond({toText({{"jsonrpc", "2.0"}, {"id", id}, {"error", rpcError(e)}}), fault});
  };

  // Transport-level methods: event subscriptions belong to the connection.
  if (method == "events.subscribe") {
    EventFilter filter;
    if (!params.is_object()) return reply(invalidArgument("params: expected an object"));
    json scope = json::object();
    for (auto it = params.begin(); it != params.end(); ++it) {
      if (it.key() == "project" || it.key() == "all_projects") {
        scope[it.key()] = *it;
      } else if (it.key() == "types" && it->is_array()) {
        for (const auto& t : *it) {
          if (!t.is_string()) return reply(invalidArgument("types: expected an array of event type names"));
          filter.types.push_back(t.get<std::string>());
        }
      } else if (it.key() == "object" && it->is_string()) {
        filter.object = it->get<std::string>();
      } else {
        return reply(invalidArgument(it.key() + ": unknown parameter of events.subscribe (types: array, object: string, "
                                                "project: string, all_projects: boolean)"));
      }
    }
    if (auto st = filter.check(); !st.ok()) return reply(st.error());
    CallContext scoped = c->ctx;
    if (auto st = registry_.enterProject(scoped, scope); !st.ok()) return reply(st.error());
    if (!scoped.allProjects) filter.project = scoped.project;
    filter.object = model::qualifyObject(filter.object, scoped.project);
    filter.guestOutput = c->ctx.may(Role::operate);
    filter.accessRecords = c->ctx.may(Role::admin);
    auto& usage = usage_[c->usageKey];
    size_t perUid = c->readOnly ? options_.readOnlySubscriptionsPerUid : options_.subscriptionsPerUid;
    if (c->subs.size() >= options_.subscriptionsPerConnection)
      return reply(unavailable("this connection already has " + std::to_string(c->subs.size()) + " subscriptions, the limit"));
    if (usage.subscriptions >= perUid)
      return reply(unavailable(c->ctx.peer + " already has " + std::to_string(usage.subscriptions) + " event subscriptions, the limit per uid"));
    auto sub = c->readOnly ? events_.subscribe(filter, options_.readOnlyQueueEvents, options_.readOnlyQueueBytes)
                           : events_.subscribe(filter);
    ++usage.subscriptions;
    std::weak_ptr<Connection> weak = c;
    sub->setNotify([this, weak] {
      loop_.post([this, weak] {
        auto conn = weak.lock();
        if (conn && !conn->closed) deliverEvents(conn);
      });
    });
    c->subs[sub->id()] = sub;
    return reply(Reply(json{{"subscription", sub->id()}, {"last_seq", events_.lastSeq()}}));
  }
  if (method == "events.unsubscribe") {
    if (!params.is_object()) return reply(invalidArgument("params: expected an object"));
    auto given = jsonUint(params, "subscription");
    if (!given) return reply(invalidArgument("subscription: expected the integer id events.subscribe returned"));
    uint64_t subId = *given;
    auto it = c->subs.find(subId);
    if (it == c->subs.end()) return reply(notFound("no subscription " + std::to_string(subId) + " on this connection"));
    events_.unsubscribe(it->second);
    c->subs.erase(it);
    if (auto u = usage_.find(c->usageKey); u != usage_.end() && u->second.subscriptions > 0) --u->second.subscriptions;
    return reply(Reply(json::object()));
  }
  if (isStreamMethod(method)) {
    // Consoles take keyboard input and transfers change or reveal volumes: read-write access.
    if (!c->ctx.may(Role::operate)) {
      Error refusal = permissionDenied(method + " needs the operator role");
      std::string object = method == "domain.console" ? "domains/" + jsonStringOr(params, "name", "")
                                                      : "pools/" + jsonStringOr(params, "pool", "") + "/volumes/" + jsonStringOr(params, "name", "");
      registry_.record(c->ctx, method, object, refusal);
      return reply(refusal);
    }
    if (notification) return respond({});
    if (!options_.openStream) return reply(unsupported(method + " is not available"));
    std::weak_ptr<Connection> weak = c;
    pool_.submit([this, weak, method, params, id, reply, caller = c->ctx] {
      auto start = options_.openStream(caller, method, params);
      if (!start.ok()) return reply(start.error());
      std::string text = "{\"jsonrpc\":\"2.0\",\"id\":" + toText(id) + ",\"result\":" + toText(start->result) + "}";
      auto stream = std::make_shared<fs::UniqueFd>(std::move(start->fd));
      loop_.post([this, weak, text, stream] {
        auto conn = weak.lock();
        if (conn && !conn->closed) becomeStream(conn, text, std::move(*stream));
      });
    });
    return;
  }
  const OperationSpec* spec = findSpec(method);
  if (!spec) {
    if (notification) return respond({std::string(), true});
    return respond({toText({{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", kRpcMethodNotFound}, {"message", "method not found: " + method}}}}), true});
  }
  CallContext ctx = c->ctx;
  if (spec->lane == Lane::quick) {
    loop_.annotate("rpc " + method);  // named by the loop's watchdog if it ever runs long
    return reply(registry_.call(ctx, method, std::move(params)));
  }
  // A call for a worker is real work (bounded by the in-flight cap), and its answer comes after
  // later lines: the throttle's count of bad lines in a row restarts here, in line order.
  c->faultStreak = 0;
  auto queued = dispatcher_->submit(*spec, ctx, [this, ctx, method, params = std::move(params), reply]() mutable {
    reply(registry_.call(ctx, method, std::move(params)));
  });
  if (!queued.ok()) reply(queued.error());
}

}  // namespace vmm::api
