// vmm-nsexec [--userns] PID -- COMMAND [ARG...]
//
// Runs COMMAND in the namespaces of container init PID the way init itself runs: as uid/gid 0
// of the container, with no capability outside init's bounding set and under the same seccomp
// deny-list (drivers/lxc/confinement.h). Like nsenter it forks once inside the pid namespace,
// passes SIGTERM/SIGINT/SIGHUP/SIGQUIT on and exits with the command's status (or its signal).
// --userns: the container has its own user namespace (unprivileged); joined first.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "drivers/lxc/confinement.h"

using namespace vmm::drivers::lxc;

namespace {

pid_t gChild = -1;

void forward(int sig) {
  if (gChild > 0) ::kill(gChild, sig);
}

[[noreturn]] void die(const std::string& what, int err = errno) {
  std::fprintf(stderr, "vmm-nsexec: %s%s%s\n", what.c_str(), err ? ": " : "", err ? std::strerror(err) : "");
  std::exit(125);
}

uint64_t boundingSetOf(const std::string& pid) {
  FILE* f = std::fopen(("/proc/" + pid + "/status").c_str(), "re");
  if (!f) die("cannot read /proc/" + pid + "/status");
  char line[512];
  uint64_t bnd = 0;
  bool found = false;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "CapBnd:", 7) == 0) {
      bnd = parseCapMask(line + 7);
      found = true;
    }
  std::fclose(f);
  if (!found) die("no CapBnd in /proc/" + pid + "/status", 0);
  return bnd;
}

}  // namespace

int main(int argc, char** argv) {
  bool userns = false;
  int i = 1;
  if (i < argc && std::strcmp(argv[i], "--userns") == 0) {
    userns = true;
    ++i;
  }
  if (i + 2 >= argc || std::strcmp(argv[i + 1], "--") != 0) {
    std::fprintf(stderr, "usage: vmm-nsexec [--userns] PID -- COMMAND [ARG...]\n");
    return 125;
  }
  std::string pid = argv[i];
  char** command = argv + i + 2;

  // Everything from the host side first: /proc changes meaning once in the mount namespace.
  Confinement conf;
  conf.dropCaps = ~boundingSetOf(pid);
  auto filter = seccompFilter(!userns);
  if (!filter.ok()) die("cannot build the seccomp filter: " + filter.error().message, 0);
  conf.filter = std::move(*filter);
  std::vector<std::pair<std::string, int>> namespaces;
  std::vector<const char*> kinds = {"ipc", "uts", "net", "pid", "mnt"};
  if (userns) kinds.insert(kinds.begin(), "user");
  for (const char* ns : kinds) {
    std::string path = "/proc/" + pid + "/ns/" + ns;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open " + path);
    namespaces.push_back({ns, fd});
  }
  for (const auto& [ns, fd] : namespaces) {
    if (::setns(fd, 0) != 0) die(std::string("cannot join the container's ") + ns + " namespace");
    ::close(fd);
  }

  pid_t child = ::fork();
  if (child < 0) die("fork");
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 && errno != EPERM) die("setgroups");
    if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0) die("cannot become the container's root");
    if (::chdir("/") != 0) die("chdir /");
    ::umask(022);  // as in the container's init, not vmmd's 077
    const char* step = "";
    if (!applyConfinement(conf, &step)) die(step);
    ::execvp(command[0], command);
    int err = errno;
    std::fprintf(stderr, "vmm-nsexec: cannot execute %s: %s\n", command[0], std::strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  gChild = child;
  struct sigaction sa{};
  sa.sa_handler = forward;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) ::sigaction(sig, &sa, nullptr);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) die("waitpid");
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WTERMSIG(status);
  ::signal(sig, SIG_DFL);
  ::kill(::getpid(), sig);
  return 128 + sig;
}
