// Images, launches from images, and disposable runs.
#include "api/handlers/exec_params.h"
#include "api/handlers/host_access.h"
#include "api/handlers/project_scope.h"
#include "api/registry.h"
#include "api/services.h"
#include "base/base64.h"
#include "base/json_util.h"
#include "base/random.h"
#include "model/image.h"

namespace vmm::api {

namespace {

const char* const kLaunchKeys[] = {"image", "name", "memory", "vcpus", "networks", "full_copy",
                                   "remove_on_stop", "labels", "cloud_init", "customize", "start"};

Result<model::LaunchSpec> launchSpecParam(const json& p) {
  json spec = json::object();
  for (const char* key : kLaunchKeys)
    if (p.contains(key) && !p[key].is_null()) spec[key] = p[key];
  VMM_ASSIGN(auto launch, model::parseLaunchSpec(spec));
  // The operation table checked ttl as a duration (a string like "30m", or seconds).
  VMM_ASSIGN(auto ttl, durationParam(p, "ttl", Millis(0), Millis(366LL * 86400 * 1000)));
  launch.ttlMs = ttl.count();
  return launch;
}

ImageProgress progressOf(OperationContext& ctx) {
  ImageProgress pr;
  pr.report = [&ctx](int pct, const std::string& msg) { ctx.setProgress(pct, msg); };
  pr.cancelled = [&ctx] { return ctx.cancelled(); };
  return pr;
}

RunHooks hooksOf(OperationContext& ctx, EventBus* events = nullptr, const std::string& project = "") {
  RunHooks h;
  // A run's output is published as it arrives: "operation.output" events on the operation.
  if (events)
    h.output = [events, &ctx, project](int stream, std::string_view data) {
      // As in the result: text, and the exact bytes as base64 when they are not UTF-8.
      json note = {{"operation", ctx.id()}, {"stream", stream == 2 ? "stderr" : "stdout"}, {"data", toValidUtf8(data)}};
      if (!isValidUtf8(data)) note["data_b64"] = base64Encode(data);
      events->publish("operation.output", "operations/" + ctx.id(), std::move(note), project);
    };
  h.progress = [&ctx](int pct, const std::string& msg) { ctx.setProgress(pct, msg); };
  h.cancelled = [&ctx] { return ctx.cancelled(); };
  h.onCancel = [&ctx](std::function<void()> fn) { ctx.onCancel(std::move(fn)); };
  return h;
}

}  // namespace

namespace {

// A launch copies the image's template into a new definition: below admin, the template may
// name no host path or device (an admin may have imported one that does) - the image's own
// kernel, a pool volume, aside.
Status launchableBy(Services& s, const CallContext& ctx, const std::string& image) {
  VMM_ASSIGN(auto img, s.images.get(image));
  if (ctx.mayTouchHost() || img.domainTemplate.is_null() || img.domainTemplate.empty()) return {};
  VMM_ASSIGN(auto probe, model::domainTemplateProbe(img.domainTemplate, false));
  auto refs = model::hostReferences(probe);
  if (!refs.empty() || model::grantsHostRoot(probe))
    return permissionDenied("launching image " + image + " needs the admin role: its template names the host (" +
                            (refs.empty() ? std::string("a writable host mount") : "template." + refs.front().field) + "); " +
                            ctx.principal + " has the " + std::string(roleName(ctx.role)) + " role");
  return {};
}

// An image's size is known only once it is in the pool: one that takes its project past
// limits.disk is removed again.
Status withinDiskLimit(Services& s, const model::Image& image) {
  auto st = s.projects.checkDisk(std::string(model::projectOf(image.name)));
  if (st.ok()) return {};
  (void)s.images.remove(image.name);
  return st.error().wrap("image " + std::string(model::unqualifyName(image.name)) + " was imported and removed again");
}

// A launch's image and domain name inside the caller's project (a name is made from the
// image's when none is given).
Status scopeLaunch(Services& s, const CallContext& ctx, model::LaunchSpec& spec) {
  if (spec.name.empty()) spec.name = spec.image.substr(0, 40) + "-" + randomHex(3);
  VMM_ASSIGN(spec.name, scopedName(ctx, spec.name, "domain"));
  VMM_ASSIGN(spec.image, scopedImage(s, ctx, spec.image));
  return launchableBy(s, ctx, spec.image);
}

}  // namespace

void bindImageHandlers(Registry& reg, Services& s) {
  // A project sees its own images and the default project's, which it may launch (within
  // restrictions.images); each with its project.
  reg.bind("image.list", [&s](const CallContext& ctx, const json&) -> Result<Reply> {
    json out = json::array();
    for (const auto& i : s.images.list()) {
      std::string_view project = model::projectOf(i.name);
      if (!ctx.allProjects && project != ctx.project && project != model::kDefaultProject) continue;
      json j = model::formatImage(i);
      j["project"] = project;
      out.push_back(std::move(j));
    }
    return Reply(std::move(out));
  });
  reg.bind("image.get", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    // The project's own, else the default project's (listed to every project, launchable by it).
    std::string name = str(p, "name");
    auto i = s.images.get(name);
    if (!i.ok() && ctx.project != model::kDefaultProject) i = s.images.get(std::string(model::unqualifyName(name)));
    if (!i.ok()) return i.error();
    json j = model::formatImage(*i);
    j["project"] = model::projectOf(i->name);
    return Reply(std::move(j));
  });
  reg.bindAsync("image.import", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    for (const char* field : {"file", "kernel", "initrd"})
      if (!str(p, field).empty()) VMM_TRY(requireAdminFor(ctx, field));
    VMM_ASSIGN(auto spec, model::parseImageImportSpec(p));
    spec.publicUrlOnly = !ctx.mayTouchHost();
    if (!spec.domainTemplate.is_null() && !ctx.mayTouchHost()) {
      // Launches copy the template into their definitions: it may not name the host either.
      VMM_ASSIGN(auto probe, model::domainTemplateProbe(spec.domainTemplate, false));
      VMM_TRY(requireAdminFor(ctx, model::hostReferences(probe)));
    }
    if (s.images.get(spec.name).ok()) return conflict("image " + spec.name + " already exists");
    VMM_TRY(s.projects.reserve(ctx.project, {0, 0, 0, 1}));  // a project at its disk limit imports nothing
    return AsyncWork{"images/" + spec.name, [&s, spec](OperationContext& ctx) -> Result<json> {
                       VMM_ASSIGN(auto i, s.images.import(spec, progressOf(ctx)));
                       VMM_TRY(withinDiskLimit(s, i));
                       return model::formatImage(i);
                     }};
  });
  reg.bindAsync("image.from_domain", [&s](const CallContext& call, const json& p) -> Result<AsyncWork> {
    TemplateFromDomainSpec spec{str(p, "name"), str(p, "domain"), str(p, "description"), str(p, "os"), str(p, "default_user")};
    VMM_TRY(model::validateImageName(spec.name));
    if (s.images.get(spec.name).ok()) return conflict("image " + spec.name + " already exists");
    VMM_TRY(s.projects.reserve(call.project, {0, 0, 0, 1}));
    VMM_TRY(s.domains.get(spec.domain));
    return AsyncWork{"images/" + spec.name, [&s, spec](OperationContext& ctx) -> Result<json> {
                       VMM_ASSIGN(auto i, s.images.fromDomain(spec, progressOf(ctx)));
                       VMM_TRY(withinDiskLimit(s, i));
                       return model::formatImage(i);
                     }};
  });
  reg.bind("image.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_TRY(s.images.remove(str(p, "name")));
    return Reply(json::object());
  });

  reg.bindAsync("domain.launch", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    VMM_ASSIGN(auto spec, launchSpecParam(p));
    VMM_TRY(scopeLaunch(s, ctx, spec));
    return AsyncWork{"domains/" + spec.name, [&s, spec](OperationContext& ctx) -> Result<json> {
                       VMM_ASSIGN(auto v, s.instances.launch(spec, hooksOf(ctx)));
                       return formatDomainView(v, false);
                     }};
  });
  reg.bindAsync("domain.run", [&s](const CallContext& ctx, const json& p) -> Result<AsyncWork> {
    RunSpec spec;
    VMM_ASSIGN(spec.launch, launchSpecParam(p));
    VMM_TRY(scopeLaunch(s, ctx, spec.launch));
    VMM_ASSIGN(auto req, execRequestParam(p));
    spec.argv = std::move(req.argv);
    spec.env = std::move(req.env);
    spec.input = std::move(req.input);
    VMM_ASSIGN(spec.timeout, durationParam(p, "timeout", Millis(3600 * 1000), Millis(7LL * 86400 * 1000)));
    VMM_ASSIGN(spec.bootTimeout, durationParam(p, "boot_timeout", Millis(300000), Millis(86400 * 1000)));
    spec.remove = flag(p, "remove", true);
    return AsyncWork{"domains/" + spec.launch.name,
                     [&s, spec](OperationContext& ctx) -> Result<json> {
                       return s.instances.run(spec, hooksOf(ctx, &s.events, std::string(model::projectOf(spec.launch.name))));
                     }};
  });
  reg.bind("domain.remove", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_TRY(s.instances.remove(str(p, "name"), "removed on request"));
    return Reply(json::object());
  });
}

}  // namespace vmm::api
