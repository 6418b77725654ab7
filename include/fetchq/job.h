// The job as users see it: its status, options and the JSON shape fixed by SPEC.md.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetchq/export.h"

namespace fetchq {

enum class JobStatus { kWaiting, kRunning, kPaused, kCompleted, kCancelled, kError };

FETCHQ_API std::string_view to_string(JobStatus status);
FETCHQ_API std::optional<JobStatus> parse_job_status(std::string_view text);
// completed, cancelled and error: nothing more happens to the job unless a user retries it.
FETCHQ_API bool is_terminal(JobStatus status);

// What to do when a file already exists at the job's download path.
enum class IfExists { kError, kSkip, kOverwrite, kRename };
FETCHQ_API std::string_view to_string(IfExists policy);
FETCHQ_API std::optional<IfExists> parse_if_exists(std::string_view text);

// A request header a job sends with every request of its transfer: `name: value`.
struct RequestHeader {
  std::string name;
  std::string value;
  bool operator==(const RequestHeader&) const = default;
};

// Authorization, Proxy-Authorization and Cookie (in any case): their values are secrets, kept
// apart like an access token and never listed, shown, logged or put in events.
FETCHQ_API bool is_secret_header(std::string_view name);
// What a job shows of a header: "Name: value", or "Name: <secret>" for a secret one.
FETCHQ_API std::string shown_header(const RequestHeader& header);

struct DownloadOptions {
  int priority = 10;                         // lower runs first
  std::optional<std::string> access_token;   // sent as a Bearer token to the original host only
  std::optional<std::string> sha256;         // lower-case hex; checked before the file is renamed into place
  IfExists if_exists = IfExists::kError;
  // Connections for one file (1..16): a big file on a server that takes ranges is fetched in
  // that many segments at once. nullopt: the daemon's default (setting `connections`).
  std::optional<int> connections;
  // Sent with every request of the job (the probe, each segment, each resume). Checked by
  // queue::check_header: the engine's own headers (Range, If-Range, ...) cannot be set.
  std::vector<RequestHeader> headers;
  std::optional<std::string> user_agent;  // nullopt: fetchq's own ("fetchq/VERSION")
  // The job's own bandwidth limit in bytes per second, over all its connections; 0: none (the
  // daemon's limit for the whole queue applies either way; the tighter holds).
  int64_t limit_rate = 0;
  // Other sources of the same file, tried besides `source`: URLs without user info, at most
  // queue::kMaxMirrors, none equal to the source or to another. When the job holds a secret (an
  // access token, a password in the source URL, any request header), only mirrors on the
  // source's origin are taken, since secrets are never sent to another host.
  std::vector<std::string> mirrors;
};

// One submission: a URL and where it goes.
struct DownloadRequest {
  std::string source;
  std::string dest;  // absolute: an existing folder, a path ending in '/', or the file's own path
  DownloadOptions options;
  // false: a request whose source and dest equal a waiting, running or paused job's (or an
  // earlier request's of the same batch) gets that job back, marked duplicate_of, instead of a
  // second job that would fail on the same file.
  bool allow_duplicate = false;
};

// Listing and counting jobs: plain values shared by DownloadQueue (fetchq/queue.h) and the store
// below it, so the store needs nothing of the queue's header.
struct ListFilter {
  std::optional<JobStatus> status;
  int64_t after_id = 0;
  int64_t limit = -1;  // -1: all
};

// Which ended jobs prune_jobs removes: those in `statuses` (every ended status when empty) that
// ended before `ended_before` (ISO 8601 UTC, as job_ended is written; any time when unset).
struct PruneFilter {
  std::vector<JobStatus> statuses;
  std::optional<std::string> ended_before;
  std::vector<int64_t> keep;  // ids never removed, whatever their status and age
};

// How many jobs are in each status, as the store counts them.
struct StatusCounts {
  int64_t waiting = 0, running = 0, paused = 0, completed = 0, cancelled = 0, error = 0;
};

// How fast one job in the engine is going, as DownloadQueue::stats() measures it.
struct JobRate {
  int64_t id = 0;
  double bytes_per_second = 0;
};

// DownloadQueue::stats(): the store's counts, with what only a running queue knows.
struct QueueStats : StatusCounts {
  double bytes_per_second = 0;
  double uptime_seconds = 0;
  std::vector<JobRate> job_rates;  // the jobs in the engine, by id
};

// One segment of a file fetched over several connections: bytes [start, end), of which `bytes`
// (from start) were synced at the last checkpoint.
struct JobSegment {
  int64_t start = 0;
  int64_t end = 0;
  int64_t bytes = 0;
  bool operator==(const JobSegment&) const = default;
};

struct Job {
  int64_t id = 0;
  std::string source;
  std::string dest;
  int priority = 10;
  JobStatus status = JobStatus::kWaiting;
  std::optional<std::string> download_path;
  std::optional<std::string> job_started;  // ISO 8601 UTC with milliseconds
  std::optional<std::string> job_ended;
  int64_t bytes = 0;
  int64_t total_bytes = 0;
  std::optional<std::string> error_type;
  std::optional<std::string> error;
  bool cancelled = false;
  int attempts = 0;
  bool has_access_token = false;
  std::string created_at;
  // The job's own bandwidth limit (DownloadOptions::limit_rate); in JSON only when set.
  int64_t limit_rate = 0;
  // Only in the answer to a submission that matched a live job (DownloadRequest::allow_duplicate):
  // that job's id. Not stored; shown as "duplicate_of" when set.
  std::optional<int64_t> duplicate_of;
  // While the file is fetched in segments (get_job / show only; lists leave it empty). In JSON
  // only when non-empty.
  std::vector<JobSegment> segments;
  // The job's request headers as shown_header gives them (secret values are "<secret>"), and its
  // own User-Agent (null: fetchq's).
  std::vector<std::string> headers;
  std::optional<std::string> user_agent;
  // The job's mirrors (DownloadOptions::mirrors), in the order given.
  std::vector<std::string> mirrors;
  // The sha256 the file is checked against before it is kept, and where it came from: null for
  // the user's --sha256, else the server's header ("Repr-Digest", "Digest", "X-Linked-Etag").
  std::optional<std::string> sha256;
  std::optional<std::string> sha256_from;
};

// The SPEC's JSON object for a job; never carries the token.
FETCHQ_API void to_json(nlohmann::json& out, const Job& job);
// Appends the same object as text: byte for byte what nlohmann::json(job).dump() gives (keys
// in order, invalid UTF-8 replaced by U+FFFD), without building the object first. Answers that
// list thousands of jobs spent most of their time building and freeing those objects.
FETCHQ_API void append_json(std::string& out, const Job& job);

// An entry of the append-only event log.
struct Event {
  int64_t seq = 0;
  std::string ts;
  int64_t job_id = 0;
  std::string type;
  std::string payload;  // a JSON object, as stored
};

// `{"seq", "ts", "job_id", "type", ...payload}` as `fetchq events --json` prints it.
FETCHQ_API void to_json(nlohmann::json& out, const Event& event);

// ---- Reading the JSON shapes back (the control client). Fields missing from `in` keep their
// defaults; null leaves an optional empty. Throws nlohmann::json::exception when a field has
// the wrong type, and for an unknown status (clients check answers where they read them).
FETCHQ_API void from_json(const nlohmann::json& in, Job& job);
// The payload is every field but seq, ts, job_id and type, as a JSON object's text.
FETCHQ_API void from_json(const nlohmann::json& in, Event& event);

}  // namespace fetchq
