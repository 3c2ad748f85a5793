// Virtual networks: a bridge with an optional subnet, DHCP/DNS and an uplink policy.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::model {

enum class NetworkMode { nat, routed, isolated, bridge };
extern const EnumTable<NetworkMode> kNetworkModes;

struct DhcpHost {
  std::string mac;
  std::string ip;
  std::string name;
};

struct Network {
  std::string name;
  std::string uuid;
  NetworkMode mode = NetworkMode::nat;
  std::string bridge;   // created by vmm (nat/routed/isolated) or an existing host bridge (bridge)
  int mtu = 0;          // 0 = kernel default
  std::string ipv4;     // gateway address with prefix: "10.70.0.1/24"; empty = no L3
  bool dhcp = true;
  std::string dhcpStart, dhcpEnd;  // default: the upper half of the subnet
  std::vector<DhcpHost> dhcpHosts;
  int leaseSeconds = 3600;
  std::string domain;   // DNS domain served by dnsmasq
  std::string uplink;   // nat/routed: outgoing interface; empty = any
  bool autostart = true;
  std::map<std::string, std::string> labels;
};

Result<Network> parseNetwork(const json& j);
json formatNetwork(const Network& n);

}  // namespace vmm::model
