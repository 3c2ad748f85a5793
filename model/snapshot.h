// Domain snapshots: a tree per domain (parent links), internal (inside qcow2 images) or
// external (new overlay files), with or without the guest's memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/json_reader.h"

namespace vmm::model {

enum class SnapshotKind { internal, external };
extern const EnumTable<SnapshotKind> kSnapshotKinds;

struct SnapshotDisk {
  std::string target;   // "vda"
  std::string file;     // external: the overlay created for this snapshot
  std::string backing;  // external: what the overlay sits on
};

struct Snapshot {
  std::string name;
  std::string domain;
  std::string parent;        // empty for a root
  std::string description;
  SnapshotKind kind = SnapshotKind::internal;
  bool memory = false;       // guest RAM and device state included
  std::string domainState;   // "running", "paused", "shutoff" when taken
  int64_t createdUs = 0;
  std::vector<SnapshotDisk> disks;
  json driverData = json::object();  // what the driver needs to revert/delete
};

struct SnapshotSpec {
  std::string name;          // default: a timestamp
  std::string description;
  bool diskOnly = false;
  bool external = false;
  bool memory = true;        // for running domains unless diskOnly
  bool quiesce = true;       // freeze guest filesystems through the agent when present
};

Result<SnapshotSpec> parseSnapshotSpec(const json& j);
json formatSnapshot(const Snapshot& s);
Result<Snapshot> parseSnapshotRecord(const json& j);  // from the state store

}  // namespace vmm::model
