// One iSCSI session in-process through libiscsi's asynchronous API: every call polls the
// session's socket only until its deadline, so a hung or unreachable target yields a timeout
// error instead of blocking. A session that timed out mid-command is broken (its state with the
// target is unknown) and refuses further commands; open a new one.
//
// Thread-safety: none. One thread uses a session at a time (the backend opens one per call or
// per stream).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"

struct iscsi_context;
struct scsi_task;

namespace vmm::storage::iscsi {

struct SessionOptions {
  std::string host;
  int port = 3260;
  std::string target;     // IQN; ignored by discover()
  std::string initiator;  // our IQN
  std::string username;   // CHAP; empty: no authentication
  std::string secret;     // never logged nor put in an error message
};

struct LunCapacity {
  uint32_t blockSize = 0;
  uint64_t blocks = 0;
  uint64_t bytes() const { return static_cast<uint64_t>(blockSize) * blocks; }
};

// "host:port", with brackets around an IPv6 address.
std::string portalAddress(const std::string& host, int port);

class Session {
 public:
  // Connects and logs in to options.target.
  static Result<std::unique_ptr<Session>> login(const SessionOptions& options, Deadline deadline);
  // SendTargets discovery: the IQNs of the targets the portal offers us.
  static Result<std::vector<std::string>> discover(const SessionOptions& options, Deadline deadline);

  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Result<std::vector<int>> reportLuns(Deadline deadline);
  // True for a direct-access block device (disk); false for controllers, tapes, ...
  Result<bool> isDisk(int lun, Deadline deadline);
  Result<LunCapacity> readCapacity(int lun, Deadline deadline);
  // READ(16)/WRITE(16) of `blocks` whole blocks; buf holds blocks * blockSize bytes.
  Status read(int lun, uint64_t lba, uint32_t blocks, uint32_t blockSize, char* buf, Deadline deadline);
  Status write(int lun, uint64_t lba, uint32_t blocks, uint32_t blockSize, const char* buf, Deadline deadline);
  Status synchronizeCache(int lun, Deadline deadline);
  // Logs out politely; the destructor only drops the connection.
  Status logout(Deadline deadline);

  const std::string& target() const { return options_.target; }

  // The state of the one request in flight. A member, not on a caller's stack: libiscsi may
  // still call back for a request we gave up on, up to iscsi_destroy_context().
  struct Completion {
    bool done = false;
    int status = 0;
    scsi_task* task = nullptr;         // SCSI commands: ours to free
    std::vector<std::string> targets;  // discovery
    std::string error;                 // libiscsi's error when the callback reported a failure
  };

 private:
  explicit Session(SessionOptions options);
  static Result<std::unique_ptr<Session>> open(const SessionOptions& options, bool discovery, Deadline deadline);
  // Frees the previous request's task and resets current_.
  void startRequest();
  // Services the socket until current_ is done or the deadline passes.
  Status wait(const std::string& what, Deadline deadline);
  // Sends one SCSI command built by `submit` and waits; retries UNIT ATTENTION.
  template <typename Submit, typename OnGood>
  Status command(const std::string& what, Submit submit, OnGood onGood, Deadline deadline);
  // The failure of the current request (or libiscsi's last error), with the CHAP secret masked.
  std::string lastError() const;

  SessionOptions options_;
  iscsi_context* ctx_ = nullptr;
  bool broken_ = false;
  bool loggedIn_ = false;
  Completion current_;
};

}  // namespace vmm::storage::iscsi
