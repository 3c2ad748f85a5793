#include "daemon/state_store.h"

#include <sqlite3.h>

#include "base/json_util.h"
#include "base/log.h"
#include "base/time_util.h"

namespace vmm {

namespace {

// SQLite's own limit on a value (SQLITE_MAX_LENGTH): the reader's size check never refuses a
// row the writer could store; depth is what protects the reader.
constexpr size_t kMaxRowBytes = 1000000000;

std::string kvTable(std::string_view name) {
  return "CREATE TABLE " + std::string(name) +
         " (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, updated_us INTEGER NOT NULL)";
}

// Migration N brings the schema from version N to N+1. Never edit a released step: add one.
std::vector<std::string> migrations() {
  std::vector<std::string> m;
  // 0 -> 1: the key/value tables.
  std::string v1;
  for (auto t : {"domains", "runtime", "pools", "networks", "snapshots", "operations", "tokens", "meta"})
    v1 += kvTable(t) + ";\n";
  v1 += "CREATE INDEX operations_by_time ON operations(updated_us);\n";
  m.push_back(v1);
  // 1 -> 2: per-volume metadata kept by vmm (what a backend cannot store itself).
  m.push_back(kvTable("volumes") + ";\n");
  // 2 -> 3: images, and the leases of disposable domains.
  m.push_back(kvTable("images") + ";\n" + kvTable("leases") + ";\n");
  // 3 -> 4: projects. What existed before is the default project's: its objects keep their
  // plain names (model/project.h), so no row needs rewriting.
  m.push_back(kvTable("projects") + ";\n");
  return m;
}

}  // namespace

std::string_view tableName(Table t) {
  switch (t) {
    case Table::domains: return "domains";
    case Table::runtime: return "runtime";
    case Table::pools: return "pools";
    case Table::networks: return "networks";
    case Table::snapshots: return "snapshots";
    case Table::operations: return "operations";
    case Table::tokens: return "tokens";
    case Table::meta: return "meta";
    case Table::volumes: return "volumes";
    case Table::images: return "images";
    case Table::leases: return "leases";
    case Table::projects: return "projects";
  }
  return "meta";
}

int StateStore::latestSchemaVersion() { return static_cast<int>(migrations().size()); }

Error StateStore::sqlError(std::string_view what) {
  return internalError(std::string(what) + ": " + (db_ ? sqlite3_errmsg(db_) : "no database"));
}

Result<std::unique_ptr<StateStore>> StateStore::open(const std::string& path, StoreOptions options) {
  std::unique_ptr<StateStore> s(new StateStore);
  MutexLock lock(s->mu_);  // not shared yet: for the analysis, which cannot know
  s->path_ = path;
  int rc = sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return s->sqlError("cannot open state database " + path);
  sqlite3_busy_timeout(s->db_, 5000);
  VMM_TRY(s->exec("PRAGMA journal_mode=WAL"));
  VMM_TRY(s->exec(options.fullSync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  VMM_TRY(s->exec("PRAGMA foreign_keys=ON"));
  VMM_TRY(s->exec(("PRAGMA wal_autocheckpoint=" + std::to_string(options.autoCheckpointPages)).c_str()));
  // Check integrity cheaply: a database that cannot be read fails here, not later.
  VMM_TRY(s->exec("SELECT count(*) FROM sqlite_master"));
  VMM_TRY(s->migrate());
  return s;
}

StateStore::~StateStore() {
  for (auto& [sql, st] : stmts_) sqlite3_finalize(st);
  if (db_) sqlite3_close(db_);
}

Status StateStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return internalError(std::string("state database: ") + msg);
  }
  return {};
}

Result<sqlite3_stmt*> StateStore::prepare(const std::string& sql) {
  for (auto& [s, st] : stmts_) {
    if (s == sql) {
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      return st;
    }
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return sqlError("prepare");
  stmts_.emplace_back(sql, st);
  return st;
}

Status StateStore::migrate() {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &st, nullptr);
  int version = 0;
  if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  auto steps = migrations();
  if (version > static_cast<int>(steps.size()))
    return unsupported("state database " + path_ + " has schema version " + std::to_string(version) +
                       ", newer than this vmmd supports (" + std::to_string(steps.size()) + "); upgrade vmmd");
  for (int v = version; v < static_cast<int>(steps.size()); ++v) {
    VMM_TRY(exec("BEGIN IMMEDIATE"));
    auto st1 = exec(steps[static_cast<size_t>(v)].c_str());
    std::string bump = "PRAGMA user_version=" + std::to_string(v + 1);
    if (st1.ok()) st1 = exec(bump.c_str());
    if (!st1.ok()) {
      (void)exec("ROLLBACK");
      return st1.error().wrap("migrating the state database to schema " + std::to_string(v + 1));
    }
    VMM_TRY(exec("COMMIT"));
    if (version > 0) log::info("state database migrated", {{"from", v}, {"to", v + 1}});
  }
  schemaVersion_ = static_cast<int>(steps.size());
  return {};
}

Status StateStore::putLocked(Table t, std::string_view key, const nlohmann::json& value) {
  VMM_ASSIGN(auto st, prepare("INSERT INTO " + std::string(tableName(t)) +
                              " (key, value, updated_us) VALUES (?1, ?2, ?3)"
                              " ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_us=excluded.updated_us"));
  // Guest bytes (exec output, agent strings) may not be UTF-8: replaced, never a throw.
  std::string text = dumpJson(value);
  sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 3, wallNowMicros());
  if (sqlite3_step(st) != SQLITE_DONE) return sqlError("writing " + std::string(tableName(t)));
  return {};
}

Status StateStore::removeLocked(Table t, std::string_view key) {
  VMM_ASSIGN(auto st, prepare("DELETE FROM " + std::string(tableName(t)) + " WHERE key = ?1"));
  sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(st) != SQLITE_DONE) return sqlError("deleting from " + std::string(tableName(t)));
  return {};
}

Status StateStore::removePrefixLocked(Table t, std::string_view prefix) {
  // substr comparison instead of LIKE: keys may contain '_' and '%'
  VMM_ASSIGN(auto st, prepare("DELETE FROM " + std::string(tableName(t)) + " WHERE substr(key, 1, ?2) = ?1"));
  sqlite3_bind_text(st, 1, prefix.data(), static_cast<int>(prefix.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 2, static_cast<int>(prefix.size()));
  if (sqlite3_step(st) != SQLITE_DONE) return sqlError("deleting from " + std::string(tableName(t)));
  return {};
}

Status StateStore::Txn::put(Table t, std::string_view key, const nlohmann::json& value) {
  return s_.putLocked(t, key, value);
}
Status StateStore::Txn::remove(Table t, std::string_view key) { return s_.removeLocked(t, key); }
Status StateStore::Txn::removePrefix(Table t, std::string_view prefix) { return s_.removePrefixLocked(t, prefix); }

Status StateStore::write(const std::function<Status(Txn&)>& fn) {
  MutexLock lock(mu_);
  VMM_TRY(exec("BEGIN IMMEDIATE"));
  Txn txn(*this);
  // A throw must not leave the transaction open: every later write would fail.
  Status st = internalError("state database: the write did not run");
  try {
    st = fn(txn);
  } catch (const std::exception& e) {
    st = internalError(std::string("state database: unexpected failure while writing: ") + e.what());
  }
  if (st.ok()) st = exec("COMMIT");
  if (!st.ok()) {
    (void)exec("ROLLBACK");
    return st;
  }
  return {};
}

Status StateStore::put(Table t, std::string_view key, const nlohmann::json& value) {
  return write([&](Txn& txn) { return txn.put(t, key, value); });
}

Status StateStore::remove(Table t, std::string_view key) {
  return write([&](Txn& txn) { return txn.remove(t, key); });
}

Result<std::vector<StoredRow>> StateStore::loadAll(Table t) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto st, prepare("SELECT key, value, updated_us FROM " + std::string(tableName(t)) + " ORDER BY key"));
  std::vector<StoredRow> rows;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    StoredRow row;
    row.key = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    const char* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    auto value = parseJson(text ? text : "null", kMaxRowBytes, kStoredJsonDepth);
    if (!value.ok())
      return internalError("state database: " + std::string(tableName(t)) + " row " + row.key + ": " + value.error().message);
    row.value = std::move(*value);
    row.updatedUs = sqlite3_column_int64(st, 2);
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return sqlError("reading " + std::string(tableName(t)));
  return rows;
}

Result<std::optional<nlohmann::json>> StateStore::get(Table t, std::string_view key) {
  MutexLock lock(mu_);
  VMM_ASSIGN(auto st, prepare("SELECT value FROM " + std::string(tableName(t)) + " WHERE key = ?1"));
  sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return std::optional<nlohmann::json>();
  if (rc != SQLITE_ROW) return sqlError("reading " + std::string(tableName(t)));
  const char* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  auto v = parseJson(text ? text : "null", kMaxRowBytes, kStoredJsonDepth);
  if (!v.ok()) return internalError("state database: corrupt row " + std::string(key) + ": " + v.error().message);
  return std::optional<nlohmann::json>(std::move(*v));
}

Status StateStore::checkpoint() {
  MutexLock lock(mu_);
  return exec("PRAGMA wal_checkpoint(PASSIVE)");
}

Result<int> StateStore::prune(Table t, size_t keep, int64_t olderThanUs) {
  MutexLock lock(mu_);
  std::string name(tableName(t));
  VMM_ASSIGN(auto st, prepare("DELETE FROM " + name + " WHERE updated_us < ?1 OR key IN (SELECT key FROM " + name +
                              " ORDER BY updated_us DESC LIMIT -1 OFFSET ?2)"));
  sqlite3_bind_int64(st, 1, olderThanUs);
  sqlite3_bind_int64(st, 2, static_cast<int64_t>(keep));
  if (sqlite3_step(st) != SQLITE_DONE) return sqlError("pruning " + name);
  return sqlite3_changes(db_);
}

}  // namespace vmm
