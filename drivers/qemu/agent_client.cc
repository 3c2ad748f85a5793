#include "drivers/qemu/agent_client.h"

#include <condition_variable>
#include <thread>

#include "base/base64.h"
#include "base/random.h"
#include "base/socket_util.h"

namespace vmm::drivers::qemu {

struct AgentClient::Waiter {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<json> reply;
  bool closed = false;
  std::string reason;
};

AgentClient::~AgentClient() { disconnect(); }

void AgentClient::disconnect() {
  if (channel_) channel_->close("agent client closed");
  channel_.reset();
}

Status AgentClient::ensureConnected(Deadline deadline) {
  if (channel_ && channel_->connected()) return {};
  channel_.reset();
  auto fd = connectUnix(path_, deadline);
  if (!fd.ok()) return unavailable("the guest agent channel is not available: " + fd.error().message);
  VMM_TRY(setNonBlocking(fd->get()));
  auto waiter = std::make_shared<Waiter>();
  waiter_ = waiter;
  channel_ = JsonChannel::open(loop_, std::move(*fd),
                               {[waiter](json msg) {
                                  std::lock_guard lock(waiter->mu);
                                  waiter->reply = std::move(msg);
                                  waiter->cv.notify_all();
                                },
                                [waiter](const std::string& reason) {
                                  std::lock_guard lock(waiter->mu);
                                  waiter->closed = true;
                                  waiter->reason = reason;
                                  waiter->cv.notify_all();
                                }});
  // Resynchronise: a 0xFF byte resets the agent's parser; it answers 0xFF + {"return": id}
  // and everything before that delimiter (stale replies to an earlier client) is dropped.
  uint64_t id = 0;
  randomBytes(&id, sizeof id);
  id &= 0x1fffffffffffffULL;  // exact in a JSON double
  channel_->skipToDelimiter();
  json sync = {{"execute", "guest-sync-delimited"}, {"arguments", {{"id", id}}}};
  auto r = roundTrip(std::string("\xff") + sync.dump(), deadline.earlier(Deadline::after(Millis(3000))), true);
  if (!r.ok()) {
    disconnect();
    if (r.error().code == ErrorCode::timeout)
      return unavailable("the guest agent is not responding (is qemu-ga running in the guest?)");
    return r.error();
  }
  if (!r->is_number_unsigned() || r->get<uint64_t>() != id) {
    disconnect();
    return unavailable("the guest agent answered the synchronisation with an unexpected value");
  }
  return {};
}

Result<json> AgentClient::roundTrip(const std::string& text, Deadline deadline, bool) {
  auto waiter = waiter_;
  {
    std::lock_guard lock(waiter->mu);
    waiter->reply.reset();
  }
  channel_->send(text);
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_until(lock, deadline.at(), [&] { return waiter->reply.has_value() || waiter->closed; })) {
    lock.unlock();
    disconnect();  // a late reply must not answer the next call
    return timeoutError("the guest agent did not answer before the deadline");
  }
  if (!waiter->reply) return unavailable("the guest agent channel closed: " + waiter->reason);
  json msg = std::move(*waiter->reply);
  waiter->reply.reset();
  if (msg.contains("error")) {
    std::string desc = msg["error"].value("desc", "unknown error");
    std::string cls = msg["error"].value("class", "GenericError");
    return Error{cls == "CommandNotFound" ? ErrorCode::unsupported : ErrorCode::internal, "guest agent: " + desc};
  }
  return msg.value("return", json());
}

Result<json> AgentClient::call(const std::string& command, const json& arguments, Deadline deadline, bool expectReply) {
  std::lock_guard lock(callMu_);
  VMM_TRY(ensureConnected(deadline));
  json cmd = {{"execute", command}};
  if (!arguments.empty()) cmd["arguments"] = arguments;
  if (!expectReply) {
    channel_->send(cmd.dump());
    return json::object();
  }
  return roundTrip(cmd.dump(), deadline, false);
}

Result<ExecResult> AgentClient::exec(const ExecRequest& request, Deadline deadline) {
  if (request.onOutput) return execStreaming(request, deadline);
  json args = {{"path", request.argv[0]}, {"capture-output", request.captureOutput}};
  if (request.argv.size() > 1) args["arg"] = std::vector<std::string>(request.argv.begin() + 1, request.argv.end());
  if (!request.env.empty()) args["env"] = request.env;
  if (!request.input.empty()) args["input-data"] = base64Encode(request.input);
  VMM_ASSIGN(auto started, call("guest-exec", args, deadline));
  if (!started.contains("pid")) return internalError("guest agent: guest-exec returned no pid");
  int64_t pid = started["pid"].get<int64_t>();
  Millis pause(5);
  while (true) {
    VMM_ASSIGN(auto st, call("guest-exec-status", {{"pid", pid}}, deadline));
    if (st.value("exited", false)) {
      ExecResult r;
      r.exitCode = st.value("exitcode", -1);
      r.signal = st.value("signal", 0);
      if (st.contains("out-data")) {
        auto out = base64Decode(st["out-data"].get<std::string>());
        if (out.ok()) r.out = std::move(*out);
      }
      if (st.contains("err-data")) {
        auto err = base64Decode(st["err-data"].get<std::string>());
        if (err.ok()) r.err = std::move(*err);
      }
      r.outTruncated = st.value("out-truncated", false);
      r.errTruncated = st.value("err-truncated", false);
      return r;
    }
    if (deadline.expired())
      return timeoutError("the guest command " + request.argv[0] + " (pid " + std::to_string(pid) + ") is still running at the deadline");
    std::this_thread::sleep_for(std::min(pause, deadline.remaining()));
    pause = std::min(pause * 2, Millis(100));
  }
}

Result<ExecResult> AgentClient::execStreaming(const ExecRequest& request, Deadline deadline) {
  constexpr size_t kMaxCapture = 16 << 20;  // what qemu-ga keeps of captured output
  std::string base = "/tmp/.vmm-exec-" + randomHex(6);
  struct Stream {
    int id;
    std::string path;
    int64_t handle = -1;
    std::string data;
    bool truncated = false;
  };
  Stream streams[2] = {{1, base + ".out", -1, "", false}, {2, base + ".err", -1, "", false}};
  // sh opens both files before the program runs; its exit status is the program's.
  std::vector<std::string> arg = {"-c", "o=$1; e=$2; shift 2; exec \"$@\" >\"$o\" 2>\"$e\"", "sh", streams[0].path,
                                  streams[1].path};
  arg.insert(arg.end(), request.argv.begin(), request.argv.end());
  json args = {{"path", "/bin/sh"}, {"arg", arg}, {"capture-output", false}};
  if (!request.env.empty()) args["env"] = request.env;
  if (!request.input.empty()) args["input-data"] = base64Encode(request.input);
  VMM_ASSIGN(auto started, call("guest-exec", args, deadline));
  if (!started.contains("pid")) return internalError("guest agent: guest-exec returned no pid");
  int64_t pid = started["pid"].get<int64_t>();

  auto drain = [&](Stream& st) -> Status {
    if (st.handle < 0) {
      auto h = call("guest-file-open", {{"path", st.path}, {"mode", "r"}}, deadline);
      if (!h.ok()) return {};  // not created yet
      st.handle = h->get<int64_t>();
    }
    while (true) {
      VMM_ASSIGN(auto rd, call("guest-file-read", {{"handle", st.handle}, {"count", 65536}}, deadline));
      auto bytes = base64Decode(rd.value("buf-b64", ""));
      if (!bytes.ok() || bytes->empty()) return {};
      request.onOutput(st.id, *bytes);
      if (st.data.size() < kMaxCapture) st.data += bytes->substr(0, kMaxCapture - st.data.size());
      else st.truncated = true;
      if (bytes->size() < 65536) return {};
    }
  };
  auto cleanUp = [&] {
    Deadline soon = Deadline::after(Millis(5000));
    for (auto& st : streams)
      if (st.handle >= 0) (void)call("guest-file-close", {{"handle", st.handle}}, soon);
    (void)call("guest-exec", {{"path", "/bin/rm"}, {"arg", {"-f", streams[0].path, streams[1].path}}}, soon);
  };
  Millis pause(5);
  while (true) {
    auto status = call("guest-exec-status", {{"pid", pid}}, deadline);
    if (!status.ok()) {
      cleanUp();
      return status.error();
    }
    for (auto& st : streams)
      if (auto d = drain(st); !d.ok()) {
        cleanUp();
        return d.error();
      }
    if (status->value("exited", false)) {
      ExecResult r;
      r.exitCode = status->value("exitcode", -1);
      r.signal = status->value("signal", 0);
      r.out = std::move(streams[0].data);
      r.err = std::move(streams[1].data);
      r.outTruncated = streams[0].truncated;
      r.errTruncated = streams[1].truncated;
      cleanUp();
      return r;
    }
    if (deadline.expired()) {
      cleanUp();
      return timeoutError("the guest command " + request.argv[0] + " (pid " + std::to_string(pid) + ") is still running at the deadline");
    }
    std::this_thread::sleep_for(std::min(pause, deadline.remaining()));
    pause = std::min(pause * 2, Millis(100));
  }
}

}  // namespace vmm::drivers::qemu
