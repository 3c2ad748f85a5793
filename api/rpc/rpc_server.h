// JSON-RPC 2.0 over unix stream sockets, one JSON text per line. Two sockets: the
// read-write one (root and the configured group, checked with SO_PEERCRED) and a read-only
// one anyone may use. Requests on one connection run concurrently; responses carry their
// ids. Event subscriptions ("events.subscribe") arrive as "event" notifications.
//
// Connections live on the event loop; calls run on the worker pool.
// Thread-safety: start()/stop() from the owning thread; everything else is internal.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>

#include "api/registry.h"
#include "base/byte_relay.h"
#include "base/event_loop.h"
#include "base/fs.h"
#include "api/wire.h"
#include "base/thread_pool.h"
#include "daemon/event_bus.h"

namespace vmm::api {

struct RpcOptions {
  std::string socketPath;
  std::string roSocketPath;
  gid_t group = static_cast<gid_t>(-1);  // may use the read-write socket
  size_t maxRequestBytes = 4 << 20;
  size_t maxPendingOutput = 64 << 20;    // a client that reads nothing is disconnected
  // Stream methods (domain.console, volume.upload, volume.download): the connection becomes
  // the returned fd's byte stream after the reply.
  std::function<Result<StreamStart>(const std::string& method, const nlohmann::json& params)> openStream;
};

class RpcServer {
 public:
  RpcServer(EventLoop& loop, ThreadPool& pool, Registry& registry, EventBus& events, RpcOptions options);
  ~RpcServer();
  Status start();
  void stop();
  size_t connectionCount() const;

 private:
  struct Connection;
  void accept(int listenFd, bool readOnly);
  void onReadable(const std::shared_ptr<Connection>& c);
  void onWritable(const std::shared_ptr<Connection>& c);
  void handleLine(const std::shared_ptr<Connection>& c, std::string_view line);
  // `respond` takes the reply's JSON text ("" for notifications) and may run on any thread.
  void handleRequest(const std::shared_ptr<Connection>& c, nlohmann::json req,
                     std::function<void(std::string)> respond);
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
  std::atomic<size_t> connCount_{0};
};

}  // namespace vmm::api
