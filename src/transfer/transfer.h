// The values the transfer engine takes and reports: it knows libcurl and files, nothing of SQL.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetchq/job.h"
#include "util/env.h"

namespace fetchq::transfer {

// Which file a .part is: recorded when the job creates it, checked before it is used again.
// The inode number alone is not enough: file systems such as ext4 give a freed number to the
// next file made, so a file put in the .part's place may carry it. The birth time tells them
// apart where the file system keeps one (ext4, XFS, btrfs, tmpfs); 0 when it does not.
struct PartIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  int64_t birth_ns = 0;
};

// One byte range of a segmented download as a checkpoint records it: [start, end) of the file,
// the first `done` bytes of it written to the .part.
struct SegmentSpan {
  int64_t start = 0;
  int64_t end = 0;
  int64_t done = 0;
};

// What a transfer needs to run one attempt of a job.
struct Request {
  int64_t job_id = 0;
  int attempt = 0;
  std::string url;
  // Other sources of the same file (no user info; on url's origin when the job holds secrets).
  // A segmented transfer spreads its ranges over those that pass a check (see Engine); the
  // first request goes to the next one when `url` fails before a byte arrives.
  std::vector<std::string> mirrors;
  std::string dest;
  bool dest_is_dir = false;
  IfExists if_exists = IfExists::kError;
  std::optional<std::string> download_path;  // chosen already (file dest, or an earlier attempt)
  int64_t offset = 0;                        // most bytes of the .part to keep; the rest is asked with Range
  // The .part this job created (recorded durably at creation). Without it an existing .part
  // is never used, unless legacy_part: a job from before identities were recorded, whose
  // checkpoint promised bytes in it (then it is trusted when it is a single-link regular file).
  std::optional<PartIdentity> part_identity;
  bool legacy_part = false;
  // Connections this file may use at once (1..16); nullopt: EngineOptions::connections.
  std::optional<int> connections;
  // The job's own limit in bytes per second over all its connections; 0: none.
  int64_t rate_limit = 0;
  // A sha256 is checked before the file is kept: the file is hashed as it is written (see
  // PrefixHash), so the check reads only the rest. A digest the server states does the same.
  bool verify_sha256 = false;
  // The segment map of the last checkpoint (done: bytes synced). Non-empty: `offset` is the
  // file's whole size, so the preallocated .part is kept as it is, and each segment resumes
  // from its own durable offset; when that cannot be (another .part, no validator), the
  // transfer resumes from the map's gap-free prefix instead.
  std::vector<SegmentSpan> segments;
  // confined: the job must stay beneath `root` (a download root, "" when none holds the path):
  // its folders are opened from the root down, never through a symbolic link, at every attempt.
  bool confined = false;
  std::string root;
  int64_t expected_total = 0;                // size an earlier attempt announced; 0 when unknown
  std::string etag;                          // validators for If-Range
  std::string last_modified;
  // The mirror (one of `mirrors`) that gave etag and last_modified; "": `url`. A resume asks it
  // first, and falls back to `url`, from byte 0, when it fails before answering.
  std::string validator_url;
  std::optional<std::string> access_token;
  // The URL's user info, given to libcurl apart from `url` (which then holds none), so that no
  // message built from the URL carries the password.
  std::string username;
  std::optional<std::string> password;
  // The job's own request headers and User-Agent, sent with every fetch of the transfer.
  std::vector<RequestHeader> headers;
  std::optional<std::string> user_agent;
};

// An open folder descriptor: every open, rename and fsync of a download happens relative to
// it, so a folder swapped for a link after it was opened changes nothing.
class Folder {
 public:
  explicit Folder(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~Folder() {
    if (fd_ >= 0) ::close(fd_);
  }
  Folder(const Folder&) = delete;
  Folder& operator=(const Folder&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// The open .part file; shared with the durability thread, which syncs it while the transfer
// goes on. The descriptor closes when the last owner lets go.
class PrefixHash;

class PartFile {
 public:
  // fd was opened just before: files get their opened_order() in the order they were opened.
  // dev: the file system it is on, when the opener stat'ed it already. fresh: the opener made
  // it empty, so every byte in it was written through fd (or a later descriptor).
  PartFile(int fd, std::string final_path, std::shared_ptr<Folder> folder,
           std::optional<dev_t> dev = std::nullopt, bool fresh = false)
      : fd_(fd),
        final_path_(std::move(final_path)),
        folder_(std::move(folder)),
        opened_order_(next_order()),
        dev_(dev),
        fresh_(fresh) {}
  ~PartFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;
  int fd() const { return fd_; }
  const std::string& final_path() const { return final_path_; }
  std::string part_path() const { return final_path_ + ".part"; }
  // The folder holding both names, and the names in it.
  const Folder& folder() const { return *folder_; }
  std::string final_name() const { return final_path_.substr(final_path_.find_last_of('/') + 1); }
  std::string part_name() const { return final_name() + ".part"; }
  // Smaller for a file opened earlier (in this process). A syncfs through the earliest of some
  // files reports the writeback errors of all of them (see util::syncfs_reports_errors).
  uint64_t opened_order() const { return opened_order_; }
  const std::optional<dev_t>& dev() const { return dev_; }
  bool fresh() const { return fresh_; }
  // The file was never named (an O_TMPFILE finished before its record was answered): it has
  // neither its .part name nor any other until the settle step links it to its final name.
  // keep_unnamed: the transfer thread, before the file is handed on; set_named: the settle or
  // the loop thread, which holds the file then, when it gives it its .part name after all
  // (PartFile moves between threads only through locked queues).
  bool unnamed() const { return unnamed_; }
  void keep_unnamed() { unnamed_ = true; }
  void set_named() { unnamed_ = false; }  // given its .part name after all
  // Makes what was written through the descriptor durable: fdatasync, or fsync when `full`.
  // Returns 0, or the errno of this sync or of one that failed before. The kernel reports a
  // write-back error once per descriptor, and a later sync through it succeeds without the
  // bytes that were lost: after one failure no sync proves anything (sync_failed), and the
  // syncs of one file go one at a time, so no caller is told all went well while another one
  // holds the error. Any thread.
  int sync(util::Env& env, bool full = false) const {
    std::lock_guard lk(sync_mu_);
    if (const int err = sync_error(); err != 0) return err;
    if ((full ? env.fsync(fd_) : env.fdatasync(fd_)) == 0) return 0;
    sync_failed(errno);  // EIO when errno says nothing
    return sync_error();
  }
  // A sync of the file failed with err (the first failure is kept). From then on nothing
  // written through it may be promised, and it is not whole; a new attempt opens the file
  // again and writes after its last promised byte.
  void sync_failed(int err) const {
    int none = 0;
    sync_error_.compare_exchange_strong(none, err != 0 ? err : EIO);
  }
  int sync_error() const { return sync_error_.load(); }

 private:
  static uint64_t next_order() {
    static std::atomic<uint64_t> last{0};
    return ++last;
  }

  int fd_;
  std::string final_path_;
  std::shared_ptr<Folder> folder_;
  uint64_t opened_order_;
  std::optional<dev_t> dev_;
  bool fresh_;
  bool unnamed_ = false;
  mutable std::atomic<int> sync_error_{0};
  mutable std::mutex sync_mu_;
};

// Reported once the response headers are in and the body is about to be written.
struct Started {
  std::string download_path;
  int64_t total_bytes = 0;  // 0: unknown
  std::string etag;
  std::string last_modified;
  int64_t from_bytes = 0;  // resumed from here (206), 0 when the body starts from the beginning
  // The file's sha256 (hex) as the response stated it (server_digest), and the header it came
  // from; empty when it stated none.
  std::string server_sha256;
  std::string server_sha256_from;
  std::string validator_url;  // the mirror that answered (Request::validator_url); "": the URL
  bool restarted = false;  // asked for a range, got the whole body: the .part was truncated
  std::string restart_reason;
};

enum class Outcome {
  kCompleted,     // every byte is in the .part (not yet synced or renamed)
  kAlreadyThere,  // if_exists=skip and the existing file has the announced size
  kFailed,
  kStopped,       // stop() was called; the .part holds `bytes`
};

// Built with named fields: Failure{.type = "...", .message = "...", .retryable = true}.
struct Failure {
  std::string type{};     // error_type, e.g. "HTTPError(404 Not Found)"
  std::string message{};  // what failed and where
  bool retryable = false;
  std::optional<int64_t> retry_after_ms{};  // from Retry-After
  bool restart_from_zero = false;         // the next attempt must not resume (the file changed)
  bool disk = false;                      // the local disk failed, not the network
};

// "DiskFull" for ENOSPC and EDQUOT, else "DiskError"; the message names the step, path and cause.
Failure disk_failure(const std::string& step, const std::string& path, int err);

// Gives a file that was never named (PartFile::unnamed) its .part name, in the folder it was
// made in; never replaces a file there. 0, or the errno of the link (EEXIST: the name is taken).
int name_as_part(util::Env& env, PartFile& file);

struct Result {
  Outcome outcome = Outcome::kFailed;
  int64_t bytes = 0;        // bytes written to the .part (or the existing file's size)
  int64_t total_bytes = 0;  // as announced; 0 when unknown
  std::string download_path;
  std::shared_ptr<PartFile> file;  // null when nothing was opened
  // False for a request stopped while it waited for a slot (EngineOptions::max_transfers):
  // nothing of the job's was looked at, its .part (if any) was not checked to be its own.
  bool begun = true;
  Failure failure;
  bool path_held = false;   // download_path is claimed in the PathRegistry; the caller releases it
  // A segmented transfer's map as it ended (done: written, not synced); empty otherwise. With
  // `bytes` (the gap-free prefix), what a stop may promise once the .part is synced.
  std::vector<SegmentSpan> segments;
  // The file's hash as far as it was taken while it downloaded; null when none was taken.
  std::shared_ptr<PrefixHash> prefix_hash;
};

// "scheme://host:port" of a URL (lower case, the port written out), "" when it is not a URL:
// the host a job's secrets may be sent to, and what a server's connection limit is kept by.
std::string url_origin(const std::string& url);

// The sha256 of the whole file a server states, as lower-case hex, and the header that says it:
// `Repr-Digest: sha-256=:BASE64:` (RFC 9530), `Digest: SHA-256=BASE64` (RFC 3230), or Hugging
// Face's `X-Linked-Etag: "HEX"` (64 hex digits: an LFS file's sha256; 40 are a git blob id and
// say nothing) when its `X-Linked-Size` is absent or equals `total`. Headers by lower-case name.
struct ServerDigest {
  std::string sha256;
  std::string from;
};
std::optional<ServerDigest> server_digest(const std::map<std::string, std::string>& headers,
                                          int64_t total);

// Reason phrase of a status code from the standard table (never the server's).
std::string_view reason_phrase(long code);
// Passing HTTP failures, worth a retry: 408, 429, 500, 502, 503, 504.
bool is_retryable_status(long code);
// Longest Retry-After taken as it is; larger values (or overflowing ones) are cut to this.
inline constexpr int64_t kMaxRetryAfterMs = int64_t{30} * 24 * 3600 * 1000;
// Retry-After as seconds or an HTTP date, in ms from now; nullopt when absent or unreadable.
std::optional<int64_t> parse_retry_after(const std::string& value, int64_t now_unix_ms);
// "bytes A-B/T" or "bytes */T": start (or -1 for '*') and total (or -1 for '*').
bool parse_content_range(const std::string& value, int64_t* start, int64_t* total);
// The same, with the last byte of the range (-1 for '*').
bool parse_content_range(const std::string& value, int64_t* start, int64_t* end, int64_t* total);

// Whether a Content-Length value (RFC 9110 8.6) names one length: a decimal that fits, or a
// list of the same one; with `before` (an earlier Content-Length line of the same response),
// the same length as that too. Anything else leaves the body's end unknown (RFC 9112 6.3).
bool content_length_agrees(std::string_view value, const std::string* before);

// The validator a range is guarded by (If-Range): a strong ETag, else Last-Modified; "" when
// there is neither (a weak ETag names no bytes).
std::string if_range_validator(const std::string& etag, const std::string& last_modified);
// Whether an answer to a range sent with If-Range `sent` names another version of the file: a
// strong ETag other than the one sent, or, when a date was sent, another Last-Modified. A
// server that ignores If-Range answers a changed file's range with a 206 of the new bytes; an
// answer that names no validator of the kind sent says nothing either way.
bool names_another_version(const std::string& sent, const std::string& etag,
                           const std::string& last_modified);

}  // namespace fetchq::transfer
