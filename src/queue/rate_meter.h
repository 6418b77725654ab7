// RateMeter: a rough transfer rate for stats(), from the byte counts of progress reports.
//
// note() and forget() come from the loop thread, rate() from any thread; one small lock, never
// held across I/O.
#pragma once

#include <cstdint>
#include <map>

#include "queue/checked_mutex.h"
#include "util/clock.h"

namespace fetchq::queue {

class RateMeter {
 public:
  using Clock = util::SteadyClock;
  explicit RateMeter(Clock::duration window = std::chrono::seconds(2),
                     Clock::time_point now = Clock::now())
      : window_(window), window_start_(now) {}

  // The job has `bytes` in its file now; growth since its last note counts toward the rate.
  void note(int64_t job_id, int64_t bytes, Clock::time_point now = Clock::now());
  // The job left the engine.
  void forget(int64_t job_id);
  // Bytes per second over the last full window.
  double rate();

 private:
  CheckedMutex mu_;
  const Clock::duration window_;
  std::map<int64_t, int64_t> last_bytes_;
  int64_t window_bytes_ = 0;
  Clock::time_point window_start_;
  double rate_ = 0;
};

}  // namespace fetchq::queue
