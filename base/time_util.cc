#include "base/time_util.h"

#include <cstdio>
#include <ctime>

namespace vmm {

int64_t wallNowMicros() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string formatTimestamp(int64_t micros) {
  time_t secs = static_cast<time_t>(micros / 1000000);
  int ms = static_cast<int>((micros % 1000000) / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::optional<int64_t> parseTimestamp(std::string_view text) {
  int y, mo, d, h, mi, s, ms = 0;
  std::string t(text);
  int n = std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &h, &mi, &s, &ms);
  if (n < 6) return std::nullopt;
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  time_t secs = timegm(&tm);
  return static_cast<int64_t>(secs) * 1000000 + static_cast<int64_t>(ms) * 1000;
}

std::optional<Millis> parseDuration(std::string_view text) {
  // At most 100 years: the bound is applied to the product, so no unit can make it wrap.
  constexpr int64_t kMaxMs = 100LL * 365 * 86400 * 1000;
  if (text.empty() || text.size() > 32) return std::nullopt;
  size_t i = 0;
  int64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    value = value * 10 + (text[i] - '0');
    if (value > kMaxMs) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string_view unit = text.substr(i);
  int64_t mult;
  if (unit.empty() || unit == "s") mult = 1000;
  else if (unit == "ms") mult = 1;
  else if (unit == "m") mult = 60 * 1000;
  else if (unit == "h") mult = 3600 * 1000;
  else if (unit == "d") mult = 86400 * 1000;
  else return std::nullopt;
  if (value > kMaxMs / mult) return std::nullopt;
  return Millis(value * mult);
}

std::string formatDuration(Millis d) {
  int64_t ms = d.count();
  if (ms % 86400000 == 0 && ms) return std::to_string(ms / 86400000) + "d";
  if (ms % 3600000 == 0 && ms) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0 && ms) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Millis Deadline::remaining() const {
  if (isNever()) return Millis::max();
  auto now = SteadyClock::now();
  if (now >= at_) return Millis(0);
  return std::chrono::duration_cast<Millis>(at_ - now);
}

int Deadline::pollTimeoutMs() const {
  if (isNever()) return -1;
  auto r = remaining().count();
  if (r > 0x7fffffff) return 0x7fffffff;
  // round up so that a 0.5 ms remainder does not spin
  return static_cast<int>(r) + (r == 0 && !expired() ? 1 : 0);
}

}  // namespace vmm
