// One accepted TCP connection of the HTTP server, non-blocking, plain or TLS (OpenSSL in
// memory-safe partial-write mode). The server reads and writes it on its event loop only.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/fs.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

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

 private:
  Io sslResult(int ret);

  fs::UniqueFd fd_;
  SSL* ssl_ = nullptr;
  bool handshakeDone_ = false;
  bool wantWrite_ = false;
};

// The server's TLS context from PEM files; null and `error` set when they cannot be used.
SSL_CTX* makeTlsContext(const std::string& certFile, const std::string& keyFile, std::string& error);
void freeTlsContext(SSL_CTX* ctx);

}  // namespace vmm::api
