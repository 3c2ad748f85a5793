// Roles, tokens, host references, event privileges and the audit trail, in process.
#include <gtest/gtest.h>

#include <thread>

#include "api/audit.h"
#include "api/registry.h"
#include "daemon/auth.h"
#include "daemon/event_bus.h"
#include "daemon/operation_manager.h"
#include "daemon/url_fetch.h"
#include "model/domain.h"
#include "test_util.h"

using namespace vmm;
using nlohmann::json;

namespace {

std::vector<std::string> fieldsOf(const std::vector<model::HostReference>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs) out.push_back(r.field);
  return out;
}

model::Domain parse(const json& j) {
  auto d = model::parseDomain(j);
  EXPECT_TRUE(d.ok()) << d.error().message;
  return d.ok() ? *d : model::Domain{};
}

}  // namespace

TEST(Roles, AreOrderedAndNamed) {
  EXPECT_EQ(api::parseRole("operator"), api::Role::operate);
  EXPECT_EQ(api::roleName(api::Role::operate), "operator");
  EXPECT_FALSE(api::parseRole("write").has_value());
  api::CallContext ctx;
  ctx.role = api::Role::operate;
  EXPECT_TRUE(ctx.may(api::Role::read));
  EXPECT_TRUE(ctx.may(api::Role::operate));
  EXPECT_FALSE(ctx.may(api::Role::admin));
  // The table: the host's own objects are the admin's, guests the operator's.
  EXPECT_EQ(api::findSpec("pool.create")->role, api::Role::admin);
  EXPECT_EQ(api::findSpec("network.start")->role, api::Role::admin);
  EXPECT_EQ(api::findSpec("token.list")->role, api::Role::admin);
  EXPECT_EQ(api::findSpec("audit.list")->role, api::Role::admin);
  EXPECT_EQ(api::findSpec("domain.exec")->role, api::Role::operate);
  EXPECT_EQ(api::findSpec("domain.console_log")->role, api::Role::operate);
  EXPECT_EQ(api::findSpec("operation.result")->role, api::Role::operate);
  EXPECT_EQ(api::findSpec("domain.list")->role, api::Role::read);
}

TEST(HostReferences, NameEveryFieldThatReachesTheHost) {
  auto none = parse({{"name", "a"}, {"type", "test"}, {"disks", {{{"source", {{"pool", "p"}, {"volume", "v"}}}}}},
                     {"nics", {{{"network", "default"}}, {{"type", "user"}}}}});
  EXPECT_TRUE(model::hostReferences(none).empty());
  auto vm = parse({{"name", "a"},
                   {"type", "test"},
                   {"disks", {{{"source", {{"pool", "p"}, {"volume", "v"}}}}, {{"source", {{"path", "/dev/sda"}}}}}},
                   {"boot", {{"kernel", "/k"}, {"initrd", "/i"}}},
                   {"nics", {{{"type", "bridge"}, {"bridge", "br0"}}, {{"type", "direct"}, {"device", "eth0"}},
                             {{"type", "user"}, {"host_loopback", true}},
                             {{"network", "default"}, {"port", {{"mirror_to", "eth1"}}}}}}});
  EXPECT_EQ(fieldsOf(model::hostReferences(vm)),
            (std::vector<std::string>{"disks[1].source.path", "boot.kernel", "boot.initrd", "nics[0].bridge", "nics[1].device",
                                      "nics[2].host_loopback", "nics[3].port.mirror_to"}));
  auto ct = parse({{"name", "c"},
                   {"type", "lxc"},
                   {"container",
                    {{"rootfs", {{"path", "/srv/c"}}}, {"mounts", {{{"source", "/etc"}, {"target", "/mnt"}}}},
                     {"privileged", true}, {"idmap_base", 100000}}}});
  EXPECT_EQ(fieldsOf(model::hostReferences(ct)),
            (std::vector<std::string>{"container.rootfs.path", "container.mounts[0].source", "container.privileged",
                                      "container.idmap_base"}));
  // An update may keep what the domain has (by kind and value, wherever it moved) and add nothing.
  auto moved = vm;
  std::swap(moved.disks[0], moved.disks[1]);
  EXPECT_TRUE(model::addedHostReferences(moved, &vm).empty());
  moved.disks[0].source.path = "/etc/shadow";
  EXPECT_EQ(fieldsOf(model::addedHostReferences(moved, &vm)), std::vector<std::string>{"disks[0].source.path"});
  EXPECT_EQ(model::addedHostReferences(vm, nullptr).size(), 7u);
  // Keeping the path but changing what surrounds it is a new reference: a writable disk.
  auto writable = vm;
  writable.disks[1].readonly = !writable.disks[1].readonly;
  EXPECT_EQ(fieldsOf(model::addedHostReferences(writable, &vm)), std::vector<std::string>{"disks[1].source.path"});
  auto vepa = vm;
  vepa.nics[1].directMode = model::DirectMode::passthrough;
  EXPECT_EQ(fieldsOf(model::addedHostReferences(vepa, &vm)), std::vector<std::string>{"nics[1].device"});
  // The host's network: a chosen tap name, forwarded host ports, a display off loopback.
  auto net = parse({{"name", "n"},
                    {"type", "test"},
                    {"nics", {{{"network", "default"}, {"ifname", "tap-admin"}},
                              {{"type", "user"}, {"forwards", {{{"host_port", 2222}, {"guest_port", 22}}}}}}},
                    {"graphics", {{{"type", "vnc"}, {"listen", "0.0.0.0"}}, {{"type", "vnc"}, {"listen", "127.0.0.1"}}}}});
  EXPECT_EQ(fieldsOf(model::hostReferences(net)),
            (std::vector<std::string>{"nics[0].ifname", "nics[1].forwards", "graphics[0].listen"}));
}

TEST(HostReferences, PrivilegedContainersAndWritableHostMountsAreHostRoot) {
  EXPECT_FALSE(model::grantsHostRoot(parse({{"name", "v"}, {"type", "test"}, {"disks", {{{"source", {{"path", "/dev/sda"}}}}}}})));
  auto ct = [](json container) { return parse({{"name", "c"}, {"type", "lxc"}, {"container", container}}); };
  json rootfs = {{"pool", "p"}, {"volume", "v"}};
  EXPECT_FALSE(model::grantsHostRoot(ct({{"rootfs", rootfs}})));
  EXPECT_FALSE(model::grantsHostRoot(ct({{"rootfs", rootfs}, {"mounts", {{{"source", "/srv"}, {"target", "/srv"}}}}})));
  EXPECT_TRUE(model::grantsHostRoot(ct({{"rootfs", rootfs}, {"privileged", true}})));
  EXPECT_TRUE(model::grantsHostRoot(
      ct({{"rootfs", rootfs}, {"mounts", {{{"source", "/srv"}, {"target", "/srv"}, {"readonly", false}}}}})));
}

TEST(Tokens, ExpireAndAreRevokedForGood) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  TokenStore tokens(*store);
  ASSERT_TRUE(tokens.load().ok());
  EXPECT_FALSE(tokens.create({"bad", "root", "", 0, ""}).ok());
  EXPECT_FALSE(tokens.create({"past", "read", "", wallNowMicros() - 1, ""}).ok());
  auto brief = tokens.create({"brief", "operator", "a CI job", wallNowMicros() + 300000, ""});
  auto lasting = tokens.create({"lasting", "admin", "", 0, ""});
  ASSERT_TRUE(brief.ok() && lasting.ok());
  auto seen = tokens.verify(*brief);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->role, "operator");
  EXPECT_EQ(seen->description, "a CI job");
  EXPECT_TRUE(tokens.stillValid(*seen));
  std::this_thread::sleep_for(Millis(350));
  EXPECT_FALSE(tokens.verify(*brief).has_value());
  EXPECT_FALSE(tokens.stillValid(*seen));
  // Revoked, then made again under the same name: the old one's streams stay ended.
  auto old = tokens.verify(*lasting);
  ASSERT_TRUE(old.has_value());
  ASSERT_TRUE(tokens.remove("lasting").ok());
  EXPECT_FALSE(tokens.stillValid(*old));
  std::this_thread::sleep_for(Millis(2));
  auto again = tokens.create({"lasting", "admin", "", 0, ""});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(tokens.stillValid(*old));
  EXPECT_FALSE(tokens.verify(*lasting).has_value());
  // Kept across a restart, expiry and description too.
  TokenStore reloaded(*store);
  ASSERT_TRUE(reloaded.load().ok());
  auto list = reloaded.list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "brief");
  EXPECT_TRUE(list[0].expired(wallNowMicros()));
  EXPECT_EQ(list[0].description, "a CI job");
}

TEST(EventPrivileges, ReadersGetNoGuestOutputAndNoAccessRecords) {
  EventBus bus;
  EventFilter reader;
  reader.guestOutput = false;
  reader.accessRecords = false;
  EventFilter operatorFilter;
  operatorFilter.accessRecords = false;
  auto r = bus.subscribe(reader);
  auto o = bus.subscribe(operatorFilter);
  auto a = bus.subscribe(EventFilter{});
  for (const char* type : {"operation.output", "audit", "token", "domain.lifecycle"}) bus.publish(type, "x", json::object());
  auto types = [](Subscription& s) {
    bool closed = false;
    std::vector<std::string> out;
    for (const auto& e : s.drain(closed)) out.push_back(e->type);
    return out;
  };
  EXPECT_EQ(types(*r), std::vector<std::string>{"domain.lifecycle"});
  EXPECT_EQ(types(*o), (std::vector<std::string>{"operation.output", "domain.lifecycle"}));
  EXPECT_EQ(types(*a), (std::vector<std::string>{"operation.output", "audit", "token", "domain.lifecycle"}));
}

TEST(AuditTrail, KeepsTheNewestAndFilters) {
  api::AuditTrail trail(3);
  std::vector<std::string> sunk;
  trail.setSink([&](const api::AuditRecord& r) { sunk.push_back(r.method); });
  for (const char* m : {"domain.create", "domain.start", "pool.create", "domain.delete"}) {
    api::AuditRecord r;
    r.principal = std::string(m) == "pool.create" ? "token op" : "uid 0";
    r.method = m;
    r.object = "domains/a";
    r.result = "ok";
    trail.record(r);
  }
  EXPECT_EQ(sunk.size(), 4u);
  auto all = trail.list({});
  ASSERT_EQ(all.size(), 3u);  // the oldest went
  EXPECT_EQ(all.front().seq, 2u);
  EXPECT_EQ(all.back().method, "domain.delete");
  EXPECT_EQ(trail.list({"", "domain", "", 0, 100}).size(), 2u);
  EXPECT_EQ(trail.list({"", "dom", "", 0, 100}).size(), 0u);  // a group is a whole name
  EXPECT_EQ(trail.list({"token op", "", "", 0, 100}).size(), 1u);
  EXPECT_EQ(trail.list({"", "", "", 3, 100}).size(), 1u);
  auto newest = trail.list({"", "", "", 0, 1});
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0].seq, 4u);
}

TEST(AuditTrail, RecordsEveryCallAboveReadWithItsOutcome) {
  testutil::TempDir dir;
  auto store = std::move(*StateStore::open(dir / "vmm.db", StoreOptions{false}));
  EventBus bus;
  ThreadPool pool(1, 8);
  OperationManager ops(*store, bus, pool);
  api::Registry reg(ops);
  api::AuditTrail trail;
  reg.setAudit(&trail);
  reg.bind("domain.get", [](const api::CallContext&, const json&) -> Result<api::Reply> { return api::Reply(json::object()); });
  reg.bind("domain.delete", [](const api::CallContext&, const json&) -> Result<api::Reply> { return api::Reply(json::object()); });
  reg.bindAsync("domain.start", [](const api::CallContext&, const json& p) -> Result<api::AsyncWork> {
    return api::AsyncWork{"domains/" + api::str(p, "name"), [](OperationContext&) -> Result<json> { return json(); }};
  });
  api::CallContext reader, op;
  reader.principal = "token r";
  op.principal = "token o";
  op.role = api::Role::operate;
  reader.transport = op.transport = "http";
  EXPECT_TRUE(reg.call(reader, "domain.get", {{"name", "a"}}).ok());
  auto refused = reg.call(reader, "domain.delete", {{"name", "a"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, "domain.delete needs the operator role; token r has the read role");
  EXPECT_TRUE(reg.call(op, "domain.delete", {{"name", "a"}}).ok());
  auto started = reg.call(op, "domain.start", {{"name", "b"}});
  ASSERT_TRUE(started.ok());
  EXPECT_EQ(started->body["principal"], "token o");
  auto records = trail.list({});
  ASSERT_EQ(records.size(), 3u);  // domain.get is a read: not recorded
  EXPECT_EQ(records[0].principal, "token r");
  EXPECT_EQ(records[0].result, "permission-denied");
  EXPECT_EQ(records[0].object, "domains/a");
  EXPECT_EQ(records[1].result, "ok");
  EXPECT_EQ(records[1].role, "operator");
  EXPECT_EQ(records[2].operation, started->body["id"].get<std::string>());
  EXPECT_EQ(records[2].object, "domains/b");
  ops.drain(Deadline::after(Millis(2000)));
}

TEST(UrlImports, BelowAdminReachOnlyPublicAddresses) {
  for (const char* internal : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
                               "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1",
                               "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "not an address"})
    EXPECT_FALSE(isPublicAddress(internal)) << internal;
  for (const char* external : {"1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"})
    EXPECT_TRUE(isPublicAddress(external)) << external;
}
