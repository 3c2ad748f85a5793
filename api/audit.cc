#include "api/audit.h"

#include "base/log.h"
#include "base/strings.h"
#include "base/time_util.h"

namespace vmm::api {

nlohmann::json formatAuditRecord(const AuditRecord& r) {
  nlohmann::json j = {{"seq", r.seq},
                      {"time", formatTimestamp(r.timeUs)},
                      {"principal", r.principal},
                      {"role", r.role},
                      {"project", r.project},
                      {"transport", r.transport},
                      {"method", r.method},
                      {"object", r.object},
                      {"result", r.result},
                      {"duration_ms", static_cast<double>(r.durationUs) / 1000.0}};
  if (!r.message.empty()) j["message"] = r.message;
  if (!r.operation.empty()) j["operation"] = r.operation;
  return j;
}

void AuditTrail::setSink(std::function<void(const AuditRecord&)> sink) {
  MutexLock lock(mu_);
  sink_ = std::move(sink);
}

void AuditTrail::record(AuditRecord r) {
  std::function<void(const AuditRecord&)> sink;
  {
    MutexLock lock(mu_);
    r.seq = nextSeq_++;
    records_.push_back(r);
    while (records_.size() > keep_) records_.pop_front();
    sink = sink_;
  }
  log::record(log::Level::info, "audit", {{"seq", r.seq},
                      {"principal", r.principal},
                      {"role", r.role},
                      {"project", r.project},
                      {"transport", r.transport},
                      {"method", r.method},
                      {"object", r.object},
                      {"result", r.result},
                      {"error", r.message},
                      {"operation", r.operation},
                      {"duration_ms", static_cast<double>(r.durationUs) / 1000.0}});
  if (sink) sink(r);
}

std::vector<AuditRecord> AuditTrail::list(const AuditQuery& query) const {
  std::vector<AuditRecord> out;
  MutexLock lock(mu_);
  for (auto it = records_.rbegin(); it != records_.rend() && out.size() < query.limit; ++it) {
    if (it->seq <= query.afterSeq) break;
    if (!query.principal.empty() && it->principal != query.principal) continue;
    if (!query.object.empty() && it->object != query.object) continue;
    if (!query.method.empty() && !(it->method == query.method || startsWith(it->method, query.method + "."))) continue;
    out.push_back(*it);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace vmm::api
