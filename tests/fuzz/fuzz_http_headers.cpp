// libFuzzer target: the response headers the transfer engine reads itself. parse_content_range
// and parse_retry_after take the server's bytes as they come; they must never crash, overflow
// or report impossible values.
//
// Input: one header value, e.g. "bytes 100-199/1000" or "Wed, 21 Oct 2015 07:28:00 GMT" or "120".
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "transfer/transfer.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_http_headers: invariant failed: %s\n", what);
    std::abort();
  }
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
  return v;
}

// The decimal text of a number as written in the header, without leading zeros.
std::string_view strip_zeros(std::string_view s) {
  while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
  return s;
}

void check_content_range(const std::string& value) {
  using fetchq::transfer::parse_content_range;
  int64_t start = -7, total = -7;
  if (!parse_content_range(value, &start, &total)) return;
  check(total >= -1, "content-range total >= -1");
  check(start >= -1, "content-range start >= -1");

  // Independent reading of what was accepted: "bytes" unit, then the total after the '/'.
  const std::string_view v = trim(value);
  check(v.size() >= 6, "content-range: long enough");
  for (size_t i = 0; i < 5; ++i) {
    check(std::tolower(static_cast<unsigned char>(v[i])) == "bytes"[i], "content-range unit is bytes");
  }
  const size_t slash = v.find('/');
  check(slash != std::string_view::npos, "content-range has a '/'");
  const std::string_view tot = v.substr(slash + 1);
  if (total == -1) {
    check(tot == "*", "total -1 only for '*'");
  } else {
    check(strip_zeros(tot) == std::to_string(total), "total is the number after '/'");
  }
  const std::string_view range = v.substr(6, slash - 6);
  if (start == -1) {
    check(range == "*", "start -1 only for '*'");
  } else {
    const size_t dash = range.find('-');
    check(dash != std::string_view::npos, "a range has a '-'");
    check(strip_zeros(range.substr(0, dash)) == std::to_string(start), "start is the first number");
  }

  // What it accepted, written back canonically, reads the same.
  const std::string again = "bytes " + (start == -1 ? std::string("*") : std::to_string(start) + "-" +
                                                                          std::to_string(start)) +
                            "/" + (total == -1 ? std::string("*") : std::to_string(total));
  int64_t start2 = -7, total2 = -7;
  check(parse_content_range(again, &start2, &total2), "the canonical form parses");
  check(start2 == start && total2 == total, "the canonical form reads the same");
}

void check_retry_after(const std::string& value) {
  using fetchq::transfer::parse_retry_after;
  for (int64_t now : {int64_t{0}, int64_t{1'700'000'000'000}}) {
    const auto ms = parse_retry_after(value, now);
    if (!ms) continue;
    check(*ms >= 0, "retry-after is never negative");
    // Delay-seconds: exactly the number, in ms (for numbers that fit).
    std::string_view v = value;
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
    size_t digits = 0;
    while (digits < v.size() && std::isdigit(static_cast<unsigned char>(v[digits]))) ++digits;
    const std::string_view num = strip_zeros(v.substr(0, digits));
    check(*ms <= fetchq::transfer::kMaxRetryAfterMs, "retry-after is capped");
    if (digits > 0 && num.size() <= 15) {
      const int64_t want = std::min<int64_t>(std::stoll(std::string(num)) * 1000,
                                             fetchq::transfer::kMaxRetryAfterMs);
      check(*ms == want, "delay-seconds is the number times 1000, capped");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fetchq::transfer;
  const std::string value(reinterpret_cast<const char*>(data), size);
  check_content_range(value);
  check_retry_after(value);

  // The status helpers on a code read from the first bytes.
  long code = 0;
  for (size_t i = 0; i < size && i < 3; ++i) code = code * 256 + data[i];
  code %= 1000;
  check(!reason_phrase(code).empty(), "every status has a reason phrase");
  if (is_retryable_status(code)) check(code == 408 || code == 429 || code >= 500, "retryable codes");
  return 0;
}
