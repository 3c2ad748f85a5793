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
};

// `head` is the start of the file; a qcow2 answer needs at least its first 32 bytes.
ImageHeader parseImageHeader(std::string_view head);

}  // namespace vmm::storage
