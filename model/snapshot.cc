#include "model/snapshot.h"

#include "base/time_util.h"
#include "model/names.h"
#include "model/project.h"

namespace vmm::model {

const EnumTable<SnapshotKind> kSnapshotKinds = {{SnapshotKind::internal, "internal"}, {SnapshotKind::external, "external"}};

Result<SnapshotSpec> parseSnapshotSpec(const json& j) {
  SnapshotSpec s;
  JsonReader r(j, "");
  r.optional("name", s.name);
  r.optional("description", s.description);
  r.optional("disk_only", s.diskOnly);
  r.optional("external", s.external);
  r.optional("memory", s.memory);
  r.optional("quiesce", s.quiesce);
  VMM_TRY(r.finish());
  // Absent means "a timestamp"; an empty name given explicitly is refused like any bad name.
  if (j.contains("name")) {
    if (auto st = validateName(s.name, "snapshot name"); !st.ok()) return st.error().wrap("name");
  }
  if (s.description.size() > 4096) return invalidArgument("description: longer than 4096 characters");
  if (s.diskOnly) s.memory = false;
  return s;
}

json formatSnapshot(const Snapshot& s) {
  json disks = json::array();
  for (const auto& d : s.disks) {
    json dj = {{"target", d.target}};
    if (!d.file.empty()) dj["file"] = d.file;
    if (!d.backing.empty()) dj["backing"] = d.backing;
    disks.push_back(dj);
  }
  json j = {{"name", s.name},
            {"domain", s.domain},
            {"parent", s.parent.empty() ? json(nullptr) : json(s.parent)},
            {"description", s.description},
            {"kind", enumName(kSnapshotKinds, s.kind)},
            {"memory", s.memory},
            {"domain_state", s.domainState},
            {"created", formatTimestamp(s.createdUs)},
            {"disks", disks}};
  return j;
}

Result<Snapshot> parseSnapshotRecord(const json& j) {
  Snapshot s;
  JsonReader r(j, "snapshot");
  r.required("name", s.name);
  r.required("domain", s.domain);
  r.optional("parent", s.parent);
  r.optional("description", s.description);
  r.optionalEnum("kind", s.kind, kSnapshotKinds);
  r.optional("memory", s.memory);
  r.optional("domain_state", s.domainState);
  std::string created;
  r.optional("created", created);
  r.objectArray("disks", 256, [&](JsonReader& d, size_t) {
    SnapshotDisk disk;
    d.required("target", disk.target);
    d.optional("file", disk.file);
    d.optional("backing", disk.backing);
    s.disks.push_back(disk);
  });
  r.optionalAny("driver_data", s.driverData);
  VMM_TRY(r.finish());
  // A record names files and QEMU tags by these: read back only what could have been written.
  VMM_TRY(validateName(s.name, "snapshot name"));
  VMM_TRY(validateQualifiedName(s.domain, "domain name"));
  if (!s.parent.empty()) VMM_TRY(validateName(s.parent, "parent snapshot name"));
  if (auto t = parseTimestamp(created)) s.createdUs = *t;
  return s;
}

}  // namespace vmm::model
