#include "storage/customize/guestfs_customizer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "base/fs.h"
#include "base/private_root.h"
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

// Where a block device to customise appears in the helper's private root.
constexpr const char* kSandboxedDevice = "/dev/vmm-disk";

// Where the sandboxed helper finds libguestfs's qemu-data cache (it must be its uid's).
constexpr const char* kSandboxCacheDir = "/var/cache/vmm-guestfs";

const std::string* envValue(const GuestfsRuntime& rt, const std::string& key) {
  auto it = rt.env.find(key);
  return it == rt.env.end() || it->second.empty() ? nullptr : &it->second;
}

// The helper's confinement (see the header) and the environment that goes with it.
Result<Confinement> sandboxFor(const GuestfsSandbox& sandbox, const GuestfsRuntime& rt, const std::string& image, bool blockDevice,
                               const std::vector<std::string>& layers, Deadline deadline,
                               std::map<std::string, std::string>& env) {
  if (sandbox.uid == 0 || sandbox.mountPoint.empty()) return invalidArgument("the customisation sandbox needs a uid other than 0 and a mount point");
  const std::string* appliancePath = envValue(rt, "LIBGUESTFS_PATH");
  if (!appliancePath || !fs::exists(*appliancePath + "/README.fixed"))
    return unavailable("unprivileged customisation needs the fixed libguestfs appliance: run scripts/setup-guestfs.sh again");
  const std::string* cache = envValue(rt, "LIBGUESTFS_CACHEDIR");
  if (!cache) return unavailable("the libguestfs setup names no LIBGUESTFS_CACHEDIR: run scripts/setup-guestfs.sh again");
  // Apart from root's own cache: what a sandboxed helper writes there, only later sandboxed
  // helpers read.
  VMM_TRY(fs::makeDirs(*cache + "/.guestfs-sandboxed", 0755));
  // Binds name real paths (vmmd finds the helper as BIN/../storage/...).
  VMM_ASSIGN(std::string appliance, fs::realPath(*appliancePath));
  VMM_ASSIGN(std::string hostCache, fs::realPath(*cache + "/.guestfs-sandboxed"));
  VMM_ASSIGN(std::string helper, fs::realPath(rt.helperPath));

  Confinement c;
  c.uid = sandbox.uid;
  c.gid = sandbox.uid;
  c.noNewPrivileges = true;
  c.newNetworkNamespace = true;  // the appliance has no network either
  c.newPidNamespace = true;      // the helper is its init: nothing of it outlives it
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(deadline.remaining()).count();
  c.limits = {{RLIMIT_CPU, static_cast<uint64_t>(std::max<int64_t>(60, seconds + 1))}, {RLIMIT_CORE, 0}, {RLIMIT_NOFILE, 4096}};
  PrivateRoot root;
  root.mountPoint = sandbox.mountPoint;
  addSystemFiles(root);
  for (const char* node : {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"}) root.binds.push_back({node, node, true});
  struct stat kvm{};
  if (::stat("/dev/kvm", &kvm) == 0 && S_ISCHR(kvm.st_mode)) {
    root.binds.push_back({"/dev/kvm", "/dev/kvm", true});
    c.groups.push_back(kvm.st_gid);
  }
  root.binds.push_back({helper, helper, false});
  root.binds.push_back({appliance, appliance, false});
  env["LIBGUESTFS_PATH"] = appliance;
  root.binds.push_back({hostCache, std::string(kSandboxCacheDir) + "/.guestfs-" + std::to_string(sandbox.uid), true, sandbox.uid});
  if (blockDevice) {
    // A device node's owner cannot be mapped: the helper gets a node of its own for the same
    // device (the host's keeps its owner and mode), made in a /dev of its root.
    root.devices.push_back({image, kSandboxedDevice, sandbox.uid});
  } else {
    root.binds.push_back({image, image, true, sandbox.uid});
  }
  for (const auto& path : layers) {
    VMM_ASSIGN(std::string layer, fs::realPath(path));
    if (layer != image) root.binds.push_back({layer, layer, false, sandbox.uid});
  }
  // libguestfs's sockets; QEMU's overlay of the appliance's root disk (in /var/tmp: QEMU is
  // not given TMPDIR).
  root.scratch.emplace_back("/tmp", uint64_t{256} << 20);
  root.scratch.emplace_back("/var/tmp", uint64_t{512} << 20);
  c.root = std::move(root);
  env["LIBGUESTFS_CACHEDIR"] = kSandboxCacheDir;
  for (const char* var : {"TMPDIR", "HOME", "XDG_RUNTIME_DIR"}) env[var] = "/tmp";
  return c;
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

Result<CustomizeReport> customizeImage(const DiskToCustomize& disk, const CustomizeSpec& spec,
                                       const GuestfsRuntime& runtime, Deadline deadline) {
  const std::string& imagePath = disk.path;
  VMM_TRY(validateCustomizeSpec(spec));
  // The format the image's pool recorded: never detected from its header, which a guest may
  // have written (a qcow2 header naming a host file would be opened by the appliance's QEMU).
  if (spec.format.empty()) return invalidArgument("format: the image's recorded format (raw or qcow2) is required");
  struct stat st {};
  if (stat(imagePath.c_str(), &st) != 0) return errno == ENOENT ? notFound("no such image: " + imagePath) : systemError("stat " + imagePath, errno);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return invalidArgument("not an image file: " + imagePath);
  if (runtime.helperPath.empty() || access(runtime.helperPath.c_str(), X_OK) != 0)
    return unavailable("image customisation helper not found: " + quote(runtime.helperPath));
  VMM_ASSIGN(std::string absPath, fs::realPath(imagePath));

  // The helper's name for the disk: a sandboxed one sees a block device at a node of its own.
  std::string helperPath = runtime.sandbox && S_ISBLK(st.st_mode) ? std::string(kSandboxedDevice) : absPath;
  VMM_ASSIGN(auto in, memFile("vmm-customize-in", customizeRequestToJson(helperPath, spec)));
  VMM_ASSIGN(auto out, memFile("vmm-customize-out", ""));
  VMM_ASSIGN(auto err, memFile("vmm-customize-err", ""));
  SpawnOptions so;
  so.stdinFd = in.get();
  so.stdoutFd = out.get();
  so.stderrFd = err.get();
  so.newSession = true;  // pid == process group of everything libguestfs starts
  so.env = runtime.env;
  std::vector<std::string> argv = {runtime.helperPath};
  if (runtime.sandbox) {
    VMM_ASSIGN(so.confinement, sandboxFor(*runtime.sandbox, runtime, absPath, S_ISBLK(st.st_mode), disk.backingLayers, deadline, so.env));
    VMM_ASSIGN(argv[0], fs::realPath(runtime.helperPath));
    argv.push_back("--sandboxed");
  }
  VMM_ASSIGN(pid_t pid, spawnProcess(argv, so));
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
