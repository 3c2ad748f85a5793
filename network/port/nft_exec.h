// Running nft: atomic scripts (`nft -f -`, one transaction) and JSON listings.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"

namespace vmm::net {

// Runs `script` as one nft transaction: either all of it applies or none.
Status runNftScript(const std::string& script, Deadline deadline);

// `nft -j list table bridge NAME`: the "nftables" array, or nullopt when the table does not exist.
Result<std::optional<nlohmann::json>> listBridgeTable(const std::string& table, Deadline deadline);

// Names of the bridge-family tables that start with `prefix`.
Result<std::vector<std::string>> listBridgeTables(std::string_view prefix, Deadline deadline);

// The script lines that delete a bridge table if it exists ("add" first makes the delete safe).
std::string deleteBridgeTableLines(const std::string& table);

}  // namespace vmm::net
