#include <openssl/err.h>
#include <openssl/pem.h>

#include <memory>

#include "api/http/http_socket.h"
#include "api/registry.h"
#include "api/services.h"
#include "base/strings.h"
#include "model/project.h"

namespace vmm::api {

namespace {

// The SHA-256 fingerprint of one PEM certificate (what a TLS client presenting it is known by).
Result<std::string> certificateFingerprint(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (!bio) return internalError("certificate: out of memory");
  std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  ERR_clear_error();
  if (!cert) return invalidArgument("certificate: expected one PEM certificate (-----BEGIN CERTIFICATE-----)");
  std::string fingerprint = certificateSha256(cert.get());
  if (fingerprint.empty()) return internalError("certificate: cannot compute its fingerprint");
  return fingerprint;
}

// What a guest printed is for those who may run commands in it: a read principal gets the
// operation without its result.
bool carriesGuestOutput(const model::Operation& op) { return op.kind == "domain.exec" || op.kind == "domain.run"; }

json operationFor(const CallContext& ctx, const model::Operation& op) {
  json j = model::formatOperation(op);
  if (!ctx.may(Role::operate) && carriesGuestOutput(op) && !op.result.is_null()) {
    j["result"] = nullptr;
    j["result_withheld"] = "guest output needs the operator role";
  }
  return j;
}

// An operation on an object of the call's project; principals not bound to a project see
// every project's by id.
Result<model::Operation> visibleOperation(Services& s, const CallContext& ctx, const std::string& id) {
  VMM_ASSIGN(auto op, s.operations.get(id));
  if (ctx.boundProject.empty() || model::projectOfObject(op.object) == ctx.project) return op;
  return notFound("operation " + quote(id) + " not found");
}

}  // namespace

void bindOperationHandlers(Registry& reg, Services& s) {
  reg.bind("operation.list", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    bool activeOnly = flag(p, "active", false);
    json out = json::array();
    // Without results (operation.get has each): a list of a thousand would be megabytes.
    for (const auto& op : s.operations.list(!activeOnly)) {
      if (!ctx.allProjects && model::projectOfObject(op.object) != ctx.project) continue;
      json j = model::formatOperation(op);
      if (!op.result.is_null()) {
        j["result_bytes"] = op.resultBytes;
        j["result"] = nullptr;
      }
      out.push_back(std::move(j));
    }
    return Reply(std::move(out));
  });
  reg.bind("operation.get", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto op, visibleOperation(s, ctx, str(p, "id")));
    return Reply(operationFor(ctx, op));
  });
  reg.bind("operation.wait", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(60000), Millis(3600000)));
    VMM_TRY(visibleOperation(s, ctx, str(p, "id")));
    VMM_ASSIGN(auto op, s.operations.wait(str(p, "id"), Deadline::after(timeout)));
    return Reply(operationFor(ctx, op));
  });
  reg.bind("operation.result", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    VMM_TRY(visibleOperation(s, ctx, str(p, "id")));
    VMM_ASSIGN(auto text, s.operations.fullResult(str(p, "id")));
    Reply r;
    r.raw = std::move(text);
    return r;
  });
  reg.bind("operation.cancel", [&s](const CallContext& ctx, const json& p) -> Result<Reply> {
    std::string id = str(p, "id");
    VMM_TRY(visibleOperation(s, ctx, id));
    VMM_TRY(s.operations.cancel(id));
    VMM_ASSIGN(auto op, s.operations.get(id));
    return Reply(model::formatOperation(op));
  });
}

void bindHostHandlers(Registry& reg, Services& s) {
  reg.bind("host.info", [&s](const CallContext& ctx, const json&) -> Result<Reply> {
    json info = s.hostInfo();
    info["caller"] = {{"principal", ctx.principal}, {"role", roleName(ctx.role)}};
    return Reply(std::move(info));
  });
  auto formatToken = [](const TokenInfo& t) {
    json j = {{"name", t.name},
                {"kind", t.kind},
                {"role", t.role},
                {"description", t.description},
                {"created", formatTimestamp(t.createdUs)},
                {"expires", t.expiresUs ? json(formatTimestamp(t.expiresUs)) : json(nullptr)},
                {"expired", t.expired(wallNowMicros())}};
    if (!t.fingerprint.empty()) j["fingerprint"] = t.fingerprint;
    j["project"] = t.project.empty() ? json(nullptr) : json(t.project);
    return j;
  };
  reg.bind("token.list", [&s, formatToken](const CallContext&, const json&) -> Result<Reply> {
    json out = json::array();
    for (const auto& t : s.tokens.list()) out.push_back(formatToken(t));
    return Reply(std::move(out));
  });
  reg.bind("token.create", [&s](const CallContext&, const json& p) -> Result<Reply> {
    TokenSpec spec{str(p, "name"), str(p, "role"), str(p, "description"), 0, "", str(p, "project")};
    if (!spec.project.empty()) VMM_TRY(s.projects.get(spec.project));
    if (!str(p, "certificate").empty()) {
      VMM_ASSIGN(spec.certificateSha256, certificateFingerprint(str(p, "certificate")));
    }
    VMM_ASSIGN(auto lifetime, durationParam(p, "expires", Millis(0), Millis(366LL * 86400 * 1000)));
    if (lifetime.count() > 0) spec.expiresUs = wallNowMicros() + lifetime.count() * 1000;
    VMM_ASSIGN(auto secret, s.tokens.create(spec));
    s.events.publish("token", "tokens/" + spec.name, {{"event", "created"}, {"name", spec.name}, {"role", spec.role}});
    json out = {{"name", spec.name}, {"role", spec.role}, {"project", spec.project.empty() ? json(nullptr) : json(spec.project)},
                {"expires", spec.expiresUs ? json(formatTimestamp(spec.expiresUs)) : json(nullptr)}};
    out[spec.certificateSha256.empty() ? "token" : "fingerprint"] = secret;
    return Reply(std::move(out), 201);
  });
  reg.bind("audit.list", [&s](const CallContext&, const json& p) -> Result<Reply> {
    AuditQuery q;
    q.principal = str(p, "principal");
    q.method = str(p, "method");
    q.object = str(p, "object");
    VMM_ASSIGN(auto after, intParam(p, "after", 0, 0, INT64_MAX));
    VMM_ASSIGN(auto limit, intParam(p, "limit", 100, 1, 10000));
    q.afterSeq = static_cast<uint64_t>(after);
    q.limit = static_cast<size_t>(limit);
    json out = json::array();
    for (const auto& r : s.audit.list(q)) out.push_back(formatAuditRecord(r));
    return Reply(std::move(out));
  });
  reg.bind("token.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    std::string name = str(p, "name");
    VMM_TRY(s.tokens.remove(name));
    s.events.publish("token", "tokens/" + name, {{"event", "deleted"}, {"name", name}});
    return Reply(json::object());
  });
}

void bindProjectHandlers(Registry& reg, Services& s) {
  auto withUsage = [&s](const model::Project& p) {
    json j = model::formatProject(p);
    j["usage"] = s.projects.usageJson(p.name);
    return j;
  };
  reg.bind("project.list", [&s, withUsage](const CallContext& ctx, const json&) -> Result<Reply> {
    json out = json::array();
    for (const auto& p : s.projects.list())
      if (ctx.boundProject.empty() || p.name == ctx.boundProject) out.push_back(withUsage(p));
    return Reply(std::move(out));
  });
  reg.bind("project.get", [&s, withUsage](const CallContext& ctx, const json& p) -> Result<Reply> {
    std::string name = str(p, "name");
    if (!ctx.boundProject.empty() && name != ctx.boundProject) return notFound("project " + quote(name) + " not found");
    VMM_ASSIGN(auto project, s.projects.get(name));
    return Reply(withUsage(project));
  });
  reg.bind("project.create", [&s, withUsage](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto project, model::parseProject(p["definition"]));
    if (project.name == model::kDefaultProject) return conflict("project default already exists");
    VMM_ASSIGN(auto made, s.projects.create(std::move(project)));
    Reply r(withUsage(made), 201);
    r.headers.emplace_back("Location", "/v1/projects/" + made.name);
    return r;
  });
  reg.bind("project.update", [&s, withUsage](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto project, s.projects.update(str(p, "name"), p["changes"]));
    return Reply(withUsage(project));
  });
  reg.bind("project.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    std::string name = str(p, "name");
    std::vector<std::string> holders;
    for (const auto& t : s.tokens.list())
      if (t.project == name) holders.push_back("token " + t.name);
    VMM_TRY(s.projects.remove(name, holders));
    return Reply(json::object());
  });
}

void bindHandlers(Registry& registry, Services& services) {
  bindProjectHandlers(registry, services);
  bindDomainHandlers(registry, services);
  bindOperationHandlers(registry, services);
  bindHostHandlers(registry, services);
  bindStorageHandlers(registry, services);
  bindNetworkHandlers(registry, services);
  bindSnapshotHandlers(registry, services);
  bindImageHandlers(registry, services);
}

}  // namespace vmm::api
