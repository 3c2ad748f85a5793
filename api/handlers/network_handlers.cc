// Virtual networks.
#include "api/registry.h"
#include "api/services.h"
#include "base/time_util.h"
#include "model/network.h"

namespace vmm::api {

void bindNetworkHandlers(Registry& reg, Services& s) {
  reg.bind("network.list", [&s](const CallContext&, const json&) -> Result<Reply> {
    json out = json::array();
    for (const auto& v : s.networks.list()) out.push_back(formatNetworkView(v));
    return Reply(std::move(out));
  });
  reg.bind("network.get", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.networks.get(str(p, "name")));
    return Reply(formatNetworkView(v));
  });
  reg.bind("network.create", [&s](const CallContext&, const json& p) -> Result<Reply> {
    auto def = model::parseNetwork(p["definition"]);
    if (!def.ok()) return def.error();
    std::string name = def->name;
    VMM_ASSIGN(auto v, s.networks.create(std::move(*def), flag(p, "start", true)));
    Reply r(formatNetworkView(v), 201);
    r.headers.emplace_back("Location", "/v1/networks/" + name);
    return r;
  });
  reg.bind("network.start", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.networks.start(str(p, "name")));
    return Reply(formatNetworkView(v));
  });
  reg.bind("network.stop", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto v, s.networks.stop(str(p, "name"), flag(p, "force", false)));
    return Reply(formatNetworkView(v));
  });
  reg.bind("network.delete", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_TRY(s.networks.remove(str(p, "name")));
    return Reply(json::object());
  });
  reg.bind("network.leases", [&s](const CallContext&, const json& p) -> Result<Reply> {
    VMM_ASSIGN(auto leases, s.networks.leases(str(p, "name")));
    json out = json::array();
    for (const auto& l : leases) {
      json j = {{"mac", l.mac}, {"ip", l.ip}, {"hostname", l.hostname}};
      j["expires"] = l.expiry ? json(formatTimestamp(l.expiry * 1000000)) : json(nullptr);
      out.push_back(j);
    }
    return Reply(std::move(out));
  });
}

}  // namespace vmm::api
