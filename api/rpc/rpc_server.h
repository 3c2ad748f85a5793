// JSON-RPC 2.0 over unix stream sockets, one JSON text per line. Two sockets: the
// read-write one (root and the configured group, checked with SO_PEERCRED) and a read-only
// one anyone may use. Requests on one connection run concurrently; responses carry their
// ids. Event subscriptions ("events.subscribe") arrive as "event" notifications.
//
// Connections live on the event loop; quick calls run there, the others through the
// Dispatcher (spec.h has the rule).
//
// Bounds (a read-only peer is any local user): connections in all and per uid, subscriptions
// per connection and per uid, filter sizes (EventFilter::check), the partial line a
// connection may buffer, batch size, requests in flight per connection, and replies a peer
// leaves unread. Read-only peers get lower bounds than the read-write group: their largest
// legitimate line is a name, an id or a filter (well under 1 KiB), so 64 KiB of partial line
// instead of 4 MiB (which definitions and XML need) keeps 64 connections of one uid under
// 4 MiB. A connection whose replies pile up (more than 1 MiB unread) or that has too many
// requests in flight is simply not read until that drains: a client that does not read its
// replies cannot make vmmd buffer more for it.
//
// A connection whose last kFaultsBeforePause lines were all refused as the client's mistake
// (unparseable, not a request, unknown method, invalid parameters, not allowed) is not read
// for a while, longer each time it goes on (50 ms doubling to 2 s; one accepted call resets
// it, as does a call that goes to a worker): a flood of bad lines costs vmmd a few hundred
// lines a second per connection instead of a whole CPU. No working client sends 64 bad lines
// in a row.
//
// Thread-safety: start()/stop() from the owning thread; everything else is internal and runs
// on the loop thread (checked with EventLoop::assertInLoopThread).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "api/dispatcher.h"
#include "api/registry.h"
#include "base/byte_relay.h"
#include "base/event_loop.h"
#include "base/fs.h"
#include "base/socket_util.h"
#include "api/wire.h"
#include "base/thread_pool.h"
#include "daemon/event_bus.h"

namespace vmm::api {

struct RpcOptions {
  std::string socketPath;
  std::string roSocketPath;
  gid_t group = static_cast<gid_t>(-1);  // may use the read-write socket
  // Operators on the read-write socket. When set, the socket is 0666 and vmmd itself refuses
  // peers with no role (neither admin, operator nor allowed on the read-only socket).
  gid_t operatorGroup = static_cast<gid_t>(-1);
  std::string operatorProject;  // operators (the group's members) act in this project only
  gid_t roGroup = 0;                      // may use the read-only socket (0660 root:roGroup) ...
  bool roEveryone = false;                // ... or every local user (0666)
  size_t maxRequestBytes = 4 << 20;
  size_t maxReadOnlyRequestBytes = 64 << 10;
  size_t maxPendingOutput = 64 << 20;    // a client that reads nothing is disconnected
  size_t maxReadOnlyPendingOutput = 16 << 20;
  size_t maxConnections = 4096;           // all peers together
  size_t connectionsPerUid = 512;
  size_t readOnlyConnectionsPerUid = 64;
  size_t subscriptionsPerConnection = 64;
  size_t subscriptionsPerUid = 1024;
  size_t readOnlySubscriptionsPerUid = 128;
  size_t readOnlyQueueEvents = 1024;      // event queue of a read-only subscription
  size_t readOnlyQueueBytes = 4 << 20;
  size_t inFlightPerConnection = 32;      // requests being answered; more are not read yet
  // Runs calls that are not quick; null: one of the server's own on `pool`.
  Dispatcher* dispatcher = nullptr;
  // Stream methods (domain.console, volume.upload, volume.download): the connection becomes
  // the returned fd's byte stream after the reply.
  std::function<Result<StreamStart>(const CallContext& caller, const std::string& method, const nlohmann::json& params)> openStream;
};

class RpcServer {
 public:
  RpcServer(EventLoop& loop, ThreadPool& pool, Registry& registry, EventBus& events, RpcOptions options);
  ~RpcServer();
  Status start();
  void stop();
  size_t connectionCount() const;
  uint64_t refusedConnections() const { return refused_.load(); }
  // Times a connection was paused for sending only bad lines.
  uint64_t throttledConnections() const { return throttled_.load(); }
  // Each connection's state, one line each (diagnostics: what a connection that stopped
  // answering waits for). Any thread; runs on the loop.
  std::string describeConnections();

 private:
  struct Connection;
  // A line's answer: its JSON text ("" for a notification) and whether the request was
  // refused as the client's mistake (what the throttle counts).
  struct Answer {
    std::string text;
    bool fault = false;
  };
  struct PeerUsage {
    size_t connections = 0, subscriptions = 0;
  };
  void accept(int listenFd, bool readOnly);
  void refuse(int fd, const std::string& key, const std::string& message, ErrorCode code = ErrorCode::unavailable);
  // The role of a peer of the read-write or read-only socket; none: the peer may not use it.
  std::optional<Role> roleOf(const PeerCred& cred, bool readOnlySocket) const;
  void onReadable(const std::shared_ptr<Connection>& c);
  // Handles the complete lines buffered while the connection takes requests.
  void processLines(const std::shared_ptr<Connection>& c);
  bool overloaded(const Connection& c) const;
  // Stops or resumes reading a connection as its replies pile up or drain.
  void updateInterest(const std::shared_ptr<Connection>& c);
  void requestDone(const std::shared_ptr<Connection>& c, bool fault);
  void pauseFaultyConnection(const std::shared_ptr<Connection>& c);
  void dropSubscriptions(Connection& c);
  void onWritable(const std::shared_ptr<Connection>& c);
  void handleLine(const std::shared_ptr<Connection>& c, std::string_view line);
  // `respond` may run on any thread.
  void handleRequest(const std::shared_ptr<Connection>& c, nlohmann::json req, std::function<void(Answer)> respond);
  void send(const std::shared_ptr<Connection>& c, std::string text);
  void close(const std::shared_ptr<Connection>& c);
  void deliverEvents(const std::shared_ptr<Connection>& c);
  // Replies, then hands the connection's socket to a relay with `stream` (loop thread).
  void becomeStream(const std::shared_ptr<Connection>& c, const std::string& replyText, fs::UniqueFd stream);

  EventLoop& loop_;
  ThreadPool& pool_;
  Registry& registry_;
  EventBus& events_;
  const RpcOptions options_;
  fs::UniqueFd rwFd_, roFd_;
  std::map<int, std::shared_ptr<Connection>> conns_;  // loop thread only
  std::map<ByteRelay*, std::shared_ptr<ByteRelay>> relays_;  // loop thread only
  std::map<std::string, PeerUsage> usage_;  // loop thread only; "ro:1000", "rw:0"
  std::atomic<size_t> connCount_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> throttled_{0};
  int64_t lastRefusalLogUs_ = 0;  // loop thread only
  int64_t lastThrottleLogUs_ = 0;  // loop thread only
  std::unique_ptr<Dispatcher> ownDispatcher_;
  Dispatcher* dispatcher_;
};

}  // namespace vmm::api
