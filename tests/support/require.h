// What a test needs from the host, stated once.
//
// VMM_REQUIRE(cond, what): when `cond` is false the test cannot run here because `what` is missing
// (a tool, root, the test guest, the libguestfs appliance). Outside strict mode the test is skipped
// and CTest reports it as skipped (SKIP_REGULAR_EXPRESSION); in strict mode - VMM_TEST_STRICT=1 or
// CI=true, which the README's test command sets - it fails and names what is missing, so a
// forgotten install step can never turn coverage into a silent pass.
//
// VMM_NOT_APPLICABLE(cond, why): the case does not apply to this host at all (running on Xen):
// skipped in every mode.
//
// Both return from the calling function: use them in SetUp(), a TEST body or a void helper.
// requireForAllTests(what) is the same outcome for a main() that cannot run any of its tests
// (not root before entering namespaces): every test reports the skip or the failure.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace vmm::testutil {

inline bool strictMode() {
  auto on = [](const char* name) {
    const char* v = std::getenv(name);
    return v && *v && std::strcmp(v, "0") != 0 && std::strcmp(v, "false") != 0;
  };
  return on("VMM_TEST_STRICT") || on("CI");
}

}  // namespace vmm::testutil

#define VMM_REQUIRE(cond, what)                                              \
  if (cond) {                                                                \
  } else if (::vmm::testutil::strictMode())                                  \
    GTEST_FAIL() << "missing dependency (strict mode): " << what;            \
  else                                                                       \
    GTEST_SKIP() << "missing dependency: " << what

#define VMM_NOT_APPLICABLE(cond, why) \
  if (!(cond)) {                      \
  } else                              \
    GTEST_SKIP() << "not applicable on this host: " << why

namespace vmm::testutil {

// Call from main() after InitGoogleTest and before RUN_ALL_TESTS: a global environment whose
// SetUp applies VMM_REQUIRE(false, what), so gtest skips (or, strictly, fails) every test.
inline void requireForAllTests(const std::string& what) {
  class Missing : public ::testing::Environment {
   public:
    explicit Missing(std::string what) : what_(std::move(what)) {}
    void SetUp() override { VMM_REQUIRE(false, what_); }

   private:
    std::string what_;
  };
  ::testing::AddGlobalTestEnvironment(new Missing(what));
}

}  // namespace vmm::testutil
