#include "drivers/registry.h"

#include "base/strings.h"
#include "drivers/lxc/lxc_driver.h"
#include "drivers/test/test_driver.h"
#ifdef VMM_HAVE_XEN
#include "drivers/xen/xen_driver.h"
#endif

namespace vmm::drivers {

namespace {

template <class Driver>
std::unique_ptr<HypervisorDriver> make(const DriverContext& ctx, const DriverSettings&) {
  return std::make_unique<Driver>(ctx);
}

std::unique_ptr<HypervisorDriver> makeQemu(const DriverContext& ctx, const DriverSettings& settings) {
  return std::make_unique<qemu::QemuDriver>(ctx, settings.qemu);
}

const DriverEntry kDrivers[] = {
    {model::DriverType::qemu, true, false, makeQemu},
    {model::DriverType::lxc, true, false, make<lxc::LxcDriver>},
#ifdef VMM_HAVE_XEN
    {model::DriverType::xen, true, false, make<xen::XenDriver>},
#else
    {model::DriverType::xen, false, false, nullptr},
#endif
    {model::DriverType::test, true, true, make<TestDriver>},
};

}  // namespace

std::span<const DriverEntry> driverRegistry() { return kDrivers; }

const DriverEntry* findDriver(std::string_view name) {
  for (const auto& d : kDrivers)
    if (d.name() == name) return &d;
  return nullptr;
}

std::string driverNames(std::string_view separator) {
  std::string out;
  for (const auto& d : kDrivers) out += (out.empty() ? "" : std::string(separator)) + std::string(d.name());
  return out;
}

}  // namespace vmm::drivers
