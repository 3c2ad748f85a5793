// The xen driver's runtime record: what vmmd persists about a running Xen domain to find it
// again (or release it and its ports) after a restart. Values: no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::drivers::xen {

struct XenRecord {
  static constexpr int kVersion = 1;
  struct Port {
    int devid = 0;
    std::string ifname{};
  };
  int version = kVersion;
  std::string runId{};
  uint32_t domid = 0;
  std::string guestType{};  // "pv", "hvm", "pvh": informative, the definition decides
  std::vector<Port> ports{};

  model::json toJson() const;
  // Fails naming the first missing or mistyped key; a record without "version" is version 1.
  static Result<XenRecord> parse(const model::json& j);
};

}  // namespace vmm::drivers::xen
