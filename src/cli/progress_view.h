// What `fetchq get` and `fetchq wait --progress` draw: one line per running job that never
// exceeds the width, an overall line, and a summary at the end; redrawn in place on a
// terminal, also after the terminal was narrowed or widened.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fetchq/job.h"

namespace fetchq::cli {

// Counts and bytes over a set of jobs.
struct Totals {
  size_t jobs = 0, completed = 0, failed = 0, running = 0, waiting = 0;
  int64_t bytes = 0;        // in their files now
  int64_t total_bytes = 0;  // of the jobs whose size is known, plus the bytes of the others
  bool all_sizes_known = true;
  double rate = 0;  // bytes per second, of the rates given
};
Totals totals_of(const std::vector<Job>& jobs, const std::vector<JobRate>& rates);

// One job: name, bar, percent, size, rate, time left; the least needed parts go first when
// the width is short, and the name is shortened in the middle. Never wider than `width`.
std::string job_progress_line(const Job& job, double rate, int width);

// The lines to draw now: up to `max_jobs` running jobs (all jobs when there are no more
// than that), then the overall line (files done of all, bytes, rate, time left, failures).
std::vector<std::string> progress_lines(const std::vector<Job>& jobs, const std::vector<JobRate>& rates, int width,
                                        size_t max_jobs = 10);

// The end: files, total size, elapsed time and average rate, then one line per job that did
// not complete, with its reason.
std::vector<std::string> summary_lines(const std::vector<Job>& jobs, double elapsed_seconds);

// Redraws a block of lines at the bottom of a terminal in place. The lines drawn last are
// cleared first, counting the rows they take at the current width (a narrowed terminal
// rewraps them), so nothing of an old, wider frame stays on screen.
class LiveArea {
 public:
  // The bytes to write: cursor up over the last frame, clear to the end of the screen, the
  // new lines (each cut to `width`).
  std::string frame(const std::vector<std::string>& lines, int width);
  // The same, leaving nothing drawn (before a final summary printed below).
  std::string clear(int width) { return frame({}, width); }

 private:
  std::vector<size_t> last_;  // the widths of the lines drawn last
};

}  // namespace fetchq::cli
