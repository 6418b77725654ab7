// The queue: decides what runs, turns transfer reports into durable state, events and callbacks.
//
// Threads: the engine's transfer thread reports into inbox_; the loop thread takes batches from
// it, writes all resulting state and events in one transaction (group commit) and claims more
// jobs. Finished downloads go from the loop to the settle thread, which syncs them (with the
// sync pool), commits their sizes, renames them into place and hands them back to the loop,
// so new transfers start while earlier files are being made durable. Lock order is mu_ before
// the store's own lock, never the reverse.
#include <fcntl.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <variant>

#include "fetchq/queue.h"
#include "queue/callback_runner.h"
#include "queue/join_walk.h"
#include "queue/open_with_env.h"
#include "queue/request_check.h"
#include "queue/sync_pool.h"
#include "store/store.h"
#include "transfer/engine.h"
#include "util/clock.h"
#include "util/env.h"
#include "util/fs.h"
#include "util/thread_name.h"

namespace fetchq {
namespace {

using json = nlohmann::json;
using Clock = util::SteadyClock;

struct StartedMsg {
  int64_t id;
  int attempt;
  transfer::Started s;
};
struct ProgressMsg {
  int64_t id;
  int attempt;
  int64_t bytes, total;
};
struct CheckpointMsg {
  int64_t id;
  int attempt;
  std::shared_ptr<transfer::PartFile> file;
  int64_t bytes;
};
struct FinishedMsg {
  int64_t id;
  int attempt;
  transfer::Result r;
  bool settled = false;  // back from the settle thread: renamed, or failure set in r
  bool renamed = false;  // synced, its size committed and renamed into place (settle_files)
  bool recovered = false;  // found whole on disk after a crash between rename and commit
};
using Msg = std::variant<StartedMsg, ProgressMsg, CheckpointMsg, FinishedMsg>;

enum class Stop { kNone, kCancel, kPause, kShutdown };

// A job handed to the engine and not yet settled.
struct Active {
  int attempt = 0;
  std::string source;
  std::string download_path;
  Stop stop = Stop::kNone;
  bool finishing = false;  // renaming into place: too late to cancel
  bool transferring = true;  // holds one of the max_parallel slots
  bool resumed = false;
  int failures = 0;
  std::optional<int64_t> failing_since_ms;
  int64_t best_bytes = 0;
  std::optional<std::string> sha256;
  IfExists if_exists = IfExists::kError;
};

class Queue final : public DownloadQueue, public transfer::Observer {
 public:
  Queue(QueueOptions options, std::unique_ptr<store::Store> store, util::Env& env)
      : opts_(std::move(options)), env_(env), store_(std::move(store)), rng_(std::random_device{}()) {
    if (opts_.only_jobs) std::sort(opts_.only_jobs->begin(), opts_.only_jobs->end());
    last_seq_ = store_->last_event_seq();
    while (trim_events() > 0) {  // a log left long by an older fetchq or a larger setting
    }
    int64_t recovered = store_->recover_running();
    if (recovered > 0) spdlog::info("{} job(s) left running by the last stop will resume", recovered);
    transfer::EngineOptions eo;
    eo.connect_timeout = opts_.connect_timeout;
    eo.stall_timeout = opts_.stall_timeout;
    eo.progress_interval = opts_.progress_interval;
    eo.checkpoint_interval = opts_.checkpoint_interval;
    eo.block_private_addresses = opts_.block_private_addresses;
    eo.env = &env_;
    engine_ = std::make_unique<transfer::Engine>(eo, static_cast<transfer::Observer*>(this), &paths_);
    started_at_ = Clock::now();
    loop_ = std::thread([this] {
      util::name_this_thread("fetchq-queue");
      loop();
    });
    settler_ = std::thread([this] {
      util::name_this_thread("fetchq-settle");
      settle_loop();
    });
  }

  ~Queue() override { shutdown(); }

  Result<Job> download(const DownloadRequest& request) override {
    auto jobs = download_batch({request});
    if (!jobs) return jobs.error();
    return std::move(jobs.value().front());
  }

  Result<std::vector<Job>> download_batch(const std::vector<DownloadRequest>& requests) override {
    std::vector<store::NewJob> news;
    news.reserve(requests.size());
    queue::DestCache dest_facts;
    for (size_t i = 0; i < requests.size(); ++i) {
      auto nj = queue::check_request(requests[i], opts_.download_roots, &dest_facts);
      if (!nj) {
        auto e = nj.error();
        if (requests.size() > 1) e.message = "job " + std::to_string(i) + ": " + e.message;
        return e;
      }
      auto& opt = nj.value().request.options;
      if (!opt.access_token) {
        for (const auto& rule : opts_.token_rules) {
          if (queue::token_rule_applies(rule.host_pattern, nj.value().request.source)) {
            opt.access_token = rule.token;
            break;
          }
        }
      }
      news.push_back(std::move(nj.value()));
    }
    std::vector<Job> jobs;
    try {
      jobs = store_->insert_jobs(news, util::now_iso8601());
    } catch (const std::exception& e) {
      return make_error(ErrorCode::kStorage, std::string("cannot store the jobs: ") + e.what());
    }
    wake();
    return jobs;
  }

  std::vector<Job> list_jobs(const ListFilter& filter) override { return store_->list_jobs(filter); }
  std::optional<Job> id_to_job(int64_t id) override { return store_->get_job(id); }

  Result<Job> cancel_job(int64_t id) override {
    std::unique_lock lk(mu_);
    auto job = store_->get_job(id);
    if (!job) return not_found(id);
    if (job->status == JobStatus::kCancelled) return *job;
    auto it = active_.find(id);
    if (it != active_.end() && it->second.finishing) {
      return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is completing");
    }
    const std::string now = util::now_iso8601();
    bool changed = false;
    store_->transaction([&] {
      changed = store_->change_status(
          id, {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused}, JobStatus::kCancelled, now);
      if (changed) append_event(id, "download_cancelled", {{"source", job->source}});
    });
    if (!changed) {
      return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " already ended (" +
                                                    std::string(to_string(job->status)) + ")");
    }
    if (it != active_.end()) {
      it->second.stop = Stop::kCancel;  // the .part goes once the transfer has let go of it
      engine_->stop(id);
    } else if (job->download_path && !paths_.held(*job->download_path)) {
      ::unlink((*job->download_path + ".part").c_str());
    }
    lk.unlock();
    notify_changed();
    return after_change(id, opts_.callbacks.on_cancelled);
  }

  Result<Job> pause_job(int64_t id) override {
    std::unique_lock lk(mu_);
    auto job = store_->get_job(id);
    if (!job) return not_found(id);
    if (job->status == JobStatus::kPaused) return *job;
    auto it = active_.find(id);
    if (it != active_.end() && it->second.finishing) {
      return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is completing");
    }
    bool changed = false;
    store_->transaction([&] {
      changed = store_->change_status(id, {JobStatus::kWaiting, JobStatus::kRunning},
                                      JobStatus::kPaused, util::now_iso8601());
      if (changed) append_event(id, "download_paused", {{"source", job->source}});
    });
    if (!changed) {
      return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is " +
                                                    std::string(to_string(job->status)) +
                                                    ": only waiting or running jobs pause");
    }
    if (it != active_.end()) {
      it->second.stop = Stop::kPause;
      engine_->stop(id);
    }
    lk.unlock();
    notify_changed();
    return after_change(id, opts_.callbacks.on_paused);
  }

  Result<Job> resume_job(int64_t id) override {
    return back_to_waiting(id, JobStatus::kPaused, "only paused jobs resume");
  }

  Result<Job> retry_job(int64_t id) override {
    return back_to_waiting(id, JobStatus::kError, "only jobs that ended in error are retried");
  }

  int64_t cancel_all_jobs() override {
    int64_t n = 0;
    for (int64_t id : store_->ids_in({JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused})) {
      auto r = cancel_job(id);
      if (r && r->status == JobStatus::kCancelled) ++n;
    }
    return n;
  }

  int64_t prune_jobs() override {
    std::lock_guard lk(mu_);
    auto pruned = store_->prune(util::now_iso8601());
    for (const auto& p : pruned) {
      // An error job keeps its .part for retry; once pruned nobody will resume it.
      if (p.status == JobStatus::kError && p.download_path && !paths_.held(*p.download_path)) {
        ::unlink((*p.download_path + ".part").c_str());
      }
    }
    return static_cast<int64_t>(pruned.size());
  }

  bool join(std::optional<std::chrono::milliseconds> timeout, const std::vector<int64_t>& wanted) override {
    auto deadline = timeout ? Clock::now() + *timeout : Clock::time_point::max();
    const std::vector<int64_t> ids = queue::sorted_unique(wanted);
    size_t ended = 0;  // see queue/join_walk.h
    auto done_now = [&] {
      if (ids.empty()) return !store_->any_unfinished({});
      if (!queue::walk_past_ended(ids, &ended, [&](int64_t id) { return store_->get_job(id); })) return false;
      if (!store_->any_unfinished(ids)) return true;
      ended = 0;
      return false;
    };
    std::unique_lock lk(changed_mu_);
    for (;;) {
      int64_t seen = change_count_;
      lk.unlock();
      bool done = done_now();
      lk.lock();
      if (done) return true;
      auto pred = [&] { return change_count_ != seen; };
      if (timeout) {
        if (!changed_cv_.wait_until(lk, deadline, pred)) return false;
      } else {
        changed_cv_.wait(lk, pred);
      }
    }
  }

  QueueStats stats() override {
    auto c = store_->counts();
    QueueStats s;
    s.waiting = c.waiting;
    s.running = c.running;
    s.paused = c.paused;
    s.completed = c.completed;
    s.cancelled = c.cancelled;
    s.error = c.error;
    s.uptime_seconds = std::chrono::duration<double>(Clock::now() - started_at_).count();
    std::lock_guard lk(mu_);
    s.bytes_per_second = rate_;
    return s;
  }

  std::vector<Event> events_since(int64_t since, int64_t limit, std::chrono::milliseconds wait) override {
    auto deadline = Clock::now() + wait;
    {
      std::unique_lock lk(changed_mu_);
      changed_cv_.wait_until(lk, deadline, [&] { return last_seq_ > since || closed_; });
    }
    return store_->events_since(since, limit, std::nullopt);
  }

  int64_t last_event_seq() override {
    std::lock_guard lk(changed_mu_);
    return last_seq_;
  }

  int64_t first_event_seq() override { return store_->first_event_seq(); }

  void shutdown() override {
    {
      std::lock_guard lk(mu_);
      if (shut_) return;
      shut_ = true;
      for (auto& [id, a] : active_) {
        if (a.stop == Stop::kNone) a.stop = Stop::kShutdown;
      }
    }
    engine_->stop_all();
    engine_->wait_idle();
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    loop_.join();  // returns once nothing is left with the settle thread either
    {
      std::lock_guard lk(mu_);
      settle_quit_ = true;
    }
    settle_cv_.notify_all();
    settler_.join();
    engine_.reset();
    callbacks_.drain();
    {
      std::lock_guard lk(changed_mu_);
      closed_ = true;
    }
    changed_cv_.notify_all();
  }

 private:
  // ---- engine reports (engine thread): queue them for the loop.
  void on_started(int64_t id, int attempt, const transfer::Started& s) override {
    post(StartedMsg{id, attempt, s});
  }
  void on_progress(int64_t id, int attempt, int64_t bytes, int64_t total) override {
    post(ProgressMsg{id, attempt, bytes, total});
  }
  void on_checkpoint(int64_t id, int attempt, std::shared_ptr<transfer::PartFile> file,
                     int64_t bytes) override {
    post(CheckpointMsg{id, attempt, std::move(file), bytes});
  }
  void on_finished(int64_t id, int attempt, transfer::Result r) override {
    post(FinishedMsg{id, attempt, std::move(r)});
  }
  // Synchronous, on the engine thread: the identity must be on record before a byte of the
  // .part is promised, or a crash would leave a file no later run could prove is the job's.
  bool on_part_created(int64_t id, int attempt, const std::string& path,
                       const transfer::PartIdentity& identity) override {
    try {
      return store_->record_part(id, attempt, path, identity.dev, identity.ino,
                                 identity.birth_ns);
    } catch (const std::exception& e) {
      spdlog::error("job {}: cannot record {}.part: {}", id, path, e.what());
      return false;
    }
  }

  void post(Msg m) {
    {
      std::lock_guard lk(mu_);
      inbox_.push_back(std::move(m));
    }
    cv_.notify_one();
  }

  void wake() {
    {
      std::lock_guard lk(mu_);
      wake_ = true;
    }
    cv_.notify_one();
  }

  void notify_changed() {
    {
      std::lock_guard lk(changed_mu_);
      ++change_count_;
    }
    changed_cv_.notify_all();
    if (opts_.on_change) opts_.on_change();
  }

  static Error not_found(int64_t id) {
    return make_error(ErrorCode::kNotFound, "no job with id " + std::to_string(id));
  }

  Result<Job> after_change(int64_t id, const std::function<void(const Job&)>& cb) {
    auto job = store_->get_job(id);
    if (!job) return not_found(id);
    if (cb) callbacks_.post([cb, j = *job] { cb(j); });
    return *job;
  }

  Result<Job> back_to_waiting(int64_t id, JobStatus from, const char* rule) {
    std::unique_lock lk(mu_);
    auto job = store_->get_job(id);
    if (!job) return not_found(id);
    if (!store_->change_status(id, {from}, JobStatus::kWaiting, util::now_iso8601())) {
      if (job->status == JobStatus::kWaiting || job->status == JobStatus::kRunning) return *job;
      return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is " +
                                                    std::string(to_string(job->status)) + ": " + rule);
    }
    wake_ = true;
    lk.unlock();
    cv_.notify_one();
    notify_changed();
    return after_change(id, nullptr);
  }

  // Appends an event; the caller is inside a store transaction (or needs none).
  void append_event(int64_t job_id, const char* type, const json& payload) {
    int64_t seq = store_->append_event(job_id, type, payload.dump(), util::now_iso8601());
    std::lock_guard lk(changed_mu_);
    last_seq_ = std::max(last_seq_, seq);
  }

  // ---- the loop thread
  void loop() {
    for (;;) {
      std::vector<Msg> batch;
      {
        std::unique_lock lk(mu_);
        auto until = next_wake_;
        cv_.wait_until(lk, until, [&] { return !inbox_.empty() || wake_ || (quit_ && settling_ == 0); });
        if (quit_ && inbox_.empty() && settling_ == 0) return;
        wake_ = false;
        batch.assign(std::make_move_iterator(inbox_.begin()), std::make_move_iterator(inbox_.end()));
        inbox_.clear();
        // A finished transfer gives its slot back now: the engine starts the next job while the
        // finished one is synced and recorded below.
        for (auto& m : batch) {
          auto* f = std::get_if<FinishedMsg>(&m);
          if (!f) continue;
          auto it = active_.find(f->id);
          if (it != active_.end() && it->second.attempt == f->attempt) it->second.transferring = false;
        }
      }
      if (!batch.empty()) {
        schedule();
        process(batch);
        // Let go of the .part files the messages hold before a retry of the same job can start:
        // it takes the file's lock anew.
        batch.clear();
      }
      schedule();
    }
  }

  void process(std::vector<Msg>& batch) {
    hand_to_settler(batch);
    std::vector<std::function<void()>> db_ops;    // run inside one transaction
    std::vector<std::function<void()>> after_ops; // run after the commit
    for (auto& m : batch) {
      std::visit([&](auto& msg) { handle(msg, db_ops, after_ops); }, m);
    }
    // The batch is rolled back as a whole on failure (e.g. another process holding a write
    // lock past the busy timeout), so it can simply be run again; give up only after a minute.
    for (int tries = 1; !db_ops.empty(); ++tries) {
      try {
        store_->transaction([&] {
          for (auto& op : db_ops) op();
        });
        break;
      } catch (const std::exception& e) {
        spdlog::error("cannot record job state (try {}): {}", tries, e.what());
        if (tries >= 12) break;
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
    for (auto& op : after_ops) op();
    notify_changed();
    if (++batches_since_trim_ >= kTrimEveryBatches) {
      batches_since_trim_ = 0;
      trim_events();
    }
  }

  // Keeps the event log to opts_.event_retention; one small batch a call, so a long backlog is
  // worked off over many batches without holding the write lock for long.
  static constexpr int kTrimEveryBatches = 32;
  static constexpr int64_t kTrimBatch = 10000;
  int64_t trim_events() {
    if (opts_.event_retention <= 0) return 0;
    try {
      return store_->trim_events(opts_.event_retention, kTrimBatch);
    } catch (const std::exception& e) {
      spdlog::warn("cannot trim the event log: {}", e.what());
      return 0;
    }
  }

  using Ops = std::vector<std::function<void()>>;

  struct Settling {
    FinishedMsg f;
    Active a;
    std::optional<transfer::Failure> failure;
  };

  // Moves the downloads of the batch that completed to the settle thread, and notes what
  // the batch's started messages tell about their jobs (settle_files needs it).
  void hand_to_settler(std::vector<Msg>& batch) {
    std::vector<Settling> items;
    {
      std::lock_guard lk(mu_);
      std::vector<Msg> rest;
      rest.reserve(batch.size());
      for (auto& m : batch) {
        if (auto* s = std::get_if<StartedMsg>(&m)) {
          auto it = active_.find(s->id);
          if (it != active_.end() && it->second.attempt == s->attempt) {
            it->second.download_path = s->s.download_path;
            it->second.resumed = s->s.from_bytes > 0;
          }
        }
        auto* f = std::get_if<FinishedMsg>(&m);
        if (f && !f->settled && f->r.outcome == transfer::Outcome::kCompleted && f->r.file) {
          auto it = active_.find(f->id);
          if (it != active_.end() && it->second.attempt == f->attempt && it->second.stop == Stop::kNone) {
            it->second.finishing = true;  // too late to cancel from here on
            items.push_back({std::move(*f), it->second, std::nullopt});
            continue;
          }
        }
        rest.push_back(std::move(m));
      }
      batch.swap(rest);
      if (items.empty()) return;
      settling_ += items.size();
      for (auto& item : items) settle_inbox_.push_back(std::move(item));
    }
    settle_cv_.notify_one();
  }

  void settle_loop() {
    for (;;) {
      std::vector<Settling> items;
      {
        std::unique_lock lk(mu_);
        settle_cv_.wait(lk, [&] { return !settle_inbox_.empty() || settle_quit_; });
        if (settle_inbox_.empty()) return;
        items.swap(settle_inbox_);
      }
      settle_files(items);
      {
        std::lock_guard lk(mu_);
        for (auto& item : items) {
          item.f.settled = true;
          inbox_.push_back(std::move(item.f));
        }
        settling_ -= items.size();
      }
      cv_.notify_one();
    }
  }

  // For each filesystem holding at least opts_.syncfs_from of the items, one syncfs(). Which
  // items it wrote out is returned; their own sync is then only a check. syncfs() also waits for
  // other programs' unwritten data on that filesystem: when it took over kSlowSyncfs, the
  // filesystem is left to per-file fsync for kSyncfsPause.
  std::vector<bool> sync_filesystems(const std::vector<Settling>& items) {
    static constexpr auto kSlowSyncfs = std::chrono::seconds(1);
    static constexpr auto kSyncfsPause = std::chrono::seconds(60);
    std::vector<bool> out(items.size(), false);
    if (opts_.syncfs_from <= 0 || static_cast<int>(items.size()) < opts_.syncfs_from) return out;
    std::map<dev_t, std::vector<size_t>> by_fs;
    for (size_t i = 0; i < items.size(); ++i) {
      struct stat st {};
      if (env_.fstat(items[i].f.r.file->fd(), &st) == 0) by_fs[st.st_dev].push_back(i);
    }
    auto now = Clock::now();
    for (auto& [dev, idx] : by_fs) {
      if (static_cast<int>(idx.size()) < opts_.syncfs_from) continue;
      auto paused = syncfs_paused_until_.find(dev);
      if (paused != syncfs_paused_until_.end() && now < paused->second) continue;
      auto t0 = Clock::now();
      if (env_.syncfs(items[idx.front()].f.r.file->fd()) != 0) continue;  // each file's fsync will tell
      auto took = Clock::now() - t0;
      if (took > kSlowSyncfs) {
        spdlog::info("syncfs took {} ms; syncing files one by one for a while",
                     std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
        syncfs_paused_until_[dev] = Clock::now() + kSyncfsPause;
      }
      for (size_t i : idx) out[i] = true;
    }
    return out;
  }

  // All file-system work for downloads that completed, done together: data synced in parallel
  // (and checked against its sha256), sizes committed in one transaction, renames, then one
  // fsync per folder. A crash at any point leaves either a .part to resume or a whole file
  // whose size was committed first (see start()). Outcomes go into the messages.
  void settle_files(std::vector<Settling>& items) {
    using Item = Settling;
    std::vector<bool> written_out = sync_filesystems(items);
    std::vector<std::function<void()>> tasks;
    for (size_t i = 0; i < items.size(); ++i) {
      tasks.push_back([this, &item = items[i], after_syncfs = written_out[i]] {
        const auto& r = item.f.r;
        const std::string part = r.file->part_path();
        if ((after_syncfs ? env_.fdatasync(r.file->fd()) : env_.fsync(r.file->fd())) != 0) {
          item.failure = transfer::disk_failure(after_syncfs ? "fdatasync" : "fsync", part, errno);
          return;
        }
        if (!item.a.sha256) return;
        auto sum = util::sha256_file(part);
        if (!sum) {
          item.failure = transfer::Failure{"DiskError", sum.error().message, false, std::nullopt, false, true};
        } else if (*sum != *item.a.sha256) {
          // A resumed file may hide a bad splice: one more try, from zero. A fresh one is wrong.
          item.failure = transfer::Failure{"ChecksumMismatch",
                                           "sha256 of " + part + " is " + *sum + ", expected " + *item.a.sha256,
                                           item.a.resumed, std::nullopt, item.a.resumed, false};
        }
      });
    }
    sync_pool_.run(tasks);
    try {
      store_->transaction([&] {
        for (auto& item : items) {
          if (!item.failure) {
            store_->seal(item.f.id, item.f.attempt, item.f.r.download_path, item.f.r.bytes, util::boot_id());
          }
        }
      });
    } catch (const std::exception& e) {
      for (auto& item : items) {
        if (!item.failure) {
          item.failure = transfer::Failure{"DiskError", std::string("cannot record the finished file: ") + e.what(),
                                           true, std::nullopt, false, true};
        }
      }
    }
    std::map<std::string, std::vector<Item*>> folders;
    for (auto& item : items) {
      if (item.failure) continue;
      const std::string& path = item.f.r.download_path;
      const std::string part = path + ".part";
      int err = rename_into_place(*item.f.r.file, item.a.if_exists);
      if (err == EEXIST) {
        item.failure = transfer::Failure{"DestinationExists",
                                         path + " appeared while downloading; the download stays in " + part,
                                         false, std::nullopt, false, false};
      } else if (err != 0) {
        item.failure = transfer::disk_failure("rename " + part + " to", path, err);
      } else {
        folders[util::parent_dir(path)].push_back(&item);
      }
    }
    tasks.clear();
    for (auto& [dir, list] : folders) {
      tasks.push_back([this, &dir = dir, &list = list] {
        int err = env_.fsync(list.front()->f.r.file->folder().fd()) == 0 ? 0 : errno;
        if (err == 0) return;
        for (auto* item : list) item->failure = transfer::disk_failure("fsync the folder", dir, err);
      });
    }
    sync_pool_.run(tasks);
    for (auto& item : items) {
      if (item.failure) {
        item.f.r.failure = *item.failure;
        item.f.r.outcome = transfer::Outcome::kFailed;
        unmark_finishing(item.f.id);
      } else {
        item.f.renamed = true;
      }
    }
  }

  void handle(StartedMsg& m, Ops& db, Ops& after) {
    std::string source;
    {
      std::lock_guard lk(mu_);
      auto it = active_.find(m.id);
      if (it == active_.end() || it->second.attempt != m.attempt) return;
      it->second.download_path = m.s.download_path;
      it->second.resumed = m.s.from_bytes > 0;
      source = it->second.source;
    }
    db.push_back([this, m, source] {
      store::StartInfo info{m.s.download_path, m.s.total_bytes, m.s.etag, m.s.last_modified,
                            m.s.from_bytes};
      if (!store_->set_started(m.id, m.attempt, info)) return;
      if (m.s.restarted) store_->set_checkpoint(m.id, m.attempt, 0, util::boot_id());
      append_event(m.id, "download_started", {{"source", source}, {"download_path", m.s.download_path}});
      if (m.s.from_bytes > 0) {
        append_event(m.id, "download_resumed", {{"source", source}, {"from_bytes", m.s.from_bytes}});
      }
      if (m.s.restarted) {
        append_event(m.id, "download_restarted", {{"source", source}, {"reason", m.s.restart_reason}});
      }
    });
    after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_start); });
  }

  void handle(ProgressMsg& m, Ops& db, Ops& after) {
    std::string source, path;
    {
      std::lock_guard lk(mu_);
      auto it = active_.find(m.id);
      if (it == active_.end() || it->second.attempt != m.attempt) return;
      source = it->second.source;
      path = it->second.download_path;
      note_bytes(m.id, m.bytes);
    }
    db.push_back([this, m, source, path] {
      if (!store_->set_progress(m.id, m.attempt, m.bytes, m.total)) return;
      append_event(m.id, "download_progress", {{"source", source}, {"download_path", path},
                                               {"current_bytes", m.bytes}, {"total_bytes", m.total}});
    });
    after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_progress); });
  }

  void handle(CheckpointMsg& m, Ops& db, Ops&) {
    // Data first, then the byte count that promises it.
    if (env_.fdatasync(m.file->fd()) != 0) {
      spdlog::warn("{}", util::errno_message("fdatasync", m.file->part_path(), errno));
      return;
    }
    db.push_back([this, id = m.id, attempt = m.attempt, bytes = m.bytes] {
      store_->set_checkpoint(id, attempt, bytes, util::boot_id());
    });
  }

  void handle(FinishedMsg& m, Ops& db, Ops& after) {
    Active a;
    {
      std::lock_guard lk(mu_);
      auto it = active_.find(m.id);
      if (it == active_.end() || it->second.attempt != m.attempt) {
        if (m.r.path_held) paths_.release(m.r.download_path);
        return;
      }
      if (it->second.stop == Stop::kNone && m.r.outcome == transfer::Outcome::kCompleted) {
        it->second.finishing = true;
      }
      a = it->second;
    }
    auto& r = m.r;
    const int64_t id = m.id;
    const int attempt = m.attempt;
    auto release = [this, id, held = r.path_held, path = r.download_path] {
      if (held) paths_.release(path);
      {
        std::lock_guard lk(mu_);
        active_.erase(id);
        last_bytes_.erase(id);
      }
    };
    if (m.renamed) {  // whole and in place: a pause or shutdown asked meanwhile comes too late
      complete(m, a, db, after);
      after.push_back(release);
      return;
    }
    if (a.stop == Stop::kCancel) {
      if (r.file) unlink_part(*r.file);
      after.push_back(release);
      return;
    }
    if (a.stop != Stop::kNone || r.outcome == transfer::Outcome::kStopped) {
      // Pause or shutdown: keep the .part and promise what is in it.
      bool synced = r.file && env_.fdatasync(r.file->fd()) == 0;
      db.push_back([this, id, attempt, synced, bytes = r.bytes, stop = a.stop] {
        if (synced) store_->set_checkpoint(id, attempt, bytes, util::boot_id());
        if (stop != Stop::kPause) store_->requeue(id, attempt, 0, 0, std::nullopt, std::nullopt, std::nullopt);
      });
      after.push_back(release);
      return;
    }
    switch (r.outcome) {
      case transfer::Outcome::kCompleted: complete(m, a, db, after); break;
      case transfer::Outcome::kAlreadyThere: already_there(m, a, db, after); break;
      default: failed(m, a, db, after); break;
    }
    after.push_back(release);
  }

  void complete(FinishedMsg& m, const Active& a, Ops& db, Ops& after) {
    auto& r = m.r;
    const std::string& path = r.download_path;
    if (!m.renamed) {  // settle_files did not get to it (a stop came first): resume later
      r.failure = transfer::Failure{"DiskError", "the finished download " + path + ".part was not settled",
                                    true, std::nullopt, false, true};
      r.outcome = transfer::Outcome::kFailed;
      unmark_finishing(m.id);
      return failed(m, a, db, after);
    }
    db.push_back([this, id = m.id, attempt = m.attempt, bytes = r.bytes, source = a.source, path] {
      store::Finish f;
      f.status = JobStatus::kCompleted;
      f.bytes = bytes;
      f.total_bytes = bytes;
      if (!store_->finish(id, attempt, f, util::now_iso8601())) return;
      append_event(id, "download_progress", {{"source", source}, {"download_path", path},
                                             {"current_bytes", bytes}, {"total_bytes", bytes}});
      append_event(id, "download_complete", {{"source", source}, {"download_path", path},
                                             {"total_bytes", bytes}});
    });
    after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_complete); });
  }

  void already_there(FinishedMsg& m, const Active& a, Ops& db, Ops& after) {
    auto& r = m.r;
    if (r.file) unlink_part(*r.file);
    if (a.sha256) {
      auto sum = util::sha256_file(r.download_path);
      if (!sum || *sum != *a.sha256) {
        r.failure = m.recovered
                        ? transfer::Failure{"ChecksumMismatch",
                                            "sha256 of " + r.download_path + " differs from the one expected",
                                            false, std::nullopt, false}
                        : transfer::Failure{"DestinationExists",
                                            r.download_path + " already exists and its sha256 differs (if_exists is skip)",
                                            false, std::nullopt, false};
        r.outcome = transfer::Outcome::kFailed;
        return failed(m, a, db, after);
      }
    }
    db.push_back([this, id = m.id, attempt = m.attempt, bytes = r.bytes, source = a.source,
                  path = r.download_path] {
      store::Finish f;
      f.bytes = bytes;
      f.total_bytes = bytes;
      store::StartInfo info{path, bytes, "", "", bytes};
      store_->set_started(id, attempt, info);
      if (!store_->finish(id, attempt, f, util::now_iso8601())) return;
      append_event(id, "download_complete", {{"source", source}, {"download_path", path},
                                             {"total_bytes", bytes}});
    });
    after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_complete); });
  }

  void failed(FinishedMsg& m, const Active& a, Ops& db, Ops& after) {
    auto& r = m.r;
    const auto& f = r.failure;
    // Progress means going past the most bytes any attempt reached, so a server that keeps
    // cutting the same body short still runs out of attempts.
    const bool progressed = r.bytes > a.best_bytes && !f.restart_from_zero;
    int failures = progressed ? 1 : a.failures + 1;
    const int64_t now_ms = util::now_unix_ms();
    const int64_t since = progressed || !a.failing_since_ms ? now_ms : *a.failing_since_ms;
    bool retry = f.retryable && failures < opts_.max_attempts &&
                 now_ms - since < opts_.give_up_after.count();
    bool synced = r.file && r.bytes > 0 && !f.restart_from_zero && env_.fdatasync(r.file->fd()) == 0;
    if (r.file && r.bytes == 0 && !a.resumed) unlink_part(*r.file);
    if (retry) {
      int64_t delay = retry_delay_ms(failures, f.retry_after_ms, f.restart_from_zero);
      db.push_back([this, id = m.id, attempt = m.attempt, delay, failures, f, synced, bytes = r.bytes,
                    source = a.source, since] {
        if (synced) store_->set_checkpoint(id, attempt, bytes, util::boot_id());
        store_->note_best_bytes(id, bytes);
        if (!store_->requeue(id, attempt, util::now_unix_ms() + delay, failures, since, f.type, f.message)) {
          return;
        }
        if (f.restart_from_zero) {
          store_->reset_resume_state(id);
          append_event(id, "download_restarted", {{"source", source}, {"reason", f.message}});
        }
        append_event(id, "download_retrying", {{"source", source}, {"attempt", attempt},
                                               {"delay_s", static_cast<double>(delay) / 1000.0},
                                               {"reason", f.type + ": " + f.message}});
      });
      after.push_back([this, id = m.id, type = f.type, message = f.message, delay] {
        spdlog::info("job {}: {} ({}); retrying in {} ms", id, type, message, delay);
        std::lock_guard lk(mu_);
        next_wake_ = std::min(next_wake_, Clock::now() + std::chrono::milliseconds(delay));
      });
      return;
    }
    db.push_back([this, id = m.id, attempt = m.attempt, f, synced, bytes = r.bytes, source = a.source] {
      if (synced) store_->set_checkpoint(id, attempt, bytes, util::boot_id());
      if (f.restart_from_zero) store_->reset_resume_state(id);
      store::Finish fin;
      fin.status = JobStatus::kError;
      fin.bytes = f.restart_from_zero ? 0 : bytes;
      fin.error_type = f.type;
      fin.error = f.message;
      if (!store_->finish(id, attempt, fin, util::now_iso8601())) return;
      append_event(id, "download_error", {{"source", source}, {"error_type", f.type}, {"error", f.message}});
    });
    after.push_back([this, id = m.id, type = f.type, message = f.message] {
      spdlog::warn("job {} failed: {}: {}", id, type, message);
      fire(id, opts_.callbacks.on_error);
    });
  }

  int64_t retry_delay_ms(int failures, std::optional<int64_t> retry_after, bool immediate) {
    if (immediate) return 0;
    if (retry_after) return std::clamp<int64_t>(*retry_after, 0, 3600 * 1000);
    double base = static_cast<double>(opts_.retry_base_delay.count()) * std::pow(2.0, failures - 1);
    base = std::min(base, static_cast<double>(opts_.retry_max_delay.count()));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    std::lock_guard lk(mu_);
    return static_cast<int64_t>(base * jitter(rng_));
  }

  void unmark_finishing(int64_t id) {
    std::lock_guard lk(mu_);
    auto it = active_.find(id);
    if (it != active_.end()) it->second.finishing = false;
  }

  // Removes a transfer's .part through the folder it was opened in, never by a path whose
  // folders may have been swapped for links since.
  void unlink_part(const transfer::PartFile& file) {
    env_.unlinkat(file.folder().fd(), file.part_name().c_str(), 0);
  }

  // rename(2) of the .part to its final name, both relative to the folder the transfer opened
  // (never through a link swapped in since), without replacing an existing file unless the job
  // asked to overwrite. Returns 0 or an errno value.
  int rename_into_place(const transfer::PartFile& file, IfExists policy) {
    const int dfd = file.folder().fd();
    const std::string part = file.part_name(), name = file.final_name();
    int rc = policy == IfExists::kOverwrite
                 ? env_.renameat(dfd, part.c_str(), dfd, name.c_str())
                 : env_.renameat2(dfd, part.c_str(), dfd, name.c_str(), RENAME_NOREPLACE);
    return rc == 0 ? 0 : errno;
  }

  void fire(int64_t id, const std::function<void(const Job&)>& cb) {
    if (!cb) return;
    auto job = store_->get_job(id);
    if (job) callbacks_.post([cb, j = *job] { cb(j); });
  }

  // Keeps a rough transfer rate for stats; caller holds mu_.
  void note_bytes(int64_t id, int64_t bytes) {
    auto now = Clock::now();
    auto& prev = last_bytes_[id];
    if (bytes > prev) window_bytes_ += bytes - prev;
    prev = bytes;
    double secs = std::chrono::duration<double>(now - window_start_).count();
    if (secs >= 2.0) {
      rate_ = static_cast<double>(window_bytes_) / secs;
      window_bytes_ = 0;
      window_start_ = now;
    }
  }

  // Claims what fits in the free slots and hands it to the engine.
  void schedule() {
    std::unique_lock lk(mu_);
    next_wake_ = Clock::now() + std::chrono::seconds(5);
    if (shut_) return;
    int free = opts_.max_parallel;
    for (const auto& [id, a] : active_) free -= a.transferring ? 1 : 0;
    if (free > 0) {
      std::vector<store::ClaimedJob> claimed;
      try {
        claimed = store_->claim(free, util::now_unix_ms(), opts_.only_jobs, util::now_iso8601());
      } catch (const std::exception& e) {
        spdlog::error("cannot claim jobs: {}", e.what());
        return;
      }
      for (auto& c : claimed) start(c);
    }
    if (auto next = store_->next_retry_ms(util::now_unix_ms())) {
      int64_t in = std::max<int64_t>(0, *next - util::now_unix_ms());
      next_wake_ = std::min(next_wake_, Clock::now() + std::chrono::milliseconds(in + 5));
    }
  }

  // Caller holds mu_.
  void start(const store::ClaimedJob& c) {
    transfer::Request req;
    req.job_id = c.job.id;
    req.attempt = c.attempt;
    auto url = queue::transfer_url(c.job.source, c.url_password);
    req.url = std::move(url.url);
    req.username = std::move(url.user);
    req.password = std::move(url.password);
    req.dest = c.job.dest;
    req.dest_is_dir = c.dest_is_dir;
    req.if_exists = c.if_exists;
    req.download_path = c.job.download_path;
    req.etag = c.etag;
    req.last_modified = c.last_modified;
    req.access_token = c.access_token;
    req.expected_total = c.job.total_bytes;
    if (c.job.download_path && c.sealed_bytes && !util::exists(*c.job.download_path + ".part") &&
        util::file_size(*c.job.download_path) == c.sealed_bytes) {
      // The last run renamed the finished file into place and died before recording it.
      Active a;
      a.attempt = c.attempt;
      a.source = c.job.source;
      a.download_path = *c.job.download_path;
      a.sha256 = c.sha256;
      a.if_exists = c.if_exists;
      active_[c.job.id] = std::move(a);
      FinishedMsg f{c.job.id, c.attempt, {}};
      f.r.outcome = transfer::Outcome::kAlreadyThere;
      f.r.download_path = *c.job.download_path;
      f.r.bytes = *c.sealed_bytes;
      f.r.total_bytes = *c.sealed_bytes;
      f.recovered = true;
      inbox_.push_back(std::move(f));
      wake_ = true;
      return;
    }
    if (!opts_.download_roots.empty()) {
      req.confined = true;
      // A folder destination may be a root itself: its files are beneath it.
      const std::string probe = c.job.download_path ? *c.job.download_path : c.job.dest + "/x";
      req.root = util::root_of(probe, opts_.download_roots).value_or("");
    }
    if (c.job.download_path) {
      // How much of the job's .part may be kept; the engine checks that it is still the file
      // the job created and keeps no more than it holds. After a reboot only the synced
      // checkpoint is real. In the same boot the page cache survived, so the bytes the job
      // recorded as written (progress, about once a second) are too, but nothing beyond them:
      // bytes appended while fetchq was down are not the server's.
      const bool same_boot = c.checkpoint_boot_id == util::boot_id();
      req.offset = same_boot ? std::max(c.checkpoint_bytes, c.job.bytes) : c.checkpoint_bytes;
      if (c.part_identity) {
        req.part_identity = transfer::PartIdentity{c.part_identity->dev, c.part_identity->ino,
                                                   c.part_identity->birth_ns};
      } else {
        // A job from before identities were recorded: only a checkpoint made a promise.
        req.legacy_part = c.checkpoint_bytes > 0;
        req.offset = c.checkpoint_bytes;
      }
    }
    Active a;
    a.attempt = c.attempt;
    a.source = c.job.source;
    a.download_path = c.job.download_path.value_or("");
    a.failures = c.failures;
    a.failing_since_ms = c.failing_since_ms;
    a.best_bytes = c.best_bytes;
    a.sha256 = c.sha256;
    a.if_exists = c.if_exists;
    active_[c.job.id] = std::move(a);
    engine_->submit(std::move(req));
  }

  QueueOptions opts_;
  util::Env& env_;  // every file-system call of the settle step and checkpoints
  std::unique_ptr<store::Store> store_;
  transfer::PathRegistry paths_;
  queue::CallbackRunner callbacks_;
  queue::SyncPool sync_pool_{3};  // with the settle thread: four fsyncs at a time
  std::map<dev_t, Clock::time_point> syncfs_paused_until_;  // settle thread only

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Msg> inbox_;
  std::map<int64_t, Active> active_;
  bool wake_ = true;
  bool quit_ = false;
  std::thread settler_;
  std::condition_variable settle_cv_;
  std::vector<Settling> settle_inbox_;  // under mu_
  size_t settling_ = 0;                 // handed to the settle thread and not back yet
  bool settle_quit_ = false;
  bool shut_ = false;
  Clock::time_point next_wake_ = Clock::now();
  std::mt19937_64 rng_;
  std::map<int64_t, int64_t> last_bytes_;
  int64_t window_bytes_ = 0;
  Clock::time_point window_start_ = Clock::now();
  double rate_ = 0;

  std::mutex changed_mu_;
  std::condition_variable changed_cv_;
  int64_t change_count_ = 0;
  int64_t last_seq_ = 0;
  int batches_since_trim_ = 0;  // queue thread only
  bool closed_ = false;

  Clock::time_point started_at_;
  std::unique_ptr<transfer::Engine> engine_;
  std::thread loop_;
};

}  // namespace

Result<std::unique_ptr<DownloadQueue>> DownloadQueue::open(QueueOptions options) {
  return queue::open_with_env(std::move(options), util::Env::posix());
}

Result<std::unique_ptr<DownloadQueue>> queue::open_with_env(QueueOptions options, util::Env& env) {
  if (options.max_parallel < 1) return make_error(ErrorCode::kInvalidArgument, "max_parallel must be >= 1");
  auto store = store::open_sqlite_store(options.db_path, {});
  if (!store) return store.error();
  return std::unique_ptr<DownloadQueue>(
      std::make_unique<Queue>(std::move(options), std::move(store.value()), env));
}

}  // namespace fetchq
