// vmmd's HTTP server (its own HTTP/1.1 front, api/http) fed raw bytes on a loopback TCP
// connection of a whole in-process vmmd (test driver). "$READ" in the input becomes a valid
// read token (an admin token is never sent: admin calls reach host files). Properties:
// - vmmd survives and answers host.info afterwards;
// - every response starts with a valid status line;
// - without a token no response is a success (1xx/2xx/3xx): 401 comes before any body;
// - with the read token, a POST, PUT, PATCH or DELETE never succeeds;
// - the server answers or closes within the time limit (no connection is left hanging
//   while we wait, beyond the idle pause we allow for a partial request).
#include <netinet/in.h>
#include <sys/socket.h>

#include "fuzz/daemon_harness.h"

using namespace vmm;

namespace {

fs::UniqueFd connectHttp(int port) {
  fs::UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  FUZZ_CHECK(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "connect to the HTTP port");
  return s;
}

// The status codes of the responses in `in`, as far as they can be framed (Content-Length).
std::vector<int> statuses(const std::string& in) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t end = in.find("\r\n\r\n", pos);
    if (end == std::string::npos) break;
    std::string head = in.substr(pos, end - pos);
    FUZZ_CHECK(head.size() >= 12 && head.compare(0, 9, "HTTP/1.1 ") == 0 && isdigit(head[9]) && isdigit(head[10]) &&
                   isdigit(head[11]),
               "not an HTTP response: " + fuzz::show(head));
    out.push_back(std::stoi(head.substr(9, 3)));
    std::string lower = toLower(head);
    size_t cl = lower.find("\r\ncontent-length:");
    if (cl == std::string::npos) break;  // chunked or streamed: stop framing here
    auto len = parseUint(trim(lower.substr(cl + 17, lower.find("\r\n", cl + 17) - cl - 17)));
    if (!len) break;
    pos = end + 4 + *len;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 128 << 10) return 0;
  auto& h = fuzz::DaemonHarness::get();
  std::string input(fuzz::bytes(data, size));
  bool withToken = false;
  for (size_t p; (p = input.find("$READ")) != std::string::npos;) {
    input.replace(p, 5, h.readToken);
    withToken = true;
  }
  // The first request's method, for the authorisation property.
  std::string firstMethod = input.substr(0, input.find(' '));

  auto s = connectHttp(h.httpPort);
  std::string got;
  {
    Deadline deadline = Deadline::after(Millis(20000));
    std::string_view rest = input;
    bool closed = false;
    int quietMs = 0;
    while (!closed) {
      pollfd p{s.get(), static_cast<short>(POLLIN | (rest.empty() ? 0 : POLLOUT)), 0};
      int n = ::poll(&p, 1, 50);
      if (n == 0) {
        // Nothing more comes: a partial request waits for bytes we will not send.
        if (rest.empty() && (quietMs += 50) >= 300) break;
        FUZZ_CHECK(!deadline.expired(), "the HTTP server neither answers nor reads");
        continue;
      }
      quietMs = 0;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[65536];
        ssize_t r = ::recv(s.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) got.append(buf, static_cast<size_t>(r));
        else if (r == 0 || (errno != EAGAIN && errno != EINTR)) closed = true;
        // An event stream never ends: enough is enough.
        if (got.size() > (1 << 20)) break;
      }
      if (!rest.empty() && (p.revents & POLLOUT)) {
        ssize_t w = ::send(s.get(), rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) rest.remove_prefix(static_cast<size_t>(w));
        else if (w < 0 && errno != EAGAIN && errno != EINTR) rest = {};  // the server closed: fine
      }
      FUZZ_CHECK(!deadline.expired(), "the HTTP exchange did not finish in 20 s");
    }
  }
  auto codes = statuses(got);
  for (int code : codes) {
    FUZZ_CHECK(code >= 100 && code <= 599, "status " + std::to_string(code));
    if (!withToken) FUZZ_CHECK(code >= 400, "a request without a token got " + std::to_string(code));
  }
  if (withToken && !codes.empty() && (firstMethod == "POST" || firstMethod == "PUT" || firstMethod == "PATCH" || firstMethod == "DELETE"))
    FUZZ_CHECK(codes[0] >= 300 || codes[0] < 200, "a read token's " + firstMethod + " got " + std::to_string(codes[0]));
  s.reset();
  h.checkAlive("this HTTP input");
  return 0;
}
