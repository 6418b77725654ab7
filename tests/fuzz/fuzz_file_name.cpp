// libFuzzer target: file name parsing must never crash and choose_file_name must always be safe.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "files/file_name.h"

namespace {

// abort() rather than assert() so the check survives -DNDEBUG builds.
void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fetchq::files;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // Input layout: "<content-disposition>\n<url>"; without a newline the whole
  // input is both, so single-field seeds still reach both parsers.
  const size_t nl = input.find('\n');
  const std::string_view header = nl == std::string_view::npos ? input : input.substr(0, nl);
  const std::string_view url = nl == std::string_view::npos ? input : input.substr(nl + 1);

  (void)filename_from_content_disposition(header);
  (void)filename_from_url(url);
  (void)percent_decode(input);
  (void)is_safe_file_name(input);

  for (const std::string& name :
       {choose_file_name(header, url), choose_file_name(std::nullopt, url)}) {
    check(is_safe_file_name(name));
    check(name.find('/') == std::string::npos && name.find('\\') == std::string::npos);
    check(name != "." && name != "..");
    // Renaming a safe name must keep it safe and within the length budget.
    const int n = 1 + static_cast<int>(size % 10000);
    const std::string numbered = numbered_file_name(name, n);
    check(numbered.size() <= kMaxNameBytes);
    check(is_safe_file_name(numbered));
  }
  // Arbitrary (possibly unsafe) names must not crash it either, and stay in budget.
  check(numbered_file_name(input, 1).size() <= kMaxNameBytes);
  return 0;
}
