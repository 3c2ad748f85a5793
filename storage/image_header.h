// What the first bytes of a disk image say about it: qcow2 or not, its virtual size, where its
// backing file name is stored, and (qcow2) the header fields and extensions that decide
// whether QEMU would open anything besides the file itself. Shared by the backends that read
// image files themselves and by the inspection of untrusted images (image_inspect.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vmm::storage {

struct ImageHeader {
  bool qcow2 = false;          // false: treat the file as raw
  uint64_t virtualSize = 0;    // qcow2 only
  uint64_t backingOffset = 0;  // qcow2 only; 0: no backing file
  uint32_t backingSize = 0;    // bytes of the backing file name at backingOffset
  uint32_t version = 0;        // qcow2 only: 2 or 3
  // qcow2 v3 only: incompatible feature bit 2, the guest's data lives in an external file
  // named by a header extension (QEMU opens it unless told otherwise).
  bool externalDataFile = false;

  // The rest is read only from a complete header (`headerComplete`).
  bool headerComplete = false;        // the whole fixed header (72 bytes for v2, header_length for v3) is in `head`
  uint32_t clusterBits = 0;
  uint32_t cryptMethod = 0;           // 0: none, 1: AES, 2: LUKS
  uint64_t incompatibleFeatures = 0;  // v3: bit 0 dirty, 1 corrupt, 2 external data file, 3 compression type, 4 extended L2
  uint32_t headerLength = 0;          // v3: from the header; v2: 72
  // Header extensions (between the fixed header and the end of the first cluster).
  bool extensionsComplete = false;    // the list reached its end marker inside `head` and was well formed
  std::optional<std::string> backingFormat;  // 0xe2792aca
  std::optional<std::string> dataFileName;   // 0x44415441
  bool encryptionExtension = false;          // 0x0537be77
};

// The largest backing file name QEMU writes or reads (qcow2 spec: less than 1024 bytes).
constexpr uint32_t kMaxBackingNameBytes = 1023;

// Header extension types of the qcow2 specification.
constexpr uint32_t kQcow2ExtEnd = 0;
constexpr uint32_t kQcow2ExtBackingFormat = 0xe2792aca;
constexpr uint32_t kQcow2ExtDataFile = 0x44415441;
constexpr uint32_t kQcow2ExtEncryption = 0x0537be77;

// `head` is the start of the file; a qcow2 answer needs at least its first 32 bytes, the
// external data file bit the first 80 (a shorter v3 header is reported as using one, since
// the bit cannot be ruled out). The extensions need the whole first cluster, or at least up
// to their end marker.
ImageHeader parseImageHeader(std::string_view head);

}  // namespace vmm::storage
