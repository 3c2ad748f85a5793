#include "api/registry.h"
#include "api/services.h"

namespace vmm::api {

void bindOperationHandlers(Registry& reg, Services& s) {
  reg.bind("operation.list", [&s](const CallContext&, const json& p) -> Result<Reply> {
    bool activeOnly = flag(p, "active", false);
    json out = json::array();
    // Without results (operation.get has each): a list of a thousand would be megabytes.
    for (const auto& op : s.operations.list(!activeOnly)) {
      json j = model::formatOperation(op);
      if (!op.result.is_null()) {
        j["result_bytes"] = op.resultBytes;
        j["result"] = nullptr;
      }
      out.push_back(std::move(j));
    }
    return Reply(std::move(out));
  });
  reg.bind("operation.get", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto op, s.operations.get(str(p, "id")));
    return Reply(model::formatOperation(op));
  });
  reg.bind("operation.wait", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto timeout, durationParam(p, "timeout", Millis(60000), Millis(3600000)));
    VMM_ASSIGN(auto op, s.operations.wait(str(p, "id"), Deadline::after(timeout)));
    return Reply(model::formatOperation(op));
  });
  reg.bind("operation.result", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto text, s.operations.fullResult(str(p, "id")));
    Reply r;
    r.raw = std::move(text);
    return r;
  });
  reg.bind("operation.cancel", [&s](const CallContext&, const json& p) -> Result<Reply> {
    std::string id = str(p, "id");
    VMM_TRY(s.operations.cancel(id));
    VMM_ASSIGN(auto op, s.operations.get(id));
    return Reply(model::formatOperation(op));
  });
}

void bindHostHandlers(Registry& reg, Services& s) {
  reg.bind("host.info", [&s](const CallContext& ctx, const json&) -> Result<Reply> {
    json info = s.hostInfo();
    info["caller"] = {{"principal", ctx.principal}, {"access", ctx.access == Access::write ? "write" : "read"}};
    return Reply(std::move(info));
  });
  reg.bind("token.list", [&s](const CallContext&, const json&) -> Result<Reply> {
    json out = json::array();
    for (const auto& t : s.tokens.list())
      out.push_back({{"name", t.name}, {"role", t.role}, {"created", formatTimestamp(t.createdUs)}});
    return Reply(std::move(out));
  });
  reg.bind("token.create", [&s](const CallContext&, const json& p) -> Result<Reply> {
    std::string name = str(p, "name"), role = str(p, "role");
    VMM_ASSIGN(auto secret, s.tokens.create(name, role));
    s.events.publish("token", "tokens/" + name, {{"event", "created"}, {"name", name}, {"role", role}});
    return Reply(json{{"name", name}, {"role", role}, {"token", secret}}, 201);
  });
  reg.bind("token.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    std::string name = str(p, "name");
    VMM_TRY(s.tokens.remove(name));
    s.events.publish("token", "tokens/" + name, {{"event", "deleted"}, {"name", name}});
    return Reply(json::object());
  });
}

void bindHandlers(Registry& registry, Services& services) {
  bindDomainHandlers(registry, services);
  bindOperationHandlers(registry, services);
  bindHostHandlers(registry, services);
  bindStorageHandlers(registry, services);
  bindNetworkHandlers(registry, services);
  bindSnapshotHandlers(registry, services);
  bindImageHandlers(registry, services);
}

}  // namespace vmm::api
