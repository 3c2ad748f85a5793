// The composition root binds a handler of the right kind (sync or async) to every row of the
// operation table: a whole Daemon (test driver only, private directories) starts. It would not
// if a row had no handler (Daemon::start refuses), and a handler of the wrong kind aborts at
// binding (api/registry.cc). Like every vmmd start, it removes port state of vanished taps only.
#include <gtest/gtest.h>
#include <signal.h>

#include "app/daemon.h"
#include "tests/unit/test_util.h"

using namespace vmm;

TEST(RegistryComplete, EveryOperationOfTheTableHasItsHandler) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  testutil::TempDir dir;
  Config c;
  c.stateDir = dir / "state";
  c.runDir = dir / "run";
  c.socketPath = c.runDir + "/vmmd.sock";
  c.roSocketPath = c.runDir + "/vmmd-ro.sock";
  c.httpListen = "127.0.0.1:0";
  c.drivers = {"test"};
  c.defaultPool = false;
  c.defaultNetwork = false;
  c.syncFull = false;
  c.logLevel = "warn";
  c.logFile = dir / "vmmd.log";
  c.customizeHelper = "/nonexistent";
  Daemon d(c);
  auto st = d.start();
  ASSERT_TRUE(st.ok()) << st.error().message;
  d.requestStop();
}
