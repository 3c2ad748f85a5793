#include "drivers/xen/libxl_host.h"

#include <poll.h>
#include <sys/time.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

extern "C" {
#include <libxl.h>
#include <libxl_utils.h>
}

#include "base/log.h"
#include "base/process.h"

namespace vmm::drivers::xen {

namespace {

Error libxlError(const std::string& what, int rc) {
  if (rc == ERROR_DOMAIN_NOTFOUND) return notFound(what + ": no such Xen domain");
  if (rc == ERROR_ABORTED) return timeoutError(what + ": aborted at its deadline");
  return internalError(what + ": libxl error " + std::to_string(rc));
}

// libxl forks hotplug scripts and device models; vmmd's ChildReaper reaps every child, so
// libxl is told (sigchld owner "mainloop") and hears of its children's exits from it.
// libxl calls this holding its context lock, before it records the child: the exit is passed
// on from another thread, which takes that lock only once libxl knows the pid.
pid_t forkForLibxl(void* user) {
  auto* ctx = static_cast<libxl_ctx*>(user);
  pid_t pid = ChildReaper::fork();
  if (pid > 0)
    ChildReaper::onExit(pid, [ctx, pid](int status) {
      std::thread([ctx, pid, status] { libxl_childproc_reaped(ctx, pid, status); }).detach();
    });
  return pid;
}

// A xentoollog logger that sends libxl's messages to vmmd's log and keeps the last error,
// which becomes the reason shown when the context cannot be opened.
struct CapturingLogger {
  xentoollog_logger base;
  Mutex mu;
  std::string lastError VMM_GUARDED_BY(mu);
};

void loggerMessage(xentoollog_logger* lg, xentoollog_level level, int errnoval, const char* context,
                   const char* format, va_list al) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, format, al);
  std::string text = buf;
  // libxl prefixes "libxl.c:102:libxl_ctx_alloc: "; the reason reads better without it.
  if (auto colon = text.find(": "); colon != std::string::npos && text.find(".c:") < colon) text = text.substr(colon + 2);
  std::string msg = std::string(context ? context : "xen") + ": " + text;
  if (errnoval > 0) msg += std::string(": ") + strerror(errnoval);
  if (level >= XTL_ERROR) {
    auto* self = reinterpret_cast<CapturingLogger*>(lg);
    MutexLock lock(self->mu);
    self->lastError = msg;
  }
  if (level >= XTL_WARN) log::debug("libxl", {{"message", msg}});
}

void loggerDestroy(xentoollog_logger*) {}

// One asynchronous operation waited for by its caller.
struct AoWait {
  Mutex mu;
  CondVar cv;
  bool done VMM_GUARDED_BY(mu) = false;
  int rc VMM_GUARDED_BY(mu) = 0;
};

void aoDone(libxl_ctx*, int rc, void* user) {
  auto* w = static_cast<AoWait*>(user);
  MutexLock lock(w->mu);
  w->done = true;
  w->rc = rc;
  w->cv.notify_all();
}

}  // namespace

Result<std::unique_ptr<LibxlHost>> LibxlHost::open() {
  auto lg = std::make_unique<CapturingLogger>();
  lg->base.vmessage = loggerMessage;
  lg->base.progress = nullptr;
  lg->base.destroy = loggerDestroy;
  libxl_ctx* ctx = nullptr;
  int rc = libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, &lg->base);
  if (rc != 0 || !ctx) {
    std::string detail;
    {
      MutexLock lock(lg->mu);
      detail = lg->lastError.empty() ? "libxl error " + std::to_string(rc) : lg->lastError;
    }
    return unavailable("no Xen hypervisor on this host (libxl_ctx_alloc failed: " + detail + ")");
  }
  std::unique_ptr<LibxlHost> host(new LibxlHost());
  host->ctx_ = ctx;
  host->logger_ = lg.release();
  static const libxl_childproc_hooks hooks = {libxl_sigchld_owner_mainloop, forkForLibxl, nullptr};
  libxl_childproc_setmode(ctx, &hooks, ctx);
  static const libxl_event_hooks eventHooks = {
      LIBXL_EVENTMASK_ALL,
      [](void* user, libxl_event* ev) {  // libxl 4.17 passes a non-const event: ours to free
        static_cast<LibxlHost*>(user)->onEvent(ev);
        libxl_event_free(static_cast<LibxlHost*>(user)->ctx_, ev);
      },
      [](void*, libxl_event_type type, const char* msg, int errnoval) {
        log::error("libxl event disaster", {{"type", static_cast<int>(type)}, {"message", msg}, {"errno", errnoval}});
      }};
  libxl_event_register_callbacks(ctx, &eventHooks, host.get());
  host->thread_ = std::thread([h = host.get()] { h->eventLoop(); });
  return host;
}

LibxlHost::~LibxlHost() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& [domid, gen] : watches_) libxl_evdisable_domain_death(ctx_, gen);
  libxl_ctx_free(ctx_);
  delete static_cast<CapturingLogger*>(logger_);
}

// libxl's own poller: it lists the fds and timeout it needs, we poll, it processes. The
// 500 ms cap only bounds how long stopping takes.
void LibxlHost::eventLoop() {
  std::vector<pollfd> fds(16);
  while (!stop_) {
    timeval now{};
    gettimeofday(&now, nullptr);
    int nfds = static_cast<int>(fds.size()), timeout = 500;
    int rc = libxl_osevent_beforepoll(ctx_, &nfds, fds.data(), &timeout, now);
    if (rc == ERROR_BUFFERFULL) {
      fds.resize(static_cast<size_t>(nfds) * 2);
      continue;
    }
    if (rc != 0) {
      log::error("libxl_osevent_beforepoll failed", {{"rc", rc}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    ::poll(fds.data(), static_cast<nfds_t>(nfds), timeout < 0 || timeout > 500 ? 500 : timeout);
    gettimeofday(&now, nullptr);
    libxl_osevent_afterpoll(ctx_, nfds, fds.data(), now);
  }
}

void LibxlHost::onEvent(const void* event) {
  const auto* ev = static_cast<const libxl_event*>(event);
  DeathFn fn;
  {
    MutexLock lock(mu_);
    fn = onDeath_;
  }
  if (!fn) return;
  if (ev->type == LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN) {
    XenShutdownReason r = XenShutdownReason::unknown;
    switch (ev->u.domain_shutdown.shutdown_reason) {
      case LIBXL_SHUTDOWN_REASON_POWEROFF: r = XenShutdownReason::poweroff; break;
      case LIBXL_SHUTDOWN_REASON_REBOOT: r = XenShutdownReason::reboot; break;
      case LIBXL_SHUTDOWN_REASON_SUSPEND: r = XenShutdownReason::suspend; break;
      case LIBXL_SHUTDOWN_REASON_CRASH: r = XenShutdownReason::crash; break;
      case LIBXL_SHUTDOWN_REASON_WATCHDOG: r = XenShutdownReason::watchdog; break;
      case LIBXL_SHUTDOWN_REASON_SOFT_RESET: r = XenShutdownReason::softReset; break;
      default: break;
    }
    fn(ev->domid, r, false);
  } else if (ev->type == LIBXL_EVENT_TYPE_DOMAIN_DEATH) {
    fn(ev->domid, XenShutdownReason::unknown, true);
  }
}

std::string LibxlHost::version() const {
  const auto* v = libxl_get_version_info(ctx_);
  if (!v) return "Xen";
  return "Xen " + std::to_string(v->xen_version_major) + "." + std::to_string(v->xen_version_minor) +
         (v->xen_version_extra ? v->xen_version_extra : "");
}

void LibxlHost::setDeathHandler(DeathFn fn) {
  MutexLock lock(mu_);
  onDeath_ = std::move(fn);
}

Status LibxlHost::waitAo(const std::function<int(const void* how)>& start, Deadline deadline, const std::string& what) {
  auto w = std::make_shared<AoWait>();
  libxl_asyncop_how how{};
  how.callback = aoDone;
  how.u.for_callback = w.get();
  int rc = start(&how);
  if (rc != 0) return libxlError(what, rc);  // failed before it began: no callback comes
  MutexLock lock(w->mu);
  if (!w->cv.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(w->mu) { return w->done; })) {
    lock.unlock();
    libxl_ao_abort(ctx_, &how);
    lock.lock();
    // An aborted ao still completes (with ERROR_ABORTED); `w` must outlive the callback.
    w->cv.wait(lock, [&]() VMM_REQUIRES(w->mu) { return w->done; });
    return timeoutError(what + ": did not finish by its deadline");
  }
  if (w->rc != 0) return libxlError(what, w->rc);
  return {};
}

Result<uint32_t> LibxlHost::create(const json& config, int restoreFd, bool paused, Deadline deadline) {
  libxl_domain_config cfg;
  libxl_domain_config_init(&cfg);
  int rc = libxl_domain_config_from_json(ctx_, &cfg, config.dump().c_str());
  if (rc != 0) {
    libxl_domain_config_dispose(&cfg);
    return invalidArgument("libxl refused the domain configuration (rc " + std::to_string(rc) + ")");
  }
  uint32_t domid = INVALID_DOMID;
  libxl_domain_restore_params params;
  libxl_domain_restore_params_init(&params);
  auto st = waitAo(
      [&](const void* how) {
        auto* h = static_cast<const libxl_asyncop_how*>(how);
        return restoreFd >= 0 ? libxl_domain_create_restore(ctx_, &cfg, &domid, restoreFd, -1, &params, h, nullptr)
                              : libxl_domain_create_new(ctx_, &cfg, &domid, h, nullptr);
      },
      deadline, "create domain");
  libxl_domain_restore_params_dispose(&params);
  libxl_domain_config_dispose(&cfg);
  if (!st.ok()) {
    // A half-made domain (aborted or failed late) is destroyed: nothing is left behind.
    if (domid != static_cast<uint32_t>(INVALID_DOMID)) (void)destroy(domid, Deadline::after(Millis(30000)));
    return st.error();
  }
  if (!paused) {
    if (auto u = unpause(domid, deadline); !u.ok()) {
      (void)destroy(domid, Deadline::after(Millis(30000)));
      return u.error();
    }
  }
  return domid;
}

Status LibxlHost::shutdown(uint32_t domid) {
  int rc = libxl_domain_shutdown(ctx_, domid, nullptr);
  return rc == 0 ? Status{} : Status(libxlError("shutdown", rc));
}

Status LibxlHost::reboot(uint32_t domid) {
  int rc = libxl_domain_reboot(ctx_, domid, nullptr);
  return rc == 0 ? Status{} : Status(libxlError("reboot", rc));
}

Status LibxlHost::destroy(uint32_t domid, Deadline deadline) {
  return waitAo([&](const void* how) { return libxl_domain_destroy(ctx_, domid, static_cast<const libxl_asyncop_how*>(how)); },
                deadline, "destroy");
}

Status LibxlHost::pause(uint32_t domid, Deadline deadline) {
  return waitAo([&](const void* how) { return libxl_domain_pause(ctx_, domid, static_cast<const libxl_asyncop_how*>(how)); },
                deadline, "pause");
}

Status LibxlHost::unpause(uint32_t domid, Deadline deadline) {
  return waitAo([&](const void* how) { return libxl_domain_unpause(ctx_, domid, static_cast<const libxl_asyncop_how*>(how)); },
                deadline, "unpause");
}

Status LibxlHost::save(uint32_t domid, int fd, Deadline deadline) {
  return waitAo(
      [&](const void* how) { return libxl_domain_suspend(ctx_, domid, fd, 0, static_cast<const libxl_asyncop_how*>(how)); },
      deadline, "save");
}

Status LibxlHost::resume(uint32_t domid, Deadline deadline) {
  return waitAo(
      [&](const void* how) { return libxl_domain_resume(ctx_, domid, 1, static_cast<const libxl_asyncop_how*>(how)); },
      deadline, "resume");
}

Result<uint32_t> LibxlHost::find(const std::string& name, const std::string& uuid) {
  uint32_t domid = 0;
  if (libxl_name_to_domid(ctx_, name.c_str(), &domid) != 0) return notFound("no Xen domain named " + name);
  libxl_dominfo info;
  libxl_dominfo_init(&info);
  int rc = libxl_domain_info(ctx_, &info, domid);
  libxl_uuid want;
  bool same = rc == 0 && libxl_uuid_from_string(&want, uuid.c_str()) == 0 && libxl_uuid_compare(&want, &info.uuid) == 0;
  bool dying = info.dying;
  libxl_dominfo_dispose(&info);
  if (!same || dying) return notFound("Xen domain " + name + " is not this domain (or is dying)");
  return domid;
}

Result<json> LibxlHost::stats(uint32_t domid) {
  libxl_dominfo info;
  libxl_dominfo_init(&info);
  int rc = libxl_domain_info(ctx_, &info, domid);
  if (rc != 0) {
    libxl_dominfo_dispose(&info);
    return libxlError("domain info", rc);
  }
  json out = {{"cpu_time_ns", info.cpu_time},
              {"memory_bytes", info.current_memkb * 1024},
              {"max_memory_bytes", info.max_memkb * 1024},
              {"vcpus_online", info.vcpu_online},
              {"paused", info.paused}};
  libxl_dominfo_dispose(&info);
  int nr = 0, nrCpus = 0;
  if (libxl_vcpuinfo* v = libxl_list_vcpu(ctx_, domid, &nr, &nrCpus)) {
    out["vcpus"] = json::array();
    for (int i = 0; i < nr; ++i)
      out["vcpus"].push_back({{"id", v[i].vcpuid}, {"cpu", v[i].cpu}, {"online", v[i].online}, {"time_ns", v[i].vcpu_time}});
    libxl_vcpuinfo_list_free(v, nr);
  }
  return out;
}

Result<std::string> LibxlHost::consoleTty(uint32_t domid, bool serial) {
  char* path = nullptr;
  int rc = libxl_console_get_tty(ctx_, domid, 0, serial ? LIBXL_CONSOLE_TYPE_SERIAL : LIBXL_CONSOLE_TYPE_PV, &path);
  if (rc != 0 || !path) return libxlError("console", rc ? rc : ERROR_FAIL);
  std::string out = path;
  free(path);
  return out;
}

Status LibxlHost::watch(uint32_t domid) {
  MutexLock lock(mu_);
  if (watches_.count(domid)) return {};
  libxl_evgen_domain_death* gen = nullptr;
  int rc = libxl_evenable_domain_death(ctx_, domid, domid, &gen);
  if (rc != 0) return libxlError("watch domain", rc);
  watches_[domid] = gen;
  return {};
}

void LibxlHost::unwatch(uint32_t domid) {
  MutexLock lock(mu_);
  auto it = watches_.find(domid);
  if (it == watches_.end()) return;
  libxl_evdisable_domain_death(ctx_, it->second);
  watches_.erase(it);
}

}  // namespace vmm::drivers::xen
