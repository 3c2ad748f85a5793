// Clocks, deadlines and RFC 3339 timestamps.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vmm {

using SteadyClock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

int64_t wallNowMicros();                      // microseconds since the Unix epoch
std::string formatTimestamp(int64_t micros);  // "2026-11-22T14:02:03.123Z"
std::optional<int64_t> parseTimestamp(std::string_view text);  // inverse of formatTimestamp
inline std::string nowTimestamp() { return formatTimestamp(wallNowMicros()); }

// "500ms", "30s", "5m", "2h", "1d", or a bare number of seconds.
std::optional<Millis> parseDuration(std::string_view text);
std::string formatDuration(Millis d);

// A point in time after which an external call must give up. Every call into QEMU, an agent,
// a child process or a network server takes one.
class Deadline {
 public:
  static Deadline after(Millis d) { return Deadline(SteadyClock::now() + d); }
  static Deadline never() { return Deadline(SteadyClock::time_point::max()); }
  explicit Deadline(SteadyClock::time_point at) : at_(at) {}

  bool expired() const { return SteadyClock::now() >= at_; }
  bool isNever() const { return at_ == SteadyClock::time_point::max(); }
  SteadyClock::time_point at() const { return at_; }
  Millis remaining() const;
  // Remaining time as a poll()/epoll timeout: -1 for never, 0 when expired.
  int pollTimeoutMs() const;
  Deadline earlier(Deadline other) const { return other.at_ < at_ ? other : *this; }

 private:
  SteadyClock::time_point at_;
};

}  // namespace vmm
