// Every hypervisor driver vmmd knows, one line each (registry.cc): its type, whether this build
// has it, and how to make it. Configuration checks, host info, the API's type choices and the
// factory all read this list, so a new driver is its folder, its line in registry.cc and its value
// of model::DriverType. Immutable after static initialisation: any thread may read it.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "drivers/driver.h"
#include "drivers/driver_context.h"
#include "drivers/qemu/qemu_driver.h"
#include "model/domain.h"

namespace vmm::drivers {

// What the daemon's configuration gives the drivers that take options.
struct DriverSettings {
  qemu::QemuOptions qemu{};
};

struct DriverEntry {
  model::DriverType type = model::DriverType::test;
  bool builtIn = false;     // compiled into this vmmd (Xen needs libxl at build time)
  bool simulated = false;   // simulates its disks and NICs: gets no host services
  std::unique_ptr<HypervisorDriver> (*make)(const DriverContext&, const DriverSettings&) = nullptr;
  std::string_view name() const { return model::enumName(model::kDriverTypes, type); }
};

// In model::kDriverTypes' order, one entry per model::DriverType.
std::span<const DriverEntry> driverRegistry();
const DriverEntry* findDriver(std::string_view name);
// "qemu, lxc, xen, test", for messages and help.
std::string driverNames(std::string_view separator = ", ");

}  // namespace vmm::drivers
