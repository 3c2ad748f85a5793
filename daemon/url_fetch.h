// Downloads an http(s) URL into a file, with an overall deadline, a size limit, progress and
// cancellation. The file appears complete (and with the expected digest) or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/result.h"
#include "base/time_util.h"

namespace vmm {

struct FetchOptions {
  uint64_t maxBytes = 64ULL << 30;
  std::string caFile;  // PEM CA certificates that https servers are verified against; "" = the system's
  bool allowHttp = false;  // plain http:// (first URL or a redirect); never after an https hop
  std::string sha256;      // lower-case hex the content must hash to; "" = not checked
  int maxRedirects = 5;
  // Every hop may connect only to public addresses: never loopback, private, link-local,
  // unique-local, shared (CGNAT), multicast or unspecified ones (an operator must not reach
  // services inside the host or its networks through vmmd). The name is resolved once per hop
  // and the connection goes to the address checked, so a rebinding name cannot switch it.
  bool publicAddressesOnly = false;
  Deadline deadline = Deadline::after(Millis(3600 * 1000));
  std::function<void(uint64_t done, uint64_t total)> progress;
  std::function<bool()> cancelled;
};

// Returns the sha256 (lower-case hex) of the bytes saved at `path`. Redirects are followed by
// hand, each with the same certificate checks: at most maxRedirects, never from https to http.
Result<std::string> fetchUrl(const std::string& url, const std::string& path, const FetchOptions& options);

// Whether an address (the text of an IPv4 or IPv6 address) is a public unicast one.
bool isPublicAddress(const std::string& address);

// Resolves a redirect's Location against the URL it came from (RFC 3986 section 5.2, for the
// http and https schemes only); the fragment is dropped.
Result<std::string> resolveUrlReference(const std::string& base, const std::string& reference);

}  // namespace vmm
