// Sizes and rates as people write them. Binary units follow libvirt: "K"/"KiB" = 1024,
// "KB" = 1000 (likewise M, G, T, P); a bare number is bytes. Rates are in bits per second
// with decimal prefixes as in tc: "10Mbit" = 10,000,000 bit/s.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm::model {

Result<uint64_t> parseSize(std::string_view text);
// Exact, in the largest binary unit that divides it: 536870912 -> "512MiB"; 1000 -> "1000".
std::string formatSize(uint64_t bytes);
// Rounded for tables: 1610612736 -> "1.5GiB".
std::string humanSize(uint64_t bytes);

Result<uint64_t> parseBitrate(std::string_view text);
std::string formatBitrate(uint64_t bitsPerSecond);

}  // namespace vmm::model
