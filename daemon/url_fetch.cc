#include "daemon/url_fetch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <vector>

#include "base/fs.h"
#include "base/random.h"
#include "base/socket_util.h"
#include "base/strings.h"

namespace vmm {

namespace {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // a name, an IPv4 address or a bracketed IPv6 address
  int port = 0;
  std::string target;  // path and query, starting with '/'

  std::string origin() const { return scheme + "://" + host + ":" + std::to_string(port); }
  std::string str() const { return scheme + "://" + host + ":" + std::to_string(port) + target; }
};

bool isSchemeChar(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) || (!first && (std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.'));
}

// The scheme of an absolute reference ("HTTPS" -> "https"), or "" for a relative one.
std::string schemeOf(const std::string& ref) {
  size_t i = 0;
  while (i < ref.size() && isSchemeChar(ref[i], i == 0)) ++i;
  if (i == 0 || i >= ref.size() || ref[i] != ':') return "";
  return toLower(ref.substr(0, i));
}

std::string withoutFragment(const std::string& s) { return s.substr(0, s.find('#')); }

Result<Url> parseUrl(const std::string& text) {
  auto bad = [&](const std::string& why) { return invalidArgument("url: cannot use " + quote(text) + ": " + why); };
  for (char c : text)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("it contains a space or a control character");
  Url u;
  u.scheme = schemeOf(text);
  if (u.scheme != "http" && u.scheme != "https") return bad("only http:// and https:// URLs are supported");
  if (text.compare(u.scheme.size(), 3, "://") != 0) return bad("expected " + u.scheme + "://HOST/...");
  std::string rest = withoutFragment(text.substr(u.scheme.size() + 3));
  size_t end = rest.find_first_of("/?");
  std::string authority = rest.substr(0, end);
  u.target = end == std::string::npos ? "/" : rest.substr(end);
  if (u.target[0] == '?') u.target = "/" + u.target;
  if (authority.find('@') != std::string::npos) return bad("user names in URLs are not supported");
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return bad("unterminated IPv6 address");
    u.host = authority.substr(0, close + 1);
    for (char c : u.host.substr(1, close - 1))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return bad("invalid IPv6 address");
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return bad("invalid host");
      port = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.find(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
    for (char c : u.host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') return bad("invalid host");
  }
  if (u.host.empty() || u.host == "[]") return bad("no host");
  u.port = u.scheme == "https" ? 443 : 80;
  if (!port.empty()) {
    auto p = parseUint(port);
    if (!p || *p < 1 || *p > 65535) return bad("invalid port");
    u.port = static_cast<int>(*p);
  }
  return u;
}

// RFC 3986 5.2.4 on a path without its query.
std::string removeDotSegments(const std::string& path) {
  std::vector<std::string> out;
  auto parts = split(path, '/', false);
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto& p = parts[i];
    bool last = i + 1 == parts.size();
    if (p == ".") {
      if (last) out.emplace_back();
    } else if (p == "..") {
      if (out.size() > 1) out.pop_back();
      if (last) out.emplace_back();
    } else {
      out.push_back(p);
    }
  }
  std::string joined = join(out, "/");
  return joined.empty() || joined[0] != '/' ? "/" + joined : joined;
}

}  // namespace

Result<std::string> resolveUrlReference(const std::string& base, const std::string& reference) {
  VMM_ASSIGN(auto b, parseUrl(base));
  std::string ref = withoutFragment(reference);
  auto bad = [&](const std::string& why) { return invalidArgument("a malformed redirect to " + quote(reference) + ": " + why); };
  if (reference.empty()) return bad("no location");
  for (char c : ref)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("it contains a space or a control character");
  std::string resolved;
  if (!schemeOf(ref).empty()) {
    resolved = ref;
  } else if (startsWith(ref, "//")) {
    resolved = b.scheme + ":" + ref;
  } else {
    std::string basePath = b.target.substr(0, b.target.find('?'));
    std::string baseQuery = b.target.substr(basePath.size());
    std::string path = ref.substr(0, ref.find('?')), query = ref.substr(path.size());
    if (path.empty()) {
      path = basePath;
      if (query.empty()) query = baseQuery;
    } else if (path[0] != '/') {
      path = basePath.substr(0, basePath.rfind('/') + 1) + path;
    }
    resolved = b.origin() + removeDotSegments(path) + query;
  }
  auto u = parseUrl(resolved);
  if (!u.ok()) return bad(u.error().message);
  return u->str();
}

bool isPublicAddress(const std::string& address) {
  unsigned char b[16];
  if (::inet_pton(AF_INET, address.c_str(), b) == 1) {
    if (b[0] == 0 || b[0] == 10 || b[0] == 127 || b[0] >= 224) return false;            // this, private, loopback, multicast, reserved
    if (b[0] == 169 && b[1] == 254) return false;                                     // link-local
    if (b[0] == 172 && (b[1] & 0xf0) == 16) return false;                             // private
    if (b[0] == 192 && b[1] == 168) return false;                                     // private
    if (b[0] == 100 && (b[1] & 0xc0) == 64) return false;                             // shared (CGNAT)
    if (b[0] == 192 && b[1] == 0 && (b[2] == 0 || b[2] == 2)) return false;           // IETF, documentation
    if (b[0] == 198 && (b[1] & 0xfe) == 18) return false;                             // benchmarking
    return true;
  }
  if (::inet_pton(AF_INET6, address.c_str(), b) != 1) return false;
  static const unsigned char zero[16] = {};
  if (std::memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) return false;      // unspecified, loopback
  if (std::memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff) {              // IPv4-mapped
    char v4[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, b + 12, v4, sizeof v4);
    return isPublicAddress(v4);
  }
  if ((b[0] & 0xfe) == 0xfc || b[0] == 0xff) return false;                           // unique-local, multicast
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;                           // link-local
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return false;    // documentation
  return (b[0] & 0xe0) == 0x20;                                                        // global unicast 2000::/3
}

namespace {

// The address a host name (or literal) resolves to, when every one it resolves to is public.
Result<std::string> publicAddressOf(std::string host) {
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found)
    return unavailable("url: cannot resolve " + quote(host));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(found, freeaddrinfo);
  std::string first;
  for (addrinfo* a = found; a; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw = a->ai_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr)
                                               : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr);
    if (!::inet_ntop(a->ai_family, raw, text, sizeof text)) continue;
    if (!isPublicAddress(text))
      return permissionDenied("url: " + quote(host) + " is " + text + ", not a public address: downloads from the host's own "
                              "or internal networks need the admin role");
    if (first.empty()) first = text;
  }
  if (first.empty()) return unavailable("url: cannot resolve " + quote(host));
  return first;
}

}  // namespace

Result<std::string> fetchUrl(const std::string& url, const std::string& path, const FetchOptions& options) {
  VMM_ASSIGN(auto current, parseUrl(url));
  const std::string httpRefused =
      "plain http:// is refused (anyone on the path could change the image): use https://, or allow it with "
      "[images] allow_http = true";
  if (current.scheme == "http" && !options.allowHttp) return invalidArgument("url: " + quote(url) + ": " + httpRefused);

  std::string temp = path + ".partial";
  VMM_TRY(fs::removeFile(temp));  // a leftover, or a planted symlink: removed, never written through
  VMM_ASSIGN(auto fd, fs::createExclusive(temp, 0600));
  auto discard = [&](Error e) {
    ::unlink(temp.c_str());
    return e;
  };
  bool secure = current.scheme == "https";  // once https, every later hop stays https
  Sha256 digest;
  uint64_t done = 0, total = 0;
  for (int redirects = 0;; ++redirects) {
    std::string where = current.str();
    httplib::Client client(current.origin());
    if (!client.is_valid()) return discard(invalidArgument("url: unsupported URL " + quote(where)));
    auto left = [&] { return std::max<int64_t>(1, options.deadline.remaining().count()); };
    client.set_connection_timeout(std::chrono::milliseconds(std::min<int64_t>(left(), 30000)));
    client.set_read_timeout(std::chrono::milliseconds(std::min<int64_t>(left(), 60000)));
    client.set_follow_location(false);  // httplib would follow https -> http; the loop below does not
    if (!options.caFile.empty()) client.set_ca_cert_path(options.caFile);
    if (options.publicAddressesOnly) {
      VMM_ASSIGN(auto address, publicAddressOf(current.host));
      if (current.host.front() != '[') client.set_hostname_addr_map({{current.host, address}});
    }

    std::string failure, location;
    int status = 0;
    auto res = client.Get(
        current.target.c_str(),
        [&](const httplib::Response& r) {
          status = r.status;
          location = r.get_header_value("Location");
          if (r.status != 200) return false;  // reported from `status` below
          if (r.has_header("Content-Length")) total = parseUint(r.get_header_value("Content-Length")).value_or(0);
          if (total > options.maxBytes) {
            failure = "the file is larger than the limit of " + std::to_string(options.maxBytes) + " bytes";
            return false;
          }
          return true;
        },
        [&](const char* data, size_t len) {
          if (options.deadline.expired()) failure = "timed out";
          else if (options.cancelled && options.cancelled()) failure = "cancelled";
          else if (done + len > options.maxBytes) failure = "the file is larger than the limit of " + std::to_string(options.maxBytes) + " bytes";
          if (!failure.empty()) return false;
          if (auto st = writeAllFd(fd.get(), std::string_view(data, len), options.deadline); !st.ok()) {
            failure = "writing " + temp + ": " + st.error().message;
            return false;
          }
          digest.update(data, len);
          done += len;
          if (options.progress) options.progress(done, total);
          return true;
        });
    if (res) status = res->status;
    if (!failure.empty()) {
      if (failure == "timed out") return discard(timeoutError("downloading " + url + ": timed out"));
      return discard(unavailable("downloading " + url + ": " + failure));
    }
    if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
      if (redirects >= options.maxRedirects)
        return discard(unavailable("downloading " + url + ": more than " + std::to_string(options.maxRedirects) +
                                   " redirects (the last to " + quote(location) + ")"));
      auto next = resolveUrlReference(where, location);
      if (!next.ok()) return discard(unavailable("downloading " + url + ": " + where + " answered with " + next.error().message));
      auto parsed = parseUrl(*next);
      if (!parsed.ok()) return discard(parsed.error());
      current = *parsed;
      if (secure && current.scheme != "https")
        return discard(unavailable("downloading " + url + ": refused the redirect from " + where + " to " + *next +
                                   " (from https to plain http)"));
      if (current.scheme == "http" && !options.allowHttp)
        return discard(unavailable("downloading " + url + ": refused the redirect to " + *next + ": " + httpRefused));
      secure = secure || current.scheme == "https";
      continue;
    }
    if (status != 0 && status != 200) {
      if (status == 404) return discard(notFound("downloading " + url + ": the server answered HTTP 404 (not found)"));
      return discard(unavailable("downloading " + url + ": the server answered HTTP " + std::to_string(status)));
    }
    if (!res && res.error() == httplib::Error::SSLServerVerification) {
      std::string why = X509_verify_cert_error_string(client.get_openssl_verify_result());
      return discard(unavailable("downloading " + url + ": the server's certificate" +
                                 (redirects ? " at " + where : std::string()) +
                                 " is not trusted (" + why + "); a private CA is trusted with [images] ca_file or --image-ca-file"));
    }
    if (!res) return discard(unavailable("downloading " + url + ": " + httplib::to_string(res.error())));
    break;
  }
  if (total && done != total) return discard(unavailable("downloading " + url + ": the transfer ended early"));
  std::string actual = digest.hexDigest();
  if (!options.sha256.empty() && actual != options.sha256)
    return discard(invalidArgument("downloading " + url + ": sha256 mismatch: expected " + options.sha256 + ", got " + actual));
  if (::fsync(fd.get()) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) return discard(systemError("saving " + path, errno));
  return actual;
}

}  // namespace vmm
