// Xen: a domain definition (JSON, through parseDomain) translated into a libxl configuration
// (buildXenConfig, describeXenConfig). Never a crash or an exception; the result is JSON that
// dumps strictly; every vif name is a safe interface name.
#include "base/json_util.h"
#include "drivers/xen/libxl_config.h"
#include "fuzz/fuzz_util.h"
#include "model/domain.h"
#include "model/names.h"

using namespace vmm;
using namespace vmm::drivers;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 << 10) return 0;
  auto doc = parseJson(fuzz::bytes(data, size), 1 << 20);
  if (!doc.ok()) return 0;
  // The golden files' shape: {"domain": {...}}, or the definition itself.
  const json* def = jsonMember(*doc, "domain");
  auto parsed = model::parseDomain(def ? *def : *doc);
  if (!parsed.ok()) return 0;
  model::Domain d = std::move(*parsed);
  d.type = model::DriverType::xen;
  (void)xen::checkXenDomain(d);
  xen::XenConfigInput in;
  in.def = &d;
  in.vifScript = "/run/vmm/xen/vif-vmm";
  for (const auto& disk : d.disks) {
    ResolvedDisk rd;
    rd.path = disk.source.isVolume() ? "/var/lib/vmm/pools/" + disk.source.pool + "/" + disk.source.volume : disk.source.path;
    rd.format = disk.format.value_or(model::defaultDiskFormat(disk));
    in.disks.push_back(rd);
  }
  auto cfg = xen::buildXenConfig(in);
  if (!cfg.ok()) return 0;
  (void)xen::describeXenConfig(*cfg).dump();
  for (const auto& p : cfg->ports) {
    std::string name = xen::vifName(7, p);
    FUZZ_CHECK(model::validateIfName(name).ok(), "vif name " + fuzz::show(name));
  }
  return 0;
}
