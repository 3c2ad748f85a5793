// Small string helpers used across modules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmm {

std::vector<std::string> split(std::string_view s, char sep, bool skipEmpty = false);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
std::string_view trim(std::string_view s);
bool startsWith(std::string_view s, std::string_view prefix);
bool endsWith(std::string_view s, std::string_view suffix);
std::string toLower(std::string_view s);
std::optional<int64_t> parseInt(std::string_view s);
std::optional<uint64_t> parseUint(std::string_view s);
// Quotes a string for messages: "web1" -> `"web1"`, with control characters escaped.
std::string quote(std::string_view s);
std::string hexEncode(const void* data, size_t len);

}  // namespace vmm
