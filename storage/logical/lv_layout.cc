#include "storage/logical/lv_layout.h"

#include <algorithm>

namespace vmm::storage {

namespace {

struct Segment {
  uint64_t firstLe = 0;  // first logical extent of the LV in this segment
  uint64_t extents = 0;
  LvPiece piece;
};

}  // namespace

Result<LvLayout> queryLayout(const LvmCommand& lvm, const std::string& vg, const std::string& lv, Deadline deadline) {
  VMM_ASSIGN(auto rows, lvm.report("pvs", "pv_name,pe_start,pvseg_start,pvseg_size,vg_name,vg_extent_size,lv_name,seg_start_pe,segtype",
                                   {"--segments"}, deadline));
  std::vector<Segment> segs;
  for (const auto& row : rows) {
    if (lvmField(row, "vg_name") != vg || lvmField(row, "lv_name") != lv) continue;
    std::string type = lvmField(row, "segtype");
    if (type != "linear")
      return unavailable("volume " + lv + " is a " + type + " LV; reaching it needs device-mapper, and device-mapper not available on this host");
    VMM_ASSIGN(uint64_t peStart, lvmNumber(row, "pe_start"));
    VMM_ASSIGN(uint64_t extentSize, lvmNumber(row, "vg_extent_size"));
    VMM_ASSIGN(uint64_t pe, lvmNumber(row, "pvseg_start"));
    VMM_ASSIGN(uint64_t count, lvmNumber(row, "pvseg_size"));
    VMM_ASSIGN(uint64_t le, lvmNumber(row, "seg_start_pe"));
    Segment s;
    s.firstLe = le;
    s.extents = count;
    s.piece.device = lvmField(row, "pv_name");
    s.piece.deviceOffset = peStart + pe * extentSize;
    s.piece.lvOffset = le * extentSize;
    s.piece.length = count * extentSize;
    segs.push_back(std::move(s));
  }
  if (segs.empty()) return notFound("volume group " + vg + " has no logical volume " + lv + " on the pool's devices");
  std::sort(segs.begin(), segs.end(), [](const Segment& a, const Segment& b) { return a.firstLe < b.firstLe; });

  LvLayout layout;
  for (const auto& s : segs) {
    if (s.piece.lvOffset != layout.size)
      return unavailable("volume " + lv + " has extents outside the pool's devices; device-mapper not available to reach them");
    layout.size += s.piece.length;
    auto& last = layout.pieces;
    if (!last.empty() && last.back().device == s.piece.device && last.back().deviceOffset + last.back().length == s.piece.deviceOffset) {
      last.back().length += s.piece.length;
    } else {
      last.push_back(s.piece);
    }
  }
  return layout;
}

}  // namespace vmm::storage
