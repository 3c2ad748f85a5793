// The test driver's runtime record: the simulated guest's state, persisted so a restarted
// vmmd finds it again. Values: no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::drivers {

struct TestRecord {
  static constexpr int kVersion = 1;
  int version = kVersion;
  std::string runId{};
  int64_t bootUs = 0;
  bool paused = false;
  int64_t pausedUs = 0;  // accumulated paused time
  int64_t pausedSinceUs = 0;
  std::vector<std::string> disks{};
  std::vector<std::string> nics{};

  model::json toJson() const;
  // Fails naming the first missing or mistyped key; a record without "version" is version 1.
  static Result<TestRecord> parse(const model::json& j);
};

}  // namespace vmm::drivers
