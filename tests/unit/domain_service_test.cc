// DomainService with the test driver, in-process: lifecycle, persistence, reconnection,
// unrequested stops, reads that never wait for mutations, bad input that changes nothing.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "base/event_loop.h"
#include "daemon/domain_service.h"
#include "drivers/test/test_driver.h"
#include "test_util.h"

using namespace vmm;
using nlohmann::json;

namespace {

class Harness {
 public:
  explicit Harness(const std::string& dbPath) : pool(2, 64) {
    loop.runInThread();
    store = std::move(*StateStore::open(dbPath, StoreOptions{false}));
    service = std::make_unique<DomainService>(*store, bus, pool, DomainServiceOptions{Millis(300), Millis(2000), Millis(2000), ""});
    drivers::DriverContext ctx{&loop, &pool, "", ""};
    service->addDriver(std::make_unique<drivers::TestDriver>(ctx));
  }
  ~Harness() {
    service.reset();
    loop.stop();
    loop.join();
  }
  model::Domain def(const std::string& name, json extra = json::object()) {
    json j = {{"name", name}, {"type", "test"}};
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
    auto d = model::parseDomain(j);
    EXPECT_TRUE(d.ok()) << d.error().message;
    return *d;
  }
  model::DomainState state(const std::string& name) { return service->get(name)->status.state; }
  bool waitState(const std::string& name, model::DomainState s, Millis within = Millis(3000)) {
    auto until = SteadyClock::now() + within;
    while (SteadyClock::now() < until) {
      if (state(name) == s) return true;
      std::this_thread::sleep_for(Millis(10));
    }
    return false;
  }

  EventLoop loop;
  ThreadPool pool;
  EventBus bus;
  std::unique_ptr<StateStore> store;
  std::unique_ptr<DomainService> service;
};

}  // namespace

TEST(DomainService, LifecycleAndEvents) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  auto sub = h.bus.subscribe({{"domain"}, ""});
  ASSERT_TRUE(h.service->create(h.def("web1")).ok());
  ASSERT_TRUE(h.service->start("web1").ok());
  EXPECT_EQ(h.state("web1"), model::DomainState::running);
  ASSERT_TRUE(h.service->suspend("web1").ok());
  EXPECT_EQ(h.state("web1"), model::DomainState::paused);
  ASSERT_TRUE(h.service->resume("web1").ok());
  ASSERT_TRUE(h.service->reboot("web1").ok());
  ASSERT_TRUE(h.service->shutdown("web1", {}).ok());
  EXPECT_EQ(h.state("web1"), model::DomainState::shutoff);
  ASSERT_TRUE(h.service->start("web1").ok());
  ASSERT_TRUE(h.service->destroy("web1").ok());
  ASSERT_TRUE(h.service->undefine("web1").ok());
  std::vector<std::string> events;
  bool closed;
  for (const auto& e : sub->drain(closed)) events.push_back(e->data.value("event", ""));
  EXPECT_EQ(events, (std::vector<std::string>{"defined", "starting", "started", "suspended", "resumed", "rebooted",
                                              "stopping", "stopped", "starting", "started", "stopped", "undefined"}));
}

TEST(DomainService, BadRequestsChangeNothing) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->create(h.def("web1", {{"nics", {{{"bridge", "br0"}, {"mac", "52:54:00:00:00:01"}}}}})).ok());
  auto dupName = h.service->create(h.def("web1"));
  EXPECT_EQ(dupName.error().code, ErrorCode::conflict);
  auto dupMac = h.service->create(h.def("web2", {{"nics", {{{"bridge", "br0"}, {"mac", "52:54:00:00:00:01"}}}}}));
  ASSERT_FALSE(dupMac.ok());
  EXPECT_NE(dupMac.error().message.find("already used by domain web1"), std::string::npos);
  auto uuid = h.service->get("web1")->def->uuid;
  auto dupUuid = h.service->create(h.def("web3", {{"uuid", uuid}}));
  EXPECT_EQ(dupUuid.error().code, ErrorCode::conflict);
  EXPECT_FALSE(h.service->create(h.def("bad", {{"machine", "pc"}})).ok());  // test driver's own validation
  EXPECT_EQ(h.service->count(), 1u);
  EXPECT_EQ(h.store->loadAll(Table::domains)->size(), 1u);
  EXPECT_EQ(h.service->start("nosuch").error().code, ErrorCode::not_found);
  ASSERT_TRUE(h.service->start("web1").ok());
  EXPECT_EQ(h.service->start("web1").error().code, ErrorCode::conflict);
  EXPECT_EQ(h.service->undefine("web1").error().code, ErrorCode::conflict);
  EXPECT_EQ(h.state("web1"), model::DomainState::running);
  // A start failure leaves the domain shut off and without a runtime record.
  ASSERT_TRUE(h.service->create(h.def("broken", {{"metadata", {{"test_driver", {{"fail_start", "no disk"}}}}}})).ok());
  auto failed = h.service->start("broken");
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("no disk"), std::string::npos);
  EXPECT_EQ(h.state("broken"), model::DomainState::shutoff);
  EXPECT_FALSE(h.store->get(Table::runtime, "broken")->has_value());
}

TEST(DomainService, ReadsNeverWaitForAMutation) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->create(h.def("slow", {{"metadata", {{"test_driver", {{"start_delay", "800ms"}}}}}})).ok());
  auto starting = std::async(std::launch::async, [&] { return h.service->start("slow"); });
  ASSERT_TRUE(h.waitState("slow", model::DomainState::starting));
  auto t0 = SteadyClock::now();
  auto list = h.service->list({});
  auto view = h.service->get("slow");
  EXPECT_LT(SteadyClock::now() - t0, Millis(50));
  ASSERT_EQ(list.size(), 1u);
  ASSERT_TRUE(view->job.has_value());
  EXPECT_EQ(view->job->substr(0, 5), "start");
  // A second mutation waits for the job and then fails naming it (job wait is 300 ms here).
  auto busy = h.service->destroy("slow");
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().message.find("busy: start in progress"), std::string::npos);
  ASSERT_TRUE(starting.get().ok());
}

TEST(DomainService, GuestPoweroffAndCrashAreNoticed) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  auto sub = h.bus.subscribe({{"domain.lifecycle"}, ""});
  ASSERT_TRUE(h.service->create(h.def("off", {{"metadata", {{"test_driver", {{"poweroff_after", "100ms"}}}}}})).ok());
  ASSERT_TRUE(h.service->create(h.def("crashy", {{"metadata", {{"test_driver", {{"crash_after", "100ms"}}}}},
                                                 {"lifecycle", {{"on_crash", "preserve"}}}})).ok());
  ASSERT_TRUE(h.service->start("off").ok());
  ASSERT_TRUE(h.service->start("crashy").ok());
  ASSERT_TRUE(h.waitState("off", model::DomainState::shutoff));
  ASSERT_TRUE(h.waitState("crashy", model::DomainState::crashed));
  EXPECT_NE(h.service->get("off")->status.reason.find("guest powered off"), std::string::npos);
  EXPECT_FALSE(h.store->get(Table::runtime, "off")->has_value());
  bool closed;
  int stopped = 0, crashed = 0;
  for (const auto& e : sub->drain(closed)) {
    if (e->data["event"] == "stopped") ++stopped;
    if (e->data["event"] == "crashed") ++crashed;
  }
  EXPECT_EQ(stopped, 1);
  EXPECT_EQ(crashed, 1);
}

TEST(DomainService, RestartKeepsDefinitionsAndReconnects) {
  testutil::TempDir dir;
  {
    Harness h(dir / "vmm.db");
    ASSERT_TRUE(h.service->create(h.def("keep")).ok());
    ASSERT_TRUE(h.service->create(h.def("run")).ok());
    ASSERT_TRUE(h.service->create(h.def("pause")).ok());
    ASSERT_TRUE(h.service->create(h.def("dies", {{"metadata", {{"test_driver", {{"fail_reconnect", true}}}}}})).ok());
    ASSERT_TRUE(h.service->start("run").ok());
    ASSERT_TRUE(h.service->start("pause").ok());
    ASSERT_TRUE(h.service->suspend("pause").ok());
    ASSERT_TRUE(h.service->start("dies").ok());
  }
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->load().ok());
  EXPECT_EQ(h.service->count(), 4u);
  EXPECT_EQ(h.state("keep"), model::DomainState::shutoff);
  EXPECT_EQ(h.state("run"), model::DomainState::running);
  EXPECT_EQ(h.service->get("run")->status.reason, "reconnected");
  EXPECT_EQ(h.state("pause"), model::DomainState::paused);
  EXPECT_EQ(h.state("dies"), model::DomainState::shutoff);
  EXPECT_EQ(h.service->get("dies")->status.reason, "stopped while vmmd was down");
  EXPECT_FALSE(h.store->get(Table::runtime, "dies")->has_value());
  // Reconnected domains are controllable.
  ASSERT_TRUE(h.service->resume("pause").ok());
  ASSERT_TRUE(h.service->destroy("run").ok());
}

// A guest that pauses while a destroy holds the job: the pause rewrites the runtime record
// (persistRuntime, on a pool thread) while the destroy reads it to release the driver's
// resources. The read takes the domain's lock; without it ThreadSanitizer reports the data
// race here (tsan.unit.domain_service_test).
TEST(DomainService, GuestPausesDuringDestroy) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->create(h.def("web1", {{"metadata", {{"test_driver", {{"destroy_delay", "300ms"}}}}}})).ok());
  auto started = h.service->start("web1");
  ASSERT_TRUE(started.ok()) << started.error().message;
  auto destroying = std::async(std::launch::async, [&] { return h.service->destroy("web1"); });
  std::this_thread::sleep_for(Millis(100));
  // As a driver reports a guest-initiated pause (QMP STOP), from its own thread.
  h.service->domainStateChanged("web1", started->status.runId, model::DomainState::paused, "guest paused");
  auto destroyed = destroying.get();
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  EXPECT_EQ(destroyed->status.state, model::DomainState::shutoff);
  EXPECT_FALSE(h.store->get(Table::runtime, "web1")->has_value());
}

TEST(DomainService, UpdateWithGenerationAndPendingChanges) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  auto created = h.service->create(h.def("web1"));
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->generation, 1u);
  ASSERT_TRUE(h.service->start("web1").ok());
  auto d2 = *created->def;
  d2.vcpus = 4;
  auto updated = h.service->update("web1", d2, 1);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(updated->generation, 2u);
  EXPECT_TRUE(updated->liveDef && updated->liveDef != updated->def);  // pending changes
  EXPECT_EQ(updated->liveDef->vcpus, 1);
  auto stale = h.service->update("web1", d2, 1);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::precondition_failed);
  auto renamed = d2;
  renamed.name = "other";
  EXPECT_FALSE(h.service->update("web1", renamed, std::nullopt).ok());
}

TEST(DomainService, HotplugLiveAndPersistent) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->create(h.def("web1")).ok());
  model::Disk disk;
  disk.source.path = "/tmp/extra.img";
  EXPECT_EQ(h.service->attachDisk("web1", disk, true, true).error().code, ErrorCode::conflict);  // not running
  ASSERT_TRUE(h.service->start("web1").ok());
  auto v = h.service->attachDisk("web1", disk, false, true);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->liveDef->disks.size(), 1u);
  EXPECT_EQ(v->def->disks.size(), 0u);
  v = h.service->detachDisk("web1", "vda", false, true);
  ASSERT_TRUE(v.ok()) << v.error().message;
  v = h.service->attachDisk("web1", disk, true, true);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->def->disks.size(), 1u);
  EXPECT_EQ(v->liveDef->disks.size(), 1u);
  EXPECT_EQ(h.service->detachDisk("web1", "vdz", true, true).error().code, ErrorCode::not_found);
}

TEST(DomainService, StatsAllDoesNotWaitForAStuckGuest) {
  testutil::TempDir dir;
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->create(h.def("a")).ok());
  ASSERT_TRUE(h.service->start("a").ok());
  auto t0 = SteadyClock::now();
  auto all = h.service->statsAll(Deadline::after(Millis(500)));
  EXPECT_LT(SteadyClock::now() - t0, Millis(400));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_GT(all[0]["memory"]["max_bytes"].get<uint64_t>(), 0u);
}

// A display on a TCP address always has a password: generated at create, kept through an
// update that sends the redacted "********" back, and given at load to a definition stored
// before the rule (the old default listened on 127.0.0.1 without one), without a new generation.
TEST(DomainService, TcpGraphicsGetAGeneratedPasswordThatIsKept) {
  testutil::TempDir dir;
  {
    Harness h(dir / "vmm.db");
    ASSERT_TRUE(h.service->create(h.def("tcp", {{"graphics", {{{"type", "vnc"}, {"listen", "127.0.0.1"}}}}})).ok());
    ASSERT_TRUE(h.service->create(h.def("sock", {{"graphics", {{{"type", "vnc"}}}}})).ok());
    std::string pw = h.service->get("tcp")->def->graphics[0].password;
    EXPECT_EQ(pw.size(), 8u);
    EXPECT_TRUE(h.service->get("sock")->def->graphics[0].password.empty());
    auto redacted = model::parseDomain(model::formatDomain(*h.service->get("tcp")->def));
    ASSERT_TRUE(redacted.ok());
    EXPECT_EQ(redacted->graphics[0].password, "********");
    ASSERT_TRUE(h.service->update("tcp", *redacted, std::nullopt).ok());
    EXPECT_EQ(h.service->get("tcp")->def->graphics[0].password, pw);
    json old = {{"name", "old"}, {"uuid", "11111111-2222-4333-8444-555555555501"}, {"type", "test"},
                {"graphics", {{{"type", "spice"}, {"listen", "127.0.0.1"}, {"port", 5930}}}}};
    ASSERT_TRUE(h.store->put(Table::domains, "old", json{{"definition", old}, {"generation", 3}}).ok());
  }
  Harness h(dir / "vmm.db");
  ASSERT_TRUE(h.service->load().ok());
  auto v = h.service->get("old");
  ASSERT_TRUE(v.ok());
  std::string pw = v->def->graphics[0].password;
  EXPECT_EQ(pw.size(), 16u);
  EXPECT_EQ(v->generation, 3u);
  auto row = h.store->get(Table::domains, "old");
  ASSERT_TRUE(row.ok() && row->has_value());
  EXPECT_EQ((**row)["definition"]["graphics"][0].value("password", ""), pw);
  EXPECT_EQ((**row).value("generation", 0), 3);
}
