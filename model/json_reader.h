// Strict reading of JSON objects into model structs.
//
// A JsonReader wraps one JSON object and the path that leads to it ("disks[1].source").
// Every accessor marks its key as known; finish() fails on the first type error or on any
// key nobody asked for, naming the field by its full path:
//   disks[1].bus: unknown value "floppy" (expected one of: virtio, scsi, sata, ide, usb)
//   nics[0].colour: unknown field
// The first error wins; later accessors become no-ops, so parse code stays linear.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vmm::model {

using json = nlohmann::json;

// A string <-> enum table: {{Bus::virtio, "virtio"}, ...}.
template <typename E>
using EnumTable = std::vector<std::pair<E, std::string_view>>;

template <typename E>
std::string_view enumName(const EnumTable<E>& table, E value) {
  for (const auto& [v, n] : table)
    if (v == value) return n;
  return "?";
}

template <typename E>
std::optional<E> enumFromName(const EnumTable<E>& table, std::string_view name) {
  for (const auto& [v, n] : table)
    if (n == name) return v;
  return std::nullopt;
}

template <typename E>
std::string enumChoices(const EnumTable<E>& table) {
  std::string out;
  for (const auto& [v, n] : table) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

std::string jsonTypeName(const json& j);
std::string joinPath(const std::string& parent, std::string_view key);
std::string indexPath(const std::string& parent, size_t index);

class JsonReader {
 public:
  // `j` must outlive the reader.
  JsonReader(const json& j, std::string path);

  const std::string& path() const { return path_; }
  std::string fieldPath(std::string_view key) const { return joinPath(path_, key); }
  bool ok() const { return !error_.has_value(); }
  bool has(std::string_view key) const;
  // Marks a key as known without reading it.
  void accept(std::string_view key) { known_.emplace(key); }
  // Records an error about `key` (only the first error is kept).
  void fail(std::string_view key, const std::string& message);
  void failHere(const std::string& message);

  void required(std::string_view key, std::string& out);
  void optional(std::string_view key, std::string& out);
  void optional(std::string_view key, bool& out);
  void optional(std::string_view key, int64_t& out, int64_t min, int64_t max);
  void optional(std::string_view key, int& out, int min, int max);
  void optional(std::string_view key, std::optional<int>& out, int min, int max);
  void optional(std::string_view key, std::vector<std::string>& out);
  void optional(std::string_view key, std::map<std::string, std::string>& out);
  void optionalAny(std::string_view key, json& out);
  // A byte size: an integer or a string with a unit ("512MiB").
  void optionalSize(std::string_view key, uint64_t& out);
  void requiredSize(std::string_view key, uint64_t& out);
  // Bits per second: an integer or "10Mbit".
  void optionalBitrate(std::string_view key, uint64_t& out);

  template <typename E>
  void optionalEnum(std::string_view key, E& out, const EnumTable<E>& table) {
    std::string s;
    if (!has(key)) {
      accept(key);
      return;
    }
    optional(key, s);
    if (!ok()) return;
    auto v = enumFromName(table, s);
    if (!v) {
      fail(key, "unknown value \"" + s + "\" (expected one of: " + enumChoices(table) + ")");
      return;
    }
    out = *v;
  }

  // Object-valued field: fn(reader) is called with a reader for the nested object.
  void object(std::string_view key, const std::function<void(JsonReader&)>& fn, bool required = false);
  // Array of objects: fn(reader, index) per element; at most maxItems elements.
  void objectArray(std::string_view key, size_t maxItems, const std::function<void(JsonReader&, size_t)>& fn);
  // Array of scalars, with a per-item reader: fn(item, itemPath) returns an error message or "".
  void array(std::string_view key, size_t maxItems, const std::function<std::string(const json&, size_t)>& fn);

  // Fails on unknown fields; returns the first recorded error, if any.
  Status finish();

 private:
  const json* get(std::string_view key);

  const json& j_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
  std::optional<Error> error_;
};

// Convenience: run a parse function over a top-level object.
template <typename T>
Result<T> readObject(const json& j, const std::string& path, const std::function<void(JsonReader&, T&)>& fn) {
  T out{};
  JsonReader r(j, path);
  fn(r, out);
  VMM_TRY(r.finish());
  return out;
}

}  // namespace vmm::model
