#include "storage/dir/dir_volume.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "base/strings.h"

namespace vmm::storage {

DirectoryUsage directoryUsage(const std::string& dir) {
  namespace sfs = std::filesystem;
  DirectoryUsage u;
  struct stat top{};
  if (::lstat(dir.c_str(), &top) != 0) return u;
  std::set<std::pair<dev_t, ino_t>> linked;
  std::error_code ec;
  // skip_permission_denied: a tree made by a user namespace's root may have closed directories.
  sfs::recursive_directory_iterator it(dir, sfs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    struct stat st{};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode) && st.st_dev != top.st_dev) {
      it.disable_recursion_pending();  // a mount point inside the volume: not its bytes
      continue;
    }
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !linked.insert({st.st_dev, st.st_ino}).second) continue;
    if (S_ISREG(st.st_mode)) u.bytes += static_cast<uint64_t>(st.st_size);
    u.allocated += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return u;
}

Result<std::string> tarCompressionFlag(std::string_view h) {
  auto starts = [&](std::string_view magic) { return h.substr(0, magic.size()) == magic; };
  if (starts("\x1f\x8b")) return std::string("--gzip");
  if (starts(std::string_view("\xfd" "7zXZ\0", 6))) return std::string("--xz");
  if (starts("BZh")) return std::string("--bzip2");
  if (starts("\x28\xb5\x2f\xfd")) return std::string("--zstd");
  if (h.size() >= 262 && h.substr(257, 5) == "ustar") return std::string();
  return invalidArgument("from_tar: not a tar archive (accepted: uncompressed, gzip, xz, bzip2 or zstd)");
}

Status checkTarMemberName(std::string_view name) {
  if (name.empty()) return {};
  if (name[0] == '/') return invalidArgument("from_tar: member " + quote(std::string(name)) + " has an absolute path");
  for (const auto& part : split(name, '/'))
    if (part == "..") return invalidArgument("from_tar: member " + quote(std::string(name)) + " would be written outside the volume");
  return {};
}

namespace {

// The decompressor of each tar flag, for the scan (tar runs its own for the unpacking).
std::string decompressor(const std::string& flag) {
  if (flag == "--gzip") return "gzip";
  if (flag == "--xz") return "xz";
  if (flag == "--bzip2") return "bzip2";
  return "zstd";
}

// Runs the archive `fd` (read from its start), decompressed, through `scan`. Stops reading at
// the first refusal or at the end-of-archive blocks, so a bomb costs what its caps allow.
Status scanTarball(int fd, const std::string& compression, TarScan& scan, Deadline deadline) {
  if (::lseek(fd, 0, SEEK_SET) != 0) return systemError("from_tar: seek", errno);
  fs::UniqueFd input;
  pid_t pid = -1;
  fs::UniqueFd errors;
  if (compression.empty()) {
    input = fs::UniqueFd(::dup(fd));
  } else {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return systemError("from_tar: pipe", errno);
    input = fs::UniqueFd(p[0]);
    fs::UniqueFd writeEnd(p[1]);
    errors = fs::UniqueFd(::memfd_create("vmm-tar-scan", MFD_CLOEXEC));
    if (!errors.valid()) return systemError("from_tar: memfd_create", errno);
    SpawnOptions so;
    so.stdinFd = fd;
    so.stdoutFd = writeEnd.get();
    so.stderrFd = errors.get();
    VMM_ASSIGN(pid, spawnProcess({decompressor(compression), "-dc"}, so));
  }
  std::vector<char> buf(1 << 16);
  Status st;
  bool eof = false, timedOut = false;
  while (st.ok() && !scan.ended()) {
    pollfd p{input.get(), POLLIN, 0};
    if (pollFor(&p, 1, deadline) == 0) {
      timedOut = true;
      break;
    }
    ssize_t got = ::read(input.get(), buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      st = systemError("from_tar: reading the archive", errno);
      break;
    }
    if (got == 0) {
      eof = true;
      break;
    }
    st = scan.feed(std::string_view(buf.data(), static_cast<size_t>(got)));
  }
  input.reset();
  if (pid > 0) {
    if (!eof) ::kill(pid, SIGKILL);  // not needed any more
    auto status = ChildReaper::wait(pid, Deadline::after(Millis(10000)));
    if (st.ok() && eof && (!status.ok() || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0)) {
      char err[512] = {};
      ssize_t n = ::pread(errors.get(), err, sizeof err - 1, 0);
      std::string why(trim(std::string_view(err, n > 0 ? static_cast<size_t>(n) : 0)));
      return invalidArgument("from_tar: the archive cannot be decompressed: " + (why.empty() && status.ok() ? describeWaitStatus(*status) : why));
    }
  }
  if (timedOut) return timeoutError("from_tar: reading the archive did not finish before the deadline");
  VMM_TRY(st);
  return scan.finish();
}

// What the archive may carry but the volume must not: device nodes, fifos and sockets go,
// set-user-ID and set-group-ID bits come off files. Links are not followed.
Status neutralise(const std::string& dir) {
  namespace sfs = std::filesystem;
  std::error_code ec;
  sfs::recursive_directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string path = it->path().string();
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) return systemError("from_tar: " + path, errno);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
      if (::unlink(path.c_str()) != 0) return systemError("from_tar: removing " + path, errno);
    } else if (S_ISREG(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID))) {
      if (::chmod(path.c_str(), st.st_mode & 01777) != 0) return systemError("from_tar: chmod " + path, errno);
    }
  }
  if (ec) return systemError("from_tar: walking " + dir, ec.value());
  if (::chmod(dir.c_str(), 0700) != 0) return systemError("from_tar: chmod " + dir, errno);
  return {};
}

}  // namespace

Status unpackTarball(const std::string& tarball, const std::string& dest, Deadline deadline, const TarLimits& limits) {
  fs::UniqueFd fd(::open(tarball.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) return invalidArgument("from_tar: " + tarball + " does not exist on the host");
  if (!fd.valid()) return systemError("from_tar: cannot open " + tarball, errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return systemError("from_tar: " + tarball, errno);
  if (!S_ISREG(st.st_mode)) return invalidArgument("from_tar: " + tarball + " is not a regular file");
  std::string head(512, '\0');
  ssize_t n = ::read(fd.get(), head.data(), head.size());
  head.resize(n > 0 ? static_cast<size_t>(n) : 0);
  VMM_ASSIGN(auto compression, tarCompressionFlag(head));

  // Every member is checked first: one refusal refuses the whole archive before anything is written.
  TarScan scan(limits);
  VMM_TRY(scanTarball(fd.get(), compression, scan, deadline));
  if (scan.members() == 0) return invalidArgument("from_tar: " + tarball + " is an empty archive");

  RunOptions extract;
  extract.deadline = deadline;
  std::vector<std::string> argv = {"tar"};
  if (!compression.empty()) argv.push_back(compression);
  // --numeric-owner: ids as stored, never mapped through the host's user names.
  // --no-overwrite-dir: the volume's root keeps its owner and mode whatever "./" says.
  argv.insert(argv.end(), {"--numeric-owner", "--same-permissions", "--no-overwrite-dir", "-xf", tarball, "-C", dest});
  VMM_ASSIGN(auto r, runCommand(argv, extract));
  if (!r.success()) return invalidArgument("from_tar: unpacking " + tarball + " failed: " + r.describe());
  // tar read the path, the scan the open file: a file replaced or written to in between was
  // not the one checked, and its tree does not become a volume.
  struct stat byFd{}, byPath{};
  auto same = [&st](const struct stat& s) {
    return s.st_dev == st.st_dev && s.st_ino == st.st_ino && s.st_size == st.st_size && s.st_ctim.tv_sec == st.st_ctim.tv_sec &&
           s.st_ctim.tv_nsec == st.st_ctim.tv_nsec;
  };
  if (::fstat(fd.get(), &byFd) != 0 || ::stat(tarball.c_str(), &byPath) != 0 || !same(byFd) || !same(byPath))
    return invalidArgument("from_tar: " + tarball + " changed while it was being unpacked");
  return neutralise(dest);
}

Status copyDirectory(const std::string& from, const std::string& to, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  VMM_ASSIGN(auto r, runCommand({"cp", "-a", "--reflink=auto", "--no-target-directory", from, to}, opts));
  if (!r.success()) return internalError("copying " + from + " to " + to + ": " + r.describe());
  return {};
}

}  // namespace vmm::storage
