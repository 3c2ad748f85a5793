// Helpers for tests: temporary directories removed at the end of the test.
#pragma once

#include <stdlib.h>

#include <string>

#include "base/process.h"

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

}  // namespace vmm::testutil
