#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/state_store.h"
#include "test_util.h"

using namespace vmm;
using nlohmann::json;

TEST(StateStore, PersistsAcrossReopen) {
  testutil::TempDir dir;
  {
    auto s = StateStore::open(dir / "vmm.db");
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_TRUE((*s)->put(Table::domains, "web1", json{{"definition", {{"name", "web1"}}}}).ok());
    ASSERT_TRUE((*s)->put(Table::domains, "web2", json{{"x", 1}}).ok());
    ASSERT_TRUE((*s)->remove(Table::domains, "web2").ok());
    ASSERT_TRUE((*s)->put(Table::snapshots, "web1/a", json{{"n", 1}}).ok());
    ASSERT_TRUE((*s)->put(Table::snapshots, "web1/b", json{{"n", 2}}).ok());
    ASSERT_TRUE((*s)->put(Table::snapshots, "web10/c", json{{"n", 3}}).ok());
  }
  auto s = StateStore::open(dir / "vmm.db");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->schemaVersion(), StateStore::latestSchemaVersion());
  auto rows = (*s)->loadAll(Table::domains);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].key, "web1");
  EXPECT_EQ((*rows)[0].value["definition"]["name"], "web1");
  // Prefix removal must not touch "web10/...".
  ASSERT_TRUE((*s)->write([](StateStore::Txn& t) { return t.removePrefix(Table::snapshots, "web1/"); }).ok());
  auto snaps = (*s)->loadAll(Table::snapshots);
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ((*snaps)[0].key, "web10/c");
}

TEST(StateStore, FailedTransactionRollsBack) {
  testutil::TempDir dir;
  auto s = StateStore::open(dir / "vmm.db");
  ASSERT_TRUE(s.ok());
  auto st = (*s)->write([](StateStore::Txn& t) -> Status {
    VMM_TRY(t.put(Table::domains, "half", json{{"a", 1}}));
    VMM_TRY(t.put(Table::runtime, "half", json{{"b", 2}}));
    return internalError("injected failure after two writes");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE((*s)->loadAll(Table::domains)->empty());
  EXPECT_TRUE((*s)->loadAll(Table::runtime)->empty());
}

TEST(StateStore, CrashMidTransactionLeavesNoPartialObject) {
  testutil::TempDir dir;
  {
    auto s = StateStore::open(dir / "vmm.db");
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->put(Table::domains, "before", json{{"ok", true}}).ok());
  }
  // A child process starts a transaction, writes part of an object and dies (like SIGKILL)
  // before committing.
  pid_t pid = fork();
  if (pid == 0) {
    auto s = StateStore::open(dir / "vmm.db");
    if (!s.ok()) _exit(3);
    (void)(*s)->write([](StateStore::Txn& t) -> Status {
      (void)t.put(Table::domains, "torn", json{{"definition", "half"}});
      (void)t.put(Table::runtime, "torn", json{{"pid", 1}});
      _exit(0);  // no COMMIT, no cleanup
    });
    _exit(4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto s = StateStore::open(dir / "vmm.db");
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto domains = (*s)->loadAll(Table::domains);
  ASSERT_TRUE(domains.ok());
  ASSERT_EQ(domains->size(), 1u);
  EXPECT_EQ((*domains)[0].key, "before");
  EXPECT_TRUE((*s)->loadAll(Table::runtime)->empty());
}

TEST(StateStore, CommittedWriteSurvivesKill) {
  testutil::TempDir dir;
  pid_t pid = fork();
  if (pid == 0) {
    auto s = StateStore::open(dir / "vmm.db");
    if (!s.ok()) _exit(3);
    if (!(*s)->put(Table::operations, "op1", json{{"status", "succeeded"}}).ok()) _exit(4);
    kill(getpid(), SIGKILL);
    _exit(5);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  auto s = StateStore::open(dir / "vmm.db");
  ASSERT_TRUE(s.ok());
  auto v = (*s)->get(Table::operations, "op1");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ((**v)["status"], "succeeded");
}

TEST(StateStore, RefusesNewerSchema) {
  testutil::TempDir dir;
  {
    auto s = StateStore::open(dir / "vmm.db");
    ASSERT_TRUE(s.ok());
  }
  ASSERT_TRUE(runCommand({"sh", "-c", "python3 -c \"import sqlite3; c=sqlite3.connect('" + (dir / "vmm.db") + "'); c.execute('PRAGMA user_version=999'); c.commit()\""}).ok());
  auto s = StateStore::open(dir / "vmm.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("newer than this vmmd supports"), std::string::npos);
}

TEST(StateStore, MigratesOldSchema) {
  testutil::TempDir dir;
  // A version-1 database (before the volumes table) is brought up to date with its rows.
  ASSERT_TRUE(runCommand({"python3", "-c",
                          "import sqlite3; c=sqlite3.connect('" + (dir / "vmm.db") +
                              "');\n"
                              "for t in ['domains','runtime','pools','networks','snapshots','operations','tokens','meta']:\n"
                              "  c.execute('CREATE TABLE %s (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, updated_us INTEGER NOT NULL)' % t)\n"
                              "c.execute(\"INSERT INTO domains VALUES ('old', '{\\\"generation\\\": 7}', 1)\")\n"
                              "c.execute('PRAGMA user_version=1'); c.commit()"})
                  ->success());
  auto s = StateStore::open(dir / "vmm.db");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ((*s)->schemaVersion(), StateStore::latestSchemaVersion());
  EXPECT_EQ((*(*s)->get(Table::domains, "old"))->value("generation", 0), 7);
  EXPECT_TRUE((*s)->put(Table::volumes, "p/v", json::object()).ok());
}

TEST(StateStore, PrunesByCountAndAge) {
  testutil::TempDir dir;
  auto s = StateStore::open(dir / "vmm.db", StoreOptions{false});
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*s)->put(Table::operations, "op" + std::to_string(i), json{{"i", i}}).ok());
  auto removed = (*s)->prune(Table::operations, 5, 0);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 15);
  EXPECT_EQ((*s)->loadAll(Table::operations)->size(), 5u);
}
