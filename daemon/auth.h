// API tokens for the HTTP transport. A token is shown once, at creation; only its SHA-256
// is stored. Roles (api/spec.h): "read", "operator" and "admin". A token may expire; an
// expired or revoked one is refused, and transports close its open streams (stillValid).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "daemon/state_store.h"

namespace vmm {

struct TokenInfo {
  std::string name;
  std::string kind = "token";  // "token": a bearer secret; "certificate": a TLS client certificate
  std::string role;  // read | operator | admin
  std::string description;
  int64_t createdUs = 0;
  int64_t expiresUs = 0;  // 0: never
  std::string fingerprint;  // a certificate's SHA-256 (hex); "" for a token
  std::string project{};    // bound to this project; "": picks one per call
  bool expired(int64_t nowUs) const { return expiresUs != 0 && nowUs >= expiresUs; }
};

struct TokenSpec {
  std::string name;
  std::string role;
  std::string description;
  int64_t expiresUs = 0;  // 0: never
  // Set: the principal is whoever presents the TLS client certificate of this SHA-256 (hex),
  // and no secret is made.
  std::string certificateSha256;
  std::string project{};  // "" or an existing project the token is bound to
};

class TokenStore {
 public:
  explicit TokenStore(StateStore& store) : store_(store) {}
  Status load();
  // Returns the secret (it is not stored anywhere), or a certificate's fingerprint.
  Result<std::string> create(const TokenSpec& spec);
  Status remove(const std::string& name);
  std::vector<TokenInfo> list() const;
  // The token's info if the secret is one of a token neither revoked nor expired.
  std::optional<TokenInfo> verify(const std::string& secret) const;
  // The same for a TLS client certificate's SHA-256 (hex).
  std::optional<TokenInfo> verifyCertificate(const std::string& fingerprint) const;
  // Whether the token `verify` gave is still neither revoked (nor replaced by a new token of
  // its name) nor expired.
  bool stillValid(const TokenInfo& token) const;
  bool empty() const;

 private:
  std::optional<TokenInfo> find(const std::string& hash, const std::string& kind) const;

  StateStore& store_;
  mutable Mutex mu_;
  // name -> (the secret's SHA-256 or the certificate's fingerprint, info)
  std::map<std::string, std::pair<std::string, TokenInfo>> byName_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm
