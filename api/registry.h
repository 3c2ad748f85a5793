// Binds handlers to the operation table and runs calls for both transports: access check,
// parameter validation against the spec (unknown, missing and mistyped parameters are
// rejected before anything runs), sync handlers or async operations, and per-operation
// metrics. Both transports call Registry::call, so they share handlers, errors and JSON.
//
// Thread-safety: bind() before serving; call() from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/audit.h"
#include "api/spec.h"
#include "base/json_util.h"
#include "base/result.h"
#include "daemon/operation_manager.h"
#include "model/project.h"

namespace vmm::api {

using json = nlohmann::json;

struct CallContext {
  Role role = Role::read;  // what the caller may do
  std::string principal;   // "uid 0", "token ci"
  std::string transport;   // "rpc" or "http"
  std::string peer;        // whom per-peer caps count: "uid 1000", "token ci" (principal when empty)
  // Set by transports: the one project the principal is bound to ("" - it picks one per call).
  std::string boundProject;
  // Set by Registry::call from the call's `project` and `all_projects` parameters.
  std::string project = "default";  // where the call acts (model/project.h)
  bool allProjects = false;         // a list over every project
  bool restricted = false;          // the project refuses host references to every role
  std::vector<std::string> allowedBridges;  // host bridges the project's NICs may join anyway
  bool may(Role needed) const { return role >= needed; }
  // Whether the call may name host paths and host-side devices: admins, outside restricted
  // projects.
  bool mayTouchHost() const { return role == Role::admin && !restricted; }
};

// Refuses a call that names a host path or host-side device (`field`, as the API spells it:
// "disks[0].source.path") unless the caller is an admin: such a field hands the caller the
// host's files or interfaces as root.
Status requireAdminFor(const CallContext& ctx, const std::string& field);
// The name vmmd uses for a caller's name of a `kind` ("domain", "volume", "image") of the
// call's project; a qualified name (another project's) is refused.
Result<std::string> scopedName(const CallContext& ctx, std::string_view name, std::string_view kind);
// Whether an object of vmmd's name `qualified` is one the call may list.
inline bool listable(const CallContext& ctx, std::string_view qualified) {
  return ctx.allProjects || model::inProject(qualified, ctx.project);
}

struct Reply {
  json body;
  std::string raw;   // when set: the body as ready JSON text (large lists built from caches)
  int status = 200;  // HTTP status of a success
  std::vector<std::pair<std::string, std::string>> headers;
  // The body names objects as the caller's project knows them already (nothing to rewrite).
  bool inCallerNames = false;
  Reply() = default;
  Reply(json b, int s = 200) : body(std::move(b)), status(s) {}  // NOLINT
};

// Validated work of an async call: it runs as an operation on `object`.
struct AsyncWork {
  std::string object;
  OperationManager::Task task;
};

using Handler = std::function<Result<Reply>(const CallContext&, const json& params)>;
using AsyncHandler = std::function<Result<AsyncWork>(const CallContext&, const json& params)>;

class Registry {
 public:
  explicit Registry(OperationManager& operations);
  // Where calls that need more than the read role are recorded (none: not recorded).
  void setAudit(AuditTrail* audit) { audit_ = audit; }
  // Looks projects up (unset: only "default" exists, unrestricted).
  using ProjectLookup = std::function<std::optional<model::Project>(const std::string&)>;
  void setProjects(ProjectLookup lookup) { projects_ = std::move(lookup); }
  // The project a call acts in, from its `project`/`all_projects` parameters (removed from
  // `params`) and the principal's binding.
  Status enterProject(CallContext& ctx, json& params) const;
  // For a stream outside the table (console, volume transfer): enters `project` ("": the
  // principal's own, else default) and returns vmmd's name for the caller's `name` of `kind`.
  Result<std::string> enterStream(CallContext& ctx, const std::string& project, const std::string& name,
                                  std::string_view kind) const;

  void bind(const std::string& name, Handler handler);
  void bindAsync(const std::string& name, AsyncHandler handler);
  // Names of specs without a handler (a start-up check).
  std::vector<std::string> unbound() const;

  Result<Reply> call(const CallContext& ctx, const std::string& name, json params);
  // Records a call a transport refused before it reached call() (its role was too low: HTTP
  // answers before reading the body).
  void recordRefusal(const CallContext& ctx, const OperationSpec& spec, const json& params, const Error& error);
  // Records a call outside the table: a stream (console, volume transfer) being opened or refused.
  void record(const CallContext& ctx, const std::string& method, const std::string& object, const Status& result);

  // Prometheus text lines for the per-operation counters.
  std::string metricsText() const;
  json openapi() const;

 private:
  struct Counters {
    std::atomic<uint64_t> calls{0}, errors{0}, micros{0};
  };
  struct Entry {
    const OperationSpec* spec = nullptr;
    Handler handler;
    AsyncHandler asyncHandler;
    std::unique_ptr<Counters> counters = std::make_unique<Counters>();
  };
  Status validate(const OperationSpec& spec, json& params) const;
  void audit(const CallContext& ctx, const std::string& method, std::string object, const Status& result,
             std::string operationId, int64_t micros);

  OperationManager& operations_;
  AuditTrail* audit_ = nullptr;
  ProjectLookup projects_;
  std::map<std::string, Entry> entries_;
};

// Parameters after validation against the spec: a string ("" when absent) and a boolean. They
// never throw: a member of another type reads as absent.
inline std::string str(const json& params, const char* key) { return jsonStringOr(params, key, ""); }
inline bool flag(const json& params, const char* key, bool fallback) { return jsonBoolOr(params, key, fallback); }
// An integer parameter within [min, max] (a wider number is refused, never wrapped).
Result<int64_t> intParam(const json& params, const std::string& key, int64_t fallback, int64_t min, int64_t max);

// "params.timeout: expected a duration such as \"30s\"" style checking, shared with transports.
Result<Millis> durationParam(const json& params, const std::string& key, Millis fallback, Millis max);

}  // namespace vmm::api
