// Linked into every gtest binary (vmm_add_gtest in tests/CMakeLists.txt): after the run, a
// binary in which something was skipped and nothing failed prints one line that CTest's
// SKIP_REGULAR_EXPRESSION matches, so CTest shows it as "Skipped" instead of "Passed".
//
// The line is printed only when nothing failed because CTest's skip expression wins over the
// exit code: matching gtest's own "[  SKIPPED ]" lines would report a binary with one failed
// and one skipped test as "Skipped", hiding the failure.
#include <gtest/gtest.h>

#include <cstdio>

namespace {

class SkipReport : public ::testing::EmptyTestEventListener {
  void OnTestProgramEnd(const ::testing::UnitTest& unit) override {
    if (!unit.Passed()) return;
    // A skip in a global environment's SetUp (requireForAllTests) runs no test at all.
    int skipped = unit.ad_hoc_test_result().Skipped() ? unit.test_to_run_count() : unit.skipped_test_count();
    if (skipped > 0) std::printf("[ VMM-SKIP ] %d of %d tests skipped, none failed\n", skipped, unit.test_to_run_count());
    std::fflush(stdout);
  }
};

const bool registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new SkipReport);
  return true;
}();

}  // namespace
