// Per-NIC port profiles: VLAN, bandwidth, ACL, anti-spoofing, isolation and mirroring applied to
// the host side of a guest NIC (a tap or veth that is a bridge port).
//
// What is used on the host (this kernel has no police/sfq/matchall/flower, no 802.1Q on most
// test machines, and no bridge conntrack):
//   - ACL + spoofCheck: one nft bridge-family table per port, "vmm_port_<ifname>" (see
//     nft_port_rules.h for the exact rule semantics, which are STATELESS).
//   - VLAN: bridge VLAN filtering where the kernel has it, else per-bridge nft port sets
//     ("vmm_vlan_<bridge>", see vlan.h; in that fallback nothing is tagged: a trunk port sees
//     the union of its VLANs' traffic untagged).
//   - inbound (towards the guest = egress of the port): tbf root qdisc on the port.
//   - outbound (from the guest = ingress of the port): clsact + u32 match-all + mirred redirect
//     to a per-port ifb device (name: ifbNameFor(ifname)) carrying a tbf root qdisc.
//   - mirrorTo: u32 match-all + mirred egress mirror on ingress and egress of the port.
//   - isolated: the bridge port flag (brport/isolated).
//
// Thread-safety: functions for different ports may run concurrently. Edits of one bridge's
// VLAN table are serialised inside this module (a short local lock around one nft call).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/domain.h"

namespace vmm::net {

struct PortSpec {
  std::string ifname;  // host side of the NIC (tap/veth), at most 15 of [A-Za-z0-9_.-]
  std::string bridge;  // the bridge it is a port of (needed for vlan/isolated)
  std::string mac;     // the guest's MAC (needed for spoofCheck)
  model::PortProfile profile;
};

// Applies the whole profile or nothing: on any failure every step already made is undone.
// Whatever the port had before (a previous profile) is replaced. Bad input (VLAN 0/4095, an
// unknown mirror device, a bad CIDR, ...) is rejected before anything is touched.
// An empty profile is a no-op.
Status applyPort(const PortSpec& spec, Deadline deadline);

// Removes everything applyPort may have made for spec.ifname (nft table, VLAN membership, tc
// qdiscs, ifb device, isolated flag). Idempotent; fine when the link is already gone.
Status removePort(const PortSpec& spec, Deadline deadline);

struct PortCounters {
  uint64_t bytes = 0, packets = 0, drops = 0;
};
struct RuleCounter {
  std::string rule;  // "acl 0", "acl 1", ... (index in profile.acl) or "spoof"
  uint64_t packets = 0, bytes = 0;
};
struct PortStats {
  PortCounters fromGuest;  // the port's rx counters (what the guest sent)
  PortCounters toGuest;    // the port's tx counters (what the guest was sent)
  std::vector<RuleCounter> rules;  // matches of ACL rules and frames dropped by spoofCheck
};

// Link counters from sysfs plus the nft counters of the port's table (when it has one).
Result<PortStats> portStats(const std::string& ifname, Deadline deadline);

// vmm-owned leftovers whose port or bridge no longer exists: nft tables ("bridge vmm_port_X",
// "bridge vmm_vlan_BR"), VLAN set members of gone ports, ifb devices of gone ports.
// Returned as human-readable descriptions ("nft table bridge vmm_port_vm1", "ifb vivm1").
Result<std::vector<std::string>> orphanPortState(Deadline deadline);
// Removes what orphanPortState() reports. For vmmd start-up, before domains are started.
Status cleanupOrphanPortState(Deadline deadline);

// Deterministic per-port ifb device name ("vi" + ifname, or "vh" + hash for long names).
std::string ifbNameFor(const std::string& ifname);

}  // namespace vmm::net
