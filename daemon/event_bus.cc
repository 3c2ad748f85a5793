#include "daemon/event_bus.h"

#include <algorithm>

#include "base/log.h"
#include "base/strings.h"
#include "model/project.h"

namespace vmm {

bool EventFilter::matches(const QueuedEvent& e) const {
  if (project && e.project != *project) return false;
  if (!object.empty() && e.object != object) return false;
  if (!guestOutput && e.type == "operation.output") return false;
  if (!accessRecords && (e.type == "audit" || e.type == "token")) return false;
  if (types.empty()) return true;
  for (const auto& t : types) {
    if (e.type == t) return true;
    if (startsWith(e.type, t) && e.type.size() > t.size() && e.type[t.size()] == '.') return true;
  }
  return false;
}

Status EventFilter::check() const {
  if (types.size() > kMaxTypes)
    return invalidArgument("types: at most " + std::to_string(kMaxTypes) + " event types, got " + std::to_string(types.size()));
  for (const auto& t : types)
    if (t.empty() || t.size() > kMaxTypeLength)
      return invalidArgument("types: each event type has 1 to " + std::to_string(kMaxTypeLength) + " characters");
  if (object.size() > kMaxObjectLength)
    return invalidArgument("object: at most " + std::to_string(kMaxObjectLength) + " characters");
  return {};
}

namespace {

EventPtr makeQueued(model::Event e) {
  auto q = std::make_shared<QueuedEvent>();
  static_cast<model::Event&>(*q) = std::move(e);
  q->text = model::formatEvent(*q).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return q;
}

}  // namespace

Subscription::PushResult Subscription::push(const EventPtr& e, std::function<void()>& notifyOut) {
  std::lock_guard lock(mu_);
  if (closed_) return PushResult::closed;
  PushResult result = PushResult::queued;
  bool wasEmpty = queue_.empty();
  bool tooMany = queue_.size() >= limit_;
  if (tooMany || queuedBytes_ + e->text.size() > byteLimit_) {
    model::Event over;
    over.seq = e->seq;
    over.timeUs = e->timeUs;
    over.type = "events.overflow";
    std::string bound = tooMany ? std::to_string(limit_) + " events" : std::to_string(byteLimit_) + " bytes of events";
    over.data = {{"last_delivered_seq", lastQueuedSeq_},
                 {"reason", tooMany ? "events" : "bytes"},
                 {"message", "subscriber fell behind by more than " + bound +
                                 " and was disconnected; events after last_delivered_seq were not delivered"}};
    queue_.push_back(makeQueued(std::move(over)));
    closed_ = true;
    result = PushResult::overflowed;
  } else {
    queue_.push_back(e);
    queuedBytes_ += e->text.size();
    lastQueuedSeq_ = e->seq;
  }
  cv_.notify_all();
  if ((wasEmpty || closed_) && notify_) notifyOut = notify_;
  return result;
}

Result<std::optional<EventPtr>> Subscription::next(Deadline deadline) {
  std::unique_lock lock(mu_);
  while (queue_.empty()) {
    if (closed_) return unavailable("event subscription closed");
    if (deadline.isNever()) cv_.wait(lock);
    else if (cv_.wait_until(lock, deadline.at()) == std::cv_status::timeout && queue_.empty()) {
      if (closed_) return unavailable("event subscription closed");
      return std::optional<EventPtr>();
    }
  }
  auto e = std::move(queue_.front());
  queue_.pop_front();
  queuedBytes_ -= std::min(queuedBytes_, e->text.size());
  return std::optional<EventPtr>(std::move(e));
}

std::vector<EventPtr> Subscription::drain(bool& closed) {
  std::lock_guard lock(mu_);
  std::vector<EventPtr> out(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  queuedBytes_ = 0;
  closed = closed_;
  return out;
}

void Subscription::setNotify(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  notify_ = std::move(fn);
}

void Subscription::close() {
  std::function<void()> notify;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    cv_.notify_all();
    notify = notify_;
  }
  if (notify) notify();
}

std::shared_ptr<Subscription> EventBus::subscribe(EventFilter filter, size_t queueLimit, size_t queueBytes) {
  std::lock_guard lock(mu_);
  std::shared_ptr<Subscription> sub(new Subscription(nextSubId_++, std::move(filter), queueLimit ? queueLimit : defaultLimit_,
                                                     queueBytes ? queueBytes : defaultBytes_));
  subs_.push_back(sub);
  return sub;
}

void EventBus::unsubscribe(const std::shared_ptr<Subscription>& sub) {
  if (!sub) return;
  sub->close();
  std::lock_guard lock(mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

std::string eventTextFor(const QueuedEvent& e, std::string_view project) {
  if (project == model::kDefaultProject || e.text.find('_') == std::string::npos) return e.text;
  auto j = nlohmann::json::parse(e.text, nullptr, false);
  model::unqualifyJson(j, project);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

uint64_t EventBus::publish(std::string type, std::string object, nlohmann::json data, std::string project) {
  auto q = std::make_shared<QueuedEvent>();
  q->project = project.empty() ? std::string(model::projectOfObject(object)) : std::move(project);
  q->timeUs = wallNowMicros();
  q->type = std::move(type);
  q->object = std::move(object);
  q->data = std::move(data);
  std::vector<std::function<void()>> notifies;
  uint64_t seq;
  {
    // The sequence number is taken under the lock so that every subscriber sees events in
    // sequence order; the text is written under it too (it holds the number).
    std::lock_guard lock(mu_);
    q->seq = seq = ++seq_;
    if (subs_.empty()) return seq;
    q->text = model::formatEvent(*q).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    EventPtr e = std::move(q);
    for (auto it = subs_.begin(); it != subs_.end();) {
      auto& sub = *it;
      if (!sub->filter_.matches(*e)) {
        ++it;
        continue;
      }
      std::function<void()> notify;
      auto result = sub->push(e, notify);
      if (notify) notifies.push_back(std::move(notify));
      if (result == Subscription::PushResult::overflowed) {
        ++overflows_;
        log::warn("event subscriber fell behind and was disconnected", {{"subscription", sub->id_}});
      }
      if (result != Subscription::PushResult::queued) {
        it = subs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& fn : notifies) fn();
  return seq;
}

void EventBus::closeAll() {
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    std::lock_guard lock(mu_);
    subs.swap(subs_);
  }
  for (auto& s : subs) s->close();
}

size_t EventBus::subscriberCount() const {
  std::lock_guard lock(mu_);
  return subs_.size();
}

}  // namespace vmm
