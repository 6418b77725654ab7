// DownloadQueue: the persistent download queue, embeddable in any program.
//
// Jobs live in an SQLite file and survive crashes, restarts and reboots. A queue runs up to
// max_parallel transfers on one libcurl thread; fsync and database commits happen on a
// durability thread; callbacks run on a thread of their own, so a slow or throwing callback
// never stalls a download. All public methods are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fetchq/job.h"  // Job, DownloadRequest, ListFilter, QueueStats
#include "fetchq/result.h"

namespace fetchq {

struct Callbacks {
  std::function<void(const Job&)> on_start;
  std::function<void(const Job&)> on_progress;
  std::function<void(const Job&)> on_complete;
  std::function<void(const Job&)> on_error;
  std::function<void(const Job&)> on_cancelled;
  std::function<void(const Job&)> on_paused;
};

// A token given to every job whose URL matches, unless the job brings its own. The pattern is
// a host name ("example.org") or a suffix ("*.example.org", which matches the subdomains only),
// compared with the URL's host alone, never with its path or query, and applied to https URLs
// only; or "https://host[:port]"; or "http://host:port", the one way to send a rule token over
// plain http, to that exact scheme, host and port (queue::check_token_rule_pattern).
struct TokenRule {
  std::string host_pattern;
  std::string token;
};

struct QueueOptions {
  std::string db_path;
  int max_parallel = 5;
  std::chrono::milliseconds checkpoint_interval{2000};
  std::chrono::milliseconds progress_interval{1000};
  std::chrono::milliseconds connect_timeout{30000};
  std::chrono::milliseconds stall_timeout{30000};  // no byte for this long: drop and retry
  int max_attempts = 8;                            // passing failures in a row without progress
  std::chrono::milliseconds give_up_after{3600 * 1000};  // failing this long without progress: error
  std::chrono::milliseconds retry_base_delay{1000};
  std::chrono::milliseconds retry_max_delay{60000};
  // Segmented downloads: a file of at least segment_threshold bytes, from a server that takes
  // ranges and names a validator (strong ETag or Last-Modified), is fetched over `connections`
  // connections at once (a job's own DownloadOptions::connections wins; 1: one connection), in
  // segments no smaller than segment_min_size.
  // 0, the default: adaptive. The file starts over one connection; after 150 ms
  // max_connections_per_host connections are tried for as long, and they stay only when they
  // made at least 25% more than the one (the server caps each connection); otherwise (the link is
  // the limit) the file goes on over one. When the 16 made more but shared one limit (less than
  // half of 16 times what one made), fewer are measured and kept unless the 16 made 5% more.
  int connections = 0;
  int max_connections_per_host = 16;
  // Connections of every transfer together; 0: no limit. Past it, or past
  // max_connections_per_host to one host across all jobs, extra connections of a segmented
  // file wait for room (every running job keeps its first).
  int max_connections = 0;
  int64_t segment_threshold = int64_t{16} << 20;
  int64_t segment_min_size = int64_t{1} << 20;
  // Bytes per second over every transfer of the queue together, all connections of all jobs
  // (0: no limit); set_rate_limit changes it while the queue runs. A job's own limit
  // (DownloadOptions::limit_rate) applies as well: the tighter holds for that job.
  int64_t rate_limit = 0;
  // When set, only these jobs are ever claimed (`fetchq get` leaves other jobs of its state
  // file), and those DownloadQueue::allow_jobs adds.
  std::optional<std::vector<int64_t>> only_jobs;
  // When non-empty, destinations must lie under one of these folders (symbolic links resolved).
  std::vector<std::string> download_roots;
  // Refuse to connect to loopback, private and link-local addresses (169.254.169.254 included),
  // checked on every address actually connected to, so redirects and DNS cannot get round it.
  bool block_private_addresses = false;
  std::vector<TokenRule> token_rules;
  // A PEM file of CA certificates to trust instead of the system's, for a private CA. Certificate
  // and host name checks stay on: there is no way to turn them off. Empty: the system's CAs.
  // A missing or unreadable file makes open() fail.
  std::string ca_cert;
  // A proxy for every transfer ("http://[user:password@]host:port", "socks5h://...", as libcurl
  // takes it). Empty: libcurl reads http_proxy, https_proxy, ALL_PROXY and no_proxy from the
  // environment. It may hold a password and is never logged.
  std::string proxy;
  // When at least this many finished files on one filesystem are settled together, one syncfs()
  // writes them all out (one journal commit, one cache flush). On Linux 5.8 and later, on ext4,
  // XFS or Btrfs, it also reports the writeback errors of every one of them (it is called through
  // the file opened first), and nothing more is done per file but for resumed ones; elsewhere,
  // the fdatasync of each file that follows
  // finds nothing left to write but still reports that file's own errors. Fewer files get an
  // fsync each. 0: always fsync each file.
  int syncfs_from = 2;
  // Events kept in the log: those among the newest event_retention sequence numbers (older ones
  // are removed now and then, in small batches). 0: keep every event. Pruning a job removes
  // its events whatever this says.
  int64_t event_retention = 1000000;
  Callbacks callbacks;
  // Called on the queue's own thread after every commit that changed jobs or events. Must be
  // quick and must not call back into the queue; servers use it to wake their waiters.
  std::function<void()> on_change;
  // Called on the queue's own threads each time a store call of theirs fails (another process
  // holds the database's write lock past the busy timeout, an I/O error, a damaged file), with
  // the error (kBusy, kIo or kStorage). The queue itself keeps trying; a caller that would rather
  // stop, as `fetchq get` does, can shut the queue down. When set, the queue logs these failures
  // at debug level only, leaving their report to the hook. Must be quick and must not call back
  // into the queue.
  std::function<void(const Error&)> on_store_error;
};

// Errors: the calls that return a Result report every failure in it and never throw. The calls
// that return a plain value (list_jobs, id_to_job, cancel_all_jobs, prune_jobs, join, stats,
// events_since, last_event_seq, first_event_seq) throw StorageError (result.h) when the
// database fails, and nothing else. The queue's own threads never let a failure end them.
class FETCHQ_API DownloadQueue {
 public:
  // Opens (or creates) the database, recovers jobs left running by a crash and starts the
  // threads. Fails with kBusy when another live process runs a queue on the same file.
  static Result<std::unique_ptr<DownloadQueue>> open(QueueOptions options);
  virtual ~DownloadQueue() = default;

  virtual Result<Job> download(const DownloadRequest& request) = 0;
  // All or nothing: one invalid entry rejects the whole batch.
  virtual Result<std::vector<Job>> download_batch(const std::vector<DownloadRequest>& requests) = 0;
  virtual std::vector<Job> list_jobs(const ListFilter& filter = {}) = 0;
  virtual std::optional<Job> id_to_job(int64_t id) = 0;
  virtual Result<Job> cancel_job(int64_t id) = 0;
  virtual Result<Job> pause_job(int64_t id) = 0;
  virtual Result<Job> resume_job(int64_t id) = 0;
  virtual Result<Job> retry_job(int64_t id) = 0;
  // Points a waiting, paused or failed job at another URL (a signed link that expired, a
  // mirror). Its next attempt asks the new URL for the rest with If-Range, so the bytes so far
  // are kept only when the new server has the same file (same size and validator); else the
  // job starts over, with a download_restarted event saying why. A job holding a token or
  // secret headers keeps its scheme, host and port (kInvalidArgument otherwise).
  virtual Result<Job> set_url(int64_t id, const std::string& url) = 0;
  // With QueueOptions::only_jobs: these jobs may be claimed too, from now on (a caller that
  // adds many jobs lets the first run while it adds the rest). Without it, every job may be.
  virtual void allow_jobs(const std::vector<int64_t>& ids) = 0;
  virtual int64_t cancel_all_jobs() = 0;
  // Removes ended jobs (those the filter names) with their events; returns how many.
  virtual int64_t prune_jobs(const PruneFilter& filter = {}) = 0;
  // Waits until none of `ids` (all jobs when empty) is waiting or running, and no transfer of
  // theirs still holds its file (a cancelled job's .part is gone by then). False on timeout.
  virtual bool join(std::optional<std::chrono::milliseconds> timeout = std::nullopt,
                    const std::vector<int64_t>& ids = {}) = 0;
  virtual QueueStats stats() = 0;
  // Bandwidth limits, in bytes per second; 0 lifts one. The queue's own (over every transfer)
  // takes effect at once and lasts until the queue closes (QueueOptions::rate_limit is the
  // next start's). A job's own is stored with it and reaches its running transfer at once;
  // kNotFound for no such job, kWrongState for one that ended. A change appends a
  // download_limit_changed event (job_id 0 for the queue's own).
  virtual Status set_rate_limit(int64_t bytes_per_second) = 0;
  virtual int64_t rate_limit() = 0;
  virtual Result<Job> set_job_rate_limit(int64_t id, int64_t bytes_per_second) = 0;
  // Events with seq > since, oldest first, waiting up to `wait` for the first one.
  virtual std::vector<Event> events_since(int64_t since, int64_t limit,
                                          std::chrono::milliseconds wait) = 0;
  virtual int64_t last_event_seq() = 0;
  // The oldest event seq still kept (last_event_seq() + 1 when none is): events before it were
  // removed by prune or by event_retention.
  virtual int64_t first_event_seq() = 0;
  // Stops every transfer, checkpoints it and leaves it waiting for the next start. Idempotent;
  // the destructor calls it.
  virtual void shutdown() = 0;
};

}  // namespace fetchq
