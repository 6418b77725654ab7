// Worker: what other threads post is handled on the worker's thread, in order, in batches;
// posting does not wait for a slow handler; drain() and stop() see everything posted through.
#include "queue/worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "queue/callback_runner.h"

namespace fetchq::testing {
namespace {

using namespace std::chrono_literals;

TEST(Worker, HandlesEverythingInTheOrderPostedOnItsOwnThread) {
  std::vector<int> seen;
  std::thread::id on;
  queue::Worker<int> w("test-worker", [&](std::vector<int>& batch) {
    on = std::this_thread::get_id();
    seen.insert(seen.end(), batch.begin(), batch.end());
  });
  for (int i = 0; i < 1000; ++i) w.post(i);
  w.post_all({1000, 1001});
  w.drain();
  ASSERT_EQ(seen.size(), 1002u);
  for (int i = 0; i < 1002; ++i) ASSERT_EQ(seen[i], i);
  EXPECT_NE(on, std::this_thread::get_id());
}

TEST(Worker, PostingDoesNotWaitForASlowHandlerWhichThenGetsTheRestAsOneBatch) {
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> batches{0};
  std::vector<int> sizes;
  queue::Worker<int> w("test-worker", [&](std::vector<int>& batch) {
    sizes.push_back(static_cast<int>(batch.size()));
    if (batches++ == 0) released.wait();
  });
  w.post(0);
  while (batches.load() == 0) std::this_thread::sleep_for(1ms);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1; i <= 50; ++i) w.post(i);  // the handler is blocked on its first batch
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  release.set_value();
  w.drain();
  EXPECT_EQ(sizes, (std::vector<int>{1, 50}));
}

TEST(Worker, StopHandlesWhatWasPostedThenJoinsAndIsIdempotent) {
  std::atomic<int> handled{0};
  std::promise<void> release;
  auto released = release.get_future().share();
  {
    queue::Worker<int> w("test-worker", [&](std::vector<int>& batch) {
      released.wait();
      handled += static_cast<int>(batch.size());
    });
    for (int i = 0; i < 10; ++i) w.post(i);
    release.set_value();
    w.stop();
    EXPECT_EQ(handled.load(), 10);
    w.stop();
  }  // the destructor stops again
  EXPECT_EQ(handled.load(), 10);
}

TEST(CallbackRunner, AThrowingCallbackIsLoggedAndTheNextOnesStillRun) {
  queue::CallbackRunner runner;
  std::atomic<int> ran{0};
  runner.post([] { throw std::runtime_error("boom"); });
  runner.post([&] { ++ran; });
  runner.post([] { throw 42; });
  runner.post([&] { ++ran; });
  runner.drain();
  EXPECT_EQ(ran.load(), 2);
}

}  // namespace
}  // namespace fetchq::testing
