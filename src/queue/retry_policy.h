// Retry policy: whether a failed attempt is tried again, and when. A pure function of its inputs
// (no clock, no randomness of its own), so every rule is tested in a table (retry_policy_test).
//
// Callable from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace fetchq::queue {

struct RetryOptions {
  int max_attempts = 8;  // failures in a row without progress before giving up
  std::chrono::milliseconds give_up_after{3600 * 1000};  // failing this long without progress
  std::chrono::milliseconds base_delay{1000};  // delay after the first failure; doubles after each
  std::chrono::milliseconds max_delay{60000};  // cap of the doubling (not of Retry-After)
};

// What the failed attempt reports.
struct AttemptFailure {
  bool retryable = false;                 // a passing failure (network, 5xx, 429, a disk hiccup)
  std::optional<int64_t> retry_after_ms;  // the server's Retry-After, when it sent one
  bool restart_from_zero = false;         // the file changed: start again at once, from zero
  int64_t bytes = 0;                      // bytes the attempt reached
};

// What earlier attempts of the job left behind (kept in the store between attempts).
struct RetryHistory {
  int failures = 0;                         // failures in a row without progress
  std::optional<int64_t> failing_since_ms;  // unix ms the current run of failures began
  int64_t best_bytes = 0;                   // the most bytes any attempt reached
};

enum class GiveUp { kNo, kNotRetryable, kTooManyAttempts, kFailingTooLong };

struct RetryDecision {
  GiveUp give_up = GiveUp::kNo;  // kNo: retry after delay_ms
  int64_t delay_ms = 0;
  int failures = 0;              // to record: the run of failures this one belongs to
  int64_t failing_since_ms = 0;  // to record: when that run began
  bool retry() const { return give_up == GiveUp::kNo; }
};

// Retry-After is honoured up to this, whatever max_delay says.
inline constexpr int64_t kMaxRetryAfterMs = 3600 * 1000;

// Decides on one failed attempt at now_ms. Progress (going past best_bytes without a restart
// from zero) starts a new run of failures, so a server that keeps cutting the same body short
// still runs out of attempts. The delay is base_delay * 2^(failures-1), capped at max_delay and
// scaled by jitter (the caller draws it from [0.5, 1.0), so many jobs failing together spread
// out); a Retry-After replaces it, clamped to [0, kMaxRetryAfterMs]; a restart is immediate.
RetryDecision decide_retry(const AttemptFailure& failure, const RetryHistory& history,
                           const RetryOptions& options, int64_t now_ms, double jitter);

const char* to_string(GiveUp reason);

}  // namespace fetchq::queue
