// Serialises the mutations of one object (a domain, pool or network). A mutation acquires
// the object's job before it talks to a driver and releases it when done; a second mutation
// waits until its deadline and then fails naming the job in progress. Reads never take a job:
// they read the object's last published snapshot.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <optional>
#include <string>

#include "base/mutex.h"
#include "base/result.h"
#include "base/time_util.h"

namespace vmm {

class Job;

class JobGuard {
 public:
  JobGuard() = default;
  JobGuard(JobGuard&& o) noexcept : job_(o.job_) { o.job_ = nullptr; }
  JobGuard& operator=(JobGuard&& o) noexcept;
  JobGuard(const JobGuard&) = delete;
  JobGuard& operator=(const JobGuard&) = delete;
  ~JobGuard() { release(); }
  void release();
  bool held() const { return job_ != nullptr; }

 private:
  friend class Job;
  explicit JobGuard(Job* j) : job_(j) {}
  Job* job_ = nullptr;
};

class Job {
 public:
  // `what` describes the mutation for others' error messages ("start").
  Result<JobGuard> acquire(const std::string& what, const std::string& objectDescription, Deadline deadline);
  // The running mutation, if any: "start since 2026-11-22T14:02:03.123Z".
  std::optional<std::string> current() const;

 private:
  friend class JobGuard;
  void release();
  mutable Mutex mu_;
  CondVar cv_;
  bool busy_ VMM_GUARDED_BY(mu_) = false;
  std::string what_ VMM_GUARDED_BY(mu_);
  int64_t sinceUs_ VMM_GUARDED_BY(mu_) = 0;
};

}  // namespace vmm
