#include "model/operation.h"

#include "base/json_util.h"
#include "base/time_util.h"

namespace vmm::model {

const EnumTable<OperationStatus> kOperationStatuses = {{OperationStatus::pending, "pending"},
                                                       {OperationStatus::running, "running"},
                                                       {OperationStatus::succeeded, "succeeded"},
                                                       {OperationStatus::failed, "failed"},
                                                       {OperationStatus::cancelled, "cancelled"}};

json formatOperation(const Operation& op) {
  json j = {{"id", op.id},
            {"kind", op.kind},
            {"object", op.object},
            {"principal", op.principal},
            {"status", enumName(kOperationStatuses, op.status)},
            {"progress", {{"percent", op.progress}, {"message", op.progressMessage}}},
            {"error", nullptr},
            {"result", op.result},
            {"created", formatTimestamp(op.createdUs)},
            {"updated", formatTimestamp(op.updatedUs)},
            {"cancellable", op.cancellable}};
  if (op.truncated) {
    j["truncated"] = true;
    j["result_bytes"] = op.resultBytes;
  }
  // The same shape as every other error on the wire.
  if (op.error)
    j["error"] = errorJson(*op.error);
  return j;
}

Result<Operation> parseOperationRecord(const json& j) {
  Operation op;
  JsonReader r(j, "operation");
  r.required("id", op.id);
  r.required("kind", op.kind);
  r.optional("object", op.object);
  r.optional("principal", op.principal);
  r.optionalEnum("status", op.status, kOperationStatuses);
  r.object("progress", [&](JsonReader& p) {
    p.optional("percent", op.progress, -1, 100);
    p.optional("message", op.progressMessage);
  });
  r.object("error", [&](JsonReader& e) {
    std::string kind, message;
    int64_t status = 0;
    e.optional("code", status, 0, 999);
    e.optional("kind", kind);
    e.optional("message", message);
    op.error = Error{errorCodeFromName(kind).value_or(ErrorCode::internal), message};
  });
  r.optionalAny("result", op.result);
  std::string created, updated;
  r.optional("created", created);
  r.optional("updated", updated);
  r.optional("cancellable", op.cancellable);
  r.optional("truncated", op.truncated);
  int64_t resultBytes = 0;
  r.optional("result_bytes", resultBytes, 0, INT64_MAX);
  op.resultBytes = static_cast<uint64_t>(resultBytes);
  VMM_TRY(r.finish());
  op.createdUs = parseTimestamp(created).value_or(0);
  op.updatedUs = parseTimestamp(updated).value_or(0);
  return op;
}

json formatEvent(const Event& e) {
  return {{"seq", e.seq}, {"time", formatTimestamp(e.timeUs)}, {"type", e.type}, {"object", e.object}, {"data", e.data}};
}

Result<Event> parseEvent(const json& j) {
  Event e;
  JsonReader r(j, "event");
  int64_t seq = 0;
  r.optional("seq", seq, 0, INT64_MAX);
  std::string time;
  r.optional("time", time);
  r.required("type", e.type);
  r.optional("object", e.object);
  r.optionalAny("data", e.data);
  VMM_TRY(r.finish());
  e.seq = static_cast<uint64_t>(seq);
  e.timeUs = parseTimestamp(time).value_or(0);
  return e;
}

}  // namespace vmm::model
