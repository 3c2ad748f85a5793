// Domain snapshots: taking, reverting and deleting are operations (they can take seconds).
#include "api/handlers/project_scope.h"
#include "api/registry.h"
#include "api/services.h"
#include "model/snapshot.h"

namespace vmm::api {

namespace {

json snapshotJson(const model::Snapshot& s, const std::string& current) {
  json j = model::formatSnapshot(s);
  j["current"] = s.name == current;
  return j;
}

}  // namespace

void bindSnapshotHandlers(Registry& reg, Services& s) {
  reg.bindAsync("snapshot.create", [&s](const CallContext&, const json& p) -> Result<AsyncWork> {
    std::string domain = str(p, "name");
    json specJson = json::object();
    for (const char* key : {"description", "disk_only", "external", "memory", "quiesce"})
      if (p.contains(key)) specJson[key] = p[key];
    if (p.contains("snapshot")) specJson["name"] = p["snapshot"];
    auto spec = model::parseSnapshotSpec(specJson);
    if (!spec.ok()) return spec.error();
    if (auto d = s.domains.get(domain); !d.ok()) return d.error();
    return AsyncWork{"domains/" + domain, [&s, domain, spec = *spec](OperationContext&) -> Result<json> {
                       VMM_ASSIGN(auto snap, s.domains.snapshotCreate(domain, spec));
                       return snapshotJson(snap, snap.name);
                     }};
  });
  reg.bind("snapshot.list", [&s](const CallContext&, const json& p) -> Result<Reply> {
    std::string domain = str(p, "name");
    VMM_ASSIGN(auto list, s.domains.snapshotList(domain));
    VMM_ASSIGN(auto current, s.domains.snapshotCurrent(domain));
    json out = json::array();
    for (const auto& snap : list) out.push_back(snapshotJson(snap, current ? current->name : ""));
    return Reply(std::move(out));
  });
  reg.bind("snapshot.get", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto snap, s.domains.snapshotGet(str(p, "name"), str(p, "snapshot")));
    VMM_ASSIGN(auto current, s.domains.snapshotCurrent(str(p, "name")));
    return Reply(snapshotJson(snap, current ? current->name : ""));
  });
  reg.bind("snapshot.current", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto current, s.domains.snapshotCurrent(str(p, "name")));
    return Reply(current ? snapshotJson(*current, current->name) : json(nullptr));
  });
  reg.bindAsync("snapshot.revert", [&s](const CallContext&, const json& p) -> Result<AsyncWork> {
    std::string domain = str(p, "name"), snapshot = str(p, "snapshot");
    auto snap = s.domains.snapshotGet(domain, snapshot);
    if (!snap.ok()) return snap.error();
    bool starts = snap->memory;  // a shut-off domain reverted to a running state starts
    return AsyncWork{"domains/" + domain, [&s, domain, snapshot, starts](OperationContext&) -> Result<json> {
                       CapacityGate::Ticket slot;
                       if (starts) {
                         VMM_ASSIGN(auto before, s.domains.get(domain));
                         if (!model::isActive(before.status.state)) {
                           VMM_ASSIGN(slot, runningSlot(s, domain));
                         }
                       }
                       VMM_ASSIGN(auto v, s.domains.snapshotRevert(domain, snapshot));
                       return formatDomainView(v, false);
                     }};
  });
  reg.bindAsync("snapshot.delete", [&s](const CallContext&, const json& p) -> Result<AsyncWork> {
    std::string domain = str(p, "name"), snapshot = str(p, "snapshot");
    if (auto snap = s.domains.snapshotGet(domain, snapshot); !snap.ok()) return snap.error();
    bool children = flag(p, "children", false);
    return AsyncWork{"domains/" + domain, [&s, domain, snapshot, children](OperationContext&) -> Result<json> {
                       VMM_TRY(s.domains.snapshotDelete(domain, snapshot, children));
                       return json::object();
                     }};
  });
}

}  // namespace vmm::api
