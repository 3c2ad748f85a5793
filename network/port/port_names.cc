#include "network/port/port_names.h"

#include <cctype>
#include <cstdio>

#include "base/strings.h"
#include "network/port/port_profile.h"

namespace vmm::net {

Status checkIfname(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > 15)
    return invalidArgument(std::string(what) + " " + quote(name) + ": must be 1 to 15 characters");
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return invalidArgument(std::string(what) + " " + quote(name) + ": only letters, digits, '_', '.' and '-' are allowed");
  }
  return {};
}

std::string nftEncode(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out += c;
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "_%02x", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out;
}

std::optional<std::string> nftDecode(std::string_view encoded) {
  std::string out;
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] != '_') {
      out += encoded[i];
      continue;
    }
    if (i + 2 >= encoded.size()) return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = hex(encoded[i + 1]), lo = hex(encoded[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string portTableName(std::string_view ifname) { return std::string(kPortTablePrefix) + nftEncode(ifname); }
std::string vlanTableName(std::string_view bridge) { return std::string(kVlanTablePrefix) + nftEncode(bridge); }

std::string ifbNameFor(const std::string& ifname) {
  if (ifname.size() <= 13) return "vi" + ifname;
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : ifname) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%013llx", static_cast<unsigned long long>(h & 0xfffffffffffffull));
  return std::string("vh") + buf;
}

}  // namespace vmm::net
