// Time in one place: wall-clock stamps for the database, a monotonic clock for intervals.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace fetchq::util {

using SteadyClock = std::chrono::steady_clock;

// ISO 8601 UTC with milliseconds, e.g. 2026-11-29T05:34:41.742Z.
std::string iso8601(std::chrono::system_clock::time_point t);
inline std::string now_iso8601() { return iso8601(std::chrono::system_clock::now()); }

// Milliseconds since the Unix epoch; used for retry times stored in the database.
int64_t now_unix_ms();

}  // namespace fetchq::util
