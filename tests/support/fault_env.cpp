// FaultEnv: rules matched by operation and path; everything else goes to the real calls.
#include "support/fault_env.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <thread>

namespace fetchq::testing {

void FaultEnv::add(FaultRule rule) {
  std::lock_guard lk(mu_);
  rules_.push_back({std::move(rule), 0});
}

void FaultEnv::clear() {
  std::lock_guard lk(mu_);
  rules_.clear();
}

int FaultEnv::calls(FsOp op, const std::string& path_contains) const {
  std::lock_guard lk(mu_);
  int n = 0;
  for (const auto& s : seen_) n += s.op == op && s.path.find(path_contains) != std::string::npos;
  return n;
}

int FaultEnv::calls_at(FsOp op, const std::string& path) const {
  std::lock_guard lk(mu_);
  int n = 0;
  for (const auto& s : seen_) n += s.op == op && s.path == path;
  return n;
}

int FaultEnv::faults() const {
  std::lock_guard lk(mu_);
  return faults_;
}

std::string FaultEnv::fd_path(int fd) {
  {
    std::lock_guard lk(mu_);
    if (auto it = named_.find(fd); it != named_.end()) return it->second;
  }
  char buf[PATH_MAX];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string FaultEnv::at_path(int dirfd, const char* name) {
  if (name[0] == '/') return name;
  if (dirfd == AT_FDCWD) {
    char cwd[PATH_MAX];
    return std::string(::getcwd(cwd, sizeof cwd) ? cwd : ".") + "/" + name;
  }
  return fd_path(dirfd) + "/" + name;
}

FaultEnv::Verdict FaultEnv::check(FsOp op, const std::string& path, const std::string& other,
                                  int* err, uint64_t* free_bytes) {
  std::chrono::milliseconds delay{0};
  const Verdict v = decide(op, path, other, err, free_bytes, &delay);
  if (delay.count() > 0) std::this_thread::sleep_for(delay);  // not under mu_: others go on
  return v;
}

FaultEnv::Verdict FaultEnv::decide(FsOp op, const std::string& path, const std::string& other,
                                   int* err, uint64_t* free_bytes,
                                   std::chrono::milliseconds* delay) {
  std::lock_guard lk(mu_);
  seen_.push_back({op, path});
  if (!other.empty()) seen_.push_back({op, other});
  for (auto& rule : rules_) {
    const FaultRule& r = rule.r;
    if (r.op != op) continue;
    auto matches = [&](const std::string& p) {
      return r.whole_path ? p == r.path_contains : p.find(r.path_contains) != std::string::npos;
    };
    if (!matches(path) && (other.empty() || !matches(other))) {
      continue;
    }
    const int n = ++rule.matched;
    if (n < r.nth || (r.times >= 0 && n >= r.nth + r.times)) continue;
    ++faults_;
    if (r.delay.count() > 0) {
      *delay = r.delay;
      return Verdict::kPass;
    }
    *err = r.err;
    if (r.free_bytes && free_bytes) {
      *free_bytes = *r.free_bytes;
      return Verdict::kFreeBytes;
    }
    return r.short_write ? Verdict::kShort : Verdict::kFail;
  }
  return Verdict::kPass;
}

int FaultEnv::openat(int dirfd, const char* name, int flags, mode_t mode) {
  int err = 0;
  if (check(FsOp::kOpen, at_path(dirfd, name), "", &err) == Verdict::kFail) {
    errno = err;
    return -1;
  }
  return EnvWrapper::openat(dirfd, name, flags, mode);
}

ssize_t FaultEnv::write(int fd, const void* data, size_t len) {
  int err = 0;
  switch (check(FsOp::kWrite, fd_path(fd), "", &err)) {
    case Verdict::kFail:
      errno = err;
      return -1;
    case Verdict::kShort:
      return EnvWrapper::write(fd, data, len > 1 ? len / 2 : len);
    case Verdict::kFreeBytes:  // only asked for by fstatvfs
    case Verdict::kPass:
      break;
  }
  return EnvWrapper::write(fd, data, len);
}

ssize_t FaultEnv::pwrite(int fd, const void* data, size_t len, off_t offset) {
  int err = 0;
  switch (check(FsOp::kWrite, fd_path(fd), "", &err)) {
    case Verdict::kFail:
      errno = err;
      return -1;
    case Verdict::kShort:
      return EnvWrapper::pwrite(fd, data, len > 1 ? len / 2 : len, offset);
    case Verdict::kFreeBytes:  // only asked for by fstatvfs
    case Verdict::kPass:
      break;
  }
  return EnvWrapper::pwrite(fd, data, len, offset);
}

#define FETCHQ_FAULT_FD(op, call)                             \
  do {                                                        \
    int err = 0;                                              \
    if (check(op, fd_path(fd), "", &err) == Verdict::kFail) { \
      errno = err;                                            \
      return -1;                                              \
    }                                                         \
    return call;                                              \
  } while (0)

int FaultEnv::ftruncate(int fd, off_t length) {
  FETCHQ_FAULT_FD(FsOp::kTruncate, EnvWrapper::ftruncate(fd, length));
}
int FaultEnv::fallocate(int fd, off_t offset, off_t len) {
  FETCHQ_FAULT_FD(FsOp::kFallocate, EnvWrapper::fallocate(fd, offset, len));
}
int FaultEnv::fdatasync(int fd) { FETCHQ_FAULT_FD(FsOp::kFdatasync, EnvWrapper::fdatasync(fd)); }
int FaultEnv::fsync(int fd) { FETCHQ_FAULT_FD(FsOp::kFsync, EnvWrapper::fsync(fd)); }
int FaultEnv::syncfs(int fd) { FETCHQ_FAULT_FD(FsOp::kSyncfs, EnvWrapper::syncfs(fd)); }
int FaultEnv::fstatvfs(int fd, struct statvfs* st) {
  int err = 0;
  uint64_t free_bytes = 0;
  switch (check(FsOp::kStatvfs, fd_path(fd), "", &err, &free_bytes)) {
    case Verdict::kFail:
      errno = err;
      return -1;
    case Verdict::kFreeBytes: {
      const int rc = EnvWrapper::fstatvfs(fd, st);
      if (rc == 0 && st->f_frsize > 0) st->f_bavail = free_bytes / st->f_frsize;
      return rc;
    }
    default:
      break;
  }
  return EnvWrapper::fstatvfs(fd, st);
}
int FaultEnv::flock(int fd, int operation) {
  FETCHQ_FAULT_FD(FsOp::kLock, EnvWrapper::flock(fd, operation));
}

#undef FETCHQ_FAULT_FD

int FaultEnv::renameat(int olddirfd, const char* oldname, int newdirfd, const char* newname) {
  int err = 0;
  if (check(FsOp::kRename, at_path(olddirfd, oldname), at_path(newdirfd, newname), &err) ==
      Verdict::kFail) {
    errno = err;
    return -1;
  }
  return EnvWrapper::renameat(olddirfd, oldname, newdirfd, newname);
}

int FaultEnv::renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                        unsigned int flags) {
  int err = 0;
  if (check(FsOp::kRename, at_path(olddirfd, oldname), at_path(newdirfd, newname), &err) ==
      Verdict::kFail) {
    errno = err;
    return -1;
  }
  return EnvWrapper::renameat2(olddirfd, oldname, newdirfd, newname, flags);
}

int FaultEnv::unlinkat(int dirfd, const char* name, int flags) {
  int err = 0;
  if (check(FsOp::kUnlink, at_path(dirfd, name), "", &err) == Verdict::kFail) {
    errno = err;
    return -1;
  }
  return EnvWrapper::unlinkat(dirfd, name, flags);
}

int FaultEnv::open_unnamed(int dirfd, const char* name, mode_t mode) {
  int err = 0;
  if (check(FsOp::kOpen, at_path(dirfd, name), "", &err) == Verdict::kFail) {
    errno = err;
    return -1;
  }
  const std::string path = at_path(dirfd, name);
  int fd = EnvWrapper::open_unnamed(dirfd, name, mode);
  if (fd >= 0) {
    std::lock_guard lk(mu_);
    named_[fd] = path;
  }
  return fd;
}

int FaultEnv::link_unnamed(int fd, int dirfd, const char* name) {
  int err = 0;
  if (check(FsOp::kLink, at_path(dirfd, name), "", &err) == Verdict::kFail) {
    errno = err;
    return -1;
  }
  return EnvWrapper::link_unnamed(fd, dirfd, name);
}

int FaultEnv::close(int fd) {
  {
    std::lock_guard lk(mu_);
    named_.erase(fd);
  }
  return EnvWrapper::close(fd);
}

}  // namespace fetchq::testing
