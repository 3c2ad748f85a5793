// The JSON-RPC line handler of a whole in-process vmmd (test driver). The input is a stream of
// lines. Every line goes raw to the read-only socket (what any local user can send); lines
// that parse and only call allow-listed methods (the test driver's domains, snapshots,
// operations, events: nothing that touches host files or networks) also go, re-serialised, to
// the read-write socket. After each line a sentinel request follows. Properties:
// - vmmd survives, and answers host.info on a new connection afterwards;
// - every sentinel is answered, or the server closed the connection (an oversized line);
// - every line that is a JSON object with a string or integer id gets a reply with that id;
//   every line that is not JSON gets a parse-error reply; all within the time limit;
// - every line vmmd sends is valid JSON (and so valid UTF-8).
#include <map>
#include <set>

#include "fuzz/daemon_harness.h"

using namespace vmm;
using json = nlohmann::json;

namespace {

constexpr Millis kLimit(20000);

const std::set<std::string>& allowed() {
  static const std::set<std::string> m = {
      "host.info", "domain.list", "domain.get", "domain.xml", "domain.create", "domain.update", "domain.delete",
      "domain.start", "domain.shutdown", "domain.destroy", "domain.reboot", "domain.reset", "domain.suspend",
      "domain.resume", "domain.stats", "domain.stats_all", "domain.attach_disk", "domain.detach_disk",
      "domain.attach_nic", "domain.detach_nic", "domain.exec", "domain.guest", "domain.console_log", "domain.remove",
      "snapshot.create", "snapshot.list", "snapshot.get", "snapshot.current", "snapshot.revert", "snapshot.delete",
      "pool.list", "pool.get", "network.list", "network.get", "volume.list", "image.list", "image.get",
      "operation.list", "operation.get", "operation.wait", "operation.result", "operation.cancel",
      "events.subscribe", "events.unsubscribe", "token.list"};
  return m;
}

// Methods named by a request or a batch; false when some member has no string method.
bool methodsAllowed(const json& doc) {
  auto one = [](const json& r) {
    auto m = jsonString(r, "method");
    return m && allowed().count(*m);
  };
  if (doc.is_array()) {
    for (const auto& r : doc)
      if (!one(r)) return false;
    return !doc.empty();
  }
  return one(doc);
}

struct Expect {
  std::multiset<std::string> ids;  // dumped ids that must be answered
  size_t nullIds = 0;              // parse errors that must be answered with id null
};

// Sends `lines` with a sentinel after each, reads until every sentinel and expected reply came
// (or the connection closed), checking every line read.
void exchange(fuzz::RpcConn& c, const std::vector<std::string>& lines, size_t maxLine, const char* which) {
  Deadline deadline = Deadline::after(kLimit);
  Expect expect;
  std::string out;
  size_t sentinels = 0;
  for (const auto& line : lines) {
    std::string_view body = trim(line);
    if (!body.empty() && line.size() <= maxLine) {
      auto doc = parseJson(line, maxLine, kJsonMaxDepth);
      if (!doc.ok()) {
        ++expect.nullIds;
      } else if (doc->is_object()) {
        const json* id = jsonMember(*doc, "id");
        if (id && (id->is_string() || id->is_number_integer())) expect.ids.insert(dumpJson(*id));
      }
    }
    out += line + "\n";
    out += R"({"jsonrpc":"2.0","id":"sentinel-)" + std::to_string(sentinels++) + R"(","method":"domain.list"})" "\n";
  }
  bool open = c.write(out, deadline);
  FUZZ_CHECK(open || c.closed(), std::string(which) + ": vmmd stopped reading the connection for " +
                                     std::to_string(kLimit.count()) + " ms");
  size_t answered = 0;
  std::string received;  // the ids answered, in order (for the message of a failed check)
  while (open && (answered < sentinels || !expect.ids.empty() || expect.nullIds > 0)) {
    auto line = c.readLine(deadline);
    if (!line) {
      FUZZ_CHECK(c.closed(), std::string(which) + ": no reply within " + std::to_string(kLimit.count()) + " ms (" +
                                 std::to_string(answered) + " of " + std::to_string(sentinels) + " sentinels, " +
                                 std::to_string(expect.ids.size()) + " ids, " + std::to_string(expect.nullIds) +
                                 " parse errors left; ids answered in order:" + received + ")\n" +
                                 fuzz::DaemonHarness::get().stallReport());
      break;
    }
    auto reply = parseJson(*line, 1 << 30, 1 << 20);
    FUZZ_CHECK(reply.ok(), std::string(which) + ": vmmd sent a line that is not JSON: " + fuzz::show(*line));
    auto record = [&](const json& r) {
      const json* id = jsonMember(r, "id");
      if (!id) return;  // event notifications
      std::string text = dumpJson(*id);
      received += " " + text;
      if (startsWith(jsonStringOr(r, "id", ""), "sentinel-")) {
        ++answered;
        return;
      }
      if (auto it = expect.ids.find(text); it != expect.ids.end()) expect.ids.erase(it);
    };
    if (reply->is_array()) {
      for (const auto& r : *reply) record(r);
    } else {
      if (reply->contains("id") && (*reply)["id"].is_null() && expect.nullIds > 0) --expect.nullIds;
      record(*reply);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 << 10) return 0;
  auto& h = fuzz::DaemonHarness::get();
  std::vector<std::string> raw = split(fuzz::bytes(data, size), '\n');
  if (raw.size() > 64) raw.resize(64);
  std::vector<std::string> admin;
  for (const auto& line : raw) {
    auto doc = parseJson(line, 4 << 20, kJsonMaxDepth);
    if (doc.ok() && methodsAllowed(*doc)) admin.push_back(dumpJson(*doc));
  }
  {
    fuzz::RpcConn ro(h.roSocket);
    exchange(ro, raw, 64 << 10, "read-only socket");
  }
  if (!admin.empty()) {
    fuzz::RpcConn rw(h.socket);
    exchange(rw, admin, 4 << 20, "read-write socket");
  }
  h.checkAlive("these lines");
  return 0;
}
