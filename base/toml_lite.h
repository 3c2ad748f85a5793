// A parser for the subset of TOML that vmmd's configuration uses: [tables] and [dotted.tables],
// key = value with strings ("basic" and 'literal'), integers, booleans and one-line arrays of
// those, and # comments. The result is a JSON object so that the configuration is validated by
// the same strict reader as API input (unknown keys rejected with their path).
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "base/result.h"

namespace vmm {

Result<nlohmann::json> parseTomlLite(std::string_view text);

}  // namespace vmm
