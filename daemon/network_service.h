// Virtual networks: definitions (persisted), their running state on the host (bridge, nftables
// table, dnsmasq - recorded durably so a restarted vmmd can stop what an earlier one started)
// and what domain NICs need from them (the bridge to plug into).
//
// Mutations of one network are serialised by its job. Starting and stopping any network also
// takes hostMu_: the forwarding sysctls are shared between networks (see
// network/virtual/forwarding.h) and these calls are short (tens of milliseconds).
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "daemon/event_bus.h"
#include "daemon/job.h"
#include "daemon/object_table.h"
#include "daemon/state_store.h"
#include "model/network.h"
#include "network/virtual/virtual_network.h"

namespace vmm {

struct NetworkView {
  model::Network def;
  bool active = false;
  std::string bridge;       // the bridge in use (or that will be used)
  std::optional<std::string> job;
  nlohmann::json runtime;   // the host resources while active
  std::string vlanMethod;   // "bridge-vlan-filtering" or "nft-port-sets"
};
nlohmann::json formatNetworkView(const NetworkView& v);

// For each network: the domains whose NICs use it (definitions and running instances), and
// whether any of those is running.
struct NetworkUsers {
  std::vector<std::string> domains;
  std::vector<std::string> running;
};
using NetworkUsersFn = std::function<NetworkUsers(const std::string& network)>;

struct NetworkServiceOptions {
  std::string stateDir;              // per-network files (leases, dnsmasq) under STATE/networks/NAME
  Millis jobWait = Millis(30000);
  Millis ioTimeout = Millis(30000);
  bool createDefault = false;        // a NAT network "default" when no network exists
  std::string dnsmasqBinary = "dnsmasq";
};

class NetworkService {
 public:
  NetworkService(StateStore& store, EventBus& events, NetworkServiceOptions options);
  ~NetworkService();

  void setUsers(NetworkUsersFn users) { users_ = std::move(users); }

  // Loads definitions and runtime records: networks whose host side is intact stay active,
  // broken ones are restarted, vmm tables left by networks that no longer run are removed,
  // and autostart networks are started.
  Status load();

  Result<NetworkView> create(model::Network def, bool start);
  Result<NetworkView> get(const std::string& name) const;
  std::vector<NetworkView> list() const;
  Result<NetworkView> start(const std::string& name);
  // Refused while running domains use it, unless force (their taps lose the bridge).
  Result<NetworkView> stop(const std::string& name, bool force);
  Status remove(const std::string& name);
  Result<std::vector<net::Lease>> leases(const std::string& name) const;
  // Keeps each running network's dnsmasq log under kDnsmasqLogLimit (a guest can make DHCP
  // noise); called every few seconds from the daemon's maintenance worker.
  void maintain();
  static constexpr uint64_t kDnsmasqLogLimit = 1 << 20;

  // The bridge a NIC on `network` is plugged into; the network must be active.
  Result<std::string> bridgeFor(const std::string& network) const;
  // Stops every active network (not used at vmmd shutdown: networks outlive the daemon).
  std::vector<std::string> names() const { return networks_.names(); }

 private:
  struct NetworkObject;
  Result<std::shared_ptr<NetworkObject>> find(const std::string& name) const;
  Result<JobGuard> acquire(NetworkObject& n, const std::string& what);
  NetworkView viewOf(const NetworkObject& n) const;
  // Bridge name and subnet unique among defined networks and creations in progress.
  Status checkAgainstOthers(const model::Network& def) const VMM_REQUIRES(createMu_);
  // Under the job and hostMu_.
  Status startLocked(NetworkObject& n) VMM_REQUIRES(hostMu_);
  Status stopLocked(NetworkObject& n) VMM_REQUIRES(hostMu_);
  std::vector<net::NetworkRuntime> otherRuntimes(const std::string& except) const;
  std::string stateDirOf(const std::string& name) const { return options_.stateDir + "/" + name; }
  Deadline ioDeadline() const { return Deadline::after(options_.ioTimeout); }
  void publish(const std::string& name, const std::string& event);
  Result<model::Network> defaultNetwork();

  StateStore& store_;
  EventBus& events_;
  const NetworkServiceOptions options_;
  NetworkUsersFn users_;
  ObjectTable<NetworkObject> networks_;
  std::string vlanMethod_;  // set by load(), read-only afterwards
  Mutex createMu_;  // guards creating_ and the uniqueness checks of definition
  std::map<std::string, model::Network> creating_ VMM_GUARDED_BY(createMu_);  // reserved by creations in progress
  Mutex hostMu_;    // serialises start/stop (shared forwarding switches)
};

}  // namespace vmm
