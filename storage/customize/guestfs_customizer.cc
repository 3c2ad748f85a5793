#include "storage/customize/guestfs_customizer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::customize {

namespace {

Result<fs::UniqueFd> memFile(const char* name, std::string_view content) {
  fs::UniqueFd fd(memfd_create(name, MFD_CLOEXEC));
  if (!fd.valid()) return systemError("memfd_create", errno);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t w = write(fd.get(), content.data() + off, content.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return systemError("writing the customize request", errno);
    off += static_cast<size_t>(w);
  }
  if (lseek(fd.get(), 0, SEEK_SET) < 0) return systemError("lseek", errno);
  return fd;
}

std::string readAll(int fd, size_t maxBytes) {
  std::string out;
  char buf[65536];
  lseek(fd, 0, SEEK_SET);
  while (out.size() < maxBytes) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// The last few non-empty lines of the helper's stderr, for errors without a reply.
std::string tailLines(const std::string& text, size_t n) {
  auto lines = split(text, '\n', true);
  size_t from = lines.size() > n ? lines.size() - n : 0;
  return join(std::vector<std::string>(lines.begin() + static_cast<long>(from), lines.end()), " | ");
}

// Kills everything of the helper's session - the helper, supermin, libguestfs's recovery
// process and QEMU, also any of them that moved to a process group of its own - and waits
// until nothing of it runs any more (zombies aside: their parent or init reaps them).
void killSession(pid_t sid) {
  Deadline until = Deadline::after(Millis(10000));
  while (true) {
    ::kill(-sid, SIGKILL);
    auto members = sessionMembers(sid);
    if (members.empty() || until.expired()) return;
    for (pid_t p : members) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(Millis(10));
  }
}

}  // namespace

Result<GuestfsRuntime> GuestfsRuntime::fromEnvFile(const std::string& envFile, const std::string& helperPath) {
  VMM_ASSIGN(auto text, fs::readFile(envFile, 1 << 16));
  GuestfsRuntime rt;
  rt.helperPath = helperPath;
  for (const auto& raw : split(text, '\n', true)) {
    auto line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) return invalidArgument(envFile + ": not KEY=VALUE: " + quote(line));
    rt.env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  return rt;
}

Result<CustomizeReport> customizeImage(const std::string& imagePath, const CustomizeSpec& spec,
                                       const GuestfsRuntime& runtime, Deadline deadline) {
  VMM_TRY(validateCustomizeSpec(spec));
  // The format the image's pool recorded: never detected from its header, which a guest may
  // have written (a qcow2 header naming a host file would be opened by the appliance's QEMU).
  if (spec.format.empty()) return invalidArgument("format: the image's recorded format (raw or qcow2) is required");
  struct stat st {};
  if (stat(imagePath.c_str(), &st) != 0) return errno == ENOENT ? notFound("no such image: " + imagePath) : systemError("stat " + imagePath, errno);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return invalidArgument("not an image file: " + imagePath);
  if (runtime.helperPath.empty() || access(runtime.helperPath.c_str(), X_OK) != 0)
    return unavailable("image customisation helper not found: " + quote(runtime.helperPath));
  char* abs = realpath(imagePath.c_str(), nullptr);
  if (!abs) return systemError("realpath " + imagePath, errno);
  std::string absPath(abs);
  free(abs);

  VMM_ASSIGN(auto in, memFile("vmm-customize-in", customizeRequestToJson(absPath, spec)));
  VMM_ASSIGN(auto out, memFile("vmm-customize-out", ""));
  VMM_ASSIGN(auto err, memFile("vmm-customize-err", ""));
  SpawnOptions so;
  so.stdinFd = in.get();
  so.stdoutFd = out.get();
  so.stderrFd = err.get();
  so.newSession = true;  // pid == process group of everything libguestfs starts
  so.env = runtime.env;
  VMM_ASSIGN(pid_t pid, spawnProcess({runtime.helperPath}, so));
  if (runtime.onSpawn) runtime.onSpawn(pid);

  auto status = ChildReaper::wait(pid, deadline);
  if (!status.ok()) {
    killSession(pid);
    (void)ChildReaper::wait(pid, Deadline::after(Millis(10000)));
    return timeoutError("customising " + imagePath + " did not finish before its deadline (appliance killed)");
  }
  // Anything of the session still alive (a QEMU the helper did not reap) goes too.
  killSession(pid);
  std::string reply = readAll(out.get(), 1 << 24);
  auto result = customizeReplyFromJson(reply);
  if (!result.ok() && reply.empty()) {
    return internalError("vmm-customize " + describeWaitStatus(*status) + ": " + tailLines(readAll(err.get(), 1 << 20), 3));
  }
  if (!result.ok()) return result.takeError().wrap("customising " + imagePath);
  return result;
}

}  // namespace vmm::customize
