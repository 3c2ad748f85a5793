// For test binaries whose vmmd makes bridges, taps and nft tables: a network namespace of the
// test's own, with a sysfs that shows its links (as `ip netns exec` does) in a private mount
// namespace, and loopback up. Nothing the tests create reaches the host's network.
#pragma once

#include <string>

#include "base/result.h"

namespace vmm::testutil {

// Call from main() before any thread starts. keepCgroups carries the cgroup mounts (under
// /sys/fs/cgroup) over to the new sysfs, for container tests.
Status enterPrivateNetworkNamespace(bool keepCgroups = false);

// The whole main() of a gtest binary whose tests need root and a network namespace of their
// own: initialises gtest, and when not root every test fails (strict mode) or skips naming
// `whyRoot`; otherwise enters the namespace and runs the tests.
int runTestsInPrivateNetworkNamespace(int argc, char** argv, const std::string& whyRoot, bool keepCgroups = false);

}  // namespace vmm::testutil
