// Engine: the per-job download above the Fetcher: placement (file names, if-exists, the path
// registry, the .part and its identity and lock), free space, and writing the body into the
// .part. The HTTP side (libcurl) is the Fetcher's.
#include "transfer/engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include <spdlog/spdlog.h>

#include "files/file_name.h"
#include "transfer/fetcher.h"
#include "util/clock.h"
#include "util/env.h"
#include "util/fs.h"

namespace fetchq::transfer {

using util::SteadyClock;

namespace {

// Every transfer starts with a small write buffer. One that fills it within kFillFast earns a
// bigger one, up to max_write_buffer (fewer, larger writes at disk speed); one that takes more
// than kFillSlow gives memory back. So a thousand slow downloads hold 16 KiB each, not 1 MiB.
constexpr size_t kMinWriteBuffer = 16 << 10;
constexpr auto kFillFast = std::chrono::milliseconds(200);
constexpr auto kFillSlow = std::chrono::seconds(2);

struct Transfer {
  Request req;
  FetchId fetch = 0;     // 0 until the request is sent
  bool decided = false;  // the response head was seen (decide)
  bool complete_now = false;  // 416 that proves the file is whole
  std::optional<Failure> failure;
  std::optional<Outcome> forced_outcome;
  bool path_held = false;
  std::string part_replaced;  // why the recorded .part was not used (reported as a restart)

  std::string download_path;
  std::shared_ptr<Folder> folder;  // of download_path, opened safely (see open_folder)
  std::shared_ptr<PartFile> file;
  int64_t offset = 0;       // bytes kept from before this attempt
  int64_t on_disk = 0;      // bytes written to the file
  int64_t received = 0;     // body bytes of this attempt
  int64_t total = 0;        // expected final size, 0 when unknown
  std::vector<char> buf;
  size_t buf_cap = kMinWriteBuffer;
  SteadyClock::time_point buf_since{};  // when buf was last emptied by a full write

  SteadyClock::time_point last_progress{};
  SteadyClock::time_point last_checkpoint{};
  int64_t reported_bytes = -1;
  int64_t checkpointed = -1;
};

}  // namespace

class Engine::Impl final : public FetchClient {
 public:
  Impl(EngineOptions options, Observer* observer, PathRegistry* paths)
      : options_(options),
        env_(options.env ? *options.env : util::Env::posix()),
        observer_(observer),
        paths_(paths),
        fetcher_(FetcherOptions{.connect_timeout = options.connect_timeout,
                                .stall_timeout = options.stall_timeout,
                                .max_redirects = options.max_redirects,
                                .block_private_addresses = options.block_private_addresses},
                 this) {
    fetcher_.start_thread();
  }

  ~Impl() override {
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    fetcher_.wakeup();
    fetcher_.join();
  }

  void submit(Request r) {
    {
      std::lock_guard lk(mu_);
      pending_.push_back(std::move(r));
      ++outstanding_;
    }
    fetcher_.wakeup();
  }

  void stop(int64_t id) {
    {
      std::lock_guard lk(mu_);
      stops_.push_back(id);
    }
    fetcher_.wakeup();
  }

  void stop_all() {
    {
      std::lock_guard lk(mu_);
      stop_all_ = true;
    }
    fetcher_.wakeup();
  }

  void wait_idle() {
    std::unique_lock lk(mu_);
    idle_cv_.wait(lk, [this] { return outstanding_ == 0; });
  }

 private:
  // Fetcher thread: new requests, stops, and the end.
  bool on_wake() override {
    std::deque<Request> pending;
    std::vector<int64_t> stops;
    bool stop_all = false, quit = false;
    {
      std::lock_guard lk(mu_);
      pending.swap(pending_);
      stops.swap(stops_);
      stop_all = std::exchange(stop_all_, false);
      quit = quit_;
    }
    if (quit) stop_all = true;
    for (auto& r : pending) begin(std::move(r));
    if (stop_all) {
      std::vector<int64_t> ids;
      for (auto& [id, t] : transfers_) ids.push_back(id);
      for (auto id : ids) end_stopped(id);
    }
    for (auto id : stops) end_stopped(id);
    if (!quit) return true;
    // Anything submitted after the last look is reported as stopped, outside our lock so
    // the observer may take its own.
    std::deque<Request> late;
    {
      std::lock_guard lk(mu_);
      late.swap(pending_);
    }
    for (auto& r : late) {
      Result res;
      res.outcome = Outcome::kStopped;
      res.bytes = r.offset;
      observer_->on_finished(r.job_id, r.attempt, std::move(res));
    }
    std::lock_guard lk(mu_);
    outstanding_ -= static_cast<int64_t>(late.size());
    idle_cv_.notify_all();
    return false;
  }

  void on_tick() override { tick(); }

  // Progress and checkpoints are driven by time, per transfer.
  void tick() {
    auto now = SteadyClock::now();
    for (auto& [id, tp] : transfers_) {
      Transfer& t = *tp;
      if (!t.decided || t.failure) continue;
      // Progress counts written bytes only: after a crash in this boot, the recorded progress
      // bounds what of the .part may be kept, and buffered bytes never reached the file.
      if (now - t.last_progress >= options_.progress_interval && !t.buf.empty() && !flush(t)) continue;
      int64_t bytes = t.on_disk;
      if (now - t.last_progress >= options_.progress_interval && bytes != t.reported_bytes) {
        t.last_progress = now;
        t.reported_bytes = bytes;
        observer_->on_progress(id, t.req.attempt, bytes, t.total);
      }
      if (now - t.last_checkpoint >= options_.checkpoint_interval && bytes != t.checkpointed) {
        t.last_checkpoint = now;
        if (!flush(t)) continue;
        t.checkpointed = t.on_disk;
        observer_->on_checkpoint(id, t.req.attempt, t.file, t.on_disk);
      }
    }
  }

  Transfer* of(FetchId id) {
    auto it = by_fetch_.find(id);
    if (it == by_fetch_.end()) return nullptr;
    auto t = transfers_.find(it->second);
    return t == transfers_.end() ? nullptr : t->second.get();
  }

  bool on_response(FetchId id, const FetchResponse& response) override {
    Transfer* t = of(id);
    return t && decide(*t, response);
  }

  bool on_data(FetchId id, const char* data, size_t len) override {
    Transfer* t = of(id);
    if (!t || t->failure || t->complete_now || t->forced_outcome) return false;
    t->received += static_cast<int64_t>(len);
    if (t->total > 0 && t->offset + t->received > t->total) {
      t->failure = Failure{.type = "IncompleteBody",
                           .message = "GET " + t->req.url + ": the body is longer than the " +
                                      std::to_string(t->total) + " bytes announced",
                           .retryable = true,
                           .restart_from_zero = true};
      return false;
    }
    if (t->buf.capacity() < t->buf_cap) t->buf.reserve(t->buf_cap);
    t->buf.insert(t->buf.end(), data, data + len);
    if (t->buf.size() >= t->buf_cap) {
      if (!flush(*t)) return false;
      auto now = SteadyClock::now();
      auto took = now - t->buf_since;
      t->buf_since = now;
      if (took < kFillFast) {
        t->buf_cap = std::min(t->buf_cap * 2, options_.max_write_buffer);
      } else if (took > kFillSlow && t->buf_cap > kMinWriteBuffer) {
        t->buf_cap = std::max(t->buf_cap / 2, kMinWriteBuffer);
        t->buf.shrink_to_fit();  // empty after the flush: frees it; the next write reserves anew
      }
    }
    return true;
  }

  // Writes the buffer out. On failure records a disk failure and returns false.
  bool flush(Transfer& t) {
    size_t off = 0;
    while (off < t.buf.size()) {
      ssize_t w = env_.write(t.file->fd(), t.buf.data() + off, t.buf.size() - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        t.failure = disk_failure("write", t.file->part_path(), err);
        t.buf.clear();
        return false;
      }
      off += static_cast<size_t>(w);
      t.on_disk += w;
    }
    // Start writeback of what was just written without waiting for it, so the disk works while
    // the download goes on and the fsync before the rename finds little left to do. Not for
    // the first MiB: submitting the I/O of a small file here cost the transfer thread more than
    // the fsync on a sync thread saves.
    constexpr int64_t kWritebackFrom = 1 << 20;
    if (!t.buf.empty() && t.on_disk > kWritebackFrom) {
      env_.sync_file_range(t.file->fd(), t.on_disk - static_cast<int64_t>(t.buf.size()),
                        static_cast<int64_t>(t.buf.size()), SYNC_FILE_RANGE_WRITE);
    }
    t.buf.clear();
    return true;
  }

  // "GET <url>", and where redirects led, for messages (see Fetcher::where).
  std::string where(Transfer& t) const { return fetcher_.where(t.fetch); }

  void fail(Transfer& t, std::string type, std::string message, bool retryable = false) {
    if (!t.failure)
      t.failure =
          Failure{.type = std::move(type), .message = std::move(message), .retryable = retryable};
  }
  void fail_disk(Transfer& t, const std::string& step, const std::string& path, int err) {
    if (!t.failure) t.failure = disk_failure(step, path, err);
  }

  // Takes the advisory lock that keeps every other process (another fetchqd, a `fetchq get`
  // with another database) from writing the same .part while this transfer does.
  bool lock_part(Transfer& t, int fd, const std::string& part) {
    if (env_.flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    int err = errno;
    env_.close(fd);
    if (err == EWOULDBLOCK) {
      // Retryable: it may be this process's previous attempt, letting go of the file now.
      fail(t, "DestinationExists", "another process is writing " + part + " (it holds its lock)", true);
    } else {
      fail_disk(t, "lock", part, err);
    }
    return false;
  }

  static std::string base_name(const std::string& path) {
    return path.substr(path.find_last_of('/') + 1);
  }

  // Opens (making it if needed) the folder that holds path, into t.folder. Confined jobs open
  // it from their download root down without following a link, at every attempt: a folder
  // swapped for a link since the submission leads nowhere. Other jobs (no roots configured)
  // open it as named, as before; their .part is still never reached through a link.
  bool open_folder(Transfer& t, const std::string& path) {
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
    if (!util::is_directory(dir)) {  // one stat, not a mkdir per component
      auto st = util::make_parent_dirs(path);
      if (!st) {
        fail(t, "DiskError", st.error().message);
        return false;
      }
    }
    int fd = env_.openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      fail_disk(t, "open the folder", dir, errno);
      return false;
    }
    t.folder = std::make_shared<Folder>(fd, dir);
    return true;
  }

  bool exists_at(Transfer& t, const std::string& name) {
    struct stat st {};
    return env_.fstatat(t.folder->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  }

  // What sits at a path, in words for an error message.
  std::string what_is(int dir_fd, const std::string& name) {
    struct stat st {};
    if (env_.fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return "gone again";
    if (S_ISLNK(st.st_mode)) return "a symbolic link, never followed";
    if (S_ISDIR(st.st_mode)) return "a folder";
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    return "a file of " + std::to_string(st.st_size) + " bytes";
  }

  enum class Create { kCreated, kTaken, kFailed };

  // Creates a fresh, empty .part for path with O_EXCL: a file already there (a user's file, a
  // link, another process's download) is never opened. Records its identity before use.
  Create create_part(Transfer& t, const std::string& path) {
    if (!open_folder(t, path)) return Create::kFailed;
    const std::string part = path + ".part";
    const std::string name = base_name(part);
    const int dfd = t.folder->fd();
    int fd = env_.openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) return Create::kTaken;
      fail_disk(t, "create", part, errno);
      return Create::kFailed;
    }
    struct stat sb {};
    if (env_.fstat(fd, &sb) != 0) {
      int err = errno;
      env_.close(fd);
      env_.unlinkat(dfd, name.c_str(), 0);
      fail_disk(t, "stat", part, err);
      return Create::kFailed;
    }
    if (!lock_part(t, fd, part)) return Create::kFailed;
    PartIdentity id{static_cast<uint64_t>(sb.st_dev), static_cast<uint64_t>(sb.st_ino),
                    util::birth_time_ns(fd, "")};
    if (!observer_->on_part_created(t.req.job_id, t.req.attempt, path, id)) {
      env_.close(fd);
      env_.unlinkat(dfd, name.c_str(), 0);
      fail(t, "DiskError", "cannot record " + part + " as the job's own file");
      return Create::kFailed;
    }
    t.file = std::make_shared<PartFile>(fd, path, t.folder);
    t.offset = 0;
    t.on_disk = 0;
    return Create::kCreated;
  }

  enum class Reuse { kOpened, kAbsent, kReplaced, kForeign, kFailed };

  // Opens the .part an earlier attempt of this job created, if it is still that file: a regular
  // file with one link and the recorded identity. Keeps at most `keep` bytes of it. kReplaced:
  // a link or special file took its place, which was removed (only the name: the file it points
  // to, or its other links, are not touched); kForeign: another regular file is there.
  Reuse open_own_part(Transfer& t, const std::string& path, int64_t keep, std::string* why) {
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
      return !want || (static_cast<uint64_t>(st.st_dev) == want->dev &&
                       static_cast<uint64_t>(st.st_ino) == want->ino &&
                       (want->birth_ns == 0 || birth == want->birth_ns));
    };
    auto replaced = [&](const std::string& what) {
      *why = part + " was " + what + ", not the file the job created; it was removed and the "
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
    int fd = env_.openat(dfd, name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ELOOP || errno == ENXIO) return replaced("swapped while it was opened");
      fail_disk(t, "open", part, errno);
      return Reuse::kFailed;
    }
    struct stat sb {};
    if (env_.fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1 || !same(sb, util::birth_time_ns(fd, "")) ||
        sb.st_dev != ls.st_dev || sb.st_ino != ls.st_ino) {
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
    t.file = std::make_shared<PartFile>(fd, path, t.folder);
    t.offset = keep;
    t.on_disk = keep;
    return Reuse::kOpened;
  }

  // Applies if_exists to a path whose .part is not ours yet; may switch to a numbered name.
  // Claims the chosen path in the registry and creates its .part. A .part that exists already
  // belongs to someone else: the next numbered name (rename) or DestinationExists.
  bool settle_path(Transfer& t, std::string path) {
    const IfExists policy = t.req.if_exists;
    const std::string dir = util::parent_dir(path);
    const std::string name = path.substr(dir.size() + 1);
    if (!open_folder(t, path)) return false;
    for (int n = 1;; ++n) {
      const bool taken = exists_at(t, base_name(path));
      if (taken && policy == IfExists::kError) {
        fail(t, "DestinationExists", path + " already exists (if_exists is error)");
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

  void begin(Request r) {
    auto tp = std::make_unique<Transfer>();
    Transfer& t = *tp;
      t.req = std::move(r);
    if (t.req.download_path) {
      // The path is known: a file destination, or a job resumed after an earlier attempt.
      const std::string& p = *t.req.download_path;
      const bool own = t.req.part_identity || t.req.legacy_part;
      // A file at the final name stops a resume only where if_exists says it must (error:
      // refused, rename: a numbered name); overwrite and skip decide at the end, as before.
      const bool final_ok = t.req.if_exists == IfExists::kOverwrite || t.req.if_exists == IfExists::kSkip;
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
      if (!settled && !t.failure) settle_path(t, p);
    }
    if (t.failure) {
      finish(std::move(tp));
      return;
    }
    FetchRequest fr;
    fr.url = t.req.url;
    if (t.offset > 0) {
      fr.range = ByteRange{.start = t.offset};
      // If-Range: a strong ETag, else Last-Modified; without either, a 206 is trusted as is.
      std::string validator;
      if (!t.req.etag.empty() && t.req.etag.rfind("W/", 0) != 0) {
        validator = t.req.etag;
      } else if (!t.req.last_modified.empty()) {
        validator = t.req.last_modified;
      }
      if (!validator.empty()) fr.headers.push_back("If-Range: " + validator);
    }
    fr.access_token = t.req.access_token;
    fr.username = t.req.username;
    fr.password = t.req.password;
    auto now = SteadyClock::now();
    t.last_progress = now;
    t.last_checkpoint = now;
    t.buf_since = now;
    int64_t id = t.req.job_id;
    transfers_[id] = std::move(tp);
    t.fetch = fetcher_.start(std::move(fr));
    by_fetch_[t.fetch] = id;
  }

  // Decides, from the final response's headers, what to do with its body. False: abort.
  bool decide(Transfer& t, const FetchResponse& response) {
    t.decided = true;
    const long code = response.code;
    auto header = [&](const char* name) { return response.header(name); };
    const std::string& url = t.req.url;
    if (code == 416 && t.offset > 0) {
      int64_t start = 0, total = -1;
      if (parse_content_range(header("content-range"), &start, &total) && total == t.offset &&
          (t.req.expected_total == 0 || t.req.expected_total == total)) {
        t.complete_now = true;  // the .part already holds the whole file
        t.total = total;
        return false;
      }
      t.failure =
          Failure{.type = "RangeNotSatisfiable",
                  .message = "GET " + url + ": HTTP 416 for bytes " + std::to_string(t.offset) +
                             "- and the sizes do not agree; starting over",
                  .retryable = true,
                  .retry_after_ms = 0,
                  .restart_from_zero = true};
      return false;
    }
    if (code < 200 || code >= 300) {
      Failure f;
      f.type = "HTTPError(" + std::to_string(code) + " " + std::string(reason_phrase(code)) + ")";
      f.message = where(t) + " returned HTTP " + std::to_string(code) + " " +
                  std::string(reason_phrase(code));
      f.retryable = is_retryable_status(code);
      std::string ra = header("retry-after");
      if (!ra.empty()) f.retry_after_ms = parse_retry_after(ra, util::now_unix_ms());
      t.failure = std::move(f);
      return false;
    }
    const int64_t clen = response.content_length;
    Started s;
    if (!t.file) {
      // A folder destination seen for the first time: the response names the file.
      std::optional<std::string> cd;
      std::string cdh = header("content-disposition");
      if (!cdh.empty()) cd = cdh;
      std::string name = files::choose_file_name(cd, url);
      std::string dir = t.req.dest;
      while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
      if (!settle_path(t, (dir == "/" ? "" : dir) + "/" + name)) return false;
    }
    if (code == 206) {
      int64_t start = 0, end = -1, total = -1;
      if (!parse_content_range(header("content-range"), &start, &end, &total) || start != t.offset) {
        t.failure = Failure{.type = "RangeMismatch",
                            .message = "GET " + url + ": the 206 answer's Content-Range '" +
                                       header("content-range") + "' does not start at byte " +
                                       std::to_string(t.offset) + "; starting over",
                            .retryable = true,
                            .retry_after_ms = 0,
                            .restart_from_zero = true};
        return false;
      }
      if (t.req.expected_total > 0 && total > 0 && total != t.req.expected_total) {
        t.failure = Failure{.type = "SizeChanged",
                            .message = "GET " + url + ": the file is now " + std::to_string(total) +
                                       " bytes, it was " + std::to_string(t.req.expected_total) +
                                       "; starting over",
                            .retryable = true,
                            .retry_after_ms = 0,
                            .restart_from_zero = true};
        return false;
      }
      // The range asked runs to the end of the file: an answer that stops short of the total,
      // or whose length disagrees with its own range, would complete a file with a hole.
      const bool short_range = total > 0 && end != total - 1;
      const bool bad_length = clen >= 0 && end >= start && clen != end - start + 1;
      if (short_range || bad_length) {
        t.failure = Failure{
            .type = "RangeMismatch",
            .message =
                "GET " + url + ": the 206 answer's Content-Range '" + header("content-range") +
                (short_range ? "' ends before the last byte of the file"
                             : "' disagrees with its Content-Length " + std::to_string(clen)),
            .retryable = true};
        return false;
      }
      t.total = total > 0 ? total : 0;
      s.from_bytes = t.offset;
    } else {
      if (t.offset > 0) {
        // The whole body came back: the file changed or the server ignores ranges.
        if (env_.ftruncate(t.file->fd(), 0) != 0 || env_.lseek(t.file->fd(), 0, SEEK_SET) < 0) {
          fail_disk(t, "truncate", t.file->part_path(), errno);
          return false;
        }
        s.restarted = true;
        s.restart_reason = t.req.etag.empty() && t.req.last_modified.empty()
                               ? "the server ignored the range request"
                               : "the server sent the whole file (it changed or ignores ranges)";
        t.offset = 0;
        t.on_disk = 0;
      }
      t.total = clen > 0 ? static_cast<int64_t>(clen) : 0;
      if (!t.part_replaced.empty()) {
        s.restarted = true;
        s.restart_reason = t.part_replaced;
      }
    }
    struct stat there {};
    if (t.req.if_exists == IfExists::kSkip &&
        env_.fstatat(t.folder->fd(), base_name(t.download_path).c_str(), &there, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISREG(there.st_mode) && t.total > 0 && there.st_size == t.total) {
        t.forced_outcome = Outcome::kAlreadyThere;
        return false;
      }
      fail(t, "DestinationExists",
           t.download_path + " already exists and its size differs (if_exists is skip)");
      return false;
    }
    if (t.total > 0 && !has_room(t)) return false;
    s.download_path = t.download_path;
    s.total_bytes = t.total;
    s.etag = header("etag");
    s.last_modified = header("last-modified");
    observer_->on_started(t.req.job_id, t.req.attempt, s);
    return true;
  }

  // Free space for the rest of this file, counting what the other running downloads on the
  // same file system still need. False (with a DiskFull failure) when it does not fit.
  bool has_room(Transfer& t) {
    struct statvfs me {};
    if (env_.fstatvfs(t.file->fd(), &me) != 0) return true;  // cannot tell: let writes decide
    int64_t held = 0;
    for (auto& [id, other] : transfers_) {
      if (other.get() == &t || !other->file || other->total <= 0) continue;
      struct statvfs st {};
      if (env_.fstatvfs(other->file->fd(), &st) == 0 && st.f_fsid == me.f_fsid) {
        held += std::max<int64_t>(0, other->total - other->on_disk - static_cast<int64_t>(other->buf.size()));
      }
    }
    const int64_t need = t.total - t.offset;
    const int64_t avail = static_cast<int64_t>(me.f_bavail) * static_cast<int64_t>(me.f_frsize);
    if (need + held <= avail) return true;
    t.failure =
        Failure{.type = "DiskFull",
                .message = "not enough space for " + t.download_path + ": " + std::to_string(need) +
                           " more bytes needed, " + std::to_string(avail) + " free, " +
                           std::to_string(held) + " held for other running downloads",
                .disk = true};
    return false;
  }

  // The fetch ended by itself: the engine's own verdict (from decide or a write) comes first,
  // else the fetch's failure.
  void on_done(FetchId fid, std::optional<Failure> failure) override {
    auto f = by_fetch_.find(fid);
    if (f == by_fetch_.end()) return;
    auto it = transfers_.find(f->second);
    if (it == transfers_.end()) return;
    Transfer& t = *it->second;
    if (!t.failure && !t.complete_now && !t.forced_outcome && failure) t.failure = std::move(failure);
    if (t.failure && t.file && !t.failure->disk && !t.failure->restart_from_zero) {
      // Keep every byte that arrived: the retry resumes after them.
      auto failure = std::move(t.failure);
      t.failure.reset();
      flush(t);
      if (!t.failure) t.failure = std::move(failure);
    }
    if (!t.failure && !t.complete_now && !t.forced_outcome) {
      if (flush(t) && t.total > 0 && t.on_disk != t.total) {
        t.failure = Failure{.type = "IncompleteBody",
                            .message = where(t) + ": got " + std::to_string(t.on_disk) + " of " +
                                       std::to_string(t.total) + " bytes",
                            .retryable = true};
      }
    }
    auto tp = std::move(it->second);
    transfers_.erase(it);
    finish(std::move(tp));
  }

  void end_stopped(int64_t id) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;
    auto tp = std::move(it->second);
    transfers_.erase(it);
    if (tp->file && !tp->failure) flush(*tp);
    tp->failure.reset();
    tp->forced_outcome = Outcome::kStopped;
    finish(std::move(tp));
  }

  void finish(std::unique_ptr<Transfer> tp) {
    Transfer& t = *tp;
    if (t.fetch) {
      fetcher_.cancel(t.fetch);
      by_fetch_.erase(t.fetch);
    }
    Result res;
    res.download_path = t.download_path;
    res.file = t.file;
    res.bytes = t.on_disk;
    res.total_bytes = t.total;
    res.path_held = t.path_held;
    if (t.forced_outcome == Outcome::kStopped) {
      res.outcome = Outcome::kStopped;
    } else if (t.forced_outcome == Outcome::kAlreadyThere) {
      res.outcome = Outcome::kAlreadyThere;
      res.bytes = t.total;
    } else if (t.complete_now) {
      res.outcome = Outcome::kCompleted;
    } else if (t.failure) {
      res.outcome = Outcome::kFailed;
      res.failure = *t.failure;
    } else {
      res.outcome = Outcome::kCompleted;
    }
    observer_->on_finished(t.req.job_id, t.req.attempt, std::move(res));
    std::lock_guard lk(mu_);
    if (--outstanding_ == 0) idle_cv_.notify_all();
  }

  EngineOptions options_;
  util::Env& env_;
  Observer* observer_;
  PathRegistry* paths_;
  std::map<int64_t, std::unique_ptr<Transfer>> transfers_;  // fetcher thread only
  std::map<FetchId, int64_t> by_fetch_;                     // fetcher thread only: to job ids

  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<Request> pending_;
  std::vector<int64_t> stops_;
  bool stop_all_ = false;
  bool quit_ = false;
  int64_t outstanding_ = 0;
  Fetcher fetcher_;  // last: its thread calls into the members above
};

Engine::Engine(EngineOptions options, Observer* observer, PathRegistry* paths)
    : impl_(std::make_unique<Impl>(options, observer, paths)) {}
Engine::~Engine() = default;
void Engine::submit(Request request) { impl_->submit(std::move(request)); }
void Engine::stop(int64_t job_id) { impl_->stop(job_id); }
void Engine::stop_all() { impl_->stop_all(); }
void Engine::wait_idle() { impl_->wait_idle(); }

}  // namespace fetchq::transfer
