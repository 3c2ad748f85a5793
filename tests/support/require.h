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
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

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
