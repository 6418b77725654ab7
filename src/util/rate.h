// Bandwidth limits as people write them: "500k", "5M", "1.5M", "2G" (bytes per second, with
// 1024-based suffixes, as curl, wget and aria2 read them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fetchq::util {

// The largest limit taken: 1 TiB/s, far above any link, small enough for every computation.
inline constexpr int64_t kMaxRate = int64_t{1} << 40;

// Bytes per second of "N", "Nk", "NM" or "NG" (N a decimal number, fractions allowed; k, M and
// G in either case, times 1024, 1024² and 1024³). "0" (or "0k"...) is 0: no limit. nullopt for
// anything else (signs, spaces, other suffixes, a value that rounds to 0 bytes, or over
// kMaxRate), with *why saying what is wrong.
std::optional<int64_t> parse_rate(std::string_view text, std::string* why);

// A limit for people: "unlimited" for 0, else the shortest of "512", "500k", "1.5M", "2G"
// that parse_rate reads back as (about) the same value.
std::string format_rate(int64_t bytes_per_second);

}  // namespace fetchq::util
