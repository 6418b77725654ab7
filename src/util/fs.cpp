// File-system helpers: fsync, folders, boot id, sha256 and the single-writer lock.
#include "util/fs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

namespace fetchq::util {

std::string errno_message(const std::string& what, const std::string& path, int err) {
  return what + " " + path + ": " + std::strerror(err);
}

int64_t birth_time_ns(int dirfd, const char* name) {
  struct statx sx {};
  const int flags = AT_SYMLINK_NOFOLLOW | (name[0] == '\0' ? AT_EMPTY_PATH : 0);
  if (::statx(dirfd, name, flags, STATX_BTIME, &sx) != 0 || !(sx.stx_mask & STATX_BTIME)) return 0;
  return static_cast<int64_t>(sx.stx_btime.tv_sec) * 1000000000 + sx.stx_btime.tv_nsec;
}

static Status fsync_open(const std::string& path, int flags, const char* what) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::kIo, errno_message("open", path, errno));
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(ErrorCode::kIo, errno_message(what, path, err));
  }
  ::close(fd);
  return Ok{};
}

Status fsync_path(const std::string& path) { return fsync_open(path, O_RDONLY, "fsync"); }

std::string parent_dir(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string absolute_path(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return path;
  if (path.empty() || path == ".") return cwd;
  return std::string(cwd) + "/" + path;
}

Status fsync_parent(const std::string& path) {
  return fsync_open(parent_dir(path), O_RDONLY | O_DIRECTORY, "fsync folder of");
}

uint64_t raise_open_file_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit want = lim;
    want.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
  }
  return lim.rlim_cur;
}

Status make_parent_dirs(const std::string& path) {
  std::string dir = parent_dir(path);
  std::string cur;
  size_t i = 0;
  while (i <= dir.size()) {
    size_t next = dir.find('/', i);
    if (next == std::string::npos) next = dir.size();
    cur = dir.substr(0, next);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return make_error(ErrorCode::kIo, errno_message("mkdir", cur, errno));
    }
    i = next + 1;
  }
  if (!is_directory(dir)) return make_error(ErrorCode::kIo, "not a folder: " + dir);
  return Ok{};
}

Result<int> open_folder_beneath(const std::string& root, const std::string& rel, bool create) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return make_error(ErrorCode::kIo, errno_message("open the download root", root, errno));
  std::vector<std::string> parts;
  for (size_t i = 0; i <= rel.size();) {
    size_t next = rel.find('/', i);
    if (next == std::string::npos) next = rel.size();
    std::string c = rel.substr(i, next - i);
    if (c == "..") {
      ::close(fd);
      return make_error(ErrorCode::kIo,
                        "refused " + root + "/" + rel + ": '..' would leave the download root");
    }
    if (!c.empty() && c != ".") parts.push_back(std::move(c));
    i = next + 1;
  }
  if (parts.empty()) return fd;
#ifdef SYS_openat2
  {
    open_how how{};
    how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    std::string joined;
    for (const auto& c : parts) joined += (joined.empty() ? "" : "/") + c;
    long d = ::syscall(SYS_openat2, fd, joined.c_str(), &how, sizeof how);
    if (d >= 0) {
      ::close(fd);
      return static_cast<int>(d);
    }
    // ENOENT with create: made below one folder at a time; ENOSYS, EPERM (seccomp) and the
    // like: the walk below decides. ELOOP and EXDEV fall through too and get named there.
  }
#endif
  std::string at = root;
  for (const auto& c : parts) {
    at += "/" + c;
    int next = ::openat(fd, c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(fd, c.c_str(), 0755) != 0 && errno != EEXIST) {
        int err = errno;
        ::close(fd);
        return make_error(ErrorCode::kIo, errno_message("mkdir", at, err));
      }
      next = ::openat(fd, c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (next < 0) {
      int err = errno;
      struct stat st {};
      const bool link =
          ::fstatat(fd, c.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
      ::close(fd);
      if (link || err == ELOOP) {
        return make_error(ErrorCode::kIo,
                          "refused " + at +
                              ": it is a symbolic link, and fetchq never follows one "
                              "beneath a download root");
      }
      if (err == ENOTDIR) return make_error(ErrorCode::kIo, "not a folder: " + at);
      return make_error(ErrorCode::kIo, errno_message("open the folder", at, err));
    }
    ::close(fd);
    fd = next;
  }
  return fd;
}

std::optional<std::string> root_of(const std::string& path, const std::vector<std::string>& roots) {
  std::optional<std::string> best;
  for (const auto& r : roots) {
    std::vector<std::string> forms{r};
    char buf[PATH_MAX];
    if (::realpath(r.c_str(), buf)) forms.emplace_back(buf);
    for (auto f : forms) {
      while (f.size() > 1 && f.back() == '/') f.pop_back();
      const bool under = f == "/" ? path.size() > 1 && path[0] == '/'
                                  : path.size() > f.size() && path.compare(0, f.size(), f) == 0 &&
                                        path[f.size()] == '/';
      if (under && (!best || f.size() > best->size())) best = f;
    }
  }
  return best;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::optional<int64_t> file_size(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return static_cast<int64_t>(st.st_size);
}

bool syncfs_reports_errors(int fd) {
  static const bool kernel_reports = [] {
    struct utsname u {};
    if (::uname(&u) != 0) return false;
    int major = 0, minor = 0;
    if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
    return major > 5 || (major == 5 && minor >= 8);
  }();
  if (!kernel_reports) return false;
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:  // also ext2 and ext3
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
      return true;
    default:
      return false;
  }
}

const std::string& boot_id() {
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string s;
    std::getline(in, s);
    return s.empty() ? std::string("unknown") : s;
  }();
  return id;
}

Result<std::string> sha256_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return make_error(ErrorCode::kIo, errno_message("open", path, errno));
  auto sum = sha256_fd(fd, path);
  ::close(fd);
  return sum;
}

Result<std::string> sha256_fd(int fd, const std::string& shown) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<unsigned char> buf(1 << 20);
  for (off_t at = 0;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, errno_message("read", shown, errno));
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
    at += n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

Result<LockFile> LockFile::acquire(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(ErrorCode::kIo, errno_message("open", path, errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      return make_error(ErrorCode::kBusy,
                        "the database is in use by another fetchq process (pid " + pid +
                            "), lock " + path);
    }
    return make_error(ErrorCode::kIo, errno_message("lock", path, err));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t w = ::pwrite(fd, pid.data(), pid.size(), 0);
  }
  return LockFile(fd);
}

LockFile::LockFile(LockFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
LockFile& LockFile::operator=(LockFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}
LockFile::~LockFile() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace fetchq::util
