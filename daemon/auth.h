// API tokens for the HTTP transport. A token is shown once, at creation; only its SHA-256
// is stored. Roles: "read" (read operations) and "admin" (everything).
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
  std::string role;  // read | admin
  int64_t createdUs = 0;
};

class TokenStore {
 public:
  explicit TokenStore(StateStore& store) : store_(store) {}
  Status load();
  // Returns the secret; it is not stored anywhere.
  Result<std::string> create(const std::string& name, const std::string& role);
  Status remove(const std::string& name);
  std::vector<TokenInfo> list() const;
  // The token's info if the secret is valid.
  std::optional<TokenInfo> verify(const std::string& secret) const;
  bool empty() const;

 private:
  StateStore& store_;
  mutable Mutex mu_;
  std::map<std::string, std::pair<std::string, TokenInfo>> byName_ VMM_GUARDED_BY(mu_);  // name -> (hash, info)
};

}  // namespace vmm
