// End-to-end: a real vmmd process on the test driver, driven through vmctl, libvmmclient
// (JSON-RPC) and raw HTTP.
#include <gtest/gtest.h>
#include <httplib.h>

#include <thread>

#include "base/fs.h"
#include "base/socket_util.h"
#include "base/strings.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

class E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    vmmd = std::make_unique<VmmdProcess>();
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
    auto admin = vmmd->createToken("admin", "admin");
    ASSERT_TRUE(admin.ok()) << admin.error().message;
    adminToken = *admin;
    auto reader = vmmd->createToken("reader", "read");
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    readToken = *reader;
  }
  void TearDown() override {
    rpc.reset();
    if (HasFailure()) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
  }

  httplib::Client http(const std::string& token = "") {
    httplib::Client c("127.0.0.1", vmmd->httpPort());
    c.set_read_timeout(30, 0);
    if (!token.empty()) c.set_bearer_token_auth(token.c_str());
    return c;
  }
  std::string writeDef(const std::string& name, const json& def) {
    std::string path = vmmd->dir() + "/" + name + ".json";
    EXPECT_TRUE(fs::writeFileAtomic(path, def.dump()).ok());
    return path;
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::string adminToken, readToken;
};

json withoutVolatile(json j) {
  // Fields that legitimately differ between two calls made a moment apart.
  if (!j.is_object()) return j;
  j.erase("caller");
  if (j.contains("vmm")) j["vmm"].erase("uptime_seconds");
  return j;
}

}  // namespace

TEST_F(E2E, VmctlFullLifecycle) {
  auto def = writeDef("web1", {{"name", "web1"}, {"type", "test"}, {"vcpus", 2}, {"memory", "1GiB"},
                               {"disks", {{{"source", {{"path", "/var/lib/vmm/web1.qcow2"}}}}}},
                               {"nics", {{{"bridge", "br0"}}}}});
  auto r = vmmd->vmctl({"define", def});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, "Domain web1 defined.\n");
  r = vmmd->vmctl({"define", def});
  EXPECT_EQ(r.exitCode, 5);
  EXPECT_EQ(r.err, "error: domain \"web1\" already exists\n");
  r = vmmd->vmctl({"list"});
  EXPECT_EQ(r.out, "NAME  TYPE  STATE  VCPUS  MEMORY  AUTOSTART  SINCE\n");  // nothing running
  r = vmmd->vmctl({"list", "--all"});
  EXPECT_NE(r.out.find("web1  test  shutoff  2      1GiB    no"), std::string::npos) << r.out;
  ASSERT_EQ(vmmd->vmctl({"start", "web1"}).exitCode, 0);
  EXPECT_EQ(vmmd->vmctl({"start", "web1"}).exitCode, 5);
  r = vmmd->vmctl({"list", "-o", "json"});
  auto list = json::parse(r.out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["state"], "running");
  r = vmmd->vmctl({"exec", "web1", "--", "uname", "-a"});
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_EQ(r.out.substr(0, 10), "Linux web1");
  EXPECT_EQ(vmmd->vmctl({"exec", "web1", "--", "sh", "-c", "exit 7"}).exitCode, 7);
  ASSERT_EQ(vmmd->vmctl({"suspend", "web1"}).exitCode, 0);
  r = vmmd->vmctl({"info", "web1"});
  EXPECT_NE(r.out.find("paused (suspended)"), std::string::npos) << r.out;
  ASSERT_EQ(vmmd->vmctl({"resume", "web1"}).exitCode, 0);
  ASSERT_EQ(vmmd->vmctl({"reboot", "web1"}).exitCode, 0);
  r = vmmd->vmctl({"dumpjson", "web1"});
  EXPECT_EQ(json::parse(r.out)["memory"], "1GiB");
  ASSERT_EQ(vmmd->vmctl({"shutdown", "web1", "--timeout", "5s"}).exitCode, 0);
  EXPECT_EQ(vmmd->vmctl({"undefine", "nosuch"}).exitCode, 4);
  ASSERT_EQ(vmmd->vmctl({"undefine", "web1"}).exitCode, 0);
  EXPECT_EQ(json::parse(vmmd->vmctl({"list", "--all", "-o", "json"}).out).size(), 0u);
  r = vmmd->vmctl({"operation", "list", "-o", "json"});
  auto ops = json::parse(r.out);
  EXPECT_GE(ops.size(), 4u);
  for (const auto& op : ops) EXPECT_EQ(op["status"], "succeeded") << op.dump();
  EXPECT_EQ(vmmd->vmctl({"frobnicate"}).exitCode, 2);
  EXPECT_EQ(vmmd->vmctl({"start"}).exitCode, 2);
}

TEST_F(E2E, VmctlEditAndShell) {
  ASSERT_EQ(vmmd->vmctl({"define", writeDef("ed", {{"name", "ed"}, {"type", "test"}})}).exitCode, 0);
  // $EDITOR is any program that rewrites the file: here sed.
  auto r = vmmd->vmctl({"edit", "ed"}, "", {{"EDITOR", "sed -i s/\\\"vcpus\\\":\\ 1/\\\"vcpus\\\":\\ 3/"}});
  ASSERT_EQ(r.exitCode, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("Domain ed updated (generation 2)"), std::string::npos);
  EXPECT_EQ(json::parse(vmmd->vmctl({"dumpjson", "ed"}).out)["vcpus"], 3);
  r = vmmd->vmctl({"edit", "ed"}, "", {{"EDITOR", "true"}});
  EXPECT_EQ(r.out, "Domain ed not changed.\n");
  r = vmmd->vmctl({"edit", "ed"}, "", {{"EDITOR", "sed -i s/\\\"vcpus\\\":\\ 3/\\\"vcpus\\\":\\ 0/"}});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("vcpus: must be between 1 and 512"), std::string::npos) << r.err;
  // A refused edit is kept for the user, named in the message; the test removes it.
  auto kept = r.err.find("Your edit is kept in ");
  ASSERT_NE(kept, std::string::npos) << r.err;
  std::string keptFile = r.err.substr(kept + 21, r.err.find('\n', kept) - kept - 21);
  EXPECT_TRUE(fs::exists(keptFile)) << keptFile;
  EXPECT_TRUE(fs::removeFile(keptFile).ok());
  // The shell reads commands from stdin when it is not a terminal.
  r = vmmd->vmctl({}, "list --all\nstart ed\n\n# comment\ninfo nosuch\nlist\nexit\n");
  EXPECT_NE(r.out.find("ed    test  shutoff"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Domain ed started."), std::string::npos);
  EXPECT_NE(r.err.find("domain \"nosuch\" not found"), std::string::npos);
  EXPECT_NE(r.out.find("ed    test  running"), std::string::npos);
}

TEST_F(E2E, EventsArriveInOrderOnBothTransports) {
  auto rpcEvents = rpc->subscribe({"domain"}, "");
  ASSERT_TRUE(rpcEvents.ok());
  client::ConnectOptions ho;
  ho.uri = vmmd->httpUrl();
  ho.token = readToken;
  auto httpConn = client::connect(ho);
  ASSERT_TRUE(httpConn.ok());
  auto sseEvents = (*httpConn)->subscribe({"domain.lifecycle"}, "domains/ev");
  ASSERT_TRUE(sseEvents.ok());
  std::this_thread::sleep_for(Millis(200));  // the SSE request is in flight
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", {{"name", "ev"}, {"type", "test"}}}}).ok());
  ASSERT_TRUE(rpc->callAndWait("domain.start", {{"name", "ev"}}, Deadline::after(Millis(10000))).ok());
  ASSERT_TRUE(rpc->call("domain.suspend", {{"name", "ev"}}).ok());
  ASSERT_TRUE(rpc->call("domain.destroy", {{"name", "ev"}}).ok());
  std::vector<std::string> expected = {"defined", "starting", "started", "suspended", "stopped"};
  for (auto* stream : {rpcEvents->get(), sseEvents->get()}) {
    std::vector<std::string> got;
    uint64_t lastSeq = 0;
    while (got.size() < expected.size()) {
      auto e = stream->next(Deadline::after(Millis(5000)));
      ASSERT_TRUE(e.ok()) << e.error().message;
      ASSERT_TRUE(e->has_value()) << "timed out after " << join(got, ",");
      const json& ev = **e;
      EXPECT_GT(ev["seq"].get<uint64_t>(), lastSeq);
      lastSeq = ev["seq"];
      got.push_back(ev["data"]["event"]);
    }
    EXPECT_EQ(got, expected);
  }
  // vmctl events --count
  std::thread t([&] {
    std::this_thread::sleep_for(Millis(300));
    (void)rpc->call("domain.delete", {{"name", "ev"}});
  });
  auto r = vmmd->vmctl({"events", "--type", "domain", "--count", "1", "--timeout", "10s"});
  t.join();
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("domain.lifecycle domains/ev event=undefined"), std::string::npos) << r.out;
}

TEST_F(E2E, AsyncOperationOverHttp) {
  auto c = http(adminToken);
  auto res = c.Post("/v1/domains", R"({"name":"a1","type":"test","metadata":{"test_driver":{"start_delay":"300ms"}}})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->get_header_value("Location"), "/v1/domains/a1");
  EXPECT_EQ(res->get_header_value("ETag"), "\"1\"");
  res = c.Post("/v1/domains/a1/start", "", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 202);
  auto op = json::parse(res->body);
  EXPECT_EQ(res->get_header_value("Location"), "/v1/operations/" + op["id"].get<std::string>());
  EXPECT_TRUE(op["status"] == "pending" || op["status"] == "running");
  res = c.Get(("/v1/operations/" + op["id"].get<std::string>() + "/wait?timeout=10s").c_str());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  auto done = json::parse(res->body);
  EXPECT_EQ(done["status"], "succeeded");
  EXPECT_EQ(done["result"]["state"], "running");
  // A second start is refused at once, not as a failed operation.
  res = c.Post("/v1/domains/a1/start", "", "application/json");
  EXPECT_EQ(res->status, 409);
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "conflict");
  // Shutdown with parameters in the body.
  res = c.Post("/v1/domains/a1/shutdown", R"({"timeout":"5s"})", "application/json");
  EXPECT_EQ(res->status, 202);
  res = c.Get(("/v1/operations/" + json::parse(res->body)["id"].get<std::string>() + "/wait").c_str());
  EXPECT_EQ(json::parse(res->body)["status"], "succeeded");
}

TEST_F(E2E, BothTransportsReturnIdenticalJson) {
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", {{"name", "same"}, {"type", "test"}, {"labels", {{"env", "ci"}}}}}}).ok());
  ASSERT_TRUE(rpc->callAndWait("domain.start", {{"name", "same"}}, Deadline::after(Millis(10000))).ok());
  client::ConnectOptions ho;
  ho.uri = vmmd->httpUrl();
  ho.token = adminToken;
  auto hc = std::move(*client::connect(ho));
  std::vector<std::pair<std::string, json>> calls = {
      {"domain.get", {{"name", "same"}}},
      {"domain.list", json::object()},
      {"domain.list", {{"full", true}, {"label", "env=ci"}}},
      {"operation.list", json::object()},
      {"token.list", json::object()},
      {"domain.stats", {{"name", "same"}}},
      {"host.info", json::object()},
  };
  for (const auto& [method, params] : calls) {
    auto a = rpc->call(method, params);
    auto b = hc->call(method, params);
    ASSERT_TRUE(a.ok() && b.ok()) << method;
    if (method == "domain.stats") {
      EXPECT_EQ(a->size(), b->size());  // counters move between the two calls
      continue;
    }
    EXPECT_EQ(withoutVolatile(*a), withoutVolatile(*b)) << method;
  }
  // Same errors: kind and message.
  for (const auto& [method, params] : std::vector<std::pair<std::string, json>>{
           {"domain.get", {{"name", "nosuch"}}},
           {"domain.start", {{"name", "same"}}},
           {"domain.create", {{"definition", {{"name", "x"}, {"colour", "red"}}}}},
           {"domain.list", {{"state", "sleepy"}}}}) {
    auto a = rpc->call(method, params);
    auto b = hc->call(method, params);
    ASSERT_FALSE(a.ok());
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(a.error().code, b.error().code) << method;
    EXPECT_EQ(a.error().message, b.error().message) << method;
  }
}

// The typed list (libvmmclient's decoder of vmmd's summary writer) over both transports: every
// field, a projection, and a refused field name.
TEST_F(E2E, TypedListsDecodeWhatVmmdWritesOnBothTransports) {
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", {{"name", "typed"}, {"type", "test"}, {"vcpus", 2}, {"title", "T\u00e9"},
                                                          {"labels", {{"env", "ci"}, {"quote", "\"\\ é"}}}}}}).ok());
  ASSERT_TRUE(rpc->callAndWait("domain.start", {{"name", "typed"}}, Deadline::after(Millis(10000))).ok());
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", {{"name", "other"}, {"type", "test"}}}}).ok());
  client::ConnectOptions ho;
  ho.uri = vmmd->httpUrl();
  ho.token = adminToken;
  auto hc = std::move(*client::connect(ho));
  auto generic = rpc->call("domain.list", {{"label", "env=ci"}});
  ASSERT_TRUE(generic.ok());
  for (client::Connection* c : {rpc.get(), hc.get()}) {
    client::DomainListRequest all;
    all.label = "env=ci";
    auto list = client::listDomains(*c, all);
    ASSERT_TRUE(list.ok()) << list.error().message;
    ASSERT_EQ(list->size(), 1u);
    const auto& d = list->front();
    // Every field the generic JSON shows, typed.
    const json& g = (*generic)[0];
    EXPECT_EQ(d.name, "typed");
    EXPECT_EQ(d.project, g["project"]);
    EXPECT_EQ(d.uuid, g["uuid"]);
    EXPECT_EQ(d.type, "test");
    EXPECT_EQ(d.state, "running");
    EXPECT_EQ(d.reason, g["reason"]);
    EXPECT_EQ(*d.stateSince, g["state_since"]);
    EXPECT_EQ(d.vcpus, 2);
    EXPECT_EQ(d.memory, g["memory"]);
    EXPECT_EQ(d.labels, (std::map<std::string, std::string>{{"env", "ci"}, {"quote", "\"\\ é"}}));
    EXPECT_EQ(d.generation, g["generation"].get<uint64_t>());
    EXPECT_EQ(d.title, "T\u00e9");
    EXPECT_EQ(wire::toJson(d), g.dump());

    client::DomainListRequest names;
    names.fields = wire::kName | wire::kState;
    auto few = client::listDomains(*c, names);
    ASSERT_TRUE(few.ok()) << few.error().message;
    ASSERT_EQ(few->size(), 2u);
    for (const auto& s : *few) {
      EXPECT_FALSE(s.name.empty());
      EXPECT_FALSE(s.state.empty());
      EXPECT_TRUE(s.uuid.empty() && s.labels.empty() && s.vcpus == 0) << "a field that was not asked for came back";
    }
    auto text = c->callText("domain.list", {{"fields", "name"}}, Millis(10000));
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, R"([{"name":"other"},{"name":"typed"}])");
    auto bad = c->call("domain.list", {{"fields", "name,definition"}});
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(bad.error().message.find("unknown field \"definition\""), std::string::npos) << bad.error().message;
    EXPECT_FALSE(c->call("domain.list", {{"fields", "name"}, {"full", true}}).ok());
  }
}

TEST_F(E2E, AuthenticationAndAccess) {
  auto anon = http();
  auto res = anon.Get("/v1/domains");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "unauthenticated");
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer realm=\"vmm\"");
  EXPECT_EQ(http("vmm_wrong").Get("/v1/domains")->status, 401);
  auto reader = http(readToken);
  EXPECT_EQ(reader.Get("/v1/domains")->status, 200);
  res = reader.Post("/v1/domains", R"({"name":"nope","type":"test"})", "application/json");
  EXPECT_EQ(res->status, 403);
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "permission-denied");
  EXPECT_EQ(reader.Get("/v1/tokens")->status, 403);  // token management needs admin
  auto admin = http(adminToken);
  EXPECT_EQ(admin.Post("/v1/domains", R"({"name":"yes","type":"test"})", "application/json")->status, 201);
  // Revoked tokens stop working.
  ASSERT_TRUE(rpc->call("token.delete", {{"name", "reader"}}).ok());
  EXPECT_EQ(reader.Get("/v1/domains")->status, 401);
  // Tokens are stored hashed.
  auto db = runCommand({"python3", "-c", "import sqlite3,sys; print(open('" + vmmd->dir() + "/state/vmm.db','rb').read().find(b'" + adminToken + "'))"});
  EXPECT_EQ(db->out, "-1\n");
  // The read-only socket refuses writes.
  client::ConnectOptions ro;
  ro.uri = vmmd->roSocketPath();
  auto roConn = std::move(*client::connect(ro));
  EXPECT_TRUE(roConn->call("domain.list").ok());
  auto denied = roConn->call("domain.delete", {{"name", "yes"}});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, ErrorCode::permission_denied);
  EXPECT_EQ(vmmd->vmctl({"-c", vmmd->roSocketPath(), "undefine", "yes"}).exitCode, 6);
}

TEST_F(E2E, BadInputGetsPreciseErrorsAndChangesNothing) {
  auto c = http(adminToken);
  ASSERT_EQ(c.Post("/v1/domains", R"({"name":"keep","type":"test"})", "application/json")->status, 201);
  auto before = json::parse(c.Get("/v1/domains?full=true")->body);
  struct Case {
    std::string body;
    int status;
    std::string message;
  };
  std::vector<Case> cases = {
      {R"({"name":"x","type":"test",)", 400, "request body: parse error at line 1, column 27"},
      {R"({"name":"x","colour":"red"})", 400, "colour: unknown field"},
      {R"({"name":"x","disks":[{"source":{"path":"/a"},"bsu":"virtio"}]})", 400, "disks[0].bsu: unknown field"},
      {R"({"name":"../etc","type":"test"})", 400, "name: domain name \"../etc\" must start with a letter or digit"},
      {R"({"name":"a b","type":"test"})", 400, "name: domain name \"a b\" contains \" \"; only letters, digits, '-', '_' and '.' are allowed"},
      {R"({"name":"x","memory":"12 parsecs"})", 400, "memory: unknown size unit \"parsecs\" in \"12 parsecs\""},
      {R"({"name":"x","vcpus":-1})", 400, "vcpus: must be between 1 and 512"},
      {R"([1,2,3])", 400, "definition: expected object, got array"},
      {R"({"name":"keep","type":"test"})", 409, "domain \"keep\" already exists"},
  };
  for (const auto& cs : cases) {
    auto res = c.Post("/v1/domains", cs.body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, cs.status) << cs.body << " -> " << res->body;
    auto err = json::parse(res->body, nullptr, false);
    ASSERT_FALSE(err.is_discarded()) << res->body;
    EXPECT_EQ(err["error"]["message"].get<std::string>().substr(0, cs.message.size()), cs.message) << res->body;
    EXPECT_EQ(err["error"]["code"], cs.status);
  }
  // Oversized body: refused before parsing.
  std::string huge = R"({"name":"big","type":"test","description":")" + std::string(5 << 20, 'x') + "\"}";
  auto res = c.Post("/v1/domains", huge, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "payload-too-large");
  // Unknown parameters, paths and methods.
  EXPECT_EQ(c.Get("/v1/domains?colour=red")->status, 400);
  EXPECT_EQ(c.Get("/v1/nothing")->status, 404);
  EXPECT_EQ(c.Patch("/v1/domains/keep", "{}", "application/json")->status, 405);
  EXPECT_EQ(c.Post("/v1/domains/keep/shutdown", R"({"timeout":"soon"})", "application/json")->status, 400);
  auto after = json::parse(c.Get("/v1/domains?full=true")->body);
  EXPECT_EQ(before, after);  // nothing changed

  // The same on the RPC socket, at the protocol level.
  auto fd = connectUnix(vmmd->socketPath(), Deadline::after(Millis(2000)));
  ASSERT_TRUE(fd.ok());
  // A line over the limit is answered and then the connection is closed, so
  // the rest of such a write may fail: only ordinary lines must go through.
  auto exchange = [&](const std::string& line, bool mayBeCutOff = false) {
    bool written = writeAllFd(fd->get(), line + "\n", Deadline::after(Millis(2000))).ok();
    if (!mayBeCutOff) {
      EXPECT_TRUE(written);
    }
    std::string reply;
    char ch;
    while (::read(fd->get(), &ch, 1) == 1 && ch != '\n') reply += ch;
    return json::parse(reply, nullptr, false);
  };
  EXPECT_EQ(exchange("{not json")["error"]["code"], -32700);
  EXPECT_EQ(exchange(R"({"jsonrpc":"2.0","id":1,"method":"nope"})")["error"]["code"], -32601);
  EXPECT_EQ(exchange(R"({"jsonrpc":"1.0","id":1,"method":"domain.list"})")["error"]["code"], -32600);
  auto bad = exchange(R"({"jsonrpc":"2.0","id":"x","method":"domain.create","params":{"definition":{"name":"y","colour":1}}})");
  EXPECT_EQ(bad["id"], "x");
  EXPECT_EQ(bad["error"]["code"], 400);
  EXPECT_EQ(bad["error"]["message"], "colour: unknown field");
  EXPECT_EQ(bad["error"]["data"]["kind"], "invalid-argument");
  auto batch = exchange(R"([{"jsonrpc":"2.0","id":1,"method":"domain.list"},{"jsonrpc":"2.0","id":2,"method":"domain.get","params":{"name":"keep"}}])");
  ASSERT_TRUE(batch.is_array());
  EXPECT_EQ(batch.size(), 2u);
  auto oversized = exchange(R"({"jsonrpc":"2.0","id":1,"method":"domain.list","params":{"x":")" + std::string(5 << 20, 'y') + "\"}}", true);
  EXPECT_EQ(oversized["error"]["code"], -32600);
  EXPECT_EQ(json::parse(c.Get("/v1/domains?full=true")->body), before);
}

TEST_F(E2E, EtagAndIfMatch) {
  auto c = http(adminToken);
  ASSERT_EQ(c.Post("/v1/domains", R"({"name":"et","type":"test"})", "application/json")->status, 201);
  auto res = c.Get("/v1/domains/et");
  EXPECT_EQ(res->get_header_value("ETag"), "\"1\"");
  auto def = json::parse(res->body)["definition"];
  def["vcpus"] = 2;
  httplib::Headers h = {{"If-Match", "\"1\""}};
  res = c.Put("/v1/domains/et", h, def.dump(), "application/json");
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("ETag"), "\"2\"");
  res = c.Put("/v1/domains/et", h, def.dump(), "application/json");  // stale
  EXPECT_EQ(res->status, 412);
  EXPECT_EQ(json::parse(res->body)["error"]["kind"], "precondition-failed");
}

TEST_F(E2E, OpenApiAndMetrics) {
  auto c = http(readToken);
  auto res = c.Get("/v1/openapi.json");
  ASSERT_EQ(res->status, 200);
  auto doc = json::parse(res->body);
  EXPECT_EQ(doc["openapi"], "3.0.3");
  for (const auto& path : {"/v1/domains", "/v1/domains/{name}", "/v1/domains/{name}/start", "/v1/operations/{id}/wait",
                           "/v1/events", "/v1/host"})
    EXPECT_TRUE(doc["paths"].contains(path)) << path;
  EXPECT_EQ(doc["paths"]["/v1/domains/{name}/start"]["post"]["operationId"], "domain.start");
  res = c.Get("/metrics");
  ASSERT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("vmm_domains{state=\"running\"}"), std::string::npos);
  EXPECT_NE(res->body.find("vmm_api_calls_total{operation=\"token.create\"} 2"), std::string::npos);
  EXPECT_NE(res->body.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4");
}

TEST_F(E2E, SurvivesKillNineWithDefinitionsAndOperations) {
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(rpc->call("domain.create", {{"definition", {{"name", "d" + std::to_string(i)}, {"type", "test"}}}}).ok());
  auto op = rpc->call("domain.start", {{"name", "d0"}});
  ASSERT_TRUE(op.ok());
  std::string opId = (*op)["id"];
  ASSERT_TRUE(rpc->waitOperation(*op, Deadline::after(Millis(10000))).ok());
  ASSERT_TRUE(rpc->callAndWait("domain.start", {{"name", "d1"}}, Deadline::after(Millis(10000))).ok());
  ASSERT_TRUE(rpc->call("domain.suspend", {{"name", "d1"}}).ok());
  auto beforeList = *rpc->call("domain.list", {{"full", true}});
  rpc.reset();
  vmmd->kill9();
  ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();  // stale socket files are replaced
  rpc = std::move(*vmmd->connect());
  auto afterList = *rpc->call("domain.list", {{"full", true}});
  ASSERT_EQ(afterList.size(), 20u);
  for (size_t i = 0; i < afterList.size(); ++i) {
    EXPECT_EQ(afterList[i]["definition"], beforeList[i]["definition"]);
    EXPECT_EQ(afterList[i]["state"], beforeList[i]["state"]) << afterList[i]["name"];
  }
  auto finished = rpc->call("operation.get", {{"id", opId}});
  ASSERT_TRUE(finished.ok());
  EXPECT_EQ((*finished)["status"], "succeeded");
  // Reconnected domains are controllable.
  EXPECT_TRUE(rpc->call("domain.resume", {{"name", "d1"}}).ok());
  EXPECT_TRUE(rpc->call("domain.destroy", {{"name", "d0"}}).ok());
  // The HTTP tokens survived too.
  EXPECT_EQ(http(adminToken).Get("/v1/domains")->status, 200);
}

TEST_F(E2E, SecondDaemonOnSameStateIsRefused) {
  VmmdProcess second(vmmd->dir());
  auto st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("another vmmd is already using"), std::string::npos) << st.error().message;
}

TEST_F(E2E, StuckGuestAgentDoesNotSlowList) {
  ASSERT_TRUE(rpc->call("domain.create", {{"definition", {{"name", "hang"}, {"type", "test"}, {"metadata", {{"test_driver", {{"agent", "hang"}}}}}}}}).ok());
  ASSERT_TRUE(rpc->callAndWait("domain.start", {{"name", "hang"}}, Deadline::after(Millis(10000))).ok());
  auto execOp = rpc->call("domain.exec", {{"name", "hang"}, {"command", {"true"}}, {"timeout", "3s"}});
  ASSERT_TRUE(execOp.ok());
  auto t0 = SteadyClock::now();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(rpc->call("domain.list").ok());
  EXPECT_LT(SteadyClock::now() - t0, Millis(500));
  auto done = rpc->waitOperation(*execOp, Deadline::after(Millis(10000)));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ((*done)["status"], "failed");
  EXPECT_EQ((*done)["error"]["kind"], "timeout");
  EXPECT_EQ((*done)["error"]["code"], 504);
}
