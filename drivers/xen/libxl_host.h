// One libxl context and the thread that runs its event loop. The only file that includes libxl.
//
// open() fails on hosts without a Xen hypervisor (libxl_ctx_alloc cannot open libxc); its
// error message is the reason shown by the driver's probe(). Every long call is asynchronous
// in libxl (an ao with a completion callback) and waited for here up to a deadline; when the
// deadline passes the ao is aborted and a timeout returned.
//
// Thread-safety: all methods may be called from any thread (libxl locks its context itself).
// Death callbacks run on the event thread and must not block.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "base/result.h"
#include "base/time_util.h"
#include "model/domain.h"

struct libxl__ctx;
struct libxl__evgen_domain_death;

namespace vmm::drivers::xen {

using json = nlohmann::json;

enum class XenShutdownReason { poweroff, reboot, suspend, crash, watchdog, softReset, unknown };

class LibxlHost {
 public:
  // Called once per domain when it shuts down (reason) and again when it is gone (`dead`).
  using DeathFn = std::function<void(uint32_t domid, XenShutdownReason reason, bool dead)>;

  static Result<std::unique_ptr<LibxlHost>> open();
  ~LibxlHost();
  LibxlHost(const LibxlHost&) = delete;
  LibxlHost& operator=(const LibxlHost&) = delete;

  std::string version() const;  // "Xen 4.17.0"
  void setDeathHandler(DeathFn fn);

  // Creates (or, with restoreFd >= 0, restores) a domain from libxl JSON; returns its domid.
  // The domain is left paused when `paused`.
  Result<uint32_t> create(const json& config, int restoreFd, bool paused, Deadline deadline);
  Status shutdown(uint32_t domid);  // asks the guest (PV control node / ACPI)
  Status reboot(uint32_t domid);
  Status destroy(uint32_t domid, Deadline deadline);
  Status pause(uint32_t domid, Deadline deadline);
  Status unpause(uint32_t domid, Deadline deadline);
  // Writes the domain's state to fd (libxl's stream format); the domain is then suspended.
  Status save(uint32_t domid, int fd, Deadline deadline);
  // Lets a domain run on after a save that failed half-way (co-operative resume).
  Status resume(uint32_t domid, Deadline deadline);

  // Domain id of a running domain with this UUID and name, or notFound.
  Result<uint32_t> find(const std::string& name, const std::string& uuid);
  Result<json> stats(uint32_t domid);
  Result<std::string> consoleTty(uint32_t domid, bool serial);

  Status watch(uint32_t domid);  // death/shutdown events for domid
  void unwatch(uint32_t domid);

 private:
  LibxlHost() = default;
  void eventLoop();
  void onEvent(const void* event);
  Status waitAo(const std::function<int(const void* how)>& start, Deadline deadline, const std::string& what);

  libxl__ctx* ctx_ = nullptr;
  void* logger_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  Mutex mu_;
  DeathFn onDeath_ VMM_GUARDED_BY(mu_);
  std::map<uint32_t, libxl__evgen_domain_death*> watches_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm::drivers::xen
