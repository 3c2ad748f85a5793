#include "base/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "base/command_runner.h"
#include "base/fs.h"
#include "base/idmapped_mount.h"
#include "base/socket_util.h"
#include "base/strings.h"

extern char** environ;

namespace vmm {

namespace {

// Stale statuses: a status nobody claimed stays here under its pid, and a later child can get
// the same pid. Children are therefore forked with the reaper's mutex held (ChildReaper::fork),
// which also covers every waitpid(): at that moment any status kept for the new child's pid is
// an earlier process's, and it is dropped. (pidfds would not help by themselves: as a child
// subreaper vmmd must reap every child with waitpid(-1) anyway; the bookkeeping is what was
// unsound.)
struct ReaperState {
  std::mutex mu;
  std::condition_variable cv;
  bool enabled = false;
  std::unordered_map<pid_t, int> unclaimed;  // pid -> wait status
  std::deque<pid_t> unclaimedOrder;
  std::unordered_map<pid_t, std::function<void(int)>> callbacks;
};

ReaperState& reaper() {
  static ReaperState* s = new ReaperState;  // never destroyed: used from detached threads
  return *s;
}

std::vector<std::string> buildEnv(const std::map<std::string, std::string>& extra, bool clear) {
  std::map<std::string, std::string> merged;
  if (!clear) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos) continue;
      merged[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
  } else if (const char* path = getenv("PATH")) {
    merged["PATH"] = path;
  }
  for (const auto& [k, v] : extra) merged[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : merged) out.push_back(k + "=" + v);
  return out;
}

// Everything the child needs, prepared before fork(): after fork only async-signal-safe calls.
struct ChildSetup {
  std::vector<std::string> argvStore, envStore;
  std::string exe;  // argv[0] resolved; execvpe's own lookup when empty
  std::string sh = "/bin/sh";
  std::vector<char*> argv, envp;
  std::vector<char*> shArgv;  // sh exe args...: for an exe without #! (ENOEXEC), as execvp does
  std::vector<int> passFds;
  int in = -1, out = -1, err = -1;
  bool newSession = true;
  std::string cwd;
  bool cwdBeforeConfinement = false;
  Confinement confinement;
  std::optional<PreparedRoot> root;  // confinement.root, every path prepared before the fork
  int userns = -1;                    // confinement.rootShownAs's namespace

  void finalize() {
    if (!argvStore.empty() && argvStore[0].find('/') == std::string::npos) {
      const char* path = nullptr;
      for (const auto& e : envStore)
        if (e.rfind("PATH=", 0) == 0) path = e.c_str() + 5;
      exe = findExecutable(argvStore[0], path ? path : "/usr/bin:/bin");  // execvpe's default
    }
    for (auto& a : argvStore) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : envStore) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (!exe.empty()) {
      shArgv = {sh.data(), exe.data()};
      shArgv.insert(shArgv.end(), argv.begin() + 1, argv.end());
    }
  }
};

// A step of the child's set-up that failed, sent to the parent over a close-on-exec pipe (end
// of file there means the exec happened).
enum class ChildStep : int { descriptors = 1, network_namespace, limit, private_root, user_namespace, groups, gid, uid, no_new_privileges, capabilities, cwd };
struct ChildFailure {
  ChildStep step;
  int err;
  int detail;  // the resource of a failed limit
};

std::string describeChildStep(const ChildFailure& f, const ChildSetup& s) {
  switch (f.step) {
    case ChildStep::descriptors: return "placing its descriptors (fcntl F_DUPFD)";
    case ChildStep::network_namespace: return "unshare(CLONE_NEWNET)";
    case ChildStep::limit: return "setrlimit(" + std::to_string(f.detail) + ")";
    case ChildStep::private_root: return "private root: " + rootStepName(f.detail);
    case ChildStep::user_namespace: return "entering the user namespace of " + std::to_string(s.confinement.rootShownAs.value_or(0));
    case ChildStep::groups: return "setgroups";
    case ChildStep::gid: return "setresgid(" + std::to_string(s.confinement.gid.value_or(0)) + ")";
    case ChildStep::uid: return "setresuid(" + std::to_string(s.confinement.uid.value_or(0)) + ")";
    case ChildStep::no_new_privileges: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case ChildStep::capabilities: return "dropping capabilities";
    case ChildStep::cwd: return "chdir " + s.cwd;
  }
  return "set-up";
}

[[noreturn]] void childFail(int reportFd, ChildStep step, int detail = 0) {
  ChildFailure f{step, errno, detail};
  (void)!write(reportFd, &f, sizeof f);
  _exit(126);
}

// For Confinement::rootShownAs. The securebits first (they need CAP_SETPCAP): uid 0 then gets
// nothing from an exec and keeps nothing special on a uid change; then the bounding set, then
// every set the process holds.
void dropAllCapabilities(int reportFd) {
  constexpr unsigned long kLockedNoRoot = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                          SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                          SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, kLockedNoRoot, 0, 0, 0) != 0) childFail(reportFd, ChildStep::capabilities, 1);
  for (unsigned long cap = 0; cap < 64; ++cap)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) childFail(reportFd, ChildStep::capabilities, 2);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) childFail(reportFd, ChildStep::capabilities, 3);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, none) != 0) childFail(reportFd, ChildStep::capabilities, 4);
}

// Credentials change through the raw system calls: they act on the calling thread only, which
// after fork() is the whole process, and unlike glibc's wrappers they do not signal threads
// that no longer exist here.
void applyConfinement(const Confinement& c, const std::optional<PreparedRoot>& root, int userns, int reportFd) {
  if (c.newNetworkNamespace && unshare(CLONE_NEWNET) != 0) childFail(reportFd, ChildStep::network_namespace);
  for (const auto& [resource, value] : c.limits) {
    rlimit rl{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
    if (setrlimit(static_cast<__rlimit_resource_t>(resource), &rl) != 0) childFail(reportFd, ChildStep::limit, resource);
  }
  if (root) {
    int step = 0;
    if (int err = enterRoot(*root, &step); err != 0) {
      errno = err;
      childFail(reportFd, ChildStep::private_root, step);
    }
  }
  // After the mounts (they need the host's capabilities). Entering makes the process's host
  // root an unmapped id there; it then takes the namespace's 0, which is the host's id.
  if (userns >= 0) {
    if (setns(userns, CLONE_NEWUSER) != 0) childFail(reportFd, ChildStep::user_namespace);
    if (syscall(SYS_setgroups, 0, nullptr) != 0) childFail(reportFd, ChildStep::groups);
    if (syscall(SYS_setresgid, 0, 0, 0) != 0) childFail(reportFd, ChildStep::gid);
    if (syscall(SYS_setresuid, 0, 0, 0) != 0) childFail(reportFd, ChildStep::uid);
  }
  if (c.gid) {
    if (syscall(SYS_setgroups, c.groups.size(), c.groups.data()) != 0) childFail(reportFd, ChildStep::groups);
    if (syscall(SYS_setresgid, *c.gid, *c.gid, *c.gid) != 0) childFail(reportFd, ChildStep::gid);
  }
  if (c.uid && syscall(SYS_setresuid, *c.uid, *c.uid, *c.uid) != 0) childFail(reportFd, ChildStep::uid);
  // Root of a user namespace holds every capability there, and an exec as root gives them back:
  // entering one always drops them for good.
  if (userns >= 0) dropAllCapabilities(reportFd);
  if (c.noNewPrivileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) childFail(reportFd, ChildStep::no_new_privileges);
}

[[noreturn]] void childExec(ChildSetup& s, int reportFd) {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
  if (s.newSession) setsid();
  // Move passed fds (and the report pipe) out of the way of 0..2 and of their targets first.
  std::vector<int> high;
  int base = 1000;
  for (size_t i = 0; i < s.passFds.size(); ++i) {
    int h = fcntl(s.passFds[i], F_DUPFD, base);
    base = h + 1;
    high.push_back(h);
  }
  int report = fcntl(reportFd, F_DUPFD_CLOEXEC, base);
  // The private root's detached mounts stay until it is entered (close-on-exec: not beyond).
  int keepEnd = report + 1;
  // A confinement descriptor lost here would leave the child less confined: that ends it.
  if (s.userns >= 0) {
    s.userns = fcntl(s.userns, F_DUPFD_CLOEXEC, keepEnd);
    if (s.userns < 0) childFail(report, ChildStep::descriptors);
    keepEnd = s.userns + 1;
  }
  if (s.root)
    for (auto& m : s.root->mounts)
      if (m.tree >= 0) {
        m.tree = fcntl(m.tree, F_DUPFD_CLOEXEC, keepEnd);
        if (m.tree < 0) childFail(report, ChildStep::descriptors);
        keepEnd = m.tree + 1;
      }
  int nul = open("/dev/null", O_RDWR);
  dup2(s.in >= 0 ? s.in : nul, 0);
  dup2(s.out >= 0 ? s.out : nul, 1);
  dup2(s.err >= 0 ? s.err : (s.out >= 0 ? s.out : nul), 2);
  for (size_t i = 0; i < high.size(); ++i) dup2(high[i], static_cast<int>(3 + i));
  close_range(static_cast<unsigned>(3 + high.size()), static_cast<unsigned>(report - 1), 0);
  close_range(static_cast<unsigned>(keepEnd), ~0U, 0);
  // After the fds: a limit on open files must not stop their placement.
  if (s.cwdBeforeConfinement && !s.cwd.empty() && chdir(s.cwd.c_str()) != 0) childFail(report, ChildStep::cwd);
  applyConfinement(s.confinement, s.root, s.userns, report);
  if (!s.cwdBeforeConfinement && !s.cwd.empty() && chdir(s.cwd.c_str()) != 0) childFail(report, ChildStep::cwd);
  if (s.exe.empty()) {
    execvpe(s.argv[0], s.argv.data(), s.envp.data());
  } else {
    execve(s.exe.c_str(), s.argv.data(), s.envp.data());
    if (errno == ENOEXEC) execve(s.sh.c_str(), s.shArgv.data(), s.envp.data());
  }
  _exit(127);
}

Result<pid_t> forkExec(ChildSetup& s) {
  const Confinement& c = s.confinement;
  if (c.uid.has_value() != c.gid.has_value()) return invalidArgument("a confined child needs both a uid and a gid");
  if (!c.groups.empty() && !c.gid) return invalidArgument("supplementary groups come with a gid");
  if (c.rootShownAs && c.uid) return invalidArgument("a confined child gets a uid or a user namespace's root, not both");
  if (c.rootShownAs) {
    VMM_ASSIGN(s.userns, userNamespaceShowingRootAs(*c.rootShownAs));
  }
  if (c.root) {
    VMM_ASSIGN(auto prepared, prepareRoot(*c.root));
    s.root = std::move(prepared);
  }
  s.finalize();
  int reportPipe[2];
  if (pipe2(reportPipe, O_CLOEXEC) != 0) return systemError("pipe", errno);
  fs::UniqueFd reportR(reportPipe[0]), reportW(reportPipe[1]);
  pid_t pid = ChildReaper::fork(c.newPidNamespace ? CLONE_NEWPID : 0);
  if (pid < 0) return systemError(c.newPidNamespace ? "cannot create a pid namespace (clone)" : "fork", errno);
  if (pid == 0) childExec(s, reportW.get());
  reportW.reset();
  // End of file as soon as the child execs (or exits): a few milliseconds at most.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = read(reportR.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    (void)ChildReaper::wait(pid, Deadline::after(Millis(5000)));
    return systemError("cannot start " + s.argvStore[0] + ": " + describeChildStep(failure, s), failure.err);
  }
  return pid;
}

void remember(ReaperState& r, pid_t pid, int status) {
  auto cb = r.callbacks.find(pid);
  if (cb != r.callbacks.end()) {
    auto fn = std::move(cb->second);
    r.callbacks.erase(cb);
    r.mu.unlock();
    fn(status);
    r.mu.lock();
    return;
  }
  r.unclaimed[pid] = status;
  r.unclaimedOrder.push_back(pid);
  while (r.unclaimedOrder.size() > 4096) {
    r.unclaimed.erase(r.unclaimedOrder.front());
    r.unclaimedOrder.pop_front();
  }
  r.cv.notify_all();
}

}  // namespace

std::string findExecutable(const std::string& name, const char* path) {
  if (name.empty() || name.find('/') != std::string::npos) return name;
  if (!path) path = getenv("PATH");
  std::vector<std::string> dirs = split(path ? path : "", ':', true);
  for (const char* d : {"/usr/local/sbin", "/usr/sbin", "/sbin"}) dirs.emplace_back(d);
  for (const auto& d : dirs) {
    std::string candidate = d + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && !fs::isDirectory(candidate)) return candidate;
  }
  return "";
}

std::string CommandResult::describe() const {
  std::string s = exitCode >= 0 ? "exit status " + std::to_string(exitCode) : "killed by signal " + std::to_string(signal);
  auto msg = std::string(trim(err.empty() ? out : err));
  if (!msg.empty()) {
    auto nl = msg.find('\n');
    // prefer the last line: tools print context first and the reason last
    auto last = msg.rfind('\n');
    if (nl != std::string::npos) msg = msg.substr(last + 1);
    s += ": " + msg;
  }
  return s;
}

std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "ended (status " + std::to_string(status) + ")";
}

bool processAlive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

bool processRunning(pid_t pid) {
  auto stat = fs::readFile("/proc/" + std::to_string(pid) + "/stat", 8192);
  if (!stat.ok()) return false;
  auto pos = stat->rfind(')');
  return pos != std::string::npos && pos + 2 < stat->size() && (*stat)[pos + 2] != 'Z' && (*stat)[pos + 2] != 'X';
}

namespace {

// /proc/PID/stat from field 3 (state) on. comm may contain spaces and parentheses: the
// fields start after the last ')'.
std::vector<std::string> procStatFields(pid_t pid) {
  auto stat = fs::readFile("/proc/" + std::to_string(pid) + "/stat", 8192);
  if (!stat.ok()) return {};
  auto pos = stat->rfind(')');
  if (pos == std::string::npos || pos + 2 > stat->size()) return {};
  return split(std::string_view(*stat).substr(pos + 2), ' ');
}

}  // namespace

std::optional<uint64_t> processStartTime(pid_t pid) {
  auto fields = procStatFields(pid);
  if (fields.size() < 20) return std::nullopt;  // starttime is field 22
  return parseUint(fields[19]);
}

std::optional<pid_t> processParent(pid_t pid) {
  auto fields = procStatFields(pid);
  if (fields.size() < 2) return std::nullopt;  // ppid is field 4
  auto ppid = parseInt(fields[1]);
  if (!ppid) return std::nullopt;
  return static_cast<pid_t>(*ppid);
}

std::optional<pid_t> processSession(pid_t pid) {
  auto fields = procStatFields(pid);
  if (fields.size() < 4) return std::nullopt;  // session is field 6
  auto sid = parseInt(fields[3]);
  if (!sid) return std::nullopt;
  return static_cast<pid_t>(*sid);
}

std::vector<pid_t> sessionMembers(pid_t sid) {
  std::vector<pid_t> out;
  auto names = fs::listDir("/proc");
  if (!names.ok()) return out;
  for (const auto& n : *names) {
    auto pid = parseInt(n);
    if (!pid || *pid <= 0) continue;
    auto fields = procStatFields(static_cast<pid_t>(*pid));
    if (fields.size() < 4 || fields[0] == "Z" || fields[0] == "X") continue;
    if (parseInt(fields[3]) == sid) out.push_back(static_cast<pid_t>(*pid));
  }
  return out;
}

void ChildReaper::enable() {
  std::lock_guard lock(reaper().mu);
  reaper().enabled = true;
}

bool ChildReaper::enabled() {
  std::lock_guard lock(reaper().mu);
  return reaper().enabled;
}

void ChildReaper::reapAll() {
  auto& r = reaper();
  // waitpid() under the mutex: a pid freed here cannot be handed to a fork() in between.
  std::unique_lock lock(r.mu);
  while (true) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    remember(r, pid, status);
  }
}

pid_t ChildReaper::fork(int cloneFlags) {
  auto& r = reaper();
  std::unique_lock lock(r.mu);
  // No stack given: the child runs on its copy of the parent's, as after fork().
  pid_t pid = cloneFlags == 0 ? ::fork() : static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD | cloneFlags, nullptr, nullptr, nullptr, nullptr));
  if (pid == 0) {
    lock.release();  // the child's copy of the mutex is never used again
    return 0;
  }
  if (pid > 0 && r.unclaimed.erase(pid) > 0)
    r.unclaimedOrder.erase(std::remove(r.unclaimedOrder.begin(), r.unclaimedOrder.end(), pid), r.unclaimedOrder.end());
  return pid;
}

Result<int> ChildReaper::wait(pid_t pid, Deadline deadline) {
  auto& r = reaper();
  std::unique_lock lock(r.mu);
  if (r.enabled) {
    while (true) {
      auto it = r.unclaimed.find(pid);
      if (it != r.unclaimed.end()) {
        int st = it->second;
        r.unclaimed.erase(it);
        return st;
      }
      if (deadline.expired()) return timeoutError("process " + std::to_string(pid) + " did not exit in time");
      // SIGCHLD may be handled late; poll every 50 ms as a safety net.
      r.cv.wait_for(lock, std::min<Millis>(deadline.remaining(), Millis(50)));
      lock.unlock();
      reapAll();
      lock.lock();
    }
  }
  lock.unlock();
  while (true) {
    int status = 0;
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) return status;
    if (got < 0 && errno != EINTR) return systemError("waitpid " + std::to_string(pid), errno);
    if (deadline.expired()) return timeoutError("process " + std::to_string(pid) + " did not exit in time");
    usleep(got == 0 ? 2000 : 0);
  }
}

void ChildReaper::onExit(pid_t pid, std::function<void(int)> fn) {
  auto& r = reaper();
  std::unique_lock lock(r.mu);
  auto it = r.unclaimed.find(pid);
  if (it != r.unclaimed.end()) {
    int st = it->second;
    r.unclaimed.erase(it);
    lock.unlock();
    fn(st);
    return;
  }
  r.callbacks[pid] = std::move(fn);
}

Result<pid_t> spawnProcess(const std::vector<std::string>& argv, const SpawnOptions& o) {
  if (argv.empty()) return invalidArgument("empty command");
  ChildSetup s;
  s.argvStore = argv;
  s.envStore = buildEnv(o.env, false);
  s.passFds = o.passFds;
  s.in = o.stdinFd;
  s.out = o.stdoutFd;
  s.err = o.stderrFd;
  s.newSession = o.newSession;
  s.cwd = o.cwd;
  s.cwdBeforeConfinement = o.cwdBeforeConfinement;
  s.confinement = o.confinement;
  return forkExec(s);
}

Result<CommandResult> runCommand(const std::vector<std::string>& argv, Deadline deadline, std::string stdinData) {
  RunOptions o;
  o.deadline = deadline;
  o.stdinData = std::move(stdinData);
  return runCommand(argv, o);
}

namespace {

// The child runs to completion with its output captured: what the system runner does.
Result<CommandResult> runToCompletion(const std::vector<std::string>& argv, const RunOptions& o) {
  int inPipe[2], outPipe[2], errPipe[2];
  if (pipe2(inPipe, O_CLOEXEC) != 0) return systemError("pipe", errno);
  fs::UniqueFd inR(inPipe[0]), inW(inPipe[1]);
  if (pipe2(outPipe, O_CLOEXEC) != 0) return systemError("pipe", errno);
  fs::UniqueFd outR(outPipe[0]), outW(outPipe[1]);
  if (pipe2(errPipe, O_CLOEXEC) != 0) return systemError("pipe", errno);
  fs::UniqueFd errR(errPipe[0]), errW(errPipe[1]);

  ChildSetup s;
  s.argvStore = argv;
  s.envStore = buildEnv(o.env, o.clearEnv);
  s.in = inR.get();
  s.out = outW.get();
  s.err = errW.get();
  s.newSession = false;
  s.cwd = o.cwd;
  s.confinement = o.confinement;
  auto pid = forkExec(s);
  if (!pid.ok()) return pid.takeError();
  inR.reset();
  outW.reset();
  errW.reset();

  for (int fd : {inW.get(), outR.get(), errR.get()}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  CommandResult res;
  size_t inOff = 0;
  if (o.stdinData.empty()) inW.reset();
  bool timedOut = false;
  while (outR.valid() || errR.valid()) {
    pollfd pfds[3];
    int n = 0;
    if (inW.valid()) pfds[n++] = {inW.get(), POLLOUT, 0};
    if (outR.valid()) pfds[n++] = {outR.get(), POLLIN, 0};
    if (errR.valid()) pfds[n++] = {errR.get(), POLLIN, 0};
    int rc = pollFor(pfds, static_cast<size_t>(n), o.deadline);
    if (rc == 0 || o.deadline.expired()) {
      timedOut = true;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (!pfds[i].revents) continue;
      int fd = pfds[i].fd;
      if (fd == inW.get()) {
        ssize_t w = write(fd, o.stdinData.data() + inOff, o.stdinData.size() - inOff);
        if (w > 0) inOff += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) inW.reset();
        if (inOff >= o.stdinData.size()) inW.reset();
        continue;
      }
      char buf[65536];
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        std::string& dst = fd == outR.get() ? res.out : res.err;
        size_t room = o.maxOutput > dst.size() ? o.maxOutput - dst.size() : 0;
        dst.append(buf, std::min(room, static_cast<size_t>(r)));
      } else if (r == 0 || errno != EAGAIN) {
        if (fd == outR.get()) outR.reset();
        else errR.reset();
      }
    }
  }
  if (timedOut) {
    ::kill(*pid, SIGKILL);
    (void)ChildReaper::wait(*pid, Deadline::after(Millis(5000)));
    return timeoutError(argv[0] + " did not finish before its deadline (killed)");
  }
  auto status = ChildReaper::wait(*pid, o.deadline.earlier(Deadline::after(Millis(10000))));
  if (!status.ok()) {
    ::kill(*pid, SIGKILL);
    (void)ChildReaper::wait(*pid, Deadline::after(Millis(5000)));
    return timeoutError(argv[0] + " did not exit before its deadline (killed)");
  }
  if (WIFEXITED(*status)) {
    res.exitCode = WEXITSTATUS(*status);
    if (res.exitCode == 127 && res.err.empty()) return notFound("cannot run " + argv[0] + ": command not found");
  } else if (WIFSIGNALED(*status)) {
    res.signal = WTERMSIG(*status);
  }
  return res;
}

class SystemCommandRunner final : public CommandRunner {
 public:
  Result<CommandResult> run(const std::vector<std::string>& argv, const RunOptions& options) override {
    if (argv.empty()) return invalidArgument("empty command");
    return runToCompletion(argv, options);
  }
};

}  // namespace

CommandRunner& systemCommandRunner() {
  static SystemCommandRunner runner;
  return runner;
}

Result<CommandResult> runCommand(const std::vector<std::string>& argv, const RunOptions& o) {
  if (argv.empty()) return invalidArgument("empty command");
  return commandRunner().run(argv, o);
}

Result<CommandResult> runChecked(const std::vector<std::string>& argv, const RunOptions& options) {
  auto r = runCommand(argv, options);
  if (!r.ok()) return r;
  if (!r->success()) return internalError(argv[0] + " failed: " + r->describe());
  return r;
}

}  // namespace vmm
