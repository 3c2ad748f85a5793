// What vmm decided about each volume of a pool: its format and the volume it reads through,
// recorded when vmm made the volume or first saw it, and never read again from the volume's
// bytes - a guest can write anything into its disk, a qcow2 header naming a host file
// included. The backends describe volumes as their bytes say; these functions put the records
// over those descriptions and decide the record of a volume seen for the first time.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "drivers/driver.h"
#include "model/pool.h"

namespace vmm {

struct VolumeRecord {
  model::DiskFormat format = model::DiskFormat::raw;
  std::string backing;        // a volume of the same pool, read through; never for raw
  bool backingKnown = true;   // false: a row from before backings were recorded (decided once more)
  std::string refused;        // why vmm will not use the volume; kept until it is deleted
};

nlohmann::json formatVolumeRecord(const VolumeRecord& r);
std::optional<VolumeRecord> parseVolumeRecord(const nlohmann::json& j);

// The deepest chain of backing volumes vmm follows.
inline constexpr size_t kMaxBackingDepth = drivers::kMaxBackingLayers;

// Puts `records` over `volumes` (as their bytes describe them): format, backing and, for raw
// volumes, capacity come from the record; a qcow2 volume whose header no longer matches its
// record is shown refused. A volume without a record, or with a row from before backings were
// recorded, is recorded first by the adoption rule: raw never has a backing; a qcow2 image is
// taken only when vmm can open it as nothing but itself and, if it has one, a backing that is
// a volume of the pool recorded in the format the header names; anything else is recorded as
// refused. Returns the names whose records were added or changed (to persist).
std::vector<std::string> applyVolumeRecords(std::map<std::string, VolumeRecord>& records, std::vector<model::Volume>& volumes);

// The record of one volume put over its description, without adopting anything: the check that
// a volume's header still matches what vmm recorded, right before it is used.
void applyVolumeRecord(const std::map<std::string, VolumeRecord>& records, const VolumeRecord& record, model::Volume& volume);

}  // namespace vmm
