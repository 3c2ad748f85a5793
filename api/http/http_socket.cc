#include "api/http/http_socket.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace vmm::api {

HttpSocket::HttpSocket(fs::UniqueFd fd, SSL_CTX* tls) : fd_(std::move(fd)) {
  if (tls) {
    ssl_ = SSL_new(tls);
    if (ssl_) SSL_set_fd(ssl_, fd_.get());
  }
  handshakeDone_ = !tls;
}

HttpSocket::~HttpSocket() {
  if (ssl_) SSL_free(ssl_);
}

HttpSocket::Io HttpSocket::sslResult(int ret) {
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ: wantWrite_ = false; return Io::wouldBlock;
    case SSL_ERROR_WANT_WRITE: wantWrite_ = true; return Io::wouldBlock;
    case SSL_ERROR_ZERO_RETURN: return Io::closed;
    case SSL_ERROR_SYSCALL:
      if (errno == EAGAIN || errno == EINTR) return Io::wouldBlock;
      return errno == 0 ? Io::closed : Io::failed;
    default: return Io::failed;
  }
}

HttpSocket::Io HttpSocket::handshake() {
  if (handshakeDone_) return Io::ok;
  int r = SSL_accept(ssl_);
  if (r != 1) return sslResult(r);
  handshakeDone_ = true;
  wantWrite_ = false;
  if (X509* cert = SSL_get1_peer_certificate(ssl_)) {
    clientCertificate_ = certificateSha256(cert);
    X509_free(cert);
  }
  return Io::ok;
}

HttpSocket::Io HttpSocket::read(std::string& out, size_t max) {
  if (max == 0) return Io::ok;
  if (!ssl_ && !handshakeDone_) return Io::failed;  // a TLS socket that could not be made
  char buf[16384];
  size_t want = std::min(max, sizeof buf);
  if (!ssl_) {
    ssize_t n = ::recv(fd_.get(), buf, want, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      return Io::ok;
    }
    if (n == 0) return Io::closed;
    return errno == EAGAIN || errno == EINTR ? Io::wouldBlock : Io::failed;
  }
  ERR_clear_error();
  errno = 0;  // SSL_ERROR_SYSCALL with errno 0 is an EOF
  if (Io h = handshake(); h != Io::ok) return h;
  int n = SSL_read(ssl_, buf, static_cast<int>(want));
  if (n > 0) {
    out.append(buf, static_cast<size_t>(n));
    return Io::ok;
  }
  return sslResult(n);
}

HttpSocket::Io HttpSocket::write(std::string_view data, size_t& written) {
  written = 0;
  if (data.empty()) return Io::ok;
  if (!ssl_) {
    if (!handshakeDone_) return Io::failed;
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      written = static_cast<size_t>(n);
      return Io::ok;
    }
    return errno == EAGAIN || errno == EINTR ? Io::wouldBlock : Io::failed;
  }
  ERR_clear_error();
  errno = 0;
  if (Io h = handshake(); h != Io::ok) return h;
  int n = SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
  if (n > 0) {
    written = static_cast<size_t>(n);
    wantWrite_ = false;
    return Io::ok;
  }
  return sslResult(n);
}

bool HttpSocket::hasBuffered() const { return ssl_ && SSL_pending(ssl_) > 0; }

void HttpSocket::shutdownWrite() {
  if (ssl_ && handshakeDone_) {
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // best effort: close_notify
  }
  ::shutdown(fd_.get(), SHUT_WR);
}

std::string certificateSha256(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return "";
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

namespace {

// Client certificates are trusted by their fingerprint, registered with token.create (the way
// Incus trusts certificates), not by a CA: any certificate may be presented, and one whose
// fingerprint is unknown authenticates nobody.
int acceptAnyClientCertificate(int, X509_STORE_CTX*) { return 1; }

}  // namespace

SSL_CTX* makeTlsContext(const std::string& certFile, const std::string& keyFile, std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    error = "cannot create a TLS context";
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, acceptAnyClientCertificate);
  if (SSL_CTX_use_certificate_chain_file(ctx, certFile.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, keyFile.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    char buf[256] = {};
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    error = buf;
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

void freeTlsContext(SSL_CTX* ctx) {
  if (ctx) SSL_CTX_free(ctx);
}

}  // namespace vmm::api
