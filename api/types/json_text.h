// Writing and reading JSON text for the typed wire objects (api/types): a writer of JSON strings
// and the strict, fast reading of replies (simdjson's DOM parser, whose SIMD kernel is chosen at
// run time for the CPU) that libvmmclient uses to decode large answers into structs without an
// nlohmann tree. Pure functions, except threadParser(): one per thread.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm::wire {

// `s` as a JSON string literal appended to `out`; invalid UTF-8 is replaced (U+FFFD), never fatal,
// as vmmd's other JSON output does.
void appendJsonString(std::string& out, std::string_view s);

// Readers of one value at `where` (a path such as "[3].labels.tier" for error messages). A value
// of another JSON type is an error; nothing is coerced.
using JsonValue = simdjson::dom::element;
Status readString(JsonValue v, std::string& out, const std::string& where);
Status readOptionalString(JsonValue v, std::optional<std::string>& out, const std::string& where);  // null: nullopt
Status readInt(JsonValue v, int64_t& out, const std::string& where);
Status readUint(JsonValue v, uint64_t& out, const std::string& where);
Status readBool(JsonValue v, bool& out, const std::string& where);
Status readStringMap(JsonValue v, std::map<std::string, std::string>& out, const std::string& where);

// `text` parsed by the thread's reusable parser; the element lives until the thread's next parse.
// `text` gets simdjson's padding as spare capacity (grown in place, not copied when it has it).
Result<JsonValue> parseJson(std::string& text);
Error malformed(const std::string& where, simdjson::error_code code);

// A JSON-RPC reply line split without decoding its result: the result's (or error's) JSON text.
struct RpcEnvelope {
  bool hasId = false;
  bool idIsNull = false;
  int64_t id = 0;
  bool isNotification = false;   // has a "method": an event, not a reply
  std::string result{};          // empty when absent
  std::string error{};           // empty when absent
};
// vmmd writes a result as {"jsonrpc":"2.0","id":N,"result":VALUE}: that line is cut without parsing
// (whoever reads `result` parses it, and it parses as one value only if the line was exactly
// that object); any other line is parsed whole.
Result<RpcEnvelope> splitRpcReply(std::string&& line);

}  // namespace vmm::wire
