#include "drivers/lxc/lxc_record.h"

#include "drivers/runtime_record.h"

namespace vmm::drivers::lxc {

model::json LxcRecord::toJson() const {
  json vethList = json::array();
  for (const auto& v : veths) vethList.push_back({{"ifname", v.ifname}, {"mac", v.mac}, {"bridge", v.bridge}});
  return {{"version", version},      {"pid", initPid},   {"start_time", initStart},
          {"monitor_pid", monitorPid}, {"run_id", runId}, {"userns", userns},
          {"cgroup_v2", cgroupV2},   {"cgroups", cgroups}, {"veths", vethList}};
}

Result<LxcRecord> LxcRecord::parse(const model::json& j) {
  LxcRecord r;
  RecordReader in(j, "lxc runtime record", kVersion);
  r.version = in.version();
  in.required("pid", r.initPid);
  in.required("start_time", r.initStart);
  in.required("monitor_pid", r.monitorPid);
  in.required("run_id", r.runId);
  in.required("userns", r.userns);
  in.required("cgroup_v2", r.cgroupV2);
  in.required("cgroups", r.cgroups);
  in.objects("veths", [&](RecordReader& v) {
    Veth veth;
    v.required("ifname", veth.ifname);
    v.required("mac", veth.mac);
    v.required("bridge", veth.bridge);
    r.veths.push_back(std::move(veth));
  });
  VMM_TRY(in.finish());
  return r;
}

}  // namespace vmm::drivers::lxc
