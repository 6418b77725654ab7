// Placement: file names, if-exists, the path registry and the .part of one attempt.
#include "transfer/placement.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "files/file_name.h"
#include "util/fs.h"

namespace fetchq::transfer {

namespace {
constexpr size_t kOpenFoldersSwept = 64;  // the remembered folders are swept from this many
}  // namespace

// Takes the advisory lock that keeps every other process (another fetchqd, a `fetchq get`
// with another database) from writing the same .part while this transfer does.
bool Placer::lock_part(Placement& t, int fd, const std::string& part) {
  if (env_.flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
  int err = errno;
  env_.close(fd);
  if (err == EWOULDBLOCK) {
    // Retryable: it may be this process's previous attempt, letting go of the file now.
    fail(t, "DestinationExists", "another process is writing " + part + " (it holds its lock)",
         true);
  } else {
    fail_disk(t, "lock", part, err);
  }
  return false;
}

// Opens (making it if needed) the folder that holds path, into t.folder. Confined jobs open
// it from their download root down without following a link, at every attempt: a folder
// swapped for a link since the submission leads nowhere. Other jobs (no roots configured)
// open it as named, or share it with the transfers and .part files that hold it open already
// (many small files into one folder open it once); their .part is still never reached
// through a link.
bool Placer::open_folder(Placement& t, const std::string& path) {
  const std::string dir = util::parent_dir(path);
  if (t.folder && t.folder->path() == dir) return true;
  t.folder.reset();
  if (t.req.confined) {
    if (t.req.root.empty()) {
      fail(t, "OutsideRoots", "refused " + path + ": it is not beneath a download root");
      return false;
    }
    const std::string& root = t.req.root;
    std::string rel = dir.size() > root.size() ? dir.substr(root == "/" ? 1 : root.size() + 1) : "";
    auto fd = util::open_folder_beneath(root, rel, true);
    if (!fd) {
      fail(t, "OutsideRoots", fd.error().message);
      return false;
    }
    t.folder = std::make_shared<Folder>(fd.value(), dir);
    return true;
  }
  // Shared only while the path still names that folder: one removed, or renamed and made
  // again, since it was opened is opened anew (or made) as the path now says.
  if (auto it = open_folders_.find(dir); it != open_folders_.end()) {
    struct stat now {};
    auto open = it->second.folder.lock();
    if (open && env_.fstatat(AT_FDCWD, dir.c_str(), &now, 0) == 0 && now.st_dev == it->second.dev &&
        now.st_ino == it->second.ino) {
      t.folder = std::move(open);
      return true;
    }
    open_folders_.erase(it);
  }
  auto open_dir = [&] {
    return env_.openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  };
  int fd = open_dir();
  if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {  // made here (or told why not)
    auto st = util::make_parent_dirs(path);
    if (!st) {
      fail(t, "DiskError", st.error().message);
      return false;
    }
    fd = open_dir();
  }
  if (fd < 0) {
    fail_disk(t, "open the folder", dir, errno);
    return false;
  }
  t.folder = std::make_shared<Folder>(fd, dir);
  if (open_folders_.size() >= kOpenFoldersSwept) {  // those no one holds any more go
    std::erase_if(open_folders_, [](const auto& e) { return e.second.folder.expired(); });
  }
  struct stat st {};
  if (env_.fstat(fd, &st) == 0) open_folders_[dir] = OpenFolder{t.folder, st.st_dev, st.st_ino};
  return true;
}

bool Placer::exists_at(Placement& t, const std::string& name) {
  struct stat st {};
  return env_.fstatat(t.folder->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// What sits at a path, in words for an error message.
std::string Placer::what_is(int dir_fd, const std::string& name) {
  struct stat st {};
  if (env_.fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return "gone again";
  if (S_ISLNK(st.st_mode)) return "a symbolic link, never followed";
  if (S_ISDIR(st.st_mode)) return "a folder";
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  return "a file of " + std::to_string(st.st_size) + " bytes";
}

// Creates a fresh, empty .part for path and sends its identity to be recorded. The file is
// made without a name (O_TMPFILE) and named only once the record is answered (recorded), so a
// kill -9 in between leaves no unrecorded .part that a later attempt would have to call
// foreign. Where that is not possible, it is created with O_EXCL. Either way a file already
// there (a user's file, a link, another process's download) is never opened nor replaced.
Placer::Create Placer::create_part(Placement& t, const std::string& path) {
  if (!open_folder(t, path)) return Create::kFailed;
  const std::string part = path + ".part";
  const std::string name = base_name(part);
  const int dfd = t.folder->fd();
  // Someone else's name is found now, while another one can still be chosen; one made while
  // the record is on its way fails the attempt instead (see recorded).
  if (exists_at(t, name)) return Create::kTaken;
  int fd = env_.open_unnamed(dfd, name.c_str(), 0644);
  const bool unnamed = fd >= 0;
  if (!unnamed && errno == EOPNOTSUPP) {
    fd = env_.openat(dfd, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0644);
  }
  if (fd < 0) {
    if (errno == EEXIST) return Create::kTaken;
    fail_disk(t, "create", part, errno);
    return Create::kFailed;
  }
  struct stat sb {};
  if (env_.fstat(fd, &sb) != 0) {
    int err = errno;
    env_.close(fd);
    if (!unnamed) env_.unlinkat(dfd, name.c_str(), 0);  // only a name this call made
    fail_disk(t, "stat", part, err);
    return Create::kFailed;
  }
  if (!lock_part(t, fd, part)) return Create::kFailed;
  PartIdentity id{static_cast<uint64_t>(sb.st_dev), static_cast<uint64_t>(sb.st_ino),
                  util::birth_time_ns(fd, "")};
  t.file = std::make_shared<PartFile>(fd, path, t.folder, sb.st_dev, /*fresh=*/true);
  t.offset = 0;
  t.on_disk = 0;
  t.record_pending = true;
  t.unnamed = unnamed;
  observer_->on_part_created(t.req.job_id, t.req.attempt, path, id);
  return Create::kCreated;
}

void Placer::recorded(Placement& t, bool ok) {
  if (!t.record_pending) return;
  t.record_pending = false;
  const bool unnamed = std::exchange(t.unnamed, false);
  if (!t.file) return;
  const std::string part = t.file->part_path();
  const std::string name = t.file->part_name();
  const int dfd = t.file->folder().fd();
  auto let_go = [&] {
    t.file.reset();
    t.offset = 0;
    t.on_disk = 0;
  };
  if (!ok) {
    if (!unnamed) env_.unlinkat(dfd, name.c_str(), 0);  // made with O_EXCL by this attempt
    let_go();
    fail(t, "DiskError", "cannot record " + part + " as the job's own file");
    return;
  }
  if (unnamed && env_.link_unnamed(t.file->fd(), dfd, name.c_str()) != 0) {
    int err = errno;
    let_go();
    if (err == EEXIST) {
      fail(t, "DestinationExists",
           part + " appeared while the job was starting; it is not this job's and is left alone",
           true);
    } else {
      fail_disk(t, "create", part, err);
    }
  }
}

// Whether `st` (with its birth time, 0 when the file system does not say) is the file whose
// identity was recorded: the same device and inode, and the same birth when one was recorded
// (else the inode number may have been reused by a file made later).
static bool is_recorded_file(const struct stat& st, int64_t birth, const PartIdentity& want) {
  return static_cast<uint64_t>(st.st_dev) == want.dev &&
         static_cast<uint64_t>(st.st_ino) == want.ino &&
         (want.birth_ns == 0 || birth == want.birth_ns);
}

// Opens the .part an earlier attempt of this job created, if it is still that file: a regular
// file with one link and the recorded identity. Keeps at most `keep` bytes of it. kReplaced:
// a link or special file took its place, which was removed (only the name: the file it points
// to, or its other links, are not touched); kForeign: another regular file is there.
Placer::Reuse Placer::open_own_part(Placement& t, const std::string& path, int64_t keep,
                                    std::string* why) {
  if (!open_folder(t, path)) return Reuse::kFailed;
  const std::string part = path + ".part";
  const std::string name = base_name(part);
  const int dfd = t.folder->fd();
  struct stat ls {};
  if (env_.fstatat(dfd, name.c_str(), &ls, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Reuse::kAbsent;
    fail_disk(t, "stat", part, errno);
    return Reuse::kFailed;
  }
  const PartIdentity* want = t.req.part_identity ? &*t.req.part_identity : nullptr;
  // birth: when the file there now was made (0: the file system does not say). A recorded
  // birth time must match, or the inode number was reused by a file made later.
  auto same = [want](const struct stat& st, int64_t birth) {
    return !want || is_recorded_file(st, birth, *want);
  };
  auto replaced = [&](const std::string& what) {
    *why = part + " was " + what +
           ", not the file the job created; it was removed and the "
           "download starts over";
    if (env_.unlinkat(dfd, name.c_str(), 0) != 0 && errno != ENOENT) {
      fail_disk(t, "remove", part, errno);
      return Reuse::kFailed;
    }
    return Reuse::kReplaced;
  };
  if (S_ISLNK(ls.st_mode)) return replaced("a symbolic link (fetchq never follows one there)");
  if (!S_ISREG(ls.st_mode)) {
    if (S_ISDIR(ls.st_mode)) {
      fail(t, "DestinationExists", part + " is a folder, not the job's download");
      return Reuse::kFailed;
    }
    return replaced("not a regular file (a FIFO, socket or device)");
  }
  // A name with other links goes without losing data: the file lives on under the others.
  if (ls.st_nlink != 1) return replaced("a file with " + std::to_string(ls.st_nlink) + " links");
  if (!same(ls, util::birth_time_ns(dfd, name.c_str()))) {
    *why = part + " is not the file this job created (another inode); it is left alone";
    return Reuse::kForeign;
  }
  // O_NONBLOCK: if a FIFO is swapped in after the lstat, the open does not hang the thread.
  // Read and write: the file's sha256 is taken from it while it downloads.
  int fd = env_.openat(dfd, name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENXIO) return replaced("swapped while it was opened");
    fail_disk(t, "open", part, errno);
    return Reuse::kFailed;
  }
  struct stat sb {};
  if (env_.fstat(fd, &sb) == 0 && S_ISFIFO(sb.st_mode)) {  // opened for reading too, so no ENXIO
    env_.close(fd);
    return replaced("swapped while it was opened");
  }
  if (env_.fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1 ||
      !same(sb, util::birth_time_ns(fd, "")) || sb.st_dev != ls.st_dev || sb.st_ino != ls.st_ino) {
    env_.close(fd);
    *why = part + " changed while it was opened";
    return Reuse::kForeign;
  }
  if (!lock_part(t, fd, part)) return Reuse::kFailed;
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  keep = std::clamp<int64_t>(keep, 0, sb.st_size);
  if (env_.ftruncate(fd, keep) != 0 || env_.lseek(fd, keep, SEEK_SET) < 0) {
    int err = errno;
    env_.close(fd);
    fail_disk(t, "truncate", part, err);
    return Reuse::kFailed;
  }
  t.file = std::make_shared<PartFile>(fd, path, t.folder, sb.st_dev);
  t.offset = keep;
  t.on_disk = keep;
  return Reuse::kOpened;
}

// The job's own .part of `path` (the recorded identity, one link, a regular file), which no
// attempt will use again: the name was taken meanwhile and the job goes on under a numbered
// one (rename). Removed, so that it does not stay on disk with nothing to clean it up. Anything
// else there is left alone.
void Placer::remove_own_part(Placement& t, const std::string& path) {
  if (!t.req.part_identity || !t.folder || !paths_->claim(path)) return;
  const std::string name = base_name(path + ".part");
  const int dfd = t.folder->fd();
  struct stat st {};
  if (env_.fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
      st.st_nlink == 1 &&
      is_recorded_file(st, util::birth_time_ns(dfd, name.c_str()), *t.req.part_identity) &&
      env_.unlinkat(dfd, name.c_str(), 0) == 0) {
    t.part_replaced = path +
                      " was taken by another file (--if-exists rename): the download "
                      "starts again under a new name and its " +
                      name + " was removed";
    spdlog::info("job {}: {}", t.req.job_id, t.part_replaced);
  }
  paths_->release(path);
}

// Applies if_exists to a path whose .part is not ours yet; may switch to a numbered name.
// Claims the chosen path in the registry and creates its .part. A .part that exists already
// belongs to someone else: the next numbered name (rename) or DestinationExists.
bool Placer::settle_path(Placement& t, std::string path) {
  const IfExists policy = t.req.if_exists;
  const std::string dir = util::parent_dir(path);
  const std::string name = path.substr(dir.size() + 1);
  if (!open_folder(t, path)) return false;
  for (int n = 1;; ++n) {
    const bool taken = exists_at(t, base_name(path));
    if (taken && policy == IfExists::kError) {
      fail(t, "DestinationExists",
           path + " already exists (--if-exists error; skip, overwrite or rename decide otherwise)");
      return false;
    }
    std::string why;
    if (policy == IfExists::kRename && taken) {
      why = "no free file name for " + path;
    } else if (!paths_->claim(path)) {
      why = "another job is writing " + path + " or uses it as its .part";
    } else {
      Create c = create_part(t, path);
      if (c == Create::kCreated) break;
      paths_->release(path);
      if (c == Create::kFailed) return false;
      why = path + ".part exists (" + what_is(t.folder->fd(), base_name(path) + ".part") +
            ") and is not this job's: fetchq never takes over a file it did not create";
    }
    if (policy != IfExists::kRename || n > 10000) {
      fail(t, "DestinationExists", why);
      return false;
    }
    path = dir + "/" + files::numbered_file_name(name, n);
  }
  t.path_held = true;
  t.download_path = path;
  return true;
}

void Placer::place(Placement& t) {
  if (t.req.download_path) {
    // The path is known: a file destination, or a job resumed after an earlier attempt.
    const std::string& p = *t.req.download_path;
    const bool own = t.req.part_identity || t.req.legacy_part;
    // A file at the final name stops a resume only where if_exists says it must (error:
    // refused, rename: a numbered name); overwrite and skip decide at the end, as before.
    const bool final_ok =
        t.req.if_exists == IfExists::kOverwrite || t.req.if_exists == IfExists::kSkip;
    bool settled = false;
    if (own && open_folder(t, p) && (final_ok || !exists_at(t, base_name(p)))) {
      if (paths_->claim(p)) {
        t.path_held = true;
        t.download_path = p;
        std::string why;
        Reuse u = open_own_part(t, p, t.req.offset, &why);
        if (u == Reuse::kOpened || u == Reuse::kFailed) {
          settled = true;
        } else if (u == Reuse::kAbsent || u == Reuse::kReplaced) {
          if (u == Reuse::kReplaced) {
            spdlog::warn("job {}: {}", t.req.job_id, why);
            t.part_replaced = why;
          }
          Create c = create_part(t, p);
          if (c == Create::kTaken) {
            fail(t, "DestinationExists", p + ".part appeared while the job was starting");
          }
          settled = true;
        } else {  // kForeign: never touched; a numbered name, or DestinationExists
          paths_->release(p);
          t.path_held = false;
          t.download_path.clear();
          spdlog::warn("job {}: {}", t.req.job_id, why);
        }
      } else {
        fail(t, "DestinationExists", "another job is writing " + p + " or uses it as its .part");
        settled = true;
      }
    }
    if (!settled && !t.failure && own && t.req.if_exists == IfExists::kRename) {
      remove_own_part(t, p);
    }
    if (!settled && !t.failure) settle_path(t, p);
  }
}

}  // namespace fetchq::transfer
