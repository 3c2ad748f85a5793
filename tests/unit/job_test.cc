#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "daemon/job.h"
#include "daemon/object_table.h"

using namespace vmm;

TEST(Job, SerialisesMutations) {
  Job job;
  std::atomic<int> inside{0}, maxInside{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 50; ++k) {
        auto g = job.acquire("work", "domain x", Deadline::after(Millis(10000)));
        ASSERT_TRUE(g.ok());
        int now = ++inside;
        maxInside = std::max(maxInside.load(), now);
        --inside;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(maxInside.load(), 1);
}

TEST(Job, BusyJobTimesOutNamingTheHolder) {
  Job job;
  auto g = job.acquire("start", "domain web1", Deadline::after(Millis(100)));
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(job.current().has_value());
  EXPECT_EQ(job.current()->substr(0, 11), "start since");
  auto second = job.acquire("destroy", "domain web1", Deadline::after(Millis(50)));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::conflict);
  EXPECT_NE(second.error().message.find("domain web1 is busy: start in progress"), std::string::npos);
  g->release();
  EXPECT_FALSE(job.current().has_value());
  EXPECT_TRUE(job.acquire("destroy", "domain web1", Deadline::after(Millis(50))).ok());
}

TEST(Job, WaiterGetsTheJobWhenReleased) {
  Job job;
  auto g = job.acquire("a", "x", Deadline::after(Millis(100)));
  std::thread t([&] {
    std::this_thread::sleep_for(Millis(30));
    g->release();
  });
  auto second = job.acquire("b", "x", Deadline::after(Millis(2000)));
  t.join();
  EXPECT_TRUE(second.ok());
}

TEST(ObjectTable, InsertFindErase) {
  ObjectTable<int> t;
  EXPECT_TRUE(t.insert("b", std::make_shared<int>(2)));
  EXPECT_TRUE(t.insert("a", std::make_shared<int>(1)));
  EXPECT_FALSE(t.insert("a", std::make_shared<int>(3)));
  EXPECT_EQ(*t.find("a"), 1);
  EXPECT_EQ(t.names(), (std::vector<std::string>{"a", "b"}));
  t.erase("a");
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_EQ(t.size(), 1u);
}
