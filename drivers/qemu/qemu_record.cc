#include "drivers/qemu/qemu_record.h"

#include "drivers/runtime_record.h"

namespace vmm::drivers::qemu {

model::json QemuRecord::toJson() const {
  json tapList = json::array();
  for (const auto& t : taps) tapList.push_back({{"ifname", t.ifname}, {"mac", t.mac}});
  return {{"version", version}, {"pid", pid},         {"uid", uid},
          {"gid", gid},         {"start_time", startTime}, {"run_id", runId},
          {"accel", accel},     {"machine", machine}, {"root_ports", rootPorts},
          {"ports", ports},     {"taps", tapList}};
}

Result<QemuRecord> QemuRecord::parse(const model::json& j) {
  QemuRecord r;
  RecordReader in(j, "qemu runtime record", kVersion);
  r.version = in.version();
  in.required("pid", r.pid);
  // Records written before QEMU ran unprivileged have no uid and gid: it ran as root (0).
  in.optional("uid", r.uid);
  in.optional("gid", r.gid);
  in.required("start_time", r.startTime);
  in.required("run_id", r.runId);
  in.required("accel", r.accel);
  in.required("machine", r.machine);
  in.required("root_ports", r.rootPorts);
  in.required("ports", r.ports);
  in.objects("taps", [&](RecordReader& t) {
    Tap tap;
    t.required("ifname", tap.ifname);
    t.required("mac", tap.mac);
    r.taps.push_back(std::move(tap));
  });
  VMM_TRY(in.finish());
  return r;
}

}  // namespace vmm::drivers::qemu
