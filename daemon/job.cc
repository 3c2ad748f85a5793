#include "daemon/job.h"

namespace vmm {

JobGuard& JobGuard::operator=(JobGuard&& o) noexcept {
  if (this != &o) {
    release();
    job_ = o.job_;
    o.job_ = nullptr;
  }
  return *this;
}

void JobGuard::release() {
  if (job_) job_->release();
  job_ = nullptr;
}

Result<JobGuard> Job::acquire(const std::string& what, const std::string& objectDescription, Deadline deadline) {
  MutexLock lock(mu_);
  if (busy_) {
    bool got = cv_.wait_until(lock, deadline.at(), [&]() VMM_REQUIRES(mu_) { return !busy_; });
    if (!got)
      return Error{ErrorCode::conflict, objectDescription + " is busy: " + what_ + " in progress since " +
                                            formatTimestamp(sinceUs_) + "; try again when it has finished"};
  }
  busy_ = true;
  what_ = what;
  sinceUs_ = wallNowMicros();
  return JobGuard(this);
}

std::optional<std::string> Job::current() const {
  MutexLock lock(mu_);
  if (!busy_) return std::nullopt;
  return what_ + " since " + formatTimestamp(sinceUs_);
}

void Job::release() {
  {
    MutexLock lock(mu_);
    busy_ = false;
    what_.clear();
  }
  cv_.notify_one();
}

}  // namespace vmm
