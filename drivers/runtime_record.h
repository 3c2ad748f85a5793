// Strict reading of a driver's runtime record (RunningDomain::record), the JSON vmmd persists
// to reconnect to a running domain after a restart. A missing or mistyped key is an error
// naming the key, never a silent default: a default pid or start time would make vmmd adopt
// or kill the wrong process. Records carry a "version"; one without it was written before
// versions existed and reads as version 1. Not thread-safe: one reader per parse.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::drivers {

using json = nlohmann::json;

class RecordReader {
 public:
  // `what` names the record in errors ("qemu runtime record"); `j` must outlive the reader.
  // Records newer than `currentVersion` are refused: their meaning is unknown here.
  RecordReader(const json& j, std::string what, int currentVersion);

  int version() const { return version_; }
  bool ok() const { return !error_.has_value(); }

  void required(std::string_view key, std::string& out);
  void required(std::string_view key, bool& out);
  void required(std::string_view key, std::vector<std::string>& out);
  // Any integer type; the value must fit it.
  template <typename T>
    requires std::is_integral_v<T>
  void required(std::string_view key, T& out) {
    const json* v = get(key, "an integer");
    if (!v) return;
    if (!v->is_number_integer()) return wrongType(key, *v, "an integer");
    if constexpr (std::is_signed_v<T>) {
      // Text parsing makes every non-negative integer unsigned: compare in the matching type.
      if (v->is_number_unsigned() ? v->get<uint64_t>() > uint64_t(std::numeric_limits<T>::max())
                                  : v->get<int64_t>() < int64_t(std::numeric_limits<T>::min()) ||
                                        v->get<int64_t>() > int64_t(std::numeric_limits<T>::max()))
        return outOfRange(key);
      out = static_cast<T>(v->get<int64_t>());
    } else {
      if (!v->is_number_unsigned() && v->get<int64_t>() < 0) return outOfRange(key);
      uint64_t n = v->get<uint64_t>();
      if (n > uint64_t(std::numeric_limits<T>::max())) return outOfRange(key);
      out = static_cast<T>(n);
    }
  }
  // A key older records may lack (the caller documents what its absence means): `out` is
  // left as it is then; present, it is read as strictly as a required one.
  template <typename T>
    requires std::is_integral_v<T>
  void optional(std::string_view key, T& out) {
    if (ok() && j_.contains(key)) required(key, out);
  }
  // An array of objects: fn(reader) per element, with a reader for that element (its own
  // errors name "key[i].field").
  void objects(std::string_view key, const std::function<void(RecordReader&)>& fn);
  // An object whose values are all integers.
  void required(std::string_view key, std::map<std::string, int>& out);

  // The first error, if any.
  Status finish() const;

 private:
  RecordReader(const json& j, std::string what);  // an element: no version of its own
  const json* get(std::string_view key, std::string_view expected);
  void wrongType(std::string_view key, const json& v, std::string_view expected);
  void outOfRange(std::string_view key);
  void fail(std::string message);

  const json& j_;
  std::string what_;
  int version_ = 1;
  std::optional<Error> error_{};
};

}  // namespace vmm::drivers
