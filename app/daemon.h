// vmmd's composition root: owns the state store, services, drivers and transports, and
// starts and stops them in order. main() only parses the configuration and runs this.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <memory>

#include "api/dispatcher.h"
#include "api/http/http_server.h"
#include "api/registry.h"
#include "api/rpc/rpc_server.h"
#include "api/services.h"
#include "base/event_loop.h"
#include "base/fs.h"
#include "base/thread_pool.h"
#include "daemon/auth.h"
#include "daemon/capabilities.h"
#include "daemon/config.h"
#include "daemon/domain_service.h"
#include "daemon/event_bus.h"
#include "daemon/host_services.h"
#include "daemon/image_service.h"
#include "daemon/instance_service.h"
#include "daemon/operation_manager.h"
#include "daemon/network_service.h"
#include "daemon/pool_service.h"
#include "daemon/state_store.h"

namespace vmm {

class Daemon {
 public:
  explicit Daemon(Config config);
  ~Daemon();

  // Everything up to serving requests. On failure nothing keeps running.
  Status start();
  // Blocks until SIGTERM/SIGINT (or requestStop), then stops cleanly. Guests keep running.
  void run();
  void requestStop();

  nlohmann::json hostInfo();
  std::string metricsText();
  const Config& config() const { return config_; }
  // The RPC server's connections, one line each (diagnostics).
  std::string describeRpcConnections() {
    return "pools: calls " + std::to_string(pool_.threadCount()) + " threads " + std::to_string(pool_.queued()) +
           " queued; waits " + std::to_string(waitPool_.threadCount()) + " threads " + std::to_string(waitPool_.queued()) +
           " queued\n" + (rpc_ ? rpc_->describeConnections() : std::string());
  }

 private:
  Status prepareDirectories();
  Status lockStateDir();
  void createDrivers();
  Result<api::StreamStart> openStream(const api::CallContext& caller, const std::string& method, const nlohmann::json& params);
  Result<fs::UniqueFd> openConsole(const api::CallContext& caller, const std::string& name);
  void onSignal();
  void scheduleMaintenance();
  void setUpGuestfs(InstanceServiceOptions& options) const;
  void shutdownAll();

  Config config_;
  int64_t startedUs_ = 0;
  fs::UniqueFd lockFd_;
  fs::UniqueFd signalFd_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> maintenanceTicks_{0};
  std::mutex stopMu_;
  std::condition_variable stopCv_;

  EventLoop loop_;
  // Three pools, so that no kind of work can starve another: calls and internal work (pool_),
  // operations (operationPool_), and calls that wait for something (waitPool_, capped per
  // peer by the dispatcher).
  ThreadPool pool_;
  ThreadPool operationPool_;
  ThreadPool waitPool_;
  std::unique_ptr<api::Dispatcher> dispatcher_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<EventBus> events_;
  std::unique_ptr<OperationManager> operations_;
  std::unique_ptr<PoolService> pools_;
  std::unique_ptr<NetworkService> networks_;
  std::unique_ptr<DaemonHostServices> hostServices_;
  std::unique_ptr<DomainService> domains_;
  std::unique_ptr<TokenStore> tokens_;
  std::unique_ptr<ImageService> images_;
  std::unique_ptr<ProjectService> projects_;  // before instances_, which uses it
  std::unique_ptr<InstanceService> instances_;
  std::unique_ptr<api::Services> services_;
  std::unique_ptr<api::AuditTrail> audit_;
  std::unique_ptr<api::Registry> registry_;
  std::unique_ptr<api::RpcServer> rpc_;
  std::unique_ptr<api::HttpServer> http_;
  HostFacts facts_;
};

// Blocks the signals vmmd handles in the calling thread (and every thread it creates later).
void blockDaemonSignals();

}  // namespace vmm
