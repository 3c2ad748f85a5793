#include "storage/qemu_img.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "base/json_util.h"
#include "base/fs.h"
#include "base/socket_util.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::storage {

namespace {

std::mutex gSandboxMu;
QemuImgSandbox gSandbox;

std::string fmt(model::DiskFormat f) { return std::string(model::enumName(model::kDiskFormats, f)); }

Result<Confinement> confinementFor(const QemuImgAccess& t, Deadline deadline) {
  QemuImgSandbox sandbox;
  {
    std::lock_guard lock(gSandboxMu);
    sandbox = gSandbox;
  }
  Confinement c;
  if (sandbox.uid == 0) return c;
  auto local = [](const std::string& p) { return !p.empty() && p[0] == '/'; };
  bool network = false;
  for (const auto* paths : {&t.writableDirs, &t.writableFiles, &t.readFiles})
    for (const auto& p : *paths) network = network || !local(p);
  // On NFS, AUTH_SYS states the process's ids and the pools' files are root's: there qemu-img
  // is root of a user namespace of its own (the same id on the host, no capability), keeps the
  // host's network and sees no host file at all.
  if (network) {
    c.rootShownAs = sandbox.uid;  // no capability there either
  } else {
    c.uid = sandbox.uid;
    c.gid = sandbox.uid;
    c.newNetworkNamespace = true;
  }
  const uint32_t shownAs = sandbox.uid;  // root's files in its binds show as its own
  c.noNewPrivileges = true;
  c.newPidNamespace = true;
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(deadline.remaining()).count();
  c.limits = {{RLIMIT_AS, uint64_t{4} << 30}, {RLIMIT_CPU, static_cast<uint64_t>(std::max<int64_t>(60, seconds + 1))}, {RLIMIT_CORE, 0},
              {RLIMIT_NOFILE, 1024}};
  PrivateRoot root;
  root.mountPoint = sandbox.mountPoint;
  root.procReadOnly = true;
  addSystemFiles(root);
  for (const char* node : {"/dev/null", "/dev/zero", "/dev/urandom"}) root.binds.push_back({node, node, true});
  if (network)
    for (const char* file : {"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols"})
      if (::access(file, F_OK) == 0) root.binds.push_back({file, file, false});
  std::set<std::string> dirs;
  for (const auto& d : t.writableDirs)
    if (local(d) && dirs.insert(d).second) root.binds.push_back({d, d, true, shownAs});
  std::set<std::string> files;
  for (const auto& f : t.writableFiles)
    if (local(f) && !dirs.count(fs::dirName(f)) && files.insert(f).second) root.binds.push_back({f, f, true, shownAs});
  for (const auto& f : t.readFiles)
    if (local(f) && !dirs.count(fs::dirName(f)) && files.insert(f).second) root.binds.push_back({f, f, false, shownAs});
  c.root = std::move(root);
  return c;
}

Result<RunOptions> within(Deadline deadline, const QemuImgAccess& t) {
  RunOptions o;
  o.deadline = deadline;
  VMM_ASSIGN(o.confinement, confinementFor(t, deadline));
  return o;
}

Status checked(const std::vector<std::string>& argv, Deadline deadline, const QemuImgAccess& t, const std::string& what) {
  VMM_ASSIGN(auto options, within(deadline, t));
  auto r = runCommand(argv, options);
  if (!r.ok()) return r.error().wrap(what);
  if (!r->success()) {
    // qemu-img prints "qemu-img: <path>: <reason>"; keep the reason.
    std::string msg(trim(r->err));
    if (startsWith(msg, "qemu-img: ")) msg = msg.substr(10);
    return Error{ErrorCode::invalid_argument, what + ": " + (msg.empty() ? r->describe() : msg)};
  }
  return {};
}

}  // namespace

Status runQemuImg(const std::vector<std::string>& args, const QemuImgAccess& access, Deadline deadline, const std::string& what) {
  std::vector<std::string> argv = {"qemu-img"};
  argv.insert(argv.end(), args.begin(), args.end());
  return checked(argv, deadline, access, what);
}

void setQemuImgSandbox(const QemuImgSandbox& sandbox) {
  std::lock_guard lock(gSandboxMu);
  gSandbox = sandbox;
}

Status createImage(const CreateImage& c, Deadline deadline) {
  std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", fmt(c.format)};
  std::vector<std::string> opts;
  if (!c.backingFile.empty()) {
    // -u with an explicit size: qemu-img never opens the backing file, whose header (a guest
    // may have written it) would otherwise be read; its format is the one vmm recorded.
    if (c.size == 0) return invalidArgument("creating " + c.path + ": an image on a backing file needs its size");
    argv.insert(argv.end(), {"-u", "-b", c.backingFile, "-F", fmt(c.backingFormat)});
  }
  if (c.preallocate) opts.push_back(c.format == model::DiskFormat::qcow2 ? "preallocation=metadata" : "preallocation=falloc");
  if (!opts.empty()) argv.insert(argv.end(), {"-o", join(opts, ",")});
  argv.push_back(c.path);
  argv.push_back(std::to_string(c.size));
  return checked(argv, deadline, {{fs::dirName(c.path)}, {}, {}}, "creating " + c.path);
}

Result<ImageInfo> imageInfo(const std::string& path, Deadline deadline, bool shared) {
  std::vector<std::string> argv = {"qemu-img", "info", "--output=json"};
  if (shared) argv.push_back("-U");
  argv.push_back(path);
  VMM_ASSIGN(auto options, within(deadline, {{}, {}, {path}}));
  auto r = runCommand(argv, options);
  if (!r.ok()) return r.error().wrap("reading " + path);
  if (!r->success()) return Error{ErrorCode::invalid_argument, "reading " + path + ": " + std::string(trim(r->err))};
  // The image is untrusted and its header fills this JSON: read by type, never by throw.
  auto parsed = parseJson(r->out, kToolJsonMaxBytes, kJsonMaxDepth, "qemu-img info output");
  if (!parsed.ok() || !parsed->is_object()) return internalError("qemu-img info gave no JSON for " + path);
  const nlohmann::json& j = *parsed;
  ImageInfo info;
  std::string format = jsonStringOr(j, "format", "raw");
  info.format = format == "qcow2" ? model::DiskFormat::qcow2 : model::DiskFormat::raw;
  info.virtualSize = jsonUint(j, "virtual-size").value_or(0);
  info.actualSize = jsonUint(j, "actual-size").value_or(0);
  info.backingFile = jsonStringOr(j, "full-backing-filename", jsonStringOr(j, "backing-filename", ""));
  return info;
}

Status resizeImage(const std::string& path, model::DiskFormat format, uint64_t size, bool allowShrink, Deadline deadline) {
  std::vector<std::string> argv = {"qemu-img", "resize", "-q", "-f", fmt(format)};
  if (allowShrink) argv.push_back("--shrink");
  argv.insert(argv.end(), {path, std::to_string(size)});
  // A qcow2's backing layers are opened too: vmm's lie next to it, in the pool's directory.
  return checked(argv, deadline, {{fs::dirName(path)}, {}, {}}, "resizing " + path);
}

Status convertImage(const std::string& from, model::DiskFormat fromFormat, const std::string& to, model::DiskFormat format,
                    const std::function<void(double)>& progress, Deadline deadline, const std::vector<std::string>& fromLayers) {
  // -p writes "    (NN.NN/100%)\r" to stdout as it goes, also into a pipe.
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return systemError("pipe", errno);
  fs::UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  SpawnOptions so;
  so.stdoutFd = writeEnd.get();
  // qemu-img would write through a symlink left at the target or at its stderr file. The target
  // is made here, empty: sandboxed, qemu-img may write that one file and nothing else of its
  // directory (the source may be an image from anywhere: an import).
  VMM_TRY(fs::removeFile(to));
  std::string errFile = to + ".err";
  VMM_TRY(fs::removeFile(errFile));
  VMM_ASSIGN(auto errFd, fs::createExclusive(errFile, 0600));
  so.stderrFd = errFd.get();
  bool local = !to.empty() && to[0] == '/';
  if (local) VMM_TRY(fs::createExclusive(to, 0600));
  std::vector<std::string> reads = {from};
  reads.insert(reads.end(), fromLayers.begin(), fromLayers.end());
  QemuImgAccess access{{}, {}, reads};
  if (local) access.writableFiles = {to};
  else access.writableDirs = {fs::dirName(to)};
  VMM_ASSIGN(so.confinement, confinementFor(access, deadline));
  auto pid = spawnProcess({"qemu-img", "convert", "-p", "-f", fmt(fromFormat), "-O", fmt(format), from, to}, so);
  writeEnd.reset();
  errFd.reset();
  if (!pid.ok()) return pid.error();
  std::string buf;
  char chunk[512];
  bool timedOut = false;
  while (true) {
    pollfd p{readEnd.get(), POLLIN, 0};
    if (pollFor(&p, 1, deadline) == 0) {
      timedOut = true;
      break;
    }
    ssize_t got = ::read(readEnd.get(), chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    buf.append(chunk, static_cast<size_t>(got));
    auto open = buf.rfind('('), slash = buf.rfind("/100%");
    if (open != std::string::npos && slash != std::string::npos && slash > open && progress) {
      try {
        progress(std::stod(buf.substr(open + 1, slash - open - 1)) / 100.0);
      } catch (...) {
      }
      buf.erase(0, slash);
    }
  }
  if (timedOut) ::kill(*pid, SIGKILL);
  auto status = ChildReaper::wait(*pid, Deadline::after(Millis(10000)));
  std::string err(trim(fs::readFile(errFile, 1 << 16).valueOr("")));
  (void)fs::removeFile(errFile);
  if (timedOut) return timeoutError("copying " + from + " did not finish before the deadline");
  if (!status.ok()) return status.error();
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0)
    return Error{ErrorCode::invalid_argument, "copying " + from + ": " + (err.empty() ? describeWaitStatus(*status) : err)};
  if (progress) progress(1.0);
  return {};
}

}  // namespace vmm::storage
