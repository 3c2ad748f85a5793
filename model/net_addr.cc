#include "model/net_addr.h"

#include <arpa/inet.h>

#include "base/strings.h"

namespace vmm::model {

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

IpAddress IpAddress::fromV4(uint32_t v) {
  IpAddress a;
  a.bytes[0] = static_cast<uint8_t>(v >> 24);
  a.bytes[1] = static_cast<uint8_t>(v >> 16);
  a.bytes[2] = static_cast<uint8_t>(v >> 8);
  a.bytes[3] = static_cast<uint8_t>(v);
  return a;
}

Result<IpAddress> parseIp(std::string_view text) {
  // inet_pton reads a C string: a NUL inside `text` would end it early and hide what follows.
  if (text.find('\0') != std::string_view::npos) return invalidArgument("invalid IP address " + quote(text));
  std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return invalidArgument("invalid IP address " + quote(text));
}

Result<Cidr> parseCidr(std::string_view text) {
  auto slash = text.find('/');
  VMM_ASSIGN(auto addr, parseIp(text.substr(0, slash)));
  Cidr c;
  c.address = addr;
  int max = addr.v6 ? 128 : 32;
  c.prefix = max;
  if (slash != std::string_view::npos) {
    auto p = parseInt(text.substr(slash + 1));
    if (!p || *p < 0 || *p > max) return invalidArgument("invalid prefix length in " + quote(text));
    c.prefix = static_cast<int>(*p);
  }
  return c;
}

std::string Cidr::toString() const { return address.toString() + "/" + std::to_string(prefix); }

IpAddress Cidr::network() const {
  IpAddress n = address;
  int bits = prefix;
  for (size_t i = 0; i < 16; ++i) {
    if (bits >= 8) {
      bits -= 8;
      continue;
    }
    n.bytes[i] = static_cast<uint8_t>(bits == 0 ? 0 : n.bytes[i] & (0xff << (8 - bits)));
    bits = 0;
  }
  return n;
}

IpAddress Cidr::broadcast() const {
  uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
  return IpAddress::fromV4((address.v4() & mask) | ~mask);
}

bool Cidr::contains(const IpAddress& a) const {
  if (a.v6 != address.v6) return false;
  Cidr other{a, prefix};
  return other.network() == network();
}

bool Cidr::overlaps(const Cidr& o) const {
  if (o.address.v6 != address.v6) return false;
  int p = std::min(prefix, o.prefix);
  return Cidr{address, p}.network() == Cidr{o.address, p}.network();
}

std::string Cidr::netmask() const {
  uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
  return IpAddress::fromV4(mask).toString();
}

}  // namespace vmm::model
