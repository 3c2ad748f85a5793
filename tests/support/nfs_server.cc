#include "tests/support/nfs_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"

namespace vmm::testutil {

namespace {

constexpr int kNfsPort = 2049;
constexpr int kMountPort = 20048;

std::string nsLink(const std::string& pid, const std::string& ns) {
  char buf[128] = {};
  ssize_t n = ::readlink(("/proc/" + pid + "/ns/" + ns).c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// rpcbind and ganesha would register with (or lock against) the host's rpcbind otherwise.
Status checkPrivateNamespaces() {
  for (const char* ns : {"net", "mnt"}) {
    std::string self = nsLink("self", ns), init = nsLink("1", ns);
    if (self.empty() || self == init)
      return Error{ErrorCode::precondition_failed, std::string("NfsServer needs a private ") + ns +
                                                       " namespace: call enterPrivateNamespaces() first in main()"};
  }
  return {};
}

Status privateRun() {
  static bool mounted = false;
  if (mounted) return {};
  if (::mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") != 0)
    return systemError("mounting a private tmpfs on /run", errno);
  mounted = true;
  return {};
}

bool tcpListening(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Children that die with the test (a crashed or killed test binary leaves no server behind).
// The signal comes when the thread that started them exits: start() from a long-lived thread.
std::vector<std::string> dyingWithParent(std::vector<std::string> argv) {
  if (::access("/usr/bin/setpriv", X_OK) == 0) argv.insert(argv.begin(), {"/usr/bin/setpriv", "--pdeathsig", "KILL"});
  return argv;
}

void terminate(pid_t& pid, int sig = SIGTERM) {
  if (pid <= 0) return;
  ::kill(pid, SIGCONT);
  ::kill(pid, sig);
  if (!ChildReaper::wait(pid, Deadline::after(Millis(10000))).ok()) {
    ::kill(pid, SIGKILL);
    (void)ChildReaper::wait(pid, Deadline::after(Millis(5000)));
  }
  pid = -1;
}

}  // namespace

Status enterPrivateNamespaces() {
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return systemError("unshare(CLONE_NEWNET | CLONE_NEWNS)", errno);
  if (::mount("none", "/", "none", MS_REC | MS_PRIVATE, nullptr) != 0) return systemError("making mounts private", errno);
  // sysfs of the new network namespace, so `ip` sees its links (as `ip netns exec` does).
  if (::umount2("/sys", MNT_DETACH) != 0 || ::mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0)
    return systemError("remounting /sys", errno);
  auto r = runCommand({"ip", "link", "set", "lo", "up"});
  if (!r.ok()) return r.error();
  if (!r->success()) return internalError("ip link set lo up: " + r->describe());
  return {};
}

std::string NfsServer::missing() {
  std::string m = missingRoot("private namespaces, rpcbind on port 111");
  if (m.empty()) m = missingTools({"ganesha.nfsd"}, "nfs-ganesha, nfs-ganesha-vfs");
  if (m.empty()) m = missingTools({"rpcbind", "rpcinfo"}, "rpcbind");
  return m;
}

Status NfsServer::start(const std::string& exportDir) {
  if (running()) return Error{ErrorCode::conflict, "the NFS server is already running"};
  if (!fs::isDirectory(exportDir)) return notFound("export directory " + exportDir + " does not exist");
  VMM_TRY(checkPrivateNamespaces());
  VMM_TRY(privateRun());
  char tmpl[] = "/tmp/vmm-nfsd-XXXXXX";
  if (!::mkdtemp(tmpl)) return systemError("mkdtemp", errno);
  workDir_ = tmpl;
  VMM_TRY(fs::makeDirs(workDir_ + "/recovery", 0700));
  // No Bind_addr: ganesha resolves it with AI_ADDRCONFIG, which fails in a namespace with only
  // loopback. The namespace is private, so every address is loopback anyway.
  std::string conf =
      "NFS_CORE_PARAM { NFS_Port = " + std::to_string(kNfsPort) + "; MNT_Port = " + std::to_string(kMountPort) +
      "; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Protocols = 3, 4; Mount_Path_Pseudo = true; }\n"
      "NFSv4 { Graceless = true; RecoveryRoot = " + workDir_ + "/recovery; }\n"
      "EXPORT { Export_Id = 1; Path = " + exportDir + "; Pseudo = " + exportPath() +
      "; Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }\n"
      "LOG { Default_Log_Level = WARN; }\n";
  VMM_TRY(fs::writeFileAtomic(workDir_ + "/ganesha.conf", conf));

  fs::UniqueFd rpcLog(::open((workDir_ + "/rpcbind.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  SpawnOptions so;
  so.stdoutFd = rpcLog.get();
  // rpcbind switches to its own user, which clears a parent-death signal: it runs under a shell
  // that is PID 1 of a PID namespace of its own, and dies with that namespace.
  auto rpc = spawnProcess(dyingWithParent({"unshare", "--pid", "--fork", "--kill-child=KILL", "sh", "-c",
                                           findTool("rpcbind") + " -f -w & wait"}),
                          so);
  if (!rpc.ok()) return rpc.error().wrap("starting rpcbind");
  rpcbind_ = *rpc;
  auto until = Deadline::after(Millis(5000));
  while (!tcpListening(111)) {
    if (until.expired() || !processRunning(rpcbind_)) {
      stop();
      return unavailable("rpcbind did not start listening on port 111");
    }
    std::this_thread::sleep_for(Millis(10));
  }
  auto g = spawnProcess(dyingWithParent({findTool("ganesha.nfsd"), "-F", "-f", workDir_ + "/ganesha.conf", "-L",
                                         workDir_ + "/ganesha.log", "-p", workDir_ + "/ganesha.pid"}));
  if (!g.ok()) {
    stop();
    return g.error().wrap("starting ganesha.nfsd");
  }
  ganesha_ = *g;
  if (auto st = waitReady(); !st.ok()) {
    std::string tail = log();
    stop();
    return st.takeError().wrap(tail.size() > 2000 ? tail.substr(tail.size() - 2000) : tail);
  }
  return {};
}

Status NfsServer::waitReady() {
  auto until = Deadline::after(Millis(15000));
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(2000));
  while (true) {
    if (!processRunning(ganesha_)) return unavailable("ganesha.nfsd exited during start-up");
    bool ready = true;
    for (const char* program : {"100003", "100005"}) {
      opts.deadline = Deadline::after(Millis(2000));
      auto r = runCommand({"rpcinfo", "-T", "tcp", host(), program, "3"}, opts);
      ready = ready && r.ok() && r->success();
    }
    if (ready) return {};
    if (until.expired()) return timeoutError("ganesha.nfsd did not serve NFSv3 within 15 s");
    std::this_thread::sleep_for(Millis(20));
  }
}

void NfsServer::stop() {
  terminate(ganesha_);
  terminate(rpcbind_, SIGKILL);  // unshare ignores SIGTERM; its death takes the namespace down
  paused_ = false;
  // rpcbind -w keeps registrations for a warm restart: the next server must not inherit them.
  (void)fs::removeFile("/run/rpcbind/rpcbind.xdr");
  (void)fs::removeFile("/run/rpcbind/portmap.xdr");
  if (!workDir_.empty()) {
    (void)runCommand({"rm", "-rf", workDir_});
    workDir_.clear();
  }
}

Status NfsServer::pause() {
  if (!running()) return internalError("the NFS server is not running");
  if (::kill(ganesha_, SIGSTOP) != 0) return systemError("SIGSTOP ganesha", errno);
  paused_ = true;
  // kill() returns before every thread has stopped: one still running could answer the
  // request a test sends next. Wait until /proc shows each thread stopped ('T').
  std::string tasks = "/proc/" + std::to_string(ganesha_) + "/task";
  auto allStopped = [&] {
    auto names = fs::listDir(tasks);
    if (!names.ok() || names->empty()) return false;
    for (const auto& t : *names) {
      auto stat = fs::readFile(tasks + "/" + t + "/stat", 4096).valueOr("");
      auto close = stat.rfind(')');
      if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') return false;
    }
    return true;
  };
  for (int i = 0; i < 200 && !allStopped(); ++i) ::usleep(10000);
  if (!allStopped()) return internalError("ganesha's threads did not all stop after SIGSTOP");
  return {};
}

Status NfsServer::resume() {
  if (!running()) return internalError("the NFS server is not running");
  if (::kill(ganesha_, SIGCONT) != 0) return systemError("SIGCONT ganesha", errno);
  paused_ = false;
  return {};
}

std::string NfsServer::log() const {
  if (workDir_.empty()) return "";
  return fs::readFile(workDir_ + "/ganesha.log", 1 << 20).valueOr("");
}

}  // namespace vmm::testutil
