// Reading and writing bandwidth limits ("500k", "1.5M").
#include "util/rate.h"

#include <cmath>
#include <cstdio>

namespace fetchq::util {

std::optional<int64_t> parse_rate(std::string_view text, std::string* why) {
  auto bad = [&](const std::string& reason) -> std::optional<int64_t> {
    if (why) *why = "'" + std::string(text) + "' is not a rate: " + reason;
    return std::nullopt;
  };
  if (text.empty()) return bad("give bytes per second, e.g. 500k, 5M or 1.5M");
  double unit = 1;
  std::string_view number = text;
  switch (text.back()) {
    case 'k':
    case 'K':
      unit = 1024.0;
      break;
    case 'm':
    case 'M':
      unit = 1024.0 * 1024;
      break;
    case 'g':
    case 'G':
      unit = 1024.0 * 1024 * 1024;
      break;
    default:
      break;
  }
  if (unit > 1) number.remove_suffix(1);
  // Digits, with at most one '.' that has a digit on at least one side; nothing else.
  size_t digits = 0, dots = 0;
  for (char c : number) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c == '.') {
      ++dots;
    } else {
      return bad("give bytes per second, e.g. 500k, 5M or 1.5M (suffixes k, M, G)");
    }
  }
  if (digits == 0 || dots > 1) return bad("give bytes per second, e.g. 500k, 5M or 1.5M");
  if (digits > 15) return bad("it is over the largest limit, 1024G");
  const double value = std::strtod(std::string(number).c_str(), nullptr) * unit;
  if (value == 0) return 0;
  if (value > static_cast<double>(kMaxRate)) return bad("it is over the largest limit, 1024G");
  const auto bytes = static_cast<int64_t>(std::llround(value));
  if (bytes < 1) return bad("a limit must be at least 1 byte per second (0 means no limit)");
  return bytes;
}

std::string format_rate(int64_t bytes_per_second) {
  if (bytes_per_second <= 0) return "unlimited";
  static const struct {
    double unit;
    char suffix;
  } kUnits[] = {{1024.0 * 1024 * 1024, 'G'}, {1024.0 * 1024, 'M'}, {1024.0, 'k'}};
  const auto v = static_cast<double>(bytes_per_second);
  for (const auto& u : kUnits) {
    if (v < u.unit) continue;
    char buf[32];
    const double n = v / u.unit;
    // Whole numbers as they are, else up to two decimals without trailing zeros.
    if (n == std::floor(n)) {
      std::snprintf(buf, sizeof buf, "%.0f%c", n, u.suffix);
    } else {
      std::snprintf(buf, sizeof buf, "%.2f", n);
      std::string s = buf;
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
      return s + u.suffix;
    }
    return buf;
  }
  return std::to_string(bytes_per_second);
}

}  // namespace fetchq::util
