// Retry policy: the rules of retry_policy.h.
#include "queue/retry_policy.h"

#include <algorithm>
#include <cmath>

namespace fetchq::queue {

RetryDecision decide_retry(const AttemptFailure& failure, const RetryHistory& history,
                           const RetryOptions& options, int64_t now_ms, double jitter) {
  RetryDecision d;
  const bool progressed = failure.bytes > history.best_bytes && !failure.restart_from_zero;
  d.failures = progressed ? 1 : history.failures + 1;
  d.failing_since_ms = progressed || !history.failing_since_ms ? now_ms : *history.failing_since_ms;
  if (!failure.retryable) {
    d.give_up = GiveUp::kNotRetryable;
  } else if (d.failures >= options.max_attempts) {
    d.give_up = GiveUp::kTooManyAttempts;
  } else if (now_ms - d.failing_since_ms >= options.give_up_after.count()) {
    d.give_up = GiveUp::kFailingTooLong;
  }
  if (!d.retry() || failure.restart_from_zero) return d;
  if (failure.retry_after_ms) {
    d.delay_ms = std::clamp<int64_t>(*failure.retry_after_ms, 0, kMaxRetryAfterMs);
    return d;
  }
  double base = static_cast<double>(options.base_delay.count()) * std::pow(2.0, d.failures - 1);
  base = std::min(base, static_cast<double>(options.max_delay.count()));
  d.delay_ms = static_cast<int64_t>(base * jitter);
  return d;
}

const char* to_string(GiveUp reason) {
  switch (reason) {
    case GiveUp::kNo:
      return "retry";
    case GiveUp::kNotRetryable:
      return "not retryable";
    case GiveUp::kTooManyAttempts:
      return "too many attempts without progress";
    case GiveUp::kFailingTooLong:
      return "failing too long without progress";
  }
  return "?";
}

}  // namespace fetchq::queue
