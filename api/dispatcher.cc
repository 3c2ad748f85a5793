#include "api/dispatcher.h"

namespace vmm::api {

Dispatcher::Dispatcher(ThreadPool& calls, ThreadPool& waits, DispatchLimits limits)
    : calls_(calls), waits_(waits), limits_(limits) {}

Status Dispatcher::submit(const OperationSpec& spec, const CallContext& ctx, std::function<void()> fn) {
  if (spec.lane != Lane::wait) {
    calls_.submit(std::move(fn));
    return {};
  }
  bool write = ctx.role != Role::read;
  // Read-only and read-write callers are counted apart, also for one uid (root on both sockets).
  std::string who = ctx.peer.empty() ? ctx.principal : ctx.peer;
  std::string peer = std::string(write ? "rw " : "ro ") + who;
  {
    std::lock_guard lock(counts_->mu);
    size_t& mine = counts_->waitsByPeer[peer];
    size_t& shared = write ? counts_->writeWaits : counts_->readWaits;
    size_t sharedCap = write ? limits_.writeWaits : limits_.readWaits;
    if (mine >= limits_.waitsPerPeer || shared >= sharedCap) {
      bool perPeer = mine >= limits_.waitsPerPeer;
      if (mine == 0) counts_->waitsByPeer.erase(peer);
      return unavailable(perPeer ? spec.name + ": " + who + " already has " + std::to_string(limits_.waitsPerPeer) +
                                       " calls waiting; retry when one returns"
                                 : spec.name + ": " + std::to_string(sharedCap) + " " + (write ? "read-write" : "read-only") +
                                       " calls are already waiting; retry when one returns");
    }
    ++mine;
    ++shared;
  }
  waits_.submit([counts = counts_, peer, write, fn = std::move(fn)] {
    struct Release {
      Counts& counts;
      const std::string& peer;
      bool write;
      ~Release() { counts.release(peer, write); }
    } release{*counts, peer, write};
    fn();
  });
  return {};
}

void Dispatcher::Counts::release(const std::string& peer, bool write) {
  std::lock_guard lock(mu);
  auto it = waitsByPeer.find(peer);
  if (it != waitsByPeer.end() && --it->second == 0) waitsByPeer.erase(it);
  size_t& shared = write ? writeWaits : readWaits;
  if (shared > 0) --shared;
}

size_t Dispatcher::waitsRunning() const {
  std::lock_guard lock(counts_->mu);
  return counts_->readWaits + counts_->writeWaits;
}

}  // namespace vmm::api
