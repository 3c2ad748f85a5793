#include "model/json_reader.h"

#include "model/units.h"

namespace vmm::model {

std::string jsonTypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    default: return "value";
  }
}

std::string joinPath(const std::string& parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return parent + "." + std::string(key);
}

std::string indexPath(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

JsonReader::JsonReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
  if (!j_.is_object()) failHere("expected an object, got " + jsonTypeName(j_));
}

bool JsonReader::has(std::string_view key) const {
  return j_.is_object() && j_.find(key) != j_.end() && !j_.find(key)->is_null();
}

void JsonReader::fail(std::string_view key, const std::string& message) {
  if (!error_) error_ = invalidArgument(fieldPath(key) + ": " + message);
}

void JsonReader::failHere(const std::string& message) {
  if (!error_) error_ = invalidArgument((path_.empty() ? std::string("request") : path_) + ": " + message);
}

const json* JsonReader::get(std::string_view key) {
  known_.emplace(key);
  if (!ok() || !j_.is_object()) return nullptr;
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

void JsonReader::required(std::string_view key, std::string& out) {
  if (!ok()) return;
  if (!has(key)) {
    known_.emplace(key);
    fail(key, "required field is missing");
    return;
  }
  optional(key, out);
}

void JsonReader::optional(std::string_view key, std::string& out) {
  const json* v = get(key);
  if (!v) return;
  if (!v->is_string()) return fail(key, "expected a string, got " + jsonTypeName(*v));
  out = v->get<std::string>();
}

void JsonReader::optional(std::string_view key, bool& out) {
  const json* v = get(key);
  if (!v) return;
  if (!v->is_boolean()) return fail(key, "expected true or false, got " + jsonTypeName(*v));
  out = v->get<bool>();
}

void JsonReader::optional(std::string_view key, int64_t& out, int64_t min, int64_t max) {
  const json* v = get(key);
  if (!v) return;
  if (!v->is_number_integer()) return fail(key, "expected an integer, got " + jsonTypeName(*v));
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    return fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  int64_t x = v->get<int64_t>();
  if (x < min || x > max) return fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  out = x;
}

void JsonReader::optional(std::string_view key, int& out, int min, int max) {
  int64_t x = out;
  optional(key, x, min, max);
  if (ok()) out = static_cast<int>(x);
}

void JsonReader::optional(std::string_view key, std::optional<int>& out, int min, int max) {
  if (!has(key)) {
    accept(key);
    return;
  }
  int x = 0;
  optional(key, x, min, max);
  if (ok()) out = x;
}

void JsonReader::optional(std::string_view key, std::vector<std::string>& out) {
  const json* v = get(key);
  if (!v) return;
  if (!v->is_array()) return fail(key, "expected an array of strings, got " + jsonTypeName(*v));
  std::vector<std::string> tmp;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string())
      return fail(std::string(key) + "[" + std::to_string(i) + "]", "expected a string, got " + jsonTypeName((*v)[i]));
    tmp.push_back((*v)[i].get<std::string>());
  }
  out = std::move(tmp);
}

void JsonReader::optional(std::string_view key, std::map<std::string, std::string>& out) {
  const json* v = get(key);
  if (!v) return;
  if (!v->is_object()) return fail(key, "expected an object of strings, got " + jsonTypeName(*v));
  std::map<std::string, std::string> tmp;
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it.value().is_string())
      return fail(std::string(key) + "." + it.key(), "expected a string, got " + jsonTypeName(it.value()));
    tmp[it.key()] = it.value().get<std::string>();
  }
  out = std::move(tmp);
}

void JsonReader::optionalAny(std::string_view key, json& out) {
  const json* v = get(key);
  if (v) out = *v;
}

void JsonReader::optionalSize(std::string_view key, uint64_t& out) {
  const json* v = get(key);
  if (!v) return;
  if (v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0)) {
    out = v->get<uint64_t>();
    return;
  }
  if (!v->is_string()) return fail(key, "expected a size such as \"512MiB\", got " + jsonTypeName(*v));
  auto parsed = parseSize(v->get<std::string>());
  if (!parsed.ok()) return fail(key, parsed.error().message);
  out = *parsed;
}

void JsonReader::requiredSize(std::string_view key, uint64_t& out) {
  if (!ok()) return;
  if (!has(key)) {
    known_.emplace(key);
    return fail(key, "required field is missing");
  }
  optionalSize(key, out);
}

void JsonReader::optionalBitrate(std::string_view key, uint64_t& out) {
  const json* v = get(key);
  if (!v) return;
  if (v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0)) {
    out = v->get<uint64_t>();
    return;
  }
  if (!v->is_string()) return fail(key, "expected a bit rate such as \"10Mbit\", got " + jsonTypeName(*v));
  auto parsed = parseBitrate(v->get<std::string>());
  if (!parsed.ok()) return fail(key, parsed.error().message);
  out = *parsed;
}

void JsonReader::object(std::string_view key, const std::function<void(JsonReader&)>& fn, bool required) {
  const json* v = get(key);
  if (!ok()) return;
  if (!v) {
    if (required) fail(key, "required field is missing");
    return;
  }
  JsonReader child(*v, fieldPath(key));
  if (child.ok()) fn(child);
  auto st = child.finish();
  if (!st.ok() && !error_) error_ = st.takeError();
}

void JsonReader::objectArray(std::string_view key, size_t maxItems,
                             const std::function<void(JsonReader&, size_t)>& fn) {
  const json* v = get(key);
  if (!v || !ok()) return;
  if (!v->is_array()) return fail(key, "expected an array, got " + jsonTypeName(*v));
  if (v->size() > maxItems) return fail(key, "at most " + std::to_string(maxItems) + " items are allowed");
  for (size_t i = 0; i < v->size() && ok(); ++i) {
    JsonReader child((*v)[i], indexPath(fieldPath(key), i));
    if (child.ok()) fn(child, i);
    auto st = child.finish();
    if (!st.ok() && !error_) error_ = st.takeError();
  }
}

void JsonReader::array(std::string_view key, size_t maxItems,
                       const std::function<std::string(const json&, size_t)>& fn) {
  const json* v = get(key);
  if (!v || !ok()) return;
  if (!v->is_array()) return fail(key, "expected an array, got " + jsonTypeName(*v));
  if (v->size() > maxItems) return fail(key, "at most " + std::to_string(maxItems) + " items are allowed");
  for (size_t i = 0; i < v->size(); ++i) {
    std::string err = fn((*v)[i], i);
    if (!err.empty()) return fail(std::string(key) + "[" + std::to_string(i) + "]", err);
  }
}

Status JsonReader::finish() {
  if (error_) return *error_;
  if (j_.is_object()) {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!known_.count(it.key())) return invalidArgument(fieldPath(it.key()) + ": unknown field");
    }
  }
  return {};
}

}  // namespace vmm::model
