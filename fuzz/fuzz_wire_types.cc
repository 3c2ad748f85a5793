// Typed replies (api/types): whatever a daemon or a man in the middle sends, the client's readers
// return an error or structs, never crash; what they accept re-encodes through vmmd's writer to
// text they read back to the same structs. The JSON-RPC envelope split either refuses a line or
// gives the result's text.
#include "api/types/domain_summary.h"
#include "api/types/json_text.h"
#include "base/json_util.h"
#include "fuzz/fuzz_util.h"

using namespace vmm;

namespace {

bool same(const wire::DomainSummary& a, const wire::DomainSummary& b) {
  return a.name == b.name && a.project == b.project && a.uuid == b.uuid && a.type == b.type && a.state == b.state &&
         a.reason == b.reason && a.stateSince == b.stateSince && a.vcpus == b.vcpus && a.memory == b.memory &&
         a.autostart == b.autostart && a.labels == b.labels && a.generation == b.generation && a.title == b.title &&
         a.pendingChanges == b.pendingChanges;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 20) return 0;
  std::string text(fuzz::bytes(data, size));
  auto list = wire::parseDomainSummaries(text);
  if (list.ok()) {
    std::string again = "[";
    for (const auto& s : *list) {
      if (again.size() > 1) again += ',';
      wire::appendJson(again, s);
    }
    again += ']';
    auto back = wire::parseDomainSummaries(again);
    FUZZ_CHECK(back.ok(), "vmmd's writer produced text its reader refuses");
    FUZZ_CHECK(back->size() == list->size(), "round trip changed the count");
    // The reader accepts only valid UTF-8, so the writer has nothing to replace: exact round trip.
    for (size_t i = 0; i < list->size(); ++i) FUZZ_CHECK(same((*list)[i], (*back)[i]), "round trip changed a summary");
  }
  auto env = wire::splitRpcReply(std::string(fuzz::bytes(data, size)));
  if (env.ok() && !env->result.empty()) {
    // Whatever the split calls the result, when it parses, is the result of the whole line.
    auto cut = parseJson(env->result, env->result.size(), kStoredJsonDepth, "result");
    if (cut.ok()) {
      auto whole = parseJson(fuzz::bytes(data, size), size, kStoredJsonDepth + 1, "line");
      FUZZ_CHECK(whole.ok() && whole->is_object() && whole->contains("result") && (*whole)["result"] == *cut,
                 "the result cut from the line is not the line's result");
    }
    std::string result = env->result;
    (void)wire::parseDomainSummaries(result);
  }
  return 0;
}
