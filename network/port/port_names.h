// Names of the host objects that belong to one port: nft tables/chains and the ifb device.
// Deterministic, so removal and orphan cleanup find them from the interface name alone.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm::net {

// Interface names vmm manages: 1..15 characters of [A-Za-z0-9_.-].
Status checkIfname(std::string_view name, std::string_view what);

// An interface name as an nft identifier: letters and digits kept, anything else "_xx" (hex).
std::string nftEncode(std::string_view name);
std::optional<std::string> nftDecode(std::string_view encoded);

inline constexpr std::string_view kPortTablePrefix = "vmm_port_";
inline constexpr std::string_view kVlanTablePrefix = "vmm_vlan_";
std::string portTableName(std::string_view ifname);   // "vmm_port_<enc>"
std::string vlanTableName(std::string_view bridge);   // "vmm_vlan_<enc>"

// The alias written on a port's ifb device, "vmm-port:<ifname>", so orphans can be traced.
inline constexpr std::string_view kIfbAliasPrefix = "vmm-port:";

}  // namespace vmm::net
