// RateMeter: see rate_meter.h.
#include "queue/rate_meter.h"

namespace fetchq::queue {

void RateMeter::note(int64_t job_id, int64_t bytes, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto& prev = last_bytes_[job_id];
  if (bytes > prev) window_bytes_ += bytes - prev;
  prev = bytes;
  if (now - window_start_ >= window_) {
    double secs = std::chrono::duration<double>(now - window_start_).count();
    rate_ = static_cast<double>(window_bytes_) / secs;
    window_bytes_ = 0;
    window_start_ = now;
  }
}

void RateMeter::forget(int64_t job_id) {
  std::lock_guard lk(mu_);
  last_bytes_.erase(job_id);
}

double RateMeter::rate() {
  std::lock_guard lk(mu_);
  return rate_;
}

}  // namespace fetchq::queue
