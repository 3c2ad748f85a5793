// The per-port nft table (bridge family) implementing a profile's ACL and spoofCheck.
//
// Table "vmm_port_<ifname>": chain from_guest (frames the guest sends) and to_guest (frames sent
// to it), jumped to from the bridge forward hook (guest <-> other ports), input hook (guest ->
// the host itself) and output hook (host -> guest). A drop anywhere is final; accept only ends
// this table (VLAN separation in its own table still applies).
//
// spoofCheck (first, in from_guest): source MAC (Ethernet and ARP sender) must be spec.mac; with
// IPv4 allowedIps the IPv4 source and ARP sender IP must be in them (0.0.0.0 is allowed only for
// DHCP-style broadcasts to 255.255.255.255 and ARP probes); with IPv6 allowedIps the IPv6 source
// must be in them or link-local/unspecified. No IPv4 allowedIps: only the MAC is checked.
// Entries may be addresses or CIDRs.
//
// ACL rules, STATELESS (the bridge has no conntrack, so no `ct state`): rules are evaluated in
// order, the first match decides, default allow. `direction` names who opens a conversation
// ("out": the guest, "in": the remote side, "both": either). Because nothing tracks connections,
// each rule also matches the packets flowing back:
//   - tcp/udp with a port range: the opening direction matches destination port in range, the
//     reply direction source port in range (tcp: and not a bare SYN, so a remote cannot open a
//     connection just by using the service port as its source port; udp has no such guard).
//     So "allow tcp out 80" + "deny any" lets the guest talk to remote port 80 and get answers.
//   - rules without ports match both directions (remote as destination from the guest, as
//     source towards it), so "direction" does not matter for them.
//   - protocol "any" means any IPv4/IPv6 packet; ARP is only matched by protocol "arp" rules (so
//     "deny any" does not break address resolution). remote: IPv4 or IPv6 CIDR; icmp implies
//     IPv4, icmpv6 IPv6; ports only with tcp/udp (1..65535).
// Each ACL rule's nft rules carry `comment "acl N"` and a counter, spoof rules "spoof".
#pragma once

#include <string>

#include "base/result.h"
#include "network/port/port_profile.h"

namespace vmm::net {

// True when the profile needs a per-port table (ACL rules or spoofCheck).
bool needsPortTable(const model::PortProfile& profile);

// The nft script that (re)creates the port's table, replacing any previous one atomically.
// Fails with invalid-argument on bad ACL rules, CIDRs or MAC, without side effects.
Result<std::string> renderPortTable(const PortSpec& spec);

// Validates the ACL / spoof part of a profile (what renderPortTable checks).
Status checkAclAndSpoof(const PortSpec& spec);

// "52:54:00:AA:bb:cc" -> "52:54:00:aa:bb:cc"; error when not six hex octets.
Result<std::string> normalizeMac(const std::string& mac);

}  // namespace vmm::net
