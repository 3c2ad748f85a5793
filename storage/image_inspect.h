// The verdict on an image file vmm did not make (an import, a download, an upload): what it is
// and whether it may become a volume. Only files that QEMU opens as nothing but themselves
// pass: raw bytes, an ISO 9660 image, or a self-contained qcow2 - no backing file of any kind,
// no external data file, no encryption, no corrupt or unknown incompatible feature, a header
// that parses whole. Other formats (vmdk, vhdx, vdi, qed, vpc, LUKS, qcow1, ...) are refused by
// name instead of being taken for raw bytes. The header alone decides; nothing runs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "storage/image_header.h"

namespace vmm::storage {

enum class ImageKind { raw, iso, qcow2 };

struct ImageVerdict {
  ImageKind kind = ImageKind::raw;
  uint64_t virtualSize = 0;  // qcow2: from its header; raw and ISO: the file size
  std::string refused;       // empty: acceptable; otherwise why not, for the error message
  bool ok() const { return refused.empty(); }
};

// Why vmm cannot open this qcow2 layer as nothing but itself and the backing it recorded: an
// unknown version, a header that does not parse whole, an external data file, encryption, the
// corrupt bit or an unknown incompatible feature. Empty: none. A backing file and the virtual
// size are for the caller to judge.
std::string qcow2LayerProblem(const ImageHeader& h);

// Bytes an inspection reads from the start of the file: a qcow2 header and its extensions
// lie in the first cluster (at most 2 MiB, 64 KiB by default), the ISO 9660 mark at 32769.
constexpr size_t kInspectHeadBytes = 2 << 20;

// `head`: the first min(fileSize, kInspectHeadBytes) bytes. `maxVirtualSize`: the largest
// disk an image may claim (its virtual size is refused above it).
ImageVerdict inspectImage(std::string_view head, uint64_t fileSize, uint64_t maxVirtualSize);

// What the first bytes of an image file say: qcow2 or not, its virtual size, its backing file
// name and whether vmm could open it as nothing but itself and that backing. Opened without
// following a final symlink.
struct ImageFileHeader {
  ImageHeader image;
  std::string backing;  // the backing file name as written (shown as UTF-8)
  std::string problem;  // qcow2LayerProblem
};
Result<ImageFileHeader> readImageFileHeader(const std::string& path);

}  // namespace vmm::storage
