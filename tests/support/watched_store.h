// WatchedStore: the real store behind a wrapper that checks who calls it, for tests of the
// queue's threads. Every call records a breach when the caller holds one of the queue's locks
// (queue::queue_locks_held()) or when the transfer thread calls it at all. Calls
// from the queue's loop thread can be made to throw, and commits to be slow.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "queue/checked_mutex.h"
#include "store/store.h"

namespace fetchq::testing {

inline std::string thread_name() {
  char buf[32] = {};
  ::pthread_getname_np(::pthread_self(), buf, sizeof buf);
  return buf;
}

class WatchedStore final : public store::Store {
 public:
  explicit WatchedStore(std::unique_ptr<store::Store> inner) : inner_(std::move(inner)) {}

  std::vector<std::string> breaches() {
    std::lock_guard lk(mu_);
    return breaches_;
  }
  int calls_from(const std::string& thread, const std::string& method) {
    std::lock_guard lk(mu_);
    return calls_[thread + " " + method];
  }
  // The next n calls of `method` from the loop thread throw.
  void fail_on_loop(const std::string& method, int n) {
    std::lock_guard lk(mu_);
    failures_[method] = n;
  }
  // The next n calls of `method` from any thread throw.
  void fail_anywhere(const std::string& method, int n) {
    std::lock_guard lk(mu_);
    failures_anywhere_[method] = n;
  }
  // The next n transactions of the loop thread throw once their body has run: all they did is
  // rolled back, as when the commit itself fails.
  void fail_loop_commits(int n) {
    std::lock_guard lk(mu_);
    failing_loop_commits_ = n;
  }
  std::atomic<int> slow_commit_ms{0};
  // How many transactions asked for each kind of commit.
  int commits_of(store::Commit kind) {
    std::lock_guard lk(mu_);
    return kind == store::Commit::kDurable ? durable_commits_ : crash_safe_commits_;
  }
  // Every method called inside a crash-safe transaction.
  std::set<std::string> called_in_crash_safe() {
    std::lock_guard lk(mu_);
    return called_in_crash_safe_;
  }

  // While held, a transaction of the loop thread waits before it begins; held_at_gate() says
  // how many wait. Keeps the loop busy while reports and commands pile up in its inbox.
  void hold_loop_transactions(bool hold) {
    {
      std::lock_guard lk(gate_mu_);
      gate_closed_ = hold;
    }
    gate_cv_.notify_all();
  }
  int held_at_gate() {
    std::lock_guard lk(gate_mu_);
    return at_gate_;
  }

  using Store::transaction;
  void transaction(const std::function<void()>& body, store::Commit commit) override {
    enter("transaction");
    if (thread_name() == "fetchq-queue") {
      std::unique_lock lk(gate_mu_);
      ++at_gate_;
      gate_cv_.wait(lk, [this] { return !gate_closed_; });
      --at_gate_;
    }
    {
      std::lock_guard lk(mu_);
      ++(commit == store::Commit::kDurable ? durable_commits_ : crash_safe_commits_);
    }
    inner_->transaction(
        [&] {
          struct Mark {  // reset also when body throws
            explicit Mark(bool on) { crash_safe_here() = on; }
            ~Mark() { crash_safe_here() = false; }
          } mark(commit == store::Commit::kCrashSafe);
          body();
          if (int ms = slow_commit_ms.load(); ms > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          if (thread_name() == "fetchq-queue") {
            std::lock_guard lk(mu_);
            if (failing_loop_commits_ > 0) {
              --failing_loop_commits_;
              throw store::StoreError(store::StoreErrorKind::kIo, "injected failure of a commit");
            }
          }
        },
        commit);
  }
  std::vector<Job> insert_jobs(const std::vector<store::NewJob>& jobs,
                               const std::string& now) override {
    enter("insert_jobs");
    return inner_->insert_jobs(jobs, now);
  }
  std::vector<store::ClaimedJob> claim(int n, int64_t now_ms,
                                       const std::optional<std::vector<int64_t>>& only,
                                       const std::string& now) override {
    enter("claim");
    return inner_->claim(n, now_ms, only, now);
  }
  std::optional<int64_t> next_retry_ms(int64_t now_ms) override {
    enter("next_retry_ms");
    return inner_->next_retry_ms(now_ms);
  }
  int64_t recover_running() override {
    enter("recover_running");
    return inner_->recover_running();
  }
  void fence_events(const std::string& boot_id) override {
    enter("fence_events");
    inner_->fence_events(boot_id);
  }
  bool set_started(int64_t id, int attempt, const store::StartInfo& info) override {
    enter("set_started");
    return inner_->set_started(id, attempt, info);
  }
  bool set_progress(int64_t id, int attempt, int64_t bytes, int64_t total_bytes) override {
    enter("set_progress");
    return inner_->set_progress(id, attempt, bytes, total_bytes);
  }
  bool finish(int64_t id, int attempt, const store::Finish& finish,
              const std::string& now) override {
    enter("finish");
    return inner_->finish(id, attempt, finish, now);
  }
  bool requeue(int64_t id, int attempt, int64_t not_before_ms, int failures,
               std::optional<int64_t> failing_since_ms, std::optional<std::string> error_type,
               std::optional<std::string> error) override {
    enter("requeue");
    return inner_->requeue(id, attempt, not_before_ms, failures, failing_since_ms, error_type,
                           error);
  }
  void note_best_bytes(int64_t id, int64_t bytes) override {
    enter("note_best_bytes");
    inner_->note_best_bytes(id, bytes);
  }
  bool set_checkpoint(int64_t id, int attempt, int64_t bytes, const std::string& boot_id) override {
    enter("set_checkpoint");
    return inner_->set_checkpoint(id, attempt, bytes, boot_id);
  }
  bool seal(int64_t id, int attempt, const std::string& download_path, int64_t bytes,
            const std::string& boot_id) override {
    enter("seal");
    return inner_->seal(id, attempt, download_path, bytes, boot_id);
  }
  bool record_part(int64_t id, int attempt, const std::string& download_path, uint64_t dev,
                   uint64_t ino, int64_t birth_ns) override {
    enter("record_part");
    return inner_->record_part(id, attempt, download_path, dev, ino, birth_ns);
  }
  void reset_resume_state(int64_t id) override {
    enter("reset_resume_state");
    inner_->reset_resume_state(id);
  }
  bool forget_unsynced(int64_t id, int attempt) override {
    enter("forget_unsynced");
    return inner_->forget_unsynced(id, attempt);
  }
  bool save_segments(int64_t id, int attempt, const std::vector<store::Segment>& segments) override {
    enter("save_segments");
    return inner_->save_segments(id, attempt, segments);
  }
  bool note_segments_written(int64_t id, int attempt,
                             const std::vector<store::Segment>& segments) override {
    enter("note_segments_written");
    return inner_->note_segments_written(id, attempt, segments);
  }
  std::vector<store::Segment> load_segments(int64_t id) override {
    enter("load_segments");
    return inner_->load_segments(id);
  }
  void forget_segments(int64_t id) override {
    enter("forget_segments");
    inner_->forget_segments(id);
  }
  bool change_status(int64_t id, const std::vector<JobStatus>& from, JobStatus to,
                     const std::string& now) override {
    enter("change_status");
    return inner_->change_status(id, from, to, now);
  }
  SourceChange set_source(int64_t id, const std::vector<JobStatus>& from, const std::string& source,
                          const std::optional<std::string>& url_password) override {
    enter("set_source");
    return inner_->set_source(id, from, source, url_password);
  }
  bool has_secrets(int64_t id) override {
    enter("has_secrets");
    return inner_->has_secrets(id);
  }
  bool set_limit_rate(int64_t id, int64_t bytes_per_second) override {
    enter("set_limit_rate");
    return inner_->set_limit_rate(id, bytes_per_second);
  }
  std::optional<store::ClaimedJob::PartRecord> part_record(int64_t id) override {
    enter("part_record");
    return inner_->part_record(id);
  }
  std::optional<Job> get_job(int64_t id) override {
    enter("get_job");
    return inner_->get_job(id);
  }
  std::vector<Job> list_jobs(const ListFilter& filter) override {
    enter("list_jobs");
    return inner_->list_jobs(filter);
  }
  StatusCounts counts() override {
    enter("counts");
    return inner_->counts();
  }
  bool any_unfinished(const std::vector<int64_t>& ids) override {
    enter("any_unfinished");
    return inner_->any_unfinished(ids);
  }
  std::vector<int64_t> ids_in(const std::vector<JobStatus>& statuses) override {
    enter("ids_in");
    return inner_->ids_in(statuses);
  }
  std::vector<LiveTarget> live_targets(const std::vector<std::string>& sources) override {
    enter("live_targets");
    return inner_->live_targets(sources);
  }
  std::vector<store::PrunedJob> prune(const PruneFilter& filter, const std::string& now) override {
    enter("prune");
    return inner_->prune(filter, now);
  }
  int64_t append_event(int64_t job_id, const std::string& type, const std::string& payload,
                       const std::string& ts) override {
    enter("append_event");
    return inner_->append_event(job_id, type, payload, ts);
  }
  std::vector<Event> events_since(int64_t since, int64_t limit,
                                  std::optional<int64_t> job_id) override {
    enter("events_since");
    return inner_->events_since(since, limit, job_id);
  }
  int64_t last_event_seq() override {
    enter("last_event_seq");
    return inner_->last_event_seq();
  }
  int64_t first_event_seq() override {
    enter("first_event_seq");
    return inner_->first_event_seq();
  }
  int64_t trim_events(int64_t keep, int64_t batch) override {
    enter("trim_events");
    return inner_->trim_events(keep, batch);
  }

 private:
  // This thread runs the body of a crash-safe transaction.
  static bool& crash_safe_here() {
    thread_local bool in = false;
    return in;
  }

  void enter(const std::string& method) {
    const std::string thread = thread_name();
    const int held = queue::queue_locks_held();
    std::lock_guard lk(mu_);
    ++calls_[thread + " " + method];
    if (crash_safe_here()) called_in_crash_safe_.insert(method);
    if (held > 0) {
      breaches_.push_back(method + " called on " + thread + " holding " + std::to_string(held) +
                          " queue lock(s)");
    }
    if (thread == "fetchq-transfer") {
      breaches_.push_back(method + " called on the transfer thread");
    }
    if (auto f = failures_anywhere_.find(method); f != failures_anywhere_.end() && f->second > 0) {
      --f->second;
      throw store::StoreError(store::StoreErrorKind::kIo, "injected failure of " + method);
    }
    if (thread == "fetchq-queue") {
      auto f = failures_.find(method);
      if (f != failures_.end() && f->second > 0) {
        --f->second;
        throw store::StoreError(store::StoreErrorKind::kIo, "injected failure of " + method);
      }
    }
  }

  std::unique_ptr<store::Store> inner_;
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool gate_closed_ = false;
  int at_gate_ = 0;
  std::mutex mu_;
  std::vector<std::string> breaches_;
  std::map<std::string, int> calls_;
  std::map<std::string, int> failures_;
  int failing_loop_commits_ = 0;  // under mu_
  std::map<std::string, int> failures_anywhere_;
  int durable_commits_ = 0;
  std::set<std::string> called_in_crash_safe_;
  int crash_safe_commits_ = 0;
};

}  // namespace fetchq::testing
