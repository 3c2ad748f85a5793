#include "daemon/url_fetch.h"

#include <httplib.h>
#include <openssl/x509.h>

#include <fcntl.h>
#include <cstring>
#include <unistd.h>

#include "base/fs.h"
#include "base/socket_util.h"
#include "base/strings.h"

namespace vmm {

namespace {

// Splits "http://host:port/path?q" into the scheme+authority and the rest.
bool splitUrl(const std::string& url, std::string& origin, std::string& target) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return false;
  auto slash = url.find('/', scheme + 3);
  origin = url.substr(0, slash);
  target = slash == std::string::npos ? "/" : url.substr(slash);
  return origin.size() > scheme + 3;
}

}  // namespace

Status fetchUrl(const std::string& url, const std::string& path, const FetchOptions& options) {
  std::string origin, target;
  if (!splitUrl(url, origin, target)) return invalidArgument("url: cannot parse " + quote(url));
  httplib::Client client(origin);
  if (!client.is_valid()) return invalidArgument("url: unsupported URL " + quote(url));
  auto left = [&] { return std::max<int64_t>(1, options.deadline.remaining().count()); };
  client.set_connection_timeout(std::chrono::milliseconds(std::min<int64_t>(left(), 30000)));
  client.set_read_timeout(std::chrono::milliseconds(std::min<int64_t>(left(), 60000)));
  client.set_follow_location(true);
  if (!options.caFile.empty()) client.set_ca_cert_path(options.caFile);

  std::string temp = path + ".partial";
  fs::UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return systemError("creating " + temp, errno);
  uint64_t done = 0, total = 0;
  std::string failure;
  int status = 0;
  auto res = client.Get(
      target.c_str(),
      [&](const httplib::Response& r) {
        status = r.status;
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
        done += len;
        if (options.progress) options.progress(done, total);
        return true;
      });
  auto discard = [&](Error e) {
    ::unlink(temp.c_str());
    return e;
  };
  if (!failure.empty()) {
    if (failure == "timed out") return discard(timeoutError("downloading " + url + ": timed out"));
    return discard(unavailable("downloading " + url + ": " + failure));
  }
  if (status != 0 && status != 200) {
    if (status == 404) return discard(notFound("downloading " + url + ": the server answered HTTP 404 (not found)"));
    return discard(unavailable("downloading " + url + ": the server answered HTTP " + std::to_string(status)));
  }
  if (!res && res.error() == httplib::Error::SSLServerVerification) {
    std::string why = X509_verify_cert_error_string(client.get_openssl_verify_result());
    return discard(unavailable("downloading " + url + ": the server's certificate is not trusted (" + why +
                               "); a private CA is trusted with [images] ca_file or --image-ca-file"));
  }
  if (!res) return discard(unavailable("downloading " + url + ": " + httplib::to_string(res.error())));
  if (total && done != total) return discard(unavailable("downloading " + url + ": the transfer ended early"));
  if (::fsync(fd.get()) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) return discard(systemError("saving " + path, errno));
  return {};
}

}  // namespace vmm
