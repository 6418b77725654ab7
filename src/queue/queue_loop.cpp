// The queue's loop thread: turns transfer reports into durable state, events and callbacks.
//
// The loop takes everything posted at once (a batch), hands completed downloads to the settle
// thread, writes what the rest of the batch means in one transaction (group commit), then runs
// what must follow the commit (callbacks, releasing slots) and claims more jobs. It holds no lock
// while it does any of that; a storage error is logged and the step is tried again later, never
// allowed to end the thread.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>

#include "queue/queue_impl.h"
#include "queue/scheduler.h"
#include "util/clock.h"
#include "util/fs.h"

namespace fetchq::queue {
namespace {

// Removes a transfer's .part through the folder it was opened in, never by a path whose
// folders may have been swapped for links since. A file never named has nothing to remove (a
// file at its .part name is someone else's): it goes when its last descriptor closes.
void unlink_part(util::Env& env, const transfer::PartFile& file) {
  if (file.unnamed()) return;
  env.unlinkat(file.folder().fd(), file.part_name().c_str(), 0);
}

// Syncs the data of a transfer's .part: true only when every byte written through it is on
// the disk. After one failed sync no later one proves that (see PartFile::sync_failed).
bool sync_part(util::Env& env, const transfer::PartFile& file) { return file.sync(env) == 0; }

// How long the loop waits before trying again a step the store refused.
constexpr auto kStoreRetryDelay = std::chrono::seconds(1);

}  // namespace

// ---- engine reports (transfer thread): post them to the loop, never touch the store.
void QueueImpl::on_started(int64_t id, int attempt, const transfer::Started& s) {
  inbox_.post(StartedMsg{id, attempt, s});
}
void QueueImpl::on_progress(int64_t id, int attempt, int64_t bytes, int64_t total,
                            std::vector<transfer::SegmentSpan> segments) {
  inbox_.post(ProgressMsg{id, attempt, bytes, total, std::move(segments)});
}
void QueueImpl::on_checkpoint(int64_t id, int attempt, std::shared_ptr<transfer::PartFile> file,
                              int64_t bytes, std::vector<transfer::SegmentSpan> segments) {
  inbox_.post(CheckpointMsg{id, attempt, std::move(file), bytes, std::move(segments)});
}
void QueueImpl::on_finished(int64_t id, int attempt, transfer::Result r) {
  inbox_.post(FinishedMsg{id, attempt, std::move(r)});
}
void QueueImpl::on_source_dropped(int64_t id, int attempt, bool own, const std::string& url,
                                  const std::string& reason) {
  inbox_.post(SourceDroppedMsg{id, attempt, own, url, reason});
}

// Recorded in the loop's next transaction, like every other report: the transfer thread never
// waits for a commit. The engine names the file, and promises its bytes, only after the answer.
void QueueImpl::on_part_created(int64_t id, int attempt, const std::string& path,
                                const transfer::PartIdentity& identity) {
  inbox_.post(PartCreatedMsg{id, attempt, path, identity});
}
void QueueImpl::on_transfer_over(int64_t id, int attempt) {
  inbox_.post(TransferOverMsg{id, attempt});
}

void QueueImpl::store_failed(const std::exception& e, const std::string& what) noexcept {
  if (!opts_.on_store_error) {
    spdlog::error("{}: {}", what, e.what());
    return;
  }
  // The owner of the hook reports the failure itself (`fetchq get` in one line of its own).
  spdlog::debug("{}: {}", what, e.what());
  const auto* storage = dynamic_cast<const StorageError*>(&e);
  try {
    opts_.on_store_error(storage ? storage->error() : make_error(ErrorCode::kStorage, e.what()));
  } catch (const std::exception& thrown) {
    spdlog::error("on_store_error failed: {}", thrown.what());
  }
}

// Progress and checkpoints alone need not wait for the disk: a rerun in this boot resumes by
// them, and after a power cut the last durable commit still promises only synced bytes (a
// checkpoint's .part is synced before its commit). The commit is then seen at once, so a crash
// of the process loses no more than what came after the last report. Their progress events
// (one a progress_interval) too, as long as the crash-safe commits since the last durable one
// hold no more events than the seqs a new boot skips (fence_events).
store::Commit batch_commit(bool progress_only, int64_t unsynced_events, int64_t batch_events) {
  if (!progress_only || unsynced_events + batch_events > store::kMaxUnsyncedEvents)
    return store::Commit::kDurable;
  return store::Commit::kCrashSafe;
}

// A durable commit that wrote events waited for the disk; one that changed nothing may not have
// (SQLite syncs no commit that changed no page), so it proves nothing.
int64_t unsynced_after(store::Commit commit, int64_t unsynced_events, int64_t appended) {
  if (commit == store::Commit::kCrashSafe) return unsynced_events + appended;
  return appended > 0 ? 0 : unsynced_events;
}

// ---- the loop thread
void QueueImpl::loop() {
  for (;;) {
    auto in = inbox_.wait(next_wake_);
    if (in.end) return;
    auto& batch = in.msgs;
    // A finished transfer gives its slot back now: the engine starts the next job while the
    // finished one is synced and recorded below. One that failed to settle may be cancelled
    // again until it is handled.
    // So does one whose end waits for its .part's record (TransferOverMsg).
    const auto now = Clock::now();
    auto over = [&](Active& a) {
      if (a.transferring) claim_ahead_.note(now - a.answered_at.value_or(a.launched_at));
      a.transferring = false;
    };
    for (auto& m : batch) {
      if (auto* s = std::get_if<StartedMsg>(&m)) {
        auto it = active_.find(s->id);
        if (it != active_.end() && it->second.attempt == s->attempt && !it->second.answered_at)
          it->second.answered_at = s->at;
        continue;
      }
      if (auto* o = std::get_if<TransferOverMsg>(&m)) {
        auto it = active_.find(o->id);
        if (it != active_.end() && it->second.attempt == o->attempt) over(it->second);
        continue;
      }
      auto* f = std::get_if<FinishedMsg>(&m);
      if (!f) continue;
      auto it = active_.find(f->id);
      if (it == active_.end() || it->second.attempt != f->attempt) continue;
      if (!f->r.begun) it->second.transferring = false;  // it only waited: no measure of files
      over(it->second);
      if (f->settled && !f->renamed) it->second.finishing = false;
    }
    run_commands(in.commands);
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

void QueueImpl::run_commands(std::vector<std::function<void()>>& commands) {
  for (auto& c : commands) {
    try {
      c();  // a packaged task: what it throws goes to its caller
    } catch (const std::exception& e) {
      spdlog::error("queue command failed: {}", e.what());
    }
  }
}

void QueueImpl::process(std::vector<Msg>& batch) {
  hand_to_settler(batch);
  Ops db_ops;     // run inside one transaction
  Ops after_ops;  // run after the commit
  bool progress_only = true;
  batch_progress_events_ = 0;
  for (auto& m : batch) {
    progress_only = progress_only && (std::holds_alternative<ProgressMsg>(m) ||
                                      std::holds_alternative<CheckpointMsg>(m) ||
                                      std::holds_alternative<TransferOverMsg>(m));
    std::visit([&](auto& msg) { handle(msg, db_ops, after_ops); }, m);
  }
  const store::Commit commit =
      batch_commit(progress_only, unsynced_events_, batch_progress_events_);
  // The batch is rolled back as a whole on failure (e.g. another process holding a write
  // lock past the busy timeout), so it can simply be run again; give up only after a minute.
  batch_committed_ = db_ops.empty();
  for (int tries = 1; !db_ops.empty(); ++tries) {
    try {
      const int64_t appended_before = events_appended_here();
      transaction(
          [&] {
            for (auto& op : db_ops) op();
          },
          commit);
      batch_committed_ = true;
      unsynced_events_ =
          unsynced_after(commit, unsynced_events_, events_appended_here() - appended_before);
      break;
    } catch (const std::exception& e) {
      store_failed(e, "cannot record job state (try " + std::to_string(tries) + ")");
      if (tries >= 12) break;
      // A second's pause, cut short when shutdown begins (it may be the failure's own doing,
      // as in `fetchq get`): the batch is then given up, and the jobs it concerned stay running
      // on record for the next start to recover.
      for (int i = 0; i < 10 && !shutting_down_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (shutting_down_) break;
    }
  }
  // Each on its own: one that fails (a callback's job read from a failing store) must not keep
  // the others, which give back slots and paths, from running.
  for (auto& op : after_ops) {
    try {
      op();
    } catch (const std::exception& e) {
      spdlog::error("after recording job state: {}", e.what());
    }
  }
  try {
    notify_changed();
  } catch (const std::exception& e) {
    spdlog::error("on_change failed: {}", e.what());
  }
  static constexpr int kTrimEveryBatches = 32;
  if (++batches_since_trim_ >= kTrimEveryBatches && !shutting_down_) {
    batches_since_trim_ = 0;
    trim_events();
  }
}

// Moves the downloads of the batch that completed to the settle thread, and notes what
// the batch's started messages tell about their jobs (the settler needs it).
void QueueImpl::hand_to_settler(std::vector<Msg>& batch) {
  std::vector<Settling> items;
  std::vector<Msg> rest;
  rest.reserve(batch.size());
  for (auto& m : batch) {
    if (auto* s = std::get_if<StartedMsg>(&m)) {
      auto it = active_.find(s->id);
      if (it != active_.end() && it->second.attempt == s->attempt) {
        it->second.download_path = s->s.download_path;
        it->second.resumed = s->s.from_bytes > 0;
        take_server_digest(it->second, s->s);
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
  inbox_.add_settling(items.size());
  settler_->hand(std::move(items));
}

// Claims what fits in the free slots and hands it to the engine. A store that fails is asked
// again after kStoreRetryDelay.
void QueueImpl::schedule() {
  next_wake_ = Clock::now() + std::chrono::seconds(5);
  if (stopping_ || shutting_down_) return;
  std::vector<int64_t> ready;
  for (const auto& [id, l] : deferred_) {
    if (!active_.count(id) && !checkpoints_out_.count(id)) ready.push_back(id);
  }
  for (int64_t id : ready) launch_deferred(id);
  int transferring = 0;
  bool long_one = false;
  const auto now = Clock::now();
  auto oldest = now;
  for (const auto& [id, a] : active_) {
    if (!a.transferring) continue;
    ++transferring;
    long_one = long_one || now - a.launched_at > ClaimAhead::kLongest;
    oldest = std::min(oldest, a.launched_at);
  }
  const int extra = long_one ? 0 : claim_ahead_.extra(opts_.max_parallel);
  // Behind a transfer that runs long (or a wait that does), jobs claimed ahead that still wait
  // go back to waiting (then claimed again by priority). Files no longer short on average only
  // stop further claims: those that wait run soon, and are not handed back and forth.
  if (long_one && transferring > opts_.max_parallel) engine_->give_back_waiting();
  int free = opts_.max_parallel + extra - static_cast<int>(deferred_.size()) - transferring;
  if (free > 0) {
    std::vector<Launch> launches;
    try {
      launches = claim_launches(*store_, free, opts_.only_jobs, opts_.download_roots);
    } catch (const std::exception& e) {
      store_failed(e, "cannot claim jobs");
      next_wake_ = Clock::now() + kStoreRetryDelay;
      return;
    }
    for (auto& l : launches) launch(l);
  }
  // A transfer that stalls sends no message, so nothing would wake the loop before its routine
  // wake-up: while jobs wait behind the slots (those just claimed too), it wakes up when the
  // oldest transfer turns long.
  if (!long_one) {
    int now_transferring = 0;
    for (const auto& [id, a] : active_) now_transferring += a.transferring ? 1 : 0;
    if (now_transferring > opts_.max_parallel) {
      next_wake_ =
          std::min(next_wake_, oldest + ClaimAhead::kLongest + std::chrono::milliseconds(1));
    }
  }
  try {
    if (auto next = store_->next_retry_ms(util::now_unix_ms())) {
      int64_t in = std::max<int64_t>(0, *next - util::now_unix_ms());
      next_wake_ = std::min(next_wake_, Clock::now() + std::chrono::milliseconds(in + 5));
    }
  } catch (const std::exception& e) {
    store_failed(e, "cannot read the next retry time");
    next_wake_ = std::min(next_wake_, Clock::now() + kStoreRetryDelay);
  }
}

void QueueImpl::launch(Launch& l) {
  if (active_.count(l.job_id) || checkpoints_out_.count(l.job_id)) {
    // The last attempt still holds the .part and its name: two attempts must never write one
    // file, so this one waits for it (see launch_deferred).
    deferred_[l.job_id] = std::move(l);
    return;
  }
  active_[l.job_id] = std::move(l.active);
  active_[l.job_id].launched_at = Clock::now();
  {
    std::lock_guard lk(changed_mu_);
    holding_.insert(l.job_id);
  }
  if (l.recovered) {
    inbox_.post(std::move(*l.recovered));
    inbox_.wake();
    return;
  }
  engine_->submit(std::move(*l.request));
}

namespace {

// A launch prepared before its job's unsynced bytes were forgotten keeps no more than the
// job's record promises now: the checkpoint, and each segment's durable bytes.
void keep_only_promised(transfer::Request& req, const Job& job) {
  if (req.segments.empty()) {
    req.offset = std::min(req.offset, job.bytes);
    return;
  }
  for (auto& s : req.segments) {
    int64_t promised = 0;  // a segment the record does not have: none of its bytes
    for (const auto& kept : job.segments) {
      if (kept.start == s.start) promised = kept.bytes;
    }
    s.done = std::min(s.done, promised);
  }
}

}  // namespace

void QueueImpl::forget_unsynced(int64_t id, int attempt, Ops& db) {
  // A launch claimed after this batch's commit reads the forgetting itself; only one claimed
  // before it, waiting for this attempt's end, must be cut back.
  if (deferred_.count(id)) unsynced_.insert(id);
  db.push_back([this, id, attempt] { store_->forget_unsynced(id, attempt); });
}

// The job's last attempt has ended: the attempt claimed meanwhile starts now, unless the job
// moved on since (cancelled, paused again: its row no longer says running at that attempt).
void QueueImpl::launch_deferred(int64_t id) {
  auto d = deferred_.find(id);
  if (d == deferred_.end()) return;
  Launch l = std::move(d->second);
  deferred_.erase(d);
  const bool cut = unsynced_.erase(id) > 0;
  try {
    auto job = store_->get_job(id);
    if (!job || job->status != JobStatus::kRunning || job->attempts != l.active.attempt) return;
    if (cut && l.request) keep_only_promised(*l.request, *job);
  } catch (const std::exception& e) {
    store_failed(e, "job " + std::to_string(id) + ": cannot read it to start it");
    if (cut) unsynced_.insert(id);
    deferred_[id] = std::move(l);  // tried again by the next schedule()
    next_wake_ = std::min(next_wake_, Clock::now() + kStoreRetryDelay);
    return;
  }
  launch(l);
}

void QueueImpl::handle(StartedMsg& m, Ops& db, Ops& after) {
  auto it = active_.find(m.id);
  if (it == active_.end() || it->second.attempt != m.attempt) return;
  it->second.download_path = m.s.download_path;
  it->second.resumed = m.s.from_bytes > 0;
  take_server_digest(it->second, m.s);
  rate_.begin(m.id, m.s.from_bytes);  // resumed bytes are not this attempt's speed
  std::string source = it->second.source;
  // A pause or cancel that the loop ran before this report (commands go before the batch they
  // came with) has told of its own change already: a start told after it would say the job
  // runs again. What the answer says of the file is still recorded for the checkpoint to come.
  const bool stopping = it->second.stop != Stop::kNone;
  db.push_back([this, m, source, stopping] {
    store::StartInfo info{m.s.download_path,      m.s.total_bytes,  m.s.etag,
                          m.s.last_modified,      m.s.from_bytes,   m.s.server_sha256,
                          m.s.server_sha256_from, m.s.validator_url};
    if (!store_->set_started(m.id, m.attempt, info)) return;
    if (m.s.restarted) {
      // The whole file from zero, on one connection: no segment survives.
      store_->set_checkpoint(m.id, m.attempt, 0, util::boot_id());
      store_->forget_segments(m.id);
    }
    if (!stopping) {
      append_event(m.id, started_event(source, m.s.download_path));
      if (m.s.from_bytes > 0) append_event(m.id, resumed_event(source, m.s.from_bytes));
    }
    // The .part went back to zero whatever comes next: said also of a stopping attempt.
    if (m.s.restarted) append_event(m.id, restarted_event(source, m.s.restart_reason));
  });
  if (!stopping) after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_start); });
}

void QueueImpl::handle(SourceDroppedMsg& m, Ops& db, Ops&) {
  auto it = active_.find(m.id);
  if (it == active_.end() || it->second.attempt != m.attempt) return;
  // The job's own URL as the job shows it (a password in it as ***), the same as `source`.
  const std::string& source = it->second.source;
  db.push_back(
      [this, id = m.id, event = source_dropped_event(source, m.own ? source : m.url, m.reason)] {
        append_event(id, event);
      });
}

// A fresh .part's identity, in the batch's transaction (which a crash of the process survives);
// the engine always gets an answer, also for an attempt that moved on (not recorded: the file
// is let go) and for a batch given up.
void QueueImpl::handle(PartCreatedMsg& m, Ops& db, Ops& after) {
  auto recorded = std::make_shared<bool>(false);
  db.push_back([this, m, recorded] {
    *recorded = store_->record_part(m.id, m.attempt, m.path, m.identity.dev, m.identity.ino,
                                    m.identity.birth_ns);
  });
  after.push_back([this, id = m.id, attempt = m.attempt, recorded] {
    engine_->part_recorded(id, attempt, *recorded && batch_committed_);
  });
}

void QueueImpl::handle(ProgressMsg& m, Ops& db, Ops& after) {
  auto it = active_.find(m.id);
  if (it == active_.end() || it->second.attempt != m.attempt) return;
  std::string source = it->second.source, path = it->second.download_path;
  rate_.note(m.id, m.bytes);
  std::vector<store::Segment> written;
  for (const auto& s : m.segments)
    written.push_back(store::Segment{.start = s.start, .end = s.end, .written = s.done});
  // A segmented transfer's reports come more often: events and callbacks at most once a
  // progress_interval (and at the end); every report is recorded.
  const auto now = Clock::now();
  const bool event = m.segments.empty() ||
                     now - it->second.progress_event_at >= opts_.progress_interval ||
                     m.bytes == m.total;
  if (event) {
    it->second.progress_event_at = now;
    ++batch_progress_events_;
  }
  db.push_back([this, id = m.id, attempt = m.attempt, bytes = m.bytes, total = m.total, source,
                path, written = std::move(written), event] {
    if (!store_->set_progress(id, attempt, bytes, total)) return;
    // A rerun in this boot resumes each segment from what it wrote, as one connection does
    // from `bytes`.
    if (!written.empty()) store_->note_segments_written(id, attempt, written);
    if (event) append_event(id, progress_event(source, path, bytes, total));
  });
  if (event) after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_progress); });
}

void QueueImpl::handle(CheckpointMsg& m, Ops& db, Ops&) {
  // Data first, then the byte count that promises it: the checkpoint thread syncs the .part,
  // then the checkpoint comes back here to be recorded.
  if (!m.returned) {
    // Its message holds the .part (and its lock) until it is back: the job's next attempt
    // waits for it (launch()).
    ++checkpoints_out_[m.id];
    inbox_.add_settling(1);
    checkpoints_->post(std::move(m));
    return;
  }
  if (auto out = checkpoints_out_.find(m.id); out != checkpoints_out_.end() && --out->second <= 0) {
    checkpoints_out_.erase(out);
    // Its .part is let go with the batch (loop()), before the next schedule() launches what
    // waited.
    if (deferred_.count(m.id)) next_wake_ = Clock::now();
  }
  if (!m.synced) {
    // Its sync failed: from now on no rerun, in this boot either, keeps more than the last
    // checkpoint, also if the process dies before the attempt's end is recorded (the engine
    // ends the attempt when it sees the failure).
    if (m.file->sync_error() != 0) forget_unsynced(m.id, m.attempt, db);
    return;
  }
  // The attempt is ending or ended (paused, stopped, failed, finished; its FinishedMsg may be in
  // this very batch): what it records as it ends is newer than this, and a stale checkpoint
  // must not undo it (a restart from zero forgets the checkpoint).
  auto it = active_.find(m.id);
  if (it == active_.end() || it->second.attempt != m.attempt || it->second.stop != Stop::kNone ||
      it->second.finishing || !it->second.transferring) {
    return;
  }
  std::vector<store::Segment> map;
  for (const auto& s : m.segments) map.push_back(store::Segment{s.start, s.end, s.done});
  // The prefix and the map in one transaction (the batch's), both fenced by the attempt.
  db.push_back([this, id = m.id, attempt = m.attempt, bytes = m.bytes, map = std::move(map)] {
    if (!store_->set_checkpoint(id, attempt, bytes, util::boot_id())) return;
    if (!map.empty()) store_->save_segments(id, attempt, map);
  });
}

void QueueImpl::sync_checkpoints(std::vector<CheckpointMsg>& batch) {
  // A later checkpoint of the same attempt covers an earlier one: one sync, the latest kept.
  // Every message goes back (the loop counts them), marked whether it was synced.
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& m = batch[i];
    bool later = false;
    for (size_t j = i + 1; j < batch.size() && !later; ++j)
      later = batch[j].id == m.id && batch[j].attempt == m.attempt;
    if (later) continue;
    if (m.file->sync_error() != 0) continue;  // its transfer fails with it (Engine)
    if (!sync_part(env_, *m.file)) {
      spdlog::warn("{}",
                   util::errno_message("fdatasync", m.file->part_path(), m.file->sync_error()));
      continue;
    }
    m.synced = true;
  }
  inbox_.return_synced(batch);
}

// A finished file that never got a name (PartFile::unnamed) and will not get its final one now
// (a pause, a shutdown or a failure came first) takes its .part name, as any other attempt's file
// has: a resume goes on from it, and what failed can be looked at. When that name cannot be made
// either, none of its bytes is promised: the next attempt starts again from zero.
void QueueImpl::keep_under_part_name(FinishedMsg& m) {
  auto& file = m.r.file;
  if (!file || !file->unnamed()) return;
  const int err = transfer::name_as_part(env_, *file);
  if (err == 0) return;
  spdlog::warn("job {}: cannot keep the finished download as {}: {}; it starts again from zero",
               m.id, file->part_path(), std::strerror(err));
  file->sync_failed(err);  // promises nothing (see PartFile::sync_failed)
}

void QueueImpl::handle(FinishedMsg& m, Ops& db, Ops& after) {
  auto it = active_.find(m.id);
  if (it == active_.end() || it->second.attempt != m.attempt) {
    if (m.r.path_held) paths_.release(m.r.download_path);
    return;
  }
  if (it->second.stop == Stop::kNone && m.r.outcome == transfer::Outcome::kCompleted) {
    it->second.finishing = true;
  }
  const Active a = it->second;
  auto& r = m.r;
  const int64_t id = m.id;
  const int attempt = m.attempt;
  auto release = [this, id, held = r.path_held, path = r.download_path] {
    if (held) paths_.release(path);
    active_.erase(id);
    {
      std::lock_guard lk(changed_mu_);
      holding_.erase(id);
    }
    rate_.forget(id);
    // An attempt claimed meanwhile starts at the next schedule(), once this batch (and the
    // lock its .part still holds through the message) is gone.
    if (deferred_.count(id)) next_wake_ = Clock::now();
  };
  if (m.renamed) {  // whole and in place: a pause or shutdown asked meanwhile comes too late
    complete(m, a, db, after);
    after.push_back(release);
    return;
  }
  if (a.stop != Stop::kCancel &&
      !(r.outcome == transfer::Outcome::kFailed && r.failure.restart_from_zero)) {
    keep_under_part_name(m);
  }
  if (a.stop == Stop::kCancel) {
    if (r.file) {
      unlink_part(env_, *r.file);
    } else if (!r.begun) {  // it waited for a slot: as for a job that was not running
      try {
        drop_part(a.download_path, store_->part_record(id));
      } catch (const std::exception& e) {
        store_failed(e, "job " + std::to_string(id) + ": cannot read its .part's record");
      }
    }
    after.push_back(release);
    return;
  }
  if (a.stop != Stop::kNone || r.outcome == transfer::Outcome::kStopped) {
    // Pause or shutdown: keep the .part and promise what is in it.
    const bool lost = r.file && !sync_part(env_, *r.file);
    const bool synced = r.file && !lost;
    std::vector<store::Segment> map;
    for (const auto& s : r.segments) map.push_back(store::Segment{s.start, s.end, s.done});
    db.push_back([this, id, attempt, synced, bytes = r.bytes, stop = a.stop, map = std::move(map),
                  failures = a.failures, since = a.failing_since_ms] {
      // Every segment's bytes, synced just now: a resume asks for none of them again.
      if (synced && store_->set_checkpoint(id, attempt, bytes, util::boot_id()) && !map.empty()) {
        store_->save_segments(id, attempt, map);
      }
      if (stop == Stop::kNone) {
        // Claimed ahead and given back before it began: as it was, failures included.
        store_->requeue(id, attempt, 0, failures, since, std::nullopt, std::nullopt);
      } else if (stop != Stop::kPause) {
        store_->requeue(id, attempt, 0, 0, std::nullopt, std::nullopt, std::nullopt);
      }
    });
    if (lost) forget_unsynced(id, attempt, db);  // a sync failed: the checkpoint is all
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

void QueueImpl::complete(FinishedMsg& m, const Active& a, Ops& db, Ops& after) {
  auto& r = m.r;
  const std::string& path = r.download_path;
  if (!m.renamed) {  // the settler did not get to it (a stop came first): resume later
    r.failure = transfer::Failure{"DiskError", "the finished download " + path + ".part was not settled",
                                  true, std::nullopt, false, true};
    r.outcome = transfer::Outcome::kFailed;
    if (auto it = active_.find(m.id); it != active_.end()) it->second.finishing = false;
    return failed(m, a, db, after);
  }
  db.push_back([this, id = m.id, attempt = m.attempt, bytes = r.bytes, source = a.source, path] {
    store::Finish f;
    f.status = JobStatus::kCompleted;
    f.bytes = bytes;
    f.total_bytes = bytes;
    if (!store_->finish(id, attempt, f, util::now_iso8601())) return;
    append_event(id, progress_event(source, path, bytes, bytes));
    append_event(id, complete_event(source, path, bytes));
  });
  after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_complete); });
}

void QueueImpl::already_there(FinishedMsg& m, const Active& a, Ops& db, Ops& after) {
  auto& r = m.r;
  if (r.file) unlink_part(env_, *r.file);
  if (a.sha256) {
    auto sum = util::sha256_file(r.download_path);
    if (!sum || *sum != *a.sha256) {
      r.failure = m.recovered
                      ? transfer::Failure{"ChecksumMismatch",
                                          "sha256 of " + r.download_path + " differs from the one expected",
                                          false, std::nullopt, false}
                      : transfer::Failure{"DestinationExists",
                                          r.download_path + " already exists and its sha256 differs (--if-exists skip)",
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
    store::StartInfo info{path, bytes, "", "", bytes, "", "", ""};
    store_->set_started(id, attempt, info);
    if (!store_->finish(id, attempt, f, util::now_iso8601())) return;
    append_event(id, complete_event(source, path, bytes));
  });
  after.push_back([this, id = m.id] { fire(id, opts_.callbacks.on_complete); });
}

void QueueImpl::failed(FinishedMsg& m, const Active& a, Ops& db, Ops& after) {
  auto& r = m.r;
  const auto& f = r.failure;
  const RetryDecision d = decide_retry({f.retryable, f.retry_after_ms, f.restart_from_zero, r.bytes},
                                       {a.failures, a.failing_since_ms, a.best_bytes}, retry_options(),
                                       util::now_unix_ms(), jitter());
  const int failures = d.failures;
  const int64_t since = d.failing_since_ms;
  // A segmented attempt may hold bytes past its gap-free prefix: its map says where.
  std::vector<store::Segment> map;
  bool holds_bytes = r.bytes > 0;
  for (const auto& s : r.segments) {
    map.push_back(store::Segment{s.start, s.end, s.done});
    holds_bytes = holds_bytes || s.done > 0;
  }
  bool synced = r.file && holds_bytes && !f.restart_from_zero && sync_part(env_, *r.file);
  const bool lost = r.file && r.file->sync_error() != 0;
  synced = synced && !lost;
  if (r.file && !holds_bytes && !a.resumed) unlink_part(env_, *r.file);
  // The synced prefix, and every segment's synced bytes: the retry asks for none of them again.
  auto promise = [this, synced, bytes = r.bytes, map = std::move(map)](int64_t id, int attempt) {
    if (synced && store_->set_checkpoint(id, attempt, bytes, util::boot_id()) && !map.empty()) {
      store_->save_segments(id, attempt, map);
    }
  };

  if (d.retry()) {
    const int64_t delay = d.delay_ms;
    db.push_back([this, id = m.id, attempt = m.attempt, delay, failures, f, promise,
                  bytes = r.bytes, source = a.source, since] {
      promise(id, attempt);
      store_->note_best_bytes(id, bytes);
      if (!store_->requeue(id, attempt, util::now_unix_ms() + delay, failures, since, f.type, f.message)) {
        return;
      }
      if (f.restart_from_zero) {
        store_->reset_resume_state(id);
        append_event(id, restarted_event(source, f.message));
      }
      append_event(id, retrying_event(source, attempt, delay, f.type + ": " + f.message));
    });
    // A sync of the .part failed: no rerun keeps more than the last checkpoint, in this boot
    // too. After the job's own record of its bytes (requeue).
    if (lost) forget_unsynced(m.id, m.attempt, db);
    after.push_back([this, id = m.id, type = f.type, message = f.message, delay] {
      spdlog::info("job {}: {} ({}); retrying in {} ms", id, type, message, delay);
      next_wake_ = std::min(next_wake_, Clock::now() + std::chrono::milliseconds(delay));
    });
    return;
  }
  db.push_back(
      [this, id = m.id, attempt = m.attempt, f, promise, bytes = r.bytes, source = a.source] {
        promise(id, attempt);
        if (f.restart_from_zero) store_->reset_resume_state(id);
        store::Finish fin;
        fin.status = JobStatus::kError;
        fin.bytes = f.restart_from_zero ? 0 : bytes;
        fin.error_type = f.type;
        fin.error = f.message;
        if (!store_->finish(id, attempt, fin, util::now_iso8601())) return;
        append_event(id, error_event(source, f.type, f.message));
      });
  if (lost) forget_unsynced(m.id, m.attempt, db);  // after finish() recorded its bytes
  after.push_back([this, id = m.id, type = f.type, message = f.message] {
    spdlog::warn("job {} failed: {}: {}", id, type, message);
    fire(id, opts_.callbacks.on_error);
  });
}

void QueueImpl::fire(int64_t id, const std::function<void(const Job&)>& cb) {
  if (!cb) return;
  auto job = store_->get_job(id);
  if (job) callbacks_.post([cb, j = *job] { cb(j); });
}

RetryOptions QueueImpl::retry_options() const {
  return {opts_.max_attempts, opts_.give_up_after, opts_.retry_base_delay, opts_.retry_max_delay};
}

// A factor in [0.5, 1.0) for retry delays, so jobs that failed together do not retry together.
double QueueImpl::jitter() {
  std::uniform_real_distribution<double> dist(0.5, 1.0);
  return dist(rng_);
}

}  // namespace fetchq::queue
