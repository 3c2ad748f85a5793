// Structured logging: one line per record, logfmt (default) or JSON, to stderr or a file.
// Thread-safe: records from concurrent threads never interleave within a line.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace vmm::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };
enum class Format { logfmt, json };

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v ? v : "") {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, int64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, unsigned v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, uint64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, double v);
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  std::string key;
  std::string value;
  bool quoted = true;  // JSON: emit as a string
};

using Fields = std::initializer_list<Field>;

void setLevel(Level level);
bool setLevel(std::string_view name);  // false if the name is unknown
void setFormat(Format format);
// Appends to `path`; an empty path means stderr. Returns false (and keeps the old sink) on error.
bool setFile(const std::string& path);
bool enabled(Level level);

void write(Level level, std::string_view msg, Fields fields = {});
// Writes the line whatever the level (the audit trail is not a diagnostic).
void record(Level level, std::string_view msg, Fields fields = {});
inline void debug(std::string_view msg, Fields f = {}) { if (enabled(Level::debug)) write(Level::debug, msg, f); }
inline void info(std::string_view msg, Fields f = {}) { write(Level::info, msg, f); }
inline void warn(std::string_view msg, Fields f = {}) { write(Level::warn, msg, f); }
inline void error(std::string_view msg, Fields f = {}) { write(Level::error, msg, f); }

}  // namespace vmm::log
