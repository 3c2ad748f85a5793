#include "base/json_util.h"

#include <limits>

namespace vmm {

using json = nlohmann::json;

namespace {

// nlohmann's DOM builder behind a depth check: returning false from a SAX callback stops the
// parse there, so a document 100000 levels deep costs 65 levels of work, not 100000.
class DepthLimitedSax {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  DepthLimitedSax(json& root, size_t maxDepth) : dom_(root, false), maxDepth_(maxDepth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return dom_.number_float(v, s); }
  bool string(string_t& v) { return dom_.string(v); }
  bool binary(binary_t& v) { return dom_.binary(v); }
  bool key(string_t& v) { return dom_.key(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& ex) {
    std::string_view m = ex.what();
    auto close = m.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] "
    // "last read: '...'" quotes the input, which may not be UTF-8.
    error_ = toValidUtf8(close == std::string_view::npos ? m : m.substr(close + 2));
    return false;
  }

  bool tooDeep() const { return tooDeep_; }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ <= maxDepth_) return true;
    tooDeep_ = true;
    return false;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  size_t maxDepth_;
  size_t depth_ = 0;
  bool tooDeep_ = false;
  std::string error_;
};

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629).
size_t utf8SequenceAt(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c == 0xe0) n = 3, lo = 0xa0;
  else if (c == 0xed) n = 3, hi = 0x9f;
  else if (c >= 0xe1 && c <= 0xef) n = 3;
  else if (c == 0xf0) n = 4, lo = 0x90;
  else if (c >= 0xf1 && c <= 0xf3) n = 4;
  else if (c == 0xf4) n = 4, hi = 0x8f;
  else return 0;
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xbf) return 0;
  return n;
}

}  // namespace

Result<json> parseJson(std::string_view text, size_t maxBytes, size_t maxDepth, std::string_view what) {
  std::string w(what);
  if (text.size() > maxBytes)
    return Error{ErrorCode::payload_too_large, w + ": larger than " + std::to_string(maxBytes) + " bytes"};
  // A NUL byte is never valid JSON (in strings it must be escaped), but nlohmann's lexer takes
  // it for the end of the input and would accept "{...}\0anything".
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return invalidArgument(w + ": a NUL byte at offset " + std::to_string(nul));
  json out;
  DepthLimitedSax sax(out, maxDepth);
  bool ok = false;
  try {
    ok = json::sax_parse(text.data(), text.data() + text.size(), &sax, json::input_format_t::json, true, false);
  } catch (const std::exception& e) {  // defensive: the DOM builder can throw on exotic input
    return invalidArgument(w + ": " + e.what());
  }
  if (sax.tooDeep()) return invalidArgument(w + ": nested deeper than " + std::to_string(maxDepth) + " levels");
  if (!ok) return invalidArgument(w + ": " + (sax.error().empty() ? std::string("invalid JSON") : sax.error()));
  return out;
}

std::string dumpJson(const json& j, int indent) {
  try {
    return j.dump(indent, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception&) {  // only allocation failures remain
    return "null";
  }
}

bool isValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8SequenceAt(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

std::string toValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8SequenceAt(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

const json* jsonMember(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> jsonString(const json& obj, std::string_view key) {
  const json* v = jsonMember(obj, key);
  if (!v || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

std::optional<int64_t> jsonIntValue(const json& v) {
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

std::optional<uint64_t> jsonUintValue(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    auto i = v.get<int64_t>();
    if (i < 0) return std::nullopt;
    return static_cast<uint64_t>(i);
  }
  return std::nullopt;
}

std::optional<int64_t> jsonInt(const json& obj, std::string_view key) {
  const json* v = jsonMember(obj, key);
  return v ? jsonIntValue(*v) : std::nullopt;
}

std::optional<uint64_t> jsonUint(const json& obj, std::string_view key) {
  const json* v = jsonMember(obj, key);
  return v ? jsonUintValue(*v) : std::nullopt;
}

std::optional<bool> jsonBool(const json& obj, std::string_view key) {
  const json* v = jsonMember(obj, key);
  if (!v || !v->is_boolean()) return std::nullopt;
  return v->get<bool>();
}

std::string jsonStringOr(const json& obj, std::string_view key, std::string fallback) {
  auto v = jsonString(obj, key);
  return v ? std::move(*v) : std::move(fallback);
}

int64_t jsonIntOr(const json& obj, std::string_view key, int64_t fallback) { return jsonInt(obj, key).value_or(fallback); }

bool jsonBoolOr(const json& obj, std::string_view key, bool fallback) { return jsonBool(obj, key).value_or(fallback); }

json errorJson(const Error& e) {
  return {{"code", httpStatusFor(e.code)}, {"kind", errorCodeName(e.code)}, {"message", e.message}};
}

}  // namespace vmm
