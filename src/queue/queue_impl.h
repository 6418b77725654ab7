// QueueImpl: the DownloadQueue behind DownloadQueue::open. Private to src/queue.
//
// Threads and who owns what:
// - API callers (any thread) validate input and read or write the store directly when the step
//   needs no ordering with transfers (submit, list, resume, retry, prune, join, events). Steps
//   that must be ordered with the transfers (cancel, pause, shutdown) run as commands on the loop
//   thread (on_loop), so no lock has to be held across their store writes.
// - The transfer thread (transfer::Engine) reports through the Observer methods, which only post
//   messages to inbox_; it never calls the store.
// - The loop thread owns active_ and everything marked "loop thread": it takes messages and
//   commands from inbox_, writes a batch's state and events in one transaction (group commit),
//   claims more jobs (scheduler.h) and hands completed downloads to the settle thread.
// - The settle thread (settler.h) syncs, seals and renames finished files and posts them back.
// - The checkpoint thread syncs a .part before its checkpoint is recorded, so neither the loop's
//   commits (progress) nor the transfers wait for a disk busy with a big file.
// - Callbacks run on the CallbackRunner's thread.
// Locks: inbox_'s, changed_mu_, rate_'s and shut_mu_ each guard a few fields and are never held
// across store I/O or a blocking syscall (tests check it with a store that asks
// queue_locks_held()). The store has its own lock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "fetchq/queue.h"
#include "queue/callback_runner.h"
#include "queue/checked_mutex.h"
#include "queue/claim_ahead.h"
#include "queue/events.h"
#include "queue/loop_inbox.h"
#include "queue/messages.h"
#include "queue/rate_meter.h"
#include "queue/retry_policy.h"
#include "queue/scheduler.h"
#include "queue/settler.h"
#include "queue/worker.h"
#include "store/store.h"
#include "transfer/engine.h"
#include "util/clock.h"
#include "util/env.h"

namespace fetchq::queue {

// Builds a queue on `store` (DownloadQueue::open passes the SQLite one; tests wrap it).
// Every file-system call of the transfers, checkpoints and the settle step goes through `env`,
// which must outlive the queue (tests pass one that fails chosen calls).
std::unique_ptr<DownloadQueue> make_queue(QueueOptions options,
                                          std::unique_ptr<store::Store> store,
                                          util::Env& env = util::Env::posix());

// What the commit of a batch of reports must survive: a crash of the process only when the
// batch holds progress, checkpoints and transfer ends alone (progress_only) and the events
// committed so since the last durable commit, with the batch's, stay within
// store::kMaxUnsyncedEvents; else a power cut too.
store::Commit batch_commit(bool progress_only, int64_t unsynced_events, int64_t batch_events);
// The events in crash-safe commits since the last durable one, after a commit of `commit` that
// appended `appended` events.
int64_t unsynced_after(store::Commit commit, int64_t unsynced_events, int64_t appended);

class QueueImpl final : public DownloadQueue, public transfer::Observer {
 public:
  using Clock = util::SteadyClock;

  QueueImpl(QueueOptions options, std::unique_ptr<store::Store> store, util::Env& env);
  ~QueueImpl() override;

  // DownloadQueue (queue.cpp)
  Result<Job> download(const DownloadRequest& request) override;
  Result<std::vector<Job>> download_batch(const std::vector<DownloadRequest>& requests) override;
  std::vector<Job> list_jobs(const ListFilter& filter) override;
  std::optional<Job> id_to_job(int64_t id) override;
  Result<Job> cancel_job(int64_t id) override;
  Result<Job> pause_job(int64_t id) override;
  Result<Job> resume_job(int64_t id) override;
  Result<Job> retry_job(int64_t id) override;
  Result<Job> set_url(int64_t id, const std::string& url) override;
  void allow_jobs(const std::vector<int64_t>& ids) override;
  int64_t cancel_all_jobs() override;
  int64_t prune_jobs(const PruneFilter& filter) override;
  bool join(std::optional<std::chrono::milliseconds> timeout,
            const std::vector<int64_t>& wanted) override;
  QueueStats stats() override;
  Status set_rate_limit(int64_t bytes_per_second) override;
  int64_t rate_limit() override;
  Result<Job> set_job_rate_limit(int64_t id, int64_t bytes_per_second) override;
  std::vector<Event> events_since(int64_t since, int64_t limit,
                                  std::chrono::milliseconds wait) override;
  int64_t last_event_seq() override;
  int64_t first_event_seq() override;
  void shutdown() override;

 private:
  using Ops = std::vector<std::function<void()>>;

  // transfer::Observer, on the transfer thread (queue_loop.cpp)
  void on_started(int64_t id, int attempt, const transfer::Started& s) override;
  void on_progress(int64_t id, int attempt, int64_t bytes, int64_t total,
                   std::vector<transfer::SegmentSpan> segments) override;
  void on_checkpoint(int64_t id, int attempt, std::shared_ptr<transfer::PartFile> file,
                     int64_t bytes, std::vector<transfer::SegmentSpan> segments) override;
  void on_finished(int64_t id, int attempt, transfer::Result r) override;
  void on_source_dropped(int64_t id, int attempt, bool own, const std::string& url,
                         const std::string& reason) override;
  void on_part_created(int64_t id, int attempt, const std::string& path,
                       const transfer::PartIdentity& identity) override;
  void on_transfer_over(int64_t id, int attempt) override;

  // Runs fn on the loop thread, ordered with its batches, and returns what fn returns (or
  // rethrows what it threw). Runs fn on the calling thread once the loop has ended.
  // What fn threw comes back as a value and is thrown anew on the calling thread: an exception
  // object shared by two threads is freed through libstdc++'s own reference count, which
  // ThreadSanitizer cannot see (it reported the free as a race).
  template <class F>
  auto on_loop(F fn) -> decltype(fn()) {
    using R = decltype(fn());
    struct Outcome {
      std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
      std::optional<Error> storage;
      std::optional<std::string> other;
    };
    auto task = std::make_shared<std::packaged_task<Outcome()>>([fn = std::move(fn)]() mutable {
      Outcome o;
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
          o.value.emplace(true);
        } else {
          o.value.emplace(fn());
        }
      } catch (const StorageError& e) {
        o.storage.emplace(e.error());
      } catch (const std::exception& e) {
        o.other.emplace(e.what());
      } catch (...) {
        o.other.emplace("unknown exception");
      }
      return o;
    });
    auto result = task->get_future();
    if (std::this_thread::get_id() == loop_id_.load() ||
        !inbox_.post_command([task] { (*task)(); })) {
      (*task)();
    }
    Outcome o = result.get();
    if (o.storage) throw StorageError(std::move(*o.storage));
    if (o.other) throw std::runtime_error(*o.other);
    if constexpr (!std::is_void_v<R>) return std::move(*o.value);
  }

  // queue.cpp: API helpers, which may throw StorageError (the public calls catch it).
  Result<Job> cancel(int64_t id);
  Result<Job> pause(int64_t id);
  // A value holding a job: nothing changed, answer with it.
  Result<std::optional<Job>> cancel_on_loop(int64_t id);
  Result<std::optional<Job>> pause_on_loop(int64_t id);
  Status set_url_on_loop(int64_t id, const std::string& url);
  Result<Job> back_to_waiting(int64_t id, JobStatus from, const char* rule);
  Result<Job> after_change(int64_t id, const std::function<void(const Job&)>& cb);
  static Error not_found(int64_t id);
  void notify_changed();
  // store_->transaction, and then the seqs of the events it appended are given out (last_seq_):
  // a transaction that is rolled back gives none, since its seqs will be taken again. Never
  // called inside a plain store_->transaction, whose commit it would not wait for.
  void transaction(const std::function<void()>& body,
                   store::Commit commit = store::Commit::kDurable);
  // Appends an event; the caller is inside transaction() (or needs none).
  void append_event(int64_t job_id, const EventRecord& event);
  // How many events append_event appended on the calling thread so far.
  static int64_t events_appended_here();
  int64_t trim_events();

  // queue_loop.cpp: the loop thread.
  void loop();
  void run_commands(std::vector<std::function<void()>>& commands);
  void process(std::vector<Msg>& batch);
  void hand_to_settler(std::vector<Msg>& batch);
  void schedule();
  // A store call of the queue's threads failed while doing `what`: logged as an error, or, when
  // opts_.on_store_error is set, handed to it (and logged at debug level only).
  void store_failed(const std::exception& e, const std::string& what) noexcept;
  void launch(Launch& l);
  // Removes the .part of a job that no transfer holds (cancelled while not running, or
  // pruned after an error) when it is the file the job created (`part`, its recorded identity;
  // none recorded: nothing is removed), reached through its folder opened from its download
  // root without following a link; unless another job's transfer holds that name now. A .part
  // someone else made there, or a folder swapped for a link, is left alone.
  void drop_part(const std::string& download_path,
                 const std::optional<store::ClaimedJob::PartRecord>& part);
  void launch_deferred(int64_t id);
  // A sync of the job's .part failed in `attempt`: in the batch's transaction, no rerun keeps
  // more than the last checkpoint (Store::forget_unsynced); a launch of the job claimed
  // before that (deferred) is cut back to it too.
  void forget_unsynced(int64_t id, int attempt, Ops& db);
  void handle(StartedMsg& m, Ops& db, Ops& after);
  void handle(ProgressMsg& m, Ops& db, Ops& after);
  void handle(CheckpointMsg& m, Ops& db, Ops& after);
  void sync_checkpoints(std::vector<CheckpointMsg>& batch);  // on the checkpoint thread
  void keep_under_part_name(FinishedMsg& m);
  void handle(FinishedMsg& m, Ops& db, Ops& after);
  void handle(SourceDroppedMsg& m, Ops& db, Ops& after);
  void handle(PartCreatedMsg& m, Ops& db, Ops& after);
  void handle(TransferOverMsg&, Ops&, Ops&) {}  // taken in loop(): the slot goes back at once
  void complete(FinishedMsg& m, const Active& a, Ops& db, Ops& after);
  void already_there(FinishedMsg& m, const Active& a, Ops& db, Ops& after);
  void failed(FinishedMsg& m, const Active& a, Ops& db, Ops& after);
  void fire(int64_t id, const std::function<void(const Job&)>& cb);
  RetryOptions retry_options() const;
  double jitter();

  QueueOptions opts_;
  util::Env& env_;  // every file-system call of checkpoints and the settle step
  std::unique_ptr<store::Store> store_;
  transfer::PathRegistry paths_;
  CallbackRunner callbacks_;
  LoopInbox inbox_;
  RateMeter rate_;

  // Loop thread only.
  std::map<int64_t, Active> active_;
  // Claimed while the job's last attempt was still letting go of its files (a pause, then a
  // resume at once): launched once that attempt has ended. Loop thread only.
  std::map<int64_t, Launch> deferred_;
  // Deferred launches claimed before their job's unsynced bytes were forgotten: cut back when
  // they start (launch_deferred). Loop thread only.
  std::set<int64_t> unsynced_;
  // Checkpoints with the checkpoint thread, by job: each holds the job's .part. Loop thread only.
  std::map<int64_t, int> checkpoints_out_;
  Clock::time_point next_wake_ = Clock::now();
  ClaimAhead claim_ahead_;  // loop thread only
  bool stopping_ = false;  // shutdown began: claim nothing more
  std::mt19937_64 rng_;
  int batches_since_trim_ = 0;
  bool batch_committed_ = false;  // loop thread: the last batch's transaction was committed
  // Loop thread: progress events of the batch being handled, and events committed crash-safe
  // since the last durable commit (kept under store::kMaxUnsyncedEvents).
  // Starts full: the crash-safe commits of an earlier process of this boot may still be
  // unsynced, so the first batch of progress events waits for the disk.
  int64_t batch_progress_events_ = 0;
  int64_t unsynced_events_ = store::kMaxUnsyncedEvents;

  CheckedMutex shut_mu_;
  bool shut_ = false;  // under shut_mu_: shutdown() ran
  // Set as shutdown() begins: the loop stops trying again a commit the store refuses (the jobs
  // stay running on record and the next start recovers them).
  std::atomic<bool> shutting_down_{false};

  // Where the last join with a timeout left its walk (see queue/join_walk.h): a waiter that
  // redraws between calls (fetchq get) asks again with the same ids and goes on from there
  // instead of reading every ended job again. Only a starting point: the walk's final check
  // over all ids stays, so a stale place costs a second walk, never a wrong answer.
  CheckedMutex join_place_mu_;
  uint64_t join_place_key_ = 0;  // under join_place_mu_: ids_key() of the ids walked
  size_t join_place_ended_ = 0;  // under join_place_mu_

  CheckedMutex changed_mu_;
  std::condition_variable_any changed_cv_;
  int64_t change_count_ = 0;  // under changed_mu_
  int64_t last_seq_ = 0;      // under changed_mu_
  bool closed_ = false;       // under changed_mu_
  // The jobs a transfer still holds (active_'s keys, kept here for join): a job cancelled while
  // running has ended on record before its transfer has let go of the .part and removed it.
  std::set<int64_t> holding_;  // under changed_mu_

  std::atomic<int64_t> rate_limit_{0};  // the queue's bandwidth limit; set on the loop thread

  Clock::time_point started_at_;
  std::unique_ptr<Settler> settler_;
  std::unique_ptr<Worker<CheckpointMsg>>
      checkpoints_;  // syncs .part files for handle(CheckpointMsg)
  std::unique_ptr<transfer::Engine> engine_;
  std::thread loop_;
  std::atomic<std::thread::id> loop_id_{};  // set once the loop thread runs
};

}  // namespace fetchq::queue
