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

}  // namespace vmm::api
