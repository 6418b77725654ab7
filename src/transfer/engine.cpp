// Engine: the per-job download above the Fetcher. It places each attempt (Placer: names,
// if-exists, the path registry, the .part), decides what a response means for the file, checks
// free space, and writes the body into the .part; the HTTP side (libcurl) is the Fetcher's.
#include "transfer/engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "files/file_name.h"
#include "transfer/fetcher.h"
#include "transfer/placement.h"
#include "transfer/prefix_hash.h"
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
// A fetch's rate is measured once it has run kRateAfter; work stealing splits a range only
// when its own connection would need at least kStealWorth more to finish it.
constexpr std::chrono::duration<double> kRateAfter{0.2};
constexpr std::chrono::duration<double> kStealWorth{1.0};
// The adaptive count keeps fewer connections than the wide count when the wide count made
// less than this much more: more connections only where they bring a clear gain.
constexpr double kKeepFewer = 0.05;
// A window of the adaptive count lasts this many times the longest time without a byte in it
// (the one going on included), up to kLongestWindow: a server that paces in bursts (nginx's
// limit_rate sends a chunk, then waits a quarter of a second or more) is measured over several
// of its bursts, not over one burst or one pause.
constexpr double kGapsPerWindow = 4;
constexpr double kLongestWindow = 3.0;
// Times without a byte longer than this count as the link left idle; connections that left it
// idle for half of a window are paced (in bursts), not sharing its limit.
constexpr double kIdleGap = 0.02;
// A host that refused an extra connection (429, 503) gets no more than it took for this long.
constexpr auto kHostCapFor = std::chrono::minutes(10);
// The longest a Retry-After holds back a job's other segments (the rest go on meanwhile).
constexpr auto kMaxSegmentHold = std::chrono::minutes(5);

constexpr auto kFillSlow = std::chrono::seconds(2);
// A mirror serves ranges of a segmented file only once it sent this many bytes that the file
// already holds, equal to them, with the file's size and a validator of its own.
constexpr int64_t kMirrorSample = 64 << 10;

// One attempt of a job: where it goes (Placement) and how its body arrives.
struct Transfer : Placement {
  FetchId fetch = 0;     // 0 until the request is sent
  bool decided = false;  // the response head was seen (decide)
  bool complete_now = false;  // 416 that proves the file is whole
  std::optional<unsigned long> fsid;  // the file system of its file, once has_room() looked
  std::optional<Outcome> forced_outcome;

  int64_t received = 0;     // body bytes of this attempt
  int64_t total = 0;        // expected final size, 0 when unknown
  std::vector<char> buf;
  size_t buf_cap = kMinWriteBuffer;
  SteadyClock::time_point buf_since{};  // when buf was last emptied by a full write

  SteadyClock::time_point last_progress{};
  SteadyClock::time_point last_checkpoint{};
  int64_t reported_bytes = -1;
  int64_t checkpointed = -1;

  // Segmented: non-empty once the file is split; each range has its own fetch and writes with
  // pwrite at its own offset. Segment 0 is the first fetch (t.fetch), which asked for the whole
  // file and is cut at its segment's end. A segment whose fetch is 0 and that is not done waits
  // for tick() to start it (no fetch is started or cancelled from inside a libcurl callback).
  struct Seg {
    int64_t start = 0, end = 0, pos = 0;
    FetchId fetch = 0;
    // Where the range its fetch asked for ends, when short of `end` (a connection of a probe
    // asks for probe_ask bytes at a time); 0: at `end`. See ask_end.
    int64_t fetch_end = 0;
    SteadyClock::time_point since{};  // when its fetch started, at byte `from`
    int64_t from = 0;
    int64_t written_back = 0;  // bytes from `start` whose writeback was started
    // Bytes received after `pos`, not yet written (pos counts written bytes only): libcurl
    // hands over at most 16 KiB a call, and a pwrite of each cost a 2 GiB download over a
    // second of CPU in the page cache. Grows and shrinks as a single fetch's buffer does, only
    // while its fetch runs (a segment whose fetch ends or is cancelled writes or drops it).
    std::vector<char> buf;
    size_t buf_cap = kMinWriteBuffer;
    SteadyClock::time_point buf_since{};
    bool answered = false;  // its response head was checked
    bool probe_answered = false;  // a fetch of it answered since the wider set was started
    bool dropped = false;   // given up (the server would not serve ranges): segment 0 takes over
    size_t src = 0;         // the source (Transfer::sources) its fetch asks
  };
  // Where the file's bytes may come from: the job's URL first, then its mirrors. A mirror is
  // checked before it serves a range (kMirrorSample); one that fails or disagrees is dropped
  // for the attempt, as long as another source is left.
  struct Source {
    std::string url;
    std::string origin;       // url_origin(url): its host's share of connections
    std::string validator{};  // If-Range of its ranges: its own ETag or Last-Modified
    enum class State { kUnchecked, kChecking, kGood, kDropped };
    State state = State::kUnchecked;
    FetchId check = 0;     // the check's fetch
    int64_t check_at = 0;  // first byte of the sample it was asked for
    std::string sample{};  // what it sent of the sample
  };
  std::vector<Source> sources;
  size_t lead = 0;           // the source the attempt's first request went to
  std::string stranded;      // why the last good source was dropped while a check was pending
  bool head_failed = false;  // the first request's answer was an HTTP error
  // The first request asks for the whole file although bytes are kept (restart_from_source):
  // its 2xx ends the attempt with a restart from zero, recorded before a byte is written.
  std::string whole_because;
  bool whole_retryable = false;  // the mirror's failure was a passing one
  std::vector<Seg> segs;
  std::vector<FetchId> to_cancel;
  std::string origin;                     // url_origin(req.url): where the job's secrets may go
  int conn_cap = 16;                      // fetches at once; lowered when the server refuses one
  SteadyClock::time_point hold_until{};   // no new segment fetch before this (Retry-After)
  bool resumed_segments = false;  // segments taken up from a checkpoint's map
  // Adaptive connection count (EngineOptions::connections 0): kAlone measures one connection
  // over a window, kWidening waits for the wider set to answer, kWide measures it; a wider set
  // that shared one limit is followed by fewer (kNarrowing waits for the others to end their
  // bounded asks, kNarrow measures the fewer); then the choice is made once (kSettled). kOff: a
  // fixed count.
  enum class Probe { kOff, kAlone, kWidening, kWide, kNarrowing, kNarrow, kSettled };
  Probe probe = Probe::kOff;
  SteadyClock::time_point probe_at{};  // start of the current window; unset until an answer
  int64_t probe_bytes = 0;             // on_disk at probe_at
  double alone_rate = 0;               // bytes per second over one connection
  int wide_misses = 0;                 // wide windows that made no clear gain so far
  int narrow_misses = 0;               // windows in which the fewer made clearly less than wide
  int64_t probe_ask = 0;          // bytes a connection asks for at a time while wide is measured
  double wide_rate = 0;           // bytes per second over the wide count (kNarrowing, kNarrow)
  int wide_cap = 0;               // that count
  int fewer_cap = 0;              // the fewer count measured after it (kNarrowing, kNarrow)
  int probe_hosts = 0;            // hosts of good sources when the wider count was set
  bool alone_paced = false;       // the one connection left the link idle half of its window
  SteadyClock::time_point probe_data_at{};  // when bytes last came while the count is measured
  SteadyClock::time_point gap_window{};     // the window (its probe_at) probe_gap belongs to
  double probe_gap = 0;           // the longest time without a byte in that window, seconds
  double probe_idle = 0;          // the times without a byte longer than kIdleGap in it, summed
  bool started_reported = true;   // on_started was called (false until a resumed segment answers)
  // The sha256 taken as the gap-free prefix grows: a sha256 is to be checked (the job's, or
  // one the server stated) and the file is big enough for it to matter.
  std::shared_ptr<PrefixHash> hash;
  bool server_digest = false;
  int64_t hash_given = 0;  // bytes handed to the hash so far
  bool segmented() const { return !segs.empty(); }
  // Bytes from 0 written without a gap: what a checkpoint may promise as a plain offset.
  int64_t prefix() const {
    std::vector<const Seg*> live;
    for (const auto& s : segs) if (!s.dropped) live.push_back(&s);
    std::sort(live.begin(), live.end(), [](auto* a, auto* b) { return a->start < b->start; });
    int64_t p = 0;
    for (auto* s : live) {
      if (s->start != p) break;
      p = s->pos;
      if (s->pos < s->end) break;
    }
    return p;
  }
};

// The job's headers as libcurl takes them: "Name;" sends a header with an empty value, which
// "Name:" would remove instead. Without `secrets`, Authorization, Cookie and the like stay out.
std::vector<std::string> header_lines(const std::vector<RequestHeader>& headers, bool secrets) {
  std::vector<std::string> out;
  out.reserve(headers.size());
  for (const auto& h : headers) {
    if (secrets || !is_secret_header(h.name))
      out.push_back(h.value.empty() ? h.name + ";" : h.name + ": " + h.value);
  }
  return out;
}

}  // namespace

class Engine::Impl final : public FetchClient {
 public:
  Impl(EngineOptions options, Observer* observer, PathRegistry* paths)
      : options_(options),
        env_(options.env ? *options.env : util::Env::posix()),
        observer_(observer),
        placer_(env_, paths, observer),
        fetcher_(FetcherOptions{.connect_timeout = options.connect_timeout,
                                .stall_timeout = options.stall_timeout,
                                .max_redirects = options.max_redirects,
                                .block_private_addresses = options.block_private_addresses,
                                .ca_cert = options.ca_cert,
                                .proxy = options.proxy},
                 this) {
    fetcher_.set_rate_limit(options.rate_limit);
    rate_limit_now_ = options.rate_limit;
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
    post([&] {
      pending_.push_back(std::move(r));
      ++outstanding_;
    });
  }

  void stop(int64_t id) {
    post([&] { stops_.push_back(id); });
  }

  void set_rate_limit(int64_t bytes_per_second) {
    post([&] { global_limit_ = bytes_per_second; });
  }

  void set_job_rate_limit(int64_t job_id, int64_t bytes_per_second) {
    post([&] { job_limits_.emplace_back(job_id, bytes_per_second); });
  }

  void stop_all() {
    post([&] { stop_all_ = true; });
  }

  void give_back_waiting() {
    post([&] { give_back_ = true; });
  }

  void part_recorded(int64_t id, int attempt, bool recorded) {
    post([&] { records_.push_back({id, attempt, recorded}); });
  }

  void wait_idle() {
    std::unique_lock lk(mu_);
    idle_cv_.wait(lk, [this] { return outstanding_ == 0; });
  }

 private:
  // Puts something for the fetcher thread under mu_, and wakes it unless a wake it has not
  // taken yet is already on its way: a burst of posts (the queue answering a batch) costs one
  // wake-up, not one each.
  template <class F>
  void post(F&& put) {
    bool wake = false;
    {
      std::lock_guard lk(mu_);
      put();
      wake = !std::exchange(woken_, true);
    }
    if (wake) fetcher_.wakeup();
  }

  // Fetcher thread: new requests, stops, and the end.
  bool on_wake() override {
    std::deque<Request> pending;
    std::vector<int64_t> stops;
    std::optional<int64_t> global_limit;
    std::vector<std::pair<int64_t, int64_t>> job_limits;
    std::vector<Record> records;
    bool stop_all = false, quit = false, give_back = false;
    {
      std::lock_guard lk(mu_);
      woken_ = false;  // what is posted from now on wakes this thread again
      give_back = std::exchange(give_back_, false);
      pending.swap(pending_);
      records.swap(records_);
      stops.swap(stops_);
      global_limit = std::exchange(global_limit_, std::nullopt);
      job_limits.swap(job_limits_);
      stop_all = std::exchange(stop_all_, false);
      quit = quit_;
    }
    if (quit) stop_all = true;
    for (auto& r : pending) waiting_.push_back(std::move(r));
    // Nothing waiting begins until every stop of this wake is done: a slot freed by stopping
    // one transfer must not begin a request that is itself being stopped.
    beginning_ = true;
    if (give_back) {
      for (const auto& r : std::exchange(waiting_, {})) report_unbegun(r);
    }
    for (const auto& r : records) recorded(r.job, r.attempt, r.ok);
    // After the new requests: a limit set while a job's request was on its way applies to it.
    if (global_limit) {
      fetcher_.set_rate_limit(*global_limit);
      rate_limit_now_ = *global_limit;
    }
    for (auto [job, limit] : job_limits) {
      if (auto it = transfers_.find(job); it != transfers_.end()) {
        fetcher_.set_group_rate_limit(job, limit);
        it->second->req.rate_limit = limit;
      }
      for (auto& r : waiting_) {
        if (r.job_id == job) r.rate_limit = limit;
      }
    }
    if (stop_all) {
      // What waits first: a slot freed by a stop below must not begin it.
      for (const auto& r : std::exchange(waiting_, {})) report_unbegun(r);
      std::vector<int64_t> ids;
      for (auto& [id, t] : transfers_) ids.push_back(id);
      for (auto id : ids) end_stopped(id);
    }
    for (auto id : stops) end_stopped(id);
    beginning_ = false;
    begin_waiting();
    if (!quit) return true;
    // No answer can arrive any more: the files still waiting for one are let go.
    while (!unrecorded_.empty()) {
      auto it = unrecorded_.begin();
      recorded(it->first, it->second->req.attempt, false);
    }
    // Anything submitted after the last look is reported as stopped, outside our lock so
    // the observer may take its own.
    std::deque<Request> late;
    {
      std::lock_guard lk(mu_);
      late.swap(pending_);
    }
    for (auto& r : late) report_unbegun(r);
    return false;
  }

  void on_tick() override { tick(); }

  // Progress and checkpoints are driven by time, per transfer.
  void tick() {
    auto now = SteadyClock::now();
    std::vector<int64_t> stranded;
    for (auto& [id, tp] : transfers_) {
      Transfer& t = *tp;
      if (!t.decided || t.failure) continue;
      if (t.segmented() && no_source_left(t)) {
        stranded.push_back(id);
        continue;
      }
      if (t.segmented()) {
        adapt(t, now);
        start_segments(t);
      }
      if (!report_progress(t, now)) continue;
      hash_prefix(t);
      report_checkpoint(t, now);
    }
    for (int64_t id : stranded) end_stranded(id);
  }

  // Progress and checkpoints when due: from tick(), and from the data callbacks after a write,
  // whose turns can take long when the disk is the limit (its writes wait for writeback). A
  // late report is what a rerun after a crash asks for again. False: a write failed.
  bool report_progress(Transfer& t, SteadyClock::time_point now) {
    const auto every =
        t.segmented() ? std::min(options_.progress_interval, options_.segment_progress_interval)
                      : options_.progress_interval;
    if (now - t.last_progress < every) return true;
    // Progress counts written bytes only: after a crash in this boot, the recorded progress
    // bounds what of the .part may be kept, and buffered bytes never reached the file.
    // Segments' buffers too: progress (and what a rerun keeps of each segment) then moves once
    // a report, however slowly a buffer fills.
    if (buffered(t) && !flush(t)) return false;
    // A .part whose record is not answered yet may be let go with its bytes (recorded): until
    // then progress and checkpoints, which a rerun keeps bytes by, promise none of them.
    if (t.record_pending || t.on_disk == t.reported_bytes) return true;
    t.last_progress = now;
    t.reported_bytes = t.on_disk;
    observer_->on_progress(t.req.job_id, t.req.attempt, t.on_disk, t.total,
                           t.segmented() ? spans(t) : std::vector<SegmentSpan>{});
    return true;
  }

  bool report_checkpoint(Transfer& t, SteadyClock::time_point now) {
    // A checkpoint's sync failed: bytes written so far may be lost, and no later sync through
    // this descriptor would tell. The attempt ends; a retry opens the file anew.
    if (const int err = t.file ? t.file->sync_error() : 0; err != 0) {
      if (!t.failure) t.failure = disk_failure("fdatasync", t.file->part_path(), err);
      return false;
    }
    if (t.record_pending || now - t.last_checkpoint < options_.checkpoint_interval ||
        t.on_disk == t.checkpointed) {
      return true;
    }
    t.last_checkpoint = now;
    if (!flush(t)) return false;
    t.checkpointed = t.on_disk;
    if (t.segmented()) {
      observer_->on_checkpoint(t.req.job_id, t.req.attempt, t.file, t.prefix(), spans(t));
    } else {
      observer_->on_checkpoint(t.req.job_id, t.req.attempt, t.file, t.on_disk, {});
    }
    return true;
  }

  // Every source was dropped and no mirror's check is left to run: ranges would wait forever.
  // Once no fetch of the transfer runs, the attempt fails; its retry resumes from the source.
  bool no_source_left(const Transfer& t) const {
    for (const auto& src : t.sources) {
      if (src.state == Transfer::Source::State::kGood) return false;
    }
    if (check_pending(t)) return false;
    for (const auto& s : t.segs) {
      if (!s.dropped && s.fetch != 0) return false;
    }
    return true;
  }

  void end_stranded(int64_t id) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;
    auto tp = std::move(it->second);
    transfers_.erase(it);
    Transfer& t = *tp;
    flush(t);  // what arrived is kept for the retry
    if (!t.failure) {
      t.failure = Failure{.type = "NoSourceLeft",
                          .message = "GET " + t.req.url +
                                     ": every source failed or disagreed; the last: " + t.stranded,
                          .retryable = true};
    }
    finish(std::move(tp));
  }

  // Hands the bytes written from the file's start without a gap to its hash, which takes them
  // on its own thread.
  void hash_prefix(Transfer& t) {
    constexpr int64_t kHashWhileWritingFrom = 8 << 20;  // smaller files: read once at the end
    if (!(t.req.verify_sha256 || t.server_digest) || !t.file) return;
    if (t.total > 0 && t.total < kHashWhileWritingFrom) return;
    const int64_t end = t.segmented() ? t.prefix() : t.on_disk;
    if (end <= t.hash_given) return;
    if (!t.hash) t.hash = hasher_.start(t.file);
    t.hash_given = end;
    hasher_.advance(t.hash, end);
  }

  Transfer* of(FetchId id) {
    auto it = by_fetch_.find(id);
    if (it == by_fetch_.end()) return nullptr;
    auto t = transfers_.find(it->second.job);
    return t == transfers_.end() ? nullptr : t->second.get();
  }

  bool on_response(FetchId id, const FetchResponse& response) override {
    Transfer* t = of(id);
    if (!t) return false;
    if (auto* src = check_of(*t, id)) return check_response(*t, *src, response);
    if (t && t->segmented()) return segment_response(*t, id, response);
    return t && decide(*t, response);
  }

  Transfer::Seg* seg_of(Transfer& t, FetchId id) {
    for (auto& s : t.segs) {
      if (s.fetch == id && !s.dropped) return &s;
    }
    return nullptr;
  }

  // Splits the file into segments when it is worth it: a fresh download of a big file from a
  // server that takes ranges and names a validator. False: a disk failure (preallocation).
  bool maybe_segment(Transfer& t, const FetchResponse& response) {
    const int conns = t.conn_cap = allowed_connections(t);
    if (conns < 2 || t.offset != 0 || t.total < options_.segment_threshold || t.total <= 0) return true;
    const bool probing = adaptive(t);
    if (response.code == 200 && lower(response.header("accept-ranges")).find("bytes") == std::string::npos) {
      return true;
    }
    std::string validator =
        if_range_validator(response.header("etag"), response.header("last-modified"));
    if (validator.empty()) return true;  // no If-Range: a changed file could be spliced
    const int64_t min = std::max<int64_t>(1, options_.segment_min_size);
    if (t.total / min < 2) return true;
    // Adaptive: one segment for now, over the first connection; adapt() splits it.
    const int n = probing ? 1 : static_cast<int>(std::min<int64_t>(conns, t.total / min));
    // The whole file's room at once: a full disk fails now, not at 90%.
    if (env_.fallocate(t.file->fd(), 0, t.total) != 0) {
      fail_disk(t, "preallocate", t.file->part_path(), errno);
      return false;
    }
    t.sources[t.lead].validator = validator;
    const int64_t step = t.total / n;
    for (int i = 0; i < n; ++i) {
      Transfer::Seg s;
      s.start = step * i;
      s.end = i == n - 1 ? t.total : step * (i + 1);
      s.pos = s.start;
      s.since = SteadyClock::now();
      if (i == 0) {
        s.fetch = t.fetch;
        s.answered = true;
        s.src = t.lead;
      }
      t.segs.push_back(s);
    }
    if (probing) {
      t.conn_cap = 1;
      t.probe = Transfer::Probe::kAlone;
      t.probe_at = SteadyClock::now();
      t.probe_bytes = 0;
    }
    spdlog::debug("job {}: {} bytes in {} segments", t.req.job_id, t.total, n);
    // The map is recorded before any byte is promised by progress (which then counts bytes
    // all over the file, not a prefix).
    observer_->on_checkpoint(t.req.job_id, t.req.attempt, t.file, 0, spans(t));
    return true;
  }

  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  std::vector<SegmentSpan> spans(const Transfer& t) const {
    std::vector<SegmentSpan> out;
    for (const auto& s : t.segs) {
      if (!s.dropped) out.push_back(SegmentSpan{s.start, s.end, s.pos - s.start});
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.start < b.start; });
    return out;
  }

  // Takes up the segments of the last checkpoint: true when each resumes from its own durable
  // offset (the .part is the job's, whole size, and a validator guards every range).
  // Connections a job may use at once: its own setting or the engine's, no more than its
  // server accepted lately.
  // Connections the job asks for: its own or the engine's setting, 16 when adaptive.
  int asked_connections(const Transfer& t) const {
    const int wanted = t.req.connections.value_or(options_.connections);
    return wanted == 0 ? 16 : std::clamp(wanted, 1, 16);
  }

  // Each host of a good source adds its share (max_connections_per_host, or less lately).
  // The origins of the transfer's good sources, each once.
  static std::vector<std::string> good_origins(const Transfer& t) {
    std::vector<std::string> out;
    for (const auto& src : t.sources) {
      if (src.state == Transfer::Source::State::kGood &&
          std::find(out.begin(), out.end(), src.origin) == out.end()) {
        out.push_back(src.origin);
      }
    }
    return out;
  }

  int allowed_connections(const Transfer& t) {
    const int per_host = std::clamp(options_.max_connections_per_host, 1, 16);
    int conns = 0;
    for (const auto& origin : good_origins(t)) {
      int share = per_host;
      if (auto it = host_caps_.find(origin); it != host_caps_.end()) {
        if (SteadyClock::now() < it->second.until) {
          share = std::min(share, it->second.cap);
        } else {
          host_caps_.erase(it);
        }
      }
      conns += share;
    }
    return std::clamp(conns, 1, asked_connections(t));
  }

  // Connections the job could open now: the room on each good source's host, within the
  // engine's total.
  int room_for(const Transfer& t) const {
    int room = 0;
    std::optional<Budget> any;
    for (const auto& origin : good_origins(t)) {
      Budget b = budget(origin);
      room += std::max(0, b.max_host - b.host);
      any = b;
    }
    if (any && any->max_all > 0) room = std::min(room, any->max_all - any->all);
    return room;
  }

  bool resume_segments(Transfer& t) {
    // A map of more segments than connections (work stealing) is fetched so many at a time.
    const int conns = asked_connections(t);
    t.conn_cap = std::max(1, allowed_connections(t));
    std::string validator = if_range_validator(t.req.etag, t.req.last_modified);
    const int64_t total = t.req.expected_total;
    if (conns < 2 || validator.empty() || !t.file || total <= 0 || t.offset != total ||
        !t.part_replaced.empty()) {
      return false;
    }
    t.sources[t.lead].validator = validator;
    t.total = total;
    t.resumed_segments = true;
    if (adaptive(t)) {  // the link may have changed since: measured again, from one connection
      t.conn_cap = 1;
      t.probe = Transfer::Probe::kAlone;
    }
    t.started_reported = false;
    t.decided = true;
    t.on_disk = 0;
    for (const auto& sp : t.req.segments) {
      Transfer::Seg s;
      s.start = sp.start;
      s.end = sp.end;
      s.pos = sp.start + std::clamp<int64_t>(sp.done, 0, sp.end - sp.start);
      t.on_disk += s.pos - s.start;
      t.segs.push_back(s);
    }
    auto now = SteadyClock::now();
    t.last_progress = now;
    t.last_checkpoint = now;
    return true;
  }

  // Tells the observer a segmented job took up its map again, with `from` bytes on disk.
  void report_resumed_start(const Transfer& t, int64_t from) {
    Started st;
    st.download_path = t.download_path;
    st.total_bytes = t.total;
    st.etag = t.req.etag;
    st.last_modified = t.req.last_modified;
    st.validator_url = t.req.validator_url;
    st.from_bytes = from;
    observer_->on_started(t.req.job_id, t.req.attempt, st);
  }

  bool adaptive(const Transfer& t) const { return t.req.connections.value_or(options_.connections) == 0; }

  // Fetches running now, in all and to one origin, against max_connections and
  // max_connections_per_host.
  struct Budget {
    int all = 0, host = 0, max_all = 0, max_host = 16;
    int room() const {
      int r = max_host - host;
      if (max_all > 0) r = std::min(r, max_all - all);
      return r;
    }
  };
  Budget budget(const std::string& origin) const {
    Budget b{.max_all = options_.max_connections, .max_host = std::clamp(options_.max_connections_per_host, 1, 16)};
    for (const auto& [fid, owner] : by_fetch_) {
      if (!transfers_.count(owner.job)) continue;
      ++b.all;
      b.host += owner.origin == origin;
    }
    return b;
  }

  // The bandwidth limit that holds for the transfer: the lower of the queue's and the job's
  // (0: none).
  int64_t limit_of(const Transfer& t) const {
    int64_t limit = rate_limit_now_;
    if (t.req.rate_limit > 0 && (limit <= 0 || t.req.rate_limit < limit)) limit = t.req.rate_limit;
    return limit;
  }

  // The adaptive count is being measured (not fixed, not settled yet).
  static bool counting(const Transfer& t) {
    return t.probe != Transfer::Probe::kOff && t.probe != Transfer::Probe::kSettled;
  }

  // Bytes came while the count is measured: the time without any since the last (or since the
  // window opened) may be the longest of the window.
  static void note_bytes(Transfer& t, SteadyClock::time_point now) {
    if (t.gap_window != t.probe_at) {
      t.gap_window = t.probe_at;
      t.probe_gap = 0;
      t.probe_idle = 0;
    }
    const auto since = std::max(t.probe_data_at, t.probe_at);
    const double gap = std::chrono::duration<double>(now - since).count();
    t.probe_gap = std::max(t.probe_gap, gap);
    if (gap > kIdleGap) t.probe_idle += gap;
    t.probe_data_at = now;
  }

  // The longest time without a byte in the current window, and all such times longer than
  // kIdleGap summed; the one going on now included.
  struct Gaps {
    double longest = 0, idle = 0;
  };
  static Gaps window_gaps(const Transfer& t, SteadyClock::time_point now) {
    Gaps g;
    if (t.gap_window == t.probe_at) g = {t.probe_gap, t.probe_idle};
    const auto since = std::max(t.probe_data_at, t.probe_at);
    const double now_gap = std::chrono::duration<double>(now - since).count();
    g.longest = std::max(g.longest, now_gap);
    if (now_gap > kIdleGap) g.idle += now_gap;
    return g;
  }

  // The adaptive connection count of a segmented transfer (tick()). One connection runs for a
  // window; then the file is split for as many connections as the host may get and those run
  // for a window. They stay when they made clearly more (adaptive_gain) than the one: each
  // connection is capped (a server's limit per connection, a long link's window). Otherwise the
  // link is the limit, and extra connections only compete on it: back to one, whose turn takes
  // up the other ranges one after another.
  void adapt(Transfer& t, SteadyClock::time_point now) {
    using Probe = Transfer::Probe;
    if (t.probe == Probe::kOff || t.probe == Probe::kSettled) return;
    if (t.probe_at == SteadyClock::time_point{}) return;  // no answer yet
    const double secs = std::chrono::duration<double>(now - t.probe_at).count();
    if (t.probe == Probe::kWidening) {
      // The window opens once every new connection has answered (or a second has passed).
      bool answered = true;
      // Once each (a bounded ask may be between two fetches; a resumed range's bytes say
      // nothing of its new connection).
      for (const auto& s : t.segs) {
        answered = answered && (s.dropped || s.fetch == 0 || s.answered || s.probe_answered);
      }
      if (!answered && secs < 1.0) return;
      if (!flush(t)) return;  // a window counts every byte received, buffered ones too
      t.probe = Probe::kWide;
      t.probe_at = now;
      t.probe_bytes = t.on_disk;
      return;
    }
    if (t.probe == Probe::kNarrowing) {
      // The window opens once the connections past the fewer count have ended their asks
      // (bounded: they end; one that stalls fails after stall_timeout).
      int running = 0;
      for (const auto& s : t.segs) running += !s.dropped && s.fetch != 0;
      if (running > t.conn_cap && secs < 60.0) return;
      if (!flush(t)) return;
      t.probe = Probe::kNarrow;
      t.probe_at = now;
      t.probe_bytes = t.on_disk;
      return;
    }
    // The window of the one connection stays short: widening waits on it, and a burst it caught
    // makes it look a few times faster at most, while many connections paced in bursts make
    // many times more. The windows of more connections last over several bursts.
    const double least = std::chrono::duration<double>(options_.probe_window).count();
    const Gaps gaps = window_gaps(t, now);
    const double window =
        t.probe == Probe::kAlone
            ? least
            : std::min(kLongestWindow, std::max(least, kGapsPerWindow * gaps.longest));
    if (secs < window) return;
    if (!flush(t)) return;
    // No more than a bandwidth limit allows: what a window sees above it is the limiter's burst
    // and the first reads of new connections, which later turns pay back.
    const int64_t limit = limit_of(t);
    double rate = static_cast<double>(t.on_disk - t.probe_bytes) / secs;
    if (limit > 0) rate = std::min(rate, static_cast<double>(limit));
    if (t.probe == Probe::kAlone) {
      t.alone_rate = rate;
      // A burst and then nothing (a server that paces): one short window cannot tell its rate,
      // so what many make against it says nothing of a shared limit.
      t.alone_paced = gaps.idle >= secs / 2;
      // One connection already near a bandwidth limit (the queue's or the job's): more
      // connections could not bring the gain asked for, only share the same budget.
      if (limit > 0 && rate * (1 + options_.adaptive_gain) > static_cast<double>(limit)) {
        t.probe = Probe::kSettled;
        spdlog::debug("job {}: one connection made {:.1f} MB/s under a limit of {:.1f} MB/s: keeping one",
                      t.req.job_id, rate / 1e6, static_cast<double>(limit) / 1e6);
        return;
      }
      int mine = 0;
      for (const auto& s : t.segs) mine += !s.dropped && s.fetch != 0;
      const int allowed = allowed_connections(t);
      const int wide = std::min(allowed, mine + std::max(0, room_for(t)));
      if (wide < 2 && allowed >= 2) {
        // Other jobs hold the host's share now: measure again later rather than settle on one.
        t.probe_at = now;
        t.probe_bytes = t.on_disk;
        return;
      }
      t.probe_hosts = static_cast<int>(good_origins(t).size());
      widen(t, wide);
      int open = 0;
      for (const auto& s : t.segs) open += !s.dropped && s.pos < s.end;
      if (open < 2) {
        t.probe = Probe::kSettled;
        return;
      }
      t.conn_cap = std::min(wide, open);
      for (auto& s : t.segs) s.probe_answered = false;
      // What each connection would make in about four windows if the connections only shared
      // what one made (the case that goes back to one): enough that few ask again during the
      // measure, little enough that those dropped after it end soon.
      const double secs_window = std::chrono::duration<double>(options_.probe_window).count();
      // No less than four segments' worth: each ask costs a round trip, which on a long link
      // would make the wide set look slower than it is.
      const int64_t least = std::max<int64_t>(1, options_.segment_min_size) * 4;
      t.probe_ask = std::clamp<int64_t>(
          static_cast<int64_t>(rate * secs_window * 4 / std::max(1, t.conn_cap)), least,
          std::max(least, options_.probe_range));
      t.probe = Probe::kWidening;
      t.probe_at = now;
      return;
    }
    if (t.probe == Probe::kNarrow) {
      // Fewer stay when the wide count would not add a clear gain (kKeepFewer) to them. Under
      // a bandwidth limit, which no count makes more than, a short window is as uneven as the
      // limiter's turns: there the gain must be adaptive_gain.
      // A server that refused a connection meanwhile (back_off) lowered the count: it stays.
      const double keep_fewer = limit > 0 ? options_.adaptive_gain : kKeepFewer;
      const bool keep = rate * (1 + keep_fewer) >= t.wide_rate || t.conn_cap < t.fewer_cap;
      if (!keep && ++t.narrow_misses < 2) {
        // One short window can catch a stall of the fewer (a busy machine, a server's pause):
        // they are measured once more before the wide count comes back.
        t.probe_at = now;
        t.probe_bytes = t.on_disk;
        return;
      }
      t.probe = Probe::kSettled;
      if (keep) {
        spdlog::info(
            "job {}: {} connections made {:.1f} MB/s, {} made {:.1f} MB/s: going on with {}",
            t.req.job_id, t.conn_cap, rate / 1e6, t.wide_cap, t.wide_rate / 1e6, t.conn_cap);
        add_new_hosts(t);
        return;
      }
      spdlog::debug("job {}: {} connections made {:.1f} MB/s, {} made {:.1f} MB/s: back to {}",
                    t.req.job_id, t.conn_cap, rate / 1e6, t.wide_cap, t.wide_rate / 1e6,
                    t.wide_cap);
      t.conn_cap = t.wide_cap;
      add_new_hosts(t);
      return;
    }
    const int wide = t.conn_cap;
    if (rate >= t.alone_rate * (1 + options_.adaptive_gain)) {
      // Did each connection add about what one made (a cap per connection: all of them are
      // worth it), or did they share one limit (a disk, a link), which fewer may fill as well?
      // Then fewer are measured: each of the others ends its bounded ask, and none is cut off.
      const double ones = t.alone_rate > 0 ? rate / t.alone_rate : static_cast<double>(wide);
      const int fewer = std::min(wide / 2, std::max(2, static_cast<int>(std::ceil(ones * 2))));
      // Connections that left the link idle for half of the window (paced in bursts; their
      // bursts may also have drifted apart, and then the one did) do not share its limit.
      // Under a bandwidth limit the limiter's own turns leave such pauses.
      const bool paced = limit <= 0 && (gaps.idle >= secs / 2 || t.alone_paced);
      if (ones < wide * 0.5 && fewer < wide && fewer >= 2 && !paced) {
        spdlog::debug("job {}: {} connections made {:.1f} MB/s, one made {:.1f} MB/s: measuring {}",
                      t.req.job_id, wide, rate / 1e6, t.alone_rate / 1e6, fewer);
        t.wide_rate = rate;
        t.wide_cap = wide;
        t.fewer_cap = fewer;
        t.conn_cap = fewer;
        t.probe = Probe::kNarrowing;
        t.probe_at = now;
        return;
      }
      t.probe = Probe::kSettled;
      spdlog::debug("job {}: {} connections made {:.1f} MB/s{}, one made {:.1f} MB/s: keeping them",
                    t.req.job_id, wide, rate / 1e6, paced ? " in bursts" : "", t.alone_rate / 1e6);
      add_new_hosts(t);
      return;
    }
    if (++t.wide_misses < 2) {
      // One window can catch a stall (a busy disk, a server's pause): measure once more before
      // giving up connections that may well be worth it.
      t.probe_at = now;
      t.probe_bytes = t.on_disk;
      return;
    }
    t.probe = Probe::kSettled;
    spdlog::info("job {}: {} connections made {:.1f} MB/s, one made {:.1f} MB/s: going on with one",
                 t.req.job_id, wide, rate / 1e6, t.alone_rate / 1e6);
    t.conn_cap = 1;
    // The running range nearest the start that asked for all of its bytes goes on; the
    // others wait for it (start_segments).
    Transfer::Seg* keep = nullptr;
    for (auto& s : t.segs) {
      if (!s.dropped && s.fetch != 0 && s.fetch_end == 0 && (!keep || s.start < keep->start))
        keep = &s;
    }
    for (auto& s : t.segs) {
      if (&s == keep || s.dropped || s.fetch == 0) continue;
      // A bounded ask ends by itself soon: cancelled, it would throw away what its socket
      // holds (megabytes a connection on a fast link), to be fetched again.
      if (s.fetch_end > 0) continue;
      if (!write_segment(t, s)) return;  // what it received is kept
      std::vector<char>().swap(s.buf);
      t.to_cancel.push_back(s.fetch);
      if (s.fetch == t.fetch) t.fetch = 0;
      s.fetch = 0;
      s.answered = false;
    }
  }

  // Splits the ranges with the most bytes left in two until `n` ranges are open (none smaller
  // than segment_min_size); the new halves wait for start_segments.
  void widen(Transfer& t, int n) {
    const int64_t min = std::max<int64_t>(1, options_.segment_min_size);
    for (;;) {
      int open = 0;
      size_t big = t.segs.size();
      for (size_t i = 0; i < t.segs.size(); ++i) {
        const auto& s = t.segs[i];
        if (s.dropped || s.pos >= s.end) continue;
        ++open;
        if (s.end - s.pos >= 2 * min && (big == t.segs.size() || s.end - s.pos > t.segs[big].end - t.segs[big].pos)) {
          big = i;
        }
      }
      if (open >= n || big == t.segs.size()) return;
      Transfer::Seg half;
      half.start = t.segs[big].pos + (t.segs[big].end - t.segs[big].pos) / 2;
      half.end = t.segs[big].end;
      half.pos = half.start;
      t.segs[big].end = half.start;  // its fetch, if any, is cut there
      t.segs.push_back(half);
    }
  }

  // Where a segment's running fetch stops: the end of what it asked for, or of the segment when
  // that was cut since.
  static int64_t ask_end(const Transfer::Seg& s) {
    return s.fetch_end > 0 ? std::min(s.end, s.fetch_end) : s.end;
  }

  // Starts the fetches of segments that have none (tick(), outside libcurl's callbacks).
  void start_segments(Transfer& t) {
    for (FetchId id : t.to_cancel) {
      fetcher_.cancel(id);
      by_fetch_.erase(id);
    }
    t.to_cancel.clear();
    check_mirrors(t);
    int active = 0;
    for (const auto& s : t.segs) active += !s.dropped && s.fetch != 0;
    if (SteadyClock::now() < t.hold_until) return;
    // Lowest offset first, so the gap-free prefix (what a plain checkpoint promises) grows.
    std::vector<size_t> order(t.segs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return t.segs[a].start < t.segs[b].start; });
    for (size_t i : order) {
      auto& s = t.segs[i];
      if (s.dropped || s.fetch != 0 || s.pos >= s.end) continue;
      if (active >= t.conn_cap) break;
      auto src = pick_source(t, active == 0);
      if (!src) break;
      ++active;
      FetchRequest fr = request_to(t, *src);
      // While the connection count is measured, a connection asks for a bounded range: one
      // that the measure then drops ends by itself, and nothing its socket held is thrown away.
      using Probe = Transfer::Probe;
      const bool probing = t.probe == Probe::kWidening || t.probe == Probe::kWide ||
                           t.probe == Probe::kNarrowing || t.probe == Probe::kNarrow;
      // Marked also when the range is shorter than an ask: the probe never cuts it off.
      s.fetch_end = 0;
      if (probing && options_.probe_range > 0 && t.probe_ask > 0) {
        s.fetch_end = s.pos + std::min(t.probe_ask, s.end - s.pos);
      }
      fr.range = ByteRange{.start = s.pos, .end = ask_end(s)};
      fr.headers.push_back("If-Range: " + t.sources[*src].validator);
      fr.http1 = true;
      s.src = *src;
      s.answered = false;
      s.since = SteadyClock::now();
      s.from = s.pos;
      s.fetch = fetcher_.start(std::move(fr));
      by_fetch_[s.fetch] = Owner{t.req.job_id, t.sources[*src].origin};
    }
  }

  // The source a segment's next fetch asks: of the good ones whose host has room (past the
  // host's or the engine's share, extra connections wait), the one with the fewest of the
  // job's fetches running. The transfer's only connection always runs, from the lead when it
  // is still good. nullopt: none may take one now.
  std::optional<size_t> pick_source(const Transfer& t, bool only) {
    using State = Transfer::Source::State;
    if (only && t.sources[t.lead].state == State::kGood) return t.lead;
    std::optional<size_t> best;
    int best_running = 0;
    for (size_t i = 0; i < t.sources.size(); ++i) {
      if (t.sources[i].state != State::kGood) continue;
      if (!only && (budget(t.sources[i].origin).room() <= 0 || at_host_cap(t.sources[i].origin)))
        continue;
      int running = 0;
      for (const auto& s : t.segs) running += !s.dropped && s.fetch != 0 && s.src == i;
      if (!best || running < best_running) {
        best = i;
        best_running = running;
      }
    }
    return best;
  }

  // Starts the check of each mirror not checked yet, once the file holds a sample to compare
  // with: the mirror is asked for the kMirrorSample bytes that end the gap-free prefix, and
  // serves ranges only when its answer is a 206 of the file's size, with a validator of its
  // own, and the same bytes (check_done).
  void check_mirrors(Transfer& t) {
    using State = Transfer::Source::State;
    if (t.sources.size() < 2 || t.total < 2 * kMirrorSample) return;
    const int64_t p = t.prefix();
    if (p < kMirrorSample) return;
    bool starved = true;
    for (const auto& src : t.sources) starved = starved && src.state != State::kGood;
    for (const auto& s : t.segs) starved = starved && (s.dropped || s.fetch == 0);
    for (size_t i = 0; i < t.sources.size(); ++i) {
      auto& src = t.sources[i];
      // A transfer left with no source and nothing running checks its mirrors whatever the
      // budget says, as its only connection would run: waiting for room could take as long as
      // other downloads run.
      if (src.state != State::kUnchecked || (!starved && budget(src.origin).room() <= 0)) continue;
      FetchRequest fr = request_to(t, i);
      src.check_at = p - kMirrorSample;
      fr.range = ByteRange{.start = src.check_at, .end = p};
      fr.http1 = true;
      src.state = State::kChecking;
      src.sample.clear();
      src.check = fetcher_.start(std::move(fr));
      by_fetch_[src.check] = Owner{t.req.job_id, src.origin};
    }
  }

  // True when fetches to `origin` already take what its server accepted lately (back_off).
  bool at_host_cap(const std::string& origin) const {
    auto it = host_caps_.find(origin);
    if (it == host_caps_.end() || SteadyClock::now() >= it->second.until) return false;
    return budget(origin).host >= it->second.cap;
  }

  Transfer::Source* check_of(Transfer& t, FetchId id) {
    for (auto& src : t.sources) {
      if (src.check == id && id != 0) return &src;
    }
    return nullptr;
  }

  void drop_source(Transfer& t, Transfer::Source& src, const std::string& why) {
    if (src.state == Transfer::Source::State::kDropped) return;
    src.state = Transfer::Source::State::kDropped;
    spdlog::info("job {}: {} {} is no longer used for this attempt: {}", t.req.job_id,
                 &src == &t.sources.front() ? "source" : "mirror", src.url, why);
    observer_->on_source_dropped(t.req.job_id, t.req.attempt, &src == &t.sources.front(), src.url,
                                 why);
  }

  static std::string validator_of(const FetchResponse& response) {
    return if_range_validator(response.header("etag"), response.header("last-modified"));
  }

  bool check_response(Transfer& t, Transfer::Source& src, const FetchResponse& response) {
    int64_t start = -1, end = -1, total = -1;
    const std::string range = response.header("content-range");
    const bool ok = response.code == 206 && parse_content_range(range, &start, &end, &total) &&
                    start == src.check_at && end == src.check_at + kMirrorSample - 1 &&
                    total == t.total;
    if (!ok) {
      drop_source(t, src,
                  "it answered bytes " + std::to_string(src.check_at) + "- of a " +
                      std::to_string(t.total) + "-byte file with HTTP " +
                      std::to_string(response.code) + " '" + range + "'");
      return false;
    }
    src.validator = validator_of(response);
    if (src.validator.empty()) {
      drop_source(t, src,
                  "it names no ETag or Last-Modified, so a change of its file could not be told");
      return false;
    }
    return true;
  }

  bool check_data(Transfer::Source& src, const char* data, size_t len) {
    if (src.state != Transfer::Source::State::kChecking) return false;
    if (src.sample.size() + len > static_cast<size_t>(kMirrorSample)) return false;
    src.sample.append(data, len);
    return true;
  }

  // A mirror's check ended: it is good when it sent the sample whole and equal to the file's.
  void check_done(Transfer& t, Transfer::Source& src, FetchId fid,
                  const std::optional<Failure>& failure) {
    using State = Transfer::Source::State;
    by_fetch_.erase(fid);
    src.check = 0;
    std::string sample = std::move(src.sample);
    src.sample = {};
    if (src.state != State::kChecking) return;
    if (failure || sample.size() != static_cast<size_t>(kMirrorSample)) {
      drop_source(t, src, failure ? failure->message : "its answer to the check was cut short");
      return;
    }
    std::string have(sample.size(), '\0');
    size_t got = 0;
    while (got < have.size()) {
      ssize_t n = env_.pread(t.file->fd(), have.data() + got, have.size() - got,
                             src.check_at + static_cast<int64_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (got != have.size()) {
      drop_source(t, src, "the sample could not be read back from " + t.file->part_path());
      return;
    }
    if (have != sample) {
      drop_source(t, src,
                  "it serves other bytes than the source at " + std::to_string(src.check_at));
      return;
    }
    src.state = State::kGood;
    spdlog::info("job {}: mirror {} serves the same file; its ranges join the download",
                 t.req.job_id, src.url);
    // A fixed count: the mirror's host adds its share. An adaptive one that settled: as many
    // as each host measured kept (a probe still running counts the mirror when it widens, or
    // once it settles).
    if (t.probe == Transfer::Probe::kOff) {
      const int cap = allowed_connections(t);
      if (cap > t.conn_cap) {
        t.conn_cap = cap;
        widen(t, cap);
      }
    } else if (t.probe == Transfer::Probe::kSettled) {
      add_new_hosts(t);
    }
  }

  // An adaptive count kept many connections (more than one) for the hosts it measured; each
  // host whose mirror passed its check since adds as many as each of those kept, within the
  // hosts' shares. One that went back to one (the link is the limit) stays at one.
  void add_new_hosts(Transfer& t) {
    const int hosts = static_cast<int>(good_origins(t).size());
    if (t.conn_cap <= 1 || t.probe_hosts <= 0 || hosts <= t.probe_hosts) return;
    const int each = t.conn_cap / t.probe_hosts;
    const int cap = std::min(allowed_connections(t), t.conn_cap + each * (hosts - t.probe_hosts));
    t.probe_hosts = hosts;
    if (cap > t.conn_cap) {
      t.conn_cap = cap;
      widen(t, cap);
    }
  }

  // A mirror not good yet that may still become so: its check runs, or can start now.
  bool check_pending(const Transfer& t) const {
    using State = Transfer::Source::State;
    const bool checkable = t.total >= 2 * kMirrorSample && t.prefix() >= kMirrorSample;
    for (const auto& src : t.sources) {
      if (src.state == State::kChecking || (src.state == State::kUnchecked && checkable))
        return true;
    }
    return false;
  }

  // A source's fetch of segment `s` failed or answered what it should not: when another good
  // source is left, or a mirror's check may still make one, this one is dropped for the
  // attempt and the range waits for another fetch (tick() ends the attempt should none come).
  // False when it was the last hope (the caller fails the attempt as before).
  bool give_up_source(Transfer& t, Transfer::Seg& s, const std::string& why) {
    using State = Transfer::Source::State;
    if (t.sources.size() < 2) return false;
    int others = 0;
    for (size_t i = 0; i < t.sources.size(); ++i)
      others += i != s.src && t.sources[i].state == State::kGood;
    if (others == 0 && !check_pending(t)) return false;
    if (others == 0) t.stranded = why;
    drop_source(t, t.sources[s.src], why);
    if (s.fetch != 0 && s.fetch == t.fetch) t.fetch = 0;
    s.fetch = 0;
    s.answered = false;
    std::vector<char>().swap(s.buf);
    fetcher_.wakeup();
    return true;
  }

  // A segment's response head: only a 206 for exactly the bytes asked, of the same file.
  bool segment_response(Transfer& t, FetchId id, const FetchResponse& response) {
    Transfer::Seg* s = seg_of(t, id);
    if (!s) return false;
    if (s->answered) return true;  // segment 0: decided already
    s->answered = true;
    int64_t start = -1, end = -1, total = -1;
    // A mirror's answer must name the validator its check saw: a server that ignores If-Range
    // would otherwise splice in another version of its file.
    const std::string named = validator_of(response);
    const bool ok = response.code == 206 &&
                    parse_content_range(response.header("content-range"), &start, &end, &total) &&
                    start == s->pos && end >= ask_end(*s) - 1 && total == t.total &&
                    (s->src == t.lead ? !names_another_version(t.sources[s->src].validator,
                                                               response.header("etag"),
                                                               response.header("last-modified"))
                                      : named == t.sources[s->src].validator);
    if (ok) s->probe_answered = true;
    if (ok && !t.started_reported) {
      t.started_reported = true;
      report_resumed_start(t, t.on_disk);
    }
    if (ok && t.probe == Transfer::Probe::kAlone && t.probe_at == SteadyClock::time_point{}) {
      t.probe_at = SteadyClock::now();  // a resumed map: the window opens at the first answer
      t.probe_bytes = t.on_disk;
    }
    if (ok) return true;
    if ((response.code == 429 || response.code == 503) && back_off(t, *s, id, response))
      return false;
    // A mirror that answers wrongly, or any source that refuses, leaves the range to the
    // others; the lead's 2xx of the wrong bytes is handled below, as without mirrors.
    if ((s->src != t.lead || response.code < 200 || response.code >= 300) &&
        give_up_source(t, *s,
                       "it answered a segment with HTTP " + std::to_string(response.code) + " '" +
                           response.header("content-range") + "'")) {
      return false;
    }
    if (s->src != t.lead && response.code >= 200 && response.code < 300) {
      // The last good source is a mirror (the lead was dropped) and its file changed: that
      // says nothing of the lead's file, whose bytes stay for the retry.
      t.failure =
          Failure{.type = "RangeMismatch",
                  .message = fetcher_.where(id) + " answered a segment's range with HTTP " +
                             std::to_string(response.code) + " '" +
                             response.header("content-range") + "' and no other source is left",
                  .retryable = true};
      return false;
    }
    if (t.resumed_segments && response.code >= 200 && response.code < 300) {
      // The file changed since the map was made (a 200 to If-Range, another Content-Range):
      // nothing of the .part may be kept.
      t.failure = Failure{.type = "FileChanged",
                          .message = fetcher_.where(id) + " answered a segment's range with HTTP " +
                                     std::to_string(response.code) + " '" +
                                     response.header("content-range") +
                                     "': the file changed; starting over",
                          .retryable = true,
                          .retry_after_ms = 0,
                          .restart_from_zero = true};
      return false;
    }
    if (response.code != 206 && (response.code < 200 || response.code >= 300)) {
      // A passing refusal with no other connection left fails the attempt; the retry resumes.
      Failure f;
      f.type = "HTTPError(" + std::to_string(response.code) + " " +
               std::string(reason_phrase(response.code)) + ")";
      f.message = fetcher_.where(id) + " returned HTTP " + std::to_string(response.code) +
                  " for a segment";
      // A mirror's refusal says nothing of the source's file: the retry starts from the source.
      f.retryable = is_retryable_status(response.code) || s->src != t.lead;
      t.failure = std::move(f);
      return false;
    }
    // A 200 to a range, a changed validator or a Content-Range that does not match: never a
    // mixed file. The first fetch, still reading the whole body, takes over the rest alone.
    spdlog::info("job {}: {} answered a segment with HTTP {} '{}'; going on over one connection",
                 t.req.job_id, fetcher_.where(id), response.code, response.header("content-range"));
    Transfer::Seg& first = t.segs.front();
    if (&first == s || first.dropped || first.fetch == 0 || first.start != 0 ||
        first.pos >= first.end) {
      t.failure = Failure{.type = "RangeMismatch",
                          .message = fetcher_.where(id) + " did not serve the range asked (HTTP " +
                                     std::to_string(response.code) + "); starting over",
                          .retryable = true,
                          .retry_after_ms = 0,
                          .restart_from_zero = true};
      return false;
    }
    for (size_t i = 1; i < t.segs.size(); ++i) {
      auto& o = t.segs[i];
      o.dropped = true;
      std::vector<char>().swap(o.buf);
      if (o.fetch != 0 && o.fetch != id) t.to_cancel.push_back(o.fetch);
    }
    first.end = t.total;
    // What other segments wrote is written again by the first fetch before it counts.
    t.on_disk = first.pos;
    return false;
  }

  // The server refused one more connection (429, 503) while others of the job are running:
  // the job goes on with those, its refused range waits for one of them to be free, and the
  // host gets no more connections than that for a while; a Retry-After holds back new
  // fetches of the job until then. False when no other connection runs (the attempt fails).
  bool back_off(Transfer& t, Transfer::Seg& s, FetchId id, const FetchResponse& response) {
    const std::string& origin = t.sources[s.src].origin;
    int others = 0, on_host = 0;
    for (const auto& o : t.segs) {
      if (o.dropped || o.fetch == 0 || o.fetch == id) continue;
      ++others;
      on_host += t.sources[o.src].origin == origin;
    }
    if (others == 0) return false;
    const auto now = SteadyClock::now();
    // The host that refused keeps what it took; the job's own cap falls with it only when
    // that host is all it has.
    bool one_host = true;
    for (const auto& src : t.sources) {
      one_host = one_host && (src.state != Transfer::Source::State::kGood || src.origin == origin);
    }
    if (one_host) t.conn_cap = std::min(t.conn_cap, others);
    // None of the job's fetches on that host: it gets none more for a while (the other hosts
    // take the ranges; a transfer's only connection is never held back by this).
    const int took = on_host;
    auto& host = host_caps_[origin];
    host.cap = host.until > now ? std::min(host.cap, took) : took;
    host.until = now + kHostCapFor;
    if (auto ms = parse_retry_after(response.header("retry-after"), util::now_unix_ms())) {
      t.hold_until = now + std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(*ms),
                                                                          kMaxSegmentHold);
    }
    spdlog::info("job {}: {} refused one more connection (HTTP {}); going on with {}", t.req.job_id,
                 fetcher_.where(id), response.code, t.conn_cap);
    s.fetch = 0;  // its range is taken up again by the next free connection
    std::vector<char>().swap(s.buf);
    s.answered = false;
    return true;
  }

  bool segment_data(Transfer& t, FetchId id, const char* data, size_t len) {
    Transfer::Seg* s = seg_of(t, id);
    if (!s) return false;
    if (counting(t)) {
      note_bytes(t, SteadyClock::now());
    }
    const int64_t at = s->pos + static_cast<int64_t>(s->buf.size());  // received so far
    const int64_t stop = ask_end(*s);
    const int64_t n = std::clamp<int64_t>(stop - at, 0, static_cast<int64_t>(len));
    if (s->buf.empty()) s->buf_since = SteadyClock::now();
    if (s->buf.capacity() < s->buf_cap) s->buf.reserve(s->buf_cap);
    s->buf.insert(s->buf.end(), data, data + n);
    if (s->buf.size() >= s->buf_cap || at + n >= stop) {
      const auto now = SteadyClock::now();
      const bool full = s->buf.size() >= s->buf_cap;
      const auto took = now - s->buf_since;
      if (!write_segment(t, *s)) return false;
      if (full && took < kFillFast) {
        s->buf_cap = std::min(s->buf_cap * 2, segment_buffer_cap(t));
        if (s->buf.capacity() > s->buf_cap) s->buf.shrink_to_fit();
      } else if (full && took > kFillSlow && s->buf_cap > kMinWriteBuffer) {
        s->buf_cap = std::max(s->buf_cap / 2, kMinWriteBuffer);
        s->buf.shrink_to_fit();
      }
      if (!report_progress(t, now) || !report_checkpoint(t, now)) return false;
      // The time the disk held this thread after the bytes came is not time the link was idle.
      if (counting(t)) {
        t.probe_data_at = SteadyClock::now();
      }
    }
    // Past its end: stop this fetch (it asked for more, or its range was cut since). An answer
    // that ends right there is read to its end, so that its connection serves the next range
    // instead of being closed.
    return n == static_cast<int64_t>(len);
  }

  // The most a segment's buffer grows to: max_write_buffer shared by the job's running
  // fetches, though no less than 256 KiB each (smaller writes cost the page cache more CPU).
  size_t segment_buffer_cap(const Transfer& t) const {
    size_t running = 0;
    for (const auto& s : t.segs) running += !s.dropped && s.fetch != 0;
    const size_t share = options_.max_write_buffer / std::max<size_t>(1, running);
    return std::min(options_.max_write_buffer, std::max<size_t>(share, 256 << 10));
  }

  // Writes a segment's buffer at its offset. On failure records a disk failure, false.
  bool write_segment(Transfer& t, Transfer::Seg& s) {
    // A range cut short since (widen, steal): the bytes past its new end belong to another.
    if (s.pos + static_cast<int64_t>(s.buf.size()) > s.end) {
      s.buf.resize(static_cast<size_t>(std::max<int64_t>(0, s.end - s.pos)));
    }
    size_t off = 0;
    while (off < s.buf.size()) {
      ssize_t w = env_.pwrite(t.file->fd(), s.buf.data() + off, s.buf.size() - off, s.pos);
      if (w < 0) {
        if (errno == EINTR) continue;
        t.failure = disk_failure("write", t.file->part_path(), errno);
        s.buf.clear();
        return false;
      }
      off += static_cast<size_t>(w);
      s.pos += w;
      t.on_disk += w;
    }
    s.buf.clear();
    // Start the writeback of each MiB as it is written, without waiting for it, as a single
    // connection does: the disk works while the download goes on, and the fsync before the
    // rename finds little left to do.
    constexpr int64_t kWritebackStep = 1 << 20;
    const int64_t from = s.start + s.written_back;
    if (s.pos - from >= kWritebackStep || (s.pos >= s.end && s.pos > from)) {
      env_.sync_file_range(t.file->fd(), from, s.pos - from, SYNC_FILE_RANGE_WRITE);
      s.written_back = s.pos - s.start;
    }
    return true;
  }

  // A segment's fetch ended: finished, it takes half of the largest segment left (work
  // stealing); short of its end, the attempt fails and the retry resumes.
  void segment_done(Transfer& t, FetchId fid, std::optional<Failure> failure) {
    by_fetch_.erase(fid);
    if (fid == t.fetch) t.fetch = 0;
    Transfer::Seg* s = seg_of(t, fid);
    if (s) {
      s->fetch = 0;
      // What arrived is kept, also from a fetch that failed: the retry resumes after it.
      if (!t.failure) write_segment(t, *s);
      std::vector<char>().swap(s->buf);  // its memory too: the segment may wait a long time
      const bool asked_all = s->fetch_end > 0 && s->pos >= s->fetch_end;
      s->fetch_end = 0;
      if (!t.failure && asked_all && s->pos < s->end) {
        // A bounded ask, answered in full: the rest of the range waits for its next fetch
        // (start_segments, at the next tick), as many at once as the connection count allows.
        fetcher_.wakeup();
        return;
      }
    }
    if (!t.failure && s && s->pos < s->end &&
        give_up_source(
            t, *s,
            failure ? failure->message : "its answer ended at byte " + std::to_string(s->pos))) {
      return;  // the range waits for another source's fetch
    }
    if (!t.failure && s && s->pos < s->end) {
      t.failure = failure ? std::move(*failure)
                          : Failure{.type = "IncompleteBody",
                                    .message = "GET " + t.req.url + ": a segment ended at byte " +
                                               std::to_string(s->pos) + " of " + std::to_string(s->end),
                                    .retryable = true};
      if (s->src != t.lead) t.failure->retryable = true;  // a mirror's failure, not the source's
    }
    if (!t.failure && s) steal(t, *s);
    bool all_done = true;
    for (const auto& o : t.segs) {
      if (!o.dropped && o.pos < o.end) all_done = false;
    }
    if (!t.failure && !all_done) return;
    if (t.failure && !t.failure->disk && !t.failure->restart_from_zero) {
      // The other ranges keep what they received too.
      auto failed = std::move(t.failure);
      t.failure.reset();
      flush(t);
      if (!t.failure) t.failure = std::move(failed);
    }
    auto it = transfers_.find(t.req.job_id);
    auto tp = std::move(it->second);
    transfers_.erase(it);
    finish(std::move(tp));
  }

  // The bytes per second a segment's fetch has made, or 0 before there is a measure.
  static double seg_rate(const Transfer::Seg& s, SteadyClock::time_point now) {
    const double secs = std::chrono::duration<double>(now - s.since).count();
    if (secs < kRateAfter.count() || s.pos <= s.from) return 0;
    return static_cast<double>(s.pos - s.from) / secs;
  }

  // `done` just finished its range. It takes the second half of the segment that would take
  // longest to finish, when that is worth a new connection: a fetch cut short has its socket
  // buffers full of bytes past its new end (wasted), so a range that its own connection ends
  // within kStealWorth is left to it.
  void steal(Transfer& t, const Transfer::Seg& done) {
    const int64_t min = std::max<int64_t>(1, options_.segment_min_size);
    const auto now = SteadyClock::now();
    for (const auto& o : t.segs) {
      if (!o.dropped && o.fetch == 0 && o.pos < o.end) return;  // a range waits for a connection
    }
    // A segment without a measure yet is judged at the rate the finished one made.
    const double fallback = seg_rate(done, now);
    Transfer::Seg* big = nullptr;
    double big_eta = 0;
    for (auto& o : t.segs) {
      const int64_t left = o.end - o.pos;
      if (o.dropped || left < 2 * min) continue;
      double rate = o.fetch != 0 ? seg_rate(o, now) : 0;
      if (rate <= 0 && o.fetch != 0 && now - o.since < kRateAfter) rate = fallback;
      const double eta = rate > 0 ? static_cast<double>(left) / rate : HUGE_VAL;
      if (!big || eta > big_eta) {
        big = &o;
        big_eta = eta;
      }
    }
    if (!big || big_eta < kStealWorth.count()) return;
    Transfer::Seg half;
    half.start = big->pos + (big->end - big->pos) / 2;
    half.end = big->end;
    half.pos = half.start;
    big->end = half.start;  // its fetch is cut there
    t.segs.push_back(half);  // started by the next tick
    fetcher_.wakeup();
  }

  bool on_data(FetchId id, const char* data, size_t len) override {
    Transfer* t = of(id);
    if (!t || t->failure || t->complete_now || t->forced_outcome) return false;
    if (auto* src = check_of(*t, id)) return check_data(*src, data, len);
    if (t->segmented()) return segment_data(*t, id, data, len);
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
      if (!report_progress(*t, now) || !report_checkpoint(*t, now)) return false;
    }
    return true;
  }

  // Writes the buffer out (a segmented transfer's: every segment's). On failure records a
  // disk failure and returns false.
  static bool buffered(const Transfer& t) {
    if (!t.buf.empty()) return true;
    for (const auto& s : t.segs) {
      if (!s.dropped && !s.buf.empty()) return true;
    }
    return false;
  }

  bool flush(Transfer& t) {
    for (auto& s : t.segs) {
      if (!s.dropped && !s.buf.empty() && !write_segment(t, s)) return false;
    }
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

  // Begins what waits, oldest first, while max_transfers allows. Not reentered: a transfer
  // that ends as it begins (placement failed) frees its slot for the loop already running.
  void begin_waiting() {
    if (beginning_) return;
    beginning_ = true;
    while (!waiting_.empty() && (options_.max_transfers <= 0 || begun_ < options_.max_transfers)) {
      Request r = std::move(waiting_.front());
      waiting_.pop_front();
      ++begun_;
      begin(std::move(r));
    }
    beginning_ = false;
  }

  // The end of a request that never began: kStopped, nothing touched.
  void report_unbegun(const Request& r) {
    Result res;
    res.outcome = Outcome::kStopped;
    res.bytes = r.offset;
    res.begun = false;
    observer_->on_finished(r.job_id, r.attempt, std::move(res));
    std::lock_guard lk(mu_);
    if (--outstanding_ == 0) idle_cv_.notify_all();
  }

  void begin(Request r) {
    auto tp = std::make_unique<Transfer>();
    Transfer& t = *tp;
    t.req = std::move(r);
    t.origin = url_origin(t.req.url);
    t.sources.push_back(Transfer::Source{
        .url = t.req.url, .origin = t.origin, .state = Transfer::Source::State::kGood});
    for (const auto& m : t.req.mirrors) {
      if (m != t.req.url) t.sources.push_back(Transfer::Source{.url = m, .origin = url_origin(m)});
    }
    fetcher_.set_group_rate_limit(t.req.job_id, t.req.rate_limit);
    placer_.place(t);
    if (t.failure) {
      finish(std::move(tp));
      return;
    }
    if (t.offset > 0) lead_with_validator_source(t);
    if (!t.req.segments.empty() && resume_segments(t)) {
      if (t.prefix() == t.total) {  // every byte was synced before the stop: nothing to ask
        report_resumed_start(t, t.total);
        finish(std::move(tp));
        return;
      }
      int64_t id = t.req.job_id;
      transfers_[id] = std::move(tp);
      start_segments(*transfers_[id]);
      return;
    }
    if (!t.req.segments.empty() && t.file && t.offset > 0) {
      // The map cannot be used: keep its gap-free prefix only, as a plain resume.
      int64_t prefix = 0;
      for (const auto& s : t.req.segments) {
        if (s.start != prefix) break;
        prefix = s.start + s.done;
        if (s.start + s.done < s.end) break;
      }
      prefix = std::min(prefix, t.offset);
      if (env_.ftruncate(t.file->fd(), prefix) != 0 || env_.lseek(t.file->fd(), prefix, SEEK_SET) < 0) {
        fail_disk(t, "truncate", t.file->part_path(), errno);
        finish(std::move(tp));
        return;
      }
      t.offset = prefix;
      t.on_disk = prefix;
      if (prefix == 0 && t.lead != 0) {  // nothing kept: from the job's own URL, as any start
        t.sources[t.lead].state = Transfer::Source::State::kUnchecked;
        t.sources[0].state = Transfer::Source::State::kGood;
        t.lead = 0;
      }
    }
    auto now = SteadyClock::now();
    t.last_progress = now;
    t.last_checkpoint = now;
    t.buf_since = now;
    int64_t id = t.req.job_id;
    transfers_[id] = std::move(tp);
    start_first(t);
  }

  // What every request to source `src` carries: the job's headers and User-Agent, and its
  // secrets when the source is on the job's own origin (submission refuses mirrors elsewhere
  // for a job that holds any; this keeps them home should one get through).
  FetchRequest request_to(const Transfer& t, size_t src) const {
    const Transfer::Source& source = t.sources[src];
    const bool home = source.origin == t.origin;
    FetchRequest fr;
    fr.url = source.url;
    fr.headers = header_lines(t.req.headers, home);
    fr.user_agent = t.req.user_agent;
    if (home) {
      fr.access_token = t.req.access_token;
      fr.username = t.req.username;
      fr.password = t.req.password;
    }
    fr.rate_group = t.req.job_id;
    return fr;
  }

  // The attempt's first request, to its lead source: the whole file, or the rest of it.
  void start_first(Transfer& t) {
    FetchRequest fr = request_to(t, t.lead);
    if (t.offset > 0 && t.whole_because.empty()) {
      fr.range = ByteRange{.start = t.offset};
      // If-Range: a strong ETag, else Last-Modified; without either, a 206 is trusted as is.
      const std::string validator = if_range_validator(t.req.etag, t.req.last_modified);
      if (!validator.empty()) fr.headers.push_back("If-Range: " + validator);
    }
    t.fetch = fetcher_.start(std::move(fr));
    by_fetch_[t.fetch] = Owner{t.req.job_id, t.sources[t.lead].origin};
  }

  // The bytes kept came from a mirror (the source had failed when they were fetched), and the
  // validator on record is that mirror's: the resume asks it first. The job's own URL becomes a
  // source to check like a mirror (segments), or the fall-back from byte 0 (restart_from_source).
  void lead_with_validator_source(Transfer& t) {
    if (t.req.validator_url.empty()) return;
    for (size_t i = 1; i < t.sources.size(); ++i) {
      if (t.sources[i].url != t.req.validator_url) continue;
      t.sources[0].state = Transfer::Source::State::kUnchecked;
      t.sources[i].state = Transfer::Source::State::kGood;
      t.lead = i;
      return;
    }
  }

  // A resume that asked the mirror its bytes came from, which failed before a byte of its
  // answer arrived: the job's own URL is asked for the whole file (its validator is not the
  // mirror's, so its bytes past the offset could not be trusted). Nothing kept is touched: a
  // 2xx ends the attempt with a restart from zero (see decide), any other answer fails it with
  // every byte kept for the next resume. False when the job's URL was dropped already.
  bool restart_from_source(Transfer& t, FetchId fid) {
    if (t.lead == 0 || t.sources[0].state == Transfer::Source::State::kDropped) return false;
    t.whole_retryable = t.failure->retryable;
    t.whole_because = "mirror " + t.sources[t.lead].url +
                      ", which the partial file came from, failed (" + t.failure->type + ": " +
                      t.failure->message + ")";
    spdlog::info("job {}: {}; asking the job's URL", t.req.job_id, t.whole_because);
    lead_anew(t, fid, 0);
    return true;
  }

  // Drops the lead, whose first request failed (fetch `fid`), and sends that request to source
  // `next` instead, which leads the attempt from then on.
  void lead_anew(Transfer& t, FetchId fid, size_t next) {
    by_fetch_.erase(fid);
    drop_source(t, t.sources[t.lead], t.failure->type + ": " + t.failure->message);
    t.lead = next;
    t.sources[next].state = Transfer::Source::State::kGood;
    t.failure.reset();
    t.decided = false;
    t.head_failed = false;
    t.fetch = 0;
    start_first(t);
  }

  // The lead source failed before a byte of its answer arrived: the first request goes to the
  // next mirror not tried yet, which leads the attempt from then on. False when none is left.
  bool fail_over(Transfer& t, FetchId fid) {
    size_t next = t.lead + 1;
    while (next < t.sources.size() && t.sources[next].state != Transfer::Source::State::kUnchecked)
      ++next;
    if (next >= t.sources.size()) return false;
    spdlog::info("job {}: {} ({}); trying mirror {}", t.req.job_id, t.failure->message,
                 t.failure->type, t.sources[next].url);
    lead_anew(t, fid, next);
    return true;
  }

  // Decides, from the final response's headers, what to do with its body. False: abort.
  bool decide(Transfer& t, const FetchResponse& response) {
    t.decided = true;
    const long code = response.code;
    auto header = [&](const char* name) { return response.header(name); };
    const std::string& url = t.req.url;
    if (code == 416 && t.offset > 0 && t.whole_because.empty()) {
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
      t.head_failed = true;
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
    if (!t.whole_because.empty()) {
      // The job's URL has the file. The bytes kept are the mirror's, and so are the validator
      // and the offsets on record: they are forgotten (restart_from_zero) before a byte of this
      // answer may be written, so that no crash or pause can leave the record naming the
      // mirror over bytes of the job's URL.
      t.failure = Failure{
          .type = "SourceChanged",
          .message = t.whole_because + "; the job's URL has the file: starting over from it",
          .retryable = true,
          .retry_after_ms = 0,
          .restart_from_zero = true};
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
      if (!placer_.settle_path(t, (dir == "/" ? "" : dir) + "/" + name)) return false;
    }
    if (code == 206) {
      // A server that ignores If-Range answers with the range of the file it has now: one that
      // names another version than the bytes kept is never spliced onto them.
      const std::string sent = t.offset > 0 && t.whole_because.empty()
                                   ? if_range_validator(t.req.etag, t.req.last_modified)
                                   : std::string();
      if (names_another_version(sent, header("etag"), header("last-modified"))) {
        t.failure = Failure{.type = "FileChanged",
                            .message = "GET " + url + ": the 206 answer names another version (" +
                                       if_range_validator(header("etag"), header("last-modified")) +
                                       ", asked for " + sent + "): the file changed; starting over",
                            .retryable = true,
                            .retry_after_ms = 0,
                            .restart_from_zero = true};
        return false;
      }
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
        t.hash.reset();  // it may have read the bytes just let go
        t.hash_given = 0;
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
           t.download_path + " already exists and its size differs (--if-exists skip)");
      return false;
    }
    if (t.total > 0 && !has_room(t)) return false;
    s.download_path = t.download_path;
    s.total_bytes = t.total;
    s.etag = header("etag");
    s.last_modified = header("last-modified");
    if (t.lead != 0) s.validator_url = t.sources[t.lead].url;
    if (response.headers) {
      // RFC 3230's Digest of a 206 is, on some servers, the range's: only a whole body's counts.
      auto d = server_digest(*response.headers, t.total);
      if (d && d->from == "Digest" && code != 200) d.reset();
      if (d) {
        s.server_sha256 = d->sha256;
        s.server_sha256_from = d->from;
        t.server_digest = true;
      }
    }
    observer_->on_started(t.req.job_id, t.req.attempt, s);
    return maybe_segment(t, response);
  }

  // Free space for the rest of this file, counting what the other running downloads on the
  // same file system still need. False (with a DiskFull failure) when it does not fit.
  bool has_room(Transfer& t) {
    struct statvfs me {};
    if (env_.fstatvfs(t.file->fd(), &me) != 0) return true;  // cannot tell: let writes decide
    t.fsid = me.f_fsid;
    int64_t held = 0;
    for (auto& [id, other] : transfers_) {
      if (other.get() == &t || !other->file || other->total <= 0) continue;
      const int64_t rest = other->total - other->on_disk - static_cast<int64_t>(other->buf.size());
      if (rest <= 0) continue;
      // A file's file system is asked once (a file does not move); one not asked yet (its
      // has_room() is still to come) is asked now.
      if (!other->fsid) {
        struct statvfs st {};
        if (env_.fstatvfs(other->file->fd(), &st) != 0) continue;
        other->fsid = st.f_fsid;
      }
      if (*other->fsid == me.f_fsid) held += rest;
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
    auto it = transfers_.find(f->second.job);
    if (it == transfers_.end()) {  // not so: finish() lets go of a job's every fetch
      by_fetch_.erase(f);
      return;
    }
    Transfer& t = *it->second;
    if (auto* src = check_of(t, fid)) {
      check_done(t, *src, fid, failure);
      return;
    }
    if (t.segmented()) {
      segment_done(t, fid, std::move(failure));
      return;
    }
    if (!t.failure && !t.complete_now && !t.forced_outcome && failure) t.failure = std::move(failure);
    // Nothing of the answer arrived and nothing is kept from before: a mirror may have the
    // file. A resume stays with the source its validator came from (a mirror's bytes past the
    // offset could only be trusted after a check against the .part, and its validator is not
    // the source's); when that was a mirror, the job's own URL may still send the whole file.
    if (t.failure && !t.failure->disk && !t.failure->restart_from_zero &&
        (!t.decided || t.head_failed) && t.received == 0 &&
        (t.offset == 0 ? fail_over(t, fid) : restart_from_source(t, fid))) {
      return;
    }
    if (t.failure && !t.whole_because.empty() && !t.failure->disk &&
        !t.failure->restart_from_zero) {
      // The job's URL did not have the file either: the mirror's failure counts as well (a
      // passing one is tried again, the bytes kept for it).
      t.failure->retryable = t.failure->retryable || t.whole_retryable;
      t.failure->message = t.whole_because + "; then " + t.failure->message;
    }
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
    if (it == transfers_.end()) {
      auto w = std::find_if(waiting_.begin(), waiting_.end(),
                            [id](const Request& r) { return r.job_id == id; });
      if (w == waiting_.end()) return;
      Request r = std::move(*w);
      waiting_.erase(w);
      report_unbegun(r);
      return;
    }
    auto tp = std::move(it->second);
    transfers_.erase(it);
    if (tp->file && !tp->failure) flush(*tp);
    tp->failure.reset();
    tp->forced_outcome = Outcome::kStopped;
    finish(std::move(tp));
  }

  // The answer to a fresh .part's record, for the attempt that made it: still transferring
  // (a file let go ends it now), or ended and waiting for it to be reported.
  void recorded(int64_t id, int attempt, bool ok) {
    if (auto it = transfers_.find(id); it != transfers_.end() &&
                                       it->second->req.attempt == attempt &&
                                       it->second->record_pending) {
      if (!name_or_let_go(*it->second, ok)) {
        auto tp = std::move(it->second);
        transfers_.erase(it);
        finish(std::move(tp));
      }
      return;
    }
    auto it = unrecorded_.find(id);
    if (it == unrecorded_.end() || it->second->req.attempt != attempt) return;
    auto tp = std::move(it->second);
    unrecorded_.erase(it);
    if (ok && finished_whole(*tp)) {
      // Nothing is left to resume by: the file goes to the settle step without a .part name,
      // which links it to its final name once it is synced (one directory change, not two).
      tp->record_pending = false;
      tp->unnamed = false;
      tp->file->keep_unnamed();
    } else {
      name_or_let_go(*tp, ok);
    }
    report(std::move(tp));
  }

  // A transfer that ended with all of its file, still unnamed (see recorded). Overwrite keeps
  // the .part: only a rename replaces the file at the final name. So does a big file (a record
  // answered late, behind a busy store): an unnamed file is lost to a crash before it settles,
  // and a .part would keep it for a resume.
  bool finished_whole(const Transfer& t) const {
    static constexpr int64_t kMostUnnamed = 4 << 20;
    return t.unnamed && t.file && !t.forced_outcome && !t.failure && !t.segmented() &&
           t.req.if_exists != IfExists::kOverwrite && t.on_disk <= kMostUnnamed;
  }

  // Names the attempt's .part once its record is in, or lets the file go. False when the file
  // went, and with it every byte its segments wrote.
  bool name_or_let_go(Transfer& t, bool ok) {
    placer_.recorded(t, ok);
    if (t.file) return true;
    t.segs.clear();
    return false;
  }

  void finish(std::unique_ptr<Transfer> tp) {
    end_attempt(std::move(tp));
    // Its slot is free: what waits begins now, on this thread, before the queue hears of it.
    --begun_;
    begin_waiting();
  }

  void end_attempt(std::unique_ptr<Transfer> tp) {
    Transfer& t = *tp;
    fetcher_.set_group_rate_limit(t.req.job_id, 0);
    // Every fetch the job still has goes, also one a callback aborted whose end has not been
    // reported yet: a retry that starts at once must not take that end as its own.
    std::erase_if(by_fetch_, [&](const auto& entry) {
      if (entry.second.job != t.req.job_id) return false;
      fetcher_.cancel(entry.first);
      return true;
    });
    // The end of an attempt whose .part is not on record yet waits for the answer: the file
    // may still have to be let go.
    if (t.record_pending) {
      const int64_t id = t.req.job_id;
      const int attempt = t.req.attempt;
      // One attempt of a job at a time (the queue starts the next after this one's end); an
      // earlier one still here would never be reported, so it is let go first.
      if (auto old = unrecorded_.find(id); old != unrecorded_.end()) {
        recorded(id, old->second->req.attempt, false);
      }
      unrecorded_[id] = std::move(tp);
      observer_->on_transfer_over(id, attempt);
      return;
    }
    report(std::move(tp));
  }

  void report(std::unique_ptr<Transfer> tp) {
    Transfer& t = *tp;
    Result res;
    res.download_path = t.download_path;
    res.file = t.file;
    // Segmented: a stopped or failed attempt promises its gap-free prefix only (the segment
    // map of the last checkpoint holds the rest).
    res.bytes = t.segmented() ? t.prefix() : t.on_disk;
    if (t.segmented()) res.segments = spans(t);
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
    // The sum goes with a finished file only; any other end lets go of it (and its .part).
    if (res.outcome == Outcome::kCompleted) res.prefix_hash = t.hash;
    t.hash.reset();
    observer_->on_finished(t.req.job_id, t.req.attempt, std::move(res));
    std::lock_guard lk(mu_);
    if (--outstanding_ == 0) idle_cv_.notify_all();
  }

  EngineOptions options_;
  util::Env& env_;
  Observer* observer_;
  Placer placer_;
  PrefixHasher hasher_{env_};
  std::map<int64_t, std::unique_ptr<Transfer>> transfers_;  // fetcher thread only
  // Ended attempts whose .part's record is not answered yet (fetcher thread only).
  std::map<int64_t, std::unique_ptr<Transfer>> unrecorded_;
  // Fetcher thread only: each fetch's job, and the origin it asks (a connection of that host).
  struct Owner {
    int64_t job = 0;
    std::string origin;
  };
  std::map<FetchId, Owner> by_fetch_;
  struct HostCap {
    int cap = 16;
    SteadyClock::time_point until{};
  };
  std::map<std::string, HostCap> host_caps_;  // fetcher thread only: by url_origin()
  // Fetcher thread only: requests waiting for a slot (max_transfers), oldest first; how many
  // began and have not finished; whether begin_waiting() is running.
  std::deque<Request> waiting_;
  int begun_ = 0;
  bool beginning_ = false;

  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<Request> pending_;
  std::vector<int64_t> stops_;
  std::optional<int64_t> global_limit_;                   // set since the last on_wake
  int64_t rate_limit_now_ = 0;  // fetcher thread only: the queue's limit in force (0: none)
  std::vector<std::pair<int64_t, int64_t>> job_limits_;  // (job, bytes/s) since the last on_wake
  struct Record {
    int64_t job;
    int attempt;
    bool ok;
  };
  std::vector<Record> records_;  // part_recorded answers since the last on_wake
  bool stop_all_ = false;
  bool give_back_ = false;
  bool quit_ = false;
  bool woken_ = false;  // a wake-up is on its way and on_wake() has not run since
  int64_t outstanding_ = 0;
  Fetcher fetcher_;  // last: its thread calls into the members above
};

Engine::Engine(EngineOptions options, Observer* observer, PathRegistry* paths)
    : impl_(std::make_unique<Impl>(options, observer, paths)) {}
Engine::~Engine() = default;
void Engine::submit(Request request) { impl_->submit(std::move(request)); }
void Engine::stop(int64_t job_id) { impl_->stop(job_id); }
void Engine::stop_all() { impl_->stop_all(); }
void Engine::give_back_waiting() { impl_->give_back_waiting(); }
void Engine::set_rate_limit(int64_t bytes_per_second) { impl_->set_rate_limit(bytes_per_second); }
void Engine::set_job_rate_limit(int64_t job_id, int64_t bytes_per_second) {
  impl_->set_job_rate_limit(job_id, bytes_per_second);
}
void Engine::part_recorded(int64_t job_id, int attempt, bool recorded) {
  impl_->part_recorded(job_id, attempt, recorded);
}
void Engine::wait_idle() { impl_->wait_idle(); }

}  // namespace fetchq::transfer
