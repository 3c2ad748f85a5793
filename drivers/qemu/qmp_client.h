// A QMP client: greeting and capability negotiation, commands with ids and deadlines, events
// dispatched as they arrive, disconnect detection. Built on JsonChannel (the event loop).
//
// Thread-safety: execute() may be called from any thread except the loop thread (it blocks);
// executeAsync() from any thread. Event and close callbacks run on the loop thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/event_loop.h"
#include "base/mutex.h"
#include "base/result.h"
#include "base/time_util.h"
#include "drivers/qemu/json_channel.h"

namespace vmm::drivers::qemu {

using json = nlohmann::json;

class QmpClient : public std::enable_shared_from_this<QmpClient> {
 public:
  using EventHandler = std::function<void(const std::string& event, const json& data, int64_t timestampUs)>;
  using CloseHandler = std::function<void(const std::string& reason)>;
  using ReplyHandler = std::function<void(Result<json>)>;

  // Connects to the monitor socket at `path` (or an already connected fd), waits for the
  // greeting and negotiates capabilities - all before `deadline`.
  static Result<std::shared_ptr<QmpClient>> connect(EventLoop& loop, const std::string& path, Deadline deadline,
                                                    EventHandler onEvent, CloseHandler onClose);
  static Result<std::shared_ptr<QmpClient>> connectFd(EventLoop& loop, fs::UniqueFd fd, Deadline deadline,
                                                      EventHandler onEvent, CloseHandler onClose);
  ~QmpClient();

  // Runs a command and waits for its reply. QMP errors become errors naming the command and
  // QEMU's error class; no reply by the deadline is a timeout (a late reply is dropped).
  Result<json> execute(const std::string& command, const json& arguments = json::object(),
                       Deadline deadline = Deadline::after(Millis(10000)), int fdToPass = -1);
  // Returns the command's id (0 when the monitor is closed; onReply has then been called).
  uint64_t executeAsync(const std::string& command, const json& arguments, ReplyHandler onReply, int fdToPass = -1);
  // Starts a job (`arguments` must carry "job-id": jobId, and "auto-dismiss": false where the
  // command has it), waits until it concludes, dismisses it and returns the job's error.
  // `completeWhenReady`: send job-complete when it reaches "ready" (active block-commit).
  // At the deadline the job is cancelled and a timeout returned.
  Status runJob(const std::string& command, const json& arguments, const std::string& jobId, Deadline deadline,
                bool completeWhenReady = false);
  // runJob in two halves, for a caller that acts between the start and the end of the job.
  Status startJob(const std::string& command, const json& arguments, Deadline deadline);
  Status waitJob(const std::string& command, const std::string& jobId, Deadline deadline, bool completeWhenReady = false);

  json greeting() const {
    MutexLock lock(mu_);
    return greeting_;
  }
  std::string qemuVersion() const;
  bool connected() const;
  void close();

 private:
  QmpClient(EventHandler onEvent, CloseHandler onClose) : onEvent_(std::move(onEvent)), onClose_(std::move(onClose)) {}
  void onMessage(json msg);
  void onClosed(const std::string& reason);
  Status negotiate(Deadline deadline);

  EventHandler onEvent_;
  CloseHandler onClose_;
  std::shared_ptr<JsonChannel> channel_;

  mutable Mutex mu_;
  CondVar cv_;
  json greeting_ VMM_GUARDED_BY(mu_);
  bool greeted_ VMM_GUARDED_BY(mu_) = false;
  bool closed_ VMM_GUARDED_BY(mu_) = false;
  std::string closeReason_ VMM_GUARDED_BY(mu_);
  uint64_t nextId_ VMM_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::pair<std::string, ReplyHandler>> pending_ VMM_GUARDED_BY(mu_);
};

// Error for a QMP {"error": {"class", "desc"}} reply to `command`.
Error qmpError(const std::string& command, const json& error);

}  // namespace vmm::drivers::qemu
