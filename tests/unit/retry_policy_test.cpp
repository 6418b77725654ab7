// Retry policy: each rule of decide_retry, table-driven.
#include "queue/retry_policy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fetchq::queue {
namespace {

using std::chrono::milliseconds;

RetryOptions Options() {
  RetryOptions o;
  o.max_attempts = 5;
  o.give_up_after = milliseconds(600000);
  o.base_delay = milliseconds(1000);
  o.max_delay = milliseconds(5000);
  return o;
}

constexpr int64_t kNow = 1'700'000'000'000;

struct Case {
  std::string name;
  AttemptFailure failure;
  RetryHistory history;
  double jitter;
  GiveUp give_up;
  int64_t delay_ms;
  int failures;
  int64_t failing_since_ms;
};

TEST(RetryPolicy, Table) {
  const std::vector<Case> cases = {
      // Error classes.
      {"not retryable gives up at once", {false, std::nullopt, false, 0}, {0, std::nullopt, 0}, 1.0,
       GiveUp::kNotRetryable, 0, 1, kNow},
      {"first passing failure waits base", {true, std::nullopt, false, 0}, {0, std::nullopt, 0}, 1.0,
       GiveUp::kNo, 1000, 1, kNow},
      {"restart from zero is immediate", {true, std::nullopt, true, 500}, {2, kNow - 10, 100}, 1.0,
       GiveUp::kNo, 0, 3, kNow - 10},
      {"restart wins over retry-after", {true, 7000, true, 0}, {0, std::nullopt, 0}, 1.0, GiveUp::kNo,
       0, 1, kNow},
      // Backoff growth and its cap.
      {"second failure doubles", {true, std::nullopt, false, 0}, {1, kNow - 1000, 0}, 1.0, GiveUp::kNo,
       2000, 2, kNow - 1000},
      {"third failure doubles again", {true, std::nullopt, false, 0}, {2, kNow - 1000, 0}, 1.0,
       GiveUp::kNo, 4000, 3, kNow - 1000},
      {"growth stops at max_delay", {true, std::nullopt, false, 0}, {3, kNow - 1000, 0}, 1.0,
       GiveUp::kNo, 5000, 4, kNow - 1000},
      {"jitter scales the delay", {true, std::nullopt, false, 0}, {1, kNow - 1000, 0}, 0.5, GiveUp::kNo,
       1000, 2, kNow - 1000},
      // Retry-After replaces the backoff, within bounds.
      {"retry-after is used as is", {true, 7000, false, 0}, {3, kNow - 1000, 0}, 0.5, GiveUp::kNo, 7000,
       4, kNow - 1000},
      {"retry-after past max_delay is kept", {true, 120000, false, 0}, {0, std::nullopt, 0}, 1.0,
       GiveUp::kNo, 120000, 1, kNow},
      {"retry-after is clamped to an hour", {true, 90000000, false, 0}, {0, std::nullopt, 0}, 1.0,
       GiveUp::kNo, kMaxRetryAfterMs, 1, kNow},
      {"negative retry-after is now", {true, -5, false, 0}, {0, std::nullopt, 0}, 1.0, GiveUp::kNo, 0, 1,
       kNow},
      // Give-up limits.
      {"max_attempts failures in a row give up", {true, std::nullopt, false, 0}, {4, kNow - 1000, 0},
       1.0, GiveUp::kTooManyAttempts, 0, 5, kNow - 1000},
      {"one below max_attempts retries", {true, std::nullopt, false, 0}, {3, kNow - 1000, 0}, 0.5,
       GiveUp::kNo, 2500, 4, kNow - 1000},
      {"failing for give_up_after gives up", {true, std::nullopt, false, 0}, {1, kNow - 600000, 0}, 1.0,
       GiveUp::kFailingTooLong, 0, 2, kNow - 600000},
      {"failing just under give_up_after retries", {true, std::nullopt, false, 0},
       {1, kNow - 599999, 0}, 1.0, GiveUp::kNo, 2000, 2, kNow - 599999},
      // Progress starts a new run of failures.
      {"progress resets the run", {true, std::nullopt, false, 2000}, {4, kNow - 900000, 1000}, 1.0,
       GiveUp::kNo, 1000, 1, kNow},
      {"no progress past best keeps the run", {true, std::nullopt, false, 1000}, {4, kNow - 1000, 1000},
       1.0, GiveUp::kTooManyAttempts, 0, 5, kNow - 1000},
      {"bytes after a restart are no progress", {true, std::nullopt, true, 5000}, {4, kNow - 1000, 1000},
       1.0, GiveUp::kTooManyAttempts, 0, 5, kNow - 1000},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RetryDecision d = decide_retry(c.failure, c.history, Options(), kNow, c.jitter);
    EXPECT_EQ(d.give_up, c.give_up) << to_string(d.give_up);
    EXPECT_EQ(d.retry(), c.give_up == GiveUp::kNo);
    EXPECT_EQ(d.delay_ms, c.delay_ms);
    EXPECT_EQ(d.failures, c.failures);
    EXPECT_EQ(d.failing_since_ms, c.failing_since_ms);
  }
}

TEST(RetryPolicy, DelayNeverExceedsTheCapWhateverTheCount) {
  for (int failures = 0; failures < 200; ++failures) {
    RetryOptions o = Options();
    o.max_attempts = 1000;
    auto d = decide_retry({true, std::nullopt, false, 0}, {failures, kNow, 0}, o, kNow, 0.99);
    ASSERT_TRUE(d.retry());
    EXPECT_GE(d.delay_ms, 0);
    EXPECT_LE(d.delay_ms, o.max_delay.count()) << failures;
  }
}

}  // namespace
}  // namespace fetchq::queue
