// A real NFS server for tests: nfs-ganesha (FSAL VFS) exporting one directory as "/export"
// over NFSv3 and v4 on loopback, with its own rpcbind (NFSv3 and QEMU's nfs driver need the
// portmapper on port 111).
//
// rpcbind and ganesha must not touch the host: the test binary calls enterPrivateNamespaces()
// first thing in main(), before any thread exists. NfsServer::start() refuses to run in the
// host's namespaces and mounts a tmpfs over /run in the private mount namespace (rpcbind keeps
// its socket and lock there). One NfsServer at a time per process (port 111 is shared).
// ganesha and rpcbind (in a PID namespace of its own) get SIGKILL when the thread that started
// them exits (PR_SET_PDEATHSIG via setpriv), so a crashed test leaves nothing running: call
// start() from a thread that outlives the server (normally the test's main thread).
//
// Not thread-safe: owned by one test.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.h"

namespace vmm::testutil {

// unshare(CLONE_NEWNET | CLONE_NEWNS), every mount made private (nothing propagates back to the
// host), loopback up. Must run before any thread is created (unshare(CLONE_NEWNS) fails then).
Status enterPrivateNamespaces();

class NfsServer {
 public:
  // What the server needs and this host lacks (root, ganesha.nfsd, rpcbind, rpcinfo); "" when
  // it can run. For VMM_REQUIRE(NfsServer::available(), NfsServer::missing()).
  static std::string missing();
  static bool available() { return missing().empty(); }

  NfsServer() = default;
  NfsServer(const NfsServer&) = delete;
  NfsServer& operator=(const NfsServer&) = delete;
  ~NfsServer() { stop(); }

  // Exports `exportDir` (an existing directory) as exportPath() and waits until NFSv3 and
  // MOUNT answer through the portmapper.
  Status start(const std::string& exportDir);
  // Stops ganesha and rpcbind (SIGTERM, then SIGKILL after 10 s) and removes the work files.
  void stop();
  bool running() const { return ganesha_ > 0; }

  // SIGSTOP / SIGCONT of ganesha: a server that accepts connections but never answers.
  Status pause();
  Status resume();

  std::string host() const { return "127.0.0.1"; }
  std::string exportPath() const { return "/export"; }
  std::string url(const std::string& file) const { return "nfs://" + host() + exportPath() + "/" + file; }
  pid_t ganeshaPid() const { return ganesha_; }
  std::string log() const;  // ganesha's log, for failure messages

 private:
  Status waitReady();

  std::string workDir_;
  pid_t rpcbind_ = -1;
  pid_t ganesha_ = -1;
  bool paused_ = false;
};

}  // namespace vmm::testutil
