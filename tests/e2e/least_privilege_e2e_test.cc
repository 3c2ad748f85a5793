// End-to-end: roles (read, operator, admin) over HTTP tokens against a real vmmd on the test
// driver - what an operator may and may not do (every host-path field refused by name), what a
// read principal may not see (guest output, audit and token events), expiring and revoked
// tokens and their streams, and the audit trail (the security review's M1, H3, M6 and test
// plan items 2, 4, 5 and 23).
#include <gtest/gtest.h>
#include <httplib.h>

#include <sys/stat.h>

#include <thread>

#include "api/spec.h"
#include "base/fs.h"
#include "base/random.h"
#include "base/strings.h"
#include "client/vmmclient.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

using Answer = testutil::HttpAnswer;

class LeastPrivilege : public ::testing::Test {
 protected:
  void SetUp() override {
    vmmd = std::make_unique<VmmdProcess>();
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
    for (auto [name, role, secret] : {std::tuple{"boss", "admin", &adminToken}, {"op", "operator", &operatorToken},
                                      {"reader", "read", &readToken}}) {
      auto t = vmmd->createToken(name, role);
      ASSERT_TRUE(t.ok()) << t.error().message;
      *secret = *t;
    }
  }
  void TearDown() override {
    rpc.reset();
    if (HasFailure()) std::cerr << "---- vmmd log ----\n" << vmmd->logTail(20000) << "\n";
  }

  Answer send(const std::string& token, const std::string& method, const std::string& path, const json& body = nullptr) {
    return vmmd->http(token, method, path, body);
  }
  // Waits for an operation (as the admin) and returns it.
  json waitFor(const json& op) {
    return send(adminToken, "GET", "/v1/operations/" + op["id"].get<std::string>() + "/wait?timeout=20s").body;
  }
  std::unique_ptr<client::EventStream> subscribe(const std::string& token, std::vector<std::string> types) {
    client::ConnectOptions o;
    o.uri = vmmd->httpUrl();
    o.token = token;
    auto conn = client::connect(o);
    EXPECT_TRUE(conn.ok());
    if (!conn.ok()) return nullptr;
    auto s = (*conn)->subscribe(types, "");
    EXPECT_TRUE(s.ok()) << s.error().message;
    connections.push_back(std::move(*conn));
    if (!s.ok()) return nullptr;
    std::this_thread::sleep_for(Millis(200));  // the stream's request is in
    return std::move(*s);
  }
  // Reads events until the stream ends or `within` passes: true when it ended.
  static bool endsWithin(client::EventStream& s, Millis within) {
    auto until = Deadline::after(within);
    while (!until.expired()) {
      auto e = s.next(until);
      if (!e.ok()) return true;
    }
    return false;
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::vector<std::unique_ptr<client::Connection>> connections;
  std::string adminToken, operatorToken, readToken;
};

TEST_F(LeastPrivilege, OperatorsManageDomainsButNotTheHost) {
  auto a = send(operatorToken, "POST", "/v1/domains", {{"name", "work"}, {"type", "test"}});
  ASSERT_EQ(a.status, 201) << a.body;
  a = send(operatorToken, "POST", "/v1/domains/work/start");
  ASSERT_EQ(a.status, 202) << a.body;
  EXPECT_EQ(waitFor(a.body)["status"], "succeeded");
  EXPECT_EQ(a.body["principal"], "token op");
  a = send(operatorToken, "POST", "/v1/pools/default/volumes", {{"name", "scratch"}, {"capacity", "1M"}});
  EXPECT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(send(operatorToken, "DELETE", "/v1/pools/default/volumes/scratch").status, 200);
  EXPECT_EQ(send(operatorToken, "POST", "/v1/domains/work/destroy").status, 200);
  EXPECT_EQ(send(operatorToken, "DELETE", "/v1/domains/work").status, 200);
  // The host's pools, networks, tokens and audit trail are the admin's.
  a = send(operatorToken, "POST", "/v1/pools", {{"name", "etc"}, {"type", "dir"}, {"path", "/etc"}});
  EXPECT_EQ(a.status, 403);
  EXPECT_NE(a.message().find("pool.create needs the admin role; token op has the operator role"), std::string::npos) << a.body;
  EXPECT_EQ(send(operatorToken, "POST", "/v1/networks", {{"name", "n"}}).status, 403);
  EXPECT_EQ(send(operatorToken, "DELETE", "/v1/pools/default").status, 403);
  EXPECT_EQ(send(operatorToken, "GET", "/v1/tokens").status, 403);
  EXPECT_EQ(send(operatorToken, "POST", "/v1/tokens", {{"name", "mine"}, {"role", "admin"}}).status, 403);
  EXPECT_EQ(send(operatorToken, "GET", "/v1/audit").status, 403);
  // A reader changes nothing.
  EXPECT_EQ(send(readToken, "POST", "/v1/domains", {{"name", "r"}, {"type", "test"}}).status, 403);
  EXPECT_EQ(send(readToken, "GET", "/v1/domains").status, 200);
}

TEST_F(LeastPrivilege, EveryHostPathFieldIsRefusedByNameForOperatorsAndAllowedForAdmins) {
  ASSERT_EQ(send(adminToken, "POST", "/v1/domains", {{"name", "base"}, {"type", "test"}}).status, 201);
  auto domain = [](json extra) {
    json d = {{"name", "probe"}, {"type", "test"}};
    d.update(extra);
    return d;
  };
  json lxc = {{"type", "lxc"}, {"container", {{"rootfs", {{"pool", "default"}, {"volume", "rootfs"}}}}}};
  auto container = [&](json extra) {
    json d = domain(lxc);
    d["container"].update(extra);
    return d;
  };
  struct Case {
    std::string method, path;
    json body;
    std::string field;
  };
  std::vector<Case> cases = {
      {"POST", "/v1/domains", domain({{"disks", {{{"source", {{"path", "/dev/sda"}}}}}}}), "disks[0].source.path"},
      {"POST", "/v1/domains", domain({{"boot", {{"kernel", "/etc/shadow"}}}}), "boot.kernel"},
      {"POST", "/v1/domains", domain({{"boot", {{"kernel", "/boot/vmlinuz"}, {"initrd", "/etc/shadow"}}}}), "boot.kernel"},
      {"POST", "/v1/domains", domain({{"nics", {{{"type", "bridge"}, {"bridge", "br0"}}}}}), "nics[0].bridge"},
      {"POST", "/v1/domains", domain({{"nics", {{{"type", "direct"}, {"device", "eth0"}}}}}), "nics[0].device"},
      {"POST", "/v1/domains", domain({{"nics", {{{"type", "user"}, {"host_loopback", true}}}}}), "nics[0].host_loopback"},
      {"POST", "/v1/domains", domain({{"nics", {{{"network", "default"}, {"port", {{"mirror_to", "eth0"}}}}}}}), "nics[0].port.mirror_to"},
      {"POST", "/v1/domains", domain({{"nics", {{{"network", "default"}, {"ifname", "eth0"}}}}}), "nics[0].ifname"},
      {"POST", "/v1/domains", domain({{"nics", {{{"type", "user"}, {"forwards", {{{"host_port", 8470}, {"guest_port", 22}}}}}}}}),
       "nics[0].forwards"},
      {"POST", "/v1/domains", domain({{"graphics", {{{"type", "vnc"}, {"listen", "0.0.0.0"}}}}}), "graphics[0].listen"},
      {"POST", "/v1/domains", container({{"rootfs", {{"path", "/"}}}}), "container.rootfs.path"},
      {"POST", "/v1/domains", container({{"mounts", {{{"source", "/etc"}, {"target", "/mnt"}}}}}), "container.mounts[0].source"},
      {"POST", "/v1/domains", container({{"privileged", true}}), "container.privileged"},
      {"POST", "/v1/domains", container({{"idmap_base", 0x10000}}), "container.idmap_base"},
      {"PUT", "/v1/domains/base", domain({{"name", "base"}, {"boot", {{"kernel", "/etc/shadow"}}}}), "boot.kernel"},
      {"POST", "/v1/domains/base/disks", {{"source", {{"path", "/dev/sda"}}}}, "disk.source.path"},
      {"POST", "/v1/domains/base/nics", {{"type", "bridge"}, {"bridge", "br0"}}, "nic.bridge"},
      {"POST", "/v1/domains/base/save", {{"path", "/etc/cron.d/x"}}, "path"},
      {"POST", "/v1/domains/base/restore", {{"path", "/etc/shadow"}}, "path"},
      {"POST", "/v1/images", {{"name", "i1"}, {"file", "/etc/shadow"}}, "file"},
      {"POST", "/v1/images", {{"name", "i2"}, {"url", "https://127.0.0.1:1/x.img"}, {"kernel", "/boot/vmlinuz"}}, "kernel"},
      {"POST", "/v1/images", {{"name", "i3"}, {"url", "https://127.0.0.1:1/x.img"}, {"initrd", "/boot/initrd"}}, "initrd"},
      {"POST", "/v1/images",
       {{"name", "i4"}, {"url", "https://127.0.0.1:1/x.img"}, {"template", {{"disks", {{{"source", {{"path", "/dev/sda"}}}}}}}}},
       "disks[0].source.path"},
      {"POST", "/v1/pools/default/volumes", {{"name", "t"}, {"format", "dir"}, {"from_tar", "/etc/passwd"}}, "volume.from_tar"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.method + " " + c.path + " " + c.field);
    auto a = send(operatorToken, c.method, c.path, c.body);
    EXPECT_EQ(a.status, 403) << a.body;
    EXPECT_TRUE(startsWith(a.message(), c.field + ": host paths and host devices need the admin role; token op has the operator role"))
        << a.body;
  }
  // Nothing was made by the refused calls.
  EXPECT_EQ(send(adminToken, "GET", "/v1/domains/probe").status, 404);
  EXPECT_EQ(send(adminToken, "GET", "/v1/images/i1").status, 404);
  EXPECT_EQ(send(adminToken, "GET", "/v1/domains/base").body["definition"].dump().find("/etc/shadow"), std::string::npos);
  // An admin passes the same check (what follows is the call's own business: a missing
  // driver, file or server, never a permission).
  for (const auto& c : cases) {
    SCOPED_TRACE("admin: " + c.method + " " + c.path + " " + c.field);
    auto a = send(adminToken, c.method, c.path, c.body);
    EXPECT_NE(a.status, 403) << a.body;
    EXPECT_EQ(a.message().find("admin role"), std::string::npos) << a.body;
    if (a.status == 201 && c.path == "/v1/domains") send(adminToken, "DELETE", "/v1/domains/probe");
  }
}

TEST_F(LeastPrivilege, OperatorsImportOnlyFromPublicAddresses) {
  // vmmd is root inside the host's networks: an operator may not make it fetch from them.
  auto op = send(operatorToken, "POST", "/v1/images", {{"name", "inside"}, {"url", "https://127.0.0.1:1/disk.img"}});
  ASSERT_EQ(op.status, 202) << op.body;
  auto done = waitFor(op.body);
  EXPECT_EQ(done["status"], "failed");
  EXPECT_EQ(done["error"]["kind"], "permission-denied") << done;
  EXPECT_NE(done["error"]["message"].get<std::string>().find("is 127.0.0.1, not a public address"), std::string::npos) << done;
  // An admin's import goes on to connect (and finds nothing listening).
  auto admin = send(adminToken, "POST", "/v1/images", {{"name", "inside2"}, {"url", "https://127.0.0.1:1/disk.img"}});
  ASSERT_EQ(admin.status, 202) << admin.body;
  done = waitFor(admin.body);
  EXPECT_EQ(done["status"], "failed");
  EXPECT_NE(done["error"]["kind"], "permission-denied") << done;
}

TEST_F(LeastPrivilege, UpdatesKeepTheHostReferencesAnAdminSetButAddNone) {
  json def = {{"name", "kept"}, {"type", "test"}, {"disks", {{{"source", {{"path", "/var/lib/vmm-test/disk.img"}}}}}}};
  ASSERT_EQ(send(adminToken, "POST", "/v1/domains", def).status, 201);
  def = send(operatorToken, "GET", "/v1/domains/kept").body["definition"];
  def["memory"] = "256MiB";
  auto a = send(operatorToken, "PUT", "/v1/domains/kept", def);
  EXPECT_EQ(a.status, 200) << a.body;
  def["disks"].push_back({{"source", {{"path", "/dev/sda"}}}});
  a = send(operatorToken, "PUT", "/v1/domains/kept", def);
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_TRUE(startsWith(a.message(), "disks[1].source.path: ")) << a.body;
  def["disks"] = json::array({{{"source", {{"path", "/etc/shadow"}}}}});  // replacing one is adding one
  EXPECT_EQ(send(operatorToken, "PUT", "/v1/domains/kept", def).status, 403);
}

TEST_F(LeastPrivilege, ReadPrincipalsSeeNoGuestOutput) {
  ASSERT_EQ(send(operatorToken, "POST", "/v1/domains", {{"name", "g"}, {"type", "test"}}).status, 201);
  ASSERT_EQ(waitFor(send(operatorToken, "POST", "/v1/domains/g/start").body)["status"], "succeeded");
  auto exec = send(operatorToken, "POST", "/v1/domains/g/exec", {{"command", {"echo", "s3cret"}}});
  ASSERT_EQ(exec.status, 202) << exec.body;
  std::string id = exec.body["id"];
  ASSERT_EQ(waitFor(exec.body)["status"], "succeeded");
  auto mine = send(operatorToken, "GET", "/v1/operations/" + id);
  EXPECT_EQ(mine.body["result"]["stdout"], "s3cret\n");
  for (const std::string& path : {"/v1/operations/" + id, "/v1/operations/" + id + "/wait?timeout=1s"}) {
    auto seen = send(readToken, "GET", path);
    EXPECT_EQ(seen.status, 200);
    EXPECT_TRUE(seen.body["result"].is_null()) << seen.body;
    EXPECT_EQ(seen.body["result_withheld"], "guest output needs the operator role");
    EXPECT_EQ(seen.body.dump().find("s3cret"), std::string::npos);
  }
  EXPECT_EQ(send(readToken, "GET", "/v1/operations/" + id + "/result").status, 403);
  EXPECT_EQ(send(readToken, "GET", "/v1/domains/g/console/log").status, 403);
  EXPECT_EQ(send(operatorToken, "GET", "/v1/domains/g/console/log").status, 200);
  // Audit and token events reach admins only.
  auto readerEvents = subscribe(readToken, {});
  auto adminEvents = subscribe(adminToken, {"audit", "token"});
  ASSERT_TRUE(readerEvents && adminEvents);
  client::ConnectOptions ro;
  ro.uri = vmmd->roSocketPath();
  auto roConn = client::connect(ro);
  ASSERT_TRUE(roConn.ok());
  auto roEvents = (*roConn)->subscribe({}, "");
  ASSERT_TRUE(roEvents.ok());
  ASSERT_EQ(send(adminToken, "POST", "/v1/tokens", {{"name", "late"}, {"role", "read"}}).status, 201);
  ASSERT_EQ(send(operatorToken, "POST", "/v1/domains/g/suspend").status, 200);
  std::set<std::string> adminSaw, readerSaw, roSaw;
  for (auto [stream, saw] : {std::pair{adminEvents.get(), &adminSaw}, {readerEvents.get(), &readerSaw}, {roEvents->get(), &roSaw}}) {
    auto until = Deadline::after(Millis(1500));
    while (!until.expired()) {
      auto e = stream->next(until);
      if (!e.ok() || !e->has_value()) break;
      saw->insert((**e)["type"].get<std::string>());
    }
  }
  EXPECT_TRUE(adminSaw.count("audit") && adminSaw.count("token")) << join(std::vector<std::string>(adminSaw.begin(), adminSaw.end()), ",");
  EXPECT_TRUE(readerSaw.count("domain.lifecycle")) << join(std::vector<std::string>(readerSaw.begin(), readerSaw.end()), ",");
  EXPECT_FALSE(readerSaw.count("audit") || readerSaw.count("token"));
  EXPECT_TRUE(roSaw.count("domain.lifecycle")) << join(std::vector<std::string>(roSaw.begin(), roSaw.end()), ",");
  EXPECT_FALSE(roSaw.count("audit") || roSaw.count("token"));
}

TEST_F(LeastPrivilege, ExpiredAndRevokedTokensAreRefusedAndTheirStreamsClosed) {
  auto made = rpc->call("token.create", {{"name", "brief"}, {"role", "read"}, {"expires", "2s"}, {"description", "a CI job"}});
  ASSERT_TRUE(made.ok()) << made.error().message;
  std::string brief = (*made)["token"];
  EXPECT_TRUE((*made)["expires"].is_string());
  auto revoked = vmmd->createToken("gone", "operator");
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(send(brief, "GET", "/v1/domains").status, 200);
  auto briefStream = subscribe(brief, {});
  auto goneStream = subscribe(*revoked, {});
  ASSERT_TRUE(briefStream && goneStream);
  ASSERT_TRUE(rpc->call("token.delete", {{"name", "gone"}}).ok());
  auto t0 = SteadyClock::now();
  EXPECT_TRUE(endsWithin(*goneStream, Millis(3000)));
  EXPECT_LT(SteadyClock::now() - t0, Millis(3000));
  EXPECT_EQ(send(*revoked, "GET", "/v1/domains").status, 401);
  EXPECT_TRUE(endsWithin(*briefStream, Millis(5000)));
  auto a = send(brief, "GET", "/v1/domains");
  EXPECT_EQ(a.status, 401);
  EXPECT_NE(a.message().find("expired"), std::string::npos) << a.body;
  // Listed without secrets, with what it was for and when it ends.
  auto list = rpc->call("token.list", json::object());
  ASSERT_TRUE(list.ok());
  bool found = false;
  for (const auto& t : *list) {
    std::set<std::string> keys;
    for (auto it = t.begin(); it != t.end(); ++it) keys.insert(it.key());
    EXPECT_EQ(keys, (std::set<std::string>{"name", "kind", "role", "description", "created", "expires", "expired", "project"}));
    if (t["name"] == "brief") {
      found = true;
      EXPECT_EQ(t["expired"], true);
      EXPECT_EQ(t["description"], "a CI job");
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(list->dump().find(brief), std::string::npos);
  EXPECT_FALSE(rpc->call("token.create", {{"name", "x"}, {"role", "root"}}).ok());
}

TEST_F(LeastPrivilege, TheAuditTrailShowsWhoDidEachCall) {
  ASSERT_EQ(send(operatorToken, "POST", "/v1/domains", {{"name", "aud"}, {"type", "test"}}).status, 201);
  auto start = send(operatorToken, "POST", "/v1/domains/aud/start");
  ASSERT_EQ(start.status, 202);
  waitFor(start.body);
  ASSERT_EQ(send(operatorToken, "POST", "/v1/pools", {{"name", "p"}, {"type", "dir"}, {"path", "/srv/p"}}).status, 403);
  ASSERT_EQ(send(readToken, "DELETE", "/v1/domains/aud").status, 403);
  ASSERT_EQ(send(adminToken, "GET", "/v1/domains").status, 200);  // reads are not audited
  auto trail = send(adminToken, "GET", "/v1/audit?limit=50");
  ASSERT_EQ(trail.status, 200) << trail.body;
  std::vector<std::string> lines;
  for (const auto& r : trail.body)
    lines.push_back(r["principal"].get<std::string>() + " " + r["method"].get<std::string>() + " " +
                    r["object"].get<std::string>() + " " + r["result"].get<std::string>());
  auto has = [&](const std::string& line) { return std::find(lines.begin(), lines.end(), line) != lines.end(); };
  EXPECT_TRUE(has("token op domain.create domains/aud ok")) << join(lines, "\n");
  EXPECT_TRUE(has("token op domain.start domains/aud ok")) << join(lines, "\n");
  // Refused before its body was read: the collection, not the new member.
  EXPECT_TRUE(has("token op pool.create pools permission-denied")) << join(lines, "\n");
  EXPECT_TRUE(has("token reader domain.delete domains/aud permission-denied")) << join(lines, "\n");
  EXPECT_FALSE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) { return l.find("domain.list") != std::string::npos; }));
  for (const auto& r : trail.body) {
    if (r["method"] == "domain.start") {
      EXPECT_EQ(r["operation"], start.body["id"]);
    }
  }
  // The token.create of SetUp came over the socket: a uid, not a token.
  auto byMethod = send(adminToken, "GET", "/v1/audit?method=token");
  ASSERT_EQ(byMethod.status, 200);
  ASSERT_FALSE(byMethod.body.empty());
  EXPECT_TRUE(startsWith(byMethod.body[0]["principal"].get<std::string>(), "uid 0")) << byMethod.body;
  EXPECT_EQ(byMethod.body[0]["transport"], "rpc");
  // One structured log line per call, for the journal.
  EXPECT_NE(vmmd->log().find("msg=\"audit\" seq="), std::string::npos);
  EXPECT_NE(vmmd->log().find("principal=\"token op\" role=operator project=default transport=http method=pool.create object=pools result=permission-denied"),
            std::string::npos)
      << vmmd->logTail(4000);
}

}  // namespace

namespace {

// "/v1/domains/{name}/start" with every parameter named "x".
std::string concretePath(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '{') {
      out += "x";
      i = pattern.find('}', i);
    } else {
      out += pattern[i];
    }
  }
  return out;
}

std::string stateHash(const std::string& dir) {
  std::string all;
  for (const char* f : {"/state/vmm.db", "/state/vmm.db-wal"}) {
    auto text = fs::readFile(dir + f, 1 << 30);
    if (text.ok()) all += *text;
  }
  return sha256Hex(all);
}

}  // namespace

// The security review's test plan items 1, 3, 4 and 6 over the whole operation table: every
// route without a token is 401; every call above read is 403 for a read token and on the
// read-only socket, every admin call 403 for an operator; and the state is unchanged after.
TEST_F(LeastPrivilege, EveryCallIsRefusedBelowItsRole) {
  ASSERT_EQ(send(adminToken, "POST", "/v1/domains", {{"name", "x"}, {"type", "test"}}).status, 201);
  std::string before = stateHash(vmmd->dir());
  client::ConnectOptions ro;
  ro.uri = vmmd->roSocketPath();
  auto roConn = client::connect(ro);
  ASSERT_TRUE(roConn.ok());
  size_t routes = 0, refusedReads = 0, refusedOperators = 0;
  for (const auto& spec : api::operationSpecs()) {
    if (spec.role != api::Role::read) {
      auto r = (*roConn)->call(spec.name, json::object());
      EXPECT_FALSE(r.ok()) << spec.name;
      if (!r.ok()) {
        EXPECT_EQ(r.error().code, ErrorCode::permission_denied) << spec.name << ": " << r.error().message;
      }
    }
    if (!spec.http) continue;
    ++routes;
    std::string path = concretePath(spec.http->path);
    SCOPED_TRACE(spec.name + " " + spec.http->method + " " + path);
    httplib::Client anon("127.0.0.1", vmmd->httpPort());
    auto res = spec.http->method == "GET" ? anon.Get(path) : spec.http->method == "DELETE" ? anon.Delete(path)
             : spec.http->method == "PUT" ? anon.Put(path, "{}", "application/json") : anon.Post(path, "{}", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    if (spec.role == api::Role::read) continue;
    auto a = send(readToken, spec.http->method, path, json::object());
    EXPECT_EQ(a.status, 403) << a.body;
    refusedReads += a.status == 403;
    if (spec.role != api::Role::admin) continue;
    a = send(operatorToken, spec.http->method, path, json::object());
    EXPECT_EQ(a.status, 403) << a.body;
    refusedOperators += a.status == 403;
  }
  EXPECT_GT(routes, 60u);
  EXPECT_GT(refusedReads, 40u);
  EXPECT_GE(refusedOperators, 12u);
  // The byte streams and the other routes: a token first.
  for (std::string path : {"/metrics", "/v1/openapi.json", "/v1/events", "/v1/domains/x/console", "/v1/pools/default/volumes/v/content",
                           "/v1/no/such/route"}) {
    httplib::Client anon("127.0.0.1", vmmd->httpPort());
    anon.set_read_timeout(5, 0);
    auto res = anon.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 401) << path;
  }
  for (auto [method, path] : {std::pair{"GET", "/v1/domains/x/console"}, {"POST", "/v1/domains/x/console"},
                              {"GET", "/v1/pools/default/volumes/v/content"}, {"PUT", "/v1/pools/default/volumes/v/content"}}) {
    EXPECT_EQ(send(readToken, method, path, json::object()).status, 403) << method << " " << path;
  }
  EXPECT_EQ(stateHash(vmmd->dir()), before);
  // Malformed credentials (test plan 6).
  auto withHeaders = [&](httplib::Headers h) {
    httplib::Client c("127.0.0.1", vmmd->httpPort());
    auto res = c.Get("/v1/domains", h);
    return res ? res->status : -1;
  };
  EXPECT_EQ(withHeaders({{"Authorization", "Basic " + adminToken}}), 401);
  EXPECT_EQ(withHeaders({{"Authorization", "bearer " + adminToken}}), 401);
  EXPECT_EQ(withHeaders({{"Authorization", "Bearer " + adminToken + std::string(257, 'a')}}), 401);
  EXPECT_EQ(withHeaders({{"Authorization", "Bearer " + adminToken}, {"Authorization", "Bearer " + adminToken}}), 401);
  EXPECT_EQ(withHeaders({{"Authorization", "Bearer " + adminToken}}), 200);
}

// Security review H2 follow-up: an admin's privileged container is root's, whatever role
// manages domains otherwise - its console and its definition stay the admin's, and the refusal
// is audited like any call.
TEST(LeastPrivilegeContainers, APrivilegedContainerIsTheAdminsToChangeAndToEnter) {
  VmmdProcess vmmd("", {"--drivers", "test,lxc"});
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  auto op = vmmd.createToken("op", "operator");
  auto boss = vmmd.createToken("boss", "admin");
  ASSERT_TRUE(op.ok() && boss.ok());
  std::string rootfs = vmmd.dir() + "/rootfs";
  ASSERT_TRUE(fs::makeDirs(rootfs + "/sbin").ok());
  ASSERT_TRUE(fs::writeFileAtomic(rootfs + "/sbin/init", "#!/bin/sh\n").ok());
  ASSERT_EQ(::chmod((rootfs + "/sbin/init").c_str(), 0755), 0);
  auto call = [&](const std::string& token, const std::string& method, const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", vmmd.httpPort());
    c.set_bearer_token_auth(token.c_str());
    auto res = method == "PUT" ? c.Put(path, body.dump(), "application/json")
             : method == "GET" ? c.Get(path) : c.Post(path, body.dump(), "application/json");
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string()};
  };
  json def = {{"name", "priv"}, {"type", "lxc"}, {"container", {{"rootfs", {{"path", rootfs}}}, {"privileged", true}}}};
  auto made = call(*boss, "POST", "/v1/domains", def);
  ASSERT_EQ(made.first, 201) << made.second;
  json current = json::parse(call(*op, "GET", "/v1/domains/priv", nullptr).second)["definition"];
  current["memory"] = "256MiB";
  auto changed = call(*op, "PUT", "/v1/domains/priv", current);
  EXPECT_EQ(changed.first, 403) << changed.second;
  EXPECT_NE(changed.second.find("changing priv needs the admin role: it is a privileged container"), std::string::npos) << changed.second;
  auto console = call(*op, "GET", "/v1/domains/priv/console", nullptr);
  EXPECT_EQ(console.first, 403) << console.second;
  EXPECT_NE(console.second.find("the console of priv needs the admin role"), std::string::npos) << console.second;
  EXPECT_EQ(call(*boss, "PUT", "/v1/domains/priv", current).first, 200);
  auto trail = json::parse(call(*boss, "GET", "/v1/audit?method=domain.console", nullptr).second);
  ASSERT_EQ(trail.size(), 1u) << trail;
  EXPECT_EQ(trail[0]["principal"], "token op");
  EXPECT_EQ(trail[0]["result"], "permission-denied");
  EXPECT_EQ(trail[0]["object"], "domains/priv");
}
