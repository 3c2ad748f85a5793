#include "api/http/http_wire.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace vmm::api {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool isTokenChar(unsigned char c) {
  return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string_view trimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

HeadResult fail(int status, std::string message) {
  HeadResult r;
  r.state = HeadResult::State::error;
  r.status = status;
  r.message = std::move(message);
  return r;
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  std::string key = lower(name);
  for (const auto& [k, v] : headers)
    if (k == key) return v;
  return "";
}

size_t HttpRequest::headerCount(std::string_view name) const {
  std::string key = lower(name);
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const auto& h) { return h.first == key; }));
}

bool HttpRequest::keepAlive() const {
  std::string c = lower(header("connection"));
  if (c.find("close") != std::string::npos) return false;
  return minorVersion >= 1 || c.find("keep-alive") != std::string::npos;
}

HeadResult parseRequestHead(std::string_view buf, const HeadLimits& limits, HttpRequest& out) {
  // Lines of the part received so far; the head ends at the first empty line.
  size_t pos = 0, lines = 0, end = std::string_view::npos;
  while (true) {
    size_t nl = buf.find('\n', pos);
    if (nl == std::string_view::npos) break;
    std::string_view line = buf.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (lines == 0 && line.size() > limits.maxRequestLine) return fail(414, "request line longer than " + std::to_string(limits.maxRequestLine) + " bytes");
    pos = nl + 1;
    if (line.empty() && lines > 0) {
      end = pos;
      break;
    }
    if (!line.empty()) ++lines;
    if (lines > limits.maxHeaders + 1) return fail(431, "more than " + std::to_string(limits.maxHeaders) + " header fields");
    if (pos > limits.maxHeadBytes) return fail(431, "request head larger than " + std::to_string(limits.maxHeadBytes) + " bytes");
  }
  if (end == std::string_view::npos) {
    if (lines == 0 && buf.size() > limits.maxRequestLine) return fail(414, "request line longer than " + std::to_string(limits.maxRequestLine) + " bytes");
    if (buf.size() > limits.maxHeadBytes) return fail(431, "request head larger than " + std::to_string(limits.maxHeadBytes) + " bytes");
    return {};
  }
  if (end > limits.maxHeadBytes) return fail(431, "request head larger than " + std::to_string(limits.maxHeadBytes) + " bytes");

  out = HttpRequest();
  pos = 0;
  bool first = true;
  while (pos < end) {
    size_t nl = buf.find('\n', pos);
    std::string_view line = buf.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (first) continue;  // blank lines before the request line are allowed (RFC 9112 2.2)
      break;
    }
    if (first) {
      first = false;
      size_t sp1 = line.find(' ');
      size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
      if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return fail(400, "malformed request line");
      std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1), version = line.substr(sp2 + 1);
      if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) { return isTokenChar(static_cast<unsigned char>(c)); }))
        return fail(400, "malformed method");
      if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || !std::isdigit(static_cast<unsigned char>(version[7])))
        return fail(505, "only HTTP/1.0 and HTTP/1.1 are served");
      if (target.empty() || target.front() != '/') return fail(400, "the request target must be a path");
      for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return fail(400, "malformed request target");
      out.method = std::string(method);
      out.target = std::string(target);
      out.minorVersion = version[7] - '0';
      size_t q = target.find('?');
      out.path = std::string(target.substr(0, q));
      std::string decoded;
      if (!percentDecode(out.path, false, decoded)) return fail(400, "malformed escape in the request path");
      if (q != std::string_view::npos && !parseQuery(target.substr(q + 1), out.params)) return fail(400, "malformed query string");
      continue;
    }
    if (line.front() == ' ' || line.front() == '\t') return fail(400, "folded header lines are not accepted");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(400, "malformed header line");
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), [](char c) { return isTokenChar(static_cast<unsigned char>(c)); }))
      return fail(400, "malformed header name");
    std::string_view value = trimSpace(line.substr(colon + 1));
    for (char c : value)
      if (c == '\0' || c == '\r' || c == '\n') return fail(400, "malformed header value");
    out.headers.emplace_back(lower(name), std::string(value));
  }
  if (out.method.empty()) return fail(400, "no request line");
  HeadResult r;
  r.state = HeadResult::State::complete;
  r.consumed = end;
  return r;
}

bool percentDecode(std::string_view in, bool plusIsSpace, std::string& out) {
  out.clear();
  out.reserve(in.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plusIsSpace) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

bool parseQuery(std::string_view query, std::multimap<std::string, std::string>& out) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    std::string_view part = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string k, v;
      if (!percentDecode(part.substr(0, eq), true, k)) return false;
      if (eq != std::string_view::npos && !percentDecode(part.substr(eq + 1), true, v)) return false;
      out.emplace(std::move(k), std::move(v));
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return true;
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string responseHead(const HttpResponse& r, long long contentLength, bool keepAlive) {
  std::string h = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reasonPhrase(r.status)) + "\r\n";
  if (!r.contentType.empty()) h += "Content-Type: " + r.contentType + "\r\n";
  if (contentLength < 0) h += "Transfer-Encoding: chunked\r\n";
  else if (r.status != 204 && r.status >= 200) h += "Content-Length: " + std::to_string(contentLength) + "\r\n";
  for (const auto& [k, v] : r.headers) h += k + ": " + v + "\r\n";
  h += keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  h += "\r\n";
  return h;
}

std::string chunk(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

}  // namespace vmm::api
