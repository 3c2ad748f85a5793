#include "drivers/test/test_record.h"

#include "drivers/runtime_record.h"

namespace vmm::drivers {

model::json TestRecord::toJson() const {
  return {{"version", version},   {"run_id", runId},
          {"boot_us", bootUs},    {"paused", paused},
          {"paused_us", pausedUs}, {"paused_since_us", pausedSinceUs},
          {"disks", disks},       {"nics", nics}};
}

Result<TestRecord> TestRecord::parse(const model::json& j) {
  TestRecord r;
  RecordReader in(j, "test runtime record", kVersion);
  r.version = in.version();
  in.required("run_id", r.runId);
  in.required("boot_us", r.bootUs);
  in.required("paused", r.paused);
  in.required("paused_us", r.pausedUs);
  in.required("paused_since_us", r.pausedSinceUs);
  in.required("disks", r.disks);
  in.required("nics", r.nics);
  VMM_TRY(in.finish());
  return r;
}

}  // namespace vmm::drivers
