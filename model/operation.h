// Async operations and events as the API shows them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::model {

enum class OperationStatus { pending, running, succeeded, failed, cancelled };
extern const EnumTable<OperationStatus> kOperationStatuses;
inline bool isFinal(OperationStatus s) {
  return s == OperationStatus::succeeded || s == OperationStatus::failed || s == OperationStatus::cancelled;
}

struct Operation {
  std::string id;
  std::string kind;    // the operation name: "domain.start"
  std::string object;  // "domains/web1"
  std::string principal;  // who started it: "uid 0", "token ci"
  OperationStatus status = OperationStatus::pending;
  int progress = -1;   // percent, -1 = unknown
  std::string progressMessage;
  std::optional<Error> error;
  json result;         // null until succeeded
  // The result was larger than vmmd keeps with an operation: `result` holds a shortened copy
  // (its longest strings cut), the whole one is in a file for a while (operation.result).
  bool truncated = false;
  uint64_t resultBytes = 0;  // size of the whole result's JSON text (on the wire when truncated)
  int64_t createdUs = 0;
  int64_t updatedUs = 0;
  bool cancellable = false;
};

json formatOperation(const Operation& op);
Result<Operation> parseOperationRecord(const json& j);

struct Event {
  uint64_t seq = 0;
  int64_t timeUs = 0;
  std::string type;    // "domain.lifecycle", "operation", "storage", "network", "events.overflow"
  std::string object;  // "domains/web1"
  json data = json::object();
};

json formatEvent(const Event& e);
Result<Event> parseEvent(const json& j);

}  // namespace vmm::model
