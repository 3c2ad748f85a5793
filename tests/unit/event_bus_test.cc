#include <gtest/gtest.h>

#include <thread>

#include "daemon/event_bus.h"

using namespace vmm;

TEST(EventBus, DeliversInOrderWithFilters) {
  EventBus bus;
  auto all = bus.subscribe({});
  auto domains = bus.subscribe({{"domain"}, ""});
  auto web1 = bus.subscribe({{}, "domains/web1"});
  bus.publish("domain.lifecycle", "domains/web1", {{"event", "started"}});
  bus.publish("operation", "operations/x", {});
  bus.publish("domain.device", "domains/web2", {});
  bus.publish("domainish", "domains/web2", {});  // "domain" is a prefix only up to a dot
  bool closed = false;
  auto got = all->drain(closed);
  ASSERT_EQ(got.size(), 4u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i]->seq, i + 1);
  auto d = domains->drain(closed);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0]->type, "domain.lifecycle");
  EXPECT_EQ(d[1]->type, "domain.device");
  auto w = web1->drain(closed);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_FALSE(closed);
}

TEST(EventBus, SlowSubscriberIsToldAndDropped) {
  EventBus bus;
  auto slow = bus.subscribe({}, 3);
  auto fast = bus.subscribe({}, 100);
  for (int i = 0; i < 10; ++i) bus.publish("domain.lifecycle", "domains/x", {{"i", i}});
  EXPECT_EQ(bus.overflowCount(), 1u);
  EXPECT_EQ(bus.subscriberCount(), 1u);  // the slow one was removed
  bool closed = false;
  auto got = slow->drain(closed);
  EXPECT_TRUE(closed);
  ASSERT_EQ(got.size(), 4u);  // three events, then the overflow notice
  EXPECT_EQ(got[2]->seq, 3u);
  EXPECT_EQ(got[3]->type, "events.overflow");
  EXPECT_EQ(got[3]->data["last_delivered_seq"], 3);
  auto next = slow->next(Deadline::after(Millis(10)));
  EXPECT_FALSE(next.ok());  // closed, never silently continued
  EXPECT_EQ(fast->drain(closed).size(), 10u);
  EXPECT_FALSE(closed);
}

TEST(EventBus, NextWaitsAndTimesOut) {
  EventBus bus;
  auto sub = bus.subscribe({});
  auto t0 = SteadyClock::now();
  auto none = sub->next(Deadline::after(Millis(50)));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(SteadyClock::now() - t0, Millis(45));
  std::thread t([&] {
    std::this_thread::sleep_for(Millis(20));
    bus.publish("x", "", {});
  });
  auto one = sub->next(Deadline::after(Millis(2000)));
  t.join();
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((**one)->type, "x");
  bus.unsubscribe(sub);
  EXPECT_FALSE(sub->next(Deadline::after(Millis(10))).ok());
}

TEST(EventBus, NotifyFiresOnFirstQueuedEvent) {
  EventBus bus;
  auto sub = bus.subscribe({});
  int notified = 0;
  sub->setNotify([&] { ++notified; });
  bus.publish("a", "", {});
  bus.publish("b", "", {});  // queue not empty: no second wake-up needed
  EXPECT_EQ(notified, 1);
  bool closed;
  sub->drain(closed);
  bus.publish("c", "", {});
  EXPECT_EQ(notified, 2);
}
