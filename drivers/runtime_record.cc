#include "drivers/runtime_record.h"

namespace vmm::drivers {

RecordReader::RecordReader(const json& j, std::string what) : j_(j), what_(std::move(what)) {
  if (!j_.is_object()) fail(what_ + " is " + model::jsonTypeName(j_) + ", expected an object");
}

RecordReader::RecordReader(const json& j, std::string what, int currentVersion) : RecordReader(j, std::move(what)) {
  if (!ok()) return;
  auto it = j_.find("version");
  if (it == j_.end()) return;  // written before records had versions
  if (!it->is_number_integer()) {
    wrongType("version", *it, "an integer");
  } else if (int64_t v = it->get<int64_t>(); v < 1) {
    outOfRange("version");
  } else if (v > currentVersion) {
    fail(what_ + " has version " + std::to_string(v) + ", newer than this vmmd reads (" + std::to_string(currentVersion) + ")");
  } else {
    version_ = static_cast<int>(v);
  }
}

const json* RecordReader::get(std::string_view key, std::string_view expected) {
  if (!ok()) return nullptr;
  auto it = j_.find(key);
  if (it == j_.end()) {
    fail(what_ + ": key \"" + std::string(key) + "\" (" + std::string(expected) + ") is missing");
    return nullptr;
  }
  return &*it;
}

void RecordReader::wrongType(std::string_view key, const json& v, std::string_view expected) {
  fail(what_ + ": key \"" + std::string(key) + "\" is " + model::jsonTypeName(v) + ", expected " + std::string(expected));
}

void RecordReader::outOfRange(std::string_view key) {
  fail(what_ + ": key \"" + std::string(key) + "\" is out of range");
}

void RecordReader::fail(std::string message) {
  if (!error_) error_ = internalError(std::move(message));
}

void RecordReader::required(std::string_view key, std::string& out) {
  const json* v = get(key, "a string");
  if (!v) return;
  if (!v->is_string()) return wrongType(key, *v, "a string");
  out = v->get<std::string>();
}

void RecordReader::required(std::string_view key, bool& out) {
  const json* v = get(key, "a boolean");
  if (!v) return;
  if (!v->is_boolean()) return wrongType(key, *v, "a boolean");
  out = v->get<bool>();
}

void RecordReader::required(std::string_view key, std::vector<std::string>& out) {
  const json* v = get(key, "an array of strings");
  if (!v) return;
  if (!v->is_array()) return wrongType(key, *v, "an array of strings");
  std::vector<std::string> items;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) return wrongType(std::string(key) + "[" + std::to_string(i) + "]", (*v)[i], "a string");
    items.push_back((*v)[i].get<std::string>());
  }
  out = std::move(items);
}

void RecordReader::required(std::string_view key, std::map<std::string, int>& out) {
  const json* v = get(key, "an object of integers");
  if (!v) return;
  if (!v->is_object()) return wrongType(key, *v, "an object of integers");
  std::map<std::string, int> items;
  for (const auto& [k, item] : v->items()) {
    std::string where = std::string(key) + "." + k;
    if (!item.is_number_integer()) return wrongType(where, item, "an integer");
    int n = 0;
    const json wrapped = {{"value", item}};  // reuses the integer range checks
    RecordReader element(wrapped, what_);
    element.required("value", n);
    if (!element.ok()) return outOfRange(where);
    items[k] = n;
  }
  out = std::move(items);
}

void RecordReader::objects(std::string_view key, const std::function<void(RecordReader&)>& fn) {
  const json* v = get(key, "an array of objects");
  if (!v) return;
  if (!v->is_array()) return wrongType(key, *v, "an array of objects");
  for (size_t i = 0; i < v->size() && ok(); ++i) {
    RecordReader element((*v)[i], what_ + ": " + std::string(key) + "[" + std::to_string(i) + "]");
    if (element.ok()) fn(element);
    if (!element.ok()) error_ = element.error_;
  }
}

Status RecordReader::finish() const {
  if (error_) return *error_;
  return {};
}

}  // namespace vmm::drivers
