#include "drivers/lxc/container_process.h"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/idmapped_mount.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "base/strings.h"

namespace vmm::drivers::lxc {

namespace {

// Everything init needs, prepared before fork(): after it, only system calls (vmmd has threads).
struct MountOp {
  std::string source, target, fstype, data;
  unsigned long flags = 0;
  enum Kind { dir, file, none } kind = dir;  // what to create at target first
  bool remount = false;              // then MS_BIND|MS_REMOUNT with remountFlags
  unsigned long remountFlags = 0;
  bool optional = false;             // a target that does not exist is skipped (masks)
};

struct ChildPlan {
  std::string rootfs, hostname, slavePath;  // mount targets are relative to the attached rootfs
  std::vector<MountOp> mounts;
  std::vector<std::pair<std::string, std::string>> symlinks;  // target, link path
  std::vector<std::string> argvStore, envStore;
  std::vector<char*> argv, envp;
  bool userns = false;
  Confinement confinement;
  int goFd = -1, errFd = -1, slaveFd = -1;
  int closeInChild[2] = {-1, -1};  // the console's master and listening socket
};

struct ChildError {
  char step[200];
  int err;
};

[[noreturn]] void childFail(const ChildPlan& plan, const char* step, const char* what) {
  ChildError e{};
  e.err = errno;
  size_t n = 0;
  for (const char* s : {step, " ", what})
    for (; *s && n + 1 < sizeof(e.step); ++s) e.step[n++] = *s;
  (void)!::write(plan.errFd, &e, sizeof(e));
  _exit(127);
}

void setLinkUp(const char* name) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    (void)::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  ::close(s);
}

// The go byte, carrying the rootfs's detached mount (rootTree); -1 when the caller gave up.
int receiveRootTree(int sock) {
  char go = 0;
  int fd = -1;
  if (receiveWithFd(sock, &go, 1, &fd) != 1) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

int childMain(void* arg) {
  const ChildPlan& plan = *static_cast<ChildPlan*>(arg);
  for (int fd : plan.closeInChild) ::close(fd);
  int tree = receiveRootTree(plan.goFd);
  if (tree < 0) _exit(126);  // the caller gave up
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) childFail(plan, "make / private", "");
  // Still host uid 0 here (the namespace's ids take effect with setresuid): the path to the
  // rootfs may cross root-only directories, which the container's root could not enter.
  if (attachDetachedMount(tree, plan.rootfs.c_str()) != 0)
    childFail(plan, "attach the root", plan.rootfs.c_str());
  if (::fchdir(tree) != 0) childFail(plan, "chdir", plan.rootfs.c_str());
  ::close(tree);
  if (plan.userns && (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)) childFail(plan, "setresuid", "0");
  for (const auto& m : plan.mounts) {
    if (m.optional && ::access(m.target.c_str(), F_OK) != 0) continue;
    if (m.kind == MountOp::dir) ::mkdir(m.target.c_str(), 0755);
    if (m.kind == MountOp::file) {
      int fd = ::open(m.target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0) ::close(fd);
    }
    if (::mount(m.source.empty() ? nullptr : m.source.c_str(), m.target.c_str(), m.fstype.empty() ? nullptr : m.fstype.c_str(),
                m.flags, m.data.empty() ? nullptr : m.data.c_str()) != 0)
      childFail(plan, "mount", m.target.c_str());
    if (m.remount && ::mount(nullptr, m.target.c_str(), nullptr, MS_BIND | MS_REMOUNT | m.remountFlags, nullptr) != 0)
      childFail(plan, (m.remountFlags & MS_RDONLY) ? "remount read-only" : "remount nodev", m.target.c_str());
  }
  for (const auto& [target, link] : plan.symlinks) (void)::symlink(target.c_str(), link.c_str());
  if (::syscall(SYS_pivot_root, ".", ".") != 0) childFail(plan, "pivot_root", plan.rootfs.c_str());
  if (::umount2(".", MNT_DETACH) != 0) childFail(plan, "detach the old root", "");
  if (::chdir("/") != 0) childFail(plan, "chdir", "/");
  if (::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) childFail(plan, "sethostname", plan.hostname.c_str());
  setLinkUp("lo");
  setLinkUp("eth0");
  ::setsid();
  if (::ioctl(plan.slaveFd, TIOCSCTTY, 0) != 0) childFail(plan, "take the console as controlling terminal", "");
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(plan.slaveFd, fd) < 0) childFail(plan, "dup2", "console");
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  ::umask(022);  // a system's init expects the usual mask, not vmmd's 077
  const char* step = "";
  if (!applyConfinement(plan.confinement, &step)) childFail(plan, step, "");
  ::execve(plan.argv[0], plan.argv.data(), plan.envp.data());
  childFail(plan, "cannot execute", plan.argv[0]);
}

// Console output while no client (vmmd) is connected: the most recent 64 KiB.
char gHeld[64 << 10];
size_t gHeldLen = 0;

void keepForNextClient(const char* data, size_t len) {
  if (len > sizeof(gHeld)) return;  // reads are 4 KiB at most
  if (gHeldLen + len > sizeof(gHeld)) {
    size_t drop = gHeldLen + len - sizeof(gHeld);
    std::memmove(gHeld, gHeld + drop, gHeldLen - drop);
    gHeldLen -= drop;
  }
  std::memcpy(gHeld + gHeldLen, data, len);
  gHeldLen += len;
}

// The monitor: relays the console between the pty and one client, exits with init's status.
[[noreturn]] void monitorMain(int master, int listenFd, pid_t init) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, init, 0));
  int client = -1;
  char buf[4096];
  bool masterIdle = false;  // no slave open (EIO): poll it again after a pause
  for (;;) {
    struct pollfd p[4] = {{pidfd, POLLIN, 0}, {listenFd, POLLIN, 0}, {masterIdle ? -1 : master, POLLIN, 0}, {client, POLLIN, 0}};
    int n = ::poll(p, 4, masterIdle ? 200 : (pidfd < 0 ? 500 : -1));
    if (n < 0 && errno != EINTR) break;
    masterIdle = false;
    if (p[1].revents & POLLIN) {
      int c = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) {
        if (client >= 0) ::close(client);
        client = c;
        if (gHeldLen > 0) (void)::send(client, gHeld, gHeldLen, MSG_NOSIGNAL | MSG_DONTWAIT);
        gHeldLen = 0;
      }
    }
    if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = ::read(master, buf, sizeof(buf));
      if (r > 0 && client >= 0 && ::send(client, buf, static_cast<size_t>(r), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) {
        ::close(client);
        client = -1;
      }
      if (r > 0 && client < 0) keepForNextClient(buf, static_cast<size_t>(r));
      if (r <= 0) masterIdle = true;
    }
    if (client >= 0 && (p[3].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = ::read(client, buf, sizeof(buf));
      if (r > 0) {
        (void)!::write(master, buf, static_cast<size_t>(r));
      } else {
        ::close(client);
        client = -1;
      }
    }
    int status = 0;
    if ((pidfd < 0 || (p[0].revents & POLLIN)) && ::waitpid(init, &status, WNOHANG) == init)
      _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  _exit(125);
}

Result<std::pair<fs::UniqueFd, fs::UniqueFd>> makePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return systemError("pipe2", errno);
  return std::make_pair(fs::UniqueFd(fds[0]), fs::UniqueFd(fds[1]));
}

bool waitReadable(int fd, Deadline deadline) {
  pollfd p{fd, POLLIN, 0};
  return pollFor(&p, 1, deadline) > 0;
}

// A recursive bind; `remount` flags (MS_RDONLY, MS_NODEV...) are applied to its top mount.
MountOp& addBind(ChildPlan& plan, const std::string& source, const std::string& target, MountOp::Kind kind, unsigned long remount = 0) {
  MountOp m;
  m.source = source;
  m.target = target;
  m.flags = MS_BIND | MS_REC;
  m.kind = kind;
  m.remount = remount != 0;
  m.remountFlags = remount;
  plan.mounts.push_back(m);
  return plan.mounts.back();
}

// The flags a bind of `path` must keep when remounted: in a user namespace the kernel refuses
// to clear the ones the host's mount has (locked), outside it clearing them would loosen it.
unsigned long lockedFlags(const std::string& path) {
  struct statvfs sv{};
  if (::statvfs(path.c_str(), &sv) != 0) return 0;
  unsigned long f = 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_RDONLY) f |= MS_RDONLY;
  return f;
}

// LXC's proc:mixed: the host-wide knobs of /proc/sys read-only (its net/ stays writable: it is
// the container's own network namespace), sysrq-trigger read-only, and the files that show
// host kernel memory, keys and timers masked by /dev/null.
void addProcMixed(ChildPlan& plan, const std::string& proc) {
  constexpr unsigned long kProcFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  addBind(plan, proc + "/sys/net", proc + "/sys/net", MountOp::none, kProcFlags).optional = true;
  addBind(plan, proc + "/sys", proc + "/sys", MountOp::none, MS_RDONLY | kProcFlags);
  addBind(plan, proc + "/sysrq-trigger", proc + "/sysrq-trigger", MountOp::none, MS_RDONLY | kProcFlags).optional = true;
  for (const char* f : {"kcore", "keys", "timer_list", "sched_debug", "kallsyms", "latency_stats"})
    addBind(plan, "/dev/null", proc + "/" + f, MountOp::none).optional = true;
}

void addFs(ChildPlan& plan, const std::string& fstype, const std::string& target, unsigned long flags, const std::string& data) {
  MountOp m;
  m.source = fstype;
  m.fstype = fstype;
  m.target = target;
  m.flags = flags;
  m.data = data;
  plan.mounts.push_back(m);
}

// The rootfs as a detached copy of its mounts, nodev (the container's root could mknod), and
// with a user namespace given, idmapped through it: the host's uid 0 on disk is the
// container's root, so the rootfs keeps host ids whether the container is privileged or not.
Result<fs::UniqueFd> rootTree(const std::string& rootfs, int usernsFd) {
  DetachedMountOptions options;
  options.nodev = true;
  options.idmapUserns = usernsFd;
  auto tree = detachedMount(rootfs, options);
  if (!tree.ok() && usernsFd >= 0) return tree.error().wrap("an unprivileged container's rootfs");
  return tree;
}

Status sendGo(int sock, int fd) {
  char go = 1;
  if (sendWithFd(sock, &go, 1, fd) != 1) return systemError("cannot release the container's init", errno);
  return {};
}

}  // namespace

Status writeIdMaps(pid_t pid, uint32_t base, uint32_t size) {
  std::string map = "0 " + std::to_string(base) + " " + std::to_string(size) + "\n";
  for (const char* f : {"uid_map", "gid_map"}) {
    std::string path = "/proc/" + std::to_string(pid) + "/" + f;
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return systemError("cannot open " + path, errno);
    ssize_t n = ::write(fd, map.data(), map.size());
    int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(map.size())) return systemError("cannot write " + path, err);
  }
  return {};
}

Result<PendingContainer> spawnContainer(const ContainerSpec& spec, Deadline deadline) {
  auto plan = std::make_unique<ChildPlan>();
  const std::string r = ".";  // init works inside the attached rootfs
  plan->rootfs = spec.rootfs;
  plan->hostname = spec.hostname;
  plan->userns = spec.userns;
  plan->confinement = spec.confinement;
  addFs(*plan, "proc", r + "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
  addProcMixed(*plan, r + "/proc");
  addFs(*plan, "sysfs", r + "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "");
  // nodev: the nodes below are separate binds of the host's /dev, which keep working.
  addFs(*plan, "tmpfs", r + "/dev", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=755,size=65536k");
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"})
    addBind(*plan, std::string("/dev/") + node, r + "/dev/" + node, MountOp::file);
  addFs(*plan, "devpts", r + "/dev/pts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  addFs(*plan, "tmpfs", r + "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
  plan->symlinks = {{"pts/ptmx", r + "/dev/ptmx"},
                    {"/proc/self/fd", r + "/dev/fd"},
                    {"/proc/self/fd/0", r + "/dev/stdin"},
                    {"/proc/self/fd/1", r + "/dev/stdout"},
                    {"/proc/self/fd/2", r + "/dev/stderr"}};
  for (const auto& m : spec.mounts) {
    struct stat st{};
    if (::stat(m.source.c_str(), &st) != 0) return invalidArgument("mount: " + m.source + " does not exist");
    // A device given on purpose keeps working; any other mount gets nosuid and nodev.
    unsigned long flags = (m.readonly ? MS_RDONLY : 0) | (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? 0 : MS_NOSUID | MS_NODEV);
    addBind(*plan, m.source, r + m.target, S_ISDIR(st.st_mode) ? MountOp::dir : MountOp::file, flags | lockedFlags(m.source));
  }
  plan->argvStore = spec.argv;
  for (const auto& [k, v] : spec.env) plan->envStore.push_back(k + "=" + v);
  for (auto& a : plan->argvStore) plan->argv.push_back(a.data());
  plan->argv.push_back(nullptr);
  for (auto& e : plan->envStore) plan->envp.push_back(e.data());
  plan->envp.push_back(nullptr);

  fs::UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master.valid()) return systemError("posix_openpt", errno);
  char name[128];
  if (::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0 || ::ptsname_r(master.get(), name, sizeof(name)) != 0)
    return systemError("cannot set up the console pty", errno);
  plan->slavePath = name;
  fs::UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave.valid()) return systemError(std::string("cannot open ") + name, errno);
  addBind(*plan, plan->slavePath, r + "/dev/console", MountOp::file);
  plan->slaveFd = slave.get();

  VMM_ASSIGN(auto pidPipe, makePipe());
  int goPair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, goPair) != 0) return systemError("socketpair", errno);
  std::pair<fs::UniqueFd, fs::UniqueFd> goChannel{fs::UniqueFd(goPair[0]), fs::UniqueFd(goPair[1])};
  VMM_ASSIGN(auto errPipe, makePipe());
  plan->goFd = goChannel.first.get();
  plan->errFd = errPipe.second.get();
  std::vector<char> stack(512 << 10);
  int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET | SIGCHLD;
  if (spec.userns) flags |= CLONE_NEWUSER;

  pid_t monitor = ChildReaper::fork();
  if (monitor < 0) return systemError("fork", errno);
  if (monitor == 0) {
    ::setsid();
    // The monitor never execs: drop every descriptor of vmmd (its lock file, API sockets,
    // epoll) except its own, or a restarted vmmd would find them held.
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; ++fd) ::dup2(devnull, fd);
    int keep[] = {master.get(), spec.consoleListenFd, pidPipe.second.get(), goChannel.first.get(), errPipe.second.get(), slave.get()};
    constexpr int kKeep = sizeof(keep) / sizeof(keep[0]);
    for (int i = 1; i < kKeep; ++i)
      for (int j = i; j > 0 && keep[j - 1] > keep[j]; --j) std::swap(keep[j - 1], keep[j]);
    unsigned from = 3;
    for (int fd : keep) {
      if (static_cast<unsigned>(fd) > from) ::syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0);
      from = static_cast<unsigned>(fd) + 1;
    }
    ::syscall(SYS_close_range, from, ~0U, 0);
    plan->closeInChild[0] = master.get();
    plan->closeInChild[1] = spec.consoleListenFd;
    pid_t init = ::clone(childMain, stack.data() + stack.size(), flags, plan.get());
    int err = errno;
    pid_t report = init > 0 ? init : -err;
    (void)!::write(pidPipe.second.get(), &report, sizeof(report));
    if (init <= 0) _exit(1);
    ::close(pidPipe.second.get());
    ::close(goChannel.first.get());
    ::close(errPipe.second.get());
    ::close(slave.get());
    monitorMain(master.get(), spec.consoleListenFd, init);
  }
  PendingContainer pc;
  pc.monitorPid = monitor;
  pc.rootfs = spec.rootfs;
  pc.userns = spec.userns;
  pidPipe.second.reset();
  goChannel.first.reset();
  errPipe.second.reset();
  pc.goFd = std::move(goChannel.second);
  pc.errFd = std::move(errPipe.first);
  pid_t init = -1;
  if (!waitReadable(pidPipe.first.get(), deadline) || ::read(pidPipe.first.get(), &init, sizeof(init)) != sizeof(init) || init <= 0) {
    pc.abort();
    if (init < 0) return systemError("cannot create the container's namespaces (clone)", -init);
    return timeoutError("the container's monitor process did not report its init");
  }
  pc.initPid = init;
  return pc;
}

Status PendingContainer::release(Deadline deadline) {
  fs::UniqueFd userNamespace;
  if (userns) {
    std::string path = "/proc/" + std::to_string(initPid) + "/ns/user";
    userNamespace = fs::UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!userNamespace.valid()) return systemError("cannot open " + path, errno);
  }
  VMM_ASSIGN(auto tree, rootTree(rootfs, userNamespace.get()));
  if (Status s = sendGo(goFd.get(), tree.get()); !s.ok()) return s;
  goFd.reset();
  if (!waitReadable(errFd.get(), deadline)) return timeoutError("the container's init did not start in time");
  ChildError e{};
  ssize_t n = ::read(errFd.get(), &e, sizeof(e));
  if (n == 0) return {};  // exec'd: the close-on-exec pipe reached EOF
  if (n != static_cast<ssize_t>(sizeof(e))) return internalError("the container's init failed without saying why");
  e.step[sizeof(e.step) - 1] = 0;
  return invalidArgument(std::string("container init failed: ") + e.step + ": " + std::strerror(e.err));
}

void PendingContainer::abort() {
  if (initPid > 0) ::kill(initPid, SIGKILL);
  if (monitorPid > 0) ::kill(monitorPid, SIGKILL);
  goFd.reset();
}

}  // namespace vmm::drivers::lxc
