// The driver registry (drivers/registry.h) is the one list of drivers: one entry per
// model::DriverType, in the model's order, each built-in one with a factory that makes a driver
// of its type.
#include <gtest/gtest.h>

#include "drivers/registry.h"

using namespace vmm;

TEST(DriverRegistry, OneEntryPerModelDriverTypeInItsOrder) {
  auto entries = drivers::driverRegistry();
  ASSERT_EQ(entries.size(), model::kDriverTypes.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].type, model::kDriverTypes[i].first);
    EXPECT_EQ(entries[i].name(), model::kDriverTypes[i].second);
    EXPECT_EQ(drivers::findDriver(entries[i].name()), &entries[i]);
    EXPECT_EQ(entries[i].builtIn, entries[i].make != nullptr) << entries[i].name();
  }
  EXPECT_EQ(drivers::findDriver("vbox"), nullptr);
  EXPECT_EQ(drivers::driverNames(","), "qemu,lxc,xen,test");
#ifdef VMM_HAVE_XEN
  EXPECT_TRUE(drivers::findDriver("xen")->builtIn);
#else
  EXPECT_FALSE(drivers::findDriver("xen")->builtIn);
#endif
}

TEST(DriverRegistry, FactoriesMakeDriversOfTheirType) {
  drivers::DriverContext ctx;
  drivers::DriverSettings settings;
  for (const auto& entry : drivers::driverRegistry()) {
    if (!entry.builtIn) continue;
    auto driver = entry.make(ctx, settings);
    ASSERT_NE(driver, nullptr) << entry.name();
    EXPECT_EQ(driver->type(), entry.type) << entry.name();
  }
}
