// Copies bytes both ways between two stream fds on the event loop (a client socket and a
// console, say). An EOF from one side is passed on (shutdown for writing) after the bytes
// queued before it; the relay closes when both directions ended or a side fails. Each
// direction buffers at most `bufferLimit` bytes: a side that does not read stops the other
// side being read, never grows memory.
//
// Thread-safety: start() and stop() may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/event_loop.h"
#include "base/fs.h"

namespace vmm {

class ByteRelay : public std::enable_shared_from_this<ByteRelay> {
 public:
  struct Options {
    std::string pendingToA;  // bytes already read from B (sent to A first)
    std::string pendingToB;  // bytes already read from A
    size_t bufferLimit = 256 << 10;
    std::function<void()> onClosed;  // on the loop thread, once
  };
  static std::shared_ptr<ByteRelay> start(EventLoop& loop, fs::UniqueFd a, fs::UniqueFd b, Options options);
  void stop();
  ~ByteRelay();

 private:
  struct Side {
    fs::UniqueFd fd;
    std::string out;  // waiting to be written to this side
    size_t outOffset = 0;
    bool readPaused = false;
    bool readDone = false;   // this side sent EOF: its bytes are all queued for the other
    bool writeShut = false;  // EOF passed on to this side (after its queue drained)
    bool watched = true;
    uint32_t mask = 0;
  };
  // Passes an EOF on once the queue before it is written; closes when both ways are done.
  void finishDirections();
  ByteRelay(EventLoop& loop, Options options) : loop_(loop), options_(std::move(options)) {}
  void onEvent(int index, uint32_t events);
  bool flush(Side& s);
  void updateMask(int index);
  void closeAll();

  EventLoop& loop_;
  Options options_;
  Side sides_[2];
  bool closed_ = false;
};

}  // namespace vmm
