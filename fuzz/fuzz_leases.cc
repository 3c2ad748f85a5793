// dnsmasq lease files (a guest chooses its host name and client id, so the file is guest
// input): net::parseLeases never crashes, and every lease it returns has the fields it
// promises (a MAC with ':', an IPv4-looking address, no blanks or line breaks in any field).
#include "fuzz/fuzz_util.h"
#include "network/virtual/dnsmasq.h"

using namespace vmm;

namespace {
bool hasBlank(const std::string& s) { return s.find_first_of(" \n") != std::string::npos; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 << 10) return 0;
  std::string_view text = fuzz::bytes(data, size);
  auto leases = net::parseLeases(text);
  size_t lines = 1;
  for (char c : text) lines += c == '\n';
  FUZZ_CHECK(leases.size() <= lines, "more leases than lines");
  for (const auto& l : leases) {
    FUZZ_CHECK(l.mac.find(':') != std::string::npos && l.ip.find('.') != std::string::npos, "lease fields");
    FUZZ_CHECK(!hasBlank(l.mac) && !hasBlank(l.ip) && !hasBlank(l.hostname) && !hasBlank(l.clientId), "blank in a field");
    FUZZ_CHECK(l.hostname != "*" && l.clientId != "*", "'*' kept as a value");
    // Leases are shown as JSON (network.leases): that must not throw.
    (void)dumpJson(nlohmann::json{{"mac", l.mac}, {"ip", l.ip}, {"hostname", l.hostname}, {"expiry", l.expiry}});
  }
  return 0;
}
