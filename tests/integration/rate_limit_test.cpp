// Bandwidth limits end to end: the real fetchqd and fetchq against the in-process HTTP server.
//
// Rates are measured on the receiving side, from the jobs' own byte counts: a sampler asks
// fetchqd for every job many times a second over one control connection and keeps, for each
// job, the moments its count changed. The engine reports a job's bytes about once a second,
// each report exact for its moment, so a job's rate over a window is taken between two reports
// (never interpolated), and the queue's rate is the sum of its jobs' rates. Windows start after
// a warm-up, so connection set-up and the first burst do not count.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * 1024;

// One fetchqd with its own database, socket and download folder.
class Daemon {
 public:
  Daemon(const TempDir& dir, std::vector<std::string> extra) : dir_(dir), extra_(std::move(extra)) {
    fs::create_directories(dir_ / "dl");
  }

  std::string socket() const { return dir_ / "fetchqd.sock"; }
  std::string dl() const { return dir_ / "dl"; }

  bool start() {
    ++starts_;
    std::vector<std::string> argv{bin_path("fetchqd"),   "--db",          dir_ / "fetchq.db",
                                  "--socket",           socket(),        "--download-root",
                                  dir_.path(),          "--checkpoint-interval-ms", "500"};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    proc_ = std::make_unique<Process>(argv, "", dir_ / ("fetchqd." + std::to_string(starts_) + ".err"));
    CliResult last;
    bool up = wait_until(
        [&] {
          if (!proc_->running()) return false;
          last = cli({"stats"}, 2s);
          return last.rc == 0;
        },
        10s, 20ms);
    if (!up) {
      ADD_FAILURE() << "fetchqd did not answer within 10 s (running: " << proc_->running()
                    << "); last stats rc " << last.rc << ": " << last.err << "\nfetchqd stderr:\n"
                    << read_file(dir_ / ("fetchqd." + std::to_string(starts_) + ".err"));
    }
    return up;
  }

  void stop() {
    proc_->signal(SIGTERM);
    EXPECT_EQ(proc_->wait(10s), 0);
  }

  CliResult cli(std::vector<std::string> args, std::chrono::milliseconds timeout = 20s) {
    int n = ++runs_;
    std::vector<std::string> argv{bin_path("fetchq")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--socket");
    argv.push_back(socket());
    return run_capture(argv, dir_ / ("cli." + std::to_string(n) + ".out"),
                       dir_ / ("cli." + std::to_string(n) + ".err"), timeout);
  }

  // `add URL -d DL --json EXTRA...`: the job's id, 0 on failure.
  int64_t add(const std::string& url, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"add", url, "-d", dl(), "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = cli(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    json j = json::parse(r.out, nullptr, false);
    return r.rc == 0 && j.is_object() ? j.value("id", int64_t{0}) : 0;
  }

 private:
  const TempDir& dir_;
  std::vector<std::string> extra_;
  int starts_ = 0;
  int runs_ = 0;
  std::unique_ptr<Process> proc_;
};

// One control connection, one request at a time.
class Rpc {
 public:
  explicit Rpc(const std::string& socket) : fd_(connect_unix(socket)) {}
  ~Rpc() {
    if (fd_ >= 0) ::close(fd_);
  }
  json call(const std::string& method, json params) {
    json req{{"jsonrpc", "2.0"}, {"id", ++id_}, {"method", method}, {"params", std::move(params)}};
    if (fd_ < 0 || !send_all(fd_, req.dump() + "\n")) return json();
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        json j = json::parse(line, nullptr, false);
        return j.is_discarded() ? json() : j;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return json();
      char chunk[65536];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return json();
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  int64_t id_ = 0;
  std::string buf_;
};

// Polls every job's byte count every 10 ms on its own thread; keeps each change with the moment
// it was first seen.
class Sampler {
 public:
  struct Point {
    Clock::time_point at;
    int64_t bytes;
  };

  explicit Sampler(const std::string& socket)
      : start_(Clock::now()), thread_([this, socket] { run(socket); }) {}
  ~Sampler() { stop(); }

  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

  Clock::time_point start() const { return start_; }

  // The job's rate over [from, to]: between its first report at or after `from` and its last at
  // or before `to`; -1 when there are not two reports at least `min_span` apart.
  double rate(int64_t job, Clock::time_point from, Clock::time_point to,
              std::chrono::milliseconds min_span = 3s) const {
    std::lock_guard lk(mu_);
    auto it = points_.find(job);
    if (it == points_.end()) return -1;
    const Point* a = nullptr;
    const Point* b = nullptr;
    for (const auto& p : it->second) {
      if (!a && p.at >= from) a = &p;
      if (p.at <= to) b = &p;
    }
    if (!a || !b || b->at - a->at < min_span) return -1;
    return static_cast<double>(b->bytes - a->bytes) /
           std::chrono::duration<double>(b->at - a->at).count();
  }

  // The sum of the rates of `jobs` over [from, to]; -1 when one of them has no rate.
  double total_rate(const std::vector<int64_t>& jobs, Clock::time_point from, Clock::time_point to,
                    std::chrono::milliseconds min_span = 3s) const {
    double sum = 0;
    for (int64_t id : jobs) {
      double r = rate(id, from, to, min_span);
      if (r < 0) {
        ADD_FAILURE() << "job " << id << " has no two reports " << min_span.count()
                      << " ms apart in the window: " << reports(id, from);
        return -1;
      }
      sum += r;
    }
    return sum;
  }

  // The job's reports as "+ms:bytes" from `from`, for failure messages.
  std::string reports(int64_t job, Clock::time_point from) const {
    std::lock_guard lk(mu_);
    std::string out;
    auto it = points_.find(job);
    if (it == points_.end()) return "none";
    for (const auto& p : it->second) {
      out += std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(p.at - from).count()) +
             ":" + std::to_string(p.bytes) + " ";
    }
    return out;
  }

 private:
  void run(const std::string& socket) {
    Rpc rpc(socket);
    // A change is seen in the listing after it happened, by up to a round trip and a pause (much
    // more on a loaded machine): it is dated halfway between the asking of this listing and of
    // the one before, which errs by half that either way instead of always late.
    auto before = Clock::now();
    while (!done_) {
      const auto asked = Clock::now();
      json answer = rpc.call("list_jobs", json::object());
      const auto at = before + (asked - before) / 2;
      before = asked;
      if (answer.contains("result") && answer["result"].is_array()) {
        std::lock_guard lk(mu_);
        for (const auto& j : answer["result"]) {
          auto& pts = points_[j.value("id", int64_t{0})];
          const int64_t bytes = j.value("bytes", int64_t{0});
          if (pts.empty() || pts.back().bytes != bytes) pts.push_back({at, bytes});
        }
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  const Clock::time_point start_;
  mutable std::mutex mu_;
  std::map<int64_t, std::vector<Point>> points_;  // under mu_
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Waits until every job of `ids` has some bytes; the moment they all had, or nullopt after 20 s.
std::optional<Clock::time_point> all_moving(Daemon& d, const std::vector<int64_t>& ids) {
  Rpc rpc(d.socket());
  bool ok = wait_until(
      [&] {
        json answer = rpc.call("list_jobs", json::object());
        if (!answer.contains("result")) return false;
        size_t moving = 0;
        for (const auto& j : answer["result"]) {
          if (std::find(ids.begin(), ids.end(), j.value("id", int64_t{0})) != ids.end() &&
              j.value("bytes", int64_t{0}) > 0) {
            ++moving;
          }
        }
        return moving == ids.size();
      },
      20s, 20ms);
  if (!ok) return std::nullopt;
  return Clock::now();
}

Resource big(int64_t size, uint32_t seed) {
  Resource r;
  r.body = make_body(static_cast<size_t>(size), seed);
  return r;
}

void expect_within(double measured, double limit, double tolerance, const std::string& what) {
  EXPECT_GT(measured, 0) << what << ": no measure";
  const double ratio = measured / limit;
  EXPECT_NEAR(ratio, 1.0, tolerance) << what << ": " << measured << " B/s for a limit of " << limit
                                     << " B/s";
  std::printf("[ rate     ] %s: %.0f B/s, limit %.0f B/s, ratio %.4f\n", what.c_str(), measured,
              limit, ratio);
}

TEST(RateLimit, OneJobOverEightConnectionsKeepsToTheQueueLimit) {
  TempDir dir;
  TestServer server;
  server.add("/big.bin", big(36 * kMiB, 3));  // 18 s at the limit: the window ends well before
  Daemon d(dir, {"--limit-rate", "2M"});
  ASSERT_TRUE(d.start());
  int64_t id = d.add(server.url("/big.bin"), {"--connections", "8"});
  ASSERT_GT(id, 0);
  Sampler sampler(d.socket());
  auto moving = all_moving(d, {id});
  ASSERT_TRUE(moving);
  ASSERT_TRUE(wait_until([&] { return server.peak_concurrent_bodies() >= 8; }, 10s))
      << "the file was not split over 8 connections";
  const auto from = *moving + 2s;
  const auto to = from + 10s;
  std::this_thread::sleep_until(to + 1500ms);  // a report after the window's end
  sampler.stop();
  expect_within(sampler.rate(id, from, to, 8s), 2.0 * kMiB, 0.05, "one job, 8 connections");
}

TEST(RateLimit, TwentyJobsShareTheQueueLimit) {
  TempDir dir;
  TestServer server;
  std::vector<int64_t> ids;
  Daemon d(dir, {"--limit-rate", "2M", "--max-parallel", "20"});
  ASSERT_TRUE(d.start());
  // One add of all 20, so they start together: a job that ran alone first would end early.
  std::vector<std::string> add{"add", "-d", d.dl(), "--json"};
  for (int i = 0; i < 20; ++i) {
    const std::string path = "/f" + std::to_string(i) + ".bin";
    server.add(path, big(4 * kMiB, static_cast<uint32_t>(10 + i)));  // ~40 s each at 1/20th
    add.push_back(server.url(path));
  }
  auto added = d.cli(add);
  ASSERT_EQ(added.rc, 0) << added.err;
  for (const auto& j : json::parse(added.out)) ids.push_back(j.value("id", int64_t{0}));
  ASSERT_EQ(ids.size(), 20u);
  Sampler sampler(d.socket());
  auto moving = all_moving(d, ids);
  ASSERT_TRUE(moving);
  // After the start: a job whose first read came before the limit took hold pays it back by
  // waiting (seen for 5 s under TSan), with no report meanwhile.
  // Twenty seconds, all jobs still running (80 MiB take 40 s): each job's reports are a second
  // apart, and a loaded machine dates them late by up to a listing, which is a smaller part of a
  // longer window.
  const auto from = *moving + 8s;
  const auto to = from + 20s;
  std::this_thread::sleep_until(to + 1500ms);
  sampler.stop();
  expect_within(sampler.total_rate(ids, from, to, 17s), 2.0 * kMiB, 0.05, "20 jobs");
}

TEST(RateLimit, AJobLimitBelowTheQueueLimitHoldsForThatJobAndSurvivesARestart) {
  TempDir dir;
  TestServer server;
  server.add("/slow.bin", big(12 * kMiB, 5));
  server.add("/fast.bin", big(24 * kMiB, 6));
  Daemon d(dir, {"--limit-rate", "2M"});
  ASSERT_TRUE(d.start());
  const int64_t slow = d.add(server.url("/slow.bin"), {"--limit-rate", "512k"});
  const int64_t fast = d.add(server.url("/fast.bin"));
  ASSERT_GT(slow, 0);
  ASSERT_GT(fast, 0);
  {
    Sampler sampler(d.socket());
    auto moving = all_moving(d, {slow, fast});
    ASSERT_TRUE(moving);
    const auto from = *moving + 2s;
    const auto to = from + 8s;
    std::this_thread::sleep_until(to + 1500ms);
    sampler.stop();
    expect_within(sampler.rate(slow, from, to, 6s), 512.0 * kKiB, 0.05, "the job's own limit");
    expect_within(sampler.total_rate({slow, fast}, from, to, 6s), 2.0 * kMiB, 0.05,
                  "both jobs under the queue's limit");
  }
  // The job's limit is stored with it: shown, listed by `fetchq limit`, kept over a restart.
  auto show = d.cli({"show", std::to_string(slow), "--json"});
  ASSERT_EQ(show.rc, 0) << show.err;
  EXPECT_EQ(json::parse(show.out).value("limit_rate", int64_t{0}), 512 * kKiB);
  d.stop();
  ASSERT_TRUE(d.start());
  auto listed = d.cli({"limit"});
  ASSERT_EQ(listed.rc, 0) << listed.err;
  EXPECT_NE(listed.out.find("queue: 2M/s"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("job " + std::to_string(slow) + ": 512k/s"), std::string::npos)
      << listed.out;
  EXPECT_EQ(listed.out.find("job " + std::to_string(fast)), std::string::npos) << listed.out;
}

TEST(RateLimit, SetLimitsChangesTheRateOfARunningTransfer) {
  TempDir dir;
  TestServer server;
  server.add("/big.bin", big(40 * kMiB, 7));
  Daemon d(dir, {"--limit-rate", "1M"});
  ASSERT_TRUE(d.start());
  const int64_t id = d.add(server.url("/big.bin"));
  ASSERT_GT(id, 0);
  Sampler sampler(d.socket());
  auto moving = all_moving(d, {id});
  ASSERT_TRUE(moving);
  auto from = *moving + 1500ms;
  auto to = from + 5s;
  std::this_thread::sleep_until(to);
  // The queue's limit goes up while the job runs, through the CLI.
  auto up = d.cli({"limit", "3M"});
  ASSERT_EQ(up.rc, 0) << up.err;
  EXPECT_NE(up.out.find("queue: 3M/s"), std::string::npos) << up.out;
  const auto raised = Clock::now();
  // Then the job's own limit goes below it, over the socket.
  const auto from2 = raised + 1500ms;
  const auto to2 = from2 + 5s;
  std::this_thread::sleep_until(to2);
  Rpc rpc(d.socket());
  json answer = rpc.call("set_limits", {{"id", id}, {"limit_rate", 512 * kKiB}});
  ASSERT_TRUE(answer.contains("result")) << answer.dump();
  EXPECT_EQ(answer["result"]["limit_rate"], 3 * kMiB);
  ASSERT_EQ(answer["result"]["jobs"].size(), 1u) << answer.dump();
  EXPECT_EQ(answer["result"]["jobs"][0]["limit_rate"], 512 * kKiB);
  const auto from3 = Clock::now() + 1500ms;
  const auto to3 = from3 + 5s;
  std::this_thread::sleep_until(to3 + 1500ms);
  sampler.stop();
  expect_within(sampler.rate(id, from, to), 1.0 * kMiB, 0.05, "before set_limits");
  expect_within(sampler.rate(id, from2, to2), 3.0 * kMiB, 0.05, "after fetchq limit 3M");
  expect_within(sampler.rate(id, from3, to3), 512.0 * kKiB, 0.05, "after the job's set_limits");
  // Each change is an event: the queue's with job 0, the job's with its own id.
  auto events = d.cli({"events", "--json", "--type", "limit_changed"});
  ASSERT_EQ(events.rc, 0) << events.err;
  EXPECT_NE(events.out.find("\"job_id\":0,\"limit_rate\":3145728"), std::string::npos)
      << events.out;
  EXPECT_NE(events.out.find("\"job_id\":" + std::to_string(id) + ",\"limit_rate\":524288"),
            std::string::npos)
      << events.out;
  // Lifting both lets the rest through at full speed.
  ASSERT_EQ(d.cli({"limit", "0"}).rc, 0);
  ASSERT_EQ(d.cli({"limit", std::to_string(id), "0"}).rc, 0);
  auto done = d.cli({"wait", std::to_string(id), "--timeout", "30"}, 40s);
  EXPECT_EQ(done.rc, 0) << done.err;
  auto listed = d.cli({"limit"});
  EXPECT_EQ(listed.out, "queue: unlimited\n");
}

TEST(RateLimit, LimitCommandErrorsAndBadRates) {
  TempDir dir;
  TestServer server;
  server.add("/small.bin", big(64 * kKiB, 8));
  Daemon d(dir, {});
  ASSERT_TRUE(d.start());
  auto none = d.cli({"limit"});
  EXPECT_EQ(none.rc, 0) << none.err;
  EXPECT_EQ(none.out, "queue: unlimited\n");
  auto as_json = d.cli({"limit", "--json"});
  ASSERT_EQ(as_json.rc, 0) << as_json.err;
  EXPECT_EQ(json::parse(as_json.out), json::parse(R"({"limit_rate":0,"jobs":[]})"));
  for (std::vector<std::string> bad : {std::vector<std::string>{"limit", "5X"},
                                       {"limit", "1.5.5M"},
                                       {"limit", "abc", "1M"},
                                       {"limit", "1", "2", "3"},
                                       {"limit", "1", "fast"},
                                       {"add", server.url("/small.bin"), "--limit-rate", "10 M"},
                                       {"add", server.url("/small.bin"), "--limit-rate", "-1"},
                                       {"get", server.url("/small.bin"), "--limit-rate", "5T"}}) {
    auto r = d.cli(bad);
    std::string cmd;
    for (auto& a : bad) cmd += a + " ";
    EXPECT_EQ(r.rc, 2) << cmd << r.err;
    EXPECT_FALSE(r.err.empty()) << cmd;
  }
  auto r = d.cli({"limit", "5X"});
  EXPECT_NE(r.err.find("'5X' is not a rate"), std::string::npos) << r.err;
  auto unknown = d.cli({"limit", "999", "1M"});
  EXPECT_EQ(unknown.rc, 4);
  EXPECT_NE(unknown.err.find("no job with id 999"), std::string::npos) << unknown.err;
  // A job that ended keeps no limit.
  const int64_t id = d.add(server.url("/small.bin"));
  ASSERT_EQ(d.cli({"wait", std::to_string(id), "--timeout", "20"}, 30s).rc, 0);
  auto ended = d.cli({"limit", std::to_string(id), "1M"});
  EXPECT_EQ(ended.rc, 4);
  EXPECT_NE(ended.err.find("already ended"), std::string::npos) << ended.err;
  // Bad params over the socket are -32602, with the reason.
  Rpc rpc(d.socket());
  for (json params : {json::object(), json{{"limit_rate", -5}}, json{{"limit_rate", "fast"}},
                      json{{"limit_rate", 1}, {"rate", 2}}, json{{"limit_rate", true}}}) {
    json answer = rpc.call("set_limits", params);
    EXPECT_EQ(answer["error"]["code"], -32602) << params.dump() << " " << answer.dump();
  }
  EXPECT_EQ(rpc.call("set_limits", {{"limit_rate", "1.5M"}})["result"]["limit_rate"], 3 * 512 * kKiB);
  // The daemon refuses a bad setting at start, as a usage error.
  auto proc = run_capture({bin_path("fetchqd"), "--limit-rate", "lots", "--db", dir / "x.db",
                           "--socket", dir / "x.sock"},
                          dir / "bad.out", dir / "bad.err", 10s);
  EXPECT_EQ(proc.rc, 2);
  EXPECT_NE(proc.err.find("limit-rate: 'lots' is not a rate"), std::string::npos) << proc.err;
}

TEST(RateLimit, ARateScheduleSetsTheLimitOfTheWindowThatHoldsTheTime) {
  TempDir dir;
  // Two windows that cover the whole day, whatever the local time of the run.
  Daemon d(dir, {"--limit-rate", "3M", "--rate-schedule", "00:00-12:00 1.5M", "--rate-schedule",
                 "12:00-24:00 1.5M"});
  ASSERT_TRUE(d.start());
  auto listed = d.cli({"limit"});
  ASSERT_EQ(listed.rc, 0) << listed.err;
  EXPECT_EQ(listed.out, "queue: 1.5M/s\n");
  auto bad = run_capture({bin_path("fetchqd"), "--rate-schedule", "9 to 5 1M", "--db", dir / "x.db",
                          "--socket", dir / "x.sock"},
                         dir / "bad.out", dir / "bad.err", 10s);
  EXPECT_EQ(bad.rc, 2);
  EXPECT_NE(bad.err.find("rate-schedule '9 to 5 1M'"), std::string::npos) << bad.err;
}

// The library's own calls, from two threads at once while transfers run (TSan runs it too).
TEST(RateLimit, TheQueueChangesLimitsFromAnyThreadWhileTransfersRun) {
  TempDir dir;
  TestServer server;
  server.add("/a.bin", big(2 * kMiB, 30));
  server.add("/b.bin", big(2 * kMiB, 31));
  QueueOptions o = fast_options(dir);
  o.rate_limit = 256 * kKiB;
  auto q = open_queue(o);
  ASSERT_TRUE(q);
  DownloadOptions own;
  own.limit_rate = 128 * kKiB;
  const Job a = submit(*q, server.url("/a.bin"), dir / "a.bin", own);
  const Job b = submit(*q, server.url("/b.bin"), dir / "b.bin");
  EXPECT_EQ(a.limit_rate, 128 * kKiB);
  EXPECT_EQ(q->rate_limit(), 256 * kKiB);
  ASSERT_TRUE(wait_until(
      [&] { return q->id_to_job(a.id)->bytes > 0 && q->id_to_job(b.id)->bytes > 0; }));
  std::thread other([&] {
    for (int i = 0; i < 40; ++i) EXPECT_TRUE(q->set_rate_limit(i % 2 ? 512 * kKiB : kMiB).ok());
  });
  for (int i = 0; i < 40; ++i) {
    EXPECT_TRUE(q->set_job_rate_limit(a.id, i % 2 ? 64 * kKiB : 192 * kKiB).ok());
  }
  other.join();
  ASSERT_TRUE(q->set_rate_limit(0).ok());
  auto lifted = q->set_job_rate_limit(a.id, 0);
  ASSERT_TRUE(lifted.ok()) << lifted.error().message;
  EXPECT_EQ(lifted->limit_rate, 0);
  EXPECT_TRUE(q->join(std::chrono::seconds(30)));
  EXPECT_EQ(q->id_to_job(a.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(read_file(dir / "a.bin"), make_body(2 * kMiB, 30));
  size_t queue_events = 0, job_events_seen = 0;
  for (const auto& e : q->events_since(0, 100000, std::chrono::milliseconds(0))) {
    if (e.type != "download_limit_changed") continue;
    (e.job_id == 0 ? queue_events : job_events_seen) += 1;
  }
  EXPECT_EQ(queue_events, 41u);    // 40 changes, then 0
  EXPECT_EQ(job_events_seen, 41u);
  EXPECT_EQ(q->rate_limit(), 0);
  EXPECT_FALSE(q->set_rate_limit(-1).ok());
  EXPECT_EQ(q->set_job_rate_limit(a.id, kMiB).error().code, ErrorCode::kWrongState);
  EXPECT_EQ(q->set_job_rate_limit(999, kMiB).error().code, ErrorCode::kNotFound);
}

TEST(RateLimit, GetLimitsItsWholeRun) {
  TempDir dir;
  TestServer server;
  server.add("/a.bin", big(1536 * kKiB, 21));
  server.add("/b.bin", big(1536 * kKiB, 22));
  fs::create_directories(dir / "out");
  const auto t0 = Clock::now();
  auto r = run_capture({bin_path("fetchq"), "get", server.url("/a.bin"), server.url("/b.bin"), "-d",
                        dir / "out", "--state", dir / "get.db", "--limit-rate", "1M", "--quiet"},
                       dir / "get.out", dir / "get.err", 30s);
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(r.rc, 0) << r.err;
  // 3 MiB at 1 MiB/s over both jobs: about 3 s (less a first burst of at most 0.1 s).
  EXPECT_GT(took, 2.6);
  EXPECT_LT(took, 15.0);
  EXPECT_EQ(read_file(dir / "out/a.bin").size(), static_cast<size_t>(1536 * kKiB));
  EXPECT_EQ(read_file(dir / "out/b.bin").size(), static_cast<size_t>(1536 * kKiB));
}

}  // namespace
}  // namespace fetchq::testing
