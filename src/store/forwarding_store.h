// ForwardingStore: a Store that passes every call to another one, through one hook.
//
// The base of store decorators: the SQLite store's error translation (sqlite/sqlite_store.cpp)
// and the tests' FailingStore. A decorator overrides around(), which receives the name of the
// call and a body that makes it; it may run code before or after the body, catch what the body
// throws, or throw instead of running it. Thread-safe when the inner store and around() are.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

#include "store/store.h"

namespace fetchq::store {

// One per Store method, for decorators that act on some calls only.
enum class StoreOp {
  kTransaction,
  kInsertJobs,
  kClaim,
  kNextRetryMs,
  kRecoverRunning,
  kFenceEvents,
  kSetStarted,
  kSetProgress,
  kFinish,
  kRequeue,
  kNoteBestBytes,
  kSetCheckpoint,
  kSeal,
  kRecordPart,
  kResetResumeState,
  kForgetUnsynced,
  kSaveSegments,
  kNoteSegmentsWritten,
  kLoadSegments,
  kForgetSegments,
  kChangeStatus,
  kSetSource,
  kHasSecrets,
  kGetJob,
  kPartRecord,
  kListJobs,
  kCounts,
  kAnyUnfinished,
  kIdsIn,
  kLiveTargets,
  kPrune,
  kAppendEvent,
  kEventsSince,
  kLastEventSeq,
  kFirstEventSeq,
  kTrimEvents,
  kSetLimitRate,
};

class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}

  using Store::transaction;
  void transaction(const std::function<void()>& body, Commit commit) override {
    call(StoreOp::kTransaction, [&] { inner_->transaction(body, commit); });
  }
  std::vector<Job> insert_jobs(const std::vector<NewJob>& jobs, const std::string& now) override {
    return call(StoreOp::kInsertJobs, [&] { return inner_->insert_jobs(jobs, now); });
  }
  std::vector<ClaimedJob> claim(int n, int64_t now_ms,
                                const std::optional<std::vector<int64_t>>& only,
                                const std::string& now) override {
    return call(StoreOp::kClaim, [&] { return inner_->claim(n, now_ms, only, now); });
  }
  std::optional<int64_t> next_retry_ms(int64_t now_ms) override {
    return call(StoreOp::kNextRetryMs, [&] { return inner_->next_retry_ms(now_ms); });
  }
  int64_t recover_running() override {
    return call(StoreOp::kRecoverRunning, [&] { return inner_->recover_running(); });
  }
  void fence_events(const std::string& boot_id) override {
    call(StoreOp::kFenceEvents, [&] { inner_->fence_events(boot_id); });
  }
  bool set_started(int64_t id, int attempt, const StartInfo& info) override {
    return call(StoreOp::kSetStarted, [&] { return inner_->set_started(id, attempt, info); });
  }
  bool set_progress(int64_t id, int attempt, int64_t bytes, int64_t total_bytes) override {
    return call(StoreOp::kSetProgress,
                [&] { return inner_->set_progress(id, attempt, bytes, total_bytes); });
  }
  bool finish(int64_t id, int attempt, const Finish& finish, const std::string& now) override {
    return call(StoreOp::kFinish, [&] { return inner_->finish(id, attempt, finish, now); });
  }
  bool requeue(int64_t id, int attempt, int64_t not_before_ms, int failures,
               std::optional<int64_t> failing_since_ms, std::optional<std::string> error_type,
               std::optional<std::string> error) override {
    return call(StoreOp::kRequeue, [&] {
      return inner_->requeue(id, attempt, not_before_ms, failures, failing_since_ms, error_type,
                             error);
    });
  }
  void note_best_bytes(int64_t id, int64_t bytes) override {
    call(StoreOp::kNoteBestBytes, [&] { inner_->note_best_bytes(id, bytes); });
  }
  bool set_checkpoint(int64_t id, int attempt, int64_t bytes, const std::string& boot_id) override {
    return call(StoreOp::kSetCheckpoint,
                [&] { return inner_->set_checkpoint(id, attempt, bytes, boot_id); });
  }
  bool seal(int64_t id, int attempt, const std::string& download_path, int64_t bytes,
            const std::string& boot_id) override {
    return call(StoreOp::kSeal,
                [&] { return inner_->seal(id, attempt, download_path, bytes, boot_id); });
  }
  bool record_part(int64_t id, int attempt, const std::string& download_path, uint64_t dev,
                   uint64_t ino, int64_t birth_ns) override {
    return call(StoreOp::kRecordPart, [&] {
      return inner_->record_part(id, attempt, download_path, dev, ino, birth_ns);
    });
  }
  void reset_resume_state(int64_t id) override {
    call(StoreOp::kResetResumeState, [&] { inner_->reset_resume_state(id); });
  }
  bool forget_unsynced(int64_t id, int attempt) override {
    return call(StoreOp::kForgetUnsynced, [&] { return inner_->forget_unsynced(id, attempt); });
  }
  bool save_segments(int64_t id, int attempt, const std::vector<Segment>& segments) override {
    return call(StoreOp::kSaveSegments, [&] { return inner_->save_segments(id, attempt, segments); });
  }
  bool note_segments_written(int64_t id, int attempt,
                             const std::vector<Segment>& segments) override {
    return call(StoreOp::kNoteSegmentsWritten,
                [&] { return inner_->note_segments_written(id, attempt, segments); });
  }
  std::vector<Segment> load_segments(int64_t id) override {
    return call(StoreOp::kLoadSegments, [&] { return inner_->load_segments(id); });
  }
  void forget_segments(int64_t id) override {
    call(StoreOp::kForgetSegments, [&] { inner_->forget_segments(id); });
  }
  bool change_status(int64_t id, const std::vector<JobStatus>& from, JobStatus to,
                     const std::string& now) override {
    return call(StoreOp::kChangeStatus, [&] { return inner_->change_status(id, from, to, now); });
  }
  SourceChange set_source(int64_t id, const std::vector<JobStatus>& from, const std::string& source,
                          const std::optional<std::string>& url_password) override {
    return call(StoreOp::kSetSource, [&] { return inner_->set_source(id, from, source, url_password); });
  }
  bool has_secrets(int64_t id) override {
    return call(StoreOp::kHasSecrets, [&] { return inner_->has_secrets(id); });
  }
  std::optional<Job> get_job(int64_t id) override {
    return call(StoreOp::kGetJob, [&] { return inner_->get_job(id); });
  }
  std::optional<ClaimedJob::PartRecord> part_record(int64_t id) override {
    return call(StoreOp::kPartRecord, [&] { return inner_->part_record(id); });
  }
  std::vector<Job> list_jobs(const ListFilter& filter) override {
    return call(StoreOp::kListJobs, [&] { return inner_->list_jobs(filter); });
  }
  StatusCounts counts() override {
    return call(StoreOp::kCounts, [&] { return inner_->counts(); });
  }
  bool any_unfinished(const std::vector<int64_t>& ids) override {
    return call(StoreOp::kAnyUnfinished, [&] { return inner_->any_unfinished(ids); });
  }
  std::vector<int64_t> ids_in(const std::vector<JobStatus>& statuses) override {
    return call(StoreOp::kIdsIn, [&] { return inner_->ids_in(statuses); });
  }
  std::vector<LiveTarget> live_targets(const std::vector<std::string>& sources) override {
    return call(StoreOp::kLiveTargets, [&] { return inner_->live_targets(sources); });
  }
  std::vector<PrunedJob> prune(const PruneFilter& filter, const std::string& now) override {
    return call(StoreOp::kPrune, [&] { return inner_->prune(filter, now); });
  }
  int64_t append_event(int64_t job_id, const std::string& type, const std::string& payload,
                       const std::string& ts) override {
    return call(StoreOp::kAppendEvent,
                [&] { return inner_->append_event(job_id, type, payload, ts); });
  }
  std::vector<Event> events_since(int64_t since, int64_t limit,
                                  std::optional<int64_t> job_id) override {
    return call(StoreOp::kEventsSince, [&] { return inner_->events_since(since, limit, job_id); });
  }
  int64_t last_event_seq() override {
    return call(StoreOp::kLastEventSeq, [&] { return inner_->last_event_seq(); });
  }
  int64_t first_event_seq() override {
    return call(StoreOp::kFirstEventSeq, [&] { return inner_->first_event_seq(); });
  }
  bool set_limit_rate(int64_t id, int64_t bytes_per_second) override {
    return call(StoreOp::kSetLimitRate,
                [&] { return inner_->set_limit_rate(id, bytes_per_second); });
  }
  int64_t trim_events(int64_t keep, int64_t batch) override {
    return call(StoreOp::kTrimEvents, [&] { return inner_->trim_events(keep, batch); });
  }

 protected:
  // A call to make, lent to around() for the time of the call (never stored, never copied).
  class Body {
   public:
    template <class F>
    explicit Body(F& f) : fn_(&f), run_([](void* p) { (*static_cast<F*>(p))(); }) {}
    void operator()() const { run_(fn_); }

   private:
    void* fn_;
    void (*run_)(void*);
  };

  // Runs body (the call to the inner store) for op, or throws instead. The default just runs it.
  virtual void around(StoreOp op, const Body& body) {
    (void)op;
    body();
  }

  Store& inner() { return *inner_; }

 private:
  template <class F>
  auto call(StoreOp op, F&& f) -> decltype(f()) {
    using R = decltype(f());
    if constexpr (std::is_void_v<R>) {
      around(op, Body(f));
    } else {
      std::optional<R> out;
      auto run = [&] { out.emplace(f()); };
      around(op, Body(run));
      if (!out) throw std::logic_error("a store decorator neither made the call nor threw");
      return std::move(*out);
    }
  }

  std::unique_ptr<Store> inner_;
};

std::string_view to_string(StoreOp op);

}  // namespace fetchq::store
