// EventChannel: hands job events from the queue's callback thread to Python's dispatcher thread.
//
// The queue's callback thread calls push(), which only takes a mutex, appends and notifies: it
// never touches the GIL, so a slow Python callback, or Python code holding the GIL, cannot slow
// the queue. The Python dispatcher calls next() with the GIL released (the binding says so),
// then turns the job into Python objects once it holds the GIL again. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "fetchq/job.h"

namespace fetchq::python {

// What happened to the job: "started", "progress", "complete", "error", "cancelled", "paused".
struct JobEvent {
  std::string kind;
  Job job;
};

class EventChannel {
 public:
  // Events waiting before progress reports start to replace each other.
  static constexpr size_t kCoalesceFrom = 1000;

  // Past kCoalesceFrom events waiting, a progress event replaces the job's previous one while
  // that is still the job's latest event waiting: a slow callback then sees the newest
  // progress, and what waits stays bounded (kCoalesceFrom, plus the jobs and their other
  // events), however many progress reports come in meanwhile.
  void push(std::string kind, const Job& job) {
    {
      std::lock_guard lk(mu_);
      if (closed_) return;
      if (kind == "progress" && events_.size() >= kCoalesceFrom) {
        for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
          if (it->job.id != job.id) continue;
          if (it->kind == "progress") {
            it->job = job;
            return;
          }
          break;  // a later event of another kind: the order of the job's events is kept
        }
      }
      events_.push_back({std::move(kind), job});
    }
    cv_.notify_one();
  }

  // The oldest event, waiting up to `wait` for one; nullopt on timeout or once closed and empty.
  std::optional<JobEvent> next(std::chrono::milliseconds wait) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, wait, [this] { return !events_.empty() || closed_; });
    if (events_.empty()) return std::nullopt;
    JobEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
  }

  // Refuses further events; those already queued can still be taken.
  void close() {
    {
      std::lock_guard lk(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  bool closed_and_empty() {
    std::lock_guard lk(mu_);
    return closed_ && events_.empty();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;  // guarded by mu_
  bool closed_ = false;          // guarded by mu_
};

}  // namespace fetchq::python
