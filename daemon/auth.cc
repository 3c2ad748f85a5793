#include "daemon/auth.h"

#include "base/json_util.h"
#include "base/random.h"
#include "base/time_util.h"
#include "model/names.h"

namespace vmm {

Status TokenStore::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::tokens));
  MutexLock lock(mu_);
  for (const auto& row : rows) {
    TokenInfo info{row.key,
                   jsonStringOr(row.value, "kind", "token"),
                   jsonStringOr(row.value, "role", "read"),
                   jsonStringOr(row.value, "description", ""),
                   jsonIntOr(row.value, "created_us", 0),
                   jsonIntOr(row.value, "expires_us", 0),
                   "",
                   jsonStringOr(row.value, "project", "")};
    std::string hash = jsonStringOr(row.value, "sha256", "");
    if (info.kind == "certificate") info.fingerprint = hash;
    byName_[row.key] = {hash, info};
  }
  return {};
}

Result<std::string> TokenStore::create(const TokenSpec& spec) {
  const std::string& name = spec.name;
  VMM_TRY(model::validateName(name, "token name"));
  if (spec.role != "read" && spec.role != "operator" && spec.role != "admin")
    return invalidArgument("role: expected read, operator or admin");
  if (spec.description.size() > 1024) return invalidArgument("description: at most 1024 bytes");
  bool certificate = !spec.certificateSha256.empty();
  std::string secret = certificate ? spec.certificateSha256 : "vmm_" + randomHex(24);
  TokenInfo info{name, certificate ? "certificate" : "token", spec.role, spec.description, wallNowMicros(), spec.expiresUs,
                 certificate ? spec.certificateSha256 : "", spec.project};
  if (info.expired(info.createdUs)) return invalidArgument("expires: the token would be expired already");
  std::string hash = certificate ? spec.certificateSha256 : sha256Hex(secret);
  {
    MutexLock lock(mu_);
    if (byName_.count(name)) return conflict("a token named " + name + " already exists");
    if (certificate)
      for (const auto& [n, v] : byName_)
        if (v.second.kind == "certificate" && v.first == hash) return conflict("this certificate is already token " + n);
    byName_[name] = {hash, info};  // reserve; undone below if the write fails
  }
  auto st = store_.put(Table::tokens, name, {{"sha256", hash}, {"kind", info.kind}, {"role", info.role}, {"description", info.description},
                                             {"created_us", info.createdUs}, {"expires_us", info.expiresUs},
                                             {"project", info.project}});
  if (!st.ok()) {
    MutexLock lock(mu_);
    byName_.erase(name);
    return st.error();
  }
  return secret;
}

Status TokenStore::remove(const std::string& name) {
  {
    MutexLock lock(mu_);
    if (!byName_.count(name)) return notFound("no token named " + name);
  }
  VMM_TRY(store_.remove(Table::tokens, name));
  MutexLock lock(mu_);
  byName_.erase(name);
  return {};
}

std::vector<TokenInfo> TokenStore::list() const {
  MutexLock lock(mu_);
  std::vector<TokenInfo> out;
  for (const auto& [n, v] : byName_) out.push_back(v.second);
  return out;
}

std::optional<TokenInfo> TokenStore::verify(const std::string& secret) const {
  if (secret.empty() || secret.size() > 256) return std::nullopt;
  return find(sha256Hex(secret), "token");
}

std::optional<TokenInfo> TokenStore::verifyCertificate(const std::string& fingerprint) const {
  if (fingerprint.size() != 64) return std::nullopt;
  return find(fingerprint, "certificate");
}

std::optional<TokenInfo> TokenStore::find(const std::string& hash, const std::string& kind) const {
  MutexLock lock(mu_);
  std::optional<TokenInfo> found;
  for (const auto& [n, v] : byName_)
    if (constantTimeEquals(v.first, hash) && v.second.kind == kind) found = v.second;
  if (found && found->expired(wallNowMicros())) return std::nullopt;
  return found;
}

bool TokenStore::stillValid(const TokenInfo& token) const {
  if (token.expired(wallNowMicros())) return false;
  MutexLock lock(mu_);
  auto it = byName_.find(token.name);
  return it != byName_.end() && it->second.second.createdUs == token.createdUs;
}

bool TokenStore::empty() const {
  MutexLock lock(mu_);
  return byName_.empty();
}

}  // namespace vmm
