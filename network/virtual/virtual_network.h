// The host side of a virtual network (model::Network): its bridge, gateway address, forwarding,
// nftables table and dnsmasq. A library the daemon's network service calls from the network's
// job; functions here take no locks and are safe to call for different networks concurrently
// (they touch only that network's bridge, table, dnsmasq and state directory, plus the shared
// forwarding switches, see forwarding.h: callers serialise start/stop of networks that share them).
//
// nat/routed/isolated: vmm creates the bridge (STP off, forward delay 0, so the first DHCP of
// a new port works), its MTU and gateway address, a table "vmm-net-<name>" (family ip) whose
// forward chain lets only this bridge's traffic through (nat: new connections out, replies in;
// routed: both ways to the uplink; isolated: nothing) plus masquerade for nat, and dnsmasq when
// the network has DHCP.
// bridge: attaches to an existing host bridge; nothing is created.
//
// br_netfilter: net.bridge.bridge-nf-call-iptables is one switch per network namespace (the
// per-bridge nf_call_iptables can only add to it), so vmm leaves it alone: other bridges on the
// host may rely on it. Instead the table's first rule accepts bridge-to-bridge frames (which,
// with the switch on, pass the forward hook with the bridge as input and output), so guests on
// one network always reach each other as far as vmm's rules go.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/json_reader.h"
#include "model/net_addr.h"
#include "model/network.h"
#include "network/virtual/dnsmasq.h"
#include "network/virtual/forwarding.h"

namespace vmm::net {

// Everything needed to undo startNetwork, persisted by the daemon so that it can stop a network
// after a vmmd restart.
struct NetworkRuntime {
  std::string network;          // the network's name
  model::NetworkMode mode = model::NetworkMode::nat;
  std::string bridge;
  bool createdBridge = false;   // vmm created it: stop deletes it
  pid_t dnsmasqPid = 0;         // 0: no dnsmasq
  uint64_t dnsmasqStartTime = 0;
  std::string stateDir;         // leases, pid file, hosts file, dnsmasq log
  std::string nftTable;         // empty: none
  std::vector<SysctlChange> sysctls;  // in the order applied

  bool forwardingChanged() const;
  std::string leaseFile() const { return stateDir + "/dnsmasq.leases"; }
  std::string hostsFile() const { return stateDir + "/dnsmasq.hosts"; }
  std::string pidFile() const { return stateDir + "/dnsmasq.pid"; }
  std::string logFile() const { return stateDir + "/dnsmasq.log"; }

  model::json toJson() const;
  static Result<NetworkRuntime> fromJson(const model::json& j);
};

struct NetworkOptions {
  // dnsmasq to run ("dnsmasq" from PATH). A fault-injection seam for tests.
  std::string dnsmasqBinary = "dnsmasq";
  // The runtimes of the other running vmm networks: their forwarding changes are shared
  // (see forwarding.h).
  std::vector<NetworkRuntime> running;
};

// The bridge a network uses: its `bridge`, or "vmmbr" + 8 hex digits derived from its name.
std::string effectiveBridgeName(const model::Network& network);

// Checks the network against the host as it is now: the bridge name is free (nat/routed/
// isolated) or an existing bridge (bridge), the uplink exists, and no host interface has an
// address in the network's subnet. Changes nothing.
Status validateNetworkAgainstHost(const model::Network& network);

// The dnsmasq a network with DHCP on `subnet` (its gateway address with prefix) gets from
// startNetwork; its static hosts are added when it starts.
DnsmasqConfig dnsmasqConfigFor(const model::Network& network, const model::Cidr& subnet, const NetworkRuntime& runtime,
                               const std::string& binary);

// startNetwork's first step: creates `bridge` (STP off, forward delay 0, the network's MTU),
// gives it the gateway address `subnet` when there is one and sets it up. A failure after the
// bridge exists deletes it again.
Status createNetworkBridge(const model::Network& network, const std::string& bridge, const std::optional<model::Cidr>& subnet,
                           Deadline deadline);

// Sets the network up. On failure everything done so far is undone (no bridge, no table, no
// dnsmasq, forwarding as before). `stateDir` is created if missing and kept.
Result<NetworkRuntime> startNetwork(const model::Network& network, const std::string& stateDir, Deadline deadline,
                                    const NetworkOptions& options = {});
// Undoes startNetwork from its runtime record. Idempotent and tolerant of pieces already gone
// (after a crash or reboot); it carries on past a failed step and returns the first error.
Status stopNetwork(const model::Network& network, const NetworkRuntime& runtime, Deadline deadline,
                   const NetworkOptions& options = {});

// Removes what a startNetwork that never returned (vmmd killed during it) may have made: the
// network's bridge and the dnsmasq its pid file names when that process runs with this
// network's files. Forwarding changes are not known and stay; the nftables table is left to
// the caller's sweep of tables no running network owns.
Status cleanUpInterruptedStart(const model::Network& network, const std::string& stateDir, Deadline deadline);

// Creates the network's nftables table again from its definition, for a network whose host side
// is intact but whose table is gone (a ruleset flushed while vmmd was down). The caller checks
// that the table is missing.
Status restoreNetworkTable(const model::Network& network, const NetworkRuntime& runtime, Deadline deadline);

Result<std::vector<Lease>> networkLeases(const NetworkRuntime& runtime);
// Applies a new list of static DHCP hosts to a running network (dnsmasq re-reads its hosts file).
Status updateDhcpHosts(const NetworkRuntime& runtime, const std::vector<model::DhcpHost>& hosts);

}  // namespace vmm::net
