// Keeps vmmd attached to a domain's console socket (QEMU's serial chardev serves a single
// client): all output goes to a bounded log (two files of at most `logLimit` bytes) and to
// every attached viewer; viewers' keystrokes go to the console. Viewers attach and detach
// freely; a viewer that stops reading is dropped rather than slowing the others.
//
// Thread-safety: attach() and stop() from any thread; the rest runs on the event loop.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "base/event_loop.h"
#include "base/fs.h"
#include "base/mutex.h"
#include "base/result.h"

namespace vmm::drivers::qemu {

class ConsoleMux : public std::enable_shared_from_this<ConsoleMux> {
 public:
  static Result<std::shared_ptr<ConsoleMux>> start(EventLoop& loop, const std::string& socketPath, std::string logPath,
                                                   size_t logLimit);
  ~ConsoleMux();
  // A socket for a viewer: read console output from it, write input to it.
  Result<fs::UniqueFd> attach();
  void stop();
  // The last maxBytes of the log (both files).
  static Result<std::string> readLog(const std::string& logPath, size_t maxBytes);

 private:
  ConsoleMux(EventLoop& loop, std::string logPath, size_t logLimit) : loop_(loop), logPath_(std::move(logPath)), limit_(logLimit) {}
  void onConsole(uint32_t events);
  void onViewer(int fd, uint32_t events);
  void dropViewer(int fd);
  void log(const char* data, size_t len);
  void stopOnLoop();

  EventLoop& loop_;
  std::string logPath_;
  size_t limit_;
  fs::UniqueFd console_;
  fs::UniqueFd logFd_;
  size_t logSize_ = 0;
  struct Viewer {
    fs::UniqueFd fd;
    std::string pending;
  };
  std::map<int, Viewer> viewers_;  // loop thread only
  Mutex mu_;
  bool stopped_ VMM_GUARDED_BY(mu_) = false;
};

}  // namespace vmm::drivers::qemu
