// `fetchq get`: downloads URLs with an in-process queue whose state lives in an SQLite file.
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "cli/commands.h"
#include "cli/output.h"
#include "fetchq/queue.h"
#include "queue/request_check.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/fs.h"

namespace fetchq::cli {
namespace {

struct GetArgs {
  std::vector<std::string> urls;
  std::string dir;
  std::string output;
  int parallel = 5;
  int priority = 10;
  std::string sha256;
  std::string token_env;
  std::string state;
  std::string if_exists = "error";
  bool json = false;
  bool quiet = false;
};

std::string default_state_path() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/fetchq/get.db";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.local/state/fetchq/get.db";
  return util::absolute_path(".fetchq-get.db");
}

// Finds the jobs of an earlier run of the same command, or adds new ones. Returns their ids.
Result<std::vector<int64_t>> prepare_jobs(const std::string& state,
                                          const std::vector<DownloadRequest>& requests) {
  auto opened = store::open(state);
  if (!opened) return opened.error();
  auto& st = *opened.value();
  std::vector<int64_t> ids(requests.size(), 0);
  std::vector<store::NewJob> fresh;
  std::vector<size_t> fresh_index;
  const std::string now = util::now_iso8601();
  // One pass over the state file finds the newest job of each (source, dest).
  std::map<std::pair<std::string, std::string>, Job> latest;
  for (auto& j : st.list_jobs({})) latest[{j.source, j.dest}] = std::move(j);
  for (size_t i = 0; i < requests.size(); ++i) {
    auto nj = queue::check_request(requests[i], {});
    if (!nj) return nj.error();
    // The stored source hides a URL's password: compare with it as stored.
    auto found = latest.find({nj.value().request.source, requests[i].dest});
    std::optional<Job> old;
    if (found != latest.end()) old = found->second;
    if (old && old->status != JobStatus::kCancelled &&
        !(old->status == JobStatus::kCompleted &&
          !(old->download_path && util::exists(*old->download_path)))) {
      ids[i] = old->id;
      // An interrupted or failed run goes on from its .part.
      st.change_status(old->id, {JobStatus::kError, JobStatus::kPaused}, JobStatus::kWaiting, now);
      continue;
    }
    fresh.push_back(std::move(nj.value()));
    fresh_index.push_back(i);
  }
  auto jobs = st.insert_jobs(fresh, now);
  for (size_t k = 0; k < jobs.size(); ++k) ids[fresh_index[k]] = jobs[k].id;
  return ids;
}

class Display {
 public:
  Display(bool quiet, bool terminal) : quiet_(quiet), terminal_(terminal) {}

  void update(DownloadQueue& q, const std::vector<int64_t>& ids, bool final_pass) {
    if (quiet_) return;
    std::vector<Job> jobs;
    jobs.reserve(ids.size());
    for (auto id : ids) {
      if (auto j = q.id_to_job(id)) jobs.push_back(std::move(*j));
    }
    auto now = util::SteadyClock::now();
    if (terminal_) {
      draw(jobs, now, final_pass);
    } else {
      for (const auto& j : jobs) plain(j);
    }
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

  void draw(const std::vector<Job>& jobs, util::SteadyClock::time_point now, bool final_pass) {
    std::string out;
    if (lines_ > 0) out += "\x1b[" + std::to_string(lines_) + "F";
    int width = terminal_width() - 1;
    int shown = 0, done = 0, failed = 0, waiting = 0;
    for (const auto& j : jobs) {
      if (j.status == JobStatus::kCompleted) ++done;
      if (j.status == JobStatus::kError || j.status == JobStatus::kCancelled) ++failed;
      if (j.status == JobStatus::kWaiting || j.status == JobStatus::kPaused) ++waiting;
      bool show = j.status == JobStatus::kRunning || (jobs.size() <= 10);
      if (!show || shown >= 10) continue;
      ++shown;
      std::string line = progress_line(j, j.status == JobStatus::kRunning ? rate(j, now) : -1, width);
      if (j.status != JobStatus::kRunning) {
        std::string tag = std::string(to_string(j.status));
        line = line.substr(0, static_cast<size_t>(std::max(0, width - 10))) + " " + tag;
      }
      out += "\x1b[2K" + line + "\n";
    }
    if (jobs.size() > 1 || final_pass) {
      out += "\x1b[2K" + std::to_string(done) + " completed, " + std::to_string(failed) +
             " failed, " + std::to_string(waiting) + " waiting, " +
             std::to_string(jobs.size() - static_cast<size_t>(done + failed + waiting)) + " running\n";
      ++shown;
    }
    for (int i = shown; i < lines_; ++i) out += "\x1b[2K\n";
    int drawn = std::max(shown, lines_);
    std::cerr << out << std::flush;
    lines_ = drawn;
  }

  void plain(const Job& j) {
    auto& last = reported_[j.id];
    if (last == j.status) return;
    last = j.status;
    switch (j.status) {
      case JobStatus::kRunning:
        std::cerr << "started " << j.source << "\n";
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
  int lines_ = 0;
  std::map<int64_t, Sample> samples_;
  std::map<int64_t, JobStatus> reported_;
};

int run_get(const GetArgs& a) {
  util::raise_open_file_limit();
  if (!a.output.empty() && !a.dir.empty()) {
    print_error("-d and -o cannot be used together");
    return kExitUsage;
  }
  if (!a.output.empty() && a.urls.size() > 1) {
    print_error("-o names one file: give one URL, or use -d DIR for several");
    return kExitUsage;
  }
  if (a.parallel < 1 || a.parallel > 1000) {
    print_error("-j must be between 1 and 1000");
    return kExitUsage;
  }
  auto policy = parse_if_exists(a.if_exists);
  if (!policy) {
    print_error("--if-exists must be error, skip, overwrite or rename");
    return kExitUsage;
  }
  DownloadOptions opts;
  opts.priority = a.priority;
  opts.if_exists = *policy;
  if (!a.sha256.empty()) opts.sha256 = a.sha256;
  if (!a.token_env.empty()) {
    const char* tok = std::getenv(a.token_env.c_str());
    if (!tok || !*tok) {
      print_error("--token-env " + a.token_env + ": that variable is not set or empty");
      return kExitUsage;
    }
    opts.access_token = tok;
  }
  std::string dest;
  if (!a.output.empty()) {
    dest = util::absolute_path(a.output);
  } else {
    dest = util::absolute_path(a.dir.empty() ? "." : a.dir);
    if (dest.back() != '/') dest += "/";
    auto st = util::make_parent_dirs(dest + "x");
    if (!st) {
      print_error(st.error().message);
      return kExitFailure;
    }
  }
  std::vector<DownloadRequest> requests;
  std::set<std::string> seen;  // the same URL twice is one download, not two racing for a name
  for (const auto& u : a.urls) {
    if (seen.insert(u).second) requests.push_back({u, dest, opts});
  }
  for (const auto& r : requests) {
    if (auto st = queue::check_source_url(r.source); !st) {
      print_error(st.error().message);
      return kExitUsage;
    }
  }

  std::string state = a.state.empty() ? default_state_path() : util::absolute_path(a.state);
  if (auto st = util::make_parent_dirs(state); !st) {
    print_error(st.error().message);
    return kExitFailure;
  }
  auto ids = prepare_jobs(state, requests);
  if (!ids) {
    print_error(ids.error().message);
    return ids.error().code == ErrorCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }

  // Signals are taken synchronously by this thread; every other thread has them blocked.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  QueueOptions qo;
  qo.db_path = state;
  qo.max_parallel = a.parallel;
  qo.only_jobs = ids.value();
  auto opened = DownloadQueue::open(qo);
  if (!opened) {
    print_error(opened.error().message);
    return kExitFailure;
  }
  auto& q = *opened.value();
  Display display(a.quiet || a.json, stderr_is_terminal());
  bool interrupted = false;
  for (;;) {
    // Returns as soon as the last job ends, or after a quarter of a second to redraw and to
    // notice a signal.
    if (q.join(std::chrono::milliseconds(250), ids.value())) break;
    display.update(q, ids.value(), false);
    timespec zero{0, 0};
    if (sigtimedwait(&sigs, nullptr, &zero) > 0) {
      interrupted = true;
      break;
    }
  }
  if (interrupted) {
    q.shutdown();  // every running job is checkpointed and left waiting for the next run
    display.update(q, ids.value(), true);
    if (!a.quiet) print_error("interrupted; run the same command again to resume");
    if (a.json) {
      std::vector<Job> jobs;
      for (auto id : ids.value()) {
        if (auto j = q.id_to_job(id)) jobs.push_back(*j);
      }
      print_jobs_json(jobs);
    }
    return kExitInterrupted;
  }
  display.update(q, ids.value(), true);
  std::vector<Job> jobs;
  for (auto id : ids.value()) {
    if (auto j = q.id_to_job(id)) jobs.push_back(*j);
  }
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

void print_error(const std::string& message) { std::cerr << "fetchq: " << message << "\n"; }

void add_get_command(CLI::App& app, std::function<int()>* run) {
  auto args = std::make_shared<GetArgs>();
  auto* cmd = app.add_subcommand("get", "Download URLs now, without a daemon; run again to resume");
  cmd->add_option("urls", args->urls, "URLs to download (http or https)")->required();
  cmd->add_option("-d,--dir", args->dir, "folder to download into (default: the current folder)");
  cmd->add_option("-o,--output", args->output, "file to write (one URL only)");
  cmd->add_option("-j,--parallel", args->parallel, "downloads at once (default 5)");
  cmd->add_option("-p,--priority", args->priority, "priority; lower runs first (default 10)");
  cmd->add_option("--sha256", args->sha256, "expected sha256 of the file, checked before it is kept");
  cmd->add_option("--token-env", args->token_env, "environment variable holding a Bearer token");
  cmd->add_option("--state", args->state, "state database (default $XDG_STATE_HOME/fetchq/get.db)");
  cmd->add_option("--if-exists", args->if_exists, "error (default), skip, overwrite or rename");
  cmd->add_flag("--json", args->json, "print the final jobs as a JSON array");
  cmd->add_flag("-q,--quiet", args->quiet, "no progress output");
  cmd->callback([args, run] { *run = [args] { return run_get(*args); }; });
}

}  // namespace fetchq::cli
