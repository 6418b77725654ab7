// The commands that talk to fetchqd over its control socket, and list/show/events --db.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "cli/commands.h"
#include "cli/download_options.h"
#include "cli/output.h"
#include "control/client.h"
#include "queue/request_check.h"
#include "store/store.h"
#include "util/fs.h"
#include "util/signals.h"

namespace fetchq::cli {
namespace {

using json = nlohmann::json;

struct Common {
  std::string socket;
  std::string db;
  bool json = false;
};

// Connects, or prints the one-line reason and returns nullopt (exit 3).
std::optional<control::Client> connect(const Common& c) {
  std::string path = c.socket.empty() ? control::default_socket_path() : c.socket;
  auto client = control::Client::connect(path);
  if (!client) {
    print_error(client.error().message);
    return std::nullopt;
  }
  return std::move(client.value());
}

int fail(const Error& e) {
  print_error(e.message);
  if (e.code == ErrorCode::kIo && e.message.find("fetchqd") != std::string::npos) return kExitNoDaemon;
  return kExitFailure;
}

std::unique_ptr<store::Store> open_db(const std::string& path, int* rc) {
  store::OpenOptions o;
  o.read_only = true;
  auto s = store::open(store::absolute_spec(path), o);
  if (!s) {
    print_error(s.error().message);
    *rc = kExitFailure;
    return nullptr;
  }
  return std::move(s.value());
}

// Runs `body` over a database opened with --db; a read that fails later (a damaged page is
// found only when a query reaches it) is reported with the file it came from.
int reading_db(const std::string& path, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    print_error("cannot read the database " + util::absolute_path(path) + ": " + e.what());
    return kExitFailure;
  }
}

void add_common(CLI::App* cmd, Common& c, bool with_db) {
  cmd->add_option("--socket", c.socket, "fetchqd's control socket (default $FETCHQ_SOCKET, ...)");
  cmd->add_flag("--json", c.json, "JSON output");
  if (with_db) cmd->add_option("--db", c.db, "read this database directly, read-only, instead of asking fetchqd");
}

// ---- add
struct AddArgs {
  Common c;
  std::vector<std::string> urls;
  std::string input;
  DownloadArgs d;
};

int run_add(AddArgs& a) {
  if (auto st = check_dir_and_output(a.d); !st) {
    print_error(st.error().message);
    return kExitUsage;
  }
  if (a.urls.empty() && a.input.empty()) {
    print_error("give URLs, or -i FILE");
    return kExitUsage;
  }
  if (!a.d.output.empty() && a.urls.size() + (a.input.empty() ? 0 : 2) > 1) {
    print_error("-o names one file: give one URL, or use -d DIR");
    return kExitUsage;
  }
  auto req = request_template(a.d);
  if (!req) {
    print_error(req.error().message);
    return kExitUsage;
  }
  // Jobs go as JSON objects, with only the options given, so fetchqd checks what the user
  // wrote (a -i line may set any field) and its answer reaches the user unchanged.
  json base = json::object();
  base["dest"] = req->dest;
  if (a.d.priority) base["priority"] = *a.d.priority;
  if (req->options.sha256) base["sha256"] = *req->options.sha256;
  if (req->options.connections) base["connections"] = *req->options.connections;
  if (!a.d.if_exists.empty()) base["if_exists"] = a.d.if_exists;
  if (const auto& tok = req->options.access_token) {
    if (auto st = queue::check_access_token(*tok); !st) {
      print_error("--token-env " + a.d.token_env + ": " + st.error().message);
      return kExitUsage;
    }
    base["access_token"] = *tok;
  }
  std::vector<json> jobs;
  for (const auto& u : a.urls) {
    json j = base;
    j["source"] = u;
    jobs.push_back(std::move(j));
  }
  if (!a.input.empty()) {
    std::ifstream in(a.input == "-" ? "/dev/stdin" : a.input);
    if (!in) {
      print_error("cannot read " + a.input);
      return kExitUsage;
    }
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      auto start = line.find_first_not_of(" \t\r");
      if (start == std::string::npos || line[start] == '#') continue;
      line = line.substr(start, line.find_last_not_of(" \t\r") - start + 1);
      json j = base;
      if (line[0] == '{') {
        auto obj = json::parse(line, nullptr, false);
        if (obj.is_discarded() || !obj.is_object()) {
          print_error(a.input + ":" + std::to_string(lineno) + ": not a JSON object");
          return kExitUsage;
        }
        for (auto& [k, v] : obj.items()) j[k] = v;
        if (j.contains("dest") && j["dest"].is_string()) j["dest"] = util::absolute_path(j["dest"].get<std::string>());
      } else {
        j["source"] = line;
      }
      jobs.push_back(std::move(j));
    }
  }
  if (jobs.empty()) {
    print_error("no URLs to add");
    return kExitUsage;
  }
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  // Every answer is kept for --json and for a short listing; otherwise only the count and the
  // first and last ids, so a huge list does not hold every job twice in memory.
  std::vector<Job> added_jobs;
  size_t added = 0;
  int64_t first_id = 0, last_id = 0;
  const bool keep_all = a.c.json || jobs.size() <= 20;
  auto take = [&](std::vector<Job>& answer) {
    for (auto& j : answer) {
      if (added == 0) first_id = j.id;
      last_id = j.id;
      ++added;
      if (keep_all) added_jobs.push_back(std::move(j));
    }
  };
  if (jobs.size() == 1) {
    auto r = client->download_json(jobs[0]);
    if (!r) return fail(r.error());
    std::vector<Job> one{std::move(r.value())};
    take(one);
  } else {
    // Batches keep each request line well under the daemon's size limit. Two are in flight at
    // a time: the daemon stores one while this process builds and sends the next. The daemon
    // answers a connection's requests in order.
    const size_t kBatch = 5000;
    size_t sent = 0;       // jobs sent
    size_t answered = 0;   // jobs whose batch was answered
    std::deque<size_t> in_flight;  // sizes of the batches sent and not yet answered
    auto send_next = [&]() -> Status {
      size_t n = std::min(kBatch, jobs.size() - sent);
      json batch = json::array();
      for (size_t k = sent; k < sent + n; ++k) batch.push_back(std::move(jobs[k]));
      if (auto st = client->send_download_batch(std::move(batch)); !st) return st;
      sent += n;
      in_flight.push_back(n);
      return Ok{};
    };
    while (answered < jobs.size()) {
      while (sent < jobs.size() && in_flight.size() < 2) {
        if (auto st = send_next(); !st) return fail(st.error());
      }
      auto r = client->download_batch_answer();
      if (!r) {
        // Batches are stored whole or not at all; the ones before this one were stored.
        if (answered > 0) print_error(std::to_string(answered) + " jobs were added before this failure");
        return fail(r.error());
      }
      take(r.value());
      answered += in_flight.front();
      in_flight.pop_front();
    }
  }
  if (a.c.json) {
    std::cout << (jobs.size() == 1 ? json(added_jobs[0]) : json(added_jobs)).dump(2) << "\n";
  } else if (keep_all) {
    for (auto& j : added_jobs) std::cout << "added job " << j.id << ": " << j.source << "\n";
  } else {
    std::cout << "added " << added << " jobs (" << first_id << " to " << last_id << ")\n";
  }
  return kExitOk;
}

// ---- list / show
// Every job (with a given status), in pages small enough for one answer line each.
Result<std::vector<Job>> list_from(control::Client& client, std::optional<JobStatus> status) {
  constexpr size_t kPage = 10000;
  std::vector<Job> jobs;
  int64_t after = 0;
  for (;;) {
    ListFilter f;
    f.status = status;
    f.after_id = after;
    f.limit = kPage;
    auto r = client.list_jobs(f);
    if (!r) return r.error();
    size_t got = r.value().size();
    for (auto& j : r.value()) jobs.push_back(std::move(j));
    if (got < kPage) return jobs;
    after = jobs.back().id;
  }
}

struct ListArgs {
  Common c;
  std::string status;
};

int run_list(ListArgs& a) {
  std::optional<JobStatus> status;
  if (!a.status.empty()) {
    status = parse_job_status(a.status);
    if (!status) {
      print_error("unknown status '" + a.status + "'");
      return kExitUsage;
    }
  }
  std::vector<Job> jobs;
  if (!a.c.db.empty()) {
    int rc = 0;
    auto st = open_db(a.c.db, &rc);
    if (!st) return rc;
    ListFilter f;
    f.status = status;
    int read_rc = reading_db(a.c.db, [&] {
      jobs = st->list_jobs(f);
      return kExitOk;
    });
    if (read_rc != kExitOk) return read_rc;
  } else {
    auto client = connect(a.c);
    if (!client) return kExitNoDaemon;
    auto r = list_from(*client, status);
    if (!r) return fail(r.error());
    jobs = std::move(r.value());
  }
  if (a.c.json) {
    print_jobs_json(jobs);
  } else {
    print_jobs_table(jobs, {});
  }
  return kExitOk;
}

struct ShowArgs {
  Common c;
  int64_t id = 0;
};

int run_show(ShowArgs& a) {
  std::optional<Job> job;
  if (!a.c.db.empty()) {
    int rc = 0;
    auto st = open_db(a.c.db, &rc);
    if (!st) return rc;
    int read_rc = reading_db(a.c.db, [&] {
      job = st->get_job(a.id);
      return kExitOk;
    });
    if (read_rc != kExitOk) return read_rc;
    if (!job) {
      print_error("no job with id " + std::to_string(a.id));
      return kExitFailure;
    }
  } else {
    auto client = connect(a.c);
    if (!client) return kExitNoDaemon;
    auto r = client->id_to_job(a.id);
    if (!r) return fail(r.error());
    job = std::move(r.value());
  }
  if (a.c.json) {
    print_job_json(*job);
  } else {
    print_job_details(*job);
  }
  return kExitOk;
}

// ---- cancel / pause / resume / retry / prune
struct ActArgs {
  Common c;
  std::vector<int64_t> ids;
  bool all = false;
};

int run_act(ActArgs& a, const std::string& method) {
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  if (a.all) {
    auto r = client->cancel_all_jobs();
    if (!r) return fail(r.error());
    if (a.c.json) {
      std::cout << json{{"cancelled", r.value()}}.dump() << "\n";
    } else {
      std::cout << "cancelled " << r.value() << " jobs\n";
    }
    return kExitOk;
  }
  if (a.ids.empty()) {
    print_error("give job ids");
    return kExitUsage;
  }
  int rc = kExitOk;
  json out = json::array();
  for (auto id : a.ids) {
    auto r = method == "cancel_job"  ? client->cancel_job(id)
             : method == "pause_job" ? client->pause_job(id)
             : method == "resume_job" ? client->resume_job(id)
                                      : client->retry_job(id);
    if (!r) {
      rc = fail(r.error());
      continue;
    }
    out.push_back(r.value());
    if (!a.c.json) std::cout << "job " << id << ": " << to_string(r.value().status) << "\n";
  }
  if (a.c.json) std::cout << (out.size() == 1 ? out[0] : out).dump(2) << "\n";
  return rc;
}

int run_prune(Common& c) {
  auto client = connect(c);
  if (!client) return kExitNoDaemon;
  auto r = client->prune_jobs();
  if (!r) return fail(r.error());
  if (c.json) {
    std::cout << json{{"removed", r.value()}}.dump() << "\n";
  } else {
    std::cout << "removed " << r.value() << " finished jobs\n";
  }
  return kExitOk;
}

// ---- wait
struct WaitArgs {
  Common c;
  std::vector<int64_t> ids;
  double timeout = -1;
  bool progress = false;
};

int run_wait(WaitArgs& a) {
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  // Without ids: every job still listed, so one that failed before `wait` was called counts
  // too (`add; wait` never reports success for a failed download). join without ids waits for
  // the whole queue.
  const bool every_job = a.ids.empty();
  std::vector<int64_t> ids = a.ids;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  auto waited_for = [&](int64_t id) {
    return every_job || std::binary_search(ids.begin(), ids.end(), id);
  };
  const sigset_t sigs = util::block_signals({SIGINT, SIGTERM});
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(a.timeout * 1000));
  int lines = 0;
  for (;;) {
    // Short joins let this loop notice signals and redraw progress.
    double step = a.progress ? 0.5 : 1.0;
    if (a.timeout >= 0) {
      double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      step = std::max(0.0, std::min(step, left));
    }
    auto r = client->join(ids, step);
    if (!r) return fail(r.error());
    bool done = r.value();
    if (a.progress && !a.c.json) {
      std::string out = lines > 0 ? "\x1b[" + std::to_string(lines) + "F" : "";
      lines = 0;
      // The running ones (a few jobs whatever the length of the queue), or all when few.
      std::vector<Job> shown;
      if (!every_job && ids.size() <= 10) {
        for (auto id : ids) {
          auto jr = client->id_to_job(id);
          if (jr) shown.push_back(std::move(jr.value()));
        }
      } else if (auto running = list_from(*client, JobStatus::kRunning)) {
        for (auto& j : running.value()) {
          if (waited_for(j.id)) shown.push_back(std::move(j));
        }
      }
      for (const auto& j : shown) {
        out += "\x1b[2K" + progress_line(j, -1, terminal_width() - 1) + " " + std::string(to_string(j.status)) + "\n";
        if (++lines >= 10) break;
      }
      std::cerr << out << std::flush;
    }
    if (done) break;
    if (util::take_pending_signal(sigs)) return kExitInterrupted;
    if (a.timeout >= 0 && std::chrono::steady_clock::now() >= deadline) {
      print_error("timed out with jobs still waiting or running");
      return kExitTimeout;
    }
  }
  // Which of them failed: two listings by status, not one request per job.
  std::vector<Job> failed;
  for (auto st : {JobStatus::kError, JobStatus::kCancelled}) {
    auto r = list_from(*client, st);
    if (!r) return fail(r.error());
    for (auto& j : r.value()) {
      if (waited_for(j.id)) failed.push_back(std::move(j));
    }
  }
  std::sort(failed.begin(), failed.end(), [](const Job& x, const Job& y) { return x.id < y.id; });
  if (!a.c.json) {
    for (const auto& j : failed) {
      print_error("job " + std::to_string(j.id) + " " + std::string(to_string(j.status)) + ": " +
                  j.error.value_or(""));
    }
  }
  return failed.empty() ? kExitOk : kExitJobFailed;
}

// ---- events
struct EventsArgs {
  Common c;
  bool follow = false;
  int64_t since = 0;
  std::optional<int64_t> job;
};

void print_event(const Event& e, bool as_json) {
  json j = e;
  if (as_json) {
    std::cout << j.dump() << "\n";
    return;
  }
  std::cout << e.seq << "  " << e.ts << "  job " << e.job_id << "  " << e.type;
  for (auto& [k, v] : j.items()) {
    if (k == "seq" || k == "ts" || k == "job_id" || k == "type") continue;
    std::cout << "  " << k << "=" << (v.is_string() ? v.get<std::string>() : v.dump());
  }
  std::cout << "\n";
}

// Events before `first` are gone (pruned or past event-retention): a follower that asked for
// some of them is told so once, on stderr, so it knows its record has a gap.
void note_trimmed(int64_t since, int64_t first) {
  if (since > 0 && since + 1 < first) {
    std::cerr << "fetchq: events before " << first << " were removed (pruned or past event-retention); "
              << "the log now starts at " << first << "\n";
  }
}

int run_events(EventsArgs& a) {
  if (!a.c.db.empty()) {
    int rc = 0;
    auto st = open_db(a.c.db, &rc);
    if (!st) return rc;
    return reading_db(a.c.db, [&] {
      note_trimmed(a.since, st->first_event_seq());
      int64_t cursor = a.since;
      for (;;) {
        auto evs = st->events_since(cursor, 1000, a.job);
        for (const auto& e : evs) print_event(e, a.c.json);
        std::cout << std::flush;
        if (!evs.empty()) cursor = evs.back().seq;
        if (evs.size() == 1000) continue;
        if (!a.follow) return kExitOk;
        ::usleep(200 * 1000);  // a read-only file has no one to wake us: look again shortly
      }
    });
  }
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  auto sent = client->subscribe(a.since);
  if (!sent) return fail(sent.error());
  int64_t last_seq = -1;
  for (;;) {
    auto m = client->next_event();
    if (!m) {
      // A refusal of subscribe is not about reaching fetchqd: exit 4, as any failed request.
      if (m.error().code != ErrorCode::kIo) {
        print_error(m.error().message);
        return kExitFailure;
      }
      return fail(m.error());
    }
    if (auto& sub = m.value().subscribed) {
      last_seq = sub->last_seq;
      note_trimmed(a.since, sub->first_seq);
      if (!a.follow && last_seq <= a.since) return kExitOk;
      continue;
    }
    const Event& e = *m.value().event;
    if (!a.job || e.job_id == *a.job) print_event(e, a.c.json);
    std::cout << std::flush;
    if (!a.follow && e.seq >= last_seq) return kExitOk;
  }
}

int run_stats(Common& c) {
  auto client = connect(c);
  if (!client) return kExitNoDaemon;
  auto r = client->stats();
  if (!r) return fail(r.error());
  if (c.json) {
    std::cout << control::to_json_value(r.value()).dump(2) << "\n";
    return kExitOk;
  }
  const QueueStats& s = r.value().queue;
  std::cout << "running " << s.running << ", waiting " << s.waiting << ", paused " << s.paused
            << ", completed " << s.completed << ", cancelled " << s.cancelled << ", error " << s.error << "\n"
            << "rate " << human_bytes(s.bytes_per_second) << "/s, up " << human_duration(s.uptime_seconds)
            << ", fetchqd " << r.value().version << "\n";
  return kExitOk;
}

}  // namespace

void add_client_commands(CLI::App& app, std::function<int()>* run) {
  {
    auto a = std::make_shared<AddArgs>();
    auto* cmd = app.add_subcommand("add", "Queue downloads on fetchqd");
    cmd->add_option("urls", a->urls, "URLs (http or https)");
    cmd->add_option("-i,--input", a->input, "file with one URL, or one JSON job, a line ('-' for stdin)");
    add_download_options(cmd, a->d);
    add_common(cmd, a->c, false);
    cmd->callback([a, run] { *run = [a] { return run_add(*a); }; });
  }
  {
    auto a = std::make_shared<ListArgs>();
    auto* cmd = app.add_subcommand("list", "List jobs");
    cmd->add_option("--status", a->status, "only jobs in this status");
    add_common(cmd, a->c, true);
    cmd->callback([a, run] { *run = [a] { return run_list(*a); }; });
  }
  {
    auto a = std::make_shared<ShowArgs>();
    auto* cmd = app.add_subcommand("show", "Show one job");
    cmd->add_option("id", a->id, "job id")->required();
    add_common(cmd, a->c, true);
    cmd->callback([a, run] { *run = [a] { return run_show(*a); }; });
  }
  for (auto [name, method, help] : {std::tuple{"cancel", "cancel_job", "Cancel jobs (their .part files are removed)"},
                                    std::tuple{"pause", "pause_job", "Pause jobs (they keep their .part)"},
                                    std::tuple{"resume", "resume_job", "Resume paused jobs"},
                                    std::tuple{"retry", "retry_job", "Put jobs that ended in error back to waiting"}}) {
    auto a = std::make_shared<ActArgs>();
    auto* cmd = app.add_subcommand(name, help);
    cmd->add_option("ids", a->ids, "job ids");
    if (std::string(name) == "cancel") cmd->add_flag("--all", a->all, "cancel every job not yet ended");
    add_common(cmd, a->c, false);
    std::string m = method;
    cmd->callback([a, run, m] { *run = [a, m] { return run_act(*a, m); }; });
  }
  {
    auto c = std::make_shared<Common>();
    auto* cmd = app.add_subcommand("prune", "Remove jobs that ended (and the .part of failed ones)");
    add_common(cmd, *c, false);
    cmd->callback([c, run] { *run = [c] { return run_prune(*c); }; });
  }
  {
    auto a = std::make_shared<WaitArgs>();
    auto* cmd = app.add_subcommand("wait", "Wait for jobs to end; exit 1 if any failed");
    cmd->add_option("ids", a->ids, "job ids (default: every job waiting or running now)");
    cmd->add_option("--timeout", a->timeout, "seconds; exit 5 when it runs out");
    cmd->add_flag("--progress", a->progress, "progress bars on standard error");
    add_common(cmd, a->c, false);
    cmd->callback([a, run] { *run = [a] { return run_wait(*a); }; });
  }
  {
    auto a = std::make_shared<EventsArgs>();
    auto* cmd = app.add_subcommand("events", "Print events; --follow tails new ones");
    cmd->add_flag("-f,--follow", a->follow, "keep printing new events");
    cmd->add_option("--since", a->since, "only events after this seq")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--job", a->job, "only events of this job");
    add_common(cmd, a->c, true);
    cmd->callback([a, run] { *run = [a] { return run_events(*a); }; });
  }
  {
    auto c = std::make_shared<Common>();
    auto* cmd = app.add_subcommand("stats", "Counts by status, rate, uptime, version");
    add_common(cmd, *c, false);
    cmd->callback([c, run] { *run = [c] { return run_stats(*c); }; });
  }
}

}  // namespace fetchq::cli
