// Async operations: long work (start, shutdown with a timeout, snapshots, volume transfers)
// runs on the worker pool and is visible as an operation with an id, status, progress and
// error. Operations are persisted when created and when finished, so finished operations
// survive a daemon restart; ones that were still running are marked failed ("interrupted")
// at the next start. History is pruned by count, age and the total bytes of the results kept.
//
// Results are bounded: one larger than maxResultBytes (exec output a guest controls can be
// 32 MiB) is kept in memory and in the state store as a shortened copy - its longest strings
// cut, `truncated: true` and `result_bytes` on the operation - and whole in a 0600 file under
// resultDir for resultTtl, which fullResult() (operation.result, admins only) reads. Operation
// events never carry results: they say how large the result is; operation.get has it.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/thread_pool.h"
#include "base/time_util.h"
#include "daemon/event_bus.h"
#include "daemon/state_store.h"
#include "model/operation.h"

namespace vmm {

class OperationManager;

// Handed to a running operation. Cancellation is cooperative: long loops check cancelled(),
// and code that blocks on a child process registers onCancel() to interrupt it.
class OperationContext {
 public:
  const std::string& id() const { return id_; }
  bool cancelled() const { return cancelled_->load(); }
  void setProgress(int percent, std::string message = {});
  void onCancel(std::function<void()> fn);

 private:
  friend class OperationManager;
  OperationContext(OperationManager& m, std::string id, std::shared_ptr<std::atomic<bool>> c)
      : m_(m), id_(std::move(id)), cancelled_(std::move(c)) {}
  OperationManager& m_;
  std::string id_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
};

struct OperationOptions {
  size_t keepFinished = 1000;
  Millis maxAge = Millis(24LL * 3600 * 1000);
  size_t maxResultBytes = 1 << 20;        // kept with an operation (memory, state store)
  size_t maxTotalResultBytes = 64 << 20;  // kept by all finished operations together
  std::string resultDir;                  // whole results over maxResultBytes; empty: not kept
  Millis resultTtl = Millis(3600 * 1000);
};

// What to run as an operation, besides its task.
struct OperationRequest {
  std::string kind;       // the operation name: "domain.start"
  std::string object;     // "domains/web1"
  bool cancellable = false;
  std::string principal;  // who asked: "uid 0", "token ci"
};

class OperationManager {
 public:
  using Task = std::function<Result<nlohmann::json>(OperationContext&)>;

  OperationManager(StateStore& store, EventBus& events, ThreadPool& pool, OperationOptions options = {});
  ~OperationManager();

  // Loads history; operations left unfinished by a previous run are marked failed.
  Status load();
  // Creates the operation (durably) and runs `task` on the pool.
  Result<model::Operation> submit(OperationRequest request, Task task);
  Result<model::Operation> get(const std::string& id) const;
  // The whole result's JSON text: the kept one, or the file of a truncated one while it lasts.
  Result<std::string> fullResult(const std::string& id) const;
  std::vector<model::Operation> list(bool includeFinished = true) const;
  // Returns when the operation is final or at the deadline, with its state at that time.
  Result<model::Operation> wait(const std::string& id, Deadline deadline) const;
  Status cancel(const std::string& id);
  // Waits until no operation runs (or the deadline). Used at shutdown.
  bool drain(Deadline deadline);
  // Makes every wait() return now and later ones at once (shutdown: waits last up to an hour).
  void releaseWaiters();
  void prune();
  size_t activeCount() const;
  // Bytes of the results kept in memory (each at most maxResultBytes).
  size_t resultBytes() const;

 private:
  friend class OperationContext;
  struct Entry {
    model::Operation op;
    std::shared_ptr<std::atomic<bool>> cancelFlag = std::make_shared<std::atomic<bool>>(false);
    std::vector<std::function<void()>> cancelHooks;
    int64_t lastProgressEventUs = 0;
    size_t resultBytes = 0;  // of the kept result's JSON text
  };
  void run(std::shared_ptr<Entry> entry, Task task);
  void finish(const std::shared_ptr<Entry>& entry, Result<nlohmann::json> result);
  void publish(const model::Operation& op);
  void persist(const model::Operation& op);
  // Applies maxResultBytes to a result about to be kept (writing the whole one to its file).
  void boundResult(model::Operation& op, size_t& keptBytes);
  std::string resultPath(const std::string& id) const;
  // Drops the oldest finished operations until the kept results fit maxTotalResultBytes.
  // Returns the ids dropped (to remove from the store outside the lock). mu_ held.
  std::vector<std::string> pruneBytesLocked();
  // Removes whole-result files past resultTtl or of operations no longer kept.
  void pruneResultFiles();

  StateStore& store_;
  EventBus& events_;
  ThreadPool& pool_;
  const OperationOptions options_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Entry>> ops_;
  size_t active_ = 0;
  size_t resultBytes_ = 0;  // sum of Entry::resultBytes
  bool waitersReleased_ = false;
};

}  // namespace vmm
