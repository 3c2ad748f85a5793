#include "daemon/network_service.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <set>

#include "base/json_util.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/log_cap.h"
#include "base/process.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "model/net_addr.h"
#include "network/link.h"
#include "network/port/vlan.h"
#include "network/virtual/nftables.h"

namespace vmm {

using json = nlohmann::json;

json formatNetworkView(const NetworkView& v) {
  json j = model::formatNetwork(v.def);
  j["state"] = v.active ? "active" : "inactive";
  j["bridge"] = v.bridge;
  if (!v.vlanMethod.empty()) j["vlan_method"] = v.vlanMethod;
  if (v.job) j["job"] = *v.job;
  if (v.active) j["runtime"] = v.runtime;
  return j;
}

struct NetworkService::NetworkObject {
  explicit NetworkObject(model::Network d) : name(d.name), def(std::move(d)) {}
  const std::string name;
  Job job;
  mutable Mutex mu;  // guards below; never held across I/O
  model::Network def VMM_GUARDED_BY(mu);
  std::optional<net::NetworkRuntime> runtime VMM_GUARDED_BY(mu);  // set while active
};

NetworkService::NetworkService(StateStore& store, EventBus& events, NetworkServiceOptions options)
    : store_(store), events_(events), options_(std::move(options)) {}

NetworkService::~NetworkService() = default;

namespace {

std::string runtimeKey(const std::string& name) { return "networks/" + name; }

}  // namespace

void NetworkService::publish(const std::string& name, const std::string& event) {
  events_.publish("network", "networks/" + name, {{"network", name}, {"event", event}});
}

Result<std::shared_ptr<NetworkService::NetworkObject>> NetworkService::find(const std::string& name) const {
  auto n = networks_.find(name);
  if (!n) return notFound("network " + quote(name) + " not found");
  return n;
}

Result<JobGuard> NetworkService::acquire(NetworkObject& n, const std::string& what) {
  return n.job.acquire(what, "network " + n.name, Deadline::after(options_.jobWait));
}

NetworkView NetworkService::viewOf(const NetworkObject& n) const {
  NetworkView v;
  v.job = n.job.current();
  v.vlanMethod = vlanMethod_;
  MutexLock lock(n.mu);
  v.def = n.def;
  v.active = n.runtime.has_value();
  v.bridge = n.runtime ? n.runtime->bridge : net::effectiveBridgeName(n.def);
  if (n.runtime) v.runtime = n.runtime->toJson();
  return v;
}

std::vector<net::NetworkRuntime> NetworkService::otherRuntimes(const std::string& except) const {
  std::vector<net::NetworkRuntime> out;
  for (const auto& n : networks_.all()) {
    if (n->name == except) continue;
    MutexLock lock(n->mu);
    if (n->runtime) out.push_back(*n->runtime);
  }
  return out;
}

Status NetworkService::checkAgainstOthers(const model::Network& def) const {
  std::optional<model::Cidr> subnet;
  if (!def.ipv4.empty()) {
    auto c = model::parseCidr(def.ipv4);
    if (c.ok()) subnet = *c;
  }
  std::string bridge = net::effectiveBridgeName(def);
  std::vector<model::Network> others;
  for (const auto& other : networks_.all()) {
    MutexLock lock(other->mu);
    others.push_back(other->def);
  }
  for (const auto& [name, reserved] : creating_) others.push_back(reserved);
  for (const auto& o : others) {
    if (o.name == def.name) continue;
    if (def.mode != model::NetworkMode::bridge && net::effectiveBridgeName(o) == bridge)
      return conflict("bridge " + bridge + " is already used by network " + o.name);
    if (subnet && !o.ipv4.empty()) {
      auto oc = model::parseCidr(o.ipv4);
      if (oc.ok() && subnet->overlaps(*oc))
        return conflict("ipv4: " + def.ipv4 + " overlaps network " + o.name + " (" + o.ipv4 + ")");
    }
  }
  return {};
}

// ---------------------------------------------------------------- start and stop

Status NetworkService::startLocked(NetworkObject& n) {
  model::Network def;
  {
    MutexLock lock(n.mu);
    if (n.runtime) return conflict("network " + n.name + " is already active");
    def = n.def;
  }
  net::NetworkOptions opts;
  opts.dnsmasqBinary = options_.dnsmasqBinary;
  opts.running = otherRuntimes(n.name);
  // The intent first: a vmmd killed during the start finds it and removes what was made.
  VMM_TRY(store_.put(Table::runtime, runtimeKey(n.name), json{{"network", n.name}, {"starting", true}}));
  auto started = net::startNetwork(def, stateDirOf(n.name), ioDeadline(), opts);
  if (!started.ok()) {
    (void)store_.remove(Table::runtime, runtimeKey(n.name));
    return started.error();
  }
  net::NetworkRuntime rt = std::move(*started);
  // Durable before visible: without the record a restarted vmmd could not undo this.
  if (auto st = store_.put(Table::runtime, runtimeKey(n.name), rt.toJson()); !st.ok()) {
    (void)net::stopNetwork(def, rt, ioDeadline(), opts);
    return st;
  }
  MutexLock lock(n.mu);
  n.runtime = std::move(rt);
  return {};
}

Status NetworkService::stopLocked(NetworkObject& n) {
  model::Network def;
  net::NetworkRuntime rt;
  {
    MutexLock lock(n.mu);
    if (!n.runtime) return conflict("network " + n.name + " is not active");
    def = n.def;
    rt = *n.runtime;
  }
  net::NetworkOptions opts;
  opts.dnsmasqBinary = options_.dnsmasqBinary;
  opts.running = otherRuntimes(n.name);
  auto st = net::stopNetwork(def, rt, ioDeadline(), opts);
  if (!st.ok()) log::warn("network stop reported an error", {{"network", n.name}, {"error", st.error().message}});
  VMM_TRY(store_.remove(Table::runtime, runtimeKey(n.name)));
  MutexLock lock(n.mu);
  n.runtime.reset();
  return {};
}

// ---------------------------------------------------------------- load

Result<model::Network> NetworkService::defaultNetwork() {
  // The first private /24 that no host interface or vmm network uses.
  std::vector<model::Cidr> taken;
  struct ifaddrs* ifa = nullptr;
  if (::getifaddrs(&ifa) == 0) {
    for (auto* i = ifa; i; i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask) continue;
      uint32_t addr = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
      uint32_t mask = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr);
      model::Cidr c;
      c.address = model::IpAddress::fromV4(addr);
      c.prefix = __builtin_popcount(mask);
      taken.push_back(c);
    }
    ::freeifaddrs(ifa);
  }
  MutexLock createLock(createMu_);  // checkAgainstOthers reads creating_
  for (int third = 122; third < 250; ++third) {
    std::string gw = "10.100." + std::to_string(third) + ".1/24";
    auto c = model::parseCidr(gw);
    bool free = c.ok();
    for (const auto& t : taken) free = free && !c->overlaps(t);
    if (!free) continue;
    json j = {{"name", "default"}, {"mode", "nat"}, {"bridge", "vmmbr0"}, {"ipv4", gw}, {"dhcp", {{"enabled", true}}}, {"domain", "vmm"}};
    auto def = model::parseNetwork(j);
    if (def.ok() && checkAgainstOthers(*def).ok()) return def;
  }
  return unavailable("no free private /24 for the default network");
}

Status NetworkService::load() {
  // How VLAN port profiles are enforced on this host (kernel 802.1Q bridge filtering, or
  // nftables port sets where the kernel has none): probed once here, never on a request.
  if (auto method = net::detectVlanMethod(Deadline::after(Millis(5000))); method.ok())
    vlanMethod_ = std::string(net::vlanMethodName(*method));
  VMM_ASSIGN(auto rows, store_.loadAll(Table::networks));
  for (const auto& row : rows) {
    auto def = model::parseNetwork(row.value);
    if (!def.ok()) {
      log::error("stored network definition is invalid; skipped", {{"network", row.key}, {"error", def.error().message}});
      continue;
    }
    std::string name = def->name;
    networks_.insert(name, std::make_shared<NetworkObject>(std::move(*def)));
  }
  VMM_ASSIGN(auto runtimes, store_.loadAll(Table::runtime));
  std::set<std::string> liveTables;
  // The vmm tables on the host now: those of running networks are kept (or made again when they
  // are gone), every other one is a leftover of a crash and removed.
  auto tables = net::nft::listOwnedTables(ioDeadline());
  if (!tables.ok()) log::warn("cannot list nftables tables", {{"error", tables.error().message}});
  for (const auto& row : runtimes) {
    if (!startsWith(row.key, "networks/")) continue;
    std::string name = row.key.substr(9);
    auto n = networks_.find(name);
    if (jsonBoolOr(row.value, "starting", false)) {  // vmmd died while starting it
      if (n) {
        model::Network def;
        {
          MutexLock lock(n->mu);
          def = n->def;
        }
        MutexLock host(hostMu_);
        if (auto st = net::cleanUpInterruptedStart(def, stateDirOf(name), ioDeadline()); !st.ok())
          log::error("cannot remove what an interrupted network start left", {{"network", name}, {"error", st.error().message}});
      }
      (void)store_.remove(Table::runtime, row.key);
      continue;
    }
    auto rt = net::NetworkRuntime::fromJson(row.value);
    if (!rt.ok() || !n) {
      (void)store_.remove(Table::runtime, row.key);
      continue;
    }
    model::Network def;
    {
      MutexLock lock(n->mu);
      def = n->def;
    }
    // Still intact (vmmd restarted, the host did not): keep it; otherwise start it afresh.
    bool dnsmasqAlive = rt->dnsmasqPid == 0 || (processRunning(rt->dnsmasqPid) && processStartTime(rt->dnsmasqPid) == rt->dnsmasqStartTime);
    bool intact = net::linkExists(rt->bridge) && dnsmasqAlive;
    if (intact) {
      bool tableGone = tables.ok() && !rt->nftTable.empty() &&
                       std::find(tables->begin(), tables->end(), rt->nftTable) == tables->end();
      if (tableGone) {
        log::warn("network's nftables table vanished while vmmd was down; creating it again", {{"network", name}, {"table", rt->nftTable}});
        if (auto st = net::restoreNetworkTable(def, *rt, ioDeadline()); !st.ok())
          log::error("cannot restore the network's nftables table", {{"network", name}, {"error", st.error().message}});
      }
      MutexLock lock(n->mu);
      n->runtime = *rt;
      if (!rt->nftTable.empty()) liveTables.insert(rt->nftTable);
      continue;
    }
    log::warn("network lost its host side while vmmd was down; restarting it", {{"network", name}});
    MutexLock host(hostMu_);
    (void)net::stopNetwork(def, *rt, ioDeadline(), {});
    (void)store_.remove(Table::runtime, row.key);
  }
  // Tables of networks that no longer run (a crash between start and its record, a table
  // planted by anything else under vmm's prefix).
  if (tables.ok()) {
    for (const auto& t : *tables) {
      bool wanted = liveTables.count(t) > 0;
      if (!wanted) {
        log::info("removing an orphaned network table", {{"table", t}});
        (void)net::nft::deleteOwnedTable(t, ioDeadline());
      }
    }
  }
  if (rows.empty() && options_.createDefault) {
    auto def = defaultNetwork();
    if (def.ok()) {
      auto created = create(*def, false);
      if (!created.ok()) log::warn("cannot define the default network", {{"error", created.error().message}});
    } else {
      log::warn("no default network", {{"error", def.error().message}});
    }
  }
  for (const auto& n : networks_.all()) {
    bool wanted;
    {
      MutexLock lock(n->mu);
      wanted = n->def.autostart && !n->runtime;
    }
    if (!wanted) continue;
    auto started = start(n->name);
    if (!started.ok()) log::warn("network did not start", {{"network", n->name}, {"error", started.error().message}});
  }
  return {};
}

// ---------------------------------------------------------------- API

Result<NetworkView> NetworkService::create(model::Network def, bool startNow) {
  // The name, bridge and subnet are reserved under createMu_; checking the host and writing
  // the definition run without it.
  {
    MutexLock createLock(createMu_);
    if (networks_.find(def.name) || creating_.count(def.name)) return conflict("network " + quote(def.name) + " already exists");
    VMM_TRY(checkAgainstOthers(def));
    creating_.emplace(def.name, def);
  }
  Reverter unreserve;
  unreserve.add([this, name = def.name] {
    MutexLock createLock(createMu_);
    creating_.erase(name);
  });
  VMM_TRY(net::validateNetworkAgainstHost(def));
  VMM_TRY(store_.put(Table::networks, def.name, model::formatNetwork(def)));
  auto obj = std::make_shared<NetworkObject>(def);
  {
    MutexLock createLock(createMu_);
    creating_.erase(def.name);
    networks_.insert(def.name, obj);
  }
  unreserve.success();
  publish(def.name, "defined");
  if (!startNow) return viewOf(*obj);
  auto started = start(def.name);
  if (!started.ok()) {
    // All or nothing: a network that cannot start is not left defined.
    (void)remove(def.name);
    return started.error();
  }
  return started;
}

Result<NetworkView> NetworkService::get(const std::string& name) const {
  VMM_ASSIGN(auto n, find(name));
  return viewOf(*n);
}

void NetworkService::maintain() {
  std::vector<std::string> logs;
  for (const auto& n : networks_.all()) {
    MutexLock lock(n->mu);
    if (n->runtime) logs.push_back(n->runtime->logFile());
  }
  for (const auto& path : logs)
    if (auto cut = capLogFile(path, kDnsmasqLogLimit); !cut.ok())
      log::warn("cannot keep the dnsmasq log under its size", {{"path", path}, {"error", cut.error().message}});
}

std::vector<NetworkView> NetworkService::list() const {
  std::vector<NetworkView> out;
  for (const auto& n : networks_.all()) out.push_back(viewOf(*n));
  return out;
}

Result<NetworkView> NetworkService::start(const std::string& name) {
  VMM_ASSIGN(auto n, find(name));
  VMM_ASSIGN(auto guard, acquire(*n, "start"));
  {
    MutexLock host(hostMu_);
    VMM_TRY(startLocked(*n));
  }
  publish(name, "started");
  return viewOf(*n);
}

Result<NetworkView> NetworkService::stop(const std::string& name, bool force) {
  VMM_ASSIGN(auto n, find(name));
  VMM_ASSIGN(auto guard, acquire(*n, "stop"));
  if (!force && users_) {
    auto u = users_(name);
    if (!u.running.empty())
      return conflict("network " + name + " is used by running domain " + join(u.running, ", ") + " (force stops it anyway)");
  }
  {
    MutexLock host(hostMu_);
    VMM_TRY(stopLocked(*n));
  }
  publish(name, "stopped");
  return viewOf(*n);
}

Status NetworkService::remove(const std::string& name) {
  VMM_ASSIGN(auto n, find(name));
  VMM_ASSIGN(auto guard, acquire(*n, "delete"));
  if (users_) {
    auto u = users_(name);
    if (!u.domains.empty()) return conflict("network " + name + " is used by domain " + join(u.domains, ", "));
  }
  bool active;
  {
    MutexLock lock(n->mu);
    active = n->runtime.has_value();
  }
  if (active) {
    MutexLock host(hostMu_);
    VMM_TRY(stopLocked(*n));
  }
  VMM_TRY(store_.remove(Table::networks, name));
  networks_.erase(name);
  (void)fs::removeTree(stateDirOf(name));
  publish(name, "deleted");
  return {};
}

Result<std::vector<net::Lease>> NetworkService::leases(const std::string& name) const {
  VMM_ASSIGN(auto n, find(name));
  std::optional<net::NetworkRuntime> rt;
  {
    MutexLock lock(n->mu);
    rt = n->runtime;
  }
  if (!rt) return conflict("network " + name + " is not active");
  return net::networkLeases(*rt);
}

Result<std::string> NetworkService::bridgeFor(const std::string& network) const {
  VMM_ASSIGN(auto n, find(network));
  MutexLock lock(n->mu);
  if (!n->runtime) return conflict("network " + network + " is not active; start it first");
  return n->runtime->bridge;
}

}  // namespace vmm
