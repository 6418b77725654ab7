// Sync faults: fsync()/fdatasync() that fail with EIO on chosen files (see sync_faults.h).
//
// The hooks allocate nothing and take no lock: they run inside SQLite, the settle pool and the
// queue thread, under ASan and TSan alike. The real functions come from dlsym(RTLD_NEXT).
#include "support/sync_faults.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

namespace fetchq::testing {
namespace {

// 0: no rule; 1: .part files; 2: folders. The folder is written only while the rule is 0.
std::atomic<int> g_rule{0};
std::atomic<bool> g_fail{false};
std::atomic<int> g_calls{0};
char g_under[PATH_MAX];
size_t g_under_len = 0;

using SyncFn = int (*)(int);

SyncFn real(const char* name, std::atomic<SyncFn>& cache) {
  SyncFn f = cache.load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<SyncFn>(::dlsym(RTLD_NEXT, name));
    cache.store(f, std::memory_order_release);
  }
  return f;
}

bool matches(int fd) {
  int rule = g_rule.load(std::memory_order_acquire);
  if (rule == 0) return false;
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char path[PATH_MAX];
  ssize_t n = ::readlink(link, path, sizeof path - 1);
  if (n <= 0) return false;
  path[n] = '\0';
  if (static_cast<size_t>(n) < g_under_len || memcmp(path, g_under, g_under_len) != 0) return false;
  if (rule == 1) {
    // A .part is made without a name and named later; /proc shows such a file as
    // "DIR/#INODE (deleted)" for as long as it stays open.
    static constexpr char kUnnamed[] = " (deleted)";
    static constexpr size_t kUnnamedLen = sizeof kUnnamed - 1;
    const bool part = n > 5 && memcmp(path + n - 5, ".part", 5) == 0;
    const bool unnamed = static_cast<size_t>(n) > kUnnamedLen &&
                         memcmp(path + n - kUnnamedLen, kUnnamed, kUnnamedLen) == 0 &&
                         strstr(path + g_under_len, "/#") != nullptr;
    return part || unnamed;
  }
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

// Counts and fails the call when the rule says so; otherwise calls the real one.
int hook(int fd, const char* name, std::atomic<SyncFn>& cache) {
  if (matches(fd)) {
    // Decided before it is counted: a test that sees the count may change the rule for the
    // calls after it, never for this one.
    const bool fail = g_fail.load();
    g_calls.fetch_add(1);
    if (fail) {
      errno = EIO;
      return -1;
    }
  }
  SyncFn f = real(name, cache);
  if (!f) {
    errno = ENOSYS;
    return -1;
  }
  return f(fd);
}

std::atomic<SyncFn> g_real_fsync{nullptr};
std::atomic<SyncFn> g_real_fdatasync{nullptr};

}  // namespace

void SyncFaults::watch(SyncTarget target, const std::string& under, bool fail) {
  g_rule.store(0);
  size_t n = under.size() < sizeof g_under - 1 ? under.size() : sizeof g_under - 1;
  memcpy(g_under, under.data(), n);
  g_under[n] = '\0';
  g_under_len = n;
  g_calls.store(0);
  g_fail.store(fail);
  g_rule.store(target == SyncTarget::kPartFiles ? 1 : 2, std::memory_order_release);
}

void SyncFaults::set_failing(bool fail) { g_fail.store(fail); }

void SyncFaults::clear() {
  g_rule.store(0);
  g_fail.store(false);
}

int SyncFaults::calls() { return g_calls.load(); }

}  // namespace fetchq::testing

extern "C" int fsync(int fd) {
  return fetchq::testing::hook(fd, "fsync", fetchq::testing::g_real_fsync);
}

extern "C" int fdatasync(int fd) {
  return fetchq::testing::hook(fd, "fdatasync", fetchq::testing::g_real_fdatasync);
}
