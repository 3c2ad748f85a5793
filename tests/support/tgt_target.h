// A real tgtd iSCSI target on loopback for tests. The fixture starts its own tgtd (a unique
// management channel, -C), configures targets, LUNs and CHAP through tgtadm, and stops it in
// its destructor: targets are set offline and deleted (tgtd ignores SIGTERM while targets
// exist), then the system is deleted and the process waited for; SIGKILL on that pid only as
// a last resort.
//
//   TgtTarget tgt;
//   ASSERT_TRUE(tgt.start().ok());
//   auto tid = tgt.addTarget("iqn.2024-01.io.vmm.test:disks");
//   ASSERT_TRUE(tgt.addLun(*tid, 1, "/tmp/x/disk.img").ok());
//   // iscsi://<tgt.portal()>/iqn.2024-01.io.vmm.test:disks/1
//
// Thread-safety: none; one test thread drives it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace vmm::testutil {

class TgtTarget {
 public:
  TgtTarget() = default;
  ~TgtTarget() { stop(); }
  TgtTarget(const TgtTarget&) = delete;
  TgtTarget& operator=(const TgtTarget&) = delete;

  // What tgtd needs and this host lacks (root, tgtd, tgtadm); "" when it can run.
  // For VMM_REQUIRE(TgtTarget::available(), TgtTarget::missing()).
  static std::string missing();
  static bool available() { return missing().empty(); }

  // Starts tgtd listening on 127.0.0.1:port; port 0 picks a free one.
  Status start(int port = 0);
  // Creates a target open to 127.0.0.1 and returns its tid (1, 2, ...).
  Result<int> addTarget(const std::string& iqn);
  // Adds a disk LUN (numbers from 1; LUN 0 is tgtd's controller) backed by a file.
  Status addLun(int tid, int lun, const std::string& backingFile);
  // Requires CHAP for the target: creates the account (once) and binds it.
  Status setChap(int tid, const std::string& user, const std::string& password);
  // Stops tgtd; safe to call twice.
  void stop();

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string portal() const { return host() + ":" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  // tgtd's own output, for diagnosing a failed test.
  std::string log() const;

 private:
  Status tgtadm(std::vector<std::string> args);
  Status startOn(int port, int controlPort);

  pid_t pid_ = -1;
  int port_ = 0;
  int controlPort_ = 0;
  std::string dir_;  // the log file lives here
  std::vector<int> tids_;
  std::vector<std::string> accounts_;
};

}  // namespace vmm::testutil
