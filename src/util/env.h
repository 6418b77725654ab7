// Env: the file-system calls the transfer engine and the settle step make, behind one interface.
//
// Modelled on leveldb's Env: production code uses Env::posix(), which calls the kernel; a test
// passes a wrapper that fails chosen calls (a full disk, EIO on write or fsync, a short write)
// without root and without a real full disk. Every method behaves like the system call of the
// same name: it returns what the call returns (-1 on failure) and sets errno, so call sites
// keep their errno handling unchanged. Implementations must be thread-safe: the transfer
// thread, the queue thread and the sync pool call them at once.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace fetchq::util {

class Env {
 public:
  virtual ~Env() = default;

  // The real file system; lives as long as the process.
  static Env& posix();

  virtual int openat(int dirfd, const char* name, int flags, mode_t mode = 0) = 0;
  virtual int close(int fd) = 0;
  virtual ssize_t write(int fd, const void* data, size_t len) = 0;
  virtual ssize_t pwrite(int fd, const void* data, size_t len, off_t offset) = 0;
  virtual ssize_t pread(int fd, void* data, size_t len, off_t offset) = 0;
  virtual off_t lseek(int fd, off_t offset, int whence) = 0;
  virtual int ftruncate(int fd, off_t length) = 0;
  // posix_fallocate, with the usual convention: -1 and errno (ENOSPC: the disk is full).
  virtual int fallocate(int fd, off_t offset, off_t len) = 0;
  virtual int fdatasync(int fd) = 0;
  virtual int fsync(int fd) = 0;
  virtual int syncfs(int fd) = 0;
  // Starts writeback of a range without waiting (SYNC_FILE_RANGE_WRITE); advisory.
  virtual int sync_file_range(int fd, off_t offset, off_t len, unsigned int flags) = 0;
  virtual int fstat(int fd, struct stat* st) = 0;
  virtual int fstatat(int dirfd, const char* name, struct stat* st, int flags) = 0;
  virtual int fstatvfs(int fd, struct statvfs* st) = 0;
  virtual int flock(int fd, int operation) = 0;
  virtual int renameat(int olddirfd, const char* oldname, int newdirfd, const char* newname) = 0;
  virtual int renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                        unsigned int flags) = 0;
  virtual int unlinkat(int dirfd, const char* name, int flags) = 0;
  // A regular file in folder dirfd with no name yet (O_TMPFILE), to be given the name `name`
  // by link_unnamed once it is recorded: a crash before that leaves nothing on disk. -1 with
  // EOPNOTSUPP where the file system (or a missing /proc) cannot do it; then use O_EXCL.
  virtual int open_unnamed(int dirfd, const char* name, mode_t mode) = 0;
  // Names the file open_unnamed made; fails with EEXIST, replacing nothing, if the name is taken.
  virtual int link_unnamed(int fd, int dirfd, const char* name) = 0;
};

// Forwards every call to another Env; a test's Env overrides only the calls it fails.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env& target) : target_(target) {}
  Env& target() const { return target_; }

  int openat(int dirfd, const char* name, int flags, mode_t mode = 0) override {
    return target_.openat(dirfd, name, flags, mode);
  }
  int close(int fd) override { return target_.close(fd); }
  ssize_t write(int fd, const void* data, size_t len) override {
    return target_.write(fd, data, len);
  }
  ssize_t pread(int fd, void* data, size_t len, off_t offset) override {
    return target_.pread(fd, data, len, offset);
  }
  ssize_t pwrite(int fd, const void* data, size_t len, off_t offset) override {
    return target_.pwrite(fd, data, len, offset);
  }
  off_t lseek(int fd, off_t offset, int whence) override {
    return target_.lseek(fd, offset, whence);
  }
  int ftruncate(int fd, off_t length) override { return target_.ftruncate(fd, length); }
  int fallocate(int fd, off_t offset, off_t len) override { return target_.fallocate(fd, offset, len); }
  int fdatasync(int fd) override { return target_.fdatasync(fd); }
  int fsync(int fd) override { return target_.fsync(fd); }
  int syncfs(int fd) override { return target_.syncfs(fd); }
  int sync_file_range(int fd, off_t offset, off_t len, unsigned int flags) override {
    return target_.sync_file_range(fd, offset, len, flags);
  }
  int fstat(int fd, struct stat* st) override { return target_.fstat(fd, st); }
  int fstatat(int dirfd, const char* name, struct stat* st, int flags) override {
    return target_.fstatat(dirfd, name, st, flags);
  }
  int fstatvfs(int fd, struct statvfs* st) override { return target_.fstatvfs(fd, st); }
  int flock(int fd, int operation) override { return target_.flock(fd, operation); }
  int renameat(int olddirfd, const char* oldname, int newdirfd, const char* newname) override {
    return target_.renameat(olddirfd, oldname, newdirfd, newname);
  }
  int renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                unsigned int flags) override {
    return target_.renameat2(olddirfd, oldname, newdirfd, newname, flags);
  }
  int unlinkat(int dirfd, const char* name, int flags) override {
    return target_.unlinkat(dirfd, name, flags);
  }
  int open_unnamed(int dirfd, const char* name, mode_t mode) override {
    return target_.open_unnamed(dirfd, name, mode);
  }
  int link_unnamed(int fd, int dirfd, const char* name) override {
    return target_.link_unnamed(fd, dirfd, name);
  }

 private:
  Env& target_;
};

}  // namespace fetchq::util
