// The HTTP REST transport (cpp-httplib): routes from the operation table under /v1/,
// bearer-token authentication (read and admin tokens), Server-Sent Events on /v1/events,
// the generated OpenAPI document on /v1/openapi.json and Prometheus metrics on /metrics.
// HTTPS when a certificate and key are configured.
//
// Thread-safety: start()/stop() from the owning thread; requests run on httplib's threads.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "api/registry.h"
#include "base/fs.h"
#include "daemon/auth.h"
#include "daemon/event_bus.h"
#include "daemon/pool_service.h"

namespace httplib {
class Server;
struct Request;
struct Response;
class ContentReader;
}  // namespace httplib

namespace vmm::api {

struct HttpOptions {
  std::string listen = "127.0.0.1:8470";  // host:port; port 0 picks a free one
  std::string tlsCert, tlsKey;
  int threads = 16;
  size_t maxBodyBytes = 4 << 20;
  std::string anonymousAccess = "none";   // "none" or "read": what requests without a token may do
  // GET/POST /v1/domains/{name}/console: the console's output as a stream / keyboard input.
  std::function<Result<fs::UniqueFd>(const std::string& domain)> openConsole;
  PoolService* pools = nullptr;  // volume upload and download
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

 private:
  void route(const httplib::Request& req, httplib::Response& res);
  void serveEvents(const httplib::Request& req, httplib::Response& res, const CallContext& ctx);
  void serveConsole(const std::string& domain, const httplib::Request& req, httplib::Response& res, const CallContext& ctx);
  void serveUpload(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader);
  void serveDownload(const std::string& pool, const std::string& name, httplib::Response& res, const CallContext& ctx);
  static bool isContentPath(const std::string& path);
  static constexpr const char* kContentRoute = "/v1/pools/{pool}/volumes/{name}/content";
  Result<CallContext> authenticate(const httplib::Request& req) const;

  Registry& registry_;
  EventBus& events_;
  TokenStore& tokens_;
  std::function<std::string()> metrics_;
  HttpOptions options_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string host_;
};

}  // namespace vmm::api
