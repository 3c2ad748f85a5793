#include "storage/dir/dir_volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "base/fs.h"
#include "base/process.h"
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

Status unpackTarball(const std::string& tarball, const std::string& dest, Deadline deadline) {
  struct stat st{};
  if (::stat(tarball.c_str(), &st) != 0) return invalidArgument("from_tar: " + tarball + " does not exist on the host");
  if (!S_ISREG(st.st_mode)) return invalidArgument("from_tar: " + tarball + " is not a regular file");
  std::string head(512, '\0');
  {
    fs::UniqueFd fd(::open(tarball.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return systemError("from_tar: cannot open " + tarball, errno);
    ssize_t n = ::read(fd.get(), head.data(), head.size());
    head.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  VMM_ASSIGN(auto compression, tarCompressionFlag(head));
  std::vector<std::string> base = {"tar"};
  if (!compression.empty()) base.push_back(compression);

  // The names first: one escaping member refuses the whole archive before anything is written.
  RunOptions list;
  list.deadline = deadline;
  list.maxOutput = 256 << 20;
  auto listArgv = base;
  listArgv.insert(listArgv.end(), {"--quoting-style=escape", "-tf", tarball});
  VMM_ASSIGN(auto names, runCommand(listArgv, list));
  if (!names.success()) return invalidArgument("from_tar: " + tarball + " cannot be read: " + names.describe());
  if (names.out.size() >= list.maxOutput) return invalidArgument("from_tar: the archive lists too many members");
  size_t members = 0;
  for (const auto& name : split(names.out, '\n', true)) {
    VMM_TRY(checkTarMemberName(name));
    ++members;
  }
  if (members == 0) return invalidArgument("from_tar: " + tarball + " is an empty archive");

  RunOptions extract;
  extract.deadline = deadline;
  auto argv = base;
  // --numeric-owner: ids as stored, never mapped through the host's user names.
  argv.insert(argv.end(), {"--numeric-owner", "--same-permissions", "-xf", tarball,
                           "-C", dest});
  VMM_ASSIGN(auto r, runCommand(argv, extract));
  if (!r.success()) return invalidArgument("from_tar: unpacking " + tarball + " failed: " + r.describe());
  return {};
}

Status copyDirectory(const std::string& from, const std::string& to, Deadline deadline) {
  RunOptions opts;
  opts.deadline = deadline;
  VMM_ASSIGN(auto r, runCommand({"cp", "-a", "--reflink=auto", "--no-target-directory", from, to}, opts));
  if (!r.success()) return internalError("copying " + from + " to " + to + ": " + r.describe());
  return {};
}

}  // namespace vmm::storage
