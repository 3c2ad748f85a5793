#include "daemon/operation_manager.h"

#include "base/log.h"
#include "base/random.h"

namespace vmm {

void OperationContext::setProgress(int percent, std::string message) {
  std::shared_ptr<OperationManager::Entry> entry;
  model::Operation snapshot;
  bool emit = false;
  {
    std::lock_guard lock(m_.mu_);
    auto it = m_.ops_.find(id_);
    if (it == m_.ops_.end()) return;
    entry = it->second;
    entry->op.progress = std::clamp(percent, -1, 100);
    entry->op.progressMessage = std::move(message);
    entry->op.updatedUs = wallNowMicros();
    // At most four progress events per second per operation.
    if (entry->op.updatedUs - entry->lastProgressEventUs >= 250000) {
      entry->lastProgressEventUs = entry->op.updatedUs;
      snapshot = entry->op;
      emit = true;
    }
  }
  m_.cv_.notify_all();
  if (emit) m_.publish(snapshot);
}

void OperationContext::onCancel(std::function<void()> fn) {
  bool now = false;
  {
    std::lock_guard lock(m_.mu_);
    auto it = m_.ops_.find(id_);
    if (it == m_.ops_.end()) return;
    if (cancelled()) now = true;
    else it->second->cancelHooks.push_back(fn);
  }
  if (now) fn();
}

OperationManager::OperationManager(StateStore& store, EventBus& events, ThreadPool& pool, OperationOptions options)
    : store_(store), events_(events), pool_(pool), options_(options) {}

OperationManager::~OperationManager() { drain(Deadline::after(Millis(5000))); }

Status OperationManager::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::operations));
  std::lock_guard lock(mu_);
  for (auto& row : rows) {
    auto op = model::parseOperationRecord(row.value);
    if (!op.ok()) {
      log::warn("skipping unreadable operation record", {{"id", row.key}, {"error", op.error().message}});
      continue;
    }
    if (!model::isFinal(op->status)) {
      op->status = model::OperationStatus::failed;
      op->error = Error{ErrorCode::unavailable, "interrupted: vmmd stopped before the operation finished"};
      op->updatedUs = wallNowMicros();
      persist(*op);
    }
    auto entry = std::make_shared<Entry>();
    entry->op = std::move(*op);
    ops_[entry->op.id] = entry;
  }
  return {};
}

void OperationManager::persist(const model::Operation& op) {
  auto st = store_.put(Table::operations, op.id, model::formatOperation(op));
  if (!st.ok()) log::error("cannot persist operation", {{"id", op.id}, {"error", st.error().message}});
}

void OperationManager::publish(const model::Operation& op) {
  events_.publish("operation", "operations/" + op.id, model::formatOperation(op));
}

Result<model::Operation> OperationManager::submit(std::string kind, std::string object, bool cancellable, Task task) {
  auto entry = std::make_shared<Entry>();
  auto& op = entry->op;
  op.id = newUuid();
  op.kind = std::move(kind);
  op.object = std::move(object);
  op.status = model::OperationStatus::pending;
  op.createdUs = op.updatedUs = wallNowMicros();
  op.cancellable = cancellable;
  // Durable before visible: the operation exists on disk before its id is returned.
  VMM_TRY(store_.put(Table::operations, op.id, model::formatOperation(op)));
  model::Operation snapshot;
  {
    std::lock_guard lock(mu_);
    ops_[op.id] = entry;
    ++active_;
    snapshot = op;
  }
  publish(snapshot);
  pool_.submit([this, entry, task = std::move(task)]() mutable { run(entry, std::move(task)); });
  return snapshot;
}

void OperationManager::run(std::shared_ptr<Entry> entry, Task task) {
  model::Operation snapshot;
  {
    std::lock_guard lock(mu_);
    if (entry->cancelFlag->load()) {
      // cancelled while pending
      snapshot = entry->op;
    } else {
      entry->op.status = model::OperationStatus::running;
      entry->op.updatedUs = wallNowMicros();
      snapshot = entry->op;
    }
  }
  if (entry->cancelFlag->load()) {
    finish(entry, cancelledError("cancelled before it started"));
    return;
  }
  cv_.notify_all();
  publish(snapshot);
  OperationContext ctx(*this, entry->op.id, entry->cancelFlag);
  Result<nlohmann::json> result = internalError("operation did not run");
  try {
    result = task(ctx);
  } catch (const std::exception& ex) {
    result = internalError(std::string("unexpected failure: ") + ex.what());
  }
  if (!result.ok() && entry->cancelFlag->load() && result.error().code != ErrorCode::cancelled)
    result = cancelledError("cancelled: " + result.error().message);
  finish(entry, std::move(result));
}

void OperationManager::finish(const std::shared_ptr<Entry>& entry, Result<nlohmann::json> result) {
  model::Operation snapshot;
  {
    std::lock_guard lock(mu_);
    auto& op = entry->op;
    if (result.ok()) {
      op.status = model::OperationStatus::succeeded;
      op.result = std::move(result).value();
      op.progress = 100;
    } else {
      op.error = result.error();
      op.status = result.error().code == ErrorCode::cancelled ? model::OperationStatus::cancelled
                                                               : model::OperationStatus::failed;
    }
    op.updatedUs = wallNowMicros();
    snapshot = op;
  }
  persist(snapshot);  // durable before waiters see the final state
  {
    std::lock_guard lock(mu_);
    --active_;
  }
  cv_.notify_all();
  publish(snapshot);
}

Result<model::Operation> OperationManager::get(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = ops_.find(id);
  if (it == ops_.end()) return notFound("operation " + id + " not found");
  return it->second->op;
}

std::vector<model::Operation> OperationManager::list(bool includeFinished) const {
  std::vector<model::Operation> out;
  std::lock_guard lock(mu_);
  for (const auto& [id, e] : ops_)
    if (includeFinished || !model::isFinal(e->op.status)) out.push_back(e->op);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.createdUs < b.createdUs; });
  return out;
}

Result<model::Operation> OperationManager::wait(const std::string& id, Deadline deadline) const {
  std::unique_lock lock(mu_);
  auto it = ops_.find(id);
  if (it == ops_.end()) return notFound("operation " + id + " not found");
  auto entry = it->second;
  auto done = [&] { return model::isFinal(entry->op.status); };
  if (deadline.isNever()) cv_.wait(lock, done);
  else cv_.wait_until(lock, deadline.at(), done);
  return entry->op;
}

Status OperationManager::cancel(const std::string& id) {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(mu_);
    auto it = ops_.find(id);
    if (it == ops_.end()) return notFound("operation " + id + " not found");
    auto& e = *it->second;
    if (model::isFinal(e.op.status)) return conflict("operation " + id + " has already finished");
    if (!e.op.cancellable && e.op.status == model::OperationStatus::running)
      return conflict("operation " + id + " (" + e.op.kind + ") cannot be cancelled once running");
    e.cancelFlag->store(true);
    hooks.swap(e.cancelHooks);
  }
  for (auto& h : hooks) h();
  return {};
}

bool OperationManager::drain(Deadline deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline.at(), [&] { return active_ == 0; });
}

void OperationManager::prune() {
  int64_t cutoff = wallNowMicros() - options_.maxAge.count() * 1000;
  {
    std::lock_guard lock(mu_);
    std::vector<std::pair<int64_t, std::string>> finished;
    for (const auto& [id, e] : ops_)
      if (model::isFinal(e->op.status)) finished.emplace_back(e->op.updatedUs, id);
    std::sort(finished.begin(), finished.end(), std::greater<>());
    for (size_t i = 0; i < finished.size(); ++i)
      if (i >= options_.keepFinished || finished[i].first < cutoff) ops_.erase(finished[i].second);
  }
  auto r = store_.prune(Table::operations, options_.keepFinished + activeCount(), cutoff);
  if (!r.ok()) log::warn("cannot prune operations", {{"error", r.error().message}});
}

size_t OperationManager::activeCount() const {
  std::lock_guard lock(mu_);
  return active_;
}

}  // namespace vmm
