// File-system helpers with the durability steps spelled out (fsync of data and of folders).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fetchq/result.h"

namespace fetchq::util {

// "<what> <path>: <strerror(errno)>" for error messages that name the path and the cause.
std::string errno_message(const std::string& what, const std::string& path, int err);

Status fsync_path(const std::string& path);       // a file
Status fsync_parent(const std::string& path);     // the folder holding path
Status make_parent_dirs(const std::string& path); // mkdir -p of dirname(path)
bool is_directory(const std::string& path);
bool exists(const std::string& path);             // without following a final symbolic link
std::optional<int64_t> file_size(const std::string& path);
std::string parent_dir(const std::string& path);
// path made absolute against the current folder (not resolved: links and ".." stay).
std::string absolute_path(const std::string& path);

// The folder `rel` beneath the folder `root`, opened (O_RDONLY|O_DIRECTORY) without following
// any symbolic link and without leaving root ("..", absolute links): openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it, else one component at a time
// with O_NOFOLLOW. root itself is trusted as configured. create: missing folders are made.
// Returns the descriptor; the caller closes it.
Result<int> open_folder_beneath(const std::string& root, const std::string& rel, bool create);

// The root among `roots` that `path` lies beneath, textually (each root as given or resolved
// with realpath); nullopt when none does.
std::optional<std::string> root_of(const std::string& path, const std::vector<std::string>& roots);

// Raises the soft limit on open files to the hard one: each transfer holds a socket and a file,
// and the usual soft limit of 1024 would cap a queue at about 500 downloads at once. Safe here:
// nothing in fetchq uses select(). Returns the limit now in force.
uint64_t raise_open_file_limit();

// When the file `name` in folder `dirfd` (or dirfd itself, with name "") was created, in ns
// since the epoch, without following a symbolic link; 0 when the file system does not say.
// With the inode number it tells a file from a later one that reused the number.
int64_t birth_time_ns(int dirfd, const char* name);

// Whether syncfs(fd) writes out every file of fd's file system and also reports a writeback
// error of any of them since fd was opened: Linux 5.8 and later, on ext2/3/4, XFS or Btrfs.
// Elsewhere (an older kernel; FUSE, which may pass the data on without its fsync; overlayfs,
// whose errors land on the file system below; network file systems) each file's own fsync has
// to tell of its errors.
bool syncfs_reports_errors(int fd);

// The kernel's id of the current boot; a checkpoint from this boot survived with the page cache.
const std::string& boot_id();

// sha256 of a file in lower-case hex.
Result<std::string> sha256_file(const std::string& path);
// sha256 of all of an open file (read from its start, its offset left alone); `shown` names it
// in an error.
Result<std::string> sha256_fd(int fd, const std::string& shown);

// An exclusive lock on `path` (created 0600) held for the object's lifetime.
class LockFile {
 public:
  static Result<LockFile> acquire(const std::string& path);
  LockFile(LockFile&& other) noexcept;
  LockFile& operator=(LockFile&& other) noexcept;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile();

 private:
  explicit LockFile(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace fetchq::util
