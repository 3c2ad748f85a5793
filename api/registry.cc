#include "api/registry.h"

#include <algorithm>
#include <set>

#include "base/json_util.h"
#include "base/log.h"
#include "base/strings.h"
#include "model/json_reader.h"
#include "model/names.h"

namespace vmm::api {

Registry::Registry(OperationManager& operations) : operations_(operations) {
  for (const auto& spec : operationSpecs()) entries_[spec.name].spec = &spec;
}

void Registry::bind(const std::string& name, Handler handler) {
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.spec->async) {
    log::error("binding a handler to an unknown or async operation", {{"operation", name}});
    std::abort();
  }
  it->second.handler = std::move(handler);
}

void Registry::bindAsync(const std::string& name, AsyncHandler handler) {
  auto it = entries_.find(name);
  if (it == entries_.end() || !it->second.spec->async) {
    log::error("binding an async handler to an unknown or sync operation", {{"operation", name}});
    std::abort();
  }
  it->second.asyncHandler = std::move(handler);
}

std::vector<std::string> Registry::unbound() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_)
    if (!e.handler && !e.asyncHandler) out.push_back(name);
  return out;
}

Result<Millis> durationParam(const json& params, const std::string& key, Millis fallback, Millis max) {
  auto it = params.find(key);
  if (it == params.end() || it->is_null()) return fallback;
  std::optional<Millis> d;
  auto tooLong = [&] { return invalidArgument(key + ": at most " + formatDuration(max)); };
  if (it->is_string()) {
    d = parseDuration(it->get<std::string>());
  } else if (auto secs = jsonUintValue(*it)) {
    // Seconds, compared before scaling so that no count of seconds can wrap.
    if (*secs > static_cast<uint64_t>(max.count() / 1000)) return tooLong();
    d = Millis(static_cast<int64_t>(*secs) * 1000);
  }
  if (!d) return invalidArgument(key + ": expected a duration such as \"30s\", \"500ms\" or \"5m\"");
  if (*d > max) return tooLong();
  return *d;
}

Result<int64_t> intParam(const json& params, const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  const json* v = jsonMember(params, key);
  if (!v) return fallback;
  auto range = [&] { return invalidArgument(key + ": must be between " + std::to_string(min) + " and " + std::to_string(max)); };
  if (!v->is_number_integer()) return invalidArgument(key + ": expected an integer, got " + model::jsonTypeName(*v));
  auto x = jsonIntValue(*v);
  if (!x || *x < min || *x > max) return range();
  return *x;
}

Status Registry::validate(const OperationSpec& spec, json& params) const {
  if (params.is_null()) params = json::object();
  if (!params.is_object()) return invalidArgument("params: expected an object, got " + model::jsonTypeName(params));
  std::set<std::string> known;
  for (const auto& p : spec.params) {
    known.insert(p.name);
    auto it = params.find(p.name);
    if (it == params.end() || it->is_null()) {
      if (p.required) return invalidArgument(p.name + ": required parameter is missing");
      continue;
    }
    const json& v = *it;
    bool typeOk = true;
    switch (p.type) {
      case ParamType::string: typeOk = v.is_string(); break;
      case ParamType::integer: typeOk = v.is_number_integer(); break;
      case ParamType::boolean: typeOk = v.is_boolean(); break;
      case ParamType::object: typeOk = v.is_object() || (p.name == "definition" && v.is_string()); break;
      case ParamType::array: typeOk = v.is_array(); break;
      case ParamType::duration: typeOk = v.is_string() || v.is_number_integer(); break;
      case ParamType::any: break;
    }
    if (!typeOk)
      return invalidArgument(p.name + ": expected " + std::string(paramTypeName(p.type)) + ", got " + model::jsonTypeName(v));
    if (p.type == ParamType::duration) VMM_TRY(durationParam(params, p.name, Millis(0), Millis(366LL * 86400 * 1000)));
    if (!p.choices.empty() && v.is_string() &&
        std::find(p.choices.begin(), p.choices.end(), v.get<std::string>()) == p.choices.end())
      return invalidArgument(p.name + ": unknown value " + quote(v.get<std::string>()) + " (expected one of: " +
                             join(p.choices, ", ") + ")");
  }
  for (auto it = params.begin(); it != params.end(); ++it)
    if (!known.count(it.key())) return invalidArgument(it.key() + ": unknown parameter of " + spec.name);
  return {};
}

Status requireAdminFor(const CallContext& ctx, const std::string& field) {
  if (ctx.mayTouchHost()) return {};
  if (ctx.may(Role::admin))
    return permissionDenied(field + ": project " + ctx.project + " is restricted: no host paths or host devices in it, "
                            "for any role (restrictions.restricted)");
  return permissionDenied(field + ": host paths and host devices need the admin role; " + ctx.principal + " has the " +
                          std::string(roleName(ctx.role)) + " role");
}

Status Registry::enterProject(CallContext& ctx, json& params) const {
  std::string wanted;
  bool all = false;
  if (params.is_object()) {
    if (auto it = params.find("project"); it != params.end()) {
      if (!it->is_null() && !it->is_string()) return invalidArgument("project: expected a string");
      if (it->is_string()) wanted = it->get<std::string>();
      params.erase(it);
    }
    if (auto it = params.find("all_projects"); it != params.end()) {
      if (!it->is_null() && !it->is_boolean()) return invalidArgument("all_projects: expected a boolean");
      all = it->is_boolean() && it->get<bool>();
      params.erase(it);
    }
  }
  if (!ctx.boundProject.empty()) {
    if (!wanted.empty() && wanted != ctx.boundProject)
      return permissionDenied("project " + quote(wanted) + ": " + ctx.principal + " is bound to project " + ctx.boundProject);
    if (all) return permissionDenied("all_projects: " + ctx.principal + " is bound to project " + ctx.boundProject);
    wanted = ctx.boundProject;
  }
  if (wanted.empty()) wanted = std::string(model::kDefaultProject);
  VMM_TRY(model::validateProjectName(wanted));
  std::optional<model::Project> project;
  if (projects_) project = projects_(wanted);
  else if (wanted == model::kDefaultProject) {
    project = model::Project();
    project->name = wanted;
    project->restrictions.restricted = false;
  }
  if (!project) return notFound("project " + quote(wanted) + " not found");
  ctx.project = wanted;
  ctx.allProjects = all;
  ctx.restricted = project->restrictions.restricted;
  ctx.allowedBridges = project->restrictions.bridges;
  return {};
}

Result<std::string> Registry::enterStream(CallContext& ctx, const std::string& project, const std::string& name,
                                          std::string_view kind) const {
  json scope = json::object();
  if (!project.empty()) scope["project"] = project;
  VMM_TRY(enterProject(ctx, scope));
  return scopedName(ctx, name, kind);
}

namespace {

bool readableWhenBound(const std::string& method) {
  for (const char* m : {"host.info", "project.list", "project.get", "pool.list", "pool.get", "network.list", "network.get"})
    if (method == m) return true;
  return false;
}

// Parameters that name an object of the call's project, and what they name: those in the
// object template ("domains/{name}"), and these.
struct ScopedParam {
  const char* operation;
  const char* param;
  const char* kind;  // domain, volume or image
};
constexpr ScopedParam kScopedBodyParams[] = {
    {"image.import", "name", "image"},
    {"image.from_domain", "name", "image"},
    {"image.from_domain", "domain", "domain"},
    {"volume.clone", "target", "volume"},
};

Status scopeParam(const CallContext& ctx, json& params, const std::string& param, std::string_view kind) {
  auto it = params.find(param);
  if (it == params.end() || !it->is_string()) return {};
  VMM_ASSIGN(auto name, scopedName(ctx, it->get<std::string>(), kind));
  *it = std::move(name);
  return {};
}

Status scopeParams(const CallContext& ctx, const OperationSpec& spec, json& params) {
  const std::string& t = spec.object;
  for (std::string_view kind : {"domain", "volume", "image"}) {
    std::string marker = std::string(kind) + "s/{";
    for (size_t at = t.find(marker); at != std::string::npos; at = t.find(marker, at + 1)) {
      if (at > 0 && t[at - 1] != '/') continue;
      size_t open = at + marker.size() - 1, close = t.find('}', open);
      if (close == std::string::npos) break;
      VMM_TRY(scopeParam(ctx, params, t.substr(open + 1, close - open - 1), kind));
    }
  }
  for (const auto& sp : kScopedBodyParams)
    if (spec.name == sp.operation) VMM_TRY(scopeParam(ctx, params, sp.param, sp.kind));
  return {};
}

}  // namespace

Result<std::string> scopedName(const CallContext& ctx, std::string_view name, std::string_view kind) {
  std::string what = std::string(kind) + " name";
  if (ctx.project == model::kDefaultProject) {
    // Plain names pass as they are (a volume a pool found on disk may not follow the API's
    // naming rule); a qualified one would reach into another project.
    if (!name.empty() && name.front() == '_')
      return invalidArgument(what + " " + quote(name) + " must start with a letter or digit");
    return std::string(name);
  }
  if (kind == "volume") {
    VMM_TRY(model::validateVolumeName(name));
    if (model::qualifyName(ctx.project, name).size() > 255)
      return invalidArgument("volume name " + quote(name.substr(0, 20)) + "... is too long for project " + ctx.project);
  } else {
    VMM_TRY(model::validateScopedName(ctx.project, name, what));
  }
  return model::qualifyName(ctx.project, name);
}

namespace {

// The object a call acts on, for the audit trail: the spec's template with the call's
// parameters in it ("pools/{pool}/volumes/{name}"), and a collection's new member by name.
std::string auditObject(const OperationSpec& spec, const json& params) {
  auto bounded = [](std::string v) {
    if (v.size() > 256) v.resize(256);
    return v;
  };
  std::string out;
  const std::string& t = spec.object;
  for (size_t i = 0; i < t.size(); ++i) {
    size_t end = t[i] == '{' ? t.find('}', i) : std::string::npos;
    if (end == std::string::npos) {
      out += t[i];
      continue;
    }
    std::string v = str(params, t.substr(i + 1, end - i - 1).c_str());
    out += v.empty() ? t.substr(i, end - i + 1) : bounded(std::move(v));
    i = end;
  }
  if (t.find('{') == std::string::npos) {
    std::string name = str(params, "name");
    if (const json* d = params.is_object() ? jsonMember(params, "definition") : nullptr; name.empty() && d && d->is_object())
      name = jsonStringOr(*d, "name", "");
    if (!name.empty()) out += "/" + bounded(std::move(name));
  }
  return out;
}

}  // namespace

Result<Reply> Registry::call(const CallContext& ctx, const std::string& name, json params) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return notFound("unknown method " + quote(name));
  Entry& e = it->second;
  auto t0 = SteadyClock::now();
  std::string operationId, object;
  CallContext scoped = ctx;
  auto run = [&]() -> Result<Reply> {
    if (!ctx.may(e.spec->role))
      return permissionDenied(name + " needs the " + std::string(roleName(e.spec->role)) + " role; " + ctx.principal +
                              " has the " + std::string(roleName(ctx.role)) + " role");
    VMM_TRY(validate(*e.spec, params));
    // Only calls on a project's objects take `project` (token.create's binds the token).
    bool projectScoped = std::any_of(e.spec->params.begin(), e.spec->params.end(),
                                     [](const ParamSpec& ps) { return ps.name == "project" && ps.in == ParamIn::query; });
    json none = json::object();
    VMM_TRY(enterProject(scoped, projectScoped ? params : none));
    // A principal bound to a project acts on that project's objects only: the host's pools,
    // networks, tokens, projects and audit trail it may at most look at.
    if (!ctx.boundProject.empty() && !projectScoped && !readableWhenBound(name))
      return permissionDenied(name + ": " + ctx.principal + " is bound to project " + ctx.boundProject +
                              " and may act on its objects only");
    VMM_TRY(scopeParams(scoped, *e.spec, params));
    if (!e.spec->async) {
      if (!e.handler) return unsupported(name + " is not implemented by this vmmd");
      return e.handler(scoped, params);
    }
    if (!e.asyncHandler) return unsupported(name + " is not implemented by this vmmd");
    VMM_ASSIGN(auto work, e.asyncHandler(scoped, params));
    object = work.object;
    VMM_ASSIGN(auto op, operations_.submit({name, work.object, e.spec->cancellable, ctx.principal}, std::move(work.task)));
    operationId = op.id;
    Reply r(model::formatOperation(op), 202);
    r.headers.emplace_back("Location", "/v1/operations/" + op.id);
    return r;
  };
  // Nothing a handler throws may reach the transport's thread (the event loop for quick calls).
  Result<Reply> result = internalError(name + " did not run");
  try {
    result = run();
  } catch (const std::exception& ex) {
    log::error("call threw", {{"method", name}, {"principal", ctx.principal}, {"exception", ex.what()}});
    result = internalError(name + ": unexpected failure: " + ex.what());
  } catch (...) {
    log::error("call threw", {{"method", name}, {"principal", ctx.principal}, {"exception", "unknown"}});
    result = internalError(name + ": unexpected failure");
  }
  // A caller of another project knows its objects by their plain names.
  if (scoped.project != model::kDefaultProject && !scoped.allProjects && !(result.ok() && result->inCallerNames)) {
    if (!result.ok()) {
      Error e = result.error();
      e.message = model::unqualifyText(e.message, scoped.project);
      result = std::move(e);
    } else if (!result->raw.empty()) {
      auto parsed = json::parse(result->raw, nullptr, false);
      model::unqualifyJson(parsed, scoped.project);
      result->body = std::move(parsed);
      result->raw.clear();
    } else {
      model::unqualifyJson(result->body, scoped.project);
    }
  }
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count();
  e.counters->calls++;
  e.counters->micros += static_cast<uint64_t>(micros);
  if (e.spec->role != Role::read)
    audit(scoped, name, object.empty() ? auditObject(*e.spec, params) : std::move(object),
          result.ok() ? Status() : Status(result.error()), std::move(operationId), micros);
  if (!result.ok()) {
    e.counters->errors++;
    if (result.error().code == ErrorCode::internal)
      log::error("call failed", {{"method", name}, {"principal", ctx.principal}, {"error", result.error().message}});
  }
  return result;
}

void Registry::audit(const CallContext& ctx, const std::string& method, std::string object, const Status& result,
                     std::string operationId, int64_t micros) {
  if (!audit_) return;
  // Messages echo what callers sent (an unknown parameter's name): bounded, like the object,
  // and cut on a character boundary.
  auto bounded = [](std::string s) {
    if (s.size() <= 512) return s;
    s.resize(512);
    return toValidUtf8(s);
  };
  AuditRecord r;
  r.timeUs = wallNowMicros();
  r.principal = bounded(ctx.principal);
  r.role = roleName(ctx.role);
  r.project = ctx.project;
  r.transport = ctx.transport;
  r.method = method;
  r.object = bounded(model::unqualifyText(object, ctx.project));
  r.result = result.ok() ? "ok" : std::string(errorCodeName(result.error().code));
  if (!result.ok()) r.message = bounded(result.error().message);
  r.operation = std::move(operationId);
  r.durationUs = micros;
  audit_->record(std::move(r));
}

void Registry::recordRefusal(const CallContext& ctx, const OperationSpec& spec, const json& params, const Error& error) {
  audit(ctx, spec.name, auditObject(spec, params), error, "", 0);
}

void Registry::record(const CallContext& ctx, const std::string& method, const std::string& object, const Status& result) {
  audit(ctx, method, object, result, "", 0);
}

std::string Registry::metricsText() const {
  std::string out;
  out += "# HELP vmm_api_calls_total API calls by operation.\n# TYPE vmm_api_calls_total counter\n";
  for (const auto& [name, e] : entries_)
    out += "vmm_api_calls_total{operation=\"" + name + "\"} " + std::to_string(e.counters->calls.load()) + "\n";
  out += "# HELP vmm_api_errors_total API calls that failed, by operation.\n# TYPE vmm_api_errors_total counter\n";
  for (const auto& [name, e] : entries_)
    out += "vmm_api_errors_total{operation=\"" + name + "\"} " + std::to_string(e.counters->errors.load()) + "\n";
  out += "# HELP vmm_api_call_seconds_total Time spent in API calls, by operation.\n# TYPE vmm_api_call_seconds_total counter\n";
  for (const auto& [name, e] : entries_) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(e.counters->micros.load()) / 1e6);
    out += "vmm_api_call_seconds_total{operation=\"" + name + "\"} " + buf + "\n";
  }
  return out;
}

}  // namespace vmm::api
