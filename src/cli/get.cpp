// `fetchq get`: downloads URLs with an in-process queue whose state lives in an SQLite file.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "cli/commands.h"
#include "cli/download_options.h"
#include "cli/output.h"
#include "cli/progress_view.h"
#include "fetchq/queue.h"
#include "queue/request_check.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/fs.h"
#include "util/signals.h"

namespace fetchq::cli {
namespace {

struct GetArgs {
  std::vector<std::string> urls;
  std::string input;  // -i: a file of URLs, one a line ('-': standard input)
  DownloadArgs d;
  int parallel = 5;
  std::string state;
  bool json = false;
  bool quiet = false;
  bool resume_flag = false;  // -c/--continue, as wget and curl users type it
  std::string retention = "30d";  // completed jobs that ended longer ago are forgotten
  std::string ca_cert;       // a PEM file of CAs trusted instead of the system's
  std::string proxy;         // empty: libcurl's *_proxy environment variables
};

// Finds the jobs of an earlier run of the same command, or adds new ones, and lets the queue
// (opened with an empty only_jobs) run them. Returns their ids, in the order of `requests`.
// Every request is checked before any job is added or run, so a bad one changes nothing. New
// jobs are added in batches that double in size, each allowed to run at once: the first files
// download while the rest are added.
Result<std::vector<int64_t>> prepare_jobs(DownloadQueue& q,
                                          const std::vector<DownloadRequest>& requests,
                                          int parallel) {
  std::vector<int64_t> ids(requests.size(), 0);
  std::vector<size_t> fresh;      // indexes of the requests that need a new job
  std::vector<const Job*> again;  // jobs of an earlier run to go on with (in `latest`)
  // One pass over the state file finds the newest job of each (source, dest).
  std::map<std::pair<std::string, std::string>, Job> latest;
  for (auto& j : q.list_jobs({})) latest[{j.source, j.dest}] = std::move(j);
  for (size_t i = 0; i < requests.size(); ++i) {
    // Checked here as well as by download_batch, for its message without a "job N:" prefix.
    auto nj = queue::check_request(requests[i], {});
    if (!nj) return nj.error();
    // The stored source hides a URL's password: compare with it as stored.
    auto found = latest.find({nj.value().request.source, requests[i].dest});
    if (found != latest.end()) {
      const Job& old = found->second;
      if (old.status != JobStatus::kCancelled &&
          !(old.status == JobStatus::kCompleted &&
            !(old.download_path && util::exists(*old.download_path)))) {
        ids[i] = old.id;
        again.push_back(&old);
        continue;
      }
    }
    fresh.push_back(i);
  }
  std::vector<int64_t> again_ids;
  for (const Job* old : again) {
    // An interrupted or failed run goes on from its .part.
    if (old->status == JobStatus::kError) {
      if (auto r = q.retry_job(old->id); !r) return r.error();
    } else if (old->status == JobStatus::kPaused) {
      if (auto r = q.resume_job(old->id); !r) return r.error();
    }
    again_ids.push_back(old->id);
  }
  q.allow_jobs(again_ids);
  size_t batch = static_cast<size_t>(std::max(parallel, 1)) * 4;
  for (size_t from = 0; from < fresh.size(); from += batch, batch *= 2) {
    const size_t to = std::min(fresh.size(), from + batch);
    std::vector<DownloadRequest> some;
    for (size_t k = from; k < to; ++k) some.push_back(requests[fresh[k]]);
    auto jobs = q.download_batch(some);
    if (!jobs) return jobs.error();
    std::vector<int64_t> added;
    for (size_t k = 0; k < jobs.value().size(); ++k) {
      ids[fresh[from + k]] = jobs.value()[k].id;
      added.push_back(jobs.value()[k].id);
    }
    q.allow_jobs(added);
  }
  return ids;
}

// Those of `jobs` whose id is in `ids`, in the order of `ids` (an id listed twice, once).
std::vector<Job> in_order_of(const std::vector<int64_t>& ids, std::vector<Job> jobs) {
  const std::unordered_set<int64_t> wanted(ids.begin(), ids.end());
  std::unordered_map<int64_t, Job> by_id;
  for (auto& j : jobs) {
    if (wanted.count(j.id)) by_id.emplace(j.id, std::move(j));
  }
  std::vector<Job> out;
  out.reserve(by_id.size());
  for (int64_t id : ids) {
    if (auto it = by_id.find(id); it != by_id.end()) {
      out.push_back(std::move(it->second));
      by_id.erase(it);
    }
  }
  return out;
}

// The jobs of `ids` in that order, as a list shows them (no segments), read in one pass over
// the store from the smallest id instead of one read each: a run of thousands of files redraws
// them four times a second. When the ids are spread over many more jobs of the state file (an
// old job run again), one read each costs less.
std::vector<Job> listed_jobs(DownloadQueue& q, const std::vector<int64_t>& ids) {
  std::vector<Job> out;
  if (ids.empty()) return out;
  const auto [lo, hi] = std::minmax_element(ids.begin(), ids.end());
  if (static_cast<uint64_t>(*hi - *lo) > 4 * ids.size() + 1000) {
    out.reserve(ids.size());
    for (int64_t id : ids) {
      if (auto j = q.id_to_job(id)) out.push_back(std::move(*j));
    }
    return out;
  }
  ListFilter from;
  from.after_id = *lo - 1;
  from.limit = *hi - *lo + 1;
  return in_order_of(ids, q.list_jobs(from));
}

// The jobs of `ids` that did not complete, in that order: a read per status other than
// completed, which at the end of a good run finds nothing, instead of reading every job.
std::vector<Job> uncompleted_jobs(DownloadQueue& q, const std::vector<int64_t>& ids) {
  if (ids.empty()) return {};
  std::vector<Job> found;
  for (JobStatus status : {JobStatus::kError, JobStatus::kCancelled, JobStatus::kPaused,
                           JobStatus::kWaiting, JobStatus::kRunning}) {
    ListFilter f;
    f.status = status;
    f.after_id = *std::min_element(ids.begin(), ids.end()) - 1;
    for (auto& j : q.list_jobs(f)) found.push_back(std::move(j));
  }
  return in_order_of(ids, std::move(found));
}

// The jobs of `ids` in that order, whole (as `show` gives them): for --json.
std::vector<Job> whole_jobs(DownloadQueue& q, const std::vector<int64_t>& ids) {
  std::vector<Job> out;
  for (int64_t id : ids) {
    if (auto j = q.id_to_job(id)) out.push_back(std::move(*j));
  }
  return out;
}

// The progress of `fetchq get` on standard error: redrawn in place on a terminal (see
// cli/progress_view.h), a line per start and end otherwise, and a summary at the end.
class Display {
 public:
  Display(bool quiet, bool terminal) : quiet_(quiet), terminal_(terminal), started_(util::SteadyClock::now()) {}

  void update(DownloadQueue& q, const std::vector<int64_t>& ids, bool final_pass) {
    if (quiet_) return;
    std::vector<Job> jobs = listed_jobs(q, ids);
    auto now = util::SteadyClock::now();
    if (terminal_) {
      std::vector<JobRate> rates;
      for (const auto& j : jobs) {
        if (j.status == JobStatus::kRunning) rates.push_back({j.id, rate(j, now)});
      }
      const int width = terminal_width() - 1;
      std::cerr << (final_pass ? area_.clear(width) : area_.frame(progress_lines(jobs, rates, width), width));
    } else {
      for (const auto& j : jobs) plain(j);
    }
    if (final_pass) {
      const double elapsed = std::chrono::duration<double>(now - started_).count();
      std::cerr << summary_lines(jobs, elapsed).front() << "\n";
    }
    std::cerr << std::flush;
  }

 private:
  double rate(const Job& j, util::SteadyClock::time_point now) {
    auto& s = samples_[j.id];
    double r = s.rate;
    if (s.when.time_since_epoch().count() != 0) {
      double dt = std::chrono::duration<double>(now - s.when).count();
      if (dt >= 0.5) {
        double inst = j.bytes >= s.bytes ? static_cast<double>(j.bytes - s.bytes) / dt : 0;
        r = s.rate > 0 ? 0.6 * s.rate + 0.4 * inst : inst;
        s = {now, j.bytes, r};
      }
    } else {
      s = {now, j.bytes, 0};
    }
    return r;
  }

  void plain(const Job& j) {
    auto& last = reported_[j.id];
    if (last == j.status) return;
    last = j.status;
    switch (j.status) {
      case JobStatus::kRunning:
        // Once per job: a job handed back before its transfer began (to let a higher priority
        // go first), or retried after a passing failure, runs again without a second line.
        if (announced_.insert(j.id).second) std::cerr << "started " << j.source << "\n";
        break;
      case JobStatus::kCompleted:
        std::cerr << "completed " << j.download_path.value_or(j.dest) << " ("
                  << human_bytes(static_cast<double>(j.bytes)) << ")\n";
        break;
      default:
        break;
    }
  }

  struct Sample {
    util::SteadyClock::time_point when{};
    int64_t bytes = 0;
    double rate = 0;
  };
  bool quiet_, terminal_;
  util::SteadyClock::time_point started_;
  LiveArea area_;
  std::map<int64_t, Sample> samples_;
  std::map<int64_t, JobStatus> reported_;
  std::set<int64_t> announced_;  // jobs whose "started" line was printed
};

// The one line `fetchq get` prints when its state file fails it: another process holding the
// SQLite write lock (a second fetchq get, an sqlite3 shell inside BEGIN EXCLUSIVE), or an
// unreadable, damaged or full file. Exit 4.
int state_failure(const std::string& state, const Error& e) {
  if (e.code == ErrorCode::kBusy) {
    print_error("the state file " + state + " is locked by another process (" + e.message +
                "); try again when it is done, or give another --state");
  } else {
    print_error("cannot use the state file " + state + ": " + e.message);
  }
  return kExitFailure;
}

bool is_storage_code(ErrorCode code) { return code == ErrorCode::kStorage || code == ErrorCode::kBusy; }

// Keeps the first storage failure the queue's threads report, for the waiting loop to see.
class StoreFailure {
 public:
  void set(const Error& e) {
    std::lock_guard lk(mu_);
    if (!error_) error_ = e;
  }
  std::optional<Error> get() {
    std::lock_guard lk(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  std::optional<Error> error_;
};

int run_get(const GetArgs& a) {
  util::raise_open_file_limit();
  // The state spec first: one that names no file we can use is refused before anything is
  // created on disk. From here on the state is an absolute path, itself a valid spec.
  auto where = store::locate(a.state.empty() ? default_state_path() : a.state);
  if (!where) {
    print_error("--state: " + where.error().message);
    return kExitUsage;
  }
  const std::string state = util::absolute_path(where.value().path);
  std::vector<std::string> urls = a.urls;
  if (!a.input.empty()) {
    auto lines = read_input_lines(a.input);
    if (!lines) {
      print_error(lines.error().message);
      return kExitUsage;
    }
    for (auto& [lineno, line] : lines.value()) {
      if (line[0] == '{') {
        print_error(a.input + ":" + std::to_string(lineno) +
                    ": get -i takes one URL a line (JSON jobs are for fetchq add -i)");
        return kExitUsage;
      }
      urls.push_back(line);
    }
  }
  if (urls.empty()) {
    print_error("give URLs, or -i FILE");
    return kExitUsage;
  }
  if (auto st = check_dir_and_output(a.d); !st) {
    print_error(st.error().message);
    return kExitUsage;
  }
  if (!a.d.output.empty() && urls.size() > 1) {
    print_error("-o names one file: give one URL, or use -d DIR for several");
    return kExitUsage;
  }
  if (auto st = check_mirror_use(a.d, a.urls.size(), !a.input.empty()); !st) {
    print_error(st.error().message);
    return kExitUsage;
  }
  if (a.resume_flag && !a.quiet) {
    std::cerr << "fetchq: -c is not needed: fetchq get always resumes what it fetched before\n";
  }
  std::optional<int64_t> retention = a.retention == "0" ? 0 : parse_age(a.retention);
  if (!retention) {
    print_error("--retention '" + a.retention +
                "': give a count and a unit, such as 12h, 30d or 8w, or 0 to keep every job");
    return kExitUsage;
  }
  if (a.parallel < 1 || a.parallel > 1000) {
    print_error("-j must be between 1 and 1000");
    return kExitUsage;
  }
  auto policy = parse_if_exists(a.d.if_exists.empty() ? "error" : a.d.if_exists);
  if (!policy) {
    print_error("--if-exists must be error, skip, overwrite or rename");
    return kExitUsage;
  }
  auto base = request_template(a.d);
  if (!base) {
    print_error(base.error().message);
    return kExitUsage;
  }
  base->options.if_exists = *policy;
  if (!a.ca_cert.empty()) {
    if (auto st = queue::check_ca_cert(a.ca_cert); !st) {
      print_error("--" + st.error().message);
      return kExitUsage;
    }
  }
  if (!a.proxy.empty()) {
    if (auto st = queue::check_proxy(a.proxy); !st) {
      print_error("--" + st.error().message);
      return kExitUsage;
    }
  }
  // --limit-rate holds for the whole run (every connection of every job), and is not stored
  // with the jobs: the next run has its own.
  const int64_t run_limit = std::exchange(base->options.limit_rate, 0);
  if (a.d.output.empty()) {
    if (auto st = util::make_parent_dirs(base->dest + "x"); !st) {
      print_error(st.error().message);
      return kExitFailure;
    }
  }
  std::vector<DownloadRequest> requests;
  std::set<std::string> seen;  // the same URL twice is one download, not two racing for a name
  for (const auto& u : urls) {
    if (!seen.insert(u).second) continue;
    requests.push_back(base.value());
    requests.back().source = u;
  }
  for (const auto& r : requests) {
    if (auto st = queue::check_source_url(r.source); !st) {
      print_error(st.error().message);
      return kExitUsage;
    }
    if (auto st = queue::check_mirrors(r.options.mirrors, r.source); !st) {
      const std::string& why = st.error().message;
      print_error(why.rfind("mirror: ", 0) == 0 ? "--" + why : "--mirror: " + why);
      return kExitUsage;
    }
  }

  if (auto st = util::make_parent_dirs(state); !st) {
    print_error(st.error().message);
    return kExitFailure;
  }
  QueueOptions qo;
  qo.db_path = state;
  qo.max_parallel = a.parallel;
  qo.ca_cert = a.ca_cert.empty() ? "" : util::absolute_path(a.ca_cert);
  qo.proxy = a.proxy;
  qo.rate_limit = run_limit;
  // Signals are taken synchronously by this thread; every other thread has them blocked.
  const sigset_t sigs = util::block_signals({SIGINT, SIGTERM, SIGHUP});

  // The queue runs this command's jobs alone (only_jobs, filled as they are found or added),
  // leaving other jobs of the state file where they are.
  qo.only_jobs = std::vector<int64_t>{};
  // A store that fails the running queue (it keeps trying) stops this command instead: better
  // one clear line now than a progress display that never moves.
  auto store_failure = std::make_shared<StoreFailure>();
  qo.on_store_error = [store_failure](const Error& e) { store_failure->set(e); };
  auto opened = DownloadQueue::open(qo);
  if (!opened) return state_failure(state, opened.error());
  auto& q = *opened.value();
  Result<std::vector<int64_t>> ids = std::vector<int64_t>{};
  try {
    ids = prepare_jobs(q, requests, a.parallel);
  } catch (const StorageError& e) {
    q.shutdown();
    return state_failure(state, e.error());
  }
  if (!ids) {
    q.shutdown();
    if (ids.error().code == ErrorCode::kInvalidArgument) {
      print_error(ids.error().message);
      return kExitUsage;
    }
    if (is_storage_code(ids.error().code)) return state_failure(state, ids.error());
    print_error(ids.error().message);
    return kExitFailure;
  }
  // The state file keeps what a later run needs to resume, not every file ever fetched:
  // completed jobs of earlier runs that ended before the retention are forgotten.
  if (*retention > 0) {
    PruneFilter old;
    old.statuses = {JobStatus::kCompleted};
    old.ended_before =
        util::iso8601(std::chrono::system_clock::now() - std::chrono::seconds(*retention));
    old.keep = ids.value();
    try {
      q.prune_jobs(old);
    } catch (const StorageError& e) {
      q.shutdown();
      return state_failure(state, e.error());
    }
  }
  Display display(a.quiet || a.json, stderr_is_terminal());
  bool interrupted = false;
  try {
    for (;;) {
      // Returns as soon as the last job ends, or after a quarter of a second to redraw and to
      // notice a signal or a failing store.
      if (q.join(std::chrono::milliseconds(250), ids.value())) break;
      if (auto e = store_failure->get()) {
        q.shutdown();
        return state_failure(state, *e);
      }
      display.update(q, ids.value(), false);
      if (util::take_pending_signal(sigs)) {
        interrupted = true;
        break;
      }
    }
  } catch (const StorageError& e) {
    q.shutdown();
    return state_failure(state, e.error());
  }
  if (interrupted) {
    q.shutdown();  // every running job is checkpointed and left waiting for the next run
    display.update(q, ids.value(), true);
    if (!a.quiet) print_error("interrupted; run the same command again to resume");
    if (a.json) print_jobs_json(whole_jobs(q, ids.value()));
    return kExitInterrupted;
  }
  display.update(q, ids.value(), true);
  std::vector<Job> jobs = a.json ? whole_jobs(q, ids.value()) : uncompleted_jobs(q, ids.value());
  q.shutdown();
  bool all_ok = true;
  for (const auto& j : jobs) {
    if (j.status != JobStatus::kCompleted) {
      all_ok = false;
      if (!a.json) {
        print_error(j.source + ": " + j.error_type.value_or(std::string(to_string(j.status))) +
                    (j.error ? ": " + *j.error : ""));
      }
    }
  }
  if (a.json) print_jobs_json(jobs);
  return all_ok ? kExitOk : kExitJobFailed;
}

}  // namespace

std::string default_state_path() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/fetchq/get.db";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/state/fetchq/get.db";
  return util::absolute_path(".fetchq-get.db");
}

void print_error(const std::string& message) { std::cerr << "fetchq: " << message << "\n"; }

void add_get_command(CLI::App& app, std::function<int()>* run) {
  auto args = std::make_shared<GetArgs>();
  auto* cmd = app.add_subcommand("get", "Download URLs now, without a daemon; run again to resume");
  cmd->add_option("urls", args->urls, "URLs to download (http or https)");
  cmd->add_option("-i,--input", args->input, "file with one URL a line ('-' for standard input)");
  add_download_options(cmd, args->d);
  cmd->add_option("-j,--parallel", args->parallel, "downloads at once (default 5)");
  cmd->add_option("--state", args->state, "state database, PATH or sqlite:PATH (default $XDG_STATE_HOME/fetchq/get.db)");
  cmd->add_flag("--json", args->json, "print the final jobs as a JSON array");
  cmd->add_flag("-q,--quiet", args->quiet, "no progress output");
  cmd->add_option("--ca-cert", args->ca_cert, "trust the CA certificates of this PEM file (a private CA)");
  cmd->add_option("--proxy", args->proxy, "proxy URL (default: $https_proxy, $http_proxy, $ALL_PROXY)");
  cmd->add_flag("-c,--continue", args->resume_flag, "accepted for wget/curl habits: resuming is automatic");
  cmd->add_option("--retention", args->retention,
                  "forget completed jobs of earlier runs that ended longer ago: 12h, 30d, 8w; 0 keeps all (default 30d)");
  cmd->callback([args, run] { *run = [args] { return run_get(*args); }; });
}

}  // namespace fetchq::cli
