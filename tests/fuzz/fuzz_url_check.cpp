// libFuzzer target: submission checks. check_source_url must accept only http(s) URLs and never
// crash; is_under_roots must never say "inside" for a path that resolves outside the root.
//
// Input layout: "<url>\n<path>"; without a newline the whole input is both. The path is tried
// as given and appended to a fixed download root that holds symbolic links:
//
//   <base>/root/a/f            a folder and a regular file
//   <base>/root/in  -> a       link that stays inside
//   <base>/root/out -> ../outside          relative link that escapes
//   <base>/root/abs_out -> <base>/outside  absolute link that escapes
//   <base>/outside/  <base>/rootx/         siblings (rootx shares the root's name prefix)
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "queue/request_check.h"

namespace {

// abort() rather than assert() so the check survives -DNDEBUG builds.
void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_url_check: invariant failed: %s\n", what);
    std::abort();
  }
}

struct Tree {
  std::string base;  // canonical (no symbolic links), so the model below can reason lexically
  std::string root;
};

void must(bool ok, const char* what) {
  if (!ok) {
    std::perror(what);
    std::exit(2);
  }
}

// Built once and never destroyed: the atexit cleanup below is registered while it is being
// built, so it runs after a static object's destructor would have.
const Tree& tree() {
  static const Tree& t = *[] {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/fetchq-fuzz-roots-XXXXXX";
    must(::mkdtemp(templ.data()) != nullptr, "mkdtemp");
    char buf[PATH_MAX];
    must(::realpath(templ.c_str(), buf) != nullptr, "realpath");
    Tree& tr = *new Tree{buf, std::string(buf) + "/root"};
    for (const char* d : {"/root", "/root/a", "/outside", "/rootx"}) {
      must(::mkdir((tr.base + d).c_str(), 0755) == 0, "mkdir");
    }
    int fd = ::open((tr.root + "/a/f").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    must(fd >= 0, "open");
    ::close(fd);
    must(::symlink("a", (tr.root + "/in").c_str()) == 0, "symlink");
    must(::symlink("../outside", (tr.root + "/out").c_str()) == 0, "symlink");
    must(::symlink((tr.base + "/outside").c_str(), (tr.root + "/abs_out").c_str()) == 0, "symlink");
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(tree().base, ec);
    });
    return &tr;
  }();
  return t;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

enum class Where { kInside, kOutside, kUnknown };

// Where "<root>/<rel>" lands, by walking its components over the known tree (the only links
// are root/in, root/out and root/abs_out). kUnknown once it climbs above <base>, where links
// of the system (/proc/self/root, ...) could lead anywhere, even back into the root.
// *uses_dotdot_or_escape tells whether ".." was used or an escaping link was followed.
Where model(std::string_view rel, bool* uses_dotdot_or_escape) {
  std::vector<std::string_view> stack{"root"};  // components below <base>
  *uses_dotdot_or_escape = false;
  size_t i = 0;
  while (i <= rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string_view::npos) j = rel.size();
    std::string_view c = rel.substr(i, j - i);
    i = j + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      *uses_dotdot_or_escape = true;
      if (stack.empty()) return Where::kUnknown;
      stack.pop_back();
      continue;
    }
    if (stack.size() == 1 && stack[0] == "root") {
      if (c == "in") {
        stack.push_back("a");
        continue;
      }
      if (c == "out" || c == "abs_out") {
        *uses_dotdot_or_escape = true;
        stack.assign({"outside"});
        continue;
      }
    }
    stack.push_back(c);
  }
  return !stack.empty() && stack[0] == "root" ? Where::kInside : Where::kOutside;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fetchq::queue;
  const Tree& t = tree();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const std::string url(nl == std::string_view::npos ? input : input.substr(0, nl));
  const std::string path(nl == std::string_view::npos ? input : input.substr(nl + 1));

  // --- check_source_url ---
  for (const std::string& u : {url, std::string(input)}) {
    const auto st = check_source_url(u);
    if (st.ok()) {
      check(starts_with_nocase(u, "http://") || starts_with_nocase(u, "https://"),
            "an accepted URL starts with http:// or https://");
      check(u.size() <= 8192, "an accepted URL is at most 8192 bytes");
      for (unsigned char c : u) check(c > 0x20 && c != 0x7f, "an accepted URL has no space or control");
    } else {
      check(!st.error().message.empty(), "a refusal says why");
    }
  }

  // --- is_under_roots ---
  const std::vector<std::string> roots_variants[] = {
      {t.root}, {t.root + "/"}, {t.root + "/./a/.."}, {t.base + "/rootx", t.root}};
  const std::vector<std::string>& roots = roots_variants[size % 4];

  // The path as given: relative paths are never inside.
  const bool raw = is_under_roots(path, roots);
  if (path.empty() || path[0] != '/') check(!raw, "a relative path is never under the roots");

  // The path below the root, without NULs (check_request refuses those before this check).
  std::string rel;
  for (char c : path) {
    if (c != '\0') rel += c;
  }
  const std::string joined = t.root + "/" + rel;
  const bool inside = is_under_roots(joined, roots);
  bool risky = false;
  const Where where = model(rel, &risky);
  if (inside && where != Where::kUnknown && roots.size() == 1) {
    check(where == Where::kInside, "is_under_roots says inside, but the path resolves outside");
  }
  if (!risky) check(inside, "a path below the root without '..' or an escaping link is inside");

  // check_request ties both together: accepted only with a good URL and a dest inside.
  const auto nj = check_request({url, joined, {}}, {t.root});
  if (nj.ok()) {
    check(check_source_url(url).ok(), "check_request accepted a URL check_source_url refuses");
    check(is_under_roots(joined, {t.root}), "check_request accepted a dest outside the roots");
    check(nj->dest_is_dir || nj->download_path.has_value(), "a file dest has its download path");
  }
  return 0;
}
