// RateMeter: see rate_meter.h.
#include "queue/rate_meter.h"

namespace fetchq::queue {

void RateMeter::note(int64_t job_id, int64_t bytes, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto& j = jobs_[job_id];
  if (bytes > j.last_bytes) {
    window_bytes_ += bytes - j.last_bytes;
    j.window_bytes += bytes - j.last_bytes;
  }
  j.last_bytes = bytes;
  if (now - window_start_ >= window_) {
    double secs = std::chrono::duration<double>(now - window_start_).count();
    rate_ = static_cast<double>(window_bytes_) / secs;
    window_bytes_ = 0;
    for (auto& [id, p] : jobs_) {
      p.rate = static_cast<double>(p.window_bytes) / secs;
      p.window_bytes = 0;
    }
    window_start_ = now;
  }
}

void RateMeter::begin(int64_t job_id, int64_t bytes) {
  std::lock_guard lk(mu_);
  jobs_[job_id] = PerJob{bytes, 0, 0};
}

void RateMeter::forget(int64_t job_id) {
  std::lock_guard lk(mu_);
  jobs_.erase(job_id);
}

double RateMeter::current(double closed, int64_t open_bytes, Clock::time_point now) const {
  if (now - window_start_ < window_) return closed;
  return static_cast<double>(open_bytes) / std::chrono::duration<double>(now - window_start_).count();
}

double RateMeter::rate(Clock::time_point now) {
  std::lock_guard lk(mu_);
  return current(rate_, window_bytes_, now);
}

std::vector<JobRate> RateMeter::job_rates(Clock::time_point now) {
  std::lock_guard lk(mu_);
  std::vector<JobRate> out;
  out.reserve(jobs_.size());
  for (const auto& [id, p] : jobs_) out.push_back(JobRate{id, current(p.rate, p.window_bytes, now)});
  return out;
}

}  // namespace fetchq::queue
