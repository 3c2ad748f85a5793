#include "storage/image_header.h"

namespace vmm::storage {

namespace {

uint64_t bigEndian(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

ImageHeader parseImageHeader(std::string_view head) {
  ImageHeader out;
  if (head.size() < 32 || head.substr(0, 4) != std::string_view("QFI\xfb", 4)) return out;
  auto* h = reinterpret_cast<const unsigned char*>(head.data());
  out.qcow2 = true;
  out.backingOffset = bigEndian(h + 8, 8);
  out.backingSize = static_cast<uint32_t>(bigEndian(h + 16, 4));
  out.virtualSize = bigEndian(h + 24, 8);
  out.version = static_cast<uint32_t>(bigEndian(h + 4, 4));
  if (out.version >= 3) out.externalDataFile = head.size() < 80 || (bigEndian(h + 72, 8) & 4) != 0;
  return out;
}

}  // namespace vmm::storage
