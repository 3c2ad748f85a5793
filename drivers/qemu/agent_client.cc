#include "drivers/qemu/agent_client.h"

#include <thread>

#include "base/base64.h"
#include "base/json_util.h"
#include "base/random.h"
#include "base/socket_util.h"

namespace vmm::drivers::qemu {

struct AgentClient::Waiter {
  Mutex mu;
  CondVar cv;
  std::optional<json> reply VMM_GUARDED_BY(mu);
  std::optional<Error> malformed VMM_GUARDED_BY(mu);  // a reply line that was not JSON within the limits
  bool closed VMM_GUARDED_BY(mu) = false;
  std::string reason VMM_GUARDED_BY(mu);
};

namespace {

Error malformed(const std::string& what) { return internalError("guest agent: malformed reply: " + what); }

// A base64 member of an exec or file reply ("out-data", "buf-b64"): absent means no bytes.
Result<std::string> bytesMember(const json& reply, const char* key) {
  auto it = reply.find(key);
  if (it == reply.end() || it->is_null()) return std::string();
  if (!it->is_string()) return malformed(std::string(key) + " is not a base64 string");
  auto bytes = base64Decode(it->get<std::string>());
  if (!bytes.ok()) return malformed(std::string(key) + " is not valid base64");
  return bytes;
}

Result<bool> boolMember(const json& reply, const char* key) {
  auto it = reply.find(key);
  if (it == reply.end() || it->is_null()) return false;
  if (!it->is_boolean()) return malformed(std::string(key) + " is not a boolean");
  return it->get<bool>();
}

// An int member within [min, max]; absent gives `fallback`.
Result<int64_t> intMember(const json& reply, const char* key, int64_t fallback, int64_t min, int64_t max) {
  auto it = reply.find(key);
  if (it == reply.end() || it->is_null()) return fallback;
  auto v = jsonIntValue(*it);
  if (!v || *v < min || *v > max) return malformed(std::string(key) + " is not an integer in range");
  return *v;
}

Result<int64_t> pidOf(const json& started) {
  if (!started.is_object()) return malformed("guest-exec did not return an object");
  auto pid = jsonInt(started, "pid");
  if (!pid || *pid <= 0) return malformed("guest-exec returned no numeric pid");
  return *pid;
}

// guest-exec-status: {"exited": bool, "exitcode": int, "signal": int, "out-data": base64, ...}.
struct ExecStatus {
  bool exited = false;
  ExecResult result;
};
Result<ExecStatus> execStatusOf(const json& st) {
  if (!st.is_object()) return malformed("guest-exec-status did not return an object");
  ExecStatus out;
  VMM_ASSIGN(out.exited, boolMember(st, "exited"));
  if (!out.exited) return out;
  VMM_ASSIGN(int64_t code, intMember(st, "exitcode", -1, INT32_MIN, INT32_MAX));
  VMM_ASSIGN(int64_t sig, intMember(st, "signal", 0, 0, 255));
  out.result.exitCode = static_cast<int>(code);
  out.result.signal = static_cast<int>(sig);
  VMM_ASSIGN(out.result.out, bytesMember(st, "out-data"));
  VMM_ASSIGN(out.result.err, bytesMember(st, "err-data"));
  VMM_ASSIGN(out.result.outTruncated, boolMember(st, "out-truncated"));
  VMM_ASSIGN(out.result.errTruncated, boolMember(st, "err-truncated"));
  return out;
}

}  // namespace

AgentClient::~AgentClient() { disconnect(); }

void AgentClient::disconnect() {
  std::shared_ptr<JsonChannel> channel;
  {
    MutexLock lock(mu_);
    channel = std::move(channel_);
  }
  if (channel) channel->close("agent client closed");
}

std::shared_ptr<JsonChannel> AgentClient::channel() const {
  MutexLock lock(mu_);
  return channel_;
}

Status AgentClient::ensureConnected(Deadline deadline) {
  {
    MutexLock lock(mu_);
    if (channel_ && channel_->connected()) return {};
    channel_.reset();
  }
  auto fd = connectUnix(path_, deadline);
  if (!fd.ok()) return unavailable("the guest agent channel is not available: " + fd.error().message);
  VMM_TRY(setNonBlocking(fd->get()));
  auto waiter = std::make_shared<Waiter>();
  auto channel = JsonChannel::open(loop_, std::move(*fd),
                                   {[waiter](json msg) {
                                      MutexLock lock(waiter->mu);
                                      waiter->reply = std::move(msg);
                                      waiter->cv.notify_all();
                                    },
                                    [waiter](const std::string& reason) {
                                      MutexLock lock(waiter->mu);
                                      waiter->closed = true;
                                      waiter->reason = reason;
                                      waiter->cv.notify_all();
                                    },
                                    [waiter](const Error& e) {
                                      MutexLock lock(waiter->mu);
                                      waiter->malformed = e;
                                      waiter->cv.notify_all();
                                    }});
  {
    MutexLock lock(mu_);
    waiter_ = waiter;
    channel_ = channel;
  }
  // Resynchronise: a 0xFF byte resets the agent's parser; it answers 0xFF + {"return": id}
  // and everything before that delimiter (stale replies to an earlier client) is dropped.
  uint64_t id = 0;
  randomBytes(&id, sizeof id);
  id &= 0x1fffffffffffffULL;  // exact in a JSON double
  channel->skipToDelimiter();
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
  std::shared_ptr<Waiter> waiter;
  std::shared_ptr<JsonChannel> channel;
  {
    MutexLock lock(mu_);
    waiter = waiter_;
    channel = channel_;
  }
  if (!channel) return unavailable("the guest agent channel closed: agent client closed");
  {
    MutexLock lock(waiter->mu);
    waiter->reply.reset();
    waiter->malformed.reset();
  }
  channel->send(text);
  MutexLock lock(waiter->mu);
  if (!waiter->cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(waiter->mu) {
        return waiter->reply || waiter->malformed || waiter->closed;
      })) {
    lock.unlock();
    disconnect();  // a late reply must not answer the next call
    return timeoutError("the guest agent did not answer before the deadline");
  }
  if (!waiter->reply && waiter->malformed) {
    Error e = malformed(waiter->malformed->message);
    lock.unlock();
    disconnect();  // what follows on the channel cannot be trusted to line up with our calls
    return e;
  }
  if (!waiter->reply) return unavailable("the guest agent channel closed: " + waiter->reason);
  json msg = std::move(*waiter->reply);
  waiter->reply.reset();
  // The guest controls every byte of the reply: its shape is checked before anything is read.
  if (!msg.is_object()) return malformed("the reply is not a JSON object");
  if (auto e = msg.find("error"); e != msg.end()) {
    auto desc = jsonString(*e, "desc");
    if (!desc) return malformed("an error reply without a string \"desc\"");
    std::string cls = jsonStringOr(*e, "class", "GenericError");
    return Error{cls == "CommandNotFound" ? ErrorCode::unsupported : ErrorCode::internal, "guest agent: " + *desc};
  }
  auto ret = msg.find("return");
  if (ret == msg.end()) return malformed("a reply with neither \"return\" nor \"error\"");
  return std::move(*ret);
}

Result<json> AgentClient::call(const std::string& command, const json& arguments, Deadline deadline, bool expectReply) {
  MutexLock lock(callMu_);
  VMM_TRY(ensureConnected(deadline));
  json cmd = {{"execute", command}};
  if (!arguments.empty()) cmd["arguments"] = arguments;
  if (!expectReply) {
    auto channel = this->channel();
    if (!channel) return unavailable("the guest agent channel closed: agent client closed");
    channel->send(cmd.dump());
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
  VMM_ASSIGN(int64_t pid, pidOf(started));
  Millis pause(5);
  while (true) {
    VMM_ASSIGN(auto reply, call("guest-exec-status", {{"pid", pid}}, deadline));
    VMM_ASSIGN(auto st, execStatusOf(reply));
    if (st.exited) return std::move(st.result);
    if (deadline.expired())
      return timeoutError("the guest command " + request.argv[0] + " (pid " + std::to_string(pid) + ") is still running at the deadline");
    std::this_thread::sleep_for(std::min(pause, deadline.remaining()));
    pause = std::min(pause * 2, Millis(100));
  }
}

Result<json> AgentClient::interfaces(Deadline deadline) {
  VMM_ASSIGN(auto ifs, call("guest-network-get-interfaces", json::object(), deadline));
  if (!ifs.is_array()) return malformed("guest-network-get-interfaces did not return an array");
  json out = json::array();
  for (const auto& i : ifs) {
    if (!i.is_object()) return malformed("guest-network-get-interfaces returned an interface that is not an object");
    json addrs = json::array();
    if (const json* list = jsonMember(i, "ip-addresses")) {
      if (!list->is_array()) return malformed("ip-addresses is not an array");
      for (const auto& a : *list) {
        auto ip = jsonString(a, "ip-address");
        auto prefix = jsonInt(a, "prefix");
        if (!ip || !prefix || *prefix < 0 || *prefix > 128) return malformed("an ip-addresses entry without ip-address and prefix");
        addrs.push_back(*ip + "/" + std::to_string(*prefix));
      }
    }
    out.push_back({{"name", jsonStringOr(i, "name", "")}, {"mac", jsonStringOr(i, "hardware-address", "")}, {"addresses", addrs}});
  }
  return out;
}

Result<int64_t> AgentClient::freezeFilesystems(bool freeze, Deadline deadline) {
  std::string command = freeze ? "guest-fsfreeze-freeze" : "guest-fsfreeze-thaw";
  VMM_ASSIGN(auto n, call(command, json::object(), deadline));
  auto count = jsonIntValue(n);
  if (!count || *count < 0) return malformed(command + " did not return a count");
  return *count;
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
  VMM_ASSIGN(int64_t pid, pidOf(started));

  auto drain = [&](Stream& st) -> Status {
    if (st.handle < 0) {
      auto h = call("guest-file-open", {{"path", st.path}, {"mode", "r"}}, deadline);
      if (!h.ok()) return {};  // not created yet
      auto handle = jsonIntValue(*h);
      if (!handle || *handle < 0) return malformed("guest-file-open returned no numeric handle");
      st.handle = *handle;
    }
    while (true) {
      VMM_ASSIGN(auto rd, call("guest-file-read", {{"handle", st.handle}, {"count", 65536}}, deadline));
      if (!rd.is_object()) return malformed("guest-file-read did not return an object");
      VMM_ASSIGN(auto bytes, bytesMember(rd, "buf-b64"));
      if (bytes.empty()) return {};
      request.onOutput(st.id, bytes);
      if (st.data.size() < kMaxCapture) st.data += bytes.substr(0, kMaxCapture - st.data.size());
      else st.truncated = true;
      if (bytes.size() < 65536) return {};
    }
  };
  auto cleanUp = [&] {
    // Best effort (the files are the guest's own): a guest that stopped answering keeps the
    // caller at most one second past its deadline, not five.
    Deadline soon = Deadline::after(Millis(1000));
    for (auto& st : streams)
      if (st.handle >= 0) (void)call("guest-file-close", {{"handle", st.handle}}, soon);
    (void)call("guest-exec", {{"path", "/bin/rm"}, {"arg", {"-f", streams[0].path, streams[1].path}}}, soon);
  };
  Millis pause(5);
  while (true) {
    auto reply = call("guest-exec-status", {{"pid", pid}}, deadline);
    auto status = reply.ok() ? execStatusOf(*reply) : Result<ExecStatus>(reply.error());
    if (!status.ok()) {
      cleanUp();
      return status.error();
    }
    for (auto& st : streams)
      if (auto d = drain(st); !d.ok()) {
        cleanUp();
        return d.error();
      }
    if (status->exited) {
      ExecResult r = std::move(status->result);  // no captured output: it went to the files
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
