// What the first bytes of a disk image say about it: qcow2 or not, its virtual size and where
// its backing file name is stored. Shared by the backends that read image files themselves.
#pragma once

#include <cstdint>
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
};

// The largest backing file name QEMU writes or reads (qcow2 spec: less than 1024 bytes).
constexpr uint32_t kMaxBackingNameBytes = 1023;

// `head` is the start of the file; a qcow2 answer needs at least its first 32 bytes, the
// external data file bit the first 80 (a shorter v3 header is reported as using one, since
// the bit cannot be ruled out).
ImageHeader parseImageHeader(std::string_view head);

}  // namespace vmm::storage
