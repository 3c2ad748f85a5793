// The lxc driver's runtime record: what vmmd persists about a running container to reconnect
// to it (or free its cgroups and veths) after a restart. Values: no shared state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::drivers::lxc {

struct LxcRecord {
  static constexpr int kVersion = 1;
  struct Veth {
    std::string ifname{};
    std::string mac{};
    std::string bridge{};
  };
  int version = kVersion;
  pid_t initPid = -1;     // in vmmd's pid namespace
  uint64_t initStart = 0; // /proc/PID/stat field 22: tells a reused pid apart
  pid_t monitorPid = -1;
  std::string runId{};
  bool userns = false;
  bool cgroupV2 = false;
  std::vector<std::string> cgroups{};
  std::vector<Veth> veths{};

  model::json toJson() const;
  // Fails naming the first missing or mistyped key; a record without "version" is version 1.
  static Result<LxcRecord> parse(const model::json& j);
};

}  // namespace vmm::drivers::lxc
