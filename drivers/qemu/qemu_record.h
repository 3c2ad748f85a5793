// The qemu driver's runtime record: what vmmd persists about a running QEMU to reconnect to
// it (or free its taps) after a restart. Values: no shared state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::drivers::qemu {

struct QemuRecord {
  static constexpr int kVersion = 1;
  struct Tap {
    std::string ifname{};
    std::string mac{};
  };
  int version = kVersion;
  pid_t pid = -1;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t startTime = 0;  // /proc/PID/stat field 22: tells a reused pid apart
  std::string runId{};
  std::string accel{};
  std::string machine{};
  int rootPorts = 0;
  std::map<std::string, int> ports{};  // device id -> root port number
  std::vector<Tap> taps{};

  model::json toJson() const;
  // Fails naming the first missing or mistyped key; a record without "version" is version 1.
  static Result<QemuRecord> parse(const model::json& j);
};

}  // namespace vmm::drivers::qemu
