// Refusals of host paths and host devices for callers below the admin role (api/spec.h).
#pragma once

#include <vector>

#include "api/registry.h"
#include "model/domain.h"

namespace vmm::api {

// Refuses the first of `refs` (by its field) unless the caller is an admin.
inline Status requireAdminFor(const CallContext& ctx, const std::vector<model::HostReference>& refs) {
  if (refs.empty()) return {};
  return requireAdminFor(ctx, refs.front().field);
}

// Refuses `what` ("running commands in") a domain whose commands run as root on the host (a
// privileged container, a writable host mount) unless the caller is an admin.
inline Status refuseHostRootFor(const CallContext& ctx, const model::Domain& d, const std::string& what) {
  if (ctx.mayTouchHost() || !model::grantsHostRoot(d)) return {};
  return permissionDenied(what + " " + d.name + " needs the admin role: it is a privileged container or has a writable host " +
                          "mount, root on the host; " + ctx.principal + " has the " + std::string(roleName(ctx.role)) + " role");
}

}  // namespace vmm::api
