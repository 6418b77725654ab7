// Store: every read and change of job state and the event log, behind a narrow interface.
//
// The store knows SQL and nothing of HTTP. Changes that come from a transfer are conditional on
// the job still being in the state (and attempt) the transfer thinks it is in, so a late write
// can never bring a cancelled or paused job back. Implementations are thread-safe; transaction()
// groups several calls into one commit.
//
// Errors: open() returns its failures as a Result and never throws. Every Store method throws
// StoreError, and nothing else of the backend's, when the backend fails (busy past its timeout,
// an I/O error, a damaged file, a full disk); callers that must not throw (the queue's public
// methods and its threads) catch it. transaction() rolls back and lets whatever its body threw
// pass through unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fetchq/job.h"
#include "fetchq/result.h"

namespace fetchq::store {

// What kind of failure a StoreError is, so a caller can tell a passing one (busy) from the rest.
enum class StoreErrorKind {
  kBusy,        // another writer held the database past the busy timeout: try again later
  kIo,          // the file system refused a read or write, or the file cannot be opened
  kCorrupt,     // the database file is damaged or is no database
  kFull,        // the disk or the database is full
  kConstraint,  // a change broke a constraint of the schema (a bug, or a foreign writer)
  kOther,
};
std::string_view to_string(StoreErrorKind kind);

// The public error code of a kind: kBusy, kIo (the file system, a full disk) or kStorage.
constexpr ErrorCode code_of(StoreErrorKind kind) {
  switch (kind) {
    case StoreErrorKind::kBusy:
      return ErrorCode::kBusy;
    case StoreErrorKind::kIo:
    case StoreErrorKind::kFull:
      return ErrorCode::kIo;
    default:
      return ErrorCode::kStorage;
  }
}

// The one storage error, whatever the backend; what() is one line saying what failed. It is the
// public fetchq::StorageError (result.h) with the kind a store can tell.
class StoreError : public StorageError {
 public:
  StoreError(StoreErrorKind kind, const std::string& message)
      : StorageError(Error{code_of(kind), message}), kind_(kind) {}
  StoreErrorKind kind() const noexcept { return kind_; }

 private:
  StoreErrorKind kind_;
};

struct NewJob {
  DownloadRequest request;
  bool dest_is_dir = false;
  std::optional<std::string> download_path;  // known at once when dest names the file
  std::optional<std::string> url_password;   // split out of the URL; kept apart like a token
};

// One range of a segmented download: bytes [start, end) of the file, of which the first
// `durable` were fdatasync'd before the row holding them was committed, and the first `written`
// were written (not synced) by the job's last progress report; written >= durable.
struct Segment {
  int64_t start = 0;
  int64_t end = 0;
  int64_t durable = 0;
  int64_t written = 0;
  bool operator==(const Segment&) const = default;
};

// A job handed to a transfer, with what is needed to resume it.
struct ClaimedJob {
  Job job;
  int attempt = 0;  // equals job.attempts after the claim; guards every later update
  bool dest_is_dir = false;
  IfExists if_exists = IfExists::kError;
  std::optional<std::string> sha256;
  std::optional<std::string> access_token;
  std::optional<std::string> url_password;  // of the source's user info, which shows "***"
  int64_t checkpoint_bytes = 0;
  std::string checkpoint_boot_id;
  std::string etag;
  std::string last_modified;
  std::string validator_url;  // StartInfo::validator_url of the attempt that gave them
  int failures = 0;
  std::optional<int64_t> failing_since_ms;
  int64_t best_bytes = 0;
  std::optional<int64_t> sealed_bytes;
  // The .part the job created, nullopt when none was recorded.
  struct PartRecord {
    uint64_t dev = 0;
    uint64_t ino = 0;
    int64_t birth_ns = 0;  // creation time in ns; 0 when the file system keeps none
  };
  std::optional<PartRecord> part_identity;
  std::optional<int> connections;  // the job's own limit; nullopt: the daemon's default
  std::vector<Segment> segments;   // the segment map; empty when not segmented
  // The request headers to send, secret values included (job.headers shows them redacted).
  std::vector<RequestHeader> headers;
};

// What a transfer learnt from the response headers.
struct StartInfo {
  std::string download_path;
  int64_t total_bytes = 0;
  std::string etag;
  std::string last_modified;
  int64_t bytes = 0;  // bytes on disk when the body started
  // The sha256 the server stated and the header it came from ("" when none); the job checks it
  // when the user gave none (see set_started).
  std::string server_sha256;
  std::string server_sha256_from;
  // The mirror that gave etag and last_modified (as DownloadOptions::mirrors holds it); "": the
  // job's own URL.
  std::string validator_url;
};

struct Finish {
  JobStatus status = JobStatus::kCompleted;
  int64_t bytes = 0;
  int64_t total_bytes = -1;  // -1: leave as is
  std::optional<std::string> error_type;
  std::optional<std::string> error;
};

// A job removed by prune, so the caller can remove what it left on disk.
struct PrunedJob {
  int64_t id = 0;
  JobStatus status = JobStatus::kCompleted;
  std::optional<std::string> download_path;
  std::optional<ClaimedJob::PartRecord> part;  // the .part the job created, if recorded
};

// What a commit must survive.
enum class Commit {
  kDurable,    // a power cut or an OS crash: the commit waits for the disk
  kCrashSafe,  // a crash of the process only. A power cut may lose it (and the crash-safe
               // commits after the last durable one), never a part of it: what is left is the
               // store as of an earlier commit. For records a new boot does not trust anyway
               // (progress, what the page cache holds), written often. A power cut may lose
               // the events of such commits with their seqs: see kMaxUnsyncedEvents.
};

// A new boot would give again the seqs of events lost with crash-safe commits, and a reader
// that saw one of them would miss the new event. So the store's user keeps at most this many
// events in the crash-safe commits after its last durable one, and a store that starts in a new
// boot skips this many seqs first (fence_events): no seq a reader saw is ever given again.
inline constexpr int64_t kMaxUnsyncedEvents = 10000;

class Store {
 public:
  virtual ~Store() = default;

  // Runs body inside one transaction; commits at the end, rolls back if body throws. Inside
  // another transaction, body joins it and the outer one's commit decides.
  virtual void transaction(const std::function<void()>& body, Commit commit) = 0;
  void transaction(const std::function<void()>& body) { transaction(body, Commit::kDurable); }

  virtual std::vector<Job> insert_jobs(const std::vector<NewJob>& jobs, const std::string& now) = 0;
  // Moves up to n waiting jobs, by (priority, id), whose retry time has come, to running; with
  // `only` (sorted ascending), only jobs among those ids.
  virtual std::vector<ClaimedJob> claim(int n, int64_t now_ms,
                                        const std::optional<std::vector<int64_t>>& only,
                                        const std::string& now) = 0;
  // Earliest retry time (unix ms) of a waiting job that is not yet due, if any.
  virtual std::optional<int64_t> next_retry_ms(int64_t now_ms) = 0;
  // Jobs a crash left running go back to waiting; returns how many.
  virtual int64_t recover_running() = 0;
  // Called as a queue starts, with this boot's id. When events were last appended in another
  // boot (or that is not known and there may have been some), the next event's seq comes
  // kMaxUnsyncedEvents after the last one: past any seq that a power cut can have taken back.
  // Notes this boot. A durable commit of its own.
  virtual void fence_events(const std::string& boot_id) = 0;

  // What the attempt's response said (path, size, validators). Conditional on the attempt, in
  // every status where set_checkpoint records its offsets too (a pause in the same batch keeps
  // them beside this attempt's validator); false when the job moved on or ended.
  virtual bool set_started(int64_t id, int attempt, const StartInfo& info) = 0;
  // Conditional on status running and the given attempt; false when the job moved on.
  virtual bool set_progress(int64_t id, int attempt, int64_t bytes, int64_t total_bytes) = 0;
  virtual bool finish(int64_t id, int attempt, const Finish& finish, const std::string& now) = 0;
  // Back to waiting until not_before_ms (a passing failure or a shutdown).
  // failing_since_ms: when the current run of failures began, nullopt when there is none.
  virtual bool requeue(int64_t id, int attempt, int64_t not_before_ms, int failures,
                       std::optional<int64_t> failing_since_ms, std::optional<std::string> error_type,
                       std::optional<std::string> error) = 0;
  // Raises the job's high-water mark of bytes reached.
  virtual void note_best_bytes(int64_t id, int64_t bytes) = 0;
  // Records bytes known to be on disk. Conditional on the attempt only: a paused or shut-down
  // job keeps its checkpoint too.
  virtual bool set_checkpoint(int64_t id, int attempt, int64_t bytes, const std::string& boot_id) = 0;
  // Records a finished, synced .part about to be renamed into place (see sealed_bytes).
  virtual bool seal(int64_t id, int attempt, const std::string& download_path, int64_t bytes,
                    const std::string& boot_id) = 0;
  // Records a .part just created for the job at download_path + ".part": its identity, and that
  // it holds nothing yet. Durable against a crash of the process when it returns true; false
  // when the job is no longer running (or paused) at that attempt.
  virtual bool record_part(int64_t id, int attempt, const std::string& download_path, uint64_t dev,
                           uint64_t ino, int64_t birth_ns) = 0;
  // Forgets the resume state (the file is started again from zero), the segment map with it.
  virtual void reset_resume_state(int64_t id) = 0;
  // A sync of the job's .part failed: what was written since the last checkpoint may be lost,
  // from this boot's page cache too. Progress goes back to the checkpoint, each segment's written
  // bytes to its durable ones, and a rerun keeps no more than they promise, as after a reboot.
  // Conditional on the attempt or a later one (claimed meanwhile, not begun yet) and on a status
  // set_checkpoint allows; false otherwise.
  virtual bool forget_unsynced(int64_t id, int attempt) = 0;
  // Replaces the job's segment map (ordered by start). Conditional on the attempt like
  // set_checkpoint; call it in the checkpoint's transaction, after the .part was synced.
  virtual bool save_segments(int64_t id, int attempt, const std::vector<Segment>& segments) = 0;
  // Records what each segment has written by a progress report (`written` of each; `durable` is
  // ignored). The map takes the given ranges, each keeping the durable bytes of the last
  // checkpoint that fall in it. Conditional on the attempt and status running; false otherwise.
  virtual bool note_segments_written(int64_t id, int attempt,
                                     const std::vector<Segment>& segments) = 0;
  // The job's segment map by start; empty when it has none.
  virtual std::vector<Segment> load_segments(int64_t id) = 0;
  // Drops the job's segment map (completed, cancelled, restarted whole or on one connection).
  virtual void forget_segments(int64_t id) = 0;

  // User decisions. Each returns true when the job was in one of `from` and now is in `to`.
  virtual bool change_status(int64_t id, const std::vector<JobStatus>& from, JobStatus to,
                             const std::string& now) = 0;
  // Points the job at another source when its status is one of `from`: the shown URL, and its
  // password kept apart as at insert (none: the old one is dropped), its failures and back-off
  // cleared. The bytes so far stay for the next attempt to check with If-Range when the job has
  // a validator the engine sends (a strong ETag or Last-Modified); without one its resume state
  // is reset, as nothing could tell the new source's file from the old.
  enum class SourceChange { kNotInStatus, kBytesKept, kFromZero };
  virtual SourceChange set_source(int64_t id, const std::vector<JobStatus>& from,
                                  const std::string& source,
                                  const std::optional<std::string>& url_password) = 0;
  // Whether a token or secret headers are kept for the job.
  virtual bool has_secrets(int64_t id) = 0;

  // The job's own bandwidth limit (0: none). False when there is no such job.
  virtual bool set_limit_rate(int64_t id, int64_t bytes_per_second) = 0;
  virtual std::optional<Job> get_job(int64_t id) = 0;
  // The identity of the .part the job created (record_part), nullopt when none is recorded
  // or there is no such job.
  virtual std::optional<ClaimedJob::PartRecord> part_record(int64_t id) = 0;
  virtual std::vector<Job> list_jobs(const ListFilter& filter) = 0;
  virtual StatusCounts counts() = 0;
  // Whether any job among ids (all when empty) is waiting or running.
  virtual bool any_unfinished(const std::vector<int64_t>& ids) = 0;
  virtual std::vector<int64_t> ids_in(const std::vector<JobStatus>& statuses) = 0;
  // The waiting, running or paused jobs whose source is one of `sources`: their id, source and
  // dest (what a new submission is compared with), in one pass over the live jobs.
  struct LiveTarget {
    int64_t id = 0;
    std::string source, dest;
  };
  virtual std::vector<LiveTarget> live_targets(const std::vector<std::string>& sources) = 0;
  // Removes the jobs that ended (those the filter names), with their tokens and their events.
  virtual std::vector<PrunedJob> prune(const PruneFilter& filter, const std::string& now) = 0;

  virtual int64_t append_event(int64_t job_id, const std::string& type, const std::string& payload,
                               const std::string& ts) = 0;
  virtual std::vector<Event> events_since(int64_t since, int64_t limit,
                                          std::optional<int64_t> job_id) = 0;
  // The seq of the newest event ever written (0 when none), even if it was removed since, or the
  // last seq fence_events skipped.
  virtual int64_t last_event_seq() = 0;
  // The oldest seq still kept; last_event_seq() + 1 when the log is empty. Events before it
  // were removed by prune or trim_events.
  virtual int64_t first_event_seq() = 0;
  // Removes the oldest events so that none older than the newest `keep` sequence numbers stay
  // (the seqs fence_events skipped are not counted), at most `batch` rows at a time (so one call
  // never holds the write lock for long). Returns how many were removed.
  virtual int64_t trim_events(int64_t keep, int64_t batch) = 0;
};

struct OpenOptions {
  bool read_only = false;  // reads only, never writes a byte, takes no lock
  bool create = true;      // a read-write open creates a missing database
};

// Where a store spec points. The one parser of specs: fetchqd's --db, `fetchq get --state` and
// the CLI's --db all go through locate() (or open(), which calls it), so they accept and refuse
// the same things:
//   PATH                        an SQLite file (see store/sqlite/sqlite_store.h)
//   sqlite:PATH                 the same; PATH may be relative ("sqlite:q.db") or absolute
//   sqlite:///ABSOLUTE/PATH     the same, in URL form
//   postgresql://... postgres://...   refused: no PostgreSQL store is built in yet
//   NAME:...                    refused when NAME looks like a scheme (a letter, then letters,
//                               digits, '+' or '-'; or anything before "://"): write ./NAME:...
//                               or sqlite:NAME:... for a file of that name
// Refusals are kInvalidArgument (a usage error) and never repeat the spec, which may carry a
// password.
enum class StoreKind { kSqlite };

struct Location {
  StoreKind kind = StoreKind::kSqlite;
  std::string path;  // the SQLite file, as given (relative paths stay relative)
};

Result<Location> locate(const std::string& spec);

// Opens the store that `spec` names (see locate), and is the one way in for the queue, fetchqd,
// `fetchq get` and `fetchq --db` alike.
Result<std::unique_ptr<Store>> open(const std::string& spec, OpenOptions options = {});
Result<std::unique_ptr<Store>> open(const Location& location, OpenOptions options = {});

}  // namespace fetchq::store
