// The audit trail: one record per call that may change something (every operation whose spec
// needs more than the read role), refused calls included. Each record is written as one
// structured log line ("audit", logfmt or JSON as the log is: the durable trail, for journald
// or a log shipper), kept in a bounded in-memory ring that audit.list reads, and handed to a
// sink (vmmd publishes it as an "audit" event that only admin subscribers receive).
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/mutex.h"

namespace vmm::api {

struct AuditRecord {
  uint64_t seq = 0;
  int64_t timeUs = 0;
  std::string principal;  // "uid 1000", "token ci"
  std::string role;       // the caller's role: read, operator, admin
  std::string project;    // the project the call acted in
  std::string transport;  // rpc, http
  std::string method;     // "domain.start"
  std::string object;     // "domains/web1"
  std::string result;     // "ok", or the error's kind ("permission-denied")
  std::string message;    // the error's message
  std::string operation;  // the id of the operation an async call started
  int64_t durationUs = 0;
};

struct AuditQuery {
  std::string principal;  // exact; "" = any
  std::string method;     // a prefix: "domain" matches "domain.start"; "" = any
  std::string object;     // exact; "" = any
  uint64_t afterSeq = 0;  // only records after this one
  size_t limit = 100;     // the newest this many, oldest first
};

nlohmann::json formatAuditRecord(const AuditRecord& r);

class AuditTrail {
 public:
  explicit AuditTrail(size_t keep = 10000) : keep_(keep) {}
  // Called with every record after it is kept (outside the lock).
  void setSink(std::function<void(const AuditRecord&)> sink);
  void record(AuditRecord r);
  std::vector<AuditRecord> list(const AuditQuery& query) const;

 private:
  const size_t keep_;
  mutable Mutex mu_;
  std::deque<AuditRecord> records_ VMM_GUARDED_BY(mu_);
  uint64_t nextSeq_ VMM_GUARDED_BY(mu_) = 1;
  std::function<void(const AuditRecord&)> sink_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm::api
