// The typed snapshot contract between the daemon and the drivers: what the daemon asks for
// (SnapshotRequest) and what a driver answers to create, revert and delete. The driver's own
// data (SnapshotResult::driverData) stays JSON because it is persisted with the snapshot and
// handed back unchanged; the daemon never reads inside it. Values: no shared state.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/domain.h"
#include "model/domain_state.h"
#include "model/snapshot.h"

namespace vmm::drivers {

struct SnapshotRequest {
  std::string name{};
  model::SnapshotKind kind = model::SnapshotKind::internal;
  bool memory = false;    // include the guest's memory (running domains only)
  bool quiesce = false;   // freeze guest filesystems through the agent when it answers
  std::string stateDir{}; // a directory for files the snapshot owns (external memory state)
};
// The persisted form of a request (the test driver keeps it in its driver data).
model::json toJson(const SnapshotRequest& r);

// Disks that moved to other files (an external snapshot's overlays, a merge back into the
// base): the daemon points the definition's disks there. Keyed by target ("vda").
struct DiskMoves {
  std::map<std::string, std::string> sources{};
  std::map<std::string, model::DiskFormat> formats{};  // absent: the new file is qcow2
  bool empty() const { return sources.empty(); }
};

struct SnapshotResult {
  model::json driverData = model::json::object();  // stored with the snapshot, given back to revert/delete
  std::vector<model::SnapshotDisk> disks{};
  DiskMoves moves{};
};

struct SnapshotRevertResult {
  // The state the domain is in afterwards when it still runs (running or paused).
  std::optional<model::DomainState> state{};
  DiskMoves moves{};
  // An external snapshot with memory: the daemon starts the domain from this state file.
  std::optional<std::string> restoreFrom{};
};

struct SnapshotDeleteResult {
  DiskMoves moves{};
};

// For drivers whose driver data uses the shared keys {"disks": [{target, file, backing}],
// "disk_sources": {target: file}, "disk_formats": {target: format}}: the typed parts of it.
std::vector<model::SnapshotDisk> snapshotDisksOf(const model::json& data);
DiskMoves diskMovesOf(const model::json& data);

}  // namespace vmm::drivers
