// The real Env: each method is the system call of the same name.
#include "util/env.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

namespace fetchq::util {
namespace {

class PosixEnv final : public Env {
 public:
  int openat(int dirfd, const char* name, int flags, mode_t mode) override {
    return ::openat(dirfd, name, flags, mode);
  }
  int close(int fd) override { return ::close(fd); }
  ssize_t write(int fd, const void* data, size_t len) override { return ::write(fd, data, len); }
  int fallocate(int fd, off_t offset, off_t len) override {
    const int err = ::posix_fallocate(fd, offset, len);
    if (err == 0) return 0;
    errno = err;
    return -1;
  }
  ssize_t pread(int fd, void* data, size_t len, off_t offset) override {
    return ::pread(fd, data, len, offset);
  }
  ssize_t pwrite(int fd, const void* data, size_t len, off_t offset) override {
    return ::pwrite(fd, data, len, offset);
  }
  off_t lseek(int fd, off_t offset, int whence) override { return ::lseek(fd, offset, whence); }
  int ftruncate(int fd, off_t length) override { return ::ftruncate(fd, length); }
  int fdatasync(int fd) override { return ::fdatasync(fd); }
  int fsync(int fd) override { return ::fsync(fd); }
  int syncfs(int fd) override { return ::syncfs(fd); }
  int sync_file_range(int fd, off_t offset, off_t len, unsigned int flags) override {
    return ::sync_file_range(fd, offset, len, flags);
  }
  int fstat(int fd, struct stat* st) override { return ::fstat(fd, st); }
  int fstatat(int dirfd, const char* name, struct stat* st, int flags) override {
    return ::fstatat(dirfd, name, st, flags);
  }
  int fstatvfs(int fd, struct statvfs* st) override { return ::fstatvfs(fd, st); }
  int flock(int fd, int operation) override { return ::flock(fd, operation); }
  int renameat(int olddirfd, const char* oldname, int newdirfd, const char* newname) override {
    return ::renameat(olddirfd, oldname, newdirfd, newname);
  }
  int renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                unsigned int flags) override {
    return ::renameat2(olddirfd, oldname, newdirfd, newname, flags);
  }
  int unlinkat(int dirfd, const char* name, int flags) override {
    return ::unlinkat(dirfd, name, flags);
  }
  int open_unnamed(int dirfd, const char*, mode_t mode) override {
    // Naming an unnamed file may need /proc/self/fd (see link_unnamed); without /proc the
    // caller creates a named file instead.
    static const bool have_proc = ::access("/proc/self/fd", X_OK) == 0;
    if (!have_proc) {
      errno = EOPNOTSUPP;
      return -1;
    }
    int fd = ::openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (fd < 0 && (errno == EISDIR || errno == EINVAL)) errno = EOPNOTSUPP;  // no O_TMPFILE
    return fd;
  }
  int link_unnamed(int fd, int dirfd, const char* name) override {
    // linkat(AT_EMPTY_PATH) of a file this process opened works from Linux 6.10 on (before,
    // only with CAP_DAC_READ_SEARCH, else ENOENT); the way through /proc/self/fd works
    // everywhere but costs a walk of /proc on every call. The first is tried until the second
    // has once succeeded where it failed.
    if (empty_path_links_.load(std::memory_order_relaxed)) {
      if (::linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0) return 0;
      if (errno != ENOENT) return -1;
    }
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    const int rc = ::linkat(AT_FDCWD, self.c_str(), dirfd, name, AT_SYMLINK_FOLLOW);
    if (rc == 0) empty_path_links_.store(false, std::memory_order_relaxed);
    return rc;
  }

 private:
  std::atomic<bool> empty_path_links_{true};
};

}  // namespace

Env& Env::posix() {
  // Never destroyed: threads still running at exit may use it.
  static auto* env = new PosixEnv;
  return *env;
}

}  // namespace fetchq::util
