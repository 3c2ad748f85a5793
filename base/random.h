// Randomness from the kernel (getrandom): identifiers, MAC addresses, secrets.
#pragma once

#include <cstddef>
#include <string>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace vmm {

void randomBytes(void* out, size_t len);
std::string randomHex(size_t bytes);
std::string newUuid();  // RFC 4122 version 4, lower case
bool isUuid(std::string_view s);
std::string sha256Hex(std::string_view data);
// SHA-256 of data that arrives in pieces (OpenSSL's EVP).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t len);
  // Lower-case hex of everything given so far; the hash stays usable.
  std::string hexDigest() const;

 private:
  ::evp_md_ctx_st* ctx_;
};
// Compares two strings in time independent of where they differ.
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace vmm
