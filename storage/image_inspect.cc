#include "storage/image_inspect.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "base/fs.h"
#include "base/json_util.h"
#include "base/strings.h"
#include "storage/image_header.h"

namespace vmm::storage {

namespace {

bool hasMagicAt(std::string_view head, size_t offset, std::string_view magic) {
  return head.size() >= offset + magic.size() && head.substr(offset, magic.size()) == magic;
}

// Formats QEMU would recognise by these bytes (its probe functions), which vmm takes only as
// raw or qcow2: named so that the refusal says what the file is.
const char* foreignFormat(std::string_view head) {
  using namespace std::string_view_literals;
  if (hasMagicAt(head, 0, "QFI\xfb"sv)) return "qcow (version 1)";
  if (hasMagicAt(head, 0, "KDMV"sv) || hasMagicAt(head, 0, "COWD"sv)) return "vmdk";
  if (hasMagicAt(head, 0, "# Disk DescriptorFile"sv)) return "vmdk (descriptor)";
  if (hasMagicAt(head, 0, "vhdxfile"sv)) return "vhdx";
  if (hasMagicAt(head, 0x40, "\x7f\x10\xda\xbe"sv)) return "vdi";
  if (hasMagicAt(head, 0, "QED\0"sv)) return "qed";
  if (hasMagicAt(head, 0, "conectix"sv)) return "vpc (vhd)";
  if (hasMagicAt(head, 0, "LUKS\xba\xbe"sv)) return "LUKS";
  if (hasMagicAt(head, 0, "WithoutFreeSpace"sv) || hasMagicAt(head, 0, "WithouFreSpacExt"sv)) return "parallels";
  if (hasMagicAt(head, 0, "Bochs Virtual HD Image"sv)) return "bochs";
  if (hasMagicAt(head, 0, "#!/bin/sh\n#V2.0 Format\n"sv)) return "cloop";
  return nullptr;
}

std::string hexNumber(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Incompatible features the qcow2 specification defines: dirty (0), corrupt (1), external
// data file (2), compression type (3), extended L2 entries (4). Corrupt and external data
// file are refused on their own; the others QEMU opens without anything outside the file.
constexpr uint64_t kKnownIncompatible = 0x1f;

}  // namespace

std::string qcow2LayerProblem(const ImageHeader& h) {
  if (!h.qcow2) return "it is not a qcow2 image";
  if (h.version != 2 && h.version != 3) return "qcow2 version " + std::to_string(h.version) + " (only 2 and 3 are read)";
  if (!h.headerComplete) return "its qcow2 header is incomplete or malformed";
  if (h.externalDataFile || h.dataFileName) return "it names an external data file";
  if (h.cryptMethod != 0 || h.encryptionExtension) return "it is encrypted";
  if (h.incompatibleFeatures & 2) return "it is marked corrupt";
  if (uint64_t unknown = h.incompatibleFeatures & ~kKnownIncompatible)
    return "it uses unknown incompatible qcow2 features (" + hexNumber(unknown) + ")";
  if (!h.extensionsComplete) return "its qcow2 header extensions do not end inside its first cluster";
  return "";
}

namespace {

std::string qcow2Refusal(const ImageHeader& h, uint64_t maxVirtualSize) {
  // The backing file is named first: it is the most common reason and says the most.
  bool readable = (h.version == 2 || h.version == 3) && h.headerComplete;
  if (readable && (h.backingOffset != 0 || h.backingSize != 0 || h.backingFormat))
    return "it has a backing file (an image must be self-contained)";
  if (auto problem = qcow2LayerProblem(h); !problem.empty()) return problem;
  if (h.virtualSize == 0) return "its virtual size is 0";
  if (h.virtualSize > maxVirtualSize) return "its virtual size " + std::to_string(h.virtualSize) + " is over the limit of " + std::to_string(maxVirtualSize) + " bytes";
  return "";
}

}  // namespace

ImageVerdict inspectImage(std::string_view head, uint64_t fileSize, uint64_t maxVirtualSize) {
  ImageVerdict v;
  ImageHeader h = parseImageHeader(head);
  if (h.qcow2 && h.version != 1) {
    v.kind = ImageKind::qcow2;
    v.virtualSize = h.virtualSize;
    v.refused = qcow2Refusal(h, maxVirtualSize);
    return v;
  }
  v.virtualSize = fileSize;
  if (const char* other = foreignFormat(head)) {
    v.refused = std::string("it is a ") + other + " image (only raw, qcow2 and ISO images are taken)";
    return v;
  }
  if (hasMagicAt(head, 32769, "CD001")) v.kind = ImageKind::iso;
  if (fileSize > maxVirtualSize) v.refused = "its size " + std::to_string(fileSize) + " is over the limit of " + std::to_string(maxVirtualSize) + " bytes";
  return v;
}

Result<ImageFileHeader> readImageFileHeader(const std::string& path) {
  fs::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return systemError("cannot open " + path, errno);
  // The extensions lie in the first cluster: 64 KiB unless the image chose bigger ones.
  std::string head(64 << 10, '\0');
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  head.resize(n > 0 ? static_cast<size_t>(n) : 0);
  ImageFileHeader out;
  out.image = parseImageHeader(head);
  if (out.image.qcow2 && !out.image.extensionsComplete && out.image.clusterBits > 16 && head.size() == (64u << 10)) {
    head.assign(std::min<size_t>(size_t{1} << std::min(out.image.clusterBits, 21u), kInspectHeadBytes), '\0');
    n = ::pread(fd.get(), head.data(), head.size(), 0);
    head.resize(n > 0 ? static_cast<size_t>(n) : 0);
    out.image = parseImageHeader(head);
  }
  const ImageHeader& image = out.image;
  if (!image.qcow2) return out;
  out.problem = qcow2LayerProblem(image);
  // The header's numbers are the file's word: an offset past any file size (or one that
  // would wrap with the size) names no backing file.
  constexpr uint64_t kMaxOffset = uint64_t{1} << 62;
  if (image.backingOffset && image.backingSize && image.backingSize <= kMaxBackingNameBytes && image.backingOffset < kMaxOffset) {
    std::string name(image.backingSize, '\0');
    if (::pread(fd.get(), name.data(), image.backingSize, static_cast<off_t>(image.backingOffset)) ==
        static_cast<ssize_t>(image.backingSize))
      // Shown in JSON and compared with paths: bytes that are not UTF-8 (or a NUL, which
      // would cut the name short for QEMU) are shown replaced and match no volume.
      out.backing = name.find('\0') == std::string::npos ? toValidUtf8(name) : toValidUtf8(quote(name));
    else if (out.problem.empty())
      out.problem = "its backing file name lies outside the file";
  }
  return out;
}

}  // namespace vmm::storage
