// Shared by the fuzz targets: property checks that abort with a message (libFuzzer then saves
// the input as a crash), and small helpers.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <string>
#include <string_view>
#include <vector>

#include "base/fs.h"
#include "base/json_util.h"

// A property the target must hold; a violation is a finding like a sanitizer report.
#define FUZZ_CHECK(cond, ...)                                                          \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, "  %s\n", ::vmm::fuzz::describe(__VA_ARGS__).c_str());     \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

namespace vmm::fuzz {

// A directory for the whole fuzzing process, under $TMPDIR (fuzz/run.sh points it at a
// directory it removes afterwards, also when a finding aborts the process) and removed at a
// normal exit. Dies when it cannot be made.
inline std::string tempDir(const char* what) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vmm-fuzz-" + what + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    std::abort();
  }
  struct Remover {
    std::vector<std::string> dirs;
    ~Remover() {
      for (const auto& d : dirs) (void)fs::removeTree(d);
    }
  };
  static Remover remover;
  remover.dirs.push_back(tmpl);
  return tmpl;
}

inline std::string describe() { return ""; }
inline std::string describe(std::string_view s) { return std::string(s); }
template <typename A, typename... Rest>
std::string describe(std::string_view a, const A& b, const Rest&... rest) {
  return std::string(a) + " " + describe(b, rest...);
}

inline std::string_view bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Printable for messages: invalid UTF-8 replaced, length-limited.
inline std::string show(std::string_view s) {
  std::string v = toValidUtf8(s.substr(0, 400));
  return dumpJson(nlohmann::json(v));
}

// Where two texts first differ, with some context from each.
inline std::string firstDifference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  size_t from = i > 200 ? i - 200 : 0;
  return "at byte " + std::to_string(i) + ":\n  " + show(a.substr(from, 500)) + "\n  " + show(b.substr(from, 500));
}

}  // namespace vmm::fuzz
