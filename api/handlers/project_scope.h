// A call's names inside its project (model/project.h): definitions and disks a caller sends
// name the caller's own domain and volumes, and its project's restrictions apply to them.
#pragma once

#include "api/registry.h"
#include "api/services.h"
#include "model/domain.h"

namespace vmm::api {

inline Status scopeDiskSource(const CallContext& ctx, model::DiskSource& src) {
  if (!src.isVolume()) return {};
  VMM_ASSIGN(src.volume, scopedName(ctx, src.volume, "volume"));
  return {};
}

// The definition's name and its volumes become the project's; then the project's
// restrictions (allowed pools and networks) are checked.
inline Status scopeDefinition(Services& s, const CallContext& ctx, model::Domain& def) {
  VMM_ASSIGN(def.name, scopedName(ctx, def.name, "domain"));
  for (size_t i = 0; i < def.disks.size(); ++i)
    if (auto st = scopeDiskSource(ctx, def.disks[i].source); !st.ok()) return st.error().wrap("disks[" + std::to_string(i) + "].source");
  if (def.container)
    if (auto st = scopeDiskSource(ctx, def.container->rootfs); !st.ok()) return st.error().wrap("container.rootfs");
  return s.projects.checkDefinition(ctx.project, def);
}

// A running slot of the domain's project (limits.running) for a start about to happen, or why
// there is none; held until the domain runs (then it is counted as running).
inline Result<CapacityGate::Ticket> runningSlot(Services& s, const std::string& domain) {
  return s.projects.admitRunning(std::string(model::projectOf(domain)), Deadline::after(Millis(0)), nullptr);
}

// An image a launch names: the project's own, else a shared one of the default project.
inline Result<std::string> scopedImage(Services& s, const CallContext& ctx, const std::string& name) {
  VMM_ASSIGN(auto own, scopedName(ctx, name, "image"));
  if (ctx.project == model::kDefaultProject || s.images.get(own).ok()) return own;
  if (s.images.get(name).ok()) return name;
  return own;  // not found: the error names the caller's own image
}

}  // namespace vmm::api
