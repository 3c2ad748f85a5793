// The host's processes as leak checks need them: pid, parent, session and command line, read
// from /proc. Zombies (exited, waiting to be reaped) are left out: nothing of them runs.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
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

// What a short-lived confined child really ran as: "comm uid CapEff" of each process that
// `candidates()` names, whose comm starts with one of `comms` and whose command line holds
// `argvMark`, sampled every `every` until stop(). A child is sampled only once it runs one of
// those programs (before its exec it is still its root parent).
class IdentitySampler {
 public:
  IdentitySampler(std::function<std::vector<pid_t>()> candidates, std::vector<std::string> comms, std::string argvMark = "",
                  Millis every = Millis(20))
      : candidates_(std::move(candidates)), comms_(std::move(comms)), mark_(std::move(argvMark)), every_(every) {
    thread_ = std::thread([this] {
      while (!stop_) {
        for (pid_t p : candidates_()) sample(p);
        std::this_thread::sleep_for(every_);
      }
    });
  }
  std::set<std::string> stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    return seen_;
  }
  ~IdentitySampler() { stop(); }

  static std::vector<pid_t> allProcesses() {
    std::vector<pid_t> out;
    for (const auto& n : fs::listDir("/proc").valueOr({}))
      if (auto pid = parseInt(n); pid && *pid > 0) out.push_back(static_cast<pid_t>(*pid));
    return out;
  }

 private:
  void sample(pid_t p) {
    std::string dir = "/proc/" + std::to_string(p);
    std::string comm(trim(fs::readFile(dir + "/comm", 256).valueOr("")));
    bool wanted = false;
    for (const auto& c : comms_) wanted = wanted || startsWith(comm, c);
    if (!wanted) return;
    if (!mark_.empty() && fs::readFile(dir + "/cmdline", 1 << 20).valueOr("").find(mark_) == std::string::npos) return;
    std::string uid, caps;
    for (const auto& line : split(fs::readFile(dir + "/status", 1 << 16).valueOr(""), '\n', true)) {
      if (startsWith(line, "Uid:")) uid = split(std::string(trim(line.substr(4))), '\t', true).at(0);
      if (startsWith(line, "CapEff:")) caps = std::string(trim(line.substr(7)));
    }
    if (uid.empty()) return;  // exited while being read
    std::lock_guard lock(mu_);
    seen_.insert(comm + " " + uid + " " + caps);
  }

  std::function<std::vector<pid_t>()> candidates_;
  std::vector<std::string> comms_;
  std::string mark_;
  Millis every_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<std::string> seen_;
};

}  // namespace vmm::testutil
