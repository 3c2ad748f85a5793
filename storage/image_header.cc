#include "storage/image_header.h"

#include <algorithm>

namespace vmm::storage {

namespace {

uint64_t bigEndian(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Walks the extension list from `start`; it must end (type 0) inside both `head` and the
// first cluster, every extension's data padded to 8 bytes. Leaves extensionsComplete false
// otherwise: the caller cannot tell what QEMU would find further on.
void readExtensions(std::string_view head, uint64_t start, ImageHeader& out) {
  auto* h = reinterpret_cast<const unsigned char*>(head.data());
  uint64_t cluster = uint64_t{1} << out.clusterBits;
  uint64_t end = std::min<uint64_t>(head.size(), cluster);
  uint64_t at = start;
  while (at + 8 <= end) {
    uint32_t type = static_cast<uint32_t>(bigEndian(h + at, 4));
    uint64_t length = bigEndian(h + at + 4, 4);
    at += 8;
    if (type == kQcow2ExtEnd) {
      out.extensionsComplete = true;
      return;
    }
    uint64_t padded = (length + 7) & ~uint64_t{7};
    if (padded > end - at) return;
    std::string data(head.substr(at, length));
    if (type == kQcow2ExtBackingFormat) out.backingFormat = std::move(data);
    else if (type == kQcow2ExtDataFile) out.dataFileName = std::move(data);
    else if (type == kQcow2ExtEncryption) out.encryptionExtension = true;
    at += padded;
  }
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
  if (out.version != 2 && out.version != 3) return out;
  // The fixed header: 72 bytes in v2, header_length (at least 104) in v3.
  if (head.size() < (out.version == 2 ? 72u : 104u)) return out;
  out.clusterBits = static_cast<uint32_t>(bigEndian(h + 20, 4));
  out.cryptMethod = static_cast<uint32_t>(bigEndian(h + 32, 4));
  out.headerLength = out.version == 2 ? 72 : static_cast<uint32_t>(bigEndian(h + 100, 4));
  if (out.version == 3) out.incompatibleFeatures = bigEndian(h + 72, 8);
  // QEMU's own limits: clusters of 512 B to 2 MiB, the header inside the first cluster.
  if (out.clusterBits < 9 || out.clusterBits > 21) return out;
  if (out.headerLength < (out.version == 2 ? 72u : 104u) || out.headerLength % 8 != 0 ||
      out.headerLength > (uint64_t{1} << out.clusterBits) || out.headerLength > head.size())
    return out;
  out.headerComplete = true;
  readExtensions(head, out.headerLength, out);
  return out;
}

}  // namespace vmm::storage
