#include "api/types/json_text.h"

#include <nlohmann/json.hpp>

#include "base/json_util.h"

namespace vmm::wire {

void appendJsonString(std::string& out, std::string_view s) {
  bool plain = true;
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  if (plain) {
    out += '"';
    out += s;
    out += '"';
    return;
  }
  // Escapes and UTF-8 checks exactly as the rest of vmmd's output (nlohmann's serializer).
  out += nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Error malformed(const std::string& where, simdjson::error_code code) {
  return internalError("vmmd sent malformed JSON at " + (where.empty() ? std::string("the top") : where) + ": " +
                       simdjson::error_message(code));
}

namespace {

Error wrongType(const std::string& where, const char* expected) {
  return internalError("vmmd sent unexpected JSON at " + where + ": expected " + expected);
}

}  // namespace

Status readString(JsonValue v, std::string& out, const std::string& where) {
  std::string_view s;
  if (v.get_string().get(s)) return wrongType(where, "a string");
  out.assign(s);
  return {};
}

Status readOptionalString(JsonValue v, std::optional<std::string>& out, const std::string& where) {
  if (v.is_null()) {
    out.reset();
    return {};
  }
  std::string s;
  VMM_TRY(readString(v, s, where));
  out = std::move(s);
  return {};
}

Status readInt(JsonValue v, int64_t& out, const std::string& where) {
  if (v.get_int64().get(out)) return wrongType(where, "an integer");
  return {};
}

Status readUint(JsonValue v, uint64_t& out, const std::string& where) {
  if (v.get_uint64().get(out)) return wrongType(where, "a non-negative integer");
  return {};
}

Status readBool(JsonValue v, bool& out, const std::string& where) {
  if (v.get_bool().get(out)) return wrongType(where, "true or false");
  return {};
}

Status readStringMap(JsonValue v, std::map<std::string, std::string>& out, const std::string& where) {
  simdjson::dom::object obj;
  if (v.get_object().get(obj)) return wrongType(where, "an object");
  out.clear();
  for (auto [key, value] : obj) {
    std::string k(key);
    VMM_TRY(readString(value, out[k], where + "." + k));
  }
  return {};
}

Result<JsonValue> parseJson(std::string& text) {
  thread_local simdjson::dom::parser parser;
  if (text.capacity() < text.size() + simdjson::SIMDJSON_PADDING) text.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  JsonValue root;
  if (auto ec = parser.parse(text.data(), text.size(), false).get(root)) return malformed("", ec);
  return root;
}

Result<RpcEnvelope> splitRpcReply(std::string&& line) {
  RpcEnvelope env;
  static constexpr std::string_view kHead = "{\"jsonrpc\":\"2.0\",\"id\":";
  static constexpr std::string_view kResult = ",\"result\":";
  std::string_view text(line);
  if (text.starts_with(kHead) && text.ends_with('}')) {
    size_t digits = kHead.size();
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    size_t count = digits - kHead.size();
    bool leadingZero = count > 1 && text[kHead.size()] == '0';  // not JSON: left to the full parse
    if (count > 0 && count <= 18 && !leadingZero && text.substr(digits).starts_with(kResult)) {
      env.hasId = true;
      env.id = std::stoll(std::string(text.substr(kHead.size(), digits - kHead.size())));
      line.erase(line.size() - 1);
      line.erase(0, digits + kResult.size());
      env.result = std::move(line);
      return env;
    }
  }
  // Nesting is capped (a hostile peer's line must not exhaust the stack), so dump() below is too.
  auto parsed = vmm::parseJson(line, line.size(), kStoredJsonDepth, "vmmd's reply");
  if (!parsed.ok() || !parsed->is_object()) return internalError("vmmd sent invalid JSON");
  const nlohmann::json& msg = *parsed;
  auto text_of = [](const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
  if (auto id = msg.find("id"); id != msg.end()) {
    env.hasId = id->is_number_integer();
    env.idIsNull = id->is_null();
    if (env.hasId) env.id = id->get<int64_t>();
  }
  if (auto r = msg.find("result"); r != msg.end()) env.result = text_of(*r);
  if (auto e = msg.find("error"); e != msg.end()) env.error = text_of(*e);
  env.isNotification = msg.contains("method");
  return env;
}

}  // namespace vmm::wire
