// Crash consistency: a client drives one vmmd with random operations (test-driver domains,
// dir-pool volumes and clones, snapshots, networks with bridge, nftables and dnsmasq in this
// binary's own network namespace, launches from an image with a TTL) while the test kills vmmd
// with SIGKILL at a random moment. After every restart the state must be whole:
//   - every acknowledged change is there (definitions, volumes, snapshots, networks), every
//     acknowledged removal stays removed;
//   - no operation of an earlier vmmd is left pending or running;
//   - nothing exists that no record owns: no file in a pool directory without its volume, no
//     volume that nothing made or uses, no bridge, nft table or dnsmasq of a network that is not
//     active, no launched domain (or its volume) past its TTL;
//   - no record points at nothing: volumes have their files, disks their volumes, active
//     networks their bridge, table and dnsmasq.
// Operations in flight at the kill may have happened or not; either way the state must be whole.
//
// The suite runs a short campaign (VMM_TORTURE_ROUNDS, default 12). The long one:
//   crash_torture_test --rounds 1000 [--seed N]
// prints the totals at the end (rounds, acknowledged changes, kills in flight, violations).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "base/fs.h"
#include "base/json_util.h"
#include "base/strings.h"
#include "tests/support/host_command.h"
#include "tests/support/host_tools.h"
#include "tests/support/private_netns.h"
#include "tests/support/process_scan.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

int gRounds = 0;
uint64_t gSeed = 0;

// What the client knows of one object: acknowledged present, acknowledged absent, or unknown
// (a call that was in flight when vmmd died).
enum class Known { absent, present, unknown };

struct Launch {
  SteadyClock::time_point expires;  // the TTL counted from before the call was sent
};

struct World {
  std::map<std::string, Known> domains, volumes, networks, snapshots;  // snapshots: "dom/snap"
  std::map<std::string, Launch> launches;                                // acknowledged or unknown
  uint64_t acknowledged = 0, refused = 0, interrupted = 0;
};

std::string str(const json& j, std::string_view key) { return jsonStringOr(j, key, ""); }

void expectAgrees(Known k, bool there, const std::string& what) {
  if (k == Known::present) {
    EXPECT_TRUE(there) << "acknowledged " << what << " lost";
  } else if (k == Known::absent) {
    EXPECT_FALSE(there) << "deleted " << what << " came back";
  }
}

bool definiteRefusal(const Error& e) {
  return e.code == ErrorCode::invalid_argument || e.code == ErrorCode::not_found || e.code == ErrorCode::conflict ||
         e.code == ErrorCode::precondition_failed || e.code == ErrorCode::unsupported;
}

class Torture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string missing = testutil::missingTools({"qemu-img"}, "qemu-utils") + testutil::missingTools({"dnsmasq"}, "dnsmasq-base") +
                          testutil::missingTools({"nft"}, "nftables");
    VMM_REQUIRE(missing.empty(), missing);
    vmmd = std::make_unique<VmmdProcess>("", std::vector<std::string>{"--drivers", "test"});
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    // An image whose launches are test-driver domains: a real qcow2 and a linked clone per launch.
    std::string file = vmmd->dir() + "/tiny.qcow2";
    auto made = testutil::hostCommand({"qemu-img", "create", "-q", "-f", "qcow2", file, "16M"});
    ASSERT_EQ(made.exitCode, 0) << made.err;
    auto imported = (*c)->callAndWait("image.import",
                                      {{"name", "tiny"}, {"file", file}, {"template", {{"type", "test"}, {"memory", "64MiB"}}}},
                                      Deadline::after(Millis(60000)));
    ASSERT_TRUE(imported.ok()) << imported.error().message;
    for (const char* pool : {"default", "images"}) {
      auto p = (*c)->call("pool.get", {{"name", pool}});
      ASSERT_TRUE(p.ok()) << p.error().message;
      poolDirs[pool] = str(*p, "path");
    }
    auto vols = (*c)->call("volume.list", {{"pool", "images"}});
    ASSERT_TRUE(vols.ok());
    for (const auto& v : *vols) imageVolumes.insert(str(v, "name"));
  }

  void TearDown() override {
    // Networks go first (their dnsmasq lives beyond vmmd); then anything of this vmmd that
    // outlived it is ended by pid.
    if (vmmd && vmmd->pid() > 0) {
      if (auto c = vmmd->connect(); c.ok())
        for (int i = 0; i < kNetworks; ++i) (void)(*c)->call("network.delete", {{"name", "n" + std::to_string(i)}});
      (void)vmmd->stop();
    }
    for (const auto& p : ownProcesses()) ::kill(p.pid, SIGKILL);
  }

  static constexpr int kDomains = 10, kVolumes = 10, kNetworks = 3, kSnapshots = 3, kLaunches = 6;

  std::vector<testutil::ProcessEntry> ownProcesses() {
    std::vector<testutil::ProcessEntry> out;
    for (const auto& p : testutil::listProcesses())
      if (p.pid != vmmd->pid() && p.argvContains(vmmd->dir() + "/")) out.push_back(p);
    return out;
  }

  // One random operation. Returns false when vmmd is gone (the connection failed).
  bool step(client::Connection& c, std::mt19937_64& rng, World& w) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
    std::string d = "d" + std::to_string(pick(kDomains)), v = "v" + std::to_string(pick(kVolumes));
    std::string n = "n" + std::to_string(pick(kNetworks));
    auto deadline = [] { return Deadline::after(Millis(30000)); };
    // Runs a call whose effect on `slot` is `after` when acknowledged; a refusal changes
    // nothing, anything else leaves the slot unknown.
    auto apply = [&](Known& slot, Known after, const Result<json>& r) {
      if (r.ok()) {
        slot = after;
        ++w.acknowledged;
        return true;
      }
      if (definiteRefusal(r.error())) {
        ++w.refused;
        return true;
      }
      slot = Known::unknown;
      ++w.interrupted;
      return false;
    };
    switch (pick(13)) {
      case 0:
      case 1: {
        Known& s = w.domains[d];
        auto r = c.call("domain.create", {{"definition", {{"name", d}, {"type", "test"}, {"memory", "64MiB"}, {"vcpus", 1}}}});
        return apply(s, Known::present, r);
      }
      case 2: {
        Known& s = w.domains[d];
        (void)c.call("domain.destroy", {{"name", d}});
        auto r = c.call("domain.delete", {{"name", d}});
        bool alive = apply(s, Known::absent, r);
        if (r.ok() || !alive)
          for (auto& [key, snap] : w.snapshots)
            if (startsWith(key, d + "/")) snap = r.ok() ? Known::absent : Known::unknown;
        return alive;
      }
      case 3: {
        auto r = c.call(pick(2) ? "domain.start" : "domain.destroy", {{"name", d}});
        return r.ok() || definiteRefusal(r.error());
      }
      case 4:
      case 5: {
        Known& s = w.volumes[v];
        json spec = {{"name", v}, {"capacity", pick(2) ? "4MiB" : "1MiB"}, {"format", pick(2) ? "qcow2" : "raw"}};
        auto r = c.call("volume.create", {{"pool", "default"}, {"volume", spec}});
        return apply(s, Known::present, r);
      }
      case 6: {
        Known& s = w.volumes[v];
        auto r = c.call("volume.delete", {{"pool", "default"}, {"name", v}});
        return apply(s, Known::absent, r);
      }
      case 7: {
        std::string target = "v" + std::to_string(pick(kVolumes));
        if (target == v) return true;
        Known& s = w.volumes[target];
        auto r = c.callAndWait("volume.clone", {{"pool", "default"}, {"name", v}, {"target", target}, {"linked", pick(2) == 0}},
                               deadline());
        return apply(s, Known::present, r);
      }
      case 8: {
        std::string key = d + "/s" + std::to_string(pick(kSnapshots));
        Known& s = w.snapshots[key];
        auto r = c.callAndWait("snapshot.create", {{"name", d}, {"snapshot", key.substr(d.size() + 1)}}, deadline());
        return apply(s, Known::present, r);
      }
      case 9: {
        std::string key = d + "/s" + std::to_string(pick(kSnapshots));
        Known& s = w.snapshots[key];
        auto r = c.callAndWait("snapshot.delete", {{"name", d}, {"snapshot", key.substr(d.size() + 1)}}, deadline());
        return apply(s, Known::absent, r);
      }
      case 10: {
        Known& s = w.networks[n];
        std::string idx = n.substr(1);
        json def = {{"name", n}, {"mode", "nat"}, {"bridge", "vmmtor" + idx}, {"ipv4", "10.77." + idx + ".1/24"}};
        auto r = c.call("network.create", {{"definition", def}});
        return apply(s, Known::present, r);
      }
      case 11: {
        Known& s = w.networks[n];
        if (pick(2)) {
          auto r = c.call(pick(2) ? "network.start" : "network.stop", {{"name", n}});
          return r.ok() || definiteRefusal(r.error());
        }
        auto r = c.call("network.delete", {{"name", n}});
        return apply(s, Known::absent, r);
      }
      default: {
        std::string name = "l" + std::to_string(pick(kLaunches));
        if (w.launches.count(name)) return true;  // until its TTL has taken it
        auto expires = SteadyClock::now() + Millis(2000);
        w.launches[name] = {expires};
        auto r = c.callAndWait("domain.launch", {{"image", "tiny"}, {"name", name}, {"ttl", "2s"}}, deadline());
        if (r.ok()) {
          ++w.acknowledged;
          return true;
        }
        if (definiteRefusal(r.error())) {
          ++w.refused;
          w.launches.erase(name);
          return true;
        }
        ++w.interrupted;
        return false;
      }
    }
  }

  // Lease records (launched domains: what each made), read beside the running vmmd.
  std::map<std::string, json> leaseRecords() {
    std::map<std::string, json> out;
    auto r = testutil::hostCommand({"sqlite3", "-readonly", "-json", vmmd->dir() + "/state/vmm.db", "SELECT key, value FROM leases;"});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    json rows = json::parse(r.out.empty() ? "[]" : r.out, nullptr, false);
    if (rows.is_array())
      for (const auto& row : rows) out[str(row, "key")] = json::parse(str(row, "value"), nullptr, false);
    return out;
  }

  // The invariants, against the restarted vmmd.
  // Launch TTLs are enforced by vmmd's one-second maintenance tick, which a vmmd killed within
  // a second of its start never runs: they are checked when `ttlsDue` (a vmmd that has lived).
  void checkWhole(client::Connection& c, World& w, int round, bool ttlsDue = false) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Operations: nothing of an earlier vmmd still pending or running.
    auto ops = c.call("operation.list", json::object());
    ASSERT_TRUE(ops.ok()) << ops.error().message;
    for (const auto& op : *ops) {
      std::string status = str(op, "status");
      EXPECT_TRUE(status != "pending" && status != "running") << "operation left " << status << ": " << op.dump();
    }
    // Domains.
    std::set<std::string> domains;
    std::map<std::string, std::set<std::string>> domainVolumes;  // pool -> volumes disks use
    auto list = c.call("domain.list", {{"full", true}});
    ASSERT_TRUE(list.ok()) << list.error().message;
    for (const auto& d : *list) {
      std::string name = str(d, "name");
      domains.insert(name);
      const json* def = jsonMember(d, "definition");
      const json* disks = def ? jsonMember(*def, "disks") : nullptr;
      if (disks && disks->is_array())
        for (const auto& disk : *disks) {
          const json* src = jsonMember(disk, "source");
          if (src && src->contains("pool")) domainVolumes[str(*src, "pool")].insert(str(*src, "volume"));
        }
    }
    for (const auto& [name, k] : w.domains) {
      expectAgrees(k, domains.count(name) > 0, "domain " + name);
    }
    for (const auto& name : domains) {
      if (name[0] == 'l') {
        EXPECT_TRUE(w.launches.count(name)) << "launched domain nobody launched: " << name;
        continue;
      }
      auto it = w.domains.find(name);
      EXPECT_TRUE(it != w.domains.end() && it->second != Known::absent) << "domain nobody made: " << name;
    }
    // Launches past their TTL (with slack for the reaper's one-second tick) are gone, with
    // their lease. What a lease names (volumes of a launch a kill interrupted) is owned: the
    // next tick removes it.
    auto leases = leaseRecords();
    std::map<std::string, std::set<std::string>> leaseVolumes;
    for (const auto& [name, lease] : leases) {
      const json* vols = jsonMember(lease, "volumes");
      if (vols && vols->is_array())
        for (const auto& v : *vols) leaseVolumes[str(v, "pool")].insert(str(v, "volume"));
    }
    auto now = SteadyClock::now();
    for (auto it = w.launches.begin(); it != w.launches.end();) {
      if (ttlsDue && now > it->second.expires + Millis(3000)) {
        EXPECT_FALSE(domains.count(it->first)) << "launched domain outlived its TTL: " << it->first;
        EXPECT_FALSE(leases.count(it->first)) << "lease outlived its TTL: " << it->first;
        if (!domains.count(it->first)) {
          it = w.launches.erase(it);
          continue;
        }
      }
      ++it;
    }
    // Volumes: records and files agree; every volume was made by the client, is an image's or a
    // disk of an existing domain; every disk's volume exists.
    for (const auto& [pool, dir] : poolDirs) {
      auto vols = c.call("volume.list", {{"pool", pool}});
      ASSERT_TRUE(vols.ok()) << vols.error().message;
      std::set<std::string> records, files;
      for (const auto& v : *vols) records.insert(str(v, "name"));
      auto names = fs::listDir(dir);
      ASSERT_TRUE(names.ok()) << dir;
      files.insert(names->begin(), names->end());
      for (const auto& f : files) EXPECT_TRUE(records.count(f)) << "file without a volume record in " << pool << ": " << f;
      for (const auto& r : records) EXPECT_TRUE(files.count(r)) << "volume record without its file in " << pool << ": " << r;
      for (const auto& r : records) {
        bool owned = domainVolumes[pool].count(r) > 0 || leaseVolumes[pool].count(r) > 0 || (pool == "images" && imageVolumes.count(r));
        if (pool == "default") {
          auto it = w.volumes.find(r);
          owned = owned || (it != w.volumes.end() && it->second != Known::absent);
        }
        EXPECT_TRUE(owned) << "volume nothing owns in " << pool << ": " << r;
      }
      for (const auto& used : domainVolumes[pool]) EXPECT_TRUE(records.count(used)) << "a disk points at a missing volume: " << used;
      if (pool == "default")
        for (const auto& [name, k] : w.volumes) {
          expectAgrees(k, records.count(name) > 0, "volume " + name);
        }
    }
    // Snapshots of the domains that exist.
    for (const auto& name : domains) {
      if (name[0] == 'l') continue;
      auto snaps = c.call("snapshot.list", {{"name", name}});
      ASSERT_TRUE(snaps.ok()) << snaps.error().message;
      std::set<std::string> have;
      for (const auto& s : *snaps) have.insert(name + "/" + str(s, "name"));
      for (const auto& key : have) {
        auto it = w.snapshots.find(key);
        EXPECT_TRUE(it != w.snapshots.end() && it->second != Known::absent) << "snapshot nobody made or one deleted: " << key;
      }
      for (const auto& [key, k] : w.snapshots)
        if (startsWith(key, name + "/")) expectAgrees(k, have.count(key) > 0, "snapshot " + key);
    }
    for (auto& [key, k] : w.snapshots)
      if (!domains.count(key.substr(0, key.find('/'))) && k != Known::unknown) k = Known::absent;
    // Networks and their host side.
    auto nets = c.call("network.list", json::object());
    ASSERT_TRUE(nets.ok()) << nets.error().message;
    std::set<std::string> netNames, activeBridges, activeTables;
    std::set<pid_t> activeDnsmasq;
    for (const auto& n : *nets) {
      std::string name = str(n, "name");
      netNames.insert(name);
      auto it = w.networks.find(name);
      EXPECT_TRUE(it != w.networks.end() && it->second != Known::absent) << "network nobody made: " << name;
      if (str(n, "state") != "active") continue;
      activeBridges.insert(str(n, "bridge"));
      activeTables.insert("vmm-net-" + name);
      const json* rt = jsonMember(n, "runtime");
      const json* pid = rt ? jsonMember(*rt, "dnsmasq_pid") : nullptr;
      ASSERT_TRUE(pid && pid->is_number_integer()) << n.dump();
      activeDnsmasq.insert(pid->get<pid_t>());
      EXPECT_TRUE(processRunning(pid->get<pid_t>())) << "active network without its dnsmasq: " << name;
    }
    for (const auto& [name, k] : w.networks) {
      expectAgrees(k, netNames.count(name) > 0, "network " + name);
    }
    auto links = testutil::hostCommand({"ip", "-j", "link", "show"});
    ASSERT_EQ(links.exitCode, 0) << links.err;
    std::set<std::string> bridges;
    for (const auto& l : json::parse(links.out, nullptr, false)) {
      std::string name = str(l, "ifname");
      if (startsWith(name, "vmmtor")) bridges.insert(name);
    }
    EXPECT_EQ(bridges, activeBridges) << "bridges on the host vs active networks";
    auto tables = testutil::hostCommand({"nft", "-j", "list", "tables"});
    ASSERT_EQ(tables.exitCode, 0) << tables.err;
    std::set<std::string> vmmTables;
    const json parsed = json::parse(tables.out, nullptr, false);
    if (const json* items = jsonMember(parsed, "nftables"); items && items->is_array())
      for (const auto& t : *items)
        if (const json* tb = jsonMember(t, "table")) {
          std::string name = str(*tb, "name");
          if (startsWith(name, "vmm-net-")) vmmTables.insert(name);
        }
    EXPECT_EQ(vmmTables, activeTables) << "nft tables vs active networks";
    std::set<pid_t> dnsmasq;
    for (const auto& p : ownProcesses()) {
      if (p.argvContains("dnsmasq")) dnsmasq.insert(p.pid);
      else ADD_FAILURE() << "a process of this vmmd that nothing owns: " << p.pid << " " << p.cmdline;
    }
    EXPECT_EQ(dnsmasq, activeDnsmasq) << "dnsmasq processes vs active networks";
  }

  std::unique_ptr<VmmdProcess> vmmd;
  std::map<std::string, std::string> poolDirs;
  std::set<std::string> imageVolumes;
};

TEST_F(Torture, RandomOperationsSurviveSigkillAtRandomMoments) {
  int rounds = gRounds > 0 ? gRounds : static_cast<int>(parseInt(std::getenv("VMM_TORTURE_ROUNDS") ? std::getenv("VMM_TORTURE_ROUNDS") : "12").value_or(12));
  uint64_t seed = gSeed ? gSeed : static_cast<uint64_t>(std::random_device{}()) << 32 | std::random_device{}();
  std::cerr << "torture: " << rounds << " rounds, seed " << seed << " (rerun: --rounds " << rounds << " --seed " << seed << ")\n";
  std::mt19937_64 rng(seed);
  World w;
  int killedInFlight = 0;
  auto t0 = SteadyClock::now();
  for (int round = 1; round <= rounds && !HasFatalFailure(); ++round) {
    std::atomic<bool> stop{false};
    std::atomic<bool> inFlight{false};
    uint64_t opSeed = rng();
    World* world = &w;
    std::thread driver([&, opSeed, world] {
      std::mt19937_64 local(opSeed);
      auto c = vmmd->connect();
      if (!c.ok()) return;
      while (!stop) {
        inFlight = true;
        bool alive = step(**c, local, *world);
        inFlight = false;
        if (!alive) return;
      }
    });
    // Kill at a random moment: 20 ms to 600 ms into the round.
    std::this_thread::sleep_for(Millis(20 + static_cast<int64_t>(rng() % 580)));
    killedInFlight += inFlight ? 1 : 0;
    vmmd->kill9();
    stop = true;
    driver.join();
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log().substr(vmmd->log().size() > 20000 ? vmmd->log().size() - 20000 : 0);
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok()) << c.error().message;
    checkWhole(**c, w, round);
    if (HasFailure()) {
      std::string log = vmmd->log();
      std::cerr << "---- vmmd log (tail) ----\n" << log.substr(log.size() > 30000 ? log.size() - 30000 : 0) << "\n";
      break;
    }
  }
  // At the end every launch has expired: nothing of them may be left.
  auto c = vmmd->connect();
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 50 && !w.launches.empty(); ++i) {
    std::this_thread::sleep_for(Millis(100));
    auto now = SteadyClock::now();
    bool pending = false;
    for (const auto& [name, l] : w.launches) pending = pending || now <= l.expires + Millis(3000);
    if (!pending) break;
  }
  std::this_thread::sleep_for(Millis(3000));
  checkWhole(**c, w, rounds + 1, true);
  EXPECT_TRUE(w.launches.empty()) << "launches left: " << w.launches.size();
  auto secs = std::chrono::duration_cast<Millis>(SteadyClock::now() - t0).count() / 1000.0;
  std::cerr << "torture: " << rounds << " rounds in " << secs << " s; " << w.acknowledged << " changes acknowledged, "
            << w.refused << " refused, " << w.interrupted << " interrupted by the kill; killed with a call in flight "
            << killedInFlight << " times; violations: " << (HasFailure() ? "see above" : "0") << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rounds") gRounds = static_cast<int>(parseInt(argv[i + 1]).value_or(0));
    if (a == "--seed") gSeed = static_cast<uint64_t>(parseInt(argv[i + 1]).value_or(0));
  }
  return vmm::testutil::runTestsInPrivateNetworkNamespace(argc, argv, "network namespaces, bridges, nftables, dnsmasq");
}
