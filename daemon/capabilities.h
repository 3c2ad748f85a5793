// What this host offers: kernel, CPUs, memory, KVM or not, cgroup layout, and each driver's
// availability (with the reason when unavailable). Probed once at start-up, off the
// request path; drivers cache their own probes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vmm {

struct HostFacts {
  std::string hostname;
  std::string kernel;         // uname release
  std::string arch;
  int cpus = 0;
  uint64_t memoryBytes = 0;
  bool kvm = false;           // /dev/kvm usable
  std::string kvmReason;      // why not
  std::string cgroupLayout;   // "v1", "v2", "hybrid"
  std::vector<std::string> cgroupV1Controllers;
  std::vector<std::string> cgroupV2Controllers;
  std::string cgroupV2Mount;
};

HostFacts probeHostFacts();
nlohmann::json formatHostFacts(const HostFacts& f);

}  // namespace vmm
