// A gtest binary for meta.strict_mode (strict_mode_test.sh): one test needs a tool that the
// script can hide (VMM_TEST_PRETEND_MISSING=sh), one fails when VMM_META_FAIL is set. With
// neither set, both pass.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/support/host_tools.h"
#include "tests/support/require.h"

using namespace vmm;

TEST(SkipReportProbe, NeedsATool) {
  VMM_REQUIRE(testutil::haveTool("sh"), testutil::missingTools({"sh"}, "dash"));
  SUCCEED();
}

TEST(SkipReportProbe, FailsOnRequest) { EXPECT_EQ(std::getenv("VMM_META_FAIL"), nullptr) << "failing on request"; }
