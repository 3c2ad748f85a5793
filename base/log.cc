#include "base/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "base/mutex.h"
#include "base/time_util.h"

namespace vmm::log {

namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<Format> g_format{Format::logfmt};
Mutex g_mu;
int g_fd VMM_GUARDED_BY(g_mu) = 2;

const char* levelName(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

bool needsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}

void appendEscaped(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
}
}  // namespace

Field::Field(std::string_view k, double v) : key(k), quoted(false) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  value = buf;
}

void setLevel(Level level) { g_level = static_cast<int>(level); }

bool setLevel(std::string_view name) {
  for (Level l : {Level::debug, Level::info, Level::warn, Level::error}) {
    if (name == levelName(l)) {
      setLevel(l);
      return true;
    }
  }
  return false;
}

void setFormat(Format format) { g_format = format; }

bool setFile(const std::string& path) {
  int fd = 2;
  if (!path.empty()) {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return false;
  }
  MutexLock lock(g_mu);
  if (g_fd != 2) ::close(g_fd);
  g_fd = fd;
  return true;
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view msg, Fields fields) {
  if (!enabled(level)) return;
  record(level, msg, fields);
}

void record(Level level, std::string_view msg, Fields fields) {
  std::string line;
  line.reserve(128);
  std::string ts = formatTimestamp(wallNowMicros());
  if (g_format == Format::json) {
    line += "{\"ts\":\"" + ts + "\",\"level\":\"" + levelName(level) + "\",\"msg\":\"";
    appendEscaped(line, msg);
    line += '"';
    for (const auto& f : fields) {
      line += ",\"";
      appendEscaped(line, f.key);
      line += "\":";
      if (f.quoted) {
        line += '"';
        appendEscaped(line, f.value);
        line += '"';
      } else {
        line += f.value;
      }
    }
    line += "}\n";
  } else {
    line += "ts=" + ts + " level=" + levelName(level) + " msg=\"";
    appendEscaped(line, msg);
    line += '"';
    for (const auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      if (needsQuotes(f.value)) {
        line += '"';
        appendEscaped(line, f.value);
        line += '"';
      } else {
        line += f.value;
      }
    }
    line += '\n';
  }
  MutexLock lock(g_mu);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(g_fd, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace vmm::log
