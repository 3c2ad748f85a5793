#include "drivers/snapshot_types.h"

namespace vmm::drivers {

model::json toJson(const SnapshotRequest& r) {
  return {{"name", r.name},
          {"kind", model::enumName(model::kSnapshotKinds, r.kind)},
          {"memory", r.memory},
          {"quiesce", r.quiesce},
          {"state_dir", r.stateDir}};
}

std::vector<model::SnapshotDisk> snapshotDisksOf(const model::json& data) {
  std::vector<model::SnapshotDisk> out;
  auto it = data.find("disks");
  if (it == data.end() || !it->is_array()) return out;
  for (const auto& d : *it)
    if (d.is_object()) out.push_back({d.value("target", ""), d.value("file", ""), d.value("backing", "")});
  return out;
}

DiskMoves diskMovesOf(const model::json& data) {
  DiskMoves out;
  auto sources = data.find("disk_sources");
  if (sources == data.end() || !sources->is_object()) return out;
  auto formats = data.find("disk_formats");
  for (const auto& [target, file] : sources->items()) {
    if (!file.is_string()) continue;
    out.sources[target] = file.get<std::string>();
    if (formats == data.end() || !formats->is_object()) continue;
    auto f = formats->find(target);
    if (f == formats->end() || !f->is_string()) continue;
    if (auto fmt = model::enumFromName(model::kDiskFormats, f->get<std::string>())) out.formats[target] = *fmt;
  }
  return out;
}

}  // namespace vmm::drivers
