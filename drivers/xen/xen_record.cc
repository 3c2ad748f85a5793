#include "drivers/xen/xen_record.h"

#include "drivers/runtime_record.h"

namespace vmm::drivers::xen {

model::json XenRecord::toJson() const {
  json portList = json::array();
  for (const auto& p : ports) portList.push_back({{"devid", p.devid}, {"ifname", p.ifname}});
  return {{"version", version}, {"run_id", runId}, {"domid", domid}, {"guest_type", guestType}, {"ports", portList}};
}

Result<XenRecord> XenRecord::parse(const model::json& j) {
  XenRecord r;
  RecordReader in(j, "xen runtime record", kVersion);
  r.version = in.version();
  in.required("run_id", r.runId);
  in.required("domid", r.domid);
  in.required("guest_type", r.guestType);
  in.objects("ports", [&](RecordReader& p) {
    Port port;
    p.required("devid", port.devid);
    p.required("ifname", port.ifname);
    r.ports.push_back(std::move(port));
  });
  VMM_TRY(in.finish());
  return r;
}

}  // namespace vmm::drivers::xen
