// The method table of the control protocol, and the waiter thread behind join and subscribe.
#include "control/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "control/protocol.h"
#include "queue/join_walk.h"
#include "queue/request_check.h"
#include "util/thread_name.h"

namespace fetchq::control {
namespace {

// Events handed to one subscriber in one pass; more wait for the next pass.
constexpr int64_t kEventBatch = 500;

json job_result(const json& id, const Result<Job>& r) {
  if (!r) return rpc_error(id, r.error());
  return rpc_result(id, json(r.value()));
}

// {"id":ID,"jsonrpc":"2.0","result":[JOB,...]} written directly: the same text rpc_result and
// dump would give, without an object per job.
std::string job_list_line(const json& id, const std::vector<Job>& jobs) {
  std::string out = job_list_head(id);
  out.reserve(out.size() + jobs.size() * 400);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i > 0) out += ',';
    append_json(out, jobs[i]);
  }
  out += "]}";
  return out;
}

}  // namespace

Dispatcher::Dispatcher(DownloadQueue* queue) : q_(queue) {
  const Handler now{false, &Dispatcher::immediate};
  for (const char* m : {"download", "download_batch", "list_jobs", "get_job", "cancel_job", "pause_job",
                        "resume_job", "retry_job", "set_url", "cancel_all_jobs", "prune_jobs", "stats",
                        "get_limits", "set_limits"}) {
    table_[m] = now;
  }
  table_["join"] = Handler{true, &Dispatcher::join};
  table_["subscribe"] = Handler{true, &Dispatcher::subscribe};
}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::start() {
  waiter_ = std::thread([this] {
    util::name_this_thread("fetchq-waiter");
    waiter_loop();
  });
}

void Dispatcher::stop() {
  {
    std::lock_guard lk(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (waiter_.joinable()) waiter_.join();
  std::lock_guard lk(mu_);
  waiters_.clear();
  subscribers_.clear();
}

void Dispatcher::notify_change() {
  {
    std::lock_guard lk(mu_);
    changed_ = true;
  }
  cv_.notify_one();
}

void Dispatcher::cancel(const Session* session) {
  std::lock_guard lk(mu_);
  std::erase_if(waiters_, [&](const Waiter& w) { return w.session.get() == session; });
  std::erase_if(subscribers_, [&](const auto& s) { return s->session.get() == session; });
  if (passing_) cancelled_.push_back(session);
}

// Whether `session` was cancelled during the current pass. Only the waiter thread asks.
bool Dispatcher::cancelled(const Session* session) {
  std::lock_guard lk(mu_);
  return std::find(cancelled_.begin(), cancelled_.end(), session) != cancelled_.end();
}

Dispatcher::Outcome Dispatcher::handle(const RpcRequest& req, const SessionPtr& session) {
  auto it = table_.find(req.method);
  if (it == table_.end()) {
    session->send(answer_line(
        rpc_error(req.id, kMethodNotFound, "unknown method '" + req.method.substr(0, 100) + "'")));
    return Outcome::kAnswered;
  }
  try {
    return (this->*(it->second.run))(req, session);
  } catch (const BadParams& e) {
    session->send(answer_line(rpc_error(req.id, kInvalidParams, "invalid params: " + e.message)));
  } catch (const std::exception& e) {
    spdlog::error("{} failed: {}", req.method, e.what());
    session->send(answer_line(rpc_error(req.id, kInternalError, std::string("internal error: ") + e.what())));
  }
  return Outcome::kAnswered;
}

Dispatcher::Outcome Dispatcher::immediate(const RpcRequest& req, const SessionPtr& session) {
  session->send(answer(req, session->peer()));
  return Outcome::kAnswered;
}

std::string Dispatcher::answer(const RpcRequest& req, const std::string& peer) {
  const json& p = req.params;
  const std::string& m = req.method;
  DownloadQueue& q = *q_;
  if (m == "download_batch") {
    auto jobs = p.find("jobs");
    if (jobs == p.end() || !jobs->is_array() || jobs->empty()) throw BadParams{"'jobs' must be a non-empty list"};
    std::vector<DownloadRequest> batch;
    batch.reserve(jobs->size());
    for (const auto& j : *jobs) batch.push_back(read_download(j));
    auto r = q.download_batch(batch);
    if (!r) return answer_line(rpc_error(req.id, r.error()));
    spdlog::info("{}: download_batch of {} jobs", peer, r->size());
    return job_list_line(req.id, r.value());
  }
  if (m == "list_jobs") {
    std::string why;
    auto f = parse_list_jobs(p, &why);
    if (!f) throw BadParams{why};
    return job_list_line(req.id, q.list_jobs(*f));
  }
  json out;
  if (m == "download") {
    auto r = q.download(read_download(p));
    if (r) spdlog::info("{}: download {} -> job {}", peer, r->source, r->id);
    out = job_result(req.id, r);
  } else if (m == "get_job") {
    int64_t id = read_id(p);
    auto j = q.id_to_job(id);
    out = j ? rpc_result(req.id, json(*j))
            : rpc_error(req.id, make_error(ErrorCode::kNotFound, "no job with id " + std::to_string(id)));
  } else if (m == "cancel_job" || m == "pause_job" || m == "resume_job" || m == "retry_job") {
    int64_t id = read_id(p);
    spdlog::info("{}: {} {}", peer, m, id);
    if (m == "cancel_job") {
      out = job_result(req.id, q.cancel_job(id));
    } else if (m == "pause_job") {
      out = job_result(req.id, q.pause_job(id));
    } else if (m == "resume_job") {
      out = job_result(req.id, q.resume_job(id));
    } else {
      out = job_result(req.id, q.retry_job(id));
    }
  } else if (m == "set_url") {
    int64_t id = read_id(p);
    const std::string url = read_url(p);
    spdlog::info("{}: set_url {} {}", peer, id, queue::redact_url(url));
    out = job_result(req.id, q.set_url(id, url));
  } else if (m == "cancel_all_jobs") {
    spdlog::info("{}: cancel_all_jobs", peer);
    out = rpc_result(req.id, q.cancel_all_jobs());
  } else if (m == "prune_jobs") {
    std::string why;
    auto f = parse_prune_jobs(p, &why);
    if (!f) throw BadParams{why};
    spdlog::info("{}: prune_jobs", peer);
    out = rpc_result(req.id, q.prune_jobs(*f));
  } else if (m == "get_limits" || m == "set_limits") {
    if (m == "set_limits") {
      std::string why;
      auto sp = parse_set_limits(p, &why);
      if (!sp) throw BadParams{why};
      if (sp->id) {
        auto r = q.set_job_rate_limit(*sp->id, sp->limit_rate);
        if (!r) return answer_line(rpc_error(req.id, r.error()));
        spdlog::info("{}: set_limits job {}: {} bytes/s", peer, *sp->id, sp->limit_rate);
      } else {
        if (auto st = q.set_rate_limit(sp->limit_rate); !st) {
          return answer_line(rpc_error(req.id, st.error()));
        }
        spdlog::info("{}: set_limits: {} bytes/s", peer, sp->limit_rate);
      }
    }
    std::vector<Job> limited;
    for (auto status : {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused}) {
      for (auto& j : q.list_jobs(ListFilter{.status = status})) {
        if (j.limit_rate > 0) limited.push_back(std::move(j));
      }
    }
    std::sort(limited.begin(), limited.end(),
              [](const Job& a, const Job& b) { return a.id < b.id; });
    out = rpc_result(req.id, limits_json(q.rate_limit(), limited));
  } else {  // stats: the table holds no other name
    out = rpc_result(req.id, stats_json(q.stats()));
  }
  return answer_line(out);
}

// "" when every id names a job; else the message naming the unknown ones (the first few).
std::string Dispatcher::unknown_ids(const std::vector<int64_t>& ids) {
  std::vector<int64_t> unknown;
  size_t count = 0;
  for (int64_t id : queue::sorted_unique(ids)) {
    if (q_->id_to_job(id)) continue;
    if (++count <= 5) unknown.push_back(id);
  }
  if (count == 0) return "";
  std::string msg = count == 1 ? "no job with id " : "no jobs with ids ";
  for (size_t i = 0; i < unknown.size(); ++i) msg += (i ? ", " : "") + std::to_string(unknown[i]);
  if (count > unknown.size()) msg += " (and " + std::to_string(count - unknown.size()) + " more)";
  return msg;
}

Dispatcher::Outcome Dispatcher::join(const RpcRequest& req, const SessionPtr& session) {
  std::string why;
  auto jp = parse_join(req.params, &why);
  if (!jp) throw BadParams{why};
  if (auto unknown = unknown_ids(jp->ids); !unknown.empty()) {
    session->send(answer_line(rpc_error(req.id, make_error(ErrorCode::kNotFound, unknown))));
    return Outcome::kAnswered;
  }
  Waiter w{session, req.id, queue::sorted_unique(jp->ids), std::nullopt};
  if (jp->timeout_s) {
    w.deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(*jp->timeout_s * 1000));
  }
  {
    std::lock_guard lk(mu_);
    waiters_.push_back(std::move(w));
    changed_ = true;
  }
  cv_.notify_one();
  return Outcome::kWaiting;
}

Dispatcher::Outcome Dispatcher::subscribe(const RpcRequest& req, const SessionPtr& session) {
  std::string why;
  auto since = parse_subscribe(req.params, &why);
  if (!since) throw BadParams{why};
  int64_t head = q_->last_event_seq();
  int64_t from = *since < 0 ? head : *since;
  // The answer goes first: no event may reach the session before it.
  session->send(answer_line(
      rpc_result(req.id, json{{"since", from}, {"last_seq", head}, {"first_seq", q_->first_event_seq()}})));
  {
    std::lock_guard lk(mu_);
    subscribers_.push_back(std::make_shared<Subscription>(Subscription{session, from}));
    changed_ = true;
  }
  cv_.notify_one();
  return Outcome::kAnswered;
}

// The waiter keeps its place among the ids between changes (see queue/join_walk.h); once
// every id was seen ended, the queue's own join confirms it.
bool Dispatcher::join_done(Waiter& w) {
  if (w.ids.empty()) return q_->join(std::chrono::milliseconds(0), {});
  auto unfinished = [&](auto first, auto) {
    auto job = q_->id_to_job(*first);
    return job && (job->status == JobStatus::kWaiting || job->status == JobStatus::kRunning);
  };
  if (!queue::walk_past_ended(w.ids, &w.ended, 1, unfinished)) return false;
  if (q_->join(std::chrono::milliseconds(0), w.ids)) return true;
  w.ended = 0;
  return false;
}

// Answers join and feeds subscribers when the queue changes, without polling: it sleeps until
// a change, the nearest join deadline, or stop().
void Dispatcher::waiter_loop() {
  for (;;) {
    std::vector<Waiter> waiters;
    std::vector<std::shared_ptr<Subscription>> subs;
    {
      std::unique_lock lk(mu_);
      auto next = Clock::time_point::max();
      for (auto& w : waiters_) {
        if (w.deadline) next = std::min(next, *w.deadline);
      }
      if (!changed_ && !stopped_) {
        if (next == Clock::time_point::max()) {
          cv_.wait(lk, [this] { return changed_ || stopped_; });
        } else {
          cv_.wait_until(lk, next, [this] { return changed_ || stopped_; });
        }
      }
      if (stopped_) return;
      changed_ = false;
      waiters.swap(waiters_);
      subs = subscribers_;
      passing_ = true;
    }
    std::vector<Waiter> still;
    auto now = Clock::now();
    for (auto& w : waiters) {
      if (cancelled(w.session.get())) continue;  // its transport forgot it already
      if (w.session->gone()) {
        // Nobody left to answer; resumed all the same, so the transport, which counts the
        // request as in progress, can let the session go.
        w.session->resume();
        continue;
      }
      bool done = false;
      try {
        done = join_done(w);
      } catch (const std::exception& e) {
        // Storage failed: keep waiting (the next change or the deadline asks again).
        spdlog::error("join failed: {}", e.what());
      }
      if (done || (w.deadline && now >= *w.deadline)) {
        w.session->send(answer_line(rpc_result(w.id, json{{"done", done}})));
        w.session->resume();
      } else {
        still.push_back(std::move(w));
      }
    }
    bool behind = false;
    std::vector<std::shared_ptr<Subscription>> gone;  // removed below
    for (auto& s : subs) {
      switch (s->session->event_state()) {
        case Session::EventState::kGone:
          gone.push_back(s);
          continue;
        case Session::EventState::kBusy:
          continue;  // its transport calls notify_change() once it may take events
        case Session::EventState::kBehind:
          behind = true;  // let it drain first
          continue;
        case Session::EventState::kReady:
          break;
      }
      std::vector<Event> events;
      try {
        events = q_->events_since(s->cursor, kEventBatch, std::chrono::milliseconds(0));
      } catch (const std::exception& e) {
        spdlog::error("reading events failed: {}", e.what());
        continue;
      }
      if (events.empty() || cancelled(s->session.get())) continue;
      std::vector<std::string> messages;
      messages.reserve(events.size());
      for (const auto& e : events) {
        messages.push_back(answer_line(json{{"jsonrpc", "2.0"}, {"method", "event"}, {"params", json(e)}}));
      }
      if (!s->session->send_events(messages)) continue;
      s->cursor = events.back().seq;
      behind = behind || static_cast<int64_t>(events.size()) == kEventBatch;
    }
    std::lock_guard lk(mu_);
    for (auto& w : still) {
      if (std::find(cancelled_.begin(), cancelled_.end(), w.session.get()) == cancelled_.end()) {
        waiters_.push_back(std::move(w));
      }
    }
    cancelled_.clear();
    passing_ = false;
    // Only the gone ones leave: a client that subscribed while this pass ran is in
    // subscribers_ but not in subs, and must stay (its own pass comes next, changed_ is set).
    if (!gone.empty()) {
      std::erase_if(subscribers_, [&](const auto& s) {
        return std::find(gone.begin(), gone.end(), s) != gone.end();
      });
    }
    if (behind) changed_ = true;
  }
}

}  // namespace fetchq::control
