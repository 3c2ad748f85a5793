// One JSON message per line over a stream socket, on the event loop: the transport under
// the QMP monitor and the guest agent. Messages arrive through onMessage on the loop
// thread; send() may be called from any thread and keeps the order of calls.
//
// Thread-safety: send(), close() and connected() are thread-safe; callbacks run on the loop.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <deque>
#include <string>

#include "base/event_loop.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "base/mutex.h"
#include "base/result.h"

namespace vmm::drivers::qemu {

class JsonChannel : public std::enable_shared_from_this<JsonChannel> {
 public:
  struct Callbacks {
    std::function<void(nlohmann::json)> onMessage;
    std::function<void(const std::string& reason)> onClosed;
    // A line that is not JSON within the limits (logged and skipped when unset).
    std::function<void(const Error& error)> onMalformed;
  };
  // What one message may be. The peer is untrusted (the agent is the guest's; QEMU's replies
  // carry guest-influenced strings): a longer line closes the channel, a deeper one is dropped.
  struct Limits {
    size_t maxLineBytes = 64 << 20;  // two 16 MiB exec outputs in base64 fit
    size_t maxDepth = kJsonMaxDepth;
  };
  // QEMU's query-block nests one level per backing file, so the monitor allows long chains.
  static constexpr size_t kQmpMaxDepth = 1024;
  // Takes ownership of a connected socket.
  static std::shared_ptr<JsonChannel> open(EventLoop& loop, fs::UniqueFd fd, Callbacks callbacks, Limits limits);
  static std::shared_ptr<JsonChannel> open(EventLoop& loop, fs::UniqueFd fd, Callbacks callbacks) {
    return open(loop, std::move(fd), std::move(callbacks), Limits{});
  }
  ~JsonChannel();

  // Queues `text` + "\n"; with fdToPass >= 0 the descriptor travels with it (SCM_RIGHTS).
  void send(std::string text, int fdToPass = -1);
  // Discards input up to and including the next 0xFF byte (guest agent resynchronisation).
  void skipToDelimiter();
  void close(const std::string& reason = "closed");
  bool connected() const;

 private:
  JsonChannel(EventLoop& loop, fs::UniqueFd fd, Callbacks cb, Limits limits);
  void start();
  void onEvents(uint32_t events);
  void flush();
  void closeOnLoop(const std::string& reason);

  EventLoop& loop_;
  fs::UniqueFd fd_;
  Callbacks cb_;
  const Limits limits_;
  std::string in_;
  size_t scanned_ = 0;  // in_[0, scanned_) holds no newline: each byte is searched once
  bool skipping_ = false;
  struct Pending {
    std::string text;
    int fd;
  };
  mutable Mutex mu_;
  std::deque<Pending> out_ VMM_GUARDED_BY(mu_);  // deque: references stay valid while other threads append
  size_t outOffset_ = 0;   // of out_.front().text
  bool closed_ VMM_GUARDED_BY(mu_) = false;
  bool watching_ = false;
};

}  // namespace vmm::drivers::qemu
