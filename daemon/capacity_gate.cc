#include "daemon/capacity_gate.h"

#include <algorithm>
#include <deque>

#include "model/units.h"

namespace vmm {

CapacityGate::CapacityGate(Capacity budget, std::function<Capacity()> inUse) : budget_(budget), inUse_(std::move(inUse)) {}

CapacityGate::Ticket& CapacityGate::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    release();
    gate_ = o.gate_;
    want_ = o.want_;
    o.gate_ = nullptr;
  }
  return *this;
}

void CapacityGate::Ticket::release() {
  if (gate_) gate_->give(want_);
  gate_ = nullptr;
}

void CapacityGate::give(const Capacity& c) {
  {
    MutexLock lock(mu_);
    reserved_.memory -= std::min(reserved_.memory, c.memory);
    reserved_.vcpus -= std::min(reserved_.vcpus, c.vcpus);
  }
  cv_.notify_all();
}

Result<CapacityGate::Ticket> CapacityGate::admit(Capacity want, Deadline deadline, const std::function<bool()>& cancelled) {
  if (want.memory > budget_.memory || want.vcpus > budget_.vcpus)
    return invalidArgument("the domain needs " + model::formatSize(want.memory) + " and " + std::to_string(want.vcpus) +
                           " vCPUs; the host's budget is " + model::formatSize(budget_.memory) + " and " +
                           std::to_string(budget_.vcpus) + " vCPUs");
  MutexLock lock(mu_);
  // First come, first served: only the head of the line may take capacity, so a large launch
  // is not starved by smaller ones that keep fitting.
  uint64_t me = nextInLine_++;
  line_.push_back(me);
  auto leave = [&]() VMM_REQUIRES(mu_) {
    line_.erase(std::find(line_.begin(), line_.end(), me));
    cv_.notify_all();
  };
  while (true) {
    // Only the head of the line reads the domain table (short locks of its own, no guest I/O).
    Capacity used = line_.front() == me ? inUse_() : Capacity{};
    if (line_.front() == me && used.memory + reserved_.memory + want.memory <= budget_.memory &&
        used.vcpus + reserved_.vcpus + want.vcpus <= budget_.vcpus) {
      reserved_.memory += want.memory;
      reserved_.vcpus += want.vcpus;
      leave();
      return Ticket(this, want);
    }
    if (cancelled && cancelled()) {
      leave();
      return cancelledError("cancelled while waiting for host capacity");
    }
    if (deadline.expired()) {
      leave();
      used = inUse_();
      return unavailable("not enough host capacity: " + model::formatSize(used.memory + reserved_.memory) + " of " +
                         model::formatSize(budget_.memory) + " memory and " + std::to_string(used.vcpus + reserved_.vcpus) +
                         " of " + std::to_string(budget_.vcpus) + " vCPUs are taken");
    }
    // Stops of running domains are not signalled here: re-check periodically.
    cv_.wait_for(lock, std::min(Millis(200), std::max(Millis(1), deadline.remaining())));
  }
}

Capacity hostCapacity(uint64_t hostMemory, int hostCpus, uint64_t memoryReserve, double vcpuRatio) {
  Capacity c;
  c.memory = hostMemory > memoryReserve ? hostMemory - memoryReserve : hostMemory / 2;
  c.vcpus = std::max<int64_t>(1, static_cast<int64_t>(std::max(1, hostCpus) * vcpuRatio));
  return c;
}

}  // namespace vmm
