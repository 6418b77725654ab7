// FaultEnv: the real file system, except for the calls a test asks to fail.
//
// Wraps util::Env::posix(). A rule names an operation, a path fragment and which matching call
// to fail first (the Nth); matching calls fail with the rule's errno, or, for a write, write
// only half of what was asked (a short write, which is no error), or are only made slow. Paths are
// those of the file a descriptor refers to (read from /proc/self/fd), or for the *at calls the
// folder's path plus the name. Runs as any user: no mount, no full disk. Thread-safe; rules may
// change while transfers run.
#pragma once

#include <cerrno>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "util/env.h"

namespace fetchq::testing {

enum class FsOp {
  kOpen,      // openat
  kWrite,     // write and pwrite
  kTruncate,  // ftruncate
  kFdatasync,
  kFsync,  // fsync of a file or a folder
  kSyncfs,
  kRename,  // renameat and renameat2 (matched on the old or the new path)
  kUnlink,
  kStatvfs,    // fstatvfs
  kLock,       // flock
  kFallocate,  // posix_fallocate (preallocation of a segmented download)
  kLink,       // link_unnamed: an unnamed file given a name (matched on that name)
};

struct FaultRule {
  FsOp op = FsOp::kWrite;
  std::string path_contains{};  // "" matches every path
  bool whole_path = false;      // path_contains must be the whole path, not a part of it
  int nth = 1;                  // the first matching call to fail, counted from 1
  int times = -1;               // how many calls fail from the nth on; -1: all of them
  int err = EIO;
  bool short_write = false;  // kWrite: write half (at least one byte) instead of failing
  // kStatvfs: instead of failing, report this many bytes free (a nearly full disk).
  std::optional<uint64_t> free_bytes{};
  // Instead of failing, make the call this slow and then do it (a slow disk, or a window for a
  // race to happen in).
  std::chrono::milliseconds delay{0};
};

class FaultEnv final : public util::EnvWrapper {
 public:
  FaultEnv() : util::EnvWrapper(util::Env::posix()) {}

  void add(FaultRule rule);
  void clear();
  // Calls of op on matching paths seen since the env was made (failed or not).
  int calls(FsOp op, const std::string& path_contains = "") const;
  // Calls of op on exactly this path (a folder's own, not the files in it).
  int calls_at(FsOp op, const std::string& path) const;
  // Calls the rules made fail (or shorten).
  int faults() const;

  int openat(int dirfd, const char* name, int flags, mode_t mode = 0) override;
  ssize_t write(int fd, const void* data, size_t len) override;
  ssize_t pwrite(int fd, const void* data, size_t len, off_t offset) override;
  int ftruncate(int fd, off_t length) override;
  int fallocate(int fd, off_t offset, off_t len) override;
  int fdatasync(int fd) override;
  int fsync(int fd) override;
  int syncfs(int fd) override;
  int fstatvfs(int fd, struct statvfs* st) override;
  int flock(int fd, int operation) override;
  int renameat(int olddirfd, const char* oldname, int newdirfd, const char* newname) override;
  int renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                unsigned int flags) override;
  int unlinkat(int dirfd, const char* name, int flags) override;
  // An unnamed file's calls are matched on the name it is to get, from open_unnamed (kOpen)
  // on: /proc shows it as "#inode (deleted)", even once it has been named.
  int open_unnamed(int dirfd, const char* name, mode_t mode) override;
  int link_unnamed(int fd, int dirfd, const char* name) override;
  int close(int fd) override;

 private:
  enum class Verdict { kPass, kFail, kShort, kFreeBytes };
  struct Rule {
    FaultRule r;
    int matched = 0;
  };
  struct Seen {
    FsOp op;
    std::string path;
  };
  // Records the call and decides it; *err gets the errno to fail with.
  Verdict check(FsOp op, const std::string& path, const std::string& other, int* err,
                uint64_t* free_bytes = nullptr);
  Verdict decide(FsOp op, const std::string& path, const std::string& other, int* err,
                 uint64_t* free_bytes, std::chrono::milliseconds* delay);
  std::string fd_path(int fd);
  std::string at_path(int dirfd, const char* name);

  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  std::vector<Seen> seen_;
  int faults_ = 0;
  std::map<int, std::string> named_;  // fd of a file made unnamed -> the path it was given
};

}  // namespace fetchq::testing
