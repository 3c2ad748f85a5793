// libvmmclient: talks to vmmd over its JSON-RPC unix socket or its HTTP API with the same
// calls. Method names and parameters are those of the operation table (api/spec.h); over
// HTTP they are mapped onto the table's routes.
//
// A Connection is not thread-safe: use one per thread.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api/types/domain_summary.h"
#include "base/fs.h"
#include "base/result.h"
#include "base/time_util.h"

namespace vmm::client {

using json = nlohmann::json;

struct ConnectOptions {
  // "unix:///run/vmm/vmmd.sock", a socket path, "http://127.0.0.1:8470" or "https://...".
  std::string uri;
  std::string token;                 // HTTP bearer token
  Millis timeout = Millis(300000);   // per call, when the call gives none
  std::string caCert;                // HTTPS: trust this CA/certificate file
  bool insecure = false;             // HTTPS: skip certificate verification
  std::string clientCert, clientKey; // HTTPS: present this client certificate (PEM files)
  // The project to act in, sent as "project" with calls on a project's objects (domain.,
  // snapshot., volume., image. and operation. methods), and over the unix socket with event
  // subscriptions, consoles and volume transfers too (over HTTP those are refused while a
  // project is set); a call's own "project" or "all_projects" wins. Empty: the principal's
  // own project, else "default".
  std::string project;
};

// The socket vmmd listens on for this user by default (VMM_CONNECT overrides it).
std::string defaultUri();

class EventStream {
 public:
  virtual ~EventStream() = default;
  // The next event, nullopt at the deadline, or an error when the stream ended.
  virtual Result<std::optional<json>> next(Deadline deadline) = 0;
};

// An open console: `fd` is a stream socket (reads are console output, writes are keyboard
// input); `initial` holds output that arrived with the reply. Closing ends the session.
struct ConsoleSession {
  fs::UniqueFd fd;
  std::string initial;
  std::shared_ptr<void> transport;  // keeps an HTTP relay running while the session lives
};

class Connection {
 public:
  virtual ~Connection() = default;
  // The call's result as JSON text, undecoded: typed readers (listDomains below, api/types)
  // decode it without building a JSON tree.
  virtual Result<std::string> callText(const std::string& method, const json& params, Millis timeout) = 0;
  // callText() as a JSON tree.
  Result<json> call(const std::string& method, const json& params, Millis timeout);
  Result<json> call(const std::string& method, const json& params = json::object()) {
    return call(method, params, defaultTimeout_);
  }
  // A separate stream of events: "types" are prefixes ("domain", "operation").
  virtual Result<std::unique_ptr<EventStream>> subscribe(const std::vector<std::string>& types,
                                                         const std::string& object) = 0;
  virtual std::string describe() const = 0;
  // A console session on its own connection (the unix socket becomes the stream; over HTTP a
  // streamed GET carries the output and POSTs the input).
  virtual Result<ConsoleSession> openConsole(const std::string& domain) = 0;

  // Volume content, streamed in chunks from / to a file descriptor (never whole in memory).
  // Upload sends exactly `size` bytes read from `fd` and returns the volume; download writes
  // the volume's bytes to `fd` and returns their count.
  using TransferProgress = std::function<void(uint64_t done, uint64_t total)>;
  virtual Result<json> uploadVolume(const std::string& pool, const std::string& name, int fd, uint64_t size,
                                    const TransferProgress& progress) = 0;
  virtual Result<uint64_t> downloadVolume(const std::string& pool, const std::string& name, int fd,
                                          const TransferProgress& progress) = 0;

  // Waits for an async operation returned by call(); onProgress sees every state it passes.
  Result<json> waitOperation(const json& operation, Deadline deadline,
                             const std::function<void(const json&)>& onProgress = nullptr);
  // call() + waitOperation() + the operation's error turned into this call's error.
  Result<json> callAndWait(const std::string& method, const json& params, Deadline deadline,
                           const std::function<void(const json&)>& onProgress = nullptr);

 protected:
  Millis defaultTimeout_ = Millis(300000);
};

Result<std::unique_ptr<Connection>> connect(const ConnectOptions& options);

// domain.list, typed: the summaries with the fields asked for (the others keep their defaults).
struct DomainListRequest {
  bool activeOnly = false;
  std::string state{};   // only domains in this state
  std::string type{};    // only this driver type
  std::string label{};   // label selector: key or key=value, comma-separated
  uint32_t fields = wire::kAllSummaryFields;
  bool allProjects = false;
};
Result<std::vector<wire::DomainSummary>> listDomains(Connection& c, const DomainListRequest& request);

// Whether `method` acts on a project's objects (and takes a "project" parameter).
bool projectScoped(const std::string& method);

// Turns an error object of the wire ({"kind","message"}) into an Error.
Error errorFromWire(const json& error);

}  // namespace vmm::client
