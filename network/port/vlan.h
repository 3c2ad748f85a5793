// VLAN membership of bridge ports.
//
// Two methods, chosen per host by detectVlanMethod():
//   "bridge-vlan-filtering": the kernel's 802.1Q bridge (vlan_filtering 1 + `bridge vlan`):
//     access = pvid untagged; trunk = tagged tags (+ native as pvid untagged).
//   "nft-port-sets" (kernels without 802.1Q, like this one): a per-bridge nft bridge table
//     "vmm_vlan_<bridge>" with one set of ports per VLAN ("v10"), a set "members" of every port
//     with a VLAN, and a chain per port ("port_<ifname>") reached through a verdict map from the
//     forward hook: a frame from a port may only leave through ports sharing one of its VLANs.
//     Ports without a VLAN profile behave as VLAN 1 (the kernel's default pvid).
//     LIMITATIONS: nothing is tagged or untagged - a trunk port sees the union of its VLANs'
//     traffic as plain untagged frames and cannot tell them apart; the bridge device itself
//     (the host: gateway, DHCP) is reachable from every VLAN; separation is by port only.
//     The table is deleted with its last member.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/domain.h"
#include "network/port/port_profile.h"

namespace vmm::net {

enum class VlanMethod { bridgeVlanFiltering, nftPortSets };
std::string_view vlanMethodName(VlanMethod method);

// Probes once on a scratch bridge whether vlan_filtering and `bridge vlan add` work; the answer
// is cached for the process (a failed probe, e.g. a timeout, is not cached).
Result<VlanMethod> detectVlanMethod(Deadline deadline);

// IDs 1..4094; access needs a tag, trunk at least one tag.
Status checkVlan(const model::Vlan& vlan);
// The VLANs a port belongs to (access: its tag; trunk: its tags plus the native one).
std::set<int> vlanMembership(const model::Vlan& vlan);

Status addPortVlan(VlanMethod method, const PortSpec& spec, Deadline deadline);
// Takes the port out of whatever VLAN state it has on spec.bridge; fine when none.
Status removePortVlan(const PortSpec& spec, Deadline deadline);

// nft-port-sets leftovers: tables of gone bridges, members that are gone or left the bridge.
Result<std::vector<std::string>> orphanVlanState(bool remove, Deadline deadline);

}  // namespace vmm::net
