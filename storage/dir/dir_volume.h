// Directory volumes of a dir pool (format "dir"): a subdirectory of the pool holding a
// container's root filesystem. Helpers for their size, for unpacking a rootfs tarball into
// one, and for copying one.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/time_util.h"
#include "storage/dir/tar_scan.h"

namespace vmm::storage {

struct DirectoryUsage {
  uint64_t bytes = 0;      // apparent size of the files (each hard-linked inode once)
  uint64_t allocated = 0;  // blocks in use
};
// Walks the tree without following symlinks or crossing into other filesystems.
DirectoryUsage directoryUsage(const std::string& dir);

// The tarball compressions accepted, by their magic bytes: none, gzip, xz, bzip2, zstd.
// The GNU tar flag for the compression of the file starting with `head` ("" for a plain
// tar); an error names the accepted ones when the bytes are neither.
Result<std::string> tarCompressionFlag(std::string_view head);
// A member name that would land outside the directory it is unpacked into: absolute, or with
// a ".." component.
Status checkTarMemberName(std::string_view name);

// Unpacks `tarball` into the existing empty directory `dest`, keeping owners and modes. Every
// member is checked first (tar_scan.h; nothing is written when one is refused), then GNU tar
// unpacks it; device nodes, fifos and sockets are then removed, set-id bits cleared and `dest`
// made 0700. On failure `dest` may hold a partial tree: the caller removes it.
Status unpackTarball(const std::string& tarball, const std::string& dest, Deadline deadline, const TarLimits& limits = {});

// cp -a --reflink=auto: owners, modes, links, special files; shared blocks where the
// filesystem can (btrfs, xfs). `to` must not exist.
Status copyDirectory(const std::string& from, const std::string& to, Deadline deadline);

}  // namespace vmm::storage
