// Base64 (RFC 4648), as the guest agent uses for command input and output.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace vmm {

std::string base64Encode(std::string_view data);
Result<std::string> base64Decode(std::string_view text);

}  // namespace vmm
