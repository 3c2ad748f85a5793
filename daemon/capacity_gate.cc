#include "daemon/capacity_gate.h"

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "model/units.h"

namespace vmm {

CapacityGate::CapacityGate(Capacity budget, std::function<Capacity()> inUse)
    : CapacityGate([budget] { return budget; }, std::move(inUse), "host capacity") {}

CapacityGate::CapacityGate(std::function<Capacity()> budget, std::function<Capacity()> inUse, std::string what)
    : budget_(std::move(budget)), inUse_(std::move(inUse)), what_(std::move(what)) {}

bool CapacityGate::fits(const Capacity& used, const Capacity& want) const {
  Capacity b = budget_();
  return used.memory + reserved_.memory + want.memory <= b.memory && used.vcpus + reserved_.vcpus + want.vcpus <= b.vcpus &&
         used.domains + reserved_.domains + want.domains <= b.domains;
}

std::string CapacityGate::describe(const Capacity& used, const Capacity& b) const {
  std::vector<std::string> parts;
  if (b.domains > 0 && b.domains < kUnlimitedCount)
    parts.push_back(std::to_string(used.domains + reserved_.domains) + " of " + std::to_string(b.domains) + " running domains");
  if (b.memory < UINT64_MAX / 4)
    parts.push_back(model::formatSize(used.memory + reserved_.memory) + " of " + model::formatSize(b.memory) + " memory");
  if (b.vcpus < kUnlimitedCount)
    parts.push_back(std::to_string(used.vcpus + reserved_.vcpus) + " of " + std::to_string(b.vcpus) + " vCPUs");
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
  return out + " are taken";
}

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
    reserved_.domains -= std::min(reserved_.domains, c.domains);
  }
  cv_.notify_all();
}

Result<CapacityGate::Ticket> CapacityGate::admit(Capacity want, Deadline deadline, const std::function<bool()>& cancelled) {
  Capacity whole = budget_();
  if (want.memory > whole.memory || want.vcpus > whole.vcpus)
    return invalidArgument("the domain needs " + model::formatSize(want.memory) + " and " + std::to_string(want.vcpus) +
                           " vCPUs; the " + what_ + " budget is " + model::formatSize(whole.memory) + " and " +
                           std::to_string(whole.vcpus) + " vCPUs");
  if (want.domains > whole.domains)
    return invalidArgument("the " + what_ + " allows " + std::to_string(whole.domains) + " running domains");
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
    if (line_.front() == me && fits(used, want)) {
      reserved_.memory += want.memory;
      reserved_.vcpus += want.vcpus;
      reserved_.domains += want.domains;
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
      return unavailable("not enough " + what_ + ": " + describe(used, budget_()));
    }
    // Stops of running domains are not signalled here: re-check periodically.
    cv_.wait_for(lock, std::min(Millis(200), std::max(Millis(1), deadline.remaining())));
  }
}

Capacity hostCapacity(uint64_t hostMemory, int hostCpus, uint64_t memoryReserve, double vcpuRatio) {
  Capacity c;
  c.memory = hostMemory > memoryReserve ? hostMemory - memoryReserve : hostMemory / 2;
  c.vcpus = std::max<int64_t>(1, static_cast<int64_t>(std::max(1, hostCpus) * vcpuRatio));
  c.domains = kUnlimitedCount;
  return c;
}

}  // namespace vmm
