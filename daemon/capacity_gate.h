// Admission control for launches: a new domain starts only when the memory and vCPUs of the
// running domains plus those being launched fit the host's budget; otherwise the launch waits
// in line (bounded by its deadline) instead of overcommitting the host.
#pragma once

#include <climits>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "base/mutex.h"
#include "base/result.h"
#include "base/time_util.h"

namespace vmm {

struct Capacity {
  uint64_t memory = 0;
  int64_t vcpus = 0;
  int64_t domains = 0;  // running domains (a project's limits.running)
};
inline constexpr int64_t kUnlimitedCount = INT64_MAX / 4;

class CapacityGate {
 public:
  // `inUse` reports what running domains hold now (read at each admission attempt). The
  // host's budget counts no domains; `what` names the budget in messages ("host capacity").
  CapacityGate(Capacity budget, std::function<Capacity()> inUse);
  // A budget that may change (a project's limits), read at each attempt.
  CapacityGate(std::function<Capacity()> budget, std::function<Capacity()> inUse, std::string what);

  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept : gate_(o.gate_), want_(o.want_) { o.gate_ = nullptr; }
    Ticket& operator=(Ticket&& o) noexcept;
    ~Ticket() { release(); }
    // Once the domain runs its use is counted by inUse(): the reservation ends.
    void release();

   private:
    friend class CapacityGate;
    Ticket(CapacityGate* g, Capacity want) : gate_(g), want_(want) {}
    CapacityGate* gate_ = nullptr;
    Capacity want_;
  };

  // Waits until `want` fits, the deadline passes or `cancelled` says so. A request larger
  // than the whole budget fails at once.
  Result<Ticket> admit(Capacity want, Deadline deadline, const std::function<bool()>& cancelled = nullptr);
  Capacity budget() const { return budget_(); }
  // Wakes waiters after running domains stopped.
  void changed() { cv_.notify_all(); }

 private:
  void give(const Capacity& c);

  bool fits(const Capacity& used, const Capacity& want) const VMM_REQUIRES(mu_);
  std::string describe(const Capacity& used, const Capacity& budget) const VMM_REQUIRES(mu_);

  const std::function<Capacity()> budget_;
  const std::function<Capacity()> inUse_;
  const std::string what_;
  Mutex mu_;
  CondVar cv_;
  Capacity reserved_ VMM_GUARDED_BY(mu_);
  std::deque<uint64_t> line_ VMM_GUARDED_BY(mu_);  // waiting admissions, oldest first
  uint64_t nextInLine_ VMM_GUARDED_BY(mu_) = 0;
};

// The default budget: the host's memory minus a reserve for itself, and vCPUs overcommitted
// by `vcpuRatio` over its CPUs.
Capacity hostCapacity(uint64_t hostMemory, int hostCpus, uint64_t memoryReserve, double vcpuRatio);

}  // namespace vmm
