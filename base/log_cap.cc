#include "base/log_cap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/fs.h"
#include "base/time_util.h"

namespace vmm {

namespace {

Result<std::string> readAt(int fd, uint64_t offset, size_t len) {
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return systemError("reading", errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

}  // namespace

Result<bool> capLogFile(const std::string& path, uint64_t limit, uint64_t head) {
  fs::UniqueFd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return false;
    return systemError("cannot open " + path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return systemError("cannot stat " + path, errno);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size <= limit) return false;
  if (head > limit / 4) head = limit / 4;
  uint64_t tailLen = limit / 2;
  VMM_ASSIGN(std::string first, readAt(fd.get(), 0, static_cast<size_t>(head)));
  if (auto nl = first.rfind('\n'); nl != std::string::npos) first.resize(nl + 1);
  VMM_ASSIGN(std::string last, readAt(fd.get(), size - tailLen, static_cast<size_t>(tailLen)));
  if (auto nl = last.find('\n'); nl != std::string::npos && nl + 1 < last.size()) last.erase(0, nl + 1);
  uint64_t cut = size - first.size() - last.size();
  std::string marker = "[vmm: " + std::to_string(cut) + " bytes cut at " + formatTimestamp(wallNowMicros()) +
                       ": this log is kept under " + std::to_string(limit) + " bytes]\n";
  // Lines the writer appends between the read above and the truncation are lost: it is a log.
  if (::ftruncate(fd.get(), static_cast<off_t>(first.size())) != 0) return systemError("cannot truncate " + path, errno);
  std::string rest = marker + last;
  size_t off = 0;
  while (off < rest.size()) {
    ssize_t n = ::write(fd.get(), rest.data() + off, rest.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return systemError("cannot write " + path, errno);
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace vmm
