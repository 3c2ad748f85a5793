#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <thread>

#include "api/openapi_schemas.h"
#include "api/types/domain_summary.h"
#include "api/registry.h"
#include "daemon/operation_manager.h"
#include "test_util.h"

using namespace vmm;
using nlohmann::json;

TEST(Operations, RunWaitAndPersist) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 8);
  auto sub = bus.subscribe({{"operation"}, ""});
  std::string okId, failId;
  {
    OperationManager ops(*store, bus, pool);
    auto ok = ops.submit({"test.ok", "things/a", false, ""}, [](OperationContext& ctx) -> Result<json> {
      ctx.setProgress(50, "half way");
      return json{{"answer", 42}};
    });
    ASSERT_TRUE(ok.ok());
    okId = ok->id;
    auto fail = ops.submit({"test.fail", "things/b", false, ""}, [](OperationContext&) -> Result<json> { return conflict("no"); });
    failId = fail->id;
    auto done = ops.wait(okId, Deadline::after(Millis(2000)));
    ASSERT_TRUE(done.ok());
    EXPECT_EQ(done->status, model::OperationStatus::succeeded);
    EXPECT_EQ(done->result["answer"], 42);
    auto failed = ops.wait(failId, Deadline::after(Millis(2000)));
    EXPECT_EQ(failed->status, model::OperationStatus::failed);
    EXPECT_EQ(failed->error->code, ErrorCode::conflict);
    EXPECT_EQ(ops.get("nope").error().code, ErrorCode::not_found);
  }
  bool closed;
  auto events = sub->drain(closed);
  EXPECT_GE(events.size(), 6u);  // pending, running, succeeded for each
  // Finished operations survive a restart.
  OperationManager again(*store, bus, pool);
  ASSERT_TRUE(again.load().ok());
  EXPECT_EQ(again.get(okId)->status, model::OperationStatus::succeeded);
  EXPECT_EQ(again.get(failId)->error->message, "no");
}

TEST(Operations, UnfinishedOnesAreMarkedInterrupted) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  model::Operation op;
  op.id = "abc";
  op.kind = "domain.start";
  op.status = model::OperationStatus::running;
  ASSERT_TRUE(store->put(Table::operations, op.id, model::formatOperation(op)).ok());
  EventBus bus;
  ThreadPool pool(1, 2);
  OperationManager ops(*store, bus, pool);
  ASSERT_TRUE(ops.load().ok());
  auto got = ops.get("abc");
  EXPECT_EQ(got->status, model::OperationStatus::failed);
  EXPECT_NE(got->error->message.find("interrupted"), std::string::npos);
}

TEST(Operations, CancelAndWaitTimeout) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 8);
  OperationManager ops(*store, bus, pool);
  auto op = ops.submit({"test.long", "x", true, ""}, [](OperationContext& ctx) -> Result<json> {
    while (!ctx.cancelled()) std::this_thread::sleep_for(Millis(5));
    return cancelledError("stopped on request");
  });
  auto early = ops.wait(op->id, Deadline::after(Millis(50)));
  EXPECT_EQ(early->status, model::OperationStatus::running);
  ASSERT_TRUE(ops.cancel(op->id).ok());
  auto done = ops.wait(op->id, Deadline::after(Millis(2000)));
  EXPECT_EQ(done->status, model::OperationStatus::cancelled);
  EXPECT_EQ(ops.cancel(op->id).error().code, ErrorCode::conflict);
  auto fixed = ops.submit({"test.fixed", "x", false, ""}, [](OperationContext&) -> Result<json> {
    std::this_thread::sleep_for(Millis(200));
    return json();
  });
  std::this_thread::sleep_for(Millis(30));
  EXPECT_EQ(ops.cancel(fixed->id).error().code, ErrorCode::conflict);  // not cancellable once running
}

TEST(Operations, PruneKeepsTheNewest) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 8);
  OperationOptions oo;
  oo.keepFinished = 3;
  oo.maxAge = Millis(3600000);
  OperationManager ops(*store, bus, pool, oo);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    auto op = ops.submit({"t", "x", false, ""}, [](OperationContext&) -> Result<json> { return json(); });
    ASSERT_TRUE(ops.wait(op->id, Deadline::after(Millis(1000))).ok());
    ids.push_back(op->id);
    std::this_thread::sleep_for(Millis(2));
  }
  ops.prune();
  EXPECT_EQ(ops.list().size(), 3u);
  EXPECT_TRUE(ops.get(ids.back()).ok());
  EXPECT_FALSE(ops.get(ids.front()).ok());
  EXPECT_EQ(store->loadAll(Table::operations)->size(), 3u);
}

TEST(Registry, ValidatesParametersAndAccess) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 8);
  OperationManager ops(*store, bus, pool);
  api::Registry reg(ops);
  int calls = 0;
  reg.bind("domain.get", [&](const api::CallContext&, const json& p) -> Result<api::Reply> {
    ++calls;
    return api::Reply(json{{"name", p["name"]}});
  });
  reg.bind("domain.delete", [&](const api::CallContext&, const json&) -> Result<api::Reply> {
    ++calls;
    return api::Reply(json::object());
  });
  api::CallContext reader, writer;
  reader.principal = writer.principal = "test";
  reader.transport = writer.transport = "rpc";
  writer.role = api::Role::operate;
  EXPECT_TRUE(reg.call(reader, "domain.get", {{"name", "a"}}).ok());
  EXPECT_EQ(reg.call(reader, "domain.get", json::object()).error().message, "name: required parameter is missing");
  EXPECT_EQ(reg.call(reader, "domain.get", {{"name", 3}}).error().message, "name: expected string, got integer");
  EXPECT_EQ(reg.call(reader, "domain.get", {{"name", "a"}, {"x", 1}}).error().message, "x: unknown parameter of domain.get");
  EXPECT_EQ(reg.call(reader, "domain.get", json::array()).error().message, "params: expected an object, got array");
  EXPECT_EQ(reg.call(reader, "domain.delete", {{"name", "a"}}).error().code, ErrorCode::permission_denied);
  EXPECT_TRUE(reg.call(writer, "domain.delete", {{"name", "a"}}).ok());
  EXPECT_EQ(reg.call(reader, "nope", json::object()).error().code, ErrorCode::not_found);
  EXPECT_EQ(reg.call(reader, "domain.list", {{"state", "sleeping"}}).error().message,
            "state: unknown value \"sleeping\" (expected one of: shutoff, starting, running, paused, stopping, crashed)");
  EXPECT_EQ(calls, 2);  // rejected calls never reached a handler
  EXPECT_NE(reg.metricsText().find("vmm_api_calls_total{operation=\"domain.get\"} 5"), std::string::npos);
  auto doc = reg.openapi();
  EXPECT_EQ(doc["openapi"], "3.0.3");
  EXPECT_TRUE(doc["paths"]["/v1/domains/{name}/start"]["post"]["responses"].contains("202"));
}

// Each route says what a success returns and what its body parameter is, in schemas the
// document has: a new operation cannot fall back to an untyped object.
TEST(Registry, EveryRouteNamesItsSchemas) {
  json schemas = api::openapiSchemas();
  for (const auto& spec : api::operationSpecs()) {
    if (!spec.http) continue;
    const auto& route = *spec.http;
    EXPECT_FALSE(route.returns.empty()) << spec.name;
    EXPECT_TRUE(schemas.contains(api::returnsComponent(route.returns))) << spec.name << " returns " << route.returns;
    if (!route.bodyParam.empty()) {
      EXPECT_TRUE(schemas.contains(route.bodySchema)) << spec.name << " takes " << route.bodySchema;
    }
  }
  std::function<void(const json&)> refsResolve = [&](const json& j) {
    if (j.is_array()) {
      for (const auto& v : j) refsResolve(v);
      return;
    }
    if (!j.is_object()) return;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "$ref") {
        EXPECT_TRUE(schemas.contains(it.value().get<std::string>().substr(21))) << it.value();
      }
      refsResolve(it.value());
    }
  };
  refsResolve(schemas);
  EXPECT_EQ(api::returnsSchema("Pool[]"), json::parse(R"({"type":"array","items":{"$ref":"#/components/schemas/Pool"}})"));
}

// The document's DomainSummary is the wire type vmmd writes (api/types/domain_summary.h).
TEST(Registry, DomainSummarySchemaHasTheWireTypesFields) {
  json summary = api::openapiSchemas()["DomainSummary"];
  std::set<std::string> documented, written;
  for (auto it = summary["properties"].begin(); it != summary["properties"].end(); ++it) documented.insert(it.key());
  for (auto name : wire::kSummaryFieldNames) written.insert(std::string(name));
  EXPECT_EQ(documented, written);
}
