// The checks a rootfs tarball passes before GNU tar unpacks it (as root) into a directory
// volume: a parser of tar headers (ustar, GNU long names, pax path/linkpath/size) that reads
// the decompressed stream and refuses, with the member's name, anything that would write
// outside the volume or that it cannot vouch for:
//   - absolute names, ".." components and control characters in names or link targets;
//   - a member whose path goes through, or replaces, a symbolic link of the archive (GNU tar
//     follows links that earlier members made); hard links with an absolute target, one with
//     "..", or one through a symbolic link;
//   - headers that disagree with their data (a link, directory or device that carries data,
//     a bad checksum, an archive cut in a member) and member types other than files,
//     directories, links, devices and fifos (sparse files, volume labels, ...);
//   - more members or more bytes of files than the limits (decompression bombs), refused at
//     the header that goes past them, before its data is read.
// Pure: bytes in, a Status out; the caller runs the decompressor (dir_volume.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "base/result.h"

namespace vmm::storage {

struct TarLimits {
  uint64_t maxBytes = uint64_t{64} << 30;  // [storage] unpack_max_bytes: regular files' bytes in all
  uint64_t maxFiles = 2'000'000;           // [storage] unpack_max_files: members
};

class TarScan {
 public:
  explicit TarScan(TarLimits limits) : limits_(limits) {}
  // The next bytes of the (decompressed) archive, in chunks of any size. After an error the
  // scan is over: every later call returns an error.
  Status feed(std::string_view bytes);
  // The stream ended: an error if it ended inside a header or a member's data.
  Status finish();
  // Whether the end-of-archive blocks were seen (later bytes are ignored, as tar does).
  bool ended() const { return state_ == State::ended; }
  uint64_t members() const { return members_; }

 private:
  enum class State { header, data, meta, zeroBlock, ended, failed };
  Status block(std::string_view b);
  Status header(std::string_view h);
  Status meta();
  Status member(char type, std::string name, std::string link, uint64_t size);
  Status fail(Error e);

  TarLimits limits_;
  State state_ = State::header;
  char pending_[512] = {};     // a block being filled
  size_t have_ = 0;            // bytes of it
  uint64_t remaining_ = 0;     // bytes of data (padded to blocks) still to skip or collect
  uint64_t metaSize_ = 0;      // the unpadded size of the GNU long name or pax header collected
  char metaType_ = 0;
  std::string metaData_;
  std::string nextName_, nextLink_;  // from GNU 'L'/'K' or pax headers, for the next member
  std::optional<uint64_t> nextSize_;
  std::string current_;        // the member whose data is being read (for "ends in the middle")
  uint64_t offset_ = 0;        // of the next block in the stream
  uint64_t members_ = 0;
  uint64_t bytes_ = 0;
  std::unordered_set<std::string> symlinks_;  // normalized names of the archive's symbolic links
  Error error_;
};

}  // namespace vmm::storage
