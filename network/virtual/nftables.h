// nftables through the `nft` binary: JSON batches on stdin (one atomic transaction each) and
// JSON listings. vmm owns only the tables whose names start with kOwnedTablePrefix (family ip);
// it never adds to, changes or deletes any other table.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/json_reader.h"
#include "model/network.h"

namespace vmm::net::nft {

using model::json;

inline constexpr std::string_view kOwnedTablePrefix = "vmm-net-";

// "vmm-net-<network name>" (network names are [A-Za-z0-9_.-], at most 63 characters).
std::string tableNameFor(const std::string& networkName);

// The rules of one virtual network, all in its own table.
struct NetworkRules {
  std::string table;
  model::NetworkMode mode = model::NetworkMode::nat;
  std::string bridge;
  std::string subnet;  // "10.70.0.0/24"; empty for a network without L3
  std::string uplink;  // empty: any interface other than the bridge
};

// The JSON batch that creates the table and its chains in one transaction ("create table"
// fails if the table exists, so a foreign table of the same name is never taken over).
// Pure: used by the tests to check the rules.
json networkTableBatch(const NetworkRules& rules);

// Runs `nft -j -f -` with `batch` ({"nftables": [...]}) as one transaction.
Status runBatch(const json& batch, Deadline deadline);
// Runs `nft -j <args...>` and returns its parsed JSON output.
Result<json> listJson(const std::vector<std::string>& args, Deadline deadline);

Status createNetworkTable(const NetworkRules& rules, Deadline deadline);
// Deletes table `name` of family ip; succeeds if it does not exist. Refuses names without the
// vmm prefix.
Status deleteOwnedTable(const std::string& name, Deadline deadline);
// Names of the vmm-owned tables (family ip) present now: the daemon removes the ones no
// running network claims at start-up.
Result<std::vector<std::string>> listOwnedTables(Deadline deadline);

}  // namespace vmm::net::nft
