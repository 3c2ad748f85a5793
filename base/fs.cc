#include "base/fs.h"

#include <dirent.h>
#include <algorithm>

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "base/random.h"
#include "base/strings.h"

namespace vmm::fs {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<std::string> readFile(const std::string& path, size_t maxBytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return systemError("cannot open " + path, errno);
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return systemError("cannot read " + path, errno);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > maxBytes)
      return Error{ErrorCode::payload_too_large, path + " is larger than " + std::to_string(maxBytes) + " bytes"};
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

static Status writeAll(int fd, std::string_view data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return systemError("write", errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return {};
}

Status writeFileAtomic(const std::string& path, std::string_view content, mode_t mode) {
  std::string tmp = path + ".tmp." + randomHex(4);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return systemError("cannot create " + tmp, errno);
  // The umask (077 in vmmd) must not narrow a mode that others rely on (dnsmasq's hosts file).
  Status st = ::fchmod(fd.get(), mode) == 0 ? Status{} : systemError("chmod " + tmp, errno);
  if (st.ok()) st = writeAll(fd.get(), content);
  if (st.ok() && ::fsync(fd.get()) != 0) st = systemError("fsync " + tmp, errno);
  fd.reset();
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = systemError("rename to " + path, errno);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

static Status makeDirs(const std::string& path, mode_t mode, bool setLeafMode) {
  if (path.empty()) return invalidArgument("empty directory path");
  std::string cur;
  for (const auto& part : split(path, '/', true)) {
    cur += "/" + part;
    if (::mkdir(cur.c_str(), mode) == 0) {
      // mkdir applies the umask: what is created gets exactly the requested mode.
      if (::chmod(cur.c_str(), mode) != 0) return systemError("chmod " + cur, errno);
    } else if (errno != EEXIST) {
      return systemError("cannot create directory " + cur, errno);
    }
  }
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    if (!isDirectory(path)) return invalidArgument(path + " exists and is not a directory");
    return {};  // a symlink to a directory: its target's mode is not ours to set
  }
  if (setLeafMode && (st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) return systemError("chmod " + path, errno);
  return {};
}

Status makeDirs(const std::string& path) { return makeDirs(path, 0755, false); }

Status makeDirs(const std::string& path, mode_t mode) { return makeDirs(path, mode, true); }

Result<UniqueFd> createExclusive(const std::string& path, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return systemError("cannot create " + path, errno);
  if (::fchmod(fd.get(), mode) != 0) {
    int e = errno;
    ::unlink(path.c_str());
    return systemError("chmod " + path, e);
  }
  return fd;
}

Status checkPrivateDirectory(const std::string& dir) {
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) return systemError("cannot inspect " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return invalidArgument(dir + " is not a directory");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return permissionDenied("directory " + dir + " is owned by uid " + std::to_string(st.st_uid) + ", not root: another user could swap the file");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return permissionDenied("directory " + dir + " is writable by group or others: another user could swap the file");
  return {};
}

Result<UniqueFd> openPrivateFile(const std::string& path) {
  VMM_TRY(checkPrivateDirectory(dirName(path)));
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return systemError(errno == ELOOP ? path + " is a symbolic link" : "cannot open " + path, errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return systemError("cannot inspect " + path, errno);
  if (!S_ISREG(st.st_mode)) return invalidArgument(path + " is not a regular file");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return permissionDenied(path + " is owned by uid " + std::to_string(st.st_uid) + ", not root");
  return fd;
}

Status refuseSymlink(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) return permissionDenied(path + " is a symbolic link");
  return {};
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Result<std::string> realPath(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (!real) return systemError("cannot resolve " + path, errno);
  std::string out(real);
  ::free(real);
  return out;
}

bool isDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status removeFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return systemError("cannot remove " + path, errno);
  return {};
}

Status removeTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // symlinks are removed, never followed
  if (ec) return systemError("cannot remove " + path, ec.value());
  return {};
}

std::string dirName(const std::string& path) {
  auto pos = path.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string baseName(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

Result<std::string> confinedPath(const std::string& root, std::string_view name) {
  if (name.empty()) return invalidArgument("empty name");
  if (name.find('\0') != std::string_view::npos) return invalidArgument("name contains a NUL byte");
  for (const auto& part : split(name, '/')) {
    if (part.empty() || part == "." || part == "..")
      return invalidArgument("name " + quote(name) + " must not contain empty, '.' or '..' path components");
  }
  char rootReal[PATH_MAX];
  if (!::realpath(root.c_str(), rootReal)) return systemError("cannot resolve " + root, errno);
  std::string rootStr = rootReal;
  std::string full = rootStr + "/" + std::string(name);
  // Resolve the deepest existing ancestor (the file itself may not exist yet).
  std::string probe = full;
  std::string rest;
  char real[PATH_MAX];
  while (!::realpath(probe.c_str(), real)) {
    if (errno != ENOENT) return systemError("cannot resolve " + probe, errno);
    auto pos = probe.rfind('/');
    if (pos == std::string::npos || pos == 0) return invalidArgument("cannot resolve " + full);
    rest = probe.substr(pos) + rest;
    probe = probe.substr(0, pos);
  }
  std::string resolved = std::string(real) + rest;
  if (resolved != rootStr && !startsWith(resolved, rootStr + "/"))
    return permissionDenied("path " + quote(name) + " escapes " + rootStr);
  return full;
}

Result<std::vector<std::string>> listDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return systemError("cannot read directory " + path, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace vmm::fs
