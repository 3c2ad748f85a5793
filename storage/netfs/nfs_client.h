// One NFSv3 mount in userspace (a libnfs context), driven through libnfs's asynchronous API so
// that every call gives up at its deadline: a server that stops answering gives a timeout
// error, never a hang. Paths are inside the export ("/disk.qcow2").
//
// Thread-safety: all methods may be called from any thread. Calls are serialised on one timed
// mutex (a libnfs context is single-threaded); a caller that cannot get it before its deadline
// gets a timeout error instead of queueing behind a call that waits for a hung server. A call
// that timed out stays queued in the context; its late answer is consumed and dropped by later
// calls, so the connection keeps working once the server answers again.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "base/time_util.h"

struct nfs_context;
struct nfsfh;

namespace vmm::storage {

struct NfsAttributes {
  bool regular = false;
  bool directory = false;
  uint64_t size = 0;
  uint64_t used = 0;  // bytes the server has allocated for the file
};

struct NfsDirEntry {
  std::string name;
  NfsAttributes attrs;
};

struct NfsSpace {
  uint64_t total = 0;
  uint64_t free = 0;
  uint64_t available = 0;
};

class NfsClient;

// An open file of one NfsClient. Destroying it closes the file without waiting for the server.
class NfsFile {
 public:
  NfsFile() = default;
  NfsFile(std::shared_ptr<NfsClient> client, nfsfh* fh) : client_(std::move(client)), fh_(fh) {}
  NfsFile(NfsFile&& o) noexcept : client_(std::move(o.client_)), fh_(std::exchange(o.fh_, nullptr)) {}
  NfsFile& operator=(NfsFile&& o) noexcept;
  NfsFile(const NfsFile&) = delete;
  NfsFile& operator=(const NfsFile&) = delete;
  ~NfsFile() { release(); }

  bool valid() const { return fh_ != nullptr; }
  Result<size_t> pread(uint64_t offset, char* buf, size_t len, Deadline deadline);
  // Writes all of buf (libnfs splits it into the server's write size).
  Status pwrite(uint64_t offset, const char* buf, size_t len, Deadline deadline);
  Status truncate(uint64_t size, Deadline deadline);
  Status fsync(Deadline deadline);
  // Closes and reports errors of the final flush; the handle is released either way.
  Status close(Deadline deadline);

 private:
  void release();
  std::shared_ptr<NfsClient> client_;
  nfsfh* fh_ = nullptr;
};

class NfsClient : public std::enable_shared_from_this<NfsClient> {
 public:
  // Connects to host (through its portmapper) and mounts exportPath with NFSv3.
  static Result<std::shared_ptr<NfsClient>> mount(const std::string& host, const std::string& exportPath, Deadline deadline);
  ~NfsClient();
  NfsClient(const NfsClient&) = delete;
  NfsClient& operator=(const NfsClient&) = delete;

  const std::string& host() const { return host_; }
  const std::string& exportPath() const { return export_; }
  // False once the connection failed for good (the mount must be made again).
  bool healthy() const;

  // Tells the server's mount daemon we are done (advisory in NFSv3).
  Status unmount(Deadline deadline);

  Result<NfsSpace> statvfs(Deadline deadline);
  Result<std::vector<NfsDirEntry>> listDir(const std::string& path, Deadline deadline);
  Result<NfsAttributes> stat(const std::string& path, Deadline deadline);
  // Creates a new file (fails with conflict if it exists).
  Result<NfsFile> create(const std::string& path, Deadline deadline);
  Result<NfsFile> open(const std::string& path, bool writable, Deadline deadline);
  // Up to `len` first bytes of each file, read in parallel; "" for files that cannot be read.
  Result<std::vector<std::string>> readPrefixes(const std::vector<std::string>& paths, size_t len, Deadline deadline);
  Status unlink(const std::string& path, Deadline deadline);
  Status rename(const std::string& from, const std::string& to, Deadline deadline);

  // The largest read/write one RPC carries.
  uint64_t readMax() const { return readMax_; }
  uint64_t writeMax() const { return writeMax_; }

  enum class CallKind;  // what a call returns (defined in the .cc)
  struct Call;          // one asynchronous request (defined in the .cc)

 private:
  friend class NfsFile;
  NfsClient(std::string host, std::string exportPath);

  using Lock = std::unique_lock<std::timed_mutex>;
  class CallScope;  // a registered call and the lock it runs under (defined in the .cc)
  Result<Lock> lock(Deadline deadline, const std::string& what);
  Call& newCall(CallKind kind, nfsfh* fh = nullptr);
  // Registers a call and lets `queue(call)` hand it to libnfs (returning libnfs's result code).
  template <typename Submit>
  Result<CallScope> submit(Lock lock, CallKind kind, const std::string& what, Submit queue, nfsfh* fh = nullptr);
  // Submits a call, waits for its answer and turns a failed answer into its error.
  template <typename Submit>
  Result<CallScope> runLocked(Lock lock, CallKind kind, const std::string& what, Deadline deadline, Submit queue,
                              nfsfh* fh = nullptr);
  // The same, first taking the connection lock.
  template <typename Submit>
  Result<CallScope> run(CallKind kind, const std::string& what, Deadline deadline, Submit queue, nfsfh* fh = nullptr);
  // Services the connection until every call in `calls` completed or the deadline passes.
  Status wait(const std::vector<Call*>& calls, Deadline deadline, const std::string& what);
  Status waitOne(Call& call, Deadline deadline, const std::string& what) { return wait({&call}, deadline, what); }
  Error callError(const Call& call, const std::string& what) const;
  void forget(Call& call);
  void flushDeferredCloses();

  Result<size_t> pread(nfsfh* fh, uint64_t offset, char* buf, size_t len, Deadline deadline);
  Status pwrite(nfsfh* fh, uint64_t offset, const char* buf, size_t len, Deadline deadline);
  Status ftruncate(nfsfh* fh, uint64_t size, Deadline deadline);
  Status fsync(nfsfh* fh, Deadline deadline);
  Status close(nfsfh* fh, Deadline deadline);
  // Queues a close without waiting (from destructors that must not block).
  void closeLater(nfsfh* fh);

  const std::string host_;
  const std::string export_;
  // Held while driving ctx_, only up to the caller's deadline. Not annotated for the analysis:
  // ownership travels in Lock objects from call to call (CallScope), which it cannot follow.
  std::timed_mutex mu_;
  nfs_context* ctx_ = nullptr;
  std::list<std::unique_ptr<Call>> calls_;  // in flight, including abandoned ones
  std::atomic<bool> broken_{false};
  uint64_t readMax_ = 0;
  uint64_t writeMax_ = 0;
  // Files to close that were released while another thread held mu_.
  Mutex deferredMu_;
  std::vector<nfsfh*> deferredCloses_ VMM_GUARDED_BY(deferredMu_);
};

}  // namespace vmm::storage
