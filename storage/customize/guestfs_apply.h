// The libguestfs side of vmm-customize: launch the appliance on one image, mount its root
// filesystem and apply a CustomizeSpec. Blocking, with no deadline of its own: only ever run
// inside the helper process, which the caller kills at its deadline.
#pragma once

#include <string>

#include "base/result.h"
#include "storage/customize/customize_spec.h"

namespace vmm::customize {

// `drivePath` is what QEMU opens; `displayPath` is how errors name the image.
Result<CustomizeReport> applyCustomization(const std::string& drivePath, const std::string& displayPath,
                                           const CustomizeSpec& spec);

// Launches the appliance with no image (only /dev/null, read-only) and shuts it down: whether
// this host's libguestfs set-up can start at all. launchMillis and totalMillis are filled in.
Result<CustomizeReport> checkAppliance();

}  // namespace vmm::customize
