// Shared by the tests that boot real guests: where the test guest is (built by
// scripts/build-test-guest.sh; VMM_TEST_GUEST_DIR overrides the build's own), and polling.
#pragma once

#include <cstdlib>
#include <string>
#include <thread>

#include "base/fs.h"
#include "base/time_util.h"

namespace vmm::testutil {

inline std::string guestDir() {
  const char* env = std::getenv("VMM_TEST_GUEST_DIR");
#ifdef VMM_TEST_GUEST_DIR
  return env ? env : VMM_TEST_GUEST_DIR;
#else
  return env ? env : "";
#endif
}

inline bool guestReady() { return fs::exists(guestDir() + "/vmlinux") && fs::exists(guestDir() + "/full.cpio"); }

// Polls `pred` until it holds or `timeout` passes; the last answer decides.
template <typename Pred>
bool waitFor(Pred pred, Millis timeout, Millis step = Millis(100)) {
  auto end = SteadyClock::now() + timeout;
  while (SteadyClock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

}  // namespace vmm::testutil
