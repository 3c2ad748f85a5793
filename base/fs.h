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
Status writeFileAtomic(const std::string& path, std::string_view content, mode_t mode = 0644);
Status makeDirs(const std::string& path, mode_t mode = 0755);
bool exists(const std::string& path);
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

}  // namespace vmm::fs
