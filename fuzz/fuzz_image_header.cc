// The qcow2 header reader: storage::parseImageHeader on the bytes, then DirBackend's volume
// description of the same bytes as a file in a pool directory. Nothing is read out of range; a
// backing name is reported only when it lies inside the file and is shown as UTF-8 without
// NUL; a file without the qcow2 magic is raw with no backing file; the external data file bit
// (v3 incompatible feature bit 2) is reported as a problem, and the pool service's adoption rule
// refuses any header with a problem or a backing outside the pool.
// Then the verdict on the bytes as an untrusted image (storage::inspectImage): a qcow2 passes
// only when its own bytes show no backing file, data file, encryption or refused feature bit.
#include <fcntl.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/json_util.h"
#include "daemon/volume_records.h"
#include "fuzz/fuzz_util.h"
#include "model/pool.h"
#include "storage/dir/dir_backend.h"
#include "storage/image_header.h"
#include "storage/image_inspect.h"

using namespace vmm;

namespace {

uint64_t be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

struct PoolDir {
  std::string path;
  PoolDir() {
    path = fuzz::tempDir("image");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;
  static PoolDir dir;
  // Exactly `size` bytes: a copy in its own allocation, so ASan sees any read past the end.
  std::vector<char> copy(data, data + size);
  auto h = storage::parseImageHeader(std::string_view(copy.data(), copy.size()));
  bool magic = size >= 32 && be(data, 4) == 0x514649fb;
  FUZZ_CHECK(h.qcow2 == magic, "qcow2 magic");
  if (magic) {
    uint32_t version = static_cast<uint32_t>(be(data + 4, 4));
    FUZZ_CHECK(h.version == version && h.backingOffset == be(data + 8, 8) && h.backingSize == be(data + 16, 4) &&
                   h.virtualSize == be(data + 24, 8),
               "header fields");
    bool dataFileBit = version >= 3 && (size < 80 || (be(data + 72, 8) & 4) != 0);
    FUZZ_CHECK(h.externalDataFile == dataFileBit, "external data file bit");
  } else {
    FUZZ_CHECK(!h.externalDataFile && h.backingOffset == 0 && h.backingSize == 0, "raw header fields");
  }

  // The verdict on an untrusted image: a qcow2 that passes is self-contained by the header's
  // own bytes (reference reads here, independent of the parser); nothing with the magic
  // passes as raw.
  auto verdict = storage::inspectImage(std::string_view(copy.data(), copy.size()), size, uint64_t{1} << 40);
  if (verdict.ok() && verdict.kind == storage::ImageKind::qcow2) {
    uint32_t version = static_cast<uint32_t>(be(data + 4, 4));
    FUZZ_CHECK(magic && (version == 2 || version == 3) && size >= (version == 2 ? 72u : 104u), "accepted qcow2 header");
    FUZZ_CHECK(be(data + 8, 8) == 0 && be(data + 16, 4) == 0 && !h.backingFormat, "accepted qcow2 with a backing file");
    FUZZ_CHECK(be(data + 32, 4) == 0 && !h.encryptionExtension, "accepted encrypted qcow2");
    FUZZ_CHECK(version == 2 || (be(data + 72, 8) & ~uint64_t{0x19}) == 0, "accepted qcow2 with refused incompatible bits");
    FUZZ_CHECK(!h.dataFileName && h.extensionsComplete, "accepted qcow2 with a data file name or unended extensions");
    FUZZ_CHECK(verdict.virtualSize == be(data + 24, 8) && verdict.virtualSize > 0 && verdict.virtualSize <= uint64_t{1} << 40,
               "accepted qcow2 size");
  }
  if (verdict.ok() && verdict.kind != storage::ImageKind::qcow2) FUZZ_CHECK(!magic, "qcow2 magic accepted as raw");
  FUZZ_CHECK(verdict.ok() || !verdict.refused.empty(), "a refusal without a reason");

  std::string file = dir.path + "/vol";
  {
    fs::UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    FUZZ_CHECK(fd.valid() && ::write(fd.get(), copy.data(), copy.size()) == static_cast<ssize_t>(copy.size()), "cannot write " + file);
  }
  model::Pool pool;
  pool.name = "fuzz";
  pool.path = dir.path;
  storage::DirBackend backend(pool);
  auto v = backend.volumeInfo("vol", Deadline::after(Millis(5000)));
  FUZZ_CHECK(v.ok(), "volumeInfo failed: " + (v.ok() ? std::string() : v.error().message));
  FUZZ_CHECK(isValidUtf8(v->backingVolume) && v->backingVolume.find('\0') == std::string::npos,
             "backing name not shown as UTF-8: " + fuzz::show(v->backingVolume));
  // Volumes are listed as JSON: this must not throw.
  (void)dumpJson(model::formatVolume(*v));
  if (!magic) {
    FUZZ_CHECK(v->format == model::DiskFormat::raw && v->backingVolume.empty() && v->capacity == size, "raw volume");
  } else {
    FUZZ_CHECK(v->format == model::DiskFormat::qcow2 && v->capacity == h.virtualSize, "qcow2 volume");
    if (!v->backingVolume.empty()) {
      FUZZ_CHECK(h.backingOffset < size && h.backingSize <= size - h.backingOffset &&
                     h.backingSize <= storage::kMaxBackingNameBytes,
                 "backing name outside the file reported: offset " + std::to_string(h.backingOffset) + " size " +
                     std::to_string(h.backingSize));
    }
  }
  if (magic && h.externalDataFile) FUZZ_CHECK(!v->probe.problem.empty(), "an external data file must be described as a problem");
  // The pool service's adoption rule on a pool holding only this file: whatever its header
  // names, it gets no backing (there is no other volume to read through, and itself would be a
  // loop), and a header with a problem is refused.
  std::map<std::string, VolumeRecord> records;
  std::vector<model::Volume> seen{*v};
  (void)applyVolumeRecords(records, seen);
  FUZZ_CHECK(seen[0].backingVolume.empty() && records["vol"].backing.empty(), "adopted a backing outside the pool: " + fuzz::show(v->backingVolume));
  FUZZ_CHECK(v->probe.problem.empty() || !seen[0].refused.empty(), "adopted a header with a problem: " + v->probe.problem);
  FUZZ_CHECK(v->backingVolume.empty() || !seen[0].refused.empty(), "a header naming a backing that is not in the pool was not refused");
  if (!magic) FUZZ_CHECK(v->probe.problem.empty() && v->probe.fileSize == size, "raw volume described with a problem");
  return 0;
}
