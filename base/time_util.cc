#include "base/time_util.h"

#include <cstdio>
#include <ctime>

namespace vmm {

int64_t wallNowMicros() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string formatTimestamp(int64_t micros) {
  // Floor division: a time before 1970 must not print a negative fraction ("04.-877Z").
  int64_t secs64 = micros / 1000000, rem = micros % 1000000;
  if (rem < 0) {
    secs64 -= 1;
    rem += 1000000;
  }
  time_t secs = static_cast<time_t>(secs64);
  int ms = static_cast<int>(rem / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

// Exactly "YYYY-MM-DDTHH:MM:SS[.mmm]Z" in digits, fields in range, 1970 to 9999: anything else
// (signs, spaces, fewer digits) is refused rather than read the way sscanf would.
std::optional<int64_t> parseTimestamp(std::string_view text) {
  auto digits = [&](size_t at, size_t n) -> std::optional<int> {
    if (at + n > text.size()) return std::nullopt;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  auto sep = [&](size_t at, char c) { return at < text.size() && text[at] == c; };
  if (!sep(4, '-') || !sep(7, '-') || !sep(10, 'T') || !sep(13, ':') || !sep(16, ':')) return std::nullopt;
  auto y = digits(0, 4), mo = digits(5, 2), d = digits(8, 2), h = digits(11, 2), mi = digits(14, 2), s = digits(17, 2);
  if (!y || !mo || !d || !h || !mi || !s) return std::nullopt;
  int ms = 0;
  if (text.size() == 24 && sep(19, '.') && sep(23, 'Z')) {
    auto m = digits(20, 3);
    if (!m) return std::nullopt;
    ms = *m;
  } else if (!(text.size() == 20 && sep(19, 'Z'))) {
    return std::nullopt;
  }
  if (*y < 1970 || *mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 || *mi > 59 || *s > 60) return std::nullopt;
  struct tm tm {};
  tm.tm_year = *y - 1900;
  tm.tm_mon = *mo - 1;
  tm.tm_mday = *d;
  tm.tm_hour = *h;
  tm.tm_min = *mi;
  tm.tm_sec = *s;
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
