// Projects (model/project.h): their records, what each uses, and admission against their
// restrictions and quotas. Domains, volumes and images of a project carry qualified names, so
// what a project uses is read from the domain table and the pools' volume lists, never kept
// twice. A change that would pass a quota takes a reservation first: two concurrent creations
// cannot both take the last slot, and the reservation ends once the object is counted where
// it lives.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/result.h"
#include "daemon/capacity_gate.h"
#include "daemon/domain_service.h"
#include "daemon/event_bus.h"
#include "daemon/pool_service.h"
#include "daemon/state_store.h"
#include "model/project.h"

namespace vmm {

struct ProjectUsage {
  int64_t domains = 0, vcpus = 0, running = 0;
  uint64_t memory = 0, disk = 0;
};

class ProjectService {
 public:
  ProjectService(StateStore& store, EventBus& events, DomainService& domains, PoolService& pools);

  Status load();
  std::vector<model::Project> list() const;
  Result<model::Project> get(const std::string& name) const;
  Result<model::Project> create(model::Project p);
  Result<model::Project> update(const std::string& name, const nlohmann::json& changes);
  // Refused while the project has domains or volumes (`inUseBy`: other holders, e.g. tokens).
  Status remove(const std::string& name, const std::vector<std::string>& inUseBy = {});

  ProjectUsage usage(const std::string& project) const;
  nlohmann::json usageJson(const std::string& project) const;

  // What a change to a project asks for beyond what it has.
  struct Claim {
    int64_t domains = 0, vcpus = 0;
    int64_t memory = 0;  // bytes; negative when a domain shrinks
    uint64_t disk = 0;   // bytes of new or grown volumes
  };
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& o) noexcept : owner_(o.owner_), project_(std::move(o.project_)), claim_(o.claim_) { o.owner_ = nullptr; }
    Reservation& operator=(Reservation&& o) noexcept;
    ~Reservation() { release(); }
    void release();

   private:
    friend class ProjectService;
    Reservation(ProjectService* owner, std::string project, Claim claim) : owner_(owner), project_(std::move(project)), claim_(claim) {}
    ProjectService* owner_ = nullptr;
    std::string project_;
    Claim claim_;
  };
  // Refuses a claim that would take the project past a limit; otherwise holds it until the
  // reservation ends (by then the change is counted where it lives, or did not happen).
  Result<Reservation> reserve(const std::string& project, const Claim& claim);

  // After a change whose size was known only once made (an image import): whether the
  // project's disk usage is within limits.disk.
  Status checkDisk(const std::string& project) const;

  // The project's restrictions applied to a definition (allowed pools and networks; host
  // references in a restricted project are refused by the caller's role check).
  // `shared`: volumes the definition may use although they are not the project's (a launched
  // default-project image's own ISO).
  Status checkDefinition(const std::string& project, const model::Domain& def, const std::vector<std::string>& shared = {}) const;
  Status checkPool(const std::string& project, const std::string& pool) const;
  Status checkNetwork(const std::string& project, const std::string& network) const;
  Status checkImage(const std::string& project, const std::string& qualifiedImage) const;

  // Running domains: a launch waits in the project's line for a free slot (limits.running);
  // a plain start past the limit is refused.
  Result<CapacityGate::Ticket> admitRunning(const std::string& project, Deadline deadline,
                                            const std::function<bool()>& cancelled);
  Status checkRunning(const std::string& project) const;
  // Wakes launches waiting for a project's slot (a domain stopped).
  void changed();

 private:
  Result<model::Project> find(const std::string& name) const;
  Status persist(const model::Project& p);
  void give(const std::string& project, const Claim& claim);
  CapacityGate& gateFor(const std::string& project);

  StateStore& store_;
  EventBus& events_;
  DomainService& domains_;
  PoolService& pools_;
  mutable Mutex mu_;
  std::map<std::string, model::Project> projects_ VMM_GUARDED_BY(mu_);
  std::map<std::string, Claim> reserved_ VMM_GUARDED_BY(mu_);
  // Bumped whenever a reservation ends: a usage read before it may have missed what it held.
  std::map<std::string, uint64_t> released_ VMM_GUARDED_BY(mu_);
  // Serialises project changes (read, merge, commit) and deletions; never held with mu_ waiting on it.
  std::mutex changeMu_;
  // One line per project, made on first use and kept (tickets point at it).
  std::map<std::string, std::unique_ptr<CapacityGate>> gates_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm
