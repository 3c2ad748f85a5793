// Helpers for tests: temporary directories removed at the end of the test.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::testutil {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/vmm-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)runCommand({"rm", "-rf", path_}); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The cases of a golden-file directory: the names of its NAME.json inputs, sorted; files
// ending in `skipSuffix` (expected outputs kept next to them) are not cases.
inline std::vector<std::string> goldenCases(const std::string& dir, const std::string& skipSuffix = "") {
  std::vector<std::string> out;
  auto files = fs::listDir(dir);
  if (!files.ok()) return out;
  for (const auto& n : *files)
    if (endsWith(n, ".json") && (skipSuffix.empty() || !endsWith(n, skipSuffix))) out.push_back(n.substr(0, n.size() - 5));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace vmm::testutil
