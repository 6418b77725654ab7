// The commands that talk to fetchqd over its control socket, and list/show/events --db.
#include "control/client.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "cli/commands.h"
#include "cli/download_options.h"
#include "cli/event_lines.h"
#include "cli/output.h"
#include "cli/progress_view.h"
#include "queue/request_check.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/fs.h"
#include "util/rate.h"
#include "util/signals.h"
#include "util/strings.h"

namespace fetchq::cli {
namespace {

// Checks of numbers given on the command line, with a message that says what is wanted (CLI11
// would clamp an id too big to hold, and name the whole range of a double). A number taken is
// written back in plain decimal, as CLI11 then reads "010" as octal.
std::string whole_number_from(std::string& s, int64_t least, const std::string& what) {
  std::string_view v = util::trim(s);
  if (!v.empty() && v.front() == '+') v.remove_prefix(1);
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < least) {
    return what + " is a whole number from " + std::to_string(least) + ", not '" + s + "'";
  }
  s = std::to_string(n);
  return "";
}
const CLI::Validator kJobId([](std::string& s) { return whole_number_from(s, 1, "a job id"); },
                            "ID", "job id");
const CLI::Validator kSeq([](std::string& s) { return whole_number_from(s, 0, "a seq"); }, "SEQ",
                          "seq");
const CLI::Validator kSeconds(
    [](std::string& s) {
      char* end = nullptr;
      errno = 0;
      const double v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0' || errno != 0 || !(v >= 0) || v > 1e9) {
        return "a number of seconds from 0, not '" + s + "'";
      }
      return std::string();
    },
    "SECONDS", "seconds");

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

// Opens what --db names, read-only. A spec store::locate refuses (postgresql://, an unknown
// scheme) is a usage error (exit 2); a file that cannot be read is exit 4.
std::unique_ptr<store::Store> open_db(const std::string& spec, int* rc) {
  auto where = store::locate(spec);
  if (!where) {
    print_error("--db: " + where.error().message);
    *rc = kExitUsage;
    return nullptr;
  }
  where.value().path = util::absolute_path(where.value().path);
  store::OpenOptions o;
  o.read_only = true;
  auto s = store::open(where.value(), o);
  if (!s) {
    print_error(s.error().message);
    *rc = kExitFailure;
    return nullptr;
  }
  return std::move(s.value());
}

// Runs `body` over a database opened with --db; a read that fails later (a damaged page is
// found only when a query reaches it) is reported with the file it came from.
int reading_db(const std::string& spec, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    auto where = store::locate(spec);  // it was opened, so it names a file
    std::string file = where ? util::absolute_path(where.value().path) : std::string("--db");
    print_error("cannot read the database " + file + ": " + e.what());
    return kExitFailure;
  }
}

void add_common(CLI::App* cmd, Common& c, bool with_db) {
  cmd->add_option("--socket", c.socket, "fetchqd's control socket (default $FETCHQ_SOCKET, ...)");
  cmd->add_flag("--json", c.json, "JSON output");
  if (with_db) cmd->add_option("--db", c.db, "read this database (PATH or sqlite:PATH) directly, read-only, instead of asking fetchqd");
}

// ---- add
struct AddArgs {
  Common c;
  std::vector<std::string> urls;
  std::string input;
  DownloadArgs d;
  bool allow_duplicate = false;
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
  if (auto st = check_mirror_use(a.d, a.urls.size(), !a.input.empty()); !st) {
    print_error(st.error().message);
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
  if (req->options.limit_rate > 0) base["limit_rate"] = req->options.limit_rate;
  if (!a.d.if_exists.empty()) base["if_exists"] = a.d.if_exists;
  if (a.allow_duplicate) base["allow_duplicate"] = true;
  if (!req->options.headers.empty()) {
    auto& hs = base["headers"] = json::array();
    for (const auto& h : req->options.headers) hs.push_back(h.name + ": " + h.value);
  }
  if (req->options.user_agent) base["user_agent"] = *req->options.user_agent;
  if (!req->options.mirrors.empty()) base["mirrors"] = req->options.mirrors;
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
    auto lines = read_input_lines(a.input);
    if (!lines) {
      print_error(lines.error().message);
      return kExitUsage;
    }
    for (auto& [lineno, line] : lines.value()) {
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
  size_t added = 0, duplicates = 0;
  int64_t first_id = 0, last_id = 0;
  const bool keep_all = a.c.json || jobs.size() <= 20;
  auto take = [&](std::vector<Job>& answer) {
    for (auto& j : answer) {
      if (j.duplicate_of) {
        ++duplicates;
      } else {
        if (added == 0) first_id = j.id;
        last_id = j.id;
        ++added;
      }
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
    for (auto& j : added_jobs) {
      if (j.duplicate_of) {
        std::cout << "job " << j.id << " already fetches " << j.source << " (" << to_string(j.status) << ")\n";
      } else {
        std::cout << "added job " << j.id << ": " << j.source << "\n";
      }
    }
  } else if (added > 0) {
    std::cout << "added " << added << " jobs (" << first_id << " to " << last_id << ")\n";
  }
  if (duplicates > 0) {
    print_error(std::to_string(duplicates) + (duplicates == 1 ? " URL was" : " URLs were") +
                " already queued for the same destination: their jobs were kept, none added "
                "(--allow-duplicate adds them anyway)");
  }
  return kExitOk;
}

// "running,waiting" as its names; empty names (",," or a trailing comma) are left out.
std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  for (size_t from = 0; from <= list.size();) {
    size_t comma = std::min(list.find(',', from), list.size());
    if (comma > from) out.push_back(list.substr(from, comma - from));
    from = comma + 1;
  }
  return out;
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
  std::string status;  // one or several, comma-separated
  std::string sort = "id";
  int64_t limit = -1;
  int64_t offset = 0;
  bool errors = false;
};

// `list --errors`: failed jobs counted by error type, most first.
void print_error_counts(const std::vector<Job>& jobs, bool as_json) {
  std::map<std::string, int64_t> counts;
  for (const auto& j : jobs) {
    if (j.status == JobStatus::kError) ++counts[j.error_type.value_or("unknown")];
  }
  if (as_json) {
    std::cout << json(counts).dump(2) << "\n";
    return;
  }
  std::vector<std::pair<std::string, int64_t>> rows(counts.begin(), counts.end());
  std::stable_sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.second > y.second; });
  std::printf("%7s  %s\n", "COUNT", "ERROR");
  for (const auto& [type, n] : rows) std::printf("%7lld  %s\n", static_cast<long long>(n), type.c_str());
}

int run_list(ListArgs& a) {
  // Several statuses are one listing each, merged in id order.
  std::vector<std::optional<JobStatus>> statuses;
  if (a.status.empty()) statuses.push_back(std::nullopt);
  for (const auto& name : split_commas(a.status)) {
    auto st = parse_job_status(name);
    if (!st) {
      print_error("unknown status '" + name +
                  "' for --status: use waiting, running, paused, completed, cancelled or error (comma-separated)");
      return kExitUsage;
    }
    if (std::find(statuses.begin(), statuses.end(), st) == statuses.end()) statuses.push_back(st);
  }
  if (statuses.empty()) {
    print_error("--status names no status");
    return kExitUsage;
  }
  if (a.sort != "id" && a.sort != "newest" && a.sort != "priority") {
    print_error("unknown order '" + a.sort + "' for --sort: use id, newest or priority");
    return kExitUsage;
  }
  std::vector<Job> jobs;
  std::vector<JobRate> rates;
  if (!a.c.db.empty()) {
    int rc = 0;
    auto st = open_db(a.c.db, &rc);
    if (!st) return rc;
    int read_rc = reading_db(a.c.db, [&] {
      for (const auto& status : statuses) {
        ListFilter f;
        f.status = status;
        auto part = st->list_jobs(f);
        jobs.insert(jobs.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
      }
      return kExitOk;
    });
    if (read_rc != kExitOk) return read_rc;
  } else {
    auto client = connect(a.c);
    if (!client) return kExitNoDaemon;
    for (const auto& status : statuses) {
      auto r = list_from(*client, status);
      if (!r) return fail(r.error());
      jobs.insert(jobs.end(), std::make_move_iterator(r.value().begin()), std::make_move_iterator(r.value().end()));
    }
    if (!a.c.json && !a.errors) {
      // Rates are the running queue's to tell; a listing without them is still right.
      if (auto s = client->stats()) rates = std::move(s.value().queue.job_rates);
    }
  }
  // A job that changed status between two listings may be in both: keep one.
  std::sort(jobs.begin(), jobs.end(), [](const Job& x, const Job& y) { return x.id < y.id; });
  jobs.erase(std::unique(jobs.begin(), jobs.end(), [](const Job& x, const Job& y) { return x.id == y.id; }),
             jobs.end());
  if (a.sort == "newest") {
    std::sort(jobs.begin(), jobs.end(), [](const Job& x, const Job& y) { return x.id > y.id; });
  } else if (a.sort == "priority") {
    std::sort(jobs.begin(), jobs.end(), [](const Job& x, const Job& y) {
      return x.priority != y.priority ? x.priority < y.priority : x.id < y.id;
    });
  }
  const size_t skip = static_cast<size_t>(std::min<int64_t>(a.offset, static_cast<int64_t>(jobs.size())));
  jobs.erase(jobs.begin(), jobs.begin() + static_cast<std::ptrdiff_t>(skip));
  if (a.limit >= 0 && static_cast<size_t>(a.limit) < jobs.size()) jobs.resize(static_cast<size_t>(a.limit));
  if (a.errors) {
    print_error_counts(jobs, a.c.json);
  } else if (a.c.json) {
    print_jobs_json(jobs);
  } else {
    std::cout << jobs_table(jobs, rates, stdout_is_terminal() ? terminal_width() : 0);
  }
  return kExitOk;
}

struct ShowArgs {
  Common c;
  int64_t id = 0;
};

struct SetUrlArgs {
  Common c;
  int64_t id = 0;
  std::string url;
};

int run_set_url(SetUrlArgs& a) {
  if (auto st = queue::check_source_url(a.url); !st) {
    print_error(st.error().message);
    return kExitUsage;
  }
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  auto r = client->set_url(a.id, a.url);
  if (!r) return fail(r.error());
  if (a.c.json) {
    print_job_json(r.value());
  } else {
    std::cout << "job " << a.id << " (" << std::string(to_string(r->status)) << ") now fetches "
              << r->source << "\n";
  }
  return kExitOk;
}

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
  std::string status;  // --status: the jobs in these statuses, comma-separated
};

// The statuses an action applies to: what --all takes, and all --status may name.
std::vector<JobStatus> acts_on(const std::string& method) {
  if (method == "pause_job") return {JobStatus::kWaiting, JobStatus::kRunning};
  if (method == "resume_job") return {JobStatus::kPaused};
  if (method == "retry_job") return {JobStatus::kError};
  return {JobStatus::kWaiting, JobStatus::kRunning, JobStatus::kPaused};
}

int run_act(ActArgs& a, const std::string& method) {
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  // pause/resume/retry --all or --status: every job the action applies to now. One that
  // moves on meanwhile (a job that completes before its pause) is left as it is.
  const bool bulk = method != "cancel_job" && (a.all || !a.status.empty());
  if (bulk) {
    if (!a.ids.empty()) {
      print_error("give job ids, or --all/--status, not both");
      return kExitUsage;
    }
    std::vector<JobStatus> statuses = acts_on(method);
    if (!a.status.empty()) {
      std::vector<JobStatus> asked;
      for (const auto& name : split_commas(a.status)) {
        auto st = parse_job_status(name);
        if (!st || std::find(statuses.begin(), statuses.end(), *st) == statuses.end()) {
          std::string allowed;
          for (auto s : statuses) allowed += (allowed.empty() ? "" : ", ") + std::string(to_string(s));
          print_error("--status '" + name + "' does not fit this command: use " + allowed);
          return kExitUsage;
        }
        asked.push_back(*st);
      }
      if (asked.empty()) {
        print_error("--status names no status");
        return kExitUsage;
      }
      statuses = asked;
    }
    for (auto st : statuses) {
      auto listed = list_from(*client, st);
      if (!listed) return fail(listed.error());
      for (const auto& j : listed.value()) a.ids.push_back(j.id);
    }
    std::sort(a.ids.begin(), a.ids.end());
    a.ids.erase(std::unique(a.ids.begin(), a.ids.end()), a.ids.end());
  } else if (a.all) {
    auto r = client->cancel_all_jobs();
    if (!r) return fail(r.error());
    if (a.c.json) {
      std::cout << json{{"cancelled", r.value()}}.dump() << "\n";
    } else {
      std::cout << "cancelled " << r.value() << " jobs\n";
    }
    return kExitOk;
  }
  if (a.ids.empty() && !bulk) {
    print_error("give job ids" + std::string(method == "cancel_job" ? ", or --all" : ", or --all or --status S"));
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
      if (bulk && (r.error().code == ErrorCode::kWrongState || r.error().code == ErrorCode::kNotFound)) continue;
      rc = fail(r.error());
      continue;
    }
    out.push_back(r.value());
    if (!a.c.json) std::cout << "job " << id << ": " << to_string(r.value().status) << "\n";
  }
  if (a.c.json) std::cout << (out.size() == 1 && !bulk ? out[0] : out).dump(2) << "\n";
  if (bulk && !a.c.json && out.empty()) std::cout << "no job to act on\n";
  return rc;
}

struct PruneArgs {
  Common c;
  std::string status;      // --status: ended statuses, comma-separated
  std::string older_than;  // --older-than: 90s, 30m, 12h, 7d or 2w
};

int run_prune(PruneArgs& a) {
  PruneFilter f;
  for (const auto& name : split_commas(a.status)) {
    auto st = parse_job_status(name);
    if (!st || (*st != JobStatus::kCompleted && *st != JobStatus::kCancelled && *st != JobStatus::kError)) {
      print_error("--status '" + name + "': prune removes ended jobs only: completed, cancelled or error");
      return kExitUsage;
    }
    f.statuses.push_back(*st);
  }
  if (!a.status.empty() && f.statuses.empty()) {  // "--status ," must not mean every status
    print_error("--status names no status");
    return kExitUsage;
  }
  if (!a.older_than.empty()) {
    auto age = parse_age(a.older_than);
    if (!age) {
      print_error("--older-than '" + a.older_than + "': give a count and a unit, such as 90s, 30m, 12h, 7d or 2w");
      return kExitUsage;
    }
    f.ended_before = util::iso8601(std::chrono::system_clock::now() - std::chrono::seconds(*age));
  }
  Common& c = a.c;
  auto client = connect(c);
  if (!client) return kExitNoDaemon;
  auto r = client->prune_jobs(f);
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
  LiveArea area;
  const bool draw = a.progress && !a.c.json;
  const bool terminal = stderr_is_terminal();
  std::map<int64_t, JobStatus> reported;  // not a terminal: a line per change
  std::map<int64_t, Job> known;            // without ids: the jobs as last listed
  auto next_full = std::chrono::steady_clock::now();
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
    if (draw) {
      // The jobs waited for when few; else the running ones (a few lines whatever the length
      // of the queue), with the counts of all of them on the overall line.
      std::vector<Job> jobs;
      if (!every_job && ids.size() <= 10) {
        for (auto id : ids) {
          auto jr = client->id_to_job(id);
          if (jr) jobs.push_back(std::move(jr.value()));
        }
      } else {
        // The whole listing now and then (a big queue is megabytes of JSON), the running jobs
        // every time, put in its place.
        auto now = std::chrono::steady_clock::now();
        if (now >= next_full) {
          if (auto all = list_from(*client, std::nullopt)) {
            known.clear();
            for (auto& j : all.value()) {
              if (waited_for(j.id)) known[j.id] = std::move(j);
            }
          }
          next_full = now + std::chrono::seconds(known.size() > 1000 ? 5 : 0);
        } else if (auto running = list_from(*client, JobStatus::kRunning)) {
          for (auto& j : running.value()) {
            if (waited_for(j.id)) known[j.id] = std::move(j);
          }
        }
        for (const auto& [id, j] : known) jobs.push_back(j);
      }
      std::vector<JobRate> rates;
      if (auto st = client->stats()) rates = std::move(st.value().queue.job_rates);
      if (terminal) {
        const int width = terminal_width() - 1;
        std::cerr << area.frame(progress_lines(jobs, rates, width), width) << std::flush;
      } else {
        for (const auto& j : jobs) {
          auto [it, fresh] = reported.emplace(j.id, j.status);
          if (!fresh && it->second == j.status) continue;
          it->second = j.status;
          std::cerr << "job " << j.id << " " << to_string(j.status) << ": " << job_name(j) << "\n";
        }
      }
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
  std::string types;  // --type: a comma-separated list
};

// Prints what --job and --type let through: JSON as stored, else one short line for people.
class EventPrinter {
 public:
  explicit EventPrinter(const EventsArgs& a) : a_(a) {}
  // False (with a message) when --type names an unknown type.
  bool parse_types() {
    if (a_.types.empty()) return true;
    std::string unknown;
    types_ = parse_event_types(a_.types, &unknown);
    if (types_) return true;
    print_error("unknown event type '" + unknown +
                "' for --type: use started, progress, complete, error, cancelled, paused, resumed, "
                "restarted or retrying (with or without download_)");
    return false;
  }
  void print(const Event& e) {
    if (a_.job && e.job_id != *a_.job) return;
    if (types_ && !types_->count(e.type)) return;
    if (a_.c.json) {
      std::cout << json(e).dump() << "\n";
    } else if (auto l = lines_.line(e)) {
      std::cout << *l << "\n";
    }
  }

 private:
  const EventsArgs& a_;
  std::optional<std::set<std::string>> types_;
  EventLines lines_;
};

// Events before `first` are gone (pruned or past event-retention): a follower that asked for
// some of them is told so once, on stderr, so it knows its record has a gap.
void note_trimmed(int64_t since, int64_t first) {
  if (since > 0 && since + 1 < first) {
    std::cerr << "fetchq: events before " << first << " were removed (pruned or past event-retention); "
              << "the log now starts at " << first << "\n";
  }
}

int run_events(EventsArgs& a) {
  EventPrinter printer(a);
  if (!printer.parse_types()) return kExitUsage;
  if (!a.c.db.empty()) {
    int rc = 0;
    auto st = open_db(a.c.db, &rc);
    if (!st) return rc;
    return reading_db(a.c.db, [&] {
      note_trimmed(a.since, st->first_event_seq());
      int64_t cursor = a.since;
      for (;;) {
        auto evs = st->events_since(cursor, 1000, a.job);
        for (const auto& e : evs) printer.print(e);
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
    printer.print(e);
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

// ---- limit
struct LimitArgs {
  Common c;
  std::vector<std::string> args;  // [], [RATE] or [ID, RATE]
};

int run_limit(LimitArgs& a) {
  if (a.args.size() > 2) {
    print_error("give RATE (the queue's limit), ID RATE (one job's), or nothing to see the limits");
    return kExitUsage;
  }
  json params = json::object();
  if (!a.args.empty()) {
    std::string why;
    auto rate = util::parse_rate(a.args.back(), &why);
    if (!rate) {
      print_error(why);
      return kExitUsage;
    }
    params["limit_rate"] = *rate;
    if (a.args.size() == 2) {
      const std::string& id = a.args.front();
      int64_t n = 0;
      auto [p, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
      if (ec != std::errc() || p != id.data() + id.size() || n < 1) {
        print_error("'" + id + "' is not a job id");
        return kExitUsage;
      }
      params["id"] = n;
    }
  }
  auto client = connect(a.c);
  if (!client) return kExitNoDaemon;
  auto r = client->call(a.args.empty() ? "get_limits" : "set_limits", params);
  if (!r) return fail(r.error());
  if (a.c.json) {
    std::cout << r.value().dump(2) << "\n";
    return kExitOk;
  }
  try {
    const json& v = r.value();
    const int64_t queue_limit = v.at("limit_rate").get<int64_t>();
    std::cout << "queue: " << util::format_rate(queue_limit) << (queue_limit > 0 ? "/s" : "")
              << "\n";
    for (const auto& j : v.at("jobs")) {
      std::cout << "job " << j.at("id").get<int64_t>() << ": "
                << util::format_rate(j.at("limit_rate").get<int64_t>()) << "/s ("
                << j.at("status").get<std::string>() << ")\n";
    }
  } catch (const json::exception& e) {
    return fail(make_error(ErrorCode::kIo,
                           std::string("fetchqd's answer to limit is not as expected: ") + e.what()));
  }
  return kExitOk;
}

}  // namespace

std::optional<int64_t> parse_age(const std::string& text) {
  if (text.size() < 2 || text.size() > 12) return std::nullopt;
  const std::string digits = text.substr(0, text.size() - 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int64_t n = std::stoll(digits);
  switch (text.back()) {
    case 's': return n;
    case 'm': return n * 60;
    case 'h': return n * 3600;
    case 'd': return n * 86400;
    case 'w': return n * 7 * 86400;
    default: return std::nullopt;
  }
}

void add_client_commands(CLI::App& app, std::function<int()>* run) {
  {
    auto a = std::make_shared<AddArgs>();
    auto* cmd = app.add_subcommand("add", "Queue downloads on fetchqd");
    cmd->add_option("urls", a->urls, "URLs (http or https)");
    cmd->add_option("-i,--input", a->input, "file with one URL, or one JSON job, a line ('-' for stdin)");
    add_download_options(cmd, a->d);
    cmd->add_flag("--allow-duplicate", a->allow_duplicate,
                  "add even when a waiting, running or paused job fetches the same URL to the same place");
    add_common(cmd, a->c, false);
    cmd->callback([a, run] { *run = [a] { return run_add(*a); }; });
  }
  {
    auto a = std::make_shared<ListArgs>();
    auto* cmd = app.add_subcommand("list", "List jobs");
    cmd->add_option("--status", a->status, "only jobs in these statuses, comma-separated (running,waiting)");
    cmd->add_option("--sort", a->sort, "id (default), newest or priority");
    cmd->add_option("--limit", a->limit, "at most this many jobs")->check(CLI::NonNegativeNumber);
    cmd->add_option("--offset", a->offset, "skip this many jobs first")->check(CLI::NonNegativeNumber);
    cmd->add_flag("--errors", a->errors, "count the failed jobs by error type instead");
    add_common(cmd, a->c, true);
    cmd->callback([a, run] { *run = [a] { return run_list(*a); }; });
  }
  {
    auto a = std::make_shared<ShowArgs>();
    auto* cmd = app.add_subcommand("show", "Show one job");
    cmd->add_option("id", a->id, "job id")->required()->transform(kJobId);
    add_common(cmd, a->c, true);
    cmd->callback([a, run] { *run = [a] { return run_show(*a); }; });
  }
  {
    auto a = std::make_shared<SetUrlArgs>();
    auto* cmd = app.add_subcommand(
        "set-url", "Give a waiting, paused or failed job another URL; its bytes stay if the file is the same");
    cmd->add_option("id", a->id, "job id")->required()->transform(kJobId);
    cmd->add_option("url", a->url, "the new URL")->required();
    add_common(cmd, a->c, false);
    cmd->callback([a, run] { *run = [a] { return run_set_url(*a); }; });
  }
  for (auto [name, method, help] : {std::tuple{"cancel", "cancel_job", "Cancel jobs (their .part files are removed)"},
                                    std::tuple{"pause", "pause_job", "Pause jobs (they keep their .part)"},
                                    std::tuple{"resume", "resume_job", "Resume paused jobs"},
                                    std::tuple{"retry", "retry_job", "Put jobs that ended in error back to waiting"}}) {
    auto a = std::make_shared<ActArgs>();
    auto* cmd = app.add_subcommand(name, help);
    cmd->add_option("ids", a->ids, "job ids")->transform(kJobId);
    if (std::string(name) == "cancel") {
      cmd->add_flag("--all", a->all, "cancel every job not yet ended");
    } else {
      cmd->add_flag("--all", a->all, std::string(name) == "pause"    ? "pause every waiting or running job"
                                     : std::string(name) == "resume" ? "resume every paused job"
                                                                     : "retry every job that ended in error");
      cmd->add_option("--status", a->status, "only the jobs in these statuses, comma-separated");
    }
    add_common(cmd, a->c, false);
    std::string m = method;
    cmd->callback([a, run, m] { *run = [a, m] { return run_act(*a, m); }; });
  }
  {
    auto c = std::make_shared<PruneArgs>();
    auto* cmd = app.add_subcommand("prune", "Remove jobs that ended (and the .part of failed ones)");
    cmd->add_option("--status", c->status, "only jobs that ended so: completed, cancelled, error (comma-separated)");
    cmd->add_option("--older-than", c->older_than, "only jobs that ended longer ago than this: 90s, 30m, 12h, 7d, 2w");
    add_common(cmd, c->c, false);
    cmd->callback([c, run] { *run = [c] { return run_prune(*c); }; });
  }
  {
    auto a = std::make_shared<WaitArgs>();
    auto* cmd = app.add_subcommand("wait", "Wait for jobs to end; exit 1 if any failed");
    cmd->add_option("ids", a->ids, "job ids (default: every job waiting or running now)")
        ->transform(kJobId);
    cmd->add_option("--timeout", a->timeout, "seconds; exit 5 when it runs out")->check(kSeconds);
    cmd->add_flag("--progress", a->progress, "progress bars on standard error");
    add_common(cmd, a->c, false);
    cmd->callback([a, run] { *run = [a] { return run_wait(*a); }; });
  }
  {
    auto a = std::make_shared<EventsArgs>();
    auto* cmd = app.add_subcommand("events", "Print events; --follow tails new ones");
    cmd->add_flag("-f,--follow", a->follow, "keep printing new events");
    cmd->add_option("--since", a->since, "only events after this seq")->transform(kSeq);
    cmd->add_option("--job", a->job, "only events of this job")->transform(kJobId);
    cmd->add_option("--type", a->types,
                    "only events of these types, comma-separated (progress,error,... or download_progress,...)");
    add_common(cmd, a->c, true);
    cmd->callback([a, run] { *run = [a] { return run_events(*a); }; });
  }
  {
    auto a = std::make_shared<LimitArgs>();
    auto* cmd = app.add_subcommand(
        "limit", "Show or change bandwidth limits: RATE (all jobs), ID RATE (one job); 0 lifts");
    cmd->add_option("args", a->args, "[ID] RATE, e.g. 5M, 500k, 1.5M; 0 for no limit")
        ->expected(0, 2);
    add_common(cmd, a->c, false);
    cmd->callback([a, run] { *run = [a] { return run_limit(*a); }; });
  }
  {
    auto c = std::make_shared<Common>();
    auto* cmd = app.add_subcommand("stats", "Counts by status, rate, uptime, version");
    add_common(cmd, *c, false);
    cmd->callback([c, run] { *run = [c] { return run_stats(*c); }; });
  }
}

}  // namespace fetchq::cli
