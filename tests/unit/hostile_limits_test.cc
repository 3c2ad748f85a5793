// Bounds below the transports: the event loop's watchdog and thread check, event queues bounded
// by bytes, event filter sizes, operation results capped in memory and in the state store (the
// whole one in a file), the wait caps of the dispatcher, the HTTP request-head parser's limits,
// log files cut to size while their writer appends, and no stale exit status after a pid is
// reused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "api/dispatcher.h"
#include "api/http/http_wire.h"
#include "base/event_loop.h"
#include "base/fs.h"
#include "base/log_cap.h"
#include "base/process.h"
#include "base/socket_util.h"
#include "daemon/event_bus.h"
#include "daemon/operation_manager.h"
#include "test_util.h"
#include "tests/support/require.h"

using namespace vmm;
using nlohmann::json;

// ---- the event loop

TEST(HostileLoop, SlowCallbacksAreCountedAndNamed) {
  EventLoop loop;
  loop.runInThread();
  EXPECT_EQ(loop.slowCallbacks(), 0u);
  loop.runSync([] {});
  std::atomic<bool> ran{false};
  loop.post([&] {
    std::this_thread::sleep_for(Millis(150));
    ran = true;
  });
  loop.runSync([] {});  // after the slow one
  EXPECT_TRUE(ran);
  EXPECT_EQ(loop.slowCallbacks(), 1u);
  EXPECT_GE(loop.longestCallbackMicros(), 150000);
  loop.runSync([] {});  // a quick one is not counted
  EXPECT_EQ(loop.slowCallbacks(), 1u);
  loop.stop();
  loop.join();
}

TEST(HostileLoop, WatchFromAnotherThreadIsAContractViolation) {
  EventLoop loop;
  loop.runInThread();
  loop.runSync([] {});  // the loop thread is known from here on
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  uint64_t before = EventLoop::contractViolations();
  loop.runSync([&] { loop.watch(fds[0], EPOLLIN, [](uint32_t) {}); });  // on the loop: fine
  EXPECT_EQ(EventLoop::contractViolations(), before);
#ifdef NDEBUG
  loop.unwatch(fds[0]);  // from this thread: logged and counted (a debug build aborts)
  EXPECT_EQ(EventLoop::contractViolations(), before + 1);
#else
  EXPECT_DEATH(loop.unwatch(fds[0]), "");
  loop.runSync([&] { loop.unwatch(fds[0]); });
#endif
  loop.stop();
  loop.join();
  ::close(fds[0]);
  ::close(fds[1]);
}

// ---- events

TEST(HostileEvents, QueuesAreBoundedByBytesAndTheOverflowSaysWhy) {
  EventBus bus;
  auto slow = bus.subscribe({}, 1000, 64 << 10);  // plenty of events, 64 KiB
  auto fast = bus.subscribe({});
  std::string kib(1024, 'x');
  for (int i = 0; i < 200; ++i) bus.publish("domain.lifecycle", "domains/x", {{"i", i}, {"pad", kib}});
  EXPECT_EQ(bus.overflowCount(), 1u);
  bool closed = false;
  auto got = slow->drain(closed);
  EXPECT_TRUE(closed);
  ASSERT_GE(got.size(), 2u);
  EXPECT_LT(got.size(), 70u);  // about 64 events of 1 KiB, then the notice
  const auto& notice = *got.back();
  EXPECT_EQ(notice.type, "events.overflow");
  EXPECT_EQ(notice.data["reason"], "bytes");
  EXPECT_NE(notice.data["message"].get<std::string>().find("65536 bytes of events"), std::string::npos) << notice.text;
  EXPECT_EQ(notice.data["last_delivered_seq"], got[got.size() - 2]->seq);
  EXPECT_EQ(fast->drain(closed).size(), 200u);  // the default bounds took all of it
  // One event is made once and shared, not copied per subscriber.
  auto a = bus.subscribe({}), b = bus.subscribe({});
  bus.publish("x", "", {{"big", std::string(100000, 'y')}});
  auto ea = a->drain(closed), eb = b->drain(closed);
  ASSERT_EQ(ea.size(), 1u);
  ASSERT_EQ(eb.size(), 1u);
  EXPECT_EQ(ea[0].get(), eb[0].get());
}

TEST(HostileEvents, FiltersAreBounded) {
  EventFilter f;
  EXPECT_TRUE(f.check().ok());
  f.types.assign(32, "domain");
  EXPECT_TRUE(f.check().ok());
  f.types.push_back("one-too-many");
  EXPECT_EQ(f.check().error().message, "types: at most 32 event types, got 33");
  f.types = {std::string(129, 'a')};
  EXPECT_EQ(f.check().error().message, "types: each event type has 1 to 128 characters");
  f.types = {""};
  EXPECT_FALSE(f.check().ok());
  f.types.clear();
  f.object = std::string(513, 'o');
  EXPECT_EQ(f.check().error().message, "object: at most 512 characters");
}

// ---- operation results

TEST(HostileOperations, LargeResultsAreCutWithTheWholeOneInAFile) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 4);
  auto sub = bus.subscribe({{"operation"}, ""});
  OperationOptions oo;
  oo.resultDir = dir / "operations";
  OperationManager ops(*store, bus, pool, oo);
  ASSERT_TRUE(ops.load().ok());
  std::string out(3 << 20, 'o');
  out += "\xc3\xa9";  // a two-byte character at the very end
  auto op = ops.submit({"domain.exec", "domains/a", false, ""}, [&](OperationContext&) -> Result<json> {
    return json{{"exit_code", 0}, {"stdout", out}, {"stderr", "short"}};
  });
  ASSERT_TRUE(op.ok());
  auto done = ops.wait(op->id, Deadline::after(Millis(5000)));
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->status, model::OperationStatus::succeeded);
  EXPECT_TRUE(done->truncated);
  std::string whole = json{{"exit_code", 0}, {"stdout", out}, {"stderr", "short"}}.dump();
  EXPECT_EQ(done->resultBytes, whole.size());
  std::string kept = done->result.dump();
  EXPECT_LE(kept.size(), oo.maxResultBytes);
  EXPECT_GT(kept.size(), oo.maxResultBytes - 1024);
  EXPECT_EQ(done->result["stderr"], "short");  // short fields stay whole
  EXPECT_EQ(done->result["exit_code"], 0);
  // The whole result, from its 0600 file.
  auto full = ops.fullResult(op->id);
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_EQ(json::parse(*full)["stdout"], out);
  struct stat st {};
  ASSERT_EQ(::stat((oo.resultDir + "/" + op->id + ".json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The state store keeps the cut one.
  auto rows = store->loadAll(Table::operations);
  ASSERT_TRUE(rows.ok());
  for (const auto& row : *rows)
    if (row.key == op->id) {
      EXPECT_LE(row.value.dump().size(), oo.maxResultBytes + 4096);
      EXPECT_EQ(row.value["truncated"], true);
    }
  // Events carry no result, only its size.
  bool closed = false;
  size_t finals = 0;
  for (const auto& e : sub->drain(closed)) {
    EXPECT_LT(e->text.size(), 4096u) << e->text.substr(0, 200);
    EXPECT_TRUE(e->data["result"].is_null());
    if (e->data["status"] == "succeeded") {
      ++finals;
      EXPECT_EQ(e->data["result_bytes"], whole.size());
    }
  }
  EXPECT_EQ(finals, 1u);
  // Loaded again after a restart: still marked, and the file still read.
  OperationManager again(*store, bus, pool, oo);
  ASSERT_TRUE(again.load().ok());
  EXPECT_TRUE(again.get(op->id)->truncated);
  EXPECT_EQ(again.fullResult(op->id)->size(), whole.size());
}

TEST(HostileOperations, ResultsArePrunedByTotalBytes) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 1);
  OperationOptions oo;
  oo.maxResultBytes = 1 << 20;
  oo.maxTotalResultBytes = 3 << 20;
  oo.resultDir = dir / "operations";
  OperationManager ops(*store, bus, pool, oo);
  ASSERT_TRUE(ops.load().ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    auto op = ops.submit({"domain.exec", "domains/a", false, ""}, [](OperationContext&) -> Result<json> {
      return json{{"stdout", std::string(900 << 10, 'z')}};
    });
    ASSERT_TRUE(op.ok());
    ASSERT_TRUE(ops.wait(op->id, Deadline::after(Millis(5000))).ok());
    ids.push_back(op->id);
  }
  EXPECT_LE(ops.resultBytes(), oo.maxTotalResultBytes);
  EXPECT_EQ(ops.get(ids.front()).error().code, ErrorCode::not_found);  // the oldest went first
  EXPECT_TRUE(ops.get(ids.back()).ok());
  auto rows = store->loadAll(Table::operations);
  ASSERT_TRUE(rows.ok());
  EXPECT_LE(rows->size(), 4u);  // gone from the state store too
}

// ---- the dispatcher's wait caps

TEST(HostileDispatch, WaitsAreCappedPerPeerAndPerAccess) {
  ThreadPool calls(1, 4), waits(0, 16);
  api::DispatchLimits limits;
  limits.waitsPerPeer = 2;
  limits.readWaits = 3;
  limits.writeWaits = 2;
  api::Dispatcher d(calls, waits, limits);
  const api::OperationSpec* wait = api::findSpec("operation.wait");
  const api::OperationSpec* list = api::findSpec("domain.list");
  ASSERT_TRUE(wait && list);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> running{0};
  auto block = [&] {
    ++running;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
  };
  auto ctx = [](const char* peer, api::Role a) {
    api::CallContext c;
    c.role = a;
    c.peer = peer;
    return c;
  };
  EXPECT_TRUE(d.submit(*wait, ctx("uid 1000", api::Role::read), block).ok());
  EXPECT_TRUE(d.submit(*wait, ctx("uid 1000", api::Role::read), block).ok());
  auto third = d.submit(*wait, ctx("uid 1000", api::Role::read), block);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ErrorCode::unavailable);
  EXPECT_EQ(third.error().message, "operation.wait: uid 1000 already has 2 calls waiting; retry when one returns");
  EXPECT_TRUE(d.submit(*wait, ctx("uid 1001", api::Role::read), block).ok());
  auto shared = d.submit(*wait, ctx("uid 1002", api::Role::read), block);
  ASSERT_FALSE(shared.ok());
  EXPECT_EQ(shared.error().message, "operation.wait: 3 read-only calls are already waiting; retry when one returns");
  // Read-write callers have their own share, also when the same uid fills the read-only one.
  EXPECT_TRUE(d.submit(*wait, ctx("uid 1000", api::Role::admin), block).ok());
  // Calls are not waits: never refused.
  std::atomic<bool> called{false};
  EXPECT_TRUE(d.submit(*list, ctx("uid 1000", api::Role::read), [&] { called = true; }).ok());
  for (int i = 0; i < 100 && !called; ++i) std::this_thread::sleep_for(Millis(10));
  EXPECT_TRUE(called);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (int i = 0; i < 200 && d.waitsRunning() > 0; ++i) std::this_thread::sleep_for(Millis(10));
  EXPECT_EQ(d.waitsRunning(), 0u);
  EXPECT_TRUE(d.submit(*wait, ctx("uid 1000", api::Role::read), [] {}).ok());  // room again
}

// ---- the HTTP request head

TEST(HostileHttpHead, LimitsHoldHoweverTheHeadIsSent) {
  api::HeadLimits limits;
  api::HttpRequest req;
  std::string head = "GET /v1/host HTTP/1.1\r\nHost: localhost\r\n";
  for (int i = 0; i < 100000; ++i) head += "X-" + std::to_string(i) + ": y\r\n";
  auto r = api::parseRequestHead(head, limits, req);
  EXPECT_EQ(r.state, api::HeadResult::State::error);
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(r.message, "more than 64 header fields");
  // Large headers: the size bound.
  std::string big = "GET / HTTP/1.1\r\nA: " + std::string(20000, 'a') + "\r\n\r\n";
  r = api::parseRequestHead(big, limits, req);
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(r.message, "request head larger than 16384 bytes");
  // Incomplete beyond the bound is refused, not buffered further.
  r = api::parseRequestHead("GET / HTTP/1.1\r\nA: " + std::string(17000, 'a'), limits, req);
  EXPECT_EQ(r.status, 431);
  r = api::parseRequestHead("GET /" + std::string(9000, 'p'), limits, req);
  EXPECT_EQ(r.status, 414);
  r = api::parseRequestHead("GET / HTTP/1.1\r\nA: b\r\n", limits, req);
  EXPECT_EQ(r.state, api::HeadResult::State::incomplete);
  for (const char* bad : {"GET / HTTP/1.1\r\n folded: x\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n",
                          "GET http://x/ HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nA b: c\r\n\r\n", "GET /%zz HTTP/1.1\r\n\r\n"}) {
    r = api::parseRequestHead(bad, limits, req);
    EXPECT_EQ(r.status, 400) << bad;
  }
  r = api::parseRequestHead("GET / HTTP/2.0\r\n\r\n", limits, req);
  EXPECT_EQ(r.status, 505);
  std::string good = "GET /v1/domains/a%20b?full=1&label=k%3Dv&x HTTP/1.0\r\nAuthorization: Bearer t\r\n\r\nBODY";
  r = api::parseRequestHead(good, limits, req);
  ASSERT_EQ(r.state, api::HeadResult::State::complete);
  EXPECT_EQ(r.consumed, good.find("BODY"));
  EXPECT_EQ(req.path, "/v1/domains/a%20b");
  EXPECT_EQ(req.params.find("label")->second, "k=v");
  EXPECT_EQ(req.params.count("x"), 1u);
  EXPECT_EQ(req.header("AUTHORIZATION"), "Bearer t");
  EXPECT_FALSE(req.keepAlive());  // HTTP/1.0
}

// ---- logs

TEST(HostileLogs, AnAppendedLogIsCutWithAMarkerAndTheWriterGoesOn) {
  testutil::TempDir dir;
  std::string path = dir / "qemu.log";
  fs::UniqueFd writer(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  ASSERT_TRUE(writer.valid());
  std::string first = "QEMU 7.2.22 monitor - type 'help' for more information\n";
  ASSERT_TRUE(writeAllFd(writer.get(), first, Deadline::after(Millis(1000))).ok());
  std::string line = "qemu-system-x86_64: warning: guest noise " + std::string(60, '#') + "\n";
  for (int i = 0; i < 40000; ++i) ASSERT_TRUE(writeAllFd(writer.get(), line, Deadline::after(Millis(1000))).ok());
  auto cut = capLogFile(path, 1 << 20);
  ASSERT_TRUE(cut.ok()) << cut.error().message;
  EXPECT_TRUE(*cut);
  ASSERT_TRUE(writeAllFd(writer.get(), "after the cut\n", Deadline::after(Millis(1000))).ok());
  auto text = fs::readFile(path);
  ASSERT_TRUE(text.ok());
  EXPECT_LE(text->size(), (1u << 20));
  EXPECT_GT(text->size(), (1u << 19));
  EXPECT_EQ(text->substr(0, first.size()), first);  // the start stays
  EXPECT_NE(text->find("bytes cut at "), std::string::npos);
  EXPECT_NE(text->find(": this log is kept under 1048576 bytes]\n"), std::string::npos);
  EXPECT_EQ(text->substr(text->size() - 14), "after the cut\n");  // the writer's next line lands at the end
  EXPECT_EQ(text->find('\0'), std::string::npos);                // no hole where the cut was
  EXPECT_FALSE(*capLogFile(path, 1 << 20));                      // under the cap: untouched
  EXPECT_FALSE(*capLogFile(dir / "missing.log", 1 << 20));
}

// ---- exit statuses after pid reuse

namespace {

// Makes the next fork() get `pid` (root: /proc/sys/kernel/ns_last_pid); false if another
// process on the host took it first.
bool nextPidWillBe(pid_t pid) {
  std::ofstream f("/proc/sys/kernel/ns_last_pid");
  f << (pid - 1);
  return static_cast<bool>(f);
}

}  // namespace

TEST(HostileChildren, AStatusLeftByAnEarlierProcessIsNotReportedForANewOneWithItsPid) {
  VMM_REQUIRE(::geteuid() == 0, "root (to choose the next pid through /proc/sys/kernel/ns_last_pid)");
  ChildReaper::enable();
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto first = spawnProcess({"true"});
    ASSERT_TRUE(first.ok());
    // It exits and is reaped; nobody claims its status.
    for (int i = 0; i < 200 && processAlive(*first); ++i) {
      ChildReaper::reapAll();
      std::this_thread::sleep_for(Millis(5));
    }
    ChildReaper::reapAll();
    ASSERT_FALSE(processAlive(*first));
    if (!nextPidWillBe(*first)) continue;
    auto second = spawnProcess({"sleep", "5"});
    ASSERT_TRUE(second.ok());
    if (*second != *first) {  // someone else forked in between: try again
      ::kill(*second, SIGKILL);
      (void)ChildReaper::wait(*second, Deadline::after(Millis(5000)));
      continue;
    }
    // The same pid, a different process: still running, so there is no status to report.
    auto early = ChildReaper::wait(*second, Deadline::after(Millis(300)));
    EXPECT_FALSE(early.ok()) << "pid " << *second << " reported " << describeWaitStatus(*early)
                             << " while it runs: the status of the earlier process with that pid";
    std::atomic<int> seen{-1};
    ChildReaper::onExit(*second, [&](int st) { seen = st; });
    std::this_thread::sleep_for(Millis(100));
    EXPECT_EQ(seen.load(), -1) << "onExit fired for a running process";
    ::kill(*second, SIGKILL);
    for (int i = 0; i < 200 && seen.load() == -1; ++i) {
      ChildReaper::reapAll();
      std::this_thread::sleep_for(Millis(10));
    }
    ASSERT_NE(seen.load(), -1);
    EXPECT_TRUE(WIFSIGNALED(seen.load()));
    return;
  }
  FAIL() << "could not get a reused pid in 50 attempts (the host forks too much)";
}
