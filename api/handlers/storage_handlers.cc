// Pools and volumes. Byte transfers (upload, download) are streams, served by the transports.
#include "api/registry.h"
#include "api/services.h"
#include "base/strings.h"
#include "model/names.h"
#include "model/project.h"
#include "model/pool.h"
#include "model/units.h"

namespace vmm::api {

namespace {


Result<uint64_t> sizeParam(const json& p, const std::string& key) {
  const json* v = jsonMember(p, key);
  if (auto bytes = v ? jsonUintValue(*v) : std::nullopt) return *bytes;
  auto text = jsonString(p, key);
  if (!text) return invalidArgument(key + ": expected a size such as \"10G\"");
  auto parsed = model::parseSize(*text);
  if (!parsed.ok()) return parsed.error().wrap(key);
  return parsed;
}

json volumeList(const std::vector<model::Volume>& vols) {
  json out = json::array();
  for (const auto& v : vols) out.push_back(model::formatVolume(v));
  return out;
}

}  // namespace

void bindStorageHandlers(Registry& reg, Services& s) {
  reg.bind("pool.list", [&s](const CallContext&, const json&) -> Result<Reply> {
    json out = json::array();
    for (const auto& v : s.pools.list()) out.push_back(formatPoolView(v));
    return Reply(std::move(out));
  });
  reg.bind("pool.get", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.pools.get(str(p, "name")));
    return Reply(formatPoolView(v));
  });
  reg.bind("pool.create", [&s](const CallContext&, const json& p) -> Result<Reply> {
    auto def = model::parsePool(p["definition"]);
    if (!def.ok()) return def.error();
    PoolCreateParams params;
    params.build = flag(p, "build", false);
    params.start = flag(p, "start", true);
    std::string name = def->name;
    VMM_ASSIGN(auto v, s.pools.create(std::move(*def), params));
    Reply r(formatPoolView(v), 201);
    r.headers.emplace_back("Location", "/v1/pools/" + name);
    return r;
  });
  reg.bind("pool.start", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.pools.start(str(p, "name")));
    return Reply(formatPoolView(v));
  });
  reg.bind("pool.stop", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.pools.stop(str(p, "name")));
    return Reply(formatPoolView(v));
  });
  reg.bind("pool.refresh", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.pools.refresh(str(p, "name")));
    return Reply(formatPoolView(v));
  });
  reg.bind("pool.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_TRY(s.pools.remove(str(p, "name"), flag(p, "storage", false)));
    return Reply(json::object());
  });

  reg.bind("volume.list", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto vols, s.pools.listVolumes(str(p, "pool")));
    std::erase_if(vols, [&](const model::Volume& v) { return !listable(ctx, v.name); });
    return Reply(volumeList(vols));
  });
  reg.bind("volume.get", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.pools.getVolume(str(p, "pool"), str(p, "name")));
    return Reply(model::formatVolume(v));
  });
  reg.bind("volume.create", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    auto spec = model::parseVolumeSpec(p["volume"]);
    if (!spec.ok()) return spec.error();
    if (!spec->fromTar.empty()) VMM_TRY(requireAdminFor(ctx, "volume.from_tar"));
    VMM_TRY(s.projects.checkPool(ctx.project, str(p, "pool")));
    VMM_ASSIGN(spec->name, scopedName(ctx, spec->name, "volume"));
    if (!spec->backingVolume.empty()) {
      if (auto b = scopedName(ctx, spec->backingVolume, "volume"); b.ok()) spec->backingVolume = *b;
      else return b.error().wrap("backing_volume");
    }
    // A linked clone without a capacity of its own takes its backing volume's.
    uint64_t bytes = spec->capacity;
    if (!spec->backingVolume.empty())
      if (auto b = s.pools.getVolume(str(p, "pool"), spec->backingVolume); b.ok()) bytes = std::max(bytes, b->capacity);
    VMM_ASSIGN(auto claim, s.projects.reserve(ctx.project, {0, 0, 0, bytes}));
    VMM_ASSIGN(auto v, s.pools.createVolume(str(p, "pool"), *spec));
    Reply r(model::formatVolume(v), 201);
    r.headers.emplace_back("Location", "/v1/pools/" + str(p, "pool") + "/volumes/" + std::string(model::unqualifyName(v.name)));
    return r;
  });
  reg.bind("volume.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_TRY(s.pools.deleteVolume(str(p, "pool"), str(p, "name")));
    return Reply(json::object());
  });
  reg.bind("volume.resize", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto capacity, sizeParam(p, "capacity"));
    if (capacity == 0) return invalidArgument("capacity: must be greater than 0");
    VMM_ASSIGN(auto current, s.pools.getVolume(str(p, "pool"), str(p, "name")));
    VMM_ASSIGN(auto claim, s.projects.reserve(ctx.project, {0, 0, 0, capacity > current.capacity ? capacity - current.capacity : 0}));
    VMM_ASSIGN(auto v, s.pools.resizeVolume(str(p, "pool"), str(p, "name"), capacity, flag(p, "shrink", false)));
    return Reply(model::formatVolume(v));
  });
  reg.bindAsync("volume.clone", [&s](const CallContext& call, const json& p) -> Result<AsyncWork> {
    std::string pool = str(p, "pool"), source = str(p, "name"), target = str(p, "target");
    if (auto st = model::validateQualifiedVolumeName(target); !st.ok()) return st.error().wrap("target");
    // A missing pool or source is a 404 now, not a failed operation.
    auto v = s.pools.getVolume(pool, source);
    if (!v.ok()) return v.error();
    VMM_TRY(s.projects.checkPool(call.project, pool));
    // Held until the clone is done (or failed): then it is counted in the pool, or not at all.
    VMM_ASSIGN(auto reserved, s.projects.reserve(call.project, {0, 0, 0, v->capacity}));
    auto claim = std::make_shared<ProjectService::Reservation>(std::move(reserved));
    bool linked = flag(p, "linked", true);
    return AsyncWork{"pools/" + pool + "/volumes/" + target, [&s, pool, source, target, linked, claim](OperationContext& ctx) -> Result<json> {
                       VolumeCloneParams params;
                       params.name = target;
                       params.linked = linked;
                       params.progress = [&ctx](double f) { ctx.setProgress(static_cast<int>(f * 100), "copying"); };
                       params.cancelled = [&ctx] { return ctx.cancelled(); };
                       VMM_ASSIGN(auto v, s.pools.cloneVolume(pool, source, params));
                       return model::formatVolume(v);
                     }};
  });
  reg.bindAsync("volume.wipe", [&s](const CallContext&, const json& p) -> Result<AsyncWork> {
    std::string pool = str(p, "pool"), name = str(p, "name");
    // A missing volume or one a domain uses is refused now, not as a failed operation.
    auto v = s.pools.getVolume(pool, name);
    if (!v.ok()) return v.error();
    if (!v->usedBy.empty()) return conflict("volume " + pool + "/" + name + " is used by domain " + join(v->usedBy, ", "));
    return AsyncWork{"pools/" + pool + "/volumes/" + name, [&s, pool, name](OperationContext&) -> Result<json> {
                       VMM_ASSIGN(auto v, s.pools.wipeVolume(pool, name));
                       return model::formatVolume(v);
                     }};
  });
}

}  // namespace vmm::api
