#include "daemon/auth.h"

#include "base/random.h"
#include "base/time_util.h"
#include "model/names.h"

namespace vmm {

Status TokenStore::load() {
  VMM_ASSIGN(auto rows, store_.loadAll(Table::tokens));
  MutexLock lock(mu_);
  for (const auto& row : rows) {
    TokenInfo info{row.key, row.value.value("role", "read"), row.value.value("created_us", int64_t{0})};
    byName_[row.key] = {row.value.value("sha256", ""), info};
  }
  return {};
}

Result<std::string> TokenStore::create(const std::string& name, const std::string& role) {
  VMM_TRY(model::validateName(name, "token name"));
  if (role != "read" && role != "admin") return invalidArgument("role: expected read or admin");
  std::string secret = "vmm_" + randomHex(24);
  TokenInfo info{name, role, wallNowMicros()};
  std::string hash = sha256Hex(secret);
  {
    MutexLock lock(mu_);
    if (byName_.count(name)) return conflict("a token named " + name + " already exists");
    byName_[name] = {hash, info};  // reserve; undone below if the write fails
  }
  auto st = store_.put(Table::tokens, name, {{"sha256", hash}, {"role", role}, {"created_us", info.createdUs}});
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
  std::string hash = sha256Hex(secret);
  MutexLock lock(mu_);
  std::optional<TokenInfo> found;
  for (const auto& [n, v] : byName_)
    if (constantTimeEquals(v.first, hash)) found = v.second;
  return found;
}

bool TokenStore::empty() const {
  MutexLock lock(mu_);
  return byName_.empty();
}

}  // namespace vmm
