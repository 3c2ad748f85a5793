// File-system helpers with errors as values.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>
#include <string_view>

#include "base/result.h"

namespace vmm::fs {

// Reads a whole file; refuses files larger than maxBytes.
Result<std::string> readFile(const std::string& path, size_t maxBytes = 64 << 20);
// Writes via a temporary file + fsync + rename, so readers see the old or the new content.
// The file gets exactly `mode`, whatever the umask.
Status writeFileAtomic(const std::string& path, std::string_view content, mode_t mode = 0644);
// Creates missing directories with exactly `mode` (umask or not); with a mode, also sets the
// last component's mode when it already exists. Without one, new directories are 0755 and
// existing ones are left alone.
Status makeDirs(const std::string& path);
Status makeDirs(const std::string& path, mode_t mode);
// A directory (not a symlink) owned by root or vmmd's user and writable by nobody else, so that
// no other user can replace a file in it between a check and an open.
Status checkPrivateDirectory(const std::string& dir);
// permission_denied if path is a symbolic link; ok if it does not exist.
Status refuseSymlink(const std::string& path);
bool exists(const std::string& path);
// The absolute path with every symlink, "." and ".." resolved (realpath(3)); the file must exist.
Result<std::string> realPath(const std::string& path);
bool isDirectory(const std::string& path);
Status removeFile(const std::string& path);  // ok if it did not exist
Status removeTree(const std::string& path);  // a directory and all below it; ok if it did not exist
// Joins `name` to `root` and checks that the result stays inside root after resolving
// symlinks of every existing component. Used to confine volume paths to their pool.
Result<std::string> confinedPath(const std::string& root, std::string_view name);
std::string dirName(const std::string& path);
// Entry names of a directory (without . and ..), sorted.
Result<std::vector<std::string>> listDir(const std::string& path);
std::string baseName(const std::string& path);

// RAII file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A new file, never an existing one or a symlink's target (O_EXCL|O_NOFOLLOW), with exactly `mode`.
Result<UniqueFd> createExclusive(const std::string& path, mode_t mode);
// Opens for reading a regular file owned by root (or vmmd's user), not through a symlink, in a
// directory that passes checkPrivateDirectory: a saved state that no other user could have planted.
Result<UniqueFd> openPrivateFile(const std::string& path);

}  // namespace vmm::fs
