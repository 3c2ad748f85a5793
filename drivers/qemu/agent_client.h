// The QEMU guest agent (qemu-ga) over its virtio-serial channel's unix socket.
//
// The agent answers one request at a time and keeps no request ids, so calls are serialised
// by this client (its own lock: an unresponsive agent blocks only agent calls, never the
// monitor or the API), every (re)connection starts with guest-sync-delimited to discard
// stale replies, and a call that misses its deadline drops the connection so its late reply
// cannot be mistaken for the next call's.
//
// Thread-safety: all methods may be called from any thread except the event loop's.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/event_loop.h"
#include "base/mutex.h"
#include "base/result.h"
#include "base/time_util.h"
#include "drivers/driver.h"
#include "drivers/qemu/json_channel.h"

namespace vmm::drivers::qemu {

class AgentClient {
 public:
  AgentClient(EventLoop& loop, std::string socketPath) : loop_(loop), path_(std::move(socketPath)) {}
  ~AgentClient();

  // A request; with expectReply false (guest-shutdown) success means "sent".
  Result<json> call(const std::string& command, const json& arguments, Deadline deadline, bool expectReply = true);
  // guest-exec + guest-exec-status until the program exits or the deadline passes.
  Result<ExecResult> exec(const ExecRequest& request, Deadline deadline);
  // guest-network-get-interfaces: [{"name", "mac", "addresses": ["10.0.0.2/24", ...]}].
  Result<json> interfaces(Deadline deadline);
  // guest-fsfreeze-freeze or -thaw: how many filesystems it froze or thawed.
  Result<int64_t> freezeFilesystems(bool freeze, Deadline deadline);
  // Every reply is shape-checked: a reply of the wrong form (the guest controls it) is an
  // internal error naming what was wrong, never an exception.
  void disconnect();

 private:
  // exec() with output read back while the program runs: qemu-ga returns captured output only
  // once the program has exited, so the program writes to files in the guest that are read
  // as they grow (guest-file-read) and removed afterwards.
  Result<ExecResult> execStreaming(const ExecRequest& request, Deadline deadline);
  struct Waiter;
  Status ensureConnected(Deadline deadline) VMM_REQUIRES(callMu_);
  Result<json> roundTrip(const std::string& text, Deadline deadline, bool sync) VMM_REQUIRES(callMu_);
  std::shared_ptr<JsonChannel> channel() const;

  EventLoop& loop_;
  const std::string path_;
  Mutex callMu_;  // one request at a time
  // Never held across a call: disconnect() comes from other threads (the domain stops) while
  // a call waits for its reply.
  mutable Mutex mu_;
  std::shared_ptr<JsonChannel> channel_ VMM_GUARDED_BY(mu_);
  std::shared_ptr<Waiter> waiter_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm::drivers::qemu
