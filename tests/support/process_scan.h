// The host's processes as leak checks need them: pid, parent, session and command line, read
// from /proc. Zombies (exited, waiting to be reaped) are left out: nothing of them runs.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::testutil {

struct ProcessEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t sid = 0;
  std::string cmdline;  // arguments joined by spaces

  bool argvContains(const std::string& text) const { return cmdline.find(text) != std::string::npos; }
};

inline std::vector<ProcessEntry> listProcesses() {
  std::vector<ProcessEntry> out;
  auto names = fs::listDir("/proc");
  if (!names.ok()) return out;
  for (const auto& n : *names) {
    auto pid = parseInt(n);
    if (!pid || *pid <= 0 || !processRunning(static_cast<pid_t>(*pid))) continue;
    ProcessEntry e;
    e.pid = static_cast<pid_t>(*pid);
    e.ppid = processParent(e.pid).value_or(0);
    e.sid = processSession(e.pid).value_or(0);
    std::string raw = fs::readFile("/proc/" + n + "/cmdline", 1 << 20).valueOr("");
    for (char& c : raw)
      if (c == '\0') c = ' ';
    e.cmdline = std::string(trim(raw));
    if (e.ppid == 0 && e.sid == 0) continue;  // exited while being read
    out.push_back(std::move(e));
  }
  return out;
}

// What `pid`'s open descriptors point at (readlink of /proc/PID/fd/*: paths, "socket:[N]", ...).
inline std::vector<std::string> openDescriptors(pid_t pid) {
  std::vector<std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  auto names = fs::listDir(dir);
  if (!names.ok()) return out;
  for (const auto& n : *names) {
    char target[4096];
    ssize_t len = ::readlink((dir + "/" + n).c_str(), target, sizeof target - 1);
    if (len > 0) out.emplace_back(target, static_cast<size_t>(len));
  }
  return out;
}

// Whether `pid`'s chain of parents reaches `ancestor` (a process is not its own descendant).
inline bool descendsFrom(const std::vector<ProcessEntry>& all, pid_t pid, pid_t ancestor) {
  for (int hops = 0; hops < 4096 && pid > 1; ++hops) {
    pid_t parent = 0;
    for (const auto& e : all)
      if (e.pid == pid) parent = e.ppid;
    if (parent == ancestor) return true;
    pid = parent;
  }
  return false;
}

// "1234 (sid 1200): qemu-system-x86_64 -name ..." for failure messages.
inline std::string describe(const std::vector<ProcessEntry>& procs) {
  std::string out;
  for (const auto& e : procs)
    out += "\n  " + std::to_string(e.pid) + " (parent " + std::to_string(e.ppid) + ", session " + std::to_string(e.sid) +
           "): " + e.cmdline.substr(0, 300);
  return out;
}

}  // namespace vmm::testutil
