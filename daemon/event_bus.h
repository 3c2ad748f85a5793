// One bus for every event (lifecycle, device, job, operation, storage, network). Each
// subscriber has a queue bounded by a count of events and by their bytes; a subscriber that
// falls behind receives an "events.overflow" event naming the last sequence number it got and
// which bound it passed, and is then closed - never silently skipped. Sequence numbers are
// global and increase by one per event. An event is made (and its JSON text written) once and
// shared by every queue it is in, so N subscribers cost N pointers, not N copies.
//
// Thread-safety: all methods may be called from any thread. publish() never blocks on a
// subscriber.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/time_util.h"
#include "model/operation.h"

namespace vmm {

// An event as subscribers get it: shared, with its JSON text (formatEvent) made once.
struct QueuedEvent : model::Event {
  std::string text;
  std::string project;  // whose object it is about (model/project.h)
};
using EventPtr = std::shared_ptr<const QueuedEvent>;

// The event's text for a subscriber of `project`: its names as that project knows them.
std::string eventTextFor(const QueuedEvent& e, std::string_view project);

struct EventFilter {
  std::vector<std::string> types;  // prefixes: "domain" matches "domain.lifecycle"; empty = all
  std::string object;              // exact object ("domains/web1"); empty = all
  // Set by transports from the subscriber's role, never by the client: what a guest printed
  // ("operation.output", operator and admin) and the host's access records ("audit" and
  // "token", admin only).
  bool guestOutput = true;
  bool accessRecords = true;
  // Set by transports: only events about this project's objects (unset: every project's).
  std::optional<std::string> project = std::nullopt;
  bool matches(const QueuedEvent& e) const;
  // Matching costs O(types) per event and subscriber: filters from clients are bounded.
  static constexpr size_t kMaxTypes = 32, kMaxTypeLength = 128, kMaxObjectLength = 512;
  Status check() const;
};

class EventBus;

class Subscription {
 public:
  // Waits for the next event. Returns nullopt at the deadline; an error once closed (after
  // the queued events and, on overflow, the overflow notice were delivered).
  Result<std::optional<EventPtr>> next(Deadline deadline);
  // Takes everything queued without waiting; sets `closed` when no more will come.
  std::vector<EventPtr> drain(bool& closed);
  // Called from the publishing thread when the queue goes from empty to non-empty or the
  // subscription closes (event-loop transports post a wake-up from it).
  void setNotify(std::function<void()> fn);
  void close();
  uint64_t id() const { return id_; }
  const EventFilter& filter() const { return filter_; }
  // An event's text for this subscriber (names as its project knows them).
  std::string textOf(const QueuedEvent& e) const { return filter_.project ? eventTextFor(e, *filter_.project) : e.text; }

 private:
  friend class EventBus;
  Subscription(uint64_t id, EventFilter f, size_t limit, size_t byteLimit)
      : id_(id), filter_(std::move(f)), limit_(limit), byteLimit_(byteLimit) {}
  enum class PushResult { queued, overflowed, closed };
  PushResult push(const EventPtr& e, std::function<void()>& notifyOut);

  const uint64_t id_;
  const EventFilter filter_;
  const size_t limit_, byteLimit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<EventPtr> queue_;
  size_t queuedBytes_ = 0;
  uint64_t lastQueuedSeq_ = 0;
  bool closed_ = false;      // no more events will be queued
  std::function<void()> notify_;
};

class EventBus {
 public:
  static constexpr size_t kDefaultQueueBytes = 16 << 20;
  explicit EventBus(size_t defaultQueueLimit = 4096, size_t defaultQueueBytes = kDefaultQueueBytes)
      : defaultLimit_(defaultQueueLimit), defaultBytes_(defaultQueueBytes) {}

  // Limits of 0 take the bus's defaults.
  std::shared_ptr<Subscription> subscribe(EventFilter filter, size_t queueLimit = 0, size_t queueBytes = 0);
  void unsubscribe(const std::shared_ptr<Subscription>& sub);
  // The event is about `project`'s objects; "" reads it from the object ("domains/_ci_web").
  uint64_t publish(std::string type, std::string object, nlohmann::json data, std::string project = "");
  // Closes every subscription (daemon shutdown).
  void closeAll();

  uint64_t lastSeq() const { return seq_.load(); }
  uint64_t overflowCount() const { return overflows_.load(); }
  size_t subscriberCount() const;

 private:
  const size_t defaultLimit_, defaultBytes_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Subscription>> subs_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> overflows_{0};
  uint64_t nextSubId_ = 1;
};

}  // namespace vmm
