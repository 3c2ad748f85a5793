// Small sysfs reads/writes about one link (/sys/class/net/<ifname>/...). Synchronous, no tools.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"

namespace vmm::net {

// The bridge `ifname` is a port of, or "" when it is none (or does not exist).
std::string bridgeOf(const std::string& ifname);
// statistics/<name> (rx_bytes, tx_packets, ...); nullopt when unreadable.
std::optional<uint64_t> linkStatistic(const std::string& ifname, const std::string& name);
// brport/<flag> = 0|1 (isolated, ...).
Status setBridgePortFlag(const std::string& ifname, const std::string& flag, bool on);
std::optional<bool> bridgePortFlag(const std::string& ifname, const std::string& flag);
// ifalias ("" when none or unreadable).
std::string linkAlias(const std::string& ifname);

}  // namespace vmm::net
