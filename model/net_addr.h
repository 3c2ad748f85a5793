// IPv4/IPv6 addresses and CIDR prefixes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm::model {

struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // v4 uses the first 4
  std::string toString() const;
  uint32_t v4() const { return (uint32_t(bytes[0]) << 24) | (uint32_t(bytes[1]) << 16) | (uint32_t(bytes[2]) << 8) | bytes[3]; }
  static IpAddress fromV4(uint32_t v);
  bool operator==(const IpAddress& o) const { return v6 == o.v6 && bytes == o.bytes; }
};

struct Cidr {
  IpAddress address;
  int prefix = 0;
  std::string toString() const;
  IpAddress network() const;      // address with host bits cleared
  IpAddress broadcast() const;    // v4 only
  bool contains(const IpAddress& a) const;
  bool overlaps(const Cidr& other) const;
  std::string netmask() const;    // v4 dotted mask
};

Result<IpAddress> parseIp(std::string_view text);
// "10.0.0.1/24"; a bare address is a /32 (or /128).
Result<Cidr> parseCidr(std::string_view text);

}  // namespace vmm::model
