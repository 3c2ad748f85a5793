// Durable state in one sqlite database (WAL). Every mutation is one transaction, committed
// before the API reports success ("durable before visible"). The daemon keeps the live state
// in memory; the store is read at start-up and written on every change.
//
// Tables share one shape - key, JSON value, update time - so each object kind is a table
// (domains, runtime, pools, networks, snapshots, operations, tokens, meta) and the schema
// evolves through numbered migrations (PRAGMA user_version).
//
// Thread-safety: all methods may be called from any thread; writes are serialised.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace vmm {

enum class Table { domains, runtime, pools, networks, snapshots, operations, tokens, meta, volumes, images, leases, projects };
std::string_view tableName(Table t);

struct StoreOptions {
  bool fullSync = true;  // fsync the WAL on every commit (survives power loss, not only crashes)
  // Commits checkpoint the WAL themselves only past this many pages; below it the daemon
  // calls checkpoint() in the background so that no request pays for one.
  int autoCheckpointPages = 10000;
};

struct StoredRow {
  std::string key;
  nlohmann::json value;
  int64_t updatedUs = 0;
};

class StateStore {
 public:
  // Exists only inside write(), which holds the store's lock for it (hence no analysis).
  class Txn {
   public:
    Status put(Table t, std::string_view key, const nlohmann::json& value) VMM_NO_THREAD_SAFETY_ANALYSIS;
    Status remove(Table t, std::string_view key) VMM_NO_THREAD_SAFETY_ANALYSIS;
    // Removes every key starting with prefix (e.g. all snapshots of a domain: "web1/").
    Status removePrefix(Table t, std::string_view prefix) VMM_NO_THREAD_SAFETY_ANALYSIS;

   private:
    friend class StateStore;
    explicit Txn(StateStore& s) : s_(s) {}
    StateStore& s_;
  };

  static Result<std::unique_ptr<StateStore>> open(const std::string& path, StoreOptions options = {});
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Runs fn inside BEGIN IMMEDIATE ... COMMIT; any error rolls everything back.
  Status write(const std::function<Status(Txn&)>& fn);
  Status put(Table t, std::string_view key, const nlohmann::json& value);
  Status remove(Table t, std::string_view key);

  Result<std::vector<StoredRow>> loadAll(Table t);
  Result<std::optional<nlohmann::json>> get(Table t, std::string_view key);
  // Copies the WAL into the database (PASSIVE: never waits for readers). Cheap when idle.
  Status checkpoint();
  // Deletes the oldest rows beyond `keep` and rows older than `olderThanUs`.
  Result<int> prune(Table t, size_t keep, int64_t olderThanUs);

  int schemaVersion() const { return schemaVersion_; }
  static int latestSchemaVersion();
  const std::string& path() const { return path_; }

 private:
  StateStore() = default;
  Status exec(const char* sql) VMM_REQUIRES(mu_);
  Result<sqlite3_stmt*> prepare(const std::string& sql) VMM_REQUIRES(mu_);
  Status migrate() VMM_REQUIRES(mu_);
  Status putLocked(Table t, std::string_view key, const nlohmann::json& value) VMM_REQUIRES(mu_);
  Status removeLocked(Table t, std::string_view key) VMM_REQUIRES(mu_);
  Status removePrefixLocked(Table t, std::string_view prefix) VMM_REQUIRES(mu_);
  Error sqlError(std::string_view what) VMM_REQUIRES(mu_);

  Mutex mu_;
  sqlite3* db_ VMM_GUARDED_BY(mu_) = nullptr;  // opened without sqlite's own mutex: mu_ serialises it
  std::string path_;
  int schemaVersion_ = 0;
  std::vector<std::pair<std::string, sqlite3_stmt*>> stmts_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm
