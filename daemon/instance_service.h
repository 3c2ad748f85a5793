// Domains launched from images, and disposable ones: create-and-start from an image (linked
// clone, optional cloud-init seed and offline customisation), run a command in a fresh VM and
// remove it afterwards, and leases (TTL, remove-on-stop) that vmmd enforces itself - also
// after a restart.
//
// Everything a launch makes (volumes, the definition) is recorded in its lease record before
// the domain starts, so removal - by the caller, the TTL, or a vmmd restart interrupting a
// disposable run - finds and deletes all of it.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "daemon/capacity_gate.h"
#include "daemon/domain_service.h"
#include "daemon/image_service.h"
#include "daemon/pool_service.h"
#include "daemon/project_service.h"
#include "daemon/state_store.h"
#include "model/image.h"
#include "storage/customize/guestfs_customizer.h"

namespace vmm {

struct InstanceServiceOptions {
  Capacity budget;
  Millis capacityWait = Millis(600000);  // how long a launch may wait in line for capacity
  std::string tempDir;
  // Offline disk customisation (libguestfs through the vmm-customize helper); unset when the
  // helper or its appliance set-up is missing, with the reason.
  std::optional<customize::GuestfsRuntime> guestfs;
  std::string guestfsUnavailable;
  Millis customizeTimeout = Millis(600000);
};

struct RunSpec {
  model::LaunchSpec launch;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string input;
  Millis timeout = Millis(3600 * 1000);     // the command
  Millis bootTimeout = Millis(300000);      // until the guest agent answers
  bool remove = true;                       // delete the domain and its volumes afterwards
};

struct RunHooks {
  std::function<void(int percent, const std::string& message)> progress;
  std::function<bool()> cancelled;
  // Called with a function that interrupts the run (the guest is destroyed).
  std::function<void(std::function<void()>)> onCancel;
  // The command's output while it runs (1 = stdout, 2 = stderr).
  std::function<void(int stream, std::string_view data)> output;
};

class InstanceService {
 public:
  InstanceService(StateStore& store, DomainService& domains, PoolService& pools, ImageService& images,
                  InstanceServiceOptions options);

  // Loads leases; disposable runs that a restart interrupted are removed by the next tick().
  Status load();
  Result<DomainView> launch(const model::LaunchSpec& spec, const RunHooks& hooks = {});
  Result<nlohmann::json> run(const RunSpec& spec, const RunHooks& hooks = {});
  // Destroys the domain if it runs, undefines it and deletes the volumes its launch made.
  Status remove(const std::string& name, const std::string& why);
  // Enforces leases: expired TTLs, stopped remove-on-stop domains, orphaned disposable runs.
  void tick();
  // The lease of a launched domain, if any.
  std::optional<nlohmann::json> lease(const std::string& name) const;
  CapacityGate& capacity() { return gate_; }
  // Projects whose restrictions and quotas launches obey (unset: none).
  void setProjects(ProjectService* projects) { projects_ = projects; }
  // The launch budget and what running domains use of it (host.info "capacity").
  nlohmann::json capacityInfo() const;

 private:
  struct Lease {
    std::string domain, image;
    std::vector<std::pair<std::string, std::string>> volumes;  // pool, volume
    int64_t expiresUs = 0;
    bool removeOnStop = false;
    bool disposableRun = false;  // removed when found without its run (after a restart)
    bool launching = false;      // the launch has not finished: removed when found (after a restart)
  };
  Result<DomainView> launchImpl(const model::LaunchSpec& spec, const RunHooks& hooks, bool disposableRun,
                                int64_t* queuedMs = nullptr);
  Status removeImpl(const std::string& name, const std::string& why);
  static nlohmann::json leaseJson(const Lease& l);
  static Lease leaseFrom(const nlohmann::json& j);
  Status putLease(const Lease& l);
  Result<model::Domain> buildDefinition(const model::LaunchSpec& spec, const model::Image& image, const std::string& name,
                                        const std::string& rootVolume, const std::string& seedVolume);
  Status waitForAgent(const std::string& name, Deadline deadline, const std::function<bool()>& cancelled);
  Capacity inUse() const;

  StateStore& store_;
  DomainService& domains_;
  PoolService& pools_;
  ImageService& images_;
  const InstanceServiceOptions options_;
  CapacityGate gate_;
  ProjectService* projects_ = nullptr;
  mutable Mutex mu_;
  std::map<std::string, Lease> leases_ VMM_GUARDED_BY(mu_);
  std::multiset<std::string> busy_ VMM_GUARDED_BY(mu_);  // being launched, run or removed: tick() leaves them alone
  std::set<std::string> names_ VMM_GUARDED_BY(mu_);  // reserved names of launches in progress
};

}  // namespace vmm
