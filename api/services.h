// What the API handlers operate on: the daemon's services, by reference.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "api/audit.h"
#include "daemon/auth.h"
#include "daemon/domain_service.h"
#include "daemon/event_bus.h"
#include "daemon/image_service.h"
#include "daemon/instance_service.h"
#include "daemon/network_service.h"
#include "daemon/operation_manager.h"
#include "daemon/pool_service.h"
#include "daemon/project_service.h"

namespace vmm::api {

class Registry;

struct Services {
  DomainService& domains;
  PoolService& pools;
  NetworkService& networks;
  OperationManager& operations;
  EventBus& events;
  TokenStore& tokens;
  std::function<nlohmann::json()> hostInfo;
  ImageService& images;
  InstanceService& instances;
  AuditTrail& audit;
  ProjectService& projects;
};

// Binds every operation of the table to its handler.
void bindHandlers(Registry& registry, Services& services);
void bindDomainHandlers(Registry& registry, Services& services);
void bindOperationHandlers(Registry& registry, Services& services);
void bindHostHandlers(Registry& registry, Services& services);
void bindStorageHandlers(Registry& registry, Services& services);
void bindNetworkHandlers(Registry& registry, Services& services);
void bindSnapshotHandlers(Registry& registry, Services& services);
void bindImageHandlers(Registry& registry, Services& services);
void bindProjectHandlers(Registry& registry, Services& services);

}  // namespace vmm::api
