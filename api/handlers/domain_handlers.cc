#include "api/handlers/exec_params.h"
#include "api/handlers/host_access.h"
#include "api/handlers/project_scope.h"
#include "api/registry.h"
#include "api/services.h"
#include "base/fs.h"
#include "base/strings.h"
#include "model/domain.h"
#include "model/libvirt_xml.h"
#include "model/names.h"
#include "model/project.h"

namespace vmm::api {

namespace {

Reply domainReply(const DomainView& v, bool full, int status = 200) {
  Reply r(formatDomainView(v, full), status);
  r.headers.emplace_back("ETag", "\"" + std::to_string(v.generation) + "\"");
  return r;
}

std::string nameOf(const json& p) { return str(p, "name"); }

// A JSON definition, or libvirt domain XML as a string (its warnings go into the reply).
Result<model::Domain> definitionParam(const json& params, std::vector<std::string>* warnings = nullptr) {
  const json& def = params["definition"];
  if (def.is_string()) {
    auto imported = model::importLibvirtXml(def.get<std::string>());
    if (!imported.ok()) return imported.error().wrap("definition");
    if (warnings) *warnings = imported->warnings;
    return std::move(imported->domain);
  }
  auto d = model::parseDomain(def);
  if (!d.ok()) return d.error();
  return d;
}

void addWarnings(Reply& r, const std::vector<std::string>& warnings) {
  if (!warnings.empty() && r.body.is_object()) r.body["warnings"] = warnings;
}

// The checks an async lifecycle call makes before it is accepted, so that a plain mistake
// is a 404/409 right away rather than a failed operation.
// Start and restore are one operation on the service: a start, from a state file or not.
AsyncWork startWork(Services& s, const std::string& name, const StartParams& sp) {
  return AsyncWork{"domains/" + name, [&s, name, sp](OperationContext&) -> Result<json> {
                     VMM_ASSIGN(auto slot, runningSlot(s, name));
                     VMM_ASSIGN(auto v, s.domains.start(name, sp));
                     return formatDomainView(v, false);
                   }};
}

Result<DomainView> precheck(Services& s, const std::string& name, bool wantActive) {
  VMM_ASSIGN(auto v, s.domains.get(name));
  bool active = model::isActive(v.status.state);
  if (wantActive && !active) return conflict("domain " + name + " is not running");
  if (!wantActive && active && !v.job) return conflict("domain " + name + " is already " +
                                                         std::string(model::enumName(model::kDomainStates, v.status.state)));
  return v;
}

Result<ListFilter> listFilter(const json& p) {
  ListFilter f;
  if (p.contains("state") && p["state"].is_string())
    f.state = model::enumFromName(model::kDomainStates, p["state"].get<std::string>());
  if (p.contains("type") && p["type"].is_string()) f.type = model::enumFromName(model::kDriverTypes, p["type"].get<std::string>());
  f.activeOnly = flag(p, "active", false);
  if (p.contains("label") && p["label"].is_string()) {
    for (const auto& sel : split(p["label"].get<std::string>(), ',', true)) {
      auto eq = sel.find('=');
      std::string k = std::string(trim(sel.substr(0, eq)));
      std::string v = eq == std::string::npos ? "" : std::string(trim(sel.substr(eq + 1)));
      if (k.empty()) return invalidArgument("label: empty key in selector " + quote(sel));
      f.labels[k] = v;
    }
  }
  return f;
}

json execResultJson(const drivers::ExecResult& r) {
  json out = {{"exit_code", r.exitCode}, {"signal", r.signal}};
  drivers::addExecOutput(out, r);
  return out;
}

}  // namespace

void bindDomainHandlers(Registry& reg, Services& s) {
  reg.bind("domain.list", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto filter, listFilter(p));
    if (!ctx.allProjects) filter.project = ctx.project;
    uint32_t fields = wire::kAllSummaryFields;
    if (p.contains("fields") && p["fields"].is_string()) {
      if (flag(p, "full", false)) return invalidArgument("fields: not with full (full lists whole domains)");
      VMM_ASSIGN(fields, wire::parseSummaryFields(p["fields"].get<std::string>()));
    }
    if (!flag(p, "full", false)) {
      Reply r;
      r.raw = s.domains.listSummaryText(filter, fields);
      r.inCallerNames = true;  // summaries carry the plain name and the project (formatDomainView)
      return r;
    }
    json out = json::array();
    for (const auto& v : s.domains.list(filter)) out.push_back(formatDomainView(v, true));
    return Reply(std::move(out));
  });

  reg.bind("domain.get", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.domains.get(nameOf(p)));
    auto r = domainReply(v, true);
    // The password of a TCP display: for admins only (in definitions it is always redacted).
    json& runtime = r.body["runtime"];
    if (ctx.may(Role::operate) && runtime.is_object() && runtime.contains("graphics") && runtime["graphics"].is_array()) {
      json& graphics = runtime["graphics"];
      const auto& live = v.liveDef ? v.liveDef : v.def;
      for (size_t i = 0; i < graphics.size() && i < live->graphics.size(); ++i)
        if (live->graphics[i].tcp() && !live->graphics[i].password.empty()) graphics[i]["password"] = live->graphics[i].password;
    }
    return r;
  });

  reg.bind("domain.create", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    std::vector<std::string> warnings;
    VMM_ASSIGN(auto def, definitionParam(p, &warnings));
    if (!ctx.mayTouchHost()) VMM_TRY(requireAdminFor(ctx, model::hostReferences(model::withBridgesAllowed(def, ctx.allowedBridges))));
    VMM_TRY(scopeDefinition(s, ctx, def));
    VMM_ASSIGN(auto claim, s.projects.reserve(ctx.project, {1, def.vcpus, static_cast<int64_t>(def.memory), 0}));
    VMM_ASSIGN(auto v, s.domains.create(std::move(def)));
    claim.release();
    std::string name = v.def->name;
    if (flag(p, "start", false)) {
      auto slot = runningSlot(s, name);
      if (!slot.ok()) return slot.error().wrap("defined " + name + ", but");
      auto started = s.domains.start(name);
      if (!started.ok()) return started.error().wrap("defined " + name + ", but");
      v = *started;
    }
    auto r = domainReply(v, true, 201);
    r.headers.emplace_back("Location", "/v1/domains/" + std::string(model::unqualifyName(name)));
    addWarnings(r, warnings);
    return r;
  });

  reg.bind("domain.xml", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.domains.get(nameOf(p)));
    model::Domain shown = *v.def;
    shown.name = model::unqualifyName(shown.name);
    for (auto& d : shown.disks)
      if (d.source.isVolume()) d.source.volume = model::unqualifyName(d.source.volume);
    if (shown.container && shown.container->rootfs.isVolume())
      shown.container->rootfs.volume = model::unqualifyName(shown.container->rootfs.volume);
    VMM_ASSIGN(auto xml, model::exportLibvirtXml(shown));
    return Reply(json{{"name", shown.name}, {"xml", std::move(xml)}});
  });

  reg.bind("domain.update", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    std::vector<std::string> warnings;
    VMM_ASSIGN(auto def, definitionParam(p, &warnings));
    std::optional<uint64_t> gen;
    if (jsonMember(p, "generation")) {
      VMM_ASSIGN(int64_t g, intParam(p, "generation", 0, 0, INT64_MAX));
      gen = static_cast<uint64_t>(g);
    }
    VMM_TRY(scopeDefinition(s, ctx, def));
    VMM_ASSIGN(auto current, s.domains.get(nameOf(p)));
    if (!ctx.mayTouchHost()) {
      // Host references the domain already has (an admin set them) may stay; new ones may not.
      VMM_TRY(refuseHostRootFor(ctx, *current.def, "changing"));
      VMM_TRY(requireAdminFor(ctx, model::addedHostReferences(model::withBridgesAllowed(def, ctx.allowedBridges), current.def.get())));
    }
    // The update applies only to the generation checked (its quota and host references).
    if (gen && *gen != current.generation)
      return Error{ErrorCode::precondition_failed, "domain " + current.def->name + " is at generation " +
                                                       std::to_string(current.generation) + ", not " + std::to_string(*gen)};
    gen = current.generation;
    VMM_ASSIGN(auto claim, s.projects.reserve(ctx.project, {0, def.vcpus - current.def->vcpus,
                                                            static_cast<int64_t>(def.memory) - static_cast<int64_t>(current.def->memory), 0}));
    VMM_ASSIGN(auto v, s.domains.update(nameOf(p), std::move(def), gen));
    auto r = domainReply(v, true);
    addWarnings(r, warnings);
    return r;
  });

  reg.bind("domain.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_TRY(s.domains.undefine(nameOf(p)));
    return Reply(json::object());
  });

  reg.bindAsync("domain.start", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    std::string name = nameOf(p);
    VMM_ASSIGN(auto view, precheck(s, name, false));
    VMM_TRY(s.projects.checkRunning(ctx.project));
    // A driver that cannot run here (no hypervisor) answers at once, not as a failed operation.
    VMM_TRY(s.domains.driverFor(*view.def));
    StartParams sp;
    sp.paused = flag(p, "paused", false);
    sp.forceBoot = flag(p, "force_boot", false);
    return startWork(s, name, sp);
  });

  reg.bindAsync("domain.restore", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    VMM_TRY(requireAdminFor(ctx, "path"));
    std::string name = nameOf(p);
    VMM_TRY(precheck(s, name, false));
    VMM_TRY(s.projects.checkRunning(ctx.project));
    StartParams sp;
    sp.paused = flag(p, "paused", false);
    sp.restoreFrom = str(p, "path");
    if (sp.restoreFrom.empty() || sp.restoreFrom.front() != '/') return invalidArgument("path: must be an absolute path");
    if (!fs::exists(sp.restoreFrom)) return notFound("path: " + sp.restoreFrom + " does not exist");
    return startWork(s, name, sp);
  });

  reg.bindAsync("domain.save", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    if (!str(p, "path").empty()) VMM_TRY(requireAdminFor(ctx, "path"));
    std::string name = nameOf(p);
    VMM_TRY(precheck(s, name, true));
    SaveParams sp;
    sp.path = str(p, "path");
    if (!sp.path.empty() && sp.path.front() != '/') return invalidArgument("path: must be an absolute path");
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(120000), Millis(24LL * 3600 * 1000)));
    sp.timeout = timeout;
    return AsyncWork{"domains/" + name, [&s, name, sp](OperationContext&) -> Result<json> {
                       VMM_ASSIGN(auto v, s.domains.save(name, sp));
                       return formatDomainView(v, false);
                     }};
  });

  reg.bindAsync("domain.shutdown", [&s](const CallContext&, const json& p) -> Result<AsyncWork> {
    std::string name = nameOf(p);
    VMM_TRY(precheck(s, name, true));
    ShutdownParams sp;
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(60000), Millis(24LL * 3600 * 1000)));
    sp.timeout = timeout;
    sp.force = flag(p, "force", true);
    return AsyncWork{"domains/" + name, [&s, name, sp](OperationContext&) -> Result<json> {
                       VMM_ASSIGN(auto v, s.domains.shutdown(name, sp));
                       return formatDomainView(v, false);
                     }};
  });

  reg.bindAsync("domain.reboot", [&s](const CallContext&, const json& p) -> Result<AsyncWork> {
    std::string name = nameOf(p);
    VMM_TRY(precheck(s, name, true));
    return AsyncWork{"domains/" + name, [&s, name](OperationContext&) -> Result<json> {
                       VMM_ASSIGN(auto v, s.domains.reboot(name));
                       return formatDomainView(v, false);
                     }};
  });

  using Action = Result<DomainView> (DomainService::*)(const std::string&);
  auto simple = [&](const char* op, Action action) {
    reg.bind(op, [&s, action](const CallContext&, const json& p) -> Result<Reply> {
      VMM_ASSIGN(auto v, (s.domains.*action)(nameOf(p)));
      return domainReply(v, false);
    });
  };
  simple("domain.destroy", &DomainService::destroy);
  simple("domain.reset", &DomainService::reset);
  simple("domain.suspend", &DomainService::suspend);
  simple("domain.resume", &DomainService::resume);

  reg.bind("domain.stats", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(5000), Millis(60000)));
    VMM_ASSIGN(auto st, s.domains.stats(nameOf(p), Deadline::after(timeout)));
    return Reply(std::move(st));
  });

  reg.bind("domain.stats_all", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(2000), Millis(60000)));
    return Reply(s.domains.statsAll(Deadline::after(timeout), ctx.allProjects ? std::nullopt : std::optional(ctx.project)));
  });

  // Hotplug: live defaults to "when running", config (persist) to true.
  auto liveFlag = [&s](const json& p) -> Result<bool> {
    if (p.contains("live") && !p["live"].is_null()) return p["live"].get<bool>();
    VMM_ASSIGN(auto v, s.domains.get(nameOf(p)));
    return model::isActive(v.status.state);
  };
  reg.bind("domain.attach_disk", [&s, liveFlag](const CallContext& ctx, const json& p) -> Result<Reply> {
    // Parse the disk through the domain parser so it gets the same validation and defaults.
    auto parsed = model::parseDomain(json{{"name", "probe"}, {"type", "test"}, {"disks", {p["disk"]}}});
    if (!parsed.ok()) {
      auto msg = parsed.error().message;
      if (startsWith(msg, "disks[0]")) msg = "disk" + msg.substr(8);
      return invalidArgument(msg);
    }
    if (!ctx.mayTouchHost() && !model::hostReferences(*parsed).empty()) VMM_TRY(requireAdminFor(ctx, "disk.source.path"));
    VMM_ASSIGN(bool live, liveFlag(p));
    auto disk = parsed->disks[0];
    if (auto st = scopeDiskSource(ctx, disk.source); !st.ok()) return st.error().wrap("disk.source");
    if (disk.source.isVolume()) {
      if (auto st = s.projects.checkPool(ctx.project, disk.source.pool); !st.ok()) return st.error().wrap("disk.source.pool");
    }
    if (!p["disk"].contains("target")) disk.target.clear();
    VMM_ASSIGN(auto v, s.domains.attachDisk(nameOf(p), disk, flag(p, "config", true), live));
    return domainReply(v, true);
  });
  reg.bind("domain.detach_disk", [&s, liveFlag](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(bool live, liveFlag(p));
    VMM_ASSIGN(auto v, s.domains.detachDisk(nameOf(p), str(p, "target"), flag(p, "config", true), live));
    return domainReply(v, true);
  });
  reg.bind("domain.attach_nic", [&s, liveFlag](const CallContext& ctx, const json& p) -> Result<Reply> {
    auto parsed = model::parseDomain(json{{"name", "probe"}, {"type", "test"}, {"nics", {p["nic"]}}});
    if (!parsed.ok()) {
      auto msg = parsed.error().message;
      if (startsWith(msg, "nics[0]")) msg = "nic" + msg.substr(7);
      return invalidArgument(msg);
    }
    if (!ctx.mayTouchHost()) {
      auto refs = model::hostReferences(model::withBridgesAllowed(*parsed, ctx.allowedBridges));
      if (!refs.empty()) VMM_TRY(requireAdminFor(ctx, "nic" + refs.front().field.substr(7)));
    }
    if (!parsed->nics[0].network.empty()) {
      if (auto st = s.projects.checkNetwork(ctx.project, parsed->nics[0].network); !st.ok()) return st.error().wrap("nic.network");
    }
    VMM_ASSIGN(bool live, liveFlag(p));
    VMM_ASSIGN(auto v, s.domains.attachNic(nameOf(p), parsed->nics[0], flag(p, "config", true), live));
    return domainReply(v, true);
  });
  reg.bind("domain.detach_nic", [&s, liveFlag](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(bool live, liveFlag(p));
    auto mac = model::normalizeMac(str(p, "mac"));
    if (!mac.ok()) return mac.error().wrap("mac");
    VMM_ASSIGN(auto v, s.domains.detachNic(nameOf(p), *mac, flag(p, "config", true), live));
    return domainReply(v, true);
  });

  reg.bindAsync("domain.exec", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    std::string name = nameOf(p);
    VMM_TRY(precheck(s, name, true));
    if (!ctx.mayTouchHost()) {
      VMM_ASSIGN(auto v, s.domains.get(name));
      VMM_TRY(refuseHostRootFor(ctx, *v.def, "running commands in"));
    }
    VMM_ASSIGN(auto req, execRequestParam(p));
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(60000), Millis(24LL * 3600 * 1000)));
    return AsyncWork{"domains/" + name, [&s, name, req, timeout](OperationContext&) -> Result<json> {
                       VMM_ASSIGN(auto r, s.domains.guestExec(name, req, Deadline::after(timeout)));
                       return execResultJson(r);
                     }};
  });

  reg.bind("domain.guest", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(10000), Millis(600000)));
    VMM_ASSIGN(auto r, s.domains.guestCommand(nameOf(p), str(p, "command"), json::object(), Deadline::after(timeout)));
    return Reply(std::move(r));
  });

  reg.bind("domain.console_log", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(int64_t bytes, intParam(p, "bytes", 65536, 1, 16 << 20));
    VMM_ASSIGN(auto log, s.domains.consoleLog(nameOf(p), static_cast<size_t>(bytes)));
    return Reply(json{{"log", log}});
  });
}

}  // namespace vmm::api
