// Sync faults: makes fsync()/fdatasync() fail with EIO on chosen files, for durability tests.
//
// Linked into the integration test executable only. It defines fsync and fdatasync itself, so
// every call in the process (libfetchq is linked statically) comes here first; with no rule set
// (the default) each call goes straight to the real function, so other tests see no change. A
// rule applies to files under one folder: `.part` files, or the folder's own directories.
// Calls on matching files are counted whether they fail or not. Thread-safe; the rule is meant
// to be set while no transfer is running, and cleared by the test (SyncFaultScope does it).
#pragma once

#include <string>

namespace fetchq::testing {

enum class SyncTarget { kPartFiles, kFolders };

struct SyncFaults {
  // From now on, syncs of `target` under `under` (an absolute folder) are counted, and fail
  // with EIO when `fail` is true.
  static void watch(SyncTarget target, const std::string& under, bool fail);
  static void set_failing(bool fail);
  static void clear();
  // Syncs of matching files since watch().
  static int calls();
};

// Clears the rule when the test ends, whatever it asserted.
struct SyncFaultScope {
  SyncFaultScope(SyncTarget target, const std::string& under, bool fail) {
    SyncFaults::watch(target, under, fail);
  }
  ~SyncFaultScope() { SyncFaults::clear(); }
  SyncFaultScope(const SyncFaultScope&) = delete;
  SyncFaultScope& operator=(const SyncFaultScope&) = delete;
};

}  // namespace fetchq::testing
