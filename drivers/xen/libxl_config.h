// Translation of a domain definition into a libxl domain configuration - pure, no I/O.
//
// The result is JSON in the shape libxl_domain_config_to_json() writes (keys of the libxl IDL,
// "type.pv"/"type.hvm" for the guest-type union, defaults left out), so the driver hands it to
// libxl_domain_config_from_json() and then libxl_domain_create_new(). The golden tests parse it
// back with libxl's own parser and check that libxl writes the same JSON again.
//
// Guest type: `machine` "pv", "pvh" or "hvm"; when empty, "pv" for a kernel boot, else "hvm".
// What the port profile needs beyond the vif (VLAN, inbound QoS, ACL, isolation, mirroring) is
// applied after create by HostServices::attachPort on the vif; outbound QoS is enforced by
// netback itself (the vif's credit scheduler, xl's "rate=").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "drivers/driver.h"
#include "model/domain.h"

namespace vmm::drivers::xen {

enum class GuestType { pv, pvh, hvm };
Result<GuestType> guestTypeOf(const model::Domain& def);
std::string_view guestTypeName(GuestType t);

// Everything Xen cannot do that is visible in the definition alone (define time).
Status checkXenDomain(const model::Domain& def);

struct XenConfigInput {
  const model::Domain* def = nullptr;
  std::vector<ResolvedDisk> disks;  // one per def->disks, same order
  std::string vifScript;            // hotplug script of every vif (see xen_driver.cc)
};

// One vif and what the host side does with it after create.
struct XenPort {
  int devid = 0;
  std::string ifname;     // fixed name, or empty: libxl names it vif<domid>.<devid>
  bool emulated = false;  // HVM emulated NIC: there is also a "<ifname>-emu" tap
  model::Nic hostNic;     // what attachPort applies (the NIC minus what netback enforces)
};

struct XenConfig {
  GuestType type = GuestType::hvm;
  json libxl = json::object();
  std::vector<XenPort> ports;
};

Result<XenConfig> buildXenConfig(const XenConfigInput& in);

// The host-side name of a vif once the domain id is known.
std::string vifName(uint32_t domid, const XenPort& port);

// The plan as one JSON document (golden files): {"type", "libxl", "ports": [...]}.
json describeXenConfig(const XenConfig& c);

}  // namespace vmm::drivers::xen
