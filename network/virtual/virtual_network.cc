#include "network/virtual/virtual_network.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <limits>
#include <optional>

#include "base/fs.h"
#include "base/log.h"
#include "base/process.h"
#include "base/reverter.h"
#include "base/strings.h"
#include "model/net_addr.h"
#include "network/link.h"
#include "network/virtual/nftables.h"

namespace vmm::net {

using model::NetworkMode;

namespace {

bool createsBridge(NetworkMode mode) { return mode != NetworkMode::bridge; }
bool forwards(NetworkMode mode) { return mode == NetworkMode::nat || mode == NetworkMode::routed; }

Status runIp(const std::vector<std::string>& args, Deadline deadline, const std::string& stdinData = "") {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions opts;
  opts.deadline = deadline;
  opts.stdinData = stdinData;
  VMM_ASSIGN(auto res, runCommand(argv, opts));
  if (!res.success()) return internalError(join(argv, " ") + ": " + res.describe());
  return {};
}

Status deleteBridge(const std::string& name, Deadline deadline) {
  if (!linkExists(name)) return {};
  if (!isBridge(name)) return conflict("interface " + name + " is no longer a bridge; left alone");
  auto st = runIp({"link", "del", "dev", name}, deadline);
  if (!st.ok() && linkExists(name)) return st;
  return {};
}

struct HostAddress {
  std::string interface;
  model::Cidr cidr;
};

Result<std::vector<HostAddress>> hostIpv4Addresses() {
  std::vector<HostAddress> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return systemError("listing the host's addresses", errno);
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !a->ifa_netmask) continue;
    uint32_t addr = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
    uint32_t mask = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_netmask)->sin_addr.s_addr);
    HostAddress h;
    h.interface = a->ifa_name;
    h.cidr.address = model::IpAddress::fromV4(addr);
    h.cidr.prefix = __builtin_popcount(mask);
    out.push_back(h);
  }
  ::freeifaddrs(list);
  return out;
}

nft::NetworkRules rulesFor(const model::Network& n, const std::string& bridge, const std::optional<model::Cidr>& subnet) {
  nft::NetworkRules rules;
  rules.table = nft::tableNameFor(n.name);
  rules.mode = n.mode;
  rules.bridge = bridge;
  rules.uplink = n.uplink;
  if (subnet) rules.subnet = subnet->network().toString() + "/" + std::to_string(subnet->prefix);
  return rules;
}

std::vector<SysctlChange> otherChanges(const NetworkOptions& options, const std::string& self) {
  std::vector<SysctlChange> out;
  for (const auto& rt : options.running)
    if (rt.network != self) out.insert(out.end(), rt.sysctls.begin(), rt.sysctls.end());
  return out;
}

}  // namespace

bool NetworkRuntime::forwardingChanged() const {
  for (const auto& c : sysctls)
    if (c.previous != c.applied) return true;
  return false;
}

model::json NetworkRuntime::toJson() const {
  model::json changes = model::json::array();
  for (const auto& c : sysctls) changes.push_back({{"path", c.path}, {"previous", c.previous}, {"applied", c.applied}});
  return {{"network", network},
          {"mode", model::enumName(model::kNetworkModes, mode)},
          {"bridge", bridge},
          {"created_bridge", createdBridge},
          {"dnsmasq_pid", dnsmasqPid},
          {"dnsmasq_start_time", dnsmasqStartTime},
          {"state_dir", stateDir},
          {"nft_table", nftTable},
          {"sysctls", changes}};
}

Result<NetworkRuntime> NetworkRuntime::fromJson(const model::json& j) {
  if (!j.is_object()) return invalidArgument("network runtime: not a JSON object");
  NetworkRuntime rt;
  try {
    rt.network = j.at("network").get<std::string>();
    auto mode = model::enumFromName(model::kNetworkModes, j.at("mode").get<std::string>());
    if (!mode) return invalidArgument("network runtime: unknown mode");
    rt.mode = *mode;
    rt.bridge = j.at("bridge").get<std::string>();
    rt.createdBridge = j.at("created_bridge").get<bool>();
    rt.dnsmasqPid = j.at("dnsmasq_pid").get<pid_t>();
    rt.dnsmasqStartTime = j.value("dnsmasq_start_time", uint64_t{0});
    rt.stateDir = j.at("state_dir").get<std::string>();
    rt.nftTable = j.value("nft_table", std::string());
    for (const auto& c : j.value("sysctls", model::json::array()))
      rt.sysctls.push_back({c.at("path").get<std::string>(), c.at("previous").get<std::string>(), c.at("applied").get<std::string>()});
  } catch (const model::json::exception& e) {
    return invalidArgument(std::string("network runtime: ") + e.what());
  }
  if (!rt.nftTable.empty() && !startsWith(rt.nftTable, nft::kOwnedTablePrefix))
    return invalidArgument("network runtime: table " + quote(rt.nftTable) + " is not a vmm table");
  for (const auto& c : rt.sysctls)
    if (!startsWith(c.path, "/proc/sys/net/ipv4/")) return invalidArgument("network runtime: unexpected sysctl " + quote(c.path));
  return rt;
}

std::string effectiveBridgeName(const model::Network& n) {
  if (!n.bridge.empty()) return n.bridge;
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : n.name) h = (h ^ c) * 16777619u;
  char buf[16];
  std::snprintf(buf, sizeof buf, "vmmbr%08x", h);
  return buf;
}

Status validateNetworkAgainstHost(const model::Network& n) {
  std::string bridge = effectiveBridgeName(n);
  if (n.mode == NetworkMode::bridge) {
    if (!linkExists(bridge)) return notFound("network " + n.name + ": host bridge " + bridge + " does not exist");
    if (!isBridge(bridge)) return invalidArgument("network " + n.name + ": host interface " + bridge + " is not a bridge");
    return {};
  }
  if (linkExists(bridge))
    return conflict("network " + n.name + ": bridge name " + bridge + " is already used by a host interface" +
                    (isBridge(bridge) ? " (an existing bridge; use mode \"bridge\" to attach to it)" : ""));
  if (!n.uplink.empty()) {
    if (n.uplink == bridge) return invalidArgument("network " + n.name + ": the uplink cannot be the network's own bridge");
    if (!linkExists(n.uplink)) return notFound("network " + n.name + ": uplink interface " + n.uplink + " does not exist");
  }
  if (!n.ipv4.empty()) {
    VMM_ASSIGN(auto subnet, model::parseCidr(n.ipv4));
    VMM_ASSIGN(auto addresses, hostIpv4Addresses());
    for (const auto& a : addresses) {
      if (subnet.overlaps(a.cidr))
        return conflict("network " + n.name + ": subnet " + subnet.network().toString() + "/" + std::to_string(subnet.prefix) +
                        " overlaps address " + a.cidr.toString() + " of host interface " + a.interface);
    }
  }
  return {};
}

DnsmasqConfig dnsmasqConfigFor(const model::Network& n, const model::Cidr& subnet, const NetworkRuntime& rt,
                               const std::string& binary) {
  DnsmasqConfig c;
  c.binary = binary;
  c.interface = rt.bridge;
  c.listenAddress = subnet.address.toString();
  c.rangeStart = n.dhcpStart;
  c.rangeEnd = n.dhcpEnd;
  c.netmask = subnet.netmask();
  c.leaseSeconds = n.leaseSeconds;
  c.domain = n.domain;
  c.advertiseRouter = forwards(n.mode);
  c.pidFile = rt.pidFile();
  c.leaseFile = rt.leaseFile();
  c.hostsFile = rt.hostsFile();
  c.logFile = rt.logFile();
  return c;
}

Status createNetworkBridge(const model::Network& n, const std::string& bridge, const std::optional<model::Cidr>& subnet,
                           Deadline deadline) {
  // Created alone first, so a name taken in the meantime fails here and nothing of someone
  // else's is ever deleted by the undo.
  std::vector<std::string> add = {"link", "add", "name", bridge};
  if (n.mtu) add.insert(add.end(), {"mtu", std::to_string(n.mtu)});
  add.insert(add.end(), {"type", "bridge", "stp_state", "0", "forward_delay", "0"});
  VMM_TRY(runIp(add, deadline));
  Reverter revert;
  revert.add([&] { (void)deleteBridge(bridge, Deadline::after(Millis(5000))); });
  std::string batch;
  if (subnet) batch += "addr add " + subnet->toString() + " broadcast + dev " + bridge + "\n";
  batch += "link set dev " + bridge + " up\n";
  VMM_TRY(runIp({"-batch", "-"}, deadline, batch));
  revert.success();
  return {};
}

Result<NetworkRuntime> startNetwork(const model::Network& n, const std::string& stateDir, Deadline deadline,
                                    const NetworkOptions& options) {
  VMM_TRY(validateNetworkAgainstHost(n));
  NetworkRuntime rt;
  rt.network = n.name;
  rt.mode = n.mode;
  rt.bridge = effectiveBridgeName(n);
  rt.stateDir = stateDir;
  if (!createsBridge(n.mode)) return rt;

  std::optional<model::Cidr> subnet;
  if (!n.ipv4.empty()) {
    VMM_ASSIGN(auto c, model::parseCidr(n.ipv4));
    subnet = c;
  }
  VMM_TRY(fs::makeDirs(stateDir, 0755));
  Reverter revert;
  VMM_TRY(createNetworkBridge(n, rt.bridge, subnet, deadline));
  rt.createdBridge = true;
  revert.add([&] { (void)deleteBridge(rt.bridge, Deadline::after(Millis(5000))); });

  // Forwarding: on for this bridge (and its uplink) in nat/routed, off on the bridge otherwise.
  auto others = otherChanges(options, n.name);
  auto apply = [&](const std::string& path, const std::string& value) -> Status {
    VMM_ASSIGN(auto change, applySysctl(path, value, others));
    rt.sysctls.push_back(change);
    revert.add([&rt, change, others] {
      (void)restoreSysctl(change, others);
      rt.sysctls.pop_back();
    });
    return {};
  };
  if (forwards(n.mode)) {
    VMM_TRY(apply(n.uplink.empty() ? std::string(kGlobalForwarding) : interfaceForwardingPath(n.uplink), "1"));
    VMM_TRY(apply(interfaceForwardingPath(rt.bridge), "1"));
  } else {
    VMM_TRY(apply(interfaceForwardingPath(rt.bridge), "0"));
  }

  auto rules = rulesFor(n, rt.bridge, subnet);
  VMM_TRY(nft::createNetworkTable(rules, deadline));
  rt.nftTable = rules.table;
  revert.add([&] { (void)nft::deleteOwnedTable(rt.nftTable, Deadline::after(Millis(5000))); });

  if (n.dhcp && subnet) {
    auto config = dnsmasqConfigFor(n, *subnet, rt, options.dnsmasqBinary);
    VMM_ASSIGN(auto proc, startDnsmasq(config, n.dhcpHosts, deadline));
    rt.dnsmasqPid = proc.pid;
    rt.dnsmasqStartTime = proc.startTime;
  }
  revert.success();
  log::info("network started", {{"network", n.name}, {"bridge", rt.bridge}, {"dnsmasq_pid", static_cast<int64_t>(rt.dnsmasqPid)}});
  return rt;
}

Status stopNetwork(const model::Network& n, const NetworkRuntime& rt, Deadline deadline, const NetworkOptions& options) {
  Status first;
  auto keep = [&](Status st, const char* what) {
    if (!st.ok()) {
      log::warn("network stop step failed", {{"network", rt.network}, {"step", what}, {"error", st.error().message}});
      if (first.ok()) first = st.error().wrap(what);
    }
  };
  if (rt.dnsmasqPid > 0) {
    keep(stopDnsmasq({rt.dnsmasqPid, rt.dnsmasqStartTime}, deadline), "stopping dnsmasq");
    (void)fs::removeFile(rt.pidFile());
  }
  if (!rt.nftTable.empty()) keep(nft::deleteOwnedTable(rt.nftTable, deadline), "deleting the nftables table");
  auto others = otherChanges(options, n.name.empty() ? rt.network : n.name);
  for (auto it = rt.sysctls.rbegin(); it != rt.sysctls.rend(); ++it) keep(restoreSysctl(*it, others), "restoring forwarding");
  if (rt.createdBridge) keep(deleteBridge(rt.bridge, deadline), "deleting the bridge");
  return first;
}

Status cleanUpInterruptedStart(const model::Network& n, const std::string& stateDir, Deadline deadline) {
  if (!createsBridge(n.mode)) return {};
  NetworkRuntime rt;
  rt.network = n.name;
  rt.mode = n.mode;
  rt.bridge = effectiveBridgeName(n);
  rt.stateDir = stateDir;
  if (auto text = fs::readFile(rt.pidFile(), 64); text.ok()) {
    auto pid = parseInt(trim(*text));
    if (pid && *pid > 0 && *pid <= std::numeric_limits<pid_t>::max()) {
      auto p = static_cast<pid_t>(*pid);
      std::string cmdline = fs::readFile("/proc/" + std::to_string(p) + "/cmdline", 1 << 16).valueOr("");
      if (cmdline.find(stateDir + "/") != std::string::npos) {  // a reused pid belongs to someone else
        rt.dnsmasqPid = p;
        rt.dnsmasqStartTime = processStartTime(p).value_or(0);
      }
    }
  }
  // The bridge's name was free when this start checked it (validateNetworkAgainstHost).
  rt.createdBridge = linkExists(rt.bridge);
  if (rt.dnsmasqPid == 0 && !rt.createdBridge) return {};
  log::warn("removing what an interrupted network start left", {{"network", n.name}, {"bridge", rt.createdBridge ? rt.bridge : ""},
                                                                 {"dnsmasq_pid", static_cast<int64_t>(rt.dnsmasqPid)}});
  return stopNetwork(n, rt, deadline, {});
}

Status restoreNetworkTable(const model::Network& n, const NetworkRuntime& rt, Deadline deadline) {
  if (rt.nftTable.empty()) return {};
  std::optional<model::Cidr> subnet;
  if (!n.ipv4.empty()) {
    VMM_ASSIGN(auto c, model::parseCidr(n.ipv4));
    subnet = c;
  }
  auto rules = rulesFor(n, rt.bridge, subnet);
  if (rules.table != rt.nftTable) return invalidArgument("network " + n.name + ": runtime table " + quote(rt.nftTable) + " is not its table");
  return nft::createNetworkTable(rules, deadline);
}

Result<std::vector<Lease>> networkLeases(const NetworkRuntime& rt) {
  if (rt.dnsmasqPid <= 0) return std::vector<Lease>{};
  return readLeases(rt.leaseFile());
}

Status updateDhcpHosts(const NetworkRuntime& rt, const std::vector<model::DhcpHost>& hosts) {
  if (rt.dnsmasqPid <= 0) return unsupported("network " + rt.network + " has no DHCP server");
  return reloadDhcpHosts({rt.dnsmasqPid, rt.dnsmasqStartTime}, rt.hostsFile(), hosts);
}

}  // namespace vmm::net
