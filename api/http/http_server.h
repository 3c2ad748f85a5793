// The HTTP REST transport: routes from the operation table under /v1/, bearer-token
// authentication (read and admin tokens), Server-Sent Events on /v1/events, the generated
// OpenAPI document on /v1/openapi.json and Prometheus metrics on /metrics. HTTPS when a
// certificate and key are configured.
//
// vmmd serves HTTP/1.1 itself, on an event loop of its own, with limits a hostile client
// cannot get around (README.md in this folder says why and which): every connection is a few
// hundred bytes of state on the loop until its request head arrived within the limits and its
// token was checked; only then is a body read, and calls run on the dispatcher's workers;
// event streams, consoles and transfers are fed from the loop without holding a thread.
//
// Thread-safety: start()/stop() from the owning thread; everything else is internal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "api/dispatcher.h"
#include "api/http/http_wire.h"
#include "api/registry.h"
#include "base/event_loop.h"
#include "base/fs.h"
#include "base/thread_pool.h"
#include "daemon/auth.h"
#include "daemon/event_bus.h"
#include "daemon/pool_service.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace vmm::api {

struct HttpOptions {
  std::string listen = "127.0.0.1:8470";  // host:port; port 0 picks a free one
  std::string tlsCert, tlsKey;
  int threads = 16;                       // workers of the server's own pool, when `pool` is not given
  size_t maxBodyBytes = 4 << 20;
  std::string anonymousAccess = "none";   // "none" or "read": what requests without a token may do
  // Host header values (without the port) requests may carry. Empty: on a loopback address,
  // only loopback names (a web page that rebinds its own name to 127.0.0.1 is refused); on any
  // other address, any. "*" allows any.
  std::vector<std::string> allowedHosts;
  // Serving plain HTTP on an address other than loopback sends tokens across the network in
  // clear text: refused at start unless this is set.
  bool allowPlaintext = false;
  // GET/POST /v1/domains/{name}/console: the console's output as a stream / keyboard input.
  std::function<Result<fs::UniqueFd>(const CallContext& caller, const std::string& domain)> openConsole;
  PoolService* pools = nullptr;  // volume upload and download

  // Limits (README.md in this folder).
  HeadLimits head;
  size_t maxConnections = 1024;
  size_t connectionsPerPeer = 256;        // per client address
  size_t streamsPerPrincipal = 64;        // event and console streams of one token
  Millis headerTimeout = Millis(10000);   // from a request's first byte to its blank line (and TLS handshake)
  Millis idleTimeout = Millis(15000);     // a kept-alive connection waiting for its next request
  Millis bodyTimeout = Millis(30000);     // a body (or a reader of our reply) making no progress
  Millis lingerTime = Millis(2000);       // reading (and dropping) what a refused client still sends
  size_t lingerBytes = 32 << 10;

  // Worker pools; null: the server makes its own (tests, fuzzing).
  Dispatcher* dispatcher = nullptr;
  ThreadPool* pool = nullptr;  // opening consoles and volumes, volume I/O
};

class HttpServer {
 public:
  HttpServer(Registry& registry, EventBus& events, TokenStore& tokens, std::function<std::string()> metrics,
             HttpOptions options);
  ~HttpServer();
  Status start();
  void stop();
  int port() const { return port_; }
  std::string url() const;
  size_t connectionCount() const { return connCount_.load(); }
  uint64_t refusedConnections() const { return refused_.load(); }
  uint64_t receivedBytes() const { return received_.load(); }  // read from clients, heads and bodies

 private:
  struct Conn;
  using ConnPtr = std::shared_ptr<Conn>;

  // Loop thread.
  void accept();
  void onEvent(const ConnPtr& c, uint32_t events);
  void onReadable(const ConnPtr& c);
  void flush(const ConnPtr& c);
  void updateInterest(const ConnPtr& c);
  void close(const ConnPtr& c);
  void sweep();
  void rearm();
  void startRequest(const ConnPtr& c);
  void onHead(const ConnPtr& c, size_t headBytes);
  void onBody(const ConnPtr& c);
  void dispatch(const ConnPtr& c);
  void respond(const ConnPtr& c, HttpResponse res);
  void respondError(const ConnPtr& c, int status, const Error& e, bool close);
  void afterResponse(const ConnPtr& c);
  void startLinger(const ConnPtr& c);
  void startEvents(const ConnPtr& c);
  void pumpEvents(const ConnPtr& c);
  void startConsole(const ConnPtr& c, const std::string& domain);
  void pumpConsole(const ConnPtr& c);
  void startDownload(const ConnPtr& c, const std::string& pool, const std::string& name);
  void pumpDownload(const ConnPtr& c);
  void startUpload(const ConnPtr& c, const std::string& pool, const std::string& name);
  void onUploadBytes(const ConnPtr& c);
  void beginStream(const ConnPtr& c, HttpResponse head, long long contentLength);
  bool takeStreamSlot(const ConnPtr& c);

  // Runs `task` on a worker; `then` runs on the loop afterwards if the connection is still
  // serving the same request.
  void onWorker(const ConnPtr& c, std::function<void()> task);
  void backOnLoop(const ConnPtr& c, uint64_t serial, std::function<void(const ConnPtr&)> fn);

  // Any thread: the routing and the call (workers; inline for quick calls).
  void serveCall(const HttpRequest& req, HttpResponse& res, const CallContext& ctx);
  // The caller of a request; `token` is set when a token authenticated it.
  Result<CallContext> authenticate(const HttpRequest& req, std::optional<TokenInfo>& token) const;
  bool hostAllowed(std::string_view hostHeader) const;

  Registry& registry_;
  EventBus& events_;
  TokenStore& tokens_;
  std::function<std::string()> metrics_;
  HttpOptions options_;
  std::unique_ptr<ThreadPool> ownPool_;
  std::unique_ptr<Dispatcher> ownDispatcher_;
  ThreadPool* pool_ = nullptr;
  Dispatcher* dispatcher_ = nullptr;

  EventLoop loop_;
  bool started_ = false;
  fs::UniqueFd listenFd_;
  SSL_CTX* tls_ = nullptr;
  std::map<int, ConnPtr> conns_;             // loop thread only
  std::map<std::string, size_t> perPeer_;    // loop thread only
  std::map<std::string, size_t> streams_;    // loop thread only: streams per principal
  EventLoop::TimerId sweepTimer_ = 0;
  SteadyClock::time_point nextTokenCheck_{};  // loop thread only
  int64_t lastRefusalLogUs_ = 0;
  std::atomic<size_t> connCount_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> received_{0};
  std::atomic<bool> stopping_{false};
  // Worker tasks still running: stop() waits for them (they refer to this server).
  std::mutex tasksMu_;
  std::condition_variable tasksCv_;
  size_t tasks_ = 0;
  int port_ = 0;
  std::string host_;
  bool loopback_ = false;  // listening on a loopback address
};

}  // namespace vmm::api
