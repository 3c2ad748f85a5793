#include "tests/support/tgt_target.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "tests/support/host_tools.h"

namespace vmm::testutil {

namespace {

constexpr int kAttempts = 6;

// A TCP port nobody listens on right now (another process may take it before tgtd does;
// start() then tries another).
Result<int> freeLoopbackPort() {
  fs::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return systemError("socket", errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return systemError("bind", errno);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return systemError("getsockname", errno);
  return static_cast<int>(ntohs(a.sin_port));
}

bool acceptsConnections(int port) {
  fs::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return fd.valid() && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// tgtd's management channel number: it must be unique among running tgtds (0..32767).
int randomControlPort() {
  static std::mt19937 rng(std::random_device{}());
  return std::uniform_int_distribution<int>(10000, 32767)(rng);
}

}  // namespace

std::string TgtTarget::missing() {
  std::string m = missingRoot("tgtd");
  return m.empty() ? missingTools({"tgtd", "tgtadm"}, "tgt") : m;
}

std::string TgtTarget::log() const {
  if (dir_.empty()) return "";
  return fs::readFile(dir_ + "/tgtd.log").valueOr("");
}

Status TgtTarget::tgtadm(std::vector<std::string> args) {
  if (pid_ <= 0) return invalidArgument("tgtd is not running");
  std::vector<std::string> argv{"tgtadm", "-C", std::to_string(controlPort_), "--lld", "iscsi"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(10000));
  VMM_ASSIGN(auto r, runCommand(argv, opts));
  if (!r.success()) return internalError("tgtadm " + join(args, " ") + ": " + r.describe());
  return {};
}

Status TgtTarget::startOn(int port, int controlPort) {
  std::string logPath = dir_ + "/tgtd.log";
  fs::UniqueFd logFd(::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!logFd.valid()) return systemError("open " + logPath, errno);
  SpawnOptions so;
  so.stdoutFd = logFd.get();
  // setpriv execs tgtd in the same process: if the test dies, the kernel kills tgtd.
  VMM_ASSIGN(pid_t pid, spawnProcess({"setpriv", "--pdeathsig", "KILL", "--", findTool("tgtd"), "-f", "-C", std::to_string(controlPort),
                                      "--iscsi", "portal=127.0.0.1:" + std::to_string(port)},
                                     so));
  pid_ = pid;
  port_ = port;
  controlPort_ = controlPort;
  Deadline deadline = Deadline::after(Millis(10000));
  while (!deadline.expired()) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // its socket files, if any, belong to the tgtd that holds this channel
      return unavailable("tgtd exited at start (" + describeWaitStatus(status) + ")");
    }
    RunOptions opts;
    opts.deadline = Deadline::after(Millis(2000));
    auto r = runCommand({"tgtadm", "-C", std::to_string(controlPort), "--op", "show", "--mode", "system"}, opts);
    if (r.ok() && r->success() && acceptsConnections(port)) return {};
    ::usleep(20000);
  }
  ::kill(pid_, SIGKILL);
  (void)ChildReaper::wait(pid_, Deadline::after(Millis(5000)));
  pid_ = -1;
  return timeoutError("tgtd did not become ready in 10 s");
}

Status TgtTarget::start(int port) {
  if (pid_ > 0) return conflict("tgtd already running");
  if (auto m = missing(); !m.empty()) return unavailable("missing: " + m);
  char tmpl[] = "/tmp/vmm-tgtd-XXXXXX";
  if (!::mkdtemp(tmpl)) return systemError("mkdtemp", errno);
  dir_ = tmpl;
  Status last = unavailable("tgtd did not start");
  for (int i = 0; i < kAttempts; ++i) {
    int p = port;
    if (p == 0) {
      VMM_ASSIGN(p, freeLoopbackPort());
    }
    last = startOn(p, randomControlPort());
    if (last.ok()) return last;
    if (port != 0 && last.error().code == ErrorCode::timeout) break;
  }
  std::string tail = log();
  stop();
  return last.takeError().wrap("starting tgtd (log: " + tail.substr(tail.size() > 2000 ? tail.size() - 2000 : 0) + ")");
}

Result<int> TgtTarget::addTarget(const std::string& iqn) {
  int tid = tids_.empty() ? 1 : *std::max_element(tids_.begin(), tids_.end()) + 1;
  VMM_TRY(tgtadm({"--op", "new", "--mode", "target", "--tid", std::to_string(tid), "-T", iqn}));
  tids_.push_back(tid);
  VMM_TRY(tgtadm({"--op", "bind", "--mode", "target", "--tid", std::to_string(tid), "-I", "127.0.0.1"}));
  return tid;
}

Status TgtTarget::addLun(int tid, int lun, const std::string& backingFile) {
  return tgtadm({"--op", "new", "--mode", "logicalunit", "--tid", std::to_string(tid), "--lun", std::to_string(lun), "-b",
                 backingFile});
}

Status TgtTarget::setChap(int tid, const std::string& user, const std::string& password) {
  if (std::find(accounts_.begin(), accounts_.end(), user) == accounts_.end()) {
    VMM_TRY(tgtadm({"--op", "new", "--mode", "account", "--user", user, "--password", password}));
    accounts_.push_back(user);
  }
  return tgtadm({"--op", "bind", "--mode", "account", "--tid", std::to_string(tid), "--user", user});
}

void TgtTarget::stop() {
  if (pid_ > 0) {
    // tgtd ignores SIGTERM while it has targets: take them down, then the daemon itself.
    for (int tid : tids_) {
      (void)tgtadm({"--op", "update", "--mode", "target", "--tid", std::to_string(tid), "-n", "state", "-v", "offline"});
      (void)tgtadm({"--op", "delete", "--mode", "target", "--tid", std::to_string(tid), "--force"});
    }
    (void)tgtadm({"--op", "delete", "--mode", "system"});
    if (!ChildReaper::wait(pid_, Deadline::after(Millis(5000))).ok()) {
      ::kill(pid_, SIGKILL);
      (void)ChildReaper::wait(pid_, Deadline::after(Millis(5000)));
    }
    pid_ = -1;
    // tgtd leaves its management socket and lock file behind.
    std::string sock = "/var/run/tgtd/socket." + std::to_string(controlPort_);
    (void)fs::removeFile(sock);
    (void)fs::removeFile(sock + ".lock");
  }
  tids_.clear();
  accounts_.clear();
  if (!dir_.empty()) {
    (void)runCommand({"rm", "-rf", dir_});
    dir_.clear();
  }
}

}  // namespace vmm::testutil
