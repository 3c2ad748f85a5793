// Randomness from the kernel (getrandom): identifiers, MAC addresses, secrets.
#pragma once

#include <cstddef>
#include <string>

namespace vmm {

void randomBytes(void* out, size_t len);
std::string randomHex(size_t bytes);
std::string newUuid();  // RFC 4122 version 4, lower case
bool isUuid(std::string_view s);
std::string sha256Hex(std::string_view data);
// Compares two strings in time independent of where they differ.
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace vmm
