// Engine: one download attempt per job, above the Fetcher (transfer/fetcher.h), which runs the
// HTTP side on one thread with libcurl's multi interface. The engine decides placement (file
// names, if-exists, the path registry, the .part, its identity and lock), checks free space and
// writes the body into the .part.
//
// Callers on any thread submit and stop transfers; the fetcher's thread owns every transfer and
// file buffer. It reports to an Observer from the engine thread: observers must return quickly
// (queue the work) and must not call back into the engine while holding their own locks that
// the engine's callers hold.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include <sys/socket.h>

#include "transfer/path_registry.h"
#include "transfer/transfer.h"

namespace fetchq::util {
class Env;
}

namespace fetchq::transfer {

class Observer {
 public:
  virtual ~Observer() = default;
  virtual void on_started(int64_t job_id, int attempt, const Started& started) = 0;
  // `bytes` have been written to the file (not synced). A segmented download also gives what
  // each of its segments has written; empty otherwise.
  virtual void on_progress(int64_t job_id, int attempt, int64_t bytes, int64_t total,
                           std::vector<SegmentSpan> segments) = 0;
  // The first `bytes` bytes of file have been written (not synced). A segmented download also
  // gives its segments (what each has written); empty otherwise.
  virtual void on_checkpoint(int64_t job_id, int attempt, std::shared_ptr<PartFile> file,
                             int64_t bytes, std::vector<SegmentSpan> segments) = 0;
  virtual void on_finished(int64_t job_id, int attempt, Result result) = 0;
  // The attempt no longer uses one of the job's sources and goes on with the others: the
  // job's own URL (`own`) or the mirror `url`; `reason` says why.
  virtual void on_source_dropped(int64_t job_id, int attempt, bool own, const std::string& url,
                                 const std::string& reason) {
    (void)job_id, (void)attempt, (void)own, (void)url, (void)reason;
  }
  // A fresh .part was made for the job at final_path + ".part", still without its name where
  // the file system allows (O_TMPFILE). Its identity must be recorded durably; the answer comes
  // back through Engine::part_recorded, from any thread, and must always come. Until then the
  // attempt writes into the file but promises none of it: no progress, no checkpoint of bytes
  // (a segmented file's map, with nothing done, may come), and its end is reported only after
  // the answer. Recorded: the file gets its name; not: it is let go (with the name it
  // had to be made with, if any) and the attempt fails.
  virtual void on_part_created(int64_t job_id, int attempt, const std::string& final_path,
                               const PartIdentity& identity) = 0;
  // The attempt's transfer is over (none of its connections is left) but its end waits for
  // the answer above: what it took of the engine's parallel transfers is free again.
  virtual void on_transfer_over(int64_t job_id, int attempt) { (void)job_id, (void)attempt; }
};

struct EngineOptions {
  std::chrono::milliseconds connect_timeout{30000};
  std::chrono::milliseconds stall_timeout{30000};
  std::chrono::milliseconds progress_interval{1000};
  // A segmented transfer reports progress this often when it is shorter: the report records
  // what each segment wrote, which a rerun in this boot resumes from (a preallocated .part's
  // length tells nothing), so it bounds what a crash of the process costs.
  std::chrono::milliseconds segment_progress_interval{100};
  std::chrono::milliseconds checkpoint_interval{2000};
  size_t max_write_buffer = 1 << 20;
  int max_redirects = 10;
  // Refuse loopback, private, link-local (cloud metadata included) and other non-public
  // addresses, checked on every address a transfer connects to, after DNS and redirects.
  bool block_private_addresses = false;
  // Segmented downloads: a fresh file of at least segment_threshold bytes, from a server that
  // takes ranges and gives a validator, is fetched over up to `connections` connections at once
  // (a job's own Request::connections wins), in segments of at least segment_min_size.
  // 0: adaptive. The file starts over one connection; after probe_window its rate is compared
  // with that of max_connections_per_host connections over the next window, and the file keeps
  // them only when they brought at least adaptive_gain more (a cap per connection: many times
  // more; a smaller gain is often the page cache taking writes the disk will be slow for);
  // otherwise (the link is the limit) it goes back to one. Many that made less than half of their
  // number times what one made share one limit: about twice their gain over the one are measured
  // over the next window, and stay unless the many made kKeepFewer more.
  int connections = 0;
  int max_connections_per_host = 16;
  // Connections of all transfers together (0: no limit). Past it, or past
  // max_connections_per_host to one host (scheme, host and port) across all transfers, extra
  // connections of a segmented file wait; each transfer always has its first.
  int max_connections = 0;
  // Transfers begun at once (0: no limit). Requests submitted past it wait here, in the order
  // they came, and each begins the moment one before it is over: the queue can hand over its
  // next jobs before a slot is free, so no slot waits on the queue's thread and its commit.
  int max_transfers = 0;
  std::chrono::milliseconds probe_window{150};
  double adaptive_gain = 0.25;
  // Until the count is settled, each connection asks for a bounded range at a time: what it
  // would make in four windows if the connections only shared what one made, from four times
  // segment_min_size up to probe_range bytes (0: its whole range). One that the count drops
  // then ends with what it asked for instead of being cut off, which would throw away what
  // its socket held.
  int64_t probe_range = int64_t{8} << 20;
  int64_t segment_threshold = int64_t{16} << 20;
  int64_t segment_min_size = int64_t{1} << 20;
  // TLS and proxy settings of every fetch (FetcherOptions::ca_cert, proxy).
  std::string ca_cert{};
  std::string proxy{};
  // Bytes per second over every transfer together (0: no limit); Request::rate_limit adds a
  // job's own, and the tighter of the two holds for that job.
  int64_t rate_limit = 0;
  // Every file-system call of the engine goes through it; null: util::Env::posix().
  util::Env* env = nullptr;
};

// True for addresses block_private_addresses refuses.
bool is_private_address(const ::sockaddr* addr);

class Engine {
 public:
  Engine(EngineOptions options, Observer* observer, PathRegistry* paths);
  ~Engine();  // stops every transfer (reported as kStopped) and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void submit(Request request);
  // The transfer ends with kStopped after its buffer is written out; one still waiting for a
  // slot (max_transfers) ends so at once, untouched: no file opened, no name taken, its
  // Result::begun false. Unknown ids are ignored.
  void stop(int64_t job_id);
  void stop_all();
  // Ends every request still waiting for a slot (max_transfers) as stopped and untouched
  // (Result::begun false), as stop() would; the transfers begun go on.
  void give_back_waiting();
  // Rate limits, from any thread, in bytes per second (0 lifts): over every transfer, and over
  // one job's running transfer (its next attempt takes Request::rate_limit instead).
  void set_rate_limit(int64_t bytes_per_second);
  void set_job_rate_limit(int64_t job_id, int64_t bytes_per_second);
  // The answer to Observer::on_part_created: whether the .part's identity is on record.
  void part_recorded(int64_t job_id, int attempt, bool recorded);
  // Blocks until every transfer has been reported finished.
  void wait_idle();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fetchq::transfer
