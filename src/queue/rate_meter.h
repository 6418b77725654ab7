// RateMeter: rough transfer rates for stats() and listings, from the byte counts of progress
// reports: the queue's total and each running job's.
//
// note() and forget() come from the loop thread, rate() and job_rates() from any thread; one
// small lock, never held across I/O.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "fetchq/job.h"
#include "queue/checked_mutex.h"
#include "util/clock.h"

namespace fetchq::queue {

class RateMeter {
 public:
  using Clock = util::SteadyClock;
  explicit RateMeter(Clock::duration window = std::chrono::seconds(2),
                     Clock::time_point now = Clock::now())
      : window_(window), window_start_(now) {}

  // The job starts with `bytes` already in its file (a resume): they count toward no rate.
  void begin(int64_t job_id, int64_t bytes);
  // The job has `bytes` in its file now; growth since its last note counts toward the rate.
  void note(int64_t job_id, int64_t bytes, Clock::time_point now = Clock::now());
  // The job left the engine.
  void forget(int64_t job_id);
  // Bytes per second over the last full window; once a window has gone by without a note,
  // what came in since, over the time since (so an idle queue reads 0, not its last rate).
  double rate(Clock::time_point now = Clock::now());
  // The same for each job the meter knows (the ones in the engine), by id.
  std::vector<JobRate> job_rates(Clock::time_point now = Clock::now());

 private:
  struct PerJob {
    int64_t last_bytes = 0;
    int64_t window_bytes = 0;
    double rate = 0;
  };
  // The rate of a window that ended at `now`, or the last closed one's while it is open.
  double current(double closed, int64_t open_bytes, Clock::time_point now) const;

  CheckedMutex mu_;
  const Clock::duration window_;
  std::map<int64_t, PerJob> jobs_;
  int64_t window_bytes_ = 0;
  Clock::time_point window_start_;
  double rate_ = 0;
};

}  // namespace fetchq::queue
