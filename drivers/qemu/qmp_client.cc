#include "drivers/qemu/qmp_client.h"

#include <future>
#include <thread>

#include "base/json_util.h"
#include "base/log.h"
#include "base/socket_util.h"

namespace vmm::drivers::qemu {

// Cancelling or dismissing a job after its caller's deadline, or once it concluded: a QEMU that
// answers nothing within this long is not waited for further (it would hold the caller).
constexpr Millis kJobTidyTime(1000);

Error qmpError(const std::string& command, const json& error) {
  std::string cls = jsonStringOr(error, "class", "GenericError");
  std::string desc = jsonStringOr(error, "desc", "unknown error (malformed error reply)");
  ErrorCode code = ErrorCode::internal;
  if (cls == "CommandNotFound") code = ErrorCode::unsupported;
  else if (cls == "DeviceNotFound" || cls == "DeviceNotActive") code = ErrorCode::not_found;
  else if (cls == "GenericError" && (desc.find("Duplicate") != std::string::npos || desc.find("in use") != std::string::npos))
    code = ErrorCode::conflict;
  return Error{code, "QEMU " + command + ": " + desc};
}

Result<std::shared_ptr<QmpClient>> QmpClient::connect(EventLoop& loop, const std::string& path, Deadline deadline,
                                                      EventHandler onEvent, CloseHandler onClose) {
  auto fd = connectUnix(path, deadline);
  if (!fd.ok()) return fd.error().wrap("QEMU monitor");
  return connectFd(loop, std::move(*fd), deadline, std::move(onEvent), std::move(onClose));
}

Result<std::shared_ptr<QmpClient>> QmpClient::connectFd(EventLoop& loop, fs::UniqueFd fd, Deadline deadline,
                                                        EventHandler onEvent, CloseHandler onClose) {
  VMM_TRY(setNonBlocking(fd.get()));
  std::shared_ptr<QmpClient> c(new QmpClient(std::move(onEvent), std::move(onClose)));
  std::weak_ptr<QmpClient> weak = c;
  c->channel_ = JsonChannel::open(loop, std::move(fd),
                                  {[weak](json msg) {
                                     if (auto self = weak.lock()) self->onMessage(std::move(msg));
                                   },
                                   [weak](const std::string& reason) {
                                     if (auto self = weak.lock()) self->onClosed(reason);
                                   },
                                   nullptr},
                                  JsonChannel::Limits{64 << 20, JsonChannel::kQmpMaxDepth});
  VMM_TRY(c->negotiate(deadline));
  return c;
}

QmpClient::~QmpClient() {
  if (channel_) channel_->close("client destroyed");
}

Status QmpClient::negotiate(Deadline deadline) {
  {
    MutexLock lock(mu_);
    if (!cv_.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(mu_) { return greeted_ || closed_; }))
      return timeoutError("QEMU monitor sent no greeting before the deadline");
    if (closed_) return unavailable("QEMU monitor closed before its greeting: " + closeReason_);
  }
  auto r = execute("qmp_capabilities", json::object(), deadline);
  if (!r.ok()) return r.error();
  return {};
}

std::string QmpClient::qemuVersion() const {
  json greeting = this->greeting();
  const json* qmp = jsonMember(greeting, "QMP");
  const json* version = qmp ? jsonMember(*qmp, "version") : nullptr;
  const json* v = version ? jsonMember(*version, "qemu") : nullptr;
  if (!v || !v->is_object()) return "";
  return std::to_string(jsonIntOr(*v, "major", 0)) + "." + std::to_string(jsonIntOr(*v, "minor", 0)) + "." +
         std::to_string(jsonIntOr(*v, "micro", 0));
}

bool QmpClient::connected() const { return channel_ && channel_->connected(); }

void QmpClient::close() {
  if (channel_) channel_->close("closed by vmmd");
}

void QmpClient::onMessage(json msg) {
  if (!msg.is_object()) {
    log::warn("ignoring a QMP message that is not an object", {{"type", msg.type_name()}});
    return;
  }
  if (msg.contains("QMP")) {
    {
      MutexLock lock(mu_);
      greeting_ = std::move(msg);
      greeted_ = true;
    }
    cv_.notify_all();
    return;
  }
  if (msg.contains("event")) {
    auto name = jsonString(msg, "event");
    if (!name) return;
    int64_t ts = 0;
    if (const json* t = jsonMember(msg, "timestamp")) {
      // Seconds since the epoch fit easily; anything else is not a timestamp.
      int64_t secs = jsonIntOr(*t, "seconds", 0), us = jsonIntOr(*t, "microseconds", 0);
      if (secs >= 0 && secs < (int64_t{1} << 40) && us >= 0 && us < 1000000) ts = secs * 1000000 + us;
    }
    auto data = msg.find("data");
    if (onEvent_) onEvent_(*name, data != msg.end() && data->is_object() ? *data : json::object(), ts);
    return;
  }
  auto id = jsonUint(msg, "id");
  if (!id) return;  // not ours
  std::pair<std::string, ReplyHandler> waiter;
  {
    MutexLock lock(mu_);
    auto it = pending_.find(*id);
    if (it == pending_.end()) return;  // its caller gave up (deadline)
    waiter = std::move(it->second);
    pending_.erase(it);
  }
  if (auto e = msg.find("error"); e != msg.end()) return waiter.second(qmpError(waiter.first, *e));
  auto ret = msg.find("return");
  waiter.second(ret == msg.end() ? json::object() : std::move(*ret));
}

void QmpClient::onClosed(const std::string& reason) {
  std::map<uint64_t, std::pair<std::string, ReplyHandler>> pending;
  {
    MutexLock lock(mu_);
    closed_ = true;
    closeReason_ = reason;
    pending.swap(pending_);
  }
  cv_.notify_all();
  // The owner hears of the close first, so a caller whose command fails with it finds the
  // owner's state already updated.
  if (onClose_) onClose_(reason);
  for (auto& [id, w] : pending) w.second(unavailable("QEMU monitor closed during " + w.first + ": " + reason));
}

uint64_t QmpClient::executeAsync(const std::string& command, const json& arguments, ReplyHandler onReply, int fdToPass) {
  uint64_t id = 0;
  std::string reason;
  {
    MutexLock lock(mu_);
    if (closed_ || !channel_) {
      reason = closeReason_.empty() ? "not connected" : closeReason_;
    } else {
      id = nextId_++;
      pending_[id] = {command, std::move(onReply)};
    }
  }
  if (id == 0) {
    onReply(unavailable("QEMU monitor is not connected (" + reason + ")"));
    return 0;
  }
  json cmd = {{"execute", command}, {"id", id}};
  if (!arguments.empty()) cmd["arguments"] = arguments;
  channel_->send(cmd.dump(), fdToPass);
  return id;
}

Result<json> QmpClient::execute(const std::string& command, const json& arguments, Deadline deadline, int fdToPass) {
  auto promise = std::make_shared<std::promise<Result<json>>>();
  auto future = promise->get_future();
  uint64_t id = executeAsync(command, arguments, [promise](Result<json> r) { promise->set_value(std::move(r)); }, fdToPass);
  if (future.wait_until(deadline.at()) != std::future_status::ready) {
    MutexLock lock(mu_);
    pending_.erase(id);
    return timeoutError("QEMU did not answer " + command + " before the deadline");
  }
  return future.get();
}

Status QmpClient::runJob(const std::string& command, const json& arguments, const std::string& jobId, Deadline deadline,
                         bool completeWhenReady) {
  VMM_TRY(startJob(command, arguments, deadline));
  return waitJob(command, jobId, deadline, completeWhenReady);
}

Status QmpClient::startJob(const std::string& command, const json& arguments, Deadline deadline) {
  auto r = execute(command, arguments, deadline);
  return r.ok() ? Status() : Status(r.error());
}

Status QmpClient::waitJob(const std::string& command, const std::string& jobId, Deadline deadline, bool completeWhenReady) {
  // Polled rather than driven by JOB_STATUS_CHANGE, backing off so that a job of minutes
  // costs a handful of monitor round trips a second.
  bool completeSent = false;
  Millis pause(10);
  while (true) {
    auto jobs = execute("query-jobs", json::object(), deadline);
    if (!jobs.ok()) return jobs.error().wrap(command);
    const json* job = nullptr;
    if (!jobs->is_array()) return internalError(command + ": QEMU query-jobs did not return an array");
    for (const auto& j : *jobs)
      if (jsonStringOr(j, "id", "") == jobId) job = &j;
    if (!job) return {};  // dismissed automatically: it succeeded
    std::string status = jsonStringOr(*job, "status", "");
    if (status == "concluded") {
      std::string error = jsonStringOr(*job, "error", "");
      (void)execute("job-dismiss", {{"id", jobId}}, Deadline::after(kJobTidyTime));
      if (!error.empty()) return Error{ErrorCode::internal, command + " failed: " + error};
      return {};
    }
    if (status == "ready" && completeWhenReady && !completeSent) {
      VMM_TRY(execute("job-complete", {{"id", jobId}}, deadline));
      completeSent = true;
    }
    if (deadline.expired()) break;
    std::this_thread::sleep_for(std::min(pause, deadline.remaining()));
    pause = std::min(pause * 2, Millis(250));
  }
  Deadline tidy = Deadline::after(kJobTidyTime);
  (void)execute("job-cancel", {{"id", jobId}, {"force", true}}, tidy);
  (void)execute("job-dismiss", {{"id", jobId}}, tidy);
  return timeoutError(command + " did not finish before the deadline (job cancelled)");
}

}  // namespace vmm::drivers::qemu
