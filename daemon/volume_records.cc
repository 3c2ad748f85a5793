#include "daemon/volume_records.h"

#include <set>

#include "base/strings.h"

namespace vmm {

using json = nlohmann::json;

json formatVolumeRecord(const VolumeRecord& r) {
  json j = {{"format", model::enumName(model::kDiskFormats, r.format)}, {"backing", r.backing}};
  if (!r.refused.empty()) j["refused"] = r.refused;
  return j;
}

std::optional<VolumeRecord> parseVolumeRecord(const json& j) {
  if (!j.is_object()) return std::nullopt;
  auto format = j.find("format");
  if (format == j.end() || !format->is_string()) return std::nullopt;
  auto f = model::enumFromName(model::kDiskFormats, format->get<std::string>());
  if (!f) return std::nullopt;
  VolumeRecord r;
  r.format = *f;
  auto backing = j.find("backing");
  r.backingKnown = backing != j.end();  // rows written before backings were recorded have none
  if (r.backingKnown && backing->is_string()) r.backing = backing->get<std::string>();
  if (auto refused = j.find("refused"); refused != j.end() && refused->is_string()) r.refused = refused->get<std::string>();
  if (r.format == model::DiskFormat::raw) r.backing.clear();
  return r;
}

namespace {

std::string formatName(std::optional<model::DiskFormat> f) {
  return f ? std::string(model::enumName(model::kDiskFormats, *f)) : std::string("no format");
}

// Why a qcow2 volume's header (described in `v`, with `headerBacking` as it names it) no longer
// matches its record; empty: it does.
std::string headerMismatch(const std::map<std::string, VolumeRecord>& records, const VolumeRecord& r, const model::Volume& v,
                           bool headerQcow2, const std::string& headerBacking) {
  if (r.format != model::DiskFormat::qcow2 || v.directory) return "";
  const std::string changed = "it was changed outside vmm: ";
  if (!headerQcow2) return changed + "it is no longer a qcow2 image";
  if (!v.probe.problem.empty()) return changed + v.probe.problem;
  if (headerBacking != r.backing)
    return changed + "its header names " + (headerBacking.empty() ? "no backing volume" : "backing volume " + quote(headerBacking)) +
           ", but vmm recorded " + (r.backing.empty() ? "none" : quote(r.backing));
  if (r.backing.empty()) return "";
  auto base = records.find(r.backing);
  if (base == records.end()) return "its backing volume " + quote(r.backing) + " is gone";
  if (v.probe.backingFormat != base->second.format)
    return changed + "its header names " + formatName(v.probe.backingFormat) + " for backing volume " + quote(r.backing) +
           ", which is " + formatName(base->second.format);
  return "";
}

}  // namespace

void applyVolumeRecord(const std::map<std::string, VolumeRecord>& records, const VolumeRecord& r, model::Volume& v) {
  bool headerQcow2 = v.format == model::DiskFormat::qcow2 && !v.directory;
  std::string headerBacking = v.backingVolume;
  v.format = r.format;
  v.backingVolume = r.backing;
  // A raw volume's size is its file's, whatever a header in its first bytes claims.
  if (r.format == model::DiskFormat::raw && headerQcow2) v.capacity = v.probe.fileSize;
  v.refused = r.refused.empty() ? headerMismatch(records, r, v, headerQcow2, headerBacking) : r.refused;
}

std::vector<std::string> applyVolumeRecords(std::map<std::string, VolumeRecord>& records, std::vector<model::Volume>& volumes) {
  std::vector<std::string> changed;
  // First look: the format and what the header alone decides; backings wait for their base.
  std::map<std::string, std::string> waiting;  // volume -> the backing its header names
  for (const auto& v : volumes) {
    auto it = records.find(v.name);
    if (it != records.end() && it->second.backingKnown) continue;
    VolumeRecord r;
    r.format = it != records.end() ? it->second.format : v.format;
    r.refused = it != records.end() ? it->second.refused : "";
    bool headerQcow2 = v.format == model::DiskFormat::qcow2 && !v.directory;
    if (r.format == model::DiskFormat::qcow2 && r.refused.empty()) {
      if (!headerQcow2) r.refused = "it is not a qcow2 image, but was recorded as one";
      else if (!v.probe.problem.empty()) r.refused = v.probe.problem;
      else if (!v.backingVolume.empty()) waiting[v.name] = v.backingVolume;
    }
    records[v.name] = r;  // backingKnown: the backing is settled below, or there is none
    changed.push_back(v.name);
  }
  // A backing is taken once its base is settled, and only in the format the base was recorded
  // with; what is left waiting at the end reads through a loop or a volume that does not exist.
  std::map<std::string, const model::Volume*> byName;
  for (const auto& v : volumes) byName[v.name] = &v;
  for (bool progress = true; progress && !waiting.empty();) {
    progress = false;
    for (auto it = waiting.begin(); it != waiting.end();) {
      const std::string& base = it->second;
      if (waiting.count(base)) {
        ++it;
        continue;
      }
      VolumeRecord& r = records[it->first];
      auto b = records.find(base);
      const model::Volume& v = *byName[it->first];
      if (b == records.end()) r.refused = "its backing volume " + quote(base) + " is not a volume of this pool";
      else if (!b->second.refused.empty()) r.refused = "its backing volume " + quote(base) + " is refused";
      else if (b->second.format == model::DiskFormat::qcow2 && b->second.backing == it->first) r.refused = "its backing chain loops";
      else if (v.probe.backingFormat != b->second.format)
        r.refused = "its header names " + formatName(v.probe.backingFormat) + " for backing volume " + quote(base) + ", which is " +
                    formatName(b->second.format) + " (an image made outside vmm must name its backing's format)";
      else r.backing = base;
      it = waiting.erase(it);
      progress = true;
    }
  }
  for (const auto& [name, base] : waiting) records[name].refused = "its backing chain loops (through " + quote(base) + ")";
  // Chains deeper than vmm follows: refused at their deep end.
  for (auto& [name, r] : records) {
    size_t depth = 0;
    std::set<std::string> seen{name};
    for (const VolumeRecord* cur = &r; !cur->backing.empty() && r.refused.empty();) {
      auto b = records.find(cur->backing);
      if (b == records.end()) break;
      if (++depth > kMaxBackingDepth || !seen.insert(cur->backing).second) {
        r.refused = "its backing chain is deeper than " + std::to_string(kMaxBackingDepth) + " volumes or loops";
        r.backing.clear();
        changed.push_back(name);
      }
      cur = &b->second;
    }
  }
  for (auto& v : volumes) applyVolumeRecord(records, records[v.name], v);
  return changed;
}

}  // namespace vmm
