// Small string helpers shared by the parsers of settings, headers and requests (ASCII only).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace fetchq::util {

// `s` without leading and trailing spaces, tabs, CRs and LFs.
inline std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

// `s` with ASCII letters in lower case; other bytes (UTF-8 included) as they are.
inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return s;
}

}  // namespace fetchq::util
