// One accepted TCP connection of the HTTP server, non-blocking, plain or TLS (OpenSSL in
// memory-safe partial-write mode). The server reads and writes it on its event loop only.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/fs.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;

namespace vmm::api {

class HttpSocket {
 public:
  enum class Io { ok, wouldBlock, closed, failed };

  // `tls` null: plain TCP. The handshake happens in the first reads.
  HttpSocket(fs::UniqueFd fd, SSL_CTX* tls);
  ~HttpSocket();
  HttpSocket(const HttpSocket&) = delete;
  HttpSocket& operator=(const HttpSocket&) = delete;

  int fd() const { return fd_.get(); }
  // Appends up to `max` bytes to `out`.
  Io read(std::string& out, size_t max);
  // Writes a prefix of `data`; `written` says how much.
  Io write(std::string_view data, size_t& written);
  // TLS needs the socket to become writable before it can go on (a handshake step).
  bool wantsWrite() const { return wantWrite_; }
  // TLS holds decrypted bytes that read() will return without the socket being readable.
  bool hasBuffered() const;
  // No more bytes will be sent (TLS close_notify, then a TCP half-close).
  void shutdownWrite();
  // The SHA-256 (hex) of the certificate a TLS client presented; "" when none.
  const std::string& clientCertificate() const { return clientCertificate_; }

 private:
  Io sslResult(int ret);
  // Goes on with the TLS handshake; Io::ok once it is done.
  Io handshake();

  fs::UniqueFd fd_;
  SSL* ssl_ = nullptr;
  bool handshakeDone_ = false;
  bool wantWrite_ = false;
  std::string clientCertificate_;
};

// The server's TLS context from PEM files; null and `error` set when they cannot be used.
SSL_CTX* makeTlsContext(const std::string& certFile, const std::string& keyFile, std::string& error);
void freeTlsContext(SSL_CTX* ctx);
// A certificate's SHA-256 fingerprint over its DER form, in lower-case hex.
std::string certificateSha256(X509* cert);

}  // namespace vmm::api
