// End-to-end: projects against a real vmmd on the test driver - the same names in two
// projects, a token bound to one project that can neither see nor touch another, restricted
// projects that refuse host paths to every role, allowed pools and networks, quotas that refuse
// what would pass them, and launches that queue in their own project's line.
#include <gtest/gtest.h>

#include <fcntl.h>

#include <fstream>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"
#include "client/vmmclient.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

using Answer = testutil::HttpAnswer;

std::set<std::string> namesOf(const json& list) {
  std::set<std::string> out;
  if (list.is_array())
    for (const auto& x : list) out.insert(x.value("project", std::string("?")) + "/" + x.value("name", std::string("?")));
  return out;
}

class Projects : public ::testing::Test {
 protected:
  void SetUp() override {
    vmmd = std::make_unique<VmmdProcess>();
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    rpc = std::move(*c);
    auto t = vmmd->createToken("boss", "admin");
    ASSERT_TRUE(t.ok()) << t.error().message;
    admin = *t;
    auto p = rpc->call("project.create", {{"definition", {{"name", "ci"}, {"description", "CI runners"}}}});
    ASSERT_TRUE(p.ok()) << p.error().message;
    ciOperator = token("ci-op", "operator", "ci");
    ciReader = token("ci-read", "read", "ci");
  }
  void TearDown() override {
    rpc.reset();
    if (HasFailure()) std::cerr << "---- vmmd log ----\n" << vmmd->logTail(20000) << "\n";
  }

  std::string token(const std::string& name, const std::string& role, const std::string& project) {
    auto r = rpc->call("token.create", {{"name", name}, {"role", role}, {"project", project}});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? (*r)["token"].get<std::string>() : "";
  }
  Answer send(const std::string& tok, const std::string& method, const std::string& path, const json& body = nullptr) {
    return vmmd->http(tok, method, path, body);
  }
  json waitFor(const std::string& tok, const json& op, const std::string& project = "") {
    return send(tok, "GET", "/v1/operations/" + op["id"].get<std::string>() + "/wait?timeout=20s" +
                                (project.empty() ? "" : "&project=" + project))
        .body;
  }
  void makeProject(const json& definition) {
    auto a = send(admin, "POST", "/v1/projects", definition);
    ASSERT_EQ(a.status, 201) << a.body;
  }
  // A small raw disk image imported into the default project whose launches run on the test
  // driver.
  void importTestImage(const std::string& name) {
    std::string file = vmmd->dir() + "/" + name + ".img";
    std::ofstream(file) << std::string(1 << 20, '\0');
    auto a = send(admin, "POST", "/v1/images", {{"name", name}, {"file", file}, {"template", {{"type", "test"}, {"memory", "64M"}}}});
    ASSERT_EQ(a.status, 202) << a.body;
    ASSERT_EQ(waitFor(admin, a.body)["status"], "succeeded");
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::unique_ptr<client::Connection> rpc;
  std::string admin, ciOperator, ciReader;
};

TEST_F(Projects, TwoProjectsHoldDomainsOfTheSameName) {
  ASSERT_EQ(send(admin, "POST", "/v1/domains", {{"name", "web"}, {"type", "test"}, {"vcpus", 1}}).status, 201);
  auto a = send(admin, "POST", "/v1/domains?project=ci", {{"name", "web"}, {"type", "test"}, {"vcpus", 2}});
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(a.body["name"], "web");
  EXPECT_EQ(a.body["project"], "ci");
  EXPECT_EQ(a.body["definition"]["name"], "web");
  // Each project sees its own; a list over all of them sees both, each with its project.
  EXPECT_EQ(namesOf(send(admin, "GET", "/v1/domains").body), (std::set<std::string>{"default/web"}));
  EXPECT_EQ(namesOf(send(admin, "GET", "/v1/domains?project=ci").body), (std::set<std::string>{"ci/web"}));
  EXPECT_EQ(namesOf(send(admin, "GET", "/v1/domains?all_projects=true").body), (std::set<std::string>{"default/web", "ci/web"}));
  EXPECT_EQ(send(admin, "GET", "/v1/domains/web").body["vcpus"], 1);
  EXPECT_EQ(send(admin, "GET", "/v1/domains/web?project=ci").body["vcpus"], 2);
  // Both run, and stopping one leaves the other running.
  for (const char* project : {"default", "ci"}) {
    a = send(admin, "POST", std::string("/v1/domains/web/start?project=") + project);
    ASSERT_EQ(a.status, 202) << a.body;
    EXPECT_EQ(waitFor(admin, a.body)["status"], "succeeded");
    EXPECT_EQ(a.body["object"], "domains/web") << "an operation names the object as its project knows it";
  }
  EXPECT_EQ(send(admin, "POST", "/v1/domains/web/destroy?project=ci").status, 200);
  EXPECT_EQ(send(admin, "GET", "/v1/domains/web").body["state"], "running");
  EXPECT_EQ(send(admin, "GET", "/v1/domains/web?project=ci").body["state"], "shutoff");
  // Snapshots hang off their project's domain.
  a = send(ciOperator, "POST", "/v1/domains/web/snapshots", {{"snapshot", "s1"}});
  ASSERT_EQ(a.status, 202) << a.body;
  EXPECT_EQ(waitFor(ciOperator, a.body)["status"], "succeeded");
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/web/snapshots").body.size(), 1u);
  EXPECT_EQ(send(admin, "GET", "/v1/domains/web/snapshots").body.size(), 0u);
  // A name of the qualified form is no way into another project.
  a = send(admin, "GET", "/v1/domains/_ci_web");
  EXPECT_EQ(a.status, 400) << a.body;
  a = send(admin, "POST", "/v1/domains", {{"name", "_ci_db"}, {"type", "test"}});
  EXPECT_EQ(a.status, 400) << a.body;
  // A project with objects is not deleted; nor one a token is bound to.
  a = send(admin, "DELETE", "/v1/projects/ci");
  EXPECT_EQ(a.status, 409);
  EXPECT_NE(a.message().find("still has 1 domains"), std::string::npos) << a.body;
}

TEST_F(Projects, AnOperatorOfOneProjectCannotSeeOrTouchAnother) {
  ASSERT_EQ(send(admin, "POST", "/v1/domains", {{"name", "prod"}, {"type", "test"}}).status, 201);
  ASSERT_EQ(send(admin, "POST", "/v1/pools/default/volumes", {{"name", "prod-data"}, {"capacity", "1M"}}).status, 201);
  auto started = send(admin, "POST", "/v1/domains/prod/start");
  ASSERT_EQ(started.status, 202);
  waitFor(admin, started.body);
  auto events = [&] {
    client::ConnectOptions o;
    o.uri = vmmd->httpUrl();
    o.token = ciOperator;
    auto conn = client::connect(o);
    EXPECT_TRUE(conn.ok());
    return conn.ok() ? std::move(*conn) : nullptr;
  }();
  ASSERT_TRUE(events);
  auto stream = events->subscribe({"domain"}, "");
  ASSERT_TRUE(stream.ok()) << stream.error().message;
  auto byObject = events->subscribe({}, "domains/job1");  // an object filter in the project's names
  ASSERT_TRUE(byObject.ok()) << byObject.error().message;
  std::this_thread::sleep_for(Millis(200));

  // Its own project works as anywhere.
  auto a = send(ciOperator, "POST", "/v1/domains", {{"name", "job1"}, {"type", "test"}});
  ASSERT_EQ(a.status, 201) << a.body;
  a = send(ciOperator, "POST", "/v1/pools/default/volumes", {{"name", "scratch"}, {"capacity", "1M"}});
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(a.body["name"], "scratch");
  // The default project's objects are not there for it.
  EXPECT_EQ(namesOf(send(ciOperator, "GET", "/v1/domains").body), (std::set<std::string>{"ci/job1"}));
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/prod").status, 404);
  EXPECT_EQ(send(ciOperator, "POST", "/v1/domains/prod/destroy").status, 404);
  EXPECT_EQ(send(ciOperator, "DELETE", "/v1/domains/prod").status, 404);
  EXPECT_EQ(send(ciOperator, "DELETE", "/v1/pools/default/volumes/prod-data").status, 404);
  json vols = send(ciOperator, "GET", "/v1/pools/default/volumes").body;
  ASSERT_EQ(vols.size(), 1u) << vols;
  EXPECT_EQ(vols[0]["name"], "scratch");
  // Naming the other project, or all of them, is refused: the token is bound to ci.
  a = send(ciOperator, "GET", "/v1/domains?project=default");
  EXPECT_EQ(a.status, 403);
  EXPECT_NE(a.message().find("token ci-op is bound to project ci"), std::string::npos) << a.body;
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains?all_projects=true").status, 403);
  EXPECT_EQ(send(ciReader, "GET", "/v1/domains?project=default").status, 403);
  // A disk naming the default project's volume names the project's own volume of that name.
  a = send(ciOperator, "POST", "/v1/domains",
           {{"name", "thief"}, {"type", "test"}, {"disks", {{{"source", {{"pool", "default"}, {"volume", "prod-data"}}}}}}});
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(a.body["definition"]["disks"][0]["source"]["volume"], "prod-data");
  json all = send(admin, "GET", "/v1/domains?all_projects=true&full=true").body;
  for (const auto& d : all) {
    if (d["name"] == "thief") {
      EXPECT_EQ(d["definition"]["disks"][0]["source"]["volume"], "_ci_prod-data");
    }
  }
  EXPECT_EQ(send(admin, "GET", "/v1/pools/default/volumes/prod-data").body.value("used_by", json::array()), json::array());
  // Operations: the default project's are neither listed nor readable by id.
  std::string prodOp = started.body["id"];
  for (const auto& op : send(ciOperator, "GET", "/v1/operations").body) EXPECT_NE(op["id"], prodOp);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/operations/" + prodOp).status, 404);
  EXPECT_EQ(send(ciReader, "GET", "/v1/operations/" + prodOp).status, 404);
  EXPECT_EQ(send(admin, "GET", "/v1/operations/" + prodOp).status, 200);
  // Streams too: a console or a volume's content are the project's own, by name.
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/prod/console").status, 404);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/job1/console").status, 409) << "its own is found (and is not running)";
  EXPECT_EQ(send(ciOperator, "GET", "/v1/pools/default/volumes/prod-data/content").status, 404);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/pools/default/volumes/scratch/content").status, 200);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/pools/default/volumes/scratch/content?project=default").status, 403);
  {
    // The same over the unix socket, acting in ci.
    client::ConnectOptions o;
    o.uri = "unix://" + vmmd->socketPath();
    o.project = "ci";
    auto inCi = client::connect(o);
    ASSERT_TRUE(inCi.ok()) << inCi.error().message;
    auto console = (*inCi)->openConsole("prod");
    ASSERT_FALSE(console.ok());
    EXPECT_EQ(console.error().code, ErrorCode::not_found) << console.error().message;
    auto sink = fs::UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    auto copied = (*inCi)->downloadVolume("default", "prod-data", sink.get(), nullptr);
    ASSERT_FALSE(copied.ok());
    EXPECT_EQ(copied.error().code, ErrorCode::not_found) << copied.error().message;
    EXPECT_TRUE((*inCi)->downloadVolume("default", "scratch", sink.get(), nullptr).ok());
  }
  // Projects: it sees its own only, and may change none.
  EXPECT_EQ(namesOf(send(ciOperator, "GET", "/v1/projects").body).size(), 1u);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/projects/default").status, 404);
  EXPECT_EQ(send(ciOperator, "PUT", "/v1/projects/ci", {{"limits", {{"domains", 1000}}}}).status, 403);

  // Events: the default project's domain changes do not reach it; its own do, by their names.
  ASSERT_EQ(send(admin, "POST", "/v1/domains/prod/destroy").status, 200);
  a = send(ciOperator, "POST", "/v1/domains/job1/start");
  ASSERT_EQ(a.status, 202);
  waitFor(ciOperator, a.body);
  std::vector<std::string> seen;
  auto until = Deadline::after(Millis(3000));
  while (!until.expired()) {
    auto e = (*stream)->next(until);
    if (!e.ok() || !*e) break;
    seen.push_back((**e)["object"].get<std::string>());
    if (seen.back() == "domains/job1") break;
  }
  EXPECT_NE(std::find(seen.begin(), seen.end(), "domains/job1"), seen.end()) << join(seen, " ");
  for (const auto& o : seen) EXPECT_EQ(o.find("prod"), std::string::npos) << o;
  auto first = (*byObject)->next(Deadline::after(Millis(3000)));
  ASSERT_TRUE(first.ok() && *first) << "no event through the object filter";
  EXPECT_EQ((**first)["object"], "domains/job1");

  // Bound to ci, even an admin token acts on ci's objects only: not on the host's pools,
  // networks, tokens, projects or audit trail.
  std::string ciAdmin = token("ci-admin", "admin", "ci");
  EXPECT_EQ(send(ciAdmin, "GET", "/v1/pools").status, 200);
  for (auto [method, path, body] : {std::tuple<const char*, const char*, json>{"PUT", "/v1/projects/ci", {{"restrictions", {{"restricted", false}}}}},
                                    {"POST", "/v1/tokens", {{"name", "escape"}, {"role", "admin"}}},
                                    {"GET", "/v1/audit", nullptr},
                                    {"GET", "/v1/tokens", nullptr},
                                    {"POST", "/v1/pools", {{"name", "etc"}, {"type", "dir"}, {"path", "/etc"}}},
                                    {"GET", "/v1/networks/default/leases", nullptr}}) {
    a = send(ciAdmin, method, path, body);
    EXPECT_EQ(a.status, 403) << method << " " << path << " " << a.body;
    EXPECT_NE(a.message().find("is bound to project ci"), std::string::npos) << a.body;
  }
  // And in a restricted project it names no host path and reaches no private address either.
  a = send(ciAdmin, "POST", "/v1/domains", {{"name", "h"}, {"type", "test"}, {"boot", {{"kernel", "/boot/vmlinuz"}}}});
  EXPECT_EQ(a.status, 403) << a.body;
  a = send(ciAdmin, "POST", "/v1/images", {{"name", "inside"}, {"url", "https://127.0.0.1:1/x.img"}});
  ASSERT_EQ(a.status, 202) << a.body;
  json refusedImport = waitFor(ciAdmin, a.body);
  EXPECT_NE(refusedImport.dump().find("not a public address"), std::string::npos) << refusedImport;

  // The audit trail shows the project of each call, and its object as that project names it.
  json audit = send(admin, "GET", "/v1/audit?principal=token%20ci-op&method=domain.create").body;
  ASSERT_FALSE(audit.empty()) << audit;
  EXPECT_EQ(audit[0]["project"], "ci");
  EXPECT_EQ(audit[0]["object"], "domains/job1");
  EXPECT_NE(vmmd->log().find("principal=\"token ci-op\" role=operator project=ci transport=http method=domain.create object=domains/job1 result=ok"),
            std::string::npos);
}

TEST_F(Projects, RestrictedProjectsRefuseHostPathsToEveryRole) {
  json hostDisk = {{"name", "h"}, {"type", "test"}, {"disks", {{{"source", {{"path", "/var/lib/x.img"}}}}}}};
  // ci is restricted (new projects are): not even an admin may name the host there.
  auto a = send(admin, "POST", "/v1/domains?project=ci", hostDisk);
  EXPECT_EQ(a.status, 403);
  EXPECT_NE(a.message().find("project ci is restricted"), std::string::npos) << a.body;
  a = send(admin, "POST", "/v1/domains/h/save?project=ci", {{"path", "/tmp/x"}});
  EXPECT_EQ(a.status, 403) << a.body;
  // In the default project (and an unrestricted one) an admin still may.
  makeProject({{"name", "lab"}, {"restrictions", {{"restricted", false}}}});
  EXPECT_EQ(send(admin, "POST", "/v1/domains?project=lab", hostDisk).status, 201);
  EXPECT_EQ(send(admin, "POST", "/v1/domains", hostDisk).status, 201);
  // Allowed pools and networks.
  makeProject({{"name", "narrow"}, {"restrictions", {{"pools", {"elsewhere"}}, {"networks", {"isolated"}}}}});
  a = send(admin, "POST", "/v1/pools/default/volumes?project=narrow", {{"name", "v"}, {"capacity", "1M"}});
  EXPECT_EQ(a.status, 403);
  EXPECT_NE(a.message().find("may not use pool \"default\""), std::string::npos) << a.body;
  a = send(admin, "POST", "/v1/domains?project=narrow",
           {{"name", "n"}, {"type", "test"}, {"nics", {{{"type", "network"}, {"network", "default"}}}}});
  EXPECT_EQ(a.status, 403);
  EXPECT_NE(a.message().find("may not use network \"default\""), std::string::npos) << a.body;
  // Allowed bridges: a plain NIC on one is no host reference in the project; another bridge, or
  // a NIC there that also picks its host tap, still is.
  makeProject({{"name", "bridged"}, {"restrictions", {{"bridges", {"br-lab"}}}}});
  std::string bridgedOp = token("bridged-op", "operator", "bridged");
  auto nicOn = [](const std::string& bridge, json extra = json::object()) {
    json nic = {{"type", "bridge"}, {"bridge", bridge}};
    nic.update(extra);
    return json{{"name", "b-" + std::to_string(std::hash<std::string>{}(nic.dump()) % 1000)}, {"type", "test"}, {"nics", {nic}}};
  };
  EXPECT_EQ(send(bridgedOp, "POST", "/v1/domains", nicOn("br-lab")).status, 201);
  a = send(bridgedOp, "POST", "/v1/domains", nicOn("br-prod"));
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_NE(a.message().find("nics[0].bridge"), std::string::npos) << a.body;
  a = send(bridgedOp, "POST", "/v1/domains", nicOn("br-lab", {{"ifname", "tap-mine"}}));
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_NE(a.message().find("nics[0].ifname"), std::string::npos) << a.body;
  EXPECT_EQ(send(ciOperator, "POST", "/v1/domains", nicOn("br-lab")).status, 403) << "ci allows no bridge";
  // The default project cannot be restricted, nor deleted.
  EXPECT_EQ(send(admin, "PUT", "/v1/projects/default", {{"restrictions", {{"restricted", true}}}}).status, 400);
  EXPECT_EQ(send(admin, "DELETE", "/v1/projects/default").status, 409);
  // A token bound to a project that does not exist is refused.
  auto r = rpc->call("token.create", {{"name", "x"}, {"role", "operator"}, {"project", "nope"}});
  EXPECT_FALSE(r.ok());
}

TEST_F(Projects, QuotasRefuseWhatWouldPassThem) {
  auto a = send(admin, "PUT", "/v1/projects/ci", {{"limits", {{"domains", 2}, {"vcpus", 3}, {"memory", "1GiB"}, {"disk", "3MiB"}}}});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(send(ciOperator, "POST", "/v1/domains", {{"name", "a"}, {"type", "test"}, {"vcpus", 2}, {"memory", "256M"}}).status, 201);
  a = send(ciOperator, "POST", "/v1/domains", {{"name", "b"}, {"type", "test"}, {"vcpus", 2}, {"memory", "256M"}});
  EXPECT_EQ(a.status, 409);
  EXPECT_NE(a.message().find("limits.vcpus is 3; 2 in use and 2 more asked for"), std::string::npos) << a.body;
  EXPECT_EQ(send(ciOperator, "POST", "/v1/domains", {{"name", "b"}, {"type", "test"}, {"vcpus", 1}, {"memory", "256M"}}).status, 201);
  a = send(ciOperator, "POST", "/v1/domains", {{"name", "c"}, {"type", "test"}, {"vcpus", 0 + 1}});
  EXPECT_EQ(a.status, 409);
  EXPECT_NE(a.message().find("limits.domains is 2"), std::string::npos) << a.body;
  // An update that grows a domain past the memory limit.
  json grown = send(ciOperator, "GET", "/v1/domains/b").body["definition"];
  grown["memory"] = "900M";
  a = send(ciOperator, "PUT", "/v1/domains/b", grown);
  EXPECT_EQ(a.status, 409);
  EXPECT_NE(a.message().find("limits.memory"), std::string::npos) << a.body;
  // Disk: volumes count with their capacity, growth too.
  EXPECT_EQ(send(ciOperator, "POST", "/v1/pools/default/volumes", {{"name", "v1"}, {"capacity", "2MiB"}}).status, 201);
  a = send(ciOperator, "POST", "/v1/pools/default/volumes", {{"name", "v2"}, {"capacity", "2MiB"}});
  EXPECT_EQ(a.status, 409);
  EXPECT_NE(a.message().find("limits.disk"), std::string::npos) << a.body;
  a = send(ciOperator, "POST", "/v1/pools/default/volumes", {{"name", "c1"}, {"backing_volume", "v1"}});
  EXPECT_EQ(a.status, 409) << "a linked clone counts with its backing volume's capacity: " << a.body;
  a = send(ciOperator, "POST", "/v1/pools/default/volumes/v1/resize", {{"capacity", "4MiB"}});
  EXPECT_EQ(a.status, 409) << a.body;
  // The default project has no limits: the same calls pass there.
  EXPECT_EQ(send(admin, "POST", "/v1/domains", {{"name", "c"}, {"type", "test"}, {"vcpus", 8}}).status, 201);
  // The usage is shown with the project.
  json p = send(ciOperator, "GET", "/v1/projects/ci").body;
  EXPECT_EQ(p["usage"]["domains"], 2);
  EXPECT_EQ(p["usage"]["vcpus"], 3);
  EXPECT_EQ(p["limits"]["domains"], 2);
  // Removing limits (null) lets the call through.
  ASSERT_EQ(send(admin, "PUT", "/v1/projects/ci", {{"limits", {{"domains", nullptr}, {"vcpus", nullptr}}}}).status, 200);
  EXPECT_EQ(send(ciOperator, "POST", "/v1/domains", {{"name", "c"}, {"type", "test"}, {"vcpus", 0 + 1}, {"memory", "64M"}}).status, 201);
}

TEST_F(Projects, LaunchesQueueInTheirProjectsLine) {
  importTestImage("base");
  ASSERT_EQ(send(admin, "PUT", "/v1/projects/ci", {{"limits", {{"running", 1}}}}).status, 200);
  auto first = send(ciOperator, "POST", "/v1/launch", {{"image", "base"}, {"name", "one"}});
  ASSERT_EQ(first.status, 202) << first.body;
  ASSERT_EQ(waitFor(ciOperator, first.body)["status"], "succeeded") << waitFor(ciOperator, first.body);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/one").body["state"], "running");
  // A second launch waits for the project's only running slot...
  auto second = send(ciOperator, "POST", "/v1/launch", {{"image", "base"}, {"name", "two"}});
  ASSERT_EQ(second.status, 202) << second.body;
  std::this_thread::sleep_for(Millis(800));
  json op = send(ciOperator, "GET", "/v1/operations/" + second.body["id"].get<std::string>()).body;
  EXPECT_EQ(op["status"], "running") << op;
  EXPECT_NE(op.dump().find("waiting for a running slot of project ci"), std::string::npos) << op;
  // ...while other projects' launches do not wait in it.
  auto elsewhere = send(admin, "POST", "/v1/launch", {{"image", "base"}, {"name", "one"}});
  ASSERT_EQ(elsewhere.status, 202);
  EXPECT_EQ(waitFor(admin, elsewhere.body)["status"], "succeeded");
  // Its cloud-init seed names the domain as the project knows it (a host name has no '_').
  auto seeded = send(ciOperator, "POST", "/v1/launch", {{"image", "base"}, {"name", "seeded"}, {"start", false}, {"cloud_init", json::object()}});
  ASSERT_EQ(seeded.status, 202) << seeded.body;
  EXPECT_EQ(waitFor(ciOperator, seeded.body)["status"], "succeeded") << waitFor(ciOperator, seeded.body);
  // A plain start past the limit is refused rather than queued.
  ASSERT_EQ(send(ciOperator, "POST", "/v1/domains", {{"name", "three"}, {"type", "test"}}).status, 201);
  auto refused = send(ciOperator, "POST", "/v1/domains/three/start");
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.message().find("limits.running is 1"), std::string::npos) << refused.body;
  // Once the first stops, the queued launch goes on.
  ASSERT_EQ(send(ciOperator, "POST", "/v1/domains/one/destroy").status, 200);
  EXPECT_EQ(waitFor(ciOperator, second.body)["status"], "succeeded");
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/two").body["state"], "running");
  // A launch past a quota fails before it makes anything.
  ASSERT_EQ(send(admin, "PUT", "/v1/projects/ci", {{"limits", {{"domains", 3}}}}).status, 200);
  auto past = send(ciOperator, "POST", "/v1/launch", {{"image", "base"}, {"name", "four"}, {"start", false}});
  ASSERT_EQ(past.status, 202) << past.body;
  json failed = waitFor(ciOperator, past.body);
  EXPECT_EQ(failed["status"], "failed") << failed;
  EXPECT_NE(failed.dump().find("limits.domains is 3"), std::string::npos) << failed;
  EXPECT_EQ(send(ciOperator, "GET", "/v1/domains/four").status, 404);
  // The launched domain's volume is the project's.
  json vols = send(ciOperator, "GET", "/v1/pools/" + send(admin, "GET", "/v1/images/base").body["pool"].get<std::string>() + "/volumes").body;
  EXPECT_TRUE(namesOf(vols).count("?/two-root.qcow2")) << vols;
  EXPECT_FALSE(namesOf(vols).count("?/four-root.qcow2")) << vols;
  // Starts that race for the last slot: one gets it.
  ASSERT_EQ(send(ciOperator, "POST", "/v1/domains/two/destroy").status, 200);
  ASSERT_EQ(send(admin, "PUT", "/v1/projects/ci", {{"limits", {{"domains", nullptr}}}}).status, 200);
  ASSERT_EQ(send(ciOperator, "POST", "/v1/domains", {{"name", "r2"}, {"type", "test"}}).status, 201);
  Answer starts[2];
  std::thread other([&] { starts[1] = send(ciOperator, "POST", "/v1/domains/r2/start"); });
  starts[0] = send(ciOperator, "POST", "/v1/domains/three/start");
  other.join();
  int running = 0;
  for (auto& st : starts) {
    if (st.status == 202) running += waitFor(ciOperator, st.body)["status"] == "succeeded";
  }
  EXPECT_EQ(running, 1);
  EXPECT_EQ(send(ciOperator, "GET", "/v1/projects/ci").body["usage"]["running"], 1);
}

TEST_F(Projects, VmctlActsInTheProjectItIsGiven) {
  auto r = vmmd->vmctl({"project", "create", "team", "--description", "the team", "--limit-domains", "3"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  r = vmmd->vmctl({"--project", "team", "define", "-"}, json{{"name", "box"}, {"type", "test"}}.dump());
  ASSERT_EQ(r.exitCode, 0) << r.err;
  r = vmmd->vmctl({"-o", "json", "list", "--all"}, "", {{"VMM_PROJECT", "team"}});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(namesOf(json::parse(r.out, nullptr, false)), (std::set<std::string>{"team/box"})) << r.out;
  r = vmmd->vmctl({"-o", "json", "list", "--all"});
  EXPECT_EQ(namesOf(json::parse(r.out, nullptr, false)), (std::set<std::string>{})) << r.out;
  r = vmmd->vmctl({"list", "--all", "--all-projects"});
  EXPECT_NE(r.out.find("team"), std::string::npos) << r.out;
  r = vmmd->vmctl({"project", "list"});
  EXPECT_NE(r.out.find("1/3"), std::string::npos) << r.out;
  r = vmmd->vmctl({"token", "create", "bot", "--role", "operator", "--project", "team"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  r = vmmd->vmctl({"token", "list"});
  EXPECT_NE(r.out.find("team"), std::string::npos) << r.out;
  // Over HTTP too: a bound token lists its project's domains, streams included.
  auto bot = token("bot2", "operator", "team");
  r = vmmd->vmctl({"-c", vmmd->httpUrl(), "-o", "json", "list", "--all"}, "", {{"VMM_TOKEN", bot}});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(namesOf(json::parse(r.out, nullptr, false)), (std::set<std::string>{"team/box"})) << r.out;
  r = vmmd->vmctl({"project", "delete", "team"});
  EXPECT_NE(r.exitCode, 0) << "a project with a domain stays";
}

TEST_F(Projects, AnImageImportPastTheDiskLimitIsRemovedAgain) {
  makeProject({{"name", "lab"}, {"restrictions", {{"restricted", false}}}, {"limits", {{"disk", "1MiB"}}}});
  std::string file = vmmd->dir() + "/big.img";
  std::ofstream(file) << std::string(2 << 20, '\0');
  auto a = send(admin, "POST", "/v1/images?project=lab", {{"name", "big"}, {"file", file}});
  ASSERT_EQ(a.status, 202) << a.body;
  json failed = waitFor(admin, a.body, "lab");
  EXPECT_EQ(failed["status"], "failed") << failed;
  EXPECT_NE(failed.dump().find("imported and removed again"), std::string::npos) << failed;
  EXPECT_EQ(send(admin, "GET", "/v1/images/big?project=lab").status, 404);
  EXPECT_EQ(send(admin, "GET", "/v1/projects/lab").body["usage"]["disk"], 0);
}

}  // namespace
