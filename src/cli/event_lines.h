// `fetchq events` for people: one short line per event, progress thinned out per job.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/output.h"  // shorten_middle
#include "fetchq/job.h"

namespace fetchq::cli {

// The event types `--type` accepts: the stored names, or the same without `download_`.
// Returns the stored names of a comma-separated list, or nullopt and the first unknown name.
std::optional<std::set<std::string>> parse_event_types(const std::string& list, std::string* unknown);

// Turns events into lines such as
//   5071  10:08:41  #12  progress    model.bin  42%  1.2 GiB/2.9 GiB  12.3 MiB/s
// (the sequence number, which --since takes, and the event's time, UTC). A job's progress events closer than `progress_every_ms`
// to the last one shown are left out; the rate is taken between the progress lines shown.
class EventLines {
 public:
  explicit EventLines(int64_t progress_every_ms = 5000) : every_ms_(progress_every_ms) {}
  // The line for `e`, or nullopt when it is thinned out.
  std::optional<std::string> line(const Event& e);

 private:
  struct Shown {
    int64_t ms = 0;
    int64_t bytes = 0;
  };
  int64_t every_ms_;
  std::map<int64_t, Shown> last_progress_;  // by job: the progress line shown last
};

// Milliseconds since the epoch of an ISO 8601 UTC stamp as fetchq writes them
// (2026-11-29T05:34:41.742Z); nullopt when it is not one.
std::optional<int64_t> parse_iso8601_ms(const std::string& ts);

}  // namespace fetchq::cli
