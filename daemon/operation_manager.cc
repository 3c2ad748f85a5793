#include "daemon/operation_manager.h"

#include <sys/stat.h>

#include <algorithm>

#include "base/fs.h"
#include "base/log.h"
#include "base/random.h"
#include "model/project.h"

namespace vmm {

namespace {

using json = nlohmann::json;

std::string jsonText(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void collectStrings(json& j, bool base64, std::vector<std::pair<std::string*, bool>>& out) {
  if (j.is_string()) {
    out.emplace_back(j.get_ptr<std::string*>(), base64);
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      collectStrings(it.value(), k.size() > 4 && k.compare(k.size() - 4, 4, "_b64") == 0, out);
    }
  } else if (j.is_array()) {
    for (auto& v : j) collectStrings(v, base64, out);
  }
}

// Cuts the longest strings of `j` to one common length so that its text fits `budget` bytes:
// short fields (exit codes, names) stay whole, output is cut at its end. Cuts fall on UTF-8
// character boundaries (base64 fields on 4-byte groups). False when it cannot fit.
bool shrinkToFit(json& j, size_t budget) {
  for (int attempt = 0; attempt < 6; ++attempt) {
    size_t size = jsonText(j).size();
    if (size <= budget) return true;
    std::vector<std::pair<std::string*, bool>> strings;
    collectStrings(j, false, strings);
    if (strings.empty()) return false;
    std::vector<size_t> lengths;
    size_t total = 0;
    for (auto& [str, b64] : strings) {
      lengths.push_back(str->size());
      total += str->size();
    }
    size_t excess = size - budget;
    if (excess >= total) return false;
    size_t room = total - excess;  // bytes of string content that may stay
    std::sort(lengths.begin(), lengths.end());
    size_t cap = lengths.back();
    for (size_t i = 0; i < lengths.size(); ++i) {
      size_t left = lengths.size() - i;
      if (lengths[i] * left > room) {
        cap = room / left;
        break;
      }
      room -= lengths[i];
    }
    for (auto& [str, b64] : strings) {
      if (str->size() <= cap) continue;
      size_t cut = b64 ? cap / 4 * 4 : cap;
      while (cut > 0 && (static_cast<unsigned char>((*str)[cut]) & 0xC0) == 0x80) --cut;
      str->resize(cut);
    }
  }
  return jsonText(j).size() <= budget;
}

}  // namespace

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
    if (!entry->op.result.is_null()) {
      entry->resultBytes = jsonText(entry->op.result).size();
      if (!entry->op.truncated) entry->op.resultBytes = entry->resultBytes;
    }
    resultBytes_ += entry->resultBytes;
    ops_[entry->op.id] = entry;
  }
  if (!options_.resultDir.empty()) VMM_TRY(fs::makeDirs(options_.resultDir, 0700));
  return {};
}

void OperationManager::persist(const model::Operation& op) {
  auto st = store_.put(Table::operations, op.id, model::formatOperation(op));
  if (!st.ok()) log::error("cannot persist operation", {{"id", op.id}, {"error", st.error().message}});
}

void OperationManager::publish(const model::Operation& op) {
  // Events reach every subscriber: the result stays out (operation.get has it), its size in.
  json data = model::formatOperation(op);
  if (!op.result.is_null()) {
    data["result_bytes"] = op.resultBytes;
    data["result"] = nullptr;
  }
  events_.publish("operation", "operations/" + op.id, std::move(data), std::string(model::projectOfObject(op.object)));
}

std::string OperationManager::resultPath(const std::string& id) const { return options_.resultDir + "/" + id + ".json"; }

void OperationManager::boundResult(model::Operation& op, size_t& keptBytes) {
  std::string text = jsonText(op.result);
  keptBytes = text.size();
  op.resultBytes = text.size();
  if (text.size() <= options_.maxResultBytes) return;
  op.truncated = true;
  if (!options_.resultDir.empty()) {
    auto st = fs::writeFileAtomic(resultPath(op.id), text, 0600);
    if (!st.ok()) log::warn("cannot keep an operation's whole result", {{"id", op.id}, {"error", st.error().message}});
  }
  text.clear();
  // Room for the structure; what does not fit even then is replaced by a note.
  if (!shrinkToFit(op.result, options_.maxResultBytes))
    op.result = json{{"message", "the result (" + std::to_string(op.resultBytes) + " bytes) is too large to show; "
                                 "operation.result returns it while it is kept"}};
  keptBytes = jsonText(op.result).size();
}

Result<model::Operation> OperationManager::submit(OperationRequest request, Task task) {
  auto entry = std::make_shared<Entry>();
  auto& op = entry->op;
  op.id = newUuid();
  op.kind = std::move(request.kind);
  op.object = std::move(request.object);
  op.principal = std::move(request.principal);
  op.status = model::OperationStatus::pending;
  op.createdUs = op.updatedUs = wallNowMicros();
  op.cancellable = request.cancellable;
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
  // The final state is made in a copy (a running operation has no result yet: cheap), bounded
  // - which may write a file - and made durable before waiters or readers see it.
  model::Operation op;
  {
    std::lock_guard lock(mu_);
    op = entry->op;
  }
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
  size_t kept = 0;
  if (!op.result.is_null()) boundResult(op, kept);
  persist(op);
  model::Operation snapshot;
  std::vector<std::string> dropped;
  {
    std::lock_guard lock(mu_);
    entry->op = std::move(op);
    entry->resultBytes = kept;
    resultBytes_ += kept;
    snapshot = entry->op;
    if (resultBytes_ > options_.maxTotalResultBytes) dropped = pruneBytesLocked();
  }
  cv_.notify_all();
  publish(snapshot);
  for (const auto& id : dropped) {
    (void)store_.remove(Table::operations, id);
    if (!options_.resultDir.empty()) (void)fs::removeFile(resultPath(id));
  }
  // Last, and notified under the lock: drain() (and so the destructor) returns only once
  // nothing here touches the manager any more.
  std::lock_guard lock(mu_);
  --active_;
  cv_.notify_all();
}

std::vector<std::string> OperationManager::pruneBytesLocked() {
  std::vector<std::pair<int64_t, std::string>> finished;
  for (const auto& [id, e] : ops_)
    if (model::isFinal(e->op.status) && e->resultBytes > 0) finished.emplace_back(e->op.updatedUs, id);
  std::sort(finished.begin(), finished.end());
  std::vector<std::string> dropped;
  for (const auto& [at, id] : finished) {
    if (resultBytes_ <= options_.maxTotalResultBytes) break;
    auto it = ops_.find(id);
    resultBytes_ -= std::min(resultBytes_, it->second->resultBytes);
    ops_.erase(it);
    dropped.push_back(id);
  }
  return dropped;
}

Result<std::string> OperationManager::fullResult(const std::string& id) const {
  model::Operation op;
  {
    std::lock_guard lock(mu_);
    auto it = ops_.find(id);
    if (it == ops_.end()) return notFound("operation " + id + " not found");
    op = it->second->op;
  }
  if (!model::isFinal(op.status)) return conflict("operation " + id + " has not finished");
  if (!op.truncated) return jsonText(op.result);
  if (options_.resultDir.empty()) return notFound("the whole result of operation " + id + " was not kept");
  auto text = fs::readFile(resultPath(id), op.resultBytes + 1);
  if (!text.ok())
    return notFound("the whole result of operation " + id + " (" + std::to_string(op.resultBytes) +
                    " bytes) is no longer kept: whole results are kept for " + formatDuration(options_.resultTtl));
  return text;
}

size_t OperationManager::resultBytes() const {
  std::lock_guard lock(mu_);
  return resultBytes_;
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
  auto done = [&] { return model::isFinal(entry->op.status) || waitersReleased_; };
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

void OperationManager::releaseWaiters() {
  {
    std::lock_guard lock(mu_);
    waitersReleased_ = true;
  }
  cv_.notify_all();
}

bool OperationManager::drain(Deadline deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline.at(), [&] { return active_ == 0; });
}

void OperationManager::prune() {
  int64_t cutoff = wallNowMicros() - options_.maxAge.count() * 1000;
  std::vector<std::string> dropped;
  {
    std::lock_guard lock(mu_);
    std::vector<std::pair<int64_t, std::string>> finished;
    for (const auto& [id, e] : ops_)
      if (model::isFinal(e->op.status)) finished.emplace_back(e->op.updatedUs, id);
    std::sort(finished.begin(), finished.end(), std::greater<>());
    for (size_t i = 0; i < finished.size(); ++i) {
      if (i < options_.keepFinished && finished[i].first >= cutoff) continue;
      auto it = ops_.find(finished[i].second);
      resultBytes_ -= std::min(resultBytes_, it->second->resultBytes);
      ops_.erase(it);
    }
    dropped = pruneBytesLocked();
  }
  for (const auto& id : dropped) (void)store_.remove(Table::operations, id);
  auto r = store_.prune(Table::operations, options_.keepFinished + activeCount(), cutoff);
  if (!r.ok()) log::warn("cannot prune operations", {{"error", r.error().message}});
  pruneResultFiles();
}

void OperationManager::pruneResultFiles() {
  if (options_.resultDir.empty()) return;
  auto names = fs::listDir(options_.resultDir);
  if (!names.ok()) return;
  int64_t cutoff = wallNowMicros() - options_.resultTtl.count() * 1000;
  for (const auto& name : *names) {
    std::string path = options_.resultDir + "/" + name;
    std::string id = name.size() > 5 ? name.substr(0, name.size() - 5) : name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    int64_t mtimeUs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
    bool known;
    {
      std::lock_guard lock(mu_);
      known = ops_.count(id) > 0;
    }
    if (!known || mtimeUs < cutoff) (void)fs::removeFile(path);
  }
}

size_t OperationManager::activeCount() const {
  std::lock_guard lock(mu_);
  return active_;
}

}  // namespace vmm
