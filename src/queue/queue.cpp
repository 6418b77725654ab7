// DownloadQueue: the facade. Public methods check their input and hand the work to the store,
// to the loop thread (steps ordered with transfers) or to the scheduler; see queue_impl.h for
// the threads and locks, queue_loop.cpp for the loop.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "queue/join_walk.h"
#include "queue/open_with_env.h"
#include "queue/open_with_store.h"
#include "queue/queue_impl.h"
#include "queue/request_check.h"
#include "util/clock.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/thread_name.h"

namespace fetchq {
namespace queue {

QueueImpl::QueueImpl(QueueOptions options, std::unique_ptr<store::Store> store, util::Env& env)
    : opts_(std::move(options)), env_(env), store_(std::move(store)), rng_(std::random_device{}()) {
  if (opts_.only_jobs) std::sort(opts_.only_jobs->begin(), opts_.only_jobs->end());
  // Without a boot id every start may follow a reboot: a name of its own makes it skip.
  const std::string& boot = util::boot_id();
  store_->fence_events(boot != "unknown" ? boot : "unknown-" + std::to_string(rng_()));
  last_seq_ = store_->last_event_seq();
  while (trim_events() > 0) {  // a log left long by an older fetchq or a larger setting
  }
  int64_t recovered = store_->recover_running();
  if (recovered > 0) spdlog::info("{} job(s) left running by the last stop will resume", recovered);
  transfer::EngineOptions eo;
  eo.max_transfers = opts_.max_parallel;  // the queue may claim more (ClaimAhead)
  eo.connect_timeout = opts_.connect_timeout;
  eo.stall_timeout = opts_.stall_timeout;
  eo.progress_interval = opts_.progress_interval;
  eo.checkpoint_interval = opts_.checkpoint_interval;
  eo.block_private_addresses = opts_.block_private_addresses;
  eo.connections = opts_.connections;
  eo.max_connections_per_host = opts_.max_connections_per_host;
  eo.max_connections = opts_.max_connections;
  eo.segment_threshold = opts_.segment_threshold;
  eo.segment_min_size = opts_.segment_min_size;
  eo.ca_cert = opts_.ca_cert;
  eo.proxy = opts_.proxy;
  eo.rate_limit = std::max<int64_t>(0, opts_.rate_limit);
  rate_limit_ = eo.rate_limit;
  eo.env = &env_;
  engine_ = std::make_unique<transfer::Engine>(eo, static_cast<transfer::Observer*>(this), &paths_);
  started_at_ = Clock::now();
  settler_ = std::make_unique<Settler>(store_.get(), env_, opts_.syncfs_from,
                                       [this](std::vector<Settling>& items) { inbox_.return_settled(items); });
  checkpoints_ = std::make_unique<Worker<CheckpointMsg>>(
      "fetchq-ckpt", [this](std::vector<CheckpointMsg>& batch) { sync_checkpoints(batch); });
  loop_ = std::thread([this] {
    util::name_this_thread("fetchq-queue");
    loop_id_ = std::this_thread::get_id();
    loop();
  });
}

QueueImpl::~QueueImpl() { shutdown(); }

Result<Job> QueueImpl::download(const DownloadRequest& request) {
  auto jobs = download_batch({request});
  if (!jobs) return jobs.error();
  return std::move(jobs.value().front());
}

Result<std::vector<Job>> QueueImpl::download_batch(const std::vector<DownloadRequest>& requests) {
  std::vector<store::NewJob> news;
  news.reserve(requests.size());
  DestCache dest_facts;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto nj = check_request(requests[i], opts_.download_roots, &dest_facts);
    if (!nj) {
      auto e = nj.error();
      if (requests.size() > 1) e.message = "job " + std::to_string(i) + ": " + e.message;
      return e;
    }
    auto& opt = nj.value().request.options;
    // A job that brings its own Authorization header gets no rule token on top of it.
    const bool own_auth = std::any_of(opt.headers.begin(), opt.headers.end(), [](const RequestHeader& h) {
      return util::lower(h.name) == "authorization";
    });
    if (!opt.access_token && !own_auth) {
      for (const auto& rule : opts_.token_rules) {
        if (token_rule_applies(rule.host_pattern, nj.value().request.source)) {
          opt.access_token = rule.token;
          break;
        }
      }
    }
    // Checked once the rule token is known: a mirror's requests carry the job's secrets too.
    if (opt.access_token || nj.value().url_password || !opt.headers.empty()) {
      if (auto st = check_mirrors_on_origin(opt.mirrors, nj.value().request.source); !st) {
        auto e = st.error();
        if (requests.size() > 1) e.message = "job " + std::to_string(i) + ": " + e.message;
        return e;
      }
    }
    news.push_back(std::move(nj.value()));
  }
  // A request for what a live job (or an earlier request of this batch) already fetches gets
  // that job back: a second one would only fail on the same file.
  using Key = std::pair<std::string, std::string>;  // source (without its password), dest
  std::map<Key, int64_t> live;                      // job id
  std::vector<std::optional<int64_t>> same_as(news.size());     // a live job's id
  std::vector<std::optional<size_t>> same_as_new(news.size());  // an earlier request
  const bool check = std::any_of(requests.begin(), requests.end(), [](const auto& r) { return !r.allow_duplicate; });
  try {
    if (check) {
      std::vector<std::string> sources;
      sources.reserve(news.size());
      for (const auto& n : news) sources.push_back(n.request.source);
      for (auto& t : store_->live_targets(sources)) live.emplace(Key{std::move(t.source), std::move(t.dest)}, t.id);
    }
  } catch (const StorageError& e) {  // kBusy stays kBusy: the caller may tell it apart
    return make_error(e.error().code, "cannot read the queue: " + e.error().message);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kStorage, std::string("cannot read the queue: ") + e.what());
  }
  std::map<Key, size_t> in_batch;
  std::vector<store::NewJob> fresh;
  std::vector<size_t> fresh_index(news.size(), 0);  // where request i went in `fresh`
  for (size_t i = 0; i < news.size(); ++i) {
    Key key{news[i].request.source, news[i].request.dest};
    if (!requests[i].allow_duplicate) {
      if (auto it = live.find(key); it != live.end()) {
        same_as[i] = it->second;
        continue;
      }
      if (auto it = in_batch.find(key); it != in_batch.end()) {
        same_as_new[i] = it->second;
        continue;
      }
    }
    in_batch.emplace(key, i);
    fresh_index[i] = fresh.size();
    fresh.push_back(std::move(news[i]));
  }
  std::vector<Job> inserted;
  std::vector<Job> jobs;
  jobs.reserve(news.size());
  try {
    if (!fresh.empty()) inserted = store_->insert_jobs(fresh, util::now_iso8601());
    for (size_t i = 0; i < news.size(); ++i) {
      if (same_as[i]) {
        auto j = store_->get_job(*same_as[i]);
        if (!j) return make_error(ErrorCode::kStorage, "job " + std::to_string(*same_as[i]) + " went away");
        j->duplicate_of = j->id;
        jobs.push_back(std::move(*j));
      } else if (same_as_new[i]) {
        Job j = inserted[fresh_index[*same_as_new[i]]];
        j.duplicate_of = j.id;
        jobs.push_back(std::move(j));
      } else {
        jobs.push_back(inserted[fresh_index[i]]);
      }
    }
  } catch (const StorageError& e) {  // kBusy stays kBusy: the caller may tell it apart
    return make_error(e.error().code, "cannot store the jobs: " + e.error().message);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kStorage, std::string("cannot store the jobs: ") + e.what());
  }
  if (!fresh.empty()) inbox_.wake();
  return jobs;
}

std::vector<Job> QueueImpl::list_jobs(const ListFilter& filter) { return store_->list_jobs(filter); }
std::optional<Job> QueueImpl::id_to_job(int64_t id) { return store_->get_job(id); }

namespace {

// A public call that returns a Result never throws: a storage failure becomes its Error.
template <class F>
auto without_throwing(F&& call) -> decltype(call()) {
  try {
    return call();
  } catch (const StorageError& e) {
    return e.error();
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, e.what());
  }
}

}  // namespace

Result<Job> QueueImpl::cancel_job(int64_t id) {
  return without_throwing([&] { return cancel(id); });
}
Result<Job> QueueImpl::pause_job(int64_t id) {
  return without_throwing([&] { return pause(id); });
}
Result<Job> QueueImpl::resume_job(int64_t id) {
  return without_throwing(
      [&] { return back_to_waiting(id, JobStatus::kPaused, "only paused jobs resume"); });
}
Result<Job> QueueImpl::retry_job(int64_t id) {
  return without_throwing([&] {
    return back_to_waiting(id, JobStatus::kError, "only jobs that ended in error are retried");
  });
}

Result<Job> QueueImpl::set_url(int64_t id, const std::string& url) {
  return without_throwing([&]() -> Result<Job> {
    if (auto st = on_loop([&] { return set_url_on_loop(id, url); }); !st) return st.error();
    notify_changed();
    return after_change(id, nullptr);
  });
}

// Loop thread, so no claim comes between the check of the status and the change.
Status QueueImpl::set_url_on_loop(int64_t id, const std::string& url) {
  auto job = store_->get_job(id);
  if (!job) return not_found(id);
  if (auto st = check_source_url(url); !st) return st;
  const std::vector<JobStatus> from{JobStatus::kWaiting, JobStatus::kPaused, JobStatus::kError};
  auto wrong_state = [&] {
    return make_error(ErrorCode::kWrongState,
                      "job " + std::to_string(id) + " is " + std::string(to_string(job->status)) +
                          (job->status == JobStatus::kRunning ? ": pause it first; " : ": ") +
                          "the URL of waiting, paused or failed jobs can be changed");
  };
  if (std::find(from.begin(), from.end(), job->status) == from.end()) return wrong_state();
  if (active_.count(id)) {
    // A paused attempt still stopping would record its checkpoint of the old file after the
    // change, and the next attempt would go on from it with the new URL's bytes.
    return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) +
                                                  " is still letting go of its transfer; try again in a moment");
  }
  auto split = split_url_password(url);
  const std::string shown = split ? split->shown : url;
  const std::string was = url_origin(job->source), now = url_origin(shown);
  // Any request header may carry a credential (PRIVATE-TOKEN, X-Api-Key, ...), not only the
  // ones kept secret: none of them goes to another host than the one it was given for.
  if (was != now && (store_->has_secrets(id) || !job->headers.empty())) {
    return make_error(ErrorCode::kInvalidArgument,
                      "job " + std::to_string(id) + " holds a token or request headers for " + was +
                          ", which are never sent elsewhere: give a URL on " + was +
                          ", or add a new job for " + now);
  }
  auto change = store::Store::SourceChange::kNotInStatus;
  transaction([&] {
    change = store_->set_source(id, from, shown,
                                split ? std::optional<std::string>(split->password) : std::nullopt);
    if (change == store::Store::SourceChange::kFromZero && job->bytes > 0) {
      append_event(id, restarted_event(shown, "the URL changed and no ETag or Last-Modified was "
                                              "recorded to check the new file against"));
    }
  });
  if (change == store::Store::SourceChange::kNotInStatus) return wrong_state();
  spdlog::info("job {}: URL changed to {}", id, redact_url(shown));
  inbox_.wake();
  return Ok{};
}

Result<Job> QueueImpl::cancel(int64_t id) {
  auto r = on_loop([&] { return cancel_on_loop(id); });
  if (!r) return r.error();
  if (r.value()) return *r.value();
  notify_changed();
  return after_change(id, opts_.callbacks.on_cancelled);
}

// Loop thread: the status change and the stop of the transfer are one step, so a transfer
// cannot reach its rename between them.
Result<std::optional<Job>> QueueImpl::cancel_on_loop(int64_t id) {
  auto job = store_->get_job(id);
  if (!job) return not_found(id);
  if (job->status == JobStatus::kCancelled) return std::optional<Job>(*job);
  auto it = active_.find(id);
  if (it != active_.end() && it->second.finishing) {
    return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is completing");
  }
  const std::string now = util::now_iso8601();
  bool changed = false;
  transaction([&] {
    changed = store_->change_status(
        id, {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused}, JobStatus::kCancelled, now);
    if (changed) append_event(id, cancelled_event(job->source));
  });
  if (!changed) {
    return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " already ended (" +
                                                  std::string(to_string(job->status)) + ")");
  }
  if (it != active_.end()) {
    it->second.stop = Stop::kCancel;  // the .part goes once the transfer has let go of it
    engine_->stop(id);
  } else if (job->download_path) {
    drop_part(*job->download_path, store_->part_record(id));
  }
  return std::optional<Job>();
}

void QueueImpl::allow_jobs(const std::vector<int64_t>& ids) {
  on_loop([&] {
    if (!opts_.only_jobs) return;  // every job may be claimed already
    auto& only = *opts_.only_jobs;
    only.insert(only.end(), ids.begin(), ids.end());
    std::sort(only.begin(), only.end());
    only.erase(std::unique(only.begin(), only.end()), only.end());
  });  // the loop's schedule() after its commands claims them
}

void QueueImpl::drop_part(const std::string& download_path,
                          const std::optional<store::ClaimedJob::PartRecord>& part) {
  if (download_path.empty() || !part || paths_.held(download_path)) return;
  const std::string dir = util::parent_dir(download_path);
  const std::string name = download_path.substr(dir.size() + (dir == "/" ? 0 : 1)) + ".part";
  int dfd = -1;
  if (!opts_.download_roots.empty()) {
    // Opened from its root down without following a link, as the engine opens it.
    auto root = util::root_of(download_path, opts_.download_roots);
    if (!root) return;
    const std::string rel =
        dir.size() > root->size() ? dir.substr(*root == "/" ? 1 : root->size() + 1) : "";
    auto fd = util::open_folder_beneath(*root, rel, false);
    if (!fd) return;
    dfd = fd.value();
  } else {
    dfd = env_.openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
  }
  struct stat st {};
  if (env_.fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_dev) == part->dev &&
      static_cast<uint64_t>(st.st_ino) == part->ino &&
      (part->birth_ns == 0 || util::birth_time_ns(dfd, name.c_str()) == part->birth_ns)) {
    env_.unlinkat(dfd, name.c_str(), 0);
  }
  env_.close(dfd);
}

Result<Job> QueueImpl::pause(int64_t id) {
  auto r = on_loop([&] { return pause_on_loop(id); });
  if (!r) return r.error();
  if (r.value()) return *r.value();
  notify_changed();
  return after_change(id, opts_.callbacks.on_paused);
}

Result<std::optional<Job>> QueueImpl::pause_on_loop(int64_t id) {
  auto job = store_->get_job(id);
  if (!job) return not_found(id);
  if (job->status == JobStatus::kPaused) return std::optional<Job>(*job);
  auto it = active_.find(id);
  if (it != active_.end() && it->second.finishing) {
    return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is completing");
  }
  bool changed = false;
  transaction([&] {
    changed = store_->change_status(id, {JobStatus::kWaiting, JobStatus::kRunning}, JobStatus::kPaused,
                                    util::now_iso8601());
    if (changed) append_event(id, paused_event(job->source));
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
  return std::optional<Job>();
}

Status QueueImpl::set_rate_limit(int64_t bytes_per_second) {
  if (bytes_per_second < 0) {
    return make_error(ErrorCode::kInvalidArgument, "a rate limit cannot be negative");
  }
  // On the loop: changes and their events keep one order.
  auto changed = without_throwing([&] {
    return on_loop([&]() -> Result<bool> {
      if (rate_limit_.exchange(bytes_per_second) == bytes_per_second) return false;
      engine_->set_rate_limit(bytes_per_second);
      append_event(0, limit_changed_event(bytes_per_second));  // may throw: the limit holds
      return true;
    });
  });
  if (!changed) return changed.error();
  if (changed.value()) notify_changed();
  return Ok{};
}

int64_t QueueImpl::rate_limit() { return rate_limit_.load(); }

Result<Job> QueueImpl::set_job_rate_limit(int64_t id, int64_t bytes_per_second) {
  if (bytes_per_second < 0) {
    return make_error(ErrorCode::kInvalidArgument, "a rate limit cannot be negative");
  }
  return without_throwing([&]() -> Result<Job> {
    // On the loop: a claim of the job comes wholly before (the engine is told) or after (the
    // claim reads the stored limit).
    auto changed = on_loop([&]() -> Result<bool> {
      auto job = store_->get_job(id);
      if (!job) return not_found(id);
      if (is_terminal(job->status)) {
        return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " already ended (" +
                                                      std::string(to_string(job->status)) + ")");
      }
      if (job->limit_rate == bytes_per_second) return false;
      transaction([&] {
        store_->set_limit_rate(id, bytes_per_second);
        append_event(id, limit_changed_event(job->source, bytes_per_second));
      });
      if (active_.count(id)) engine_->set_job_rate_limit(id, bytes_per_second);
      return true;
    });
    if (!changed) return changed.error();
    if (changed.value()) notify_changed();
    return after_change(id, nullptr);
  });
}

int64_t QueueImpl::cancel_all_jobs() {
  int64_t n = 0;
  for (int64_t id : store_->ids_in({JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused})) {
    auto r = cancel_job(id);
    if (r && r->status == JobStatus::kCancelled) ++n;
  }
  return n;
}

// Needs no ordering with the loop: prune removes ended jobs only, and the engine's path
// registry says whether a transfer still holds the .part.
int64_t QueueImpl::prune_jobs(const PruneFilter& filter) {
  auto pruned = store_->prune(filter, util::now_iso8601());
  for (const auto& p : pruned) {
    // An error job keeps its .part for retry; once pruned nobody will resume it.
    if (p.status == JobStatus::kError && p.download_path) drop_part(*p.download_path, p.part);
  }
  return static_cast<int64_t>(pruned.size());
}

bool QueueImpl::join(std::optional<std::chrono::milliseconds> timeout, const std::vector<int64_t>& wanted) {
  auto deadline = timeout ? Clock::now() + *timeout : Clock::time_point::max();
  const std::vector<int64_t> ids = sorted_unique(wanted);
  const uint64_t key = ids_key(ids);
  size_t ended = 0;  // see queue/join_walk.h
  {
    std::lock_guard lk(join_place_mu_);
    if (join_place_key_ == key) ended = std::min(join_place_ended_, ids.size());
  }
  // Ended on record is not enough: a cancelled job's transfer may still hold its .part, which
  // is gone only once the transfer has let go of it.
  auto held = [&] {
    std::lock_guard lk(changed_mu_);
    if (ids.empty()) return !holding_.empty();
    return std::any_of(ids.begin(), ids.end(), [&](int64_t id) { return holding_.count(id) > 0; });
  };
  auto done_now = [&] {
    if (ids.empty()) return !store_->any_unfinished({}) && !held();
    bool done = walk_past_ended(ids, &ended, kJoinChunk, [&](auto first, auto last) {
      return store_->any_unfinished(std::vector<int64_t>(first, last));
    });
    if (done && store_->any_unfinished(ids)) {
      ended = 0;
      done = false;
    }
    {
      std::lock_guard lk(join_place_mu_);
      join_place_key_ = key;
      join_place_ended_ = ended;
    }
    return done && !held();
  };
  // While jobs end in quick succession (many small files), the store is asked again at most
  // every kJoinRecheck: each answer costs reads that share the store with the loop. Not for
  // the last chunk of ids: the end of a run is not held back.
  static constexpr auto kJoinRecheck = std::chrono::milliseconds(10);
  std::unique_lock lk(changed_mu_);
  for (;;) {
    int64_t seen = change_count_;
    lk.unlock();
    bool done = done_now();
    const auto checked = Clock::now();
    lk.lock();
    if (done) return true;
    auto pred = [&] { return change_count_ != seen; };
    if (timeout) {
      if (!changed_cv_.wait_until(lk, deadline, pred)) return false;
    } else {
      changed_cv_.wait(lk, pred);
    }
    if (ids.size() - ended > kJoinChunk) {
      const auto next = std::min(deadline, checked + kJoinRecheck);
      changed_cv_.wait_until(lk, next, [&] { return closed_; });
    }
  }
}

QueueStats QueueImpl::stats() {
  auto c = store_->counts();
  QueueStats s;
  s.waiting = c.waiting;
  s.running = c.running;
  s.paused = c.paused;
  s.completed = c.completed;
  s.cancelled = c.cancelled;
  s.error = c.error;
  s.uptime_seconds = std::chrono::duration<double>(Clock::now() - started_at_).count();
  s.bytes_per_second = rate_.rate();
  s.job_rates = rate_.job_rates();
  return s;
}

std::vector<Event> QueueImpl::events_since(int64_t since, int64_t limit, std::chrono::milliseconds wait) {
  auto deadline = Clock::now() + wait;
  {
    std::unique_lock lk(changed_mu_);
    changed_cv_.wait_until(lk, deadline, [&] { return last_seq_ > since || closed_; });
  }
  return store_->events_since(since, limit, std::nullopt);
}

int64_t QueueImpl::last_event_seq() {
  std::lock_guard lk(changed_mu_);
  return last_seq_;
}

int64_t QueueImpl::first_event_seq() { return store_->first_event_seq(); }

void QueueImpl::shutdown() {
  {
    std::lock_guard lk(shut_mu_);
    if (shut_) return;
    shut_ = true;
  }
  shutting_down_ = true;
  on_loop([this] {
    stopping_ = true;
    for (auto& [id, a] : active_) {
      if (a.stop == Stop::kNone) a.stop = Stop::kShutdown;
    }
  });
  engine_->stop_all();
  engine_->wait_idle();
  inbox_.quit();
  loop_.join();  // returns once nothing is left with the settle or checkpoint thread either
  settler_->stop();
  checkpoints_->stop();
  engine_.reset();
  callbacks_.drain();
  {
    std::lock_guard lk(changed_mu_);
    closed_ = true;
  }
  changed_cv_.notify_all();
}

void QueueImpl::notify_changed() {
  {
    std::lock_guard lk(changed_mu_);
    ++change_count_;
  }
  changed_cv_.notify_all();
  if (opts_.on_change) opts_.on_change();
}

Error QueueImpl::not_found(int64_t id) {
  return make_error(ErrorCode::kNotFound, "no job with id " + std::to_string(id));
}

Result<Job> QueueImpl::after_change(int64_t id, const std::function<void(const Job&)>& cb) {
  auto job = store_->get_job(id);
  if (!job) return not_found(id);
  if (cb) callbacks_.post([cb, j = *job] { cb(j); });
  return *job;
}

// No ordering with the loop is needed: the job is not with the engine (paused or ended), and a
// claim of it can only follow this change.
Result<Job> QueueImpl::back_to_waiting(int64_t id, JobStatus from, const char* rule) {
  auto job = store_->get_job(id);
  if (!job) return not_found(id);
  if (!store_->change_status(id, {from}, JobStatus::kWaiting, util::now_iso8601())) {
    if (job->status == JobStatus::kWaiting || job->status == JobStatus::kRunning) return *job;
    return make_error(ErrorCode::kWrongState, "job " + std::to_string(id) + " is " +
                                                  std::string(to_string(job->status)) + ": " + rule);
  }
  inbox_.wake();
  notify_changed();
  return after_change(id, nullptr);
}

namespace {
thread_local int64_t t_events_appended = 0;  // see QueueImpl::events_appended_here
thread_local int t_transactions = 0;         // QueueImpl::transaction()s open on this thread
thread_local int64_t t_uncommitted_seq = 0;  // the newest seq they appended
}  // namespace

int64_t QueueImpl::events_appended_here() { return t_events_appended; }

void QueueImpl::transaction(const std::function<void()>& body, store::Commit commit) {
  struct Open {
    Open() { ++t_transactions; }
    ~Open() {
      if (--t_transactions == 0) t_uncommitted_seq = 0;
    }
  };
  int64_t committed = 0;
  {
    Open open;
    store_->transaction(body, commit);  // on a throw, the seqs appended are forgotten
    if (t_transactions == 1) committed = t_uncommitted_seq;
  }
  if (committed > 0) {
    std::lock_guard lk(changed_mu_);
    last_seq_ = std::max(last_seq_, committed);
  }
}

void QueueImpl::append_event(int64_t job_id, const EventRecord& event) {
  int64_t seq = store_->append_event(job_id, event.name(), event.payload_text(), util::now_iso8601());
  ++t_events_appended;
  if (t_transactions > 0) {
    t_uncommitted_seq = std::max(t_uncommitted_seq, seq);
    return;
  }
  std::lock_guard lk(changed_mu_);
  last_seq_ = std::max(last_seq_, seq);
}

// Keeps the event log to opts_.event_retention; one small batch a call, so a long backlog is
// worked off over many batches without holding the write lock for long.
int64_t QueueImpl::trim_events() {
  static constexpr int64_t kTrimBatch = 10000;
  if (opts_.event_retention <= 0) return 0;
  try {
    return store_->trim_events(opts_.event_retention, kTrimBatch);
  } catch (const std::exception& e) {
    spdlog::warn("cannot trim the event log: {}", e.what());
    return 0;
  }
}

std::unique_ptr<DownloadQueue> make_queue(QueueOptions options, std::unique_ptr<store::Store> store,
                                          util::Env& env) {
  return std::make_unique<QueueImpl>(std::move(options), std::move(store), env);
}

}  // namespace queue

namespace {

// Options a transfer would only fail on later, checked when the queue opens.
Status check_options(const QueueOptions& options) {
  if (options.max_parallel < 1) return make_error(ErrorCode::kInvalidArgument, "max_parallel must be >= 1");
  if (!options.ca_cert.empty()) {
    if (auto st = queue::check_ca_cert(options.ca_cert); !st) return st;
  }
  if (!options.proxy.empty()) {
    if (auto st = queue::check_proxy(options.proxy); !st) return st;
  }
  return Ok{};
}

}  // namespace

Result<std::unique_ptr<DownloadQueue>> queue::open_with_store(QueueOptions options,
                                                              std::unique_ptr<store::Store> store,
                                                              util::Env& env) {
  if (auto st = check_options(options); !st) return st.error();
  try {
    return make_queue(std::move(options), std::move(store), env);
  } catch (const StorageError& e) {  // the recovery at start could not write
    return e.error();
  }
}

Result<std::unique_ptr<DownloadQueue>> queue::open_with_env(QueueOptions options, util::Env& env) {
  if (auto st = check_options(options); !st) return st.error();
  auto store = store::open(options.db_path);
  if (!store) return store.error();
  try {
    return make_queue(std::move(options), std::move(store.value()), env);
  } catch (const StorageError& e) {  // the recovery at start could not write
    return e.error();
  }
}

Result<std::unique_ptr<DownloadQueue>> DownloadQueue::open(QueueOptions options) {
  return queue::open_with_env(std::move(options), util::Env::posix());
}

}  // namespace fetchq
