// Fault injection for tests (test-only; never set in production): faultPoint("NAME") kills
// vmmd on the spot with SIGKILL - exactly what a kill -9 at that instant does - when the
// environment variable VMM_FAULT_POINTS (read once, a comma-separated list) names NAME. Unset,
// a fault point costs one load of a static flag.
//
// The points, in order of a snapshot's creation (tests/e2e/qemu_snapshot_e2e_test.cc):
//   snapshot.after-job-start  drivers/qemu/qemu_snapshots.cc: QEMU accepted the snapshot-save
//                             job (internal, with memory), which runs on without vmmd
//   snapshot.after-overlays   drivers/qemu/qemu_snapshots.cc: QEMU writes to the new overlays
//                             (external, running), the definition still names the images
//   snapshot.before-record    daemon/domain_snapshots.cc: the driver took the snapshot and the
//                             definition follows its overlays; the state store does not record it
//   snapshot.after-record     daemon/domain_snapshots.cc: recorded, the caller not yet told
#pragma once

#include <signal.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "base/log.h"

namespace vmm {

namespace detail {

inline const std::string& faultPointsArmed() {
  static const std::string armed = [] {
    const char* v = std::getenv("VMM_FAULT_POINTS");
    return v && *v ? "," + std::string(v) + "," : std::string();
  }();
  return armed;
}

}  // namespace detail

inline void faultPoint(std::string_view name) {
  const std::string& armed = detail::faultPointsArmed();
  if (armed.empty()) return;
  if (armed.find("," + std::string(name) + ",") == std::string::npos) return;
  log::error("fault point reached: vmmd kills itself (VMM_FAULT_POINTS)", {{"point", name}});
  ::raise(SIGKILL);
}

}  // namespace vmm
