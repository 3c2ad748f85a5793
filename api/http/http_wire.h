// HTTP/1.1 on the wire for vmmd's own server (see README.md in this folder): the request head
// parsed under limits, query strings and percent-decoding, and response heads. No I/O.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmm::api {

struct HttpRequest {
  std::string method;   // "GET"
  std::string target;   // "/v1/domains?full=1", as sent
  std::string path;     // "/v1/domains", still percent-encoded (segments are decoded when matched)
  int minorVersion = 1;  // HTTP/1.<minor>
  std::multimap<std::string, std::string> params;  // the query, decoded
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case, in order
  std::string body;
  std::string peer;     // the client's address
  std::string clientCertificate;  // SHA-256 of the TLS client certificate it presented, or ""

  // The first value of a header ("" when absent); names are case-insensitive.
  std::string header(std::string_view name) const;
  size_t headerCount(std::string_view name) const;
  bool keepAlive() const;  // what the client asked for (HTTP/1.1 default: yes)
};

struct HttpResponse {
  int status = 200;
  std::string contentType;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // Connection: close after it

  void setContent(std::string text, std::string type) {
    body = std::move(text);
    contentType = std::move(type);
  }
  void setHeader(std::string name, std::string value) { headers.emplace_back(std::move(name), std::move(value)); }
};

struct HeadLimits {
  size_t maxHeadBytes = 16 << 10;    // request line and headers
  size_t maxRequestLine = 8 << 10;
  size_t maxHeaders = 64;
};

struct HeadResult {
  enum class State { incomplete, complete, error } state = State::incomplete;
  size_t consumed = 0;  // bytes of the head, when complete
  int status = 0;       // when error: 400, 414, 431, 505
  std::string message;
};

// Parses the request head at the start of `buffer` (lines end in CRLF or LF). Incomplete while
// the blank line has not arrived and no limit is passed; an error as soon as one is (a head
// never needs more than maxHeadBytes of memory, however it is sent).
HeadResult parseRequestHead(std::string_view buffer, const HeadLimits& limits, HttpRequest& out);

// "%2F" and (in queries) "+" decoded; false on a malformed escape.
bool percentDecode(std::string_view in, bool plusIsSpace, std::string& out);
// "a=1&b=x%20y" into `out`; false on a malformed escape.
bool parseQuery(std::string_view query, std::multimap<std::string, std::string>& out);

std::string_view reasonPhrase(int status);
// Status line and headers up to the blank line. contentLength < 0: chunked (a stream).
std::string responseHead(const HttpResponse& r, long long contentLength, bool keepAlive);
// One chunk of a chunked body ("" ends the body).
std::string chunk(std::string_view data);

}  // namespace vmm::api
