// The database of a long-running fetchqd stays bounded: the WAL is checkpointed while the daemon
// runs, pruned jobs take their events with them, and event-retention trims the rest (a follower
// asking for trimmed events is told where the log now starts). Real fetchqd, real fetchq.
#include <SQLiteCpp/SQLiteCpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

using namespace std::chrono_literals;

class LogTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  std::unique_ptr<Process> daemon_;
  int runs_ = 0;

  std::string db() const { return dir_ / "fetchq.db"; }
  std::string sock() const { return dir_ / "fetchqd.sock"; }

  bool start(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{bin_path("fetchqd"),
                                  "--db",
                                  db(),
                                  "--socket",
                                  sock(),
                                  "--download-root",
                                  dir_.path(),
                                  "--max-parallel",
                                  "4",
                                  "--checkpoint-interval-ms",
                                  "100"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ =
        std::make_unique<Process>(argv, "", dir_ / ("fetchqd." + std::to_string(++runs_) + ".err"));
    return wait_until([&] { return daemon_->running() && cli({"stats"}).rc == 0; }, 10s, 20ms);
  }
  void stop() {
    daemon_->signal(SIGTERM);
    EXPECT_EQ(daemon_->wait(10s), 0);
  }
  CliResult cli(std::vector<std::string> args, bool with_socket = true) {
    int n = ++runs_;
    std::vector<std::string> argv{bin_path("fetchq")};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_socket) {
      argv.push_back("--socket");
      argv.push_back(sock());
    }
    return run_capture(argv, dir_ / ("cli." + std::to_string(n) + ".out"),
                       dir_ / ("cli." + std::to_string(n) + ".err"), 30s);
  }
  // Serves `r` at PREFIX0.bin ... PREFIX<n-1>.bin: distinct names, so no two jobs compete for
  // one file.
  void serve(const std::string& prefix, int n, const Resource& r) {
    for (int i = 0; i < n; ++i) server_.add(prefix + std::to_string(i) + ".bin", r);
  }
  // Adds PREFIX0.bin ... PREFIX<n-1>.bin into folder `sub` with `add -i`.
  void add(const std::string& prefix, int n, const std::string& sub) {
    std::string list = dir_ / ("urls." + std::to_string(++runs_));
    {
      std::ofstream f(list);
      for (int i = 0; i < n; ++i) f << server_.url(prefix + std::to_string(i) + ".bin") << "\n";
    }
    auto r = cli({"add", "-i", list, "-d", dir_ / sub});
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  int64_t add_one(const std::string& path, const std::string& sub) {
    auto r = cli({"add", server_.url(path), "-d", dir_ / sub, "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("id", int64_t{0}) : 0;
  }
  int64_t scalar(const std::string& sql) {
    SQLite::Database d(db(), SQLite::OPEN_READONLY);
    return d.execAndGet(sql).getInt64();
  }
};

TEST_F(LogTest, TheWalIsCheckpointedWhileABusyDaemonRuns) {
  Resource small;
  small.body = make_body(20000, 51);
  serve("/s", 300, small);
  Resource slow;
  slow.body = make_body(400000, 52);
  slow.rate_bytes_per_s = 200000;
  server_.add("/slow.bin", slow);
  ASSERT_TRUE(start());
  auto end = std::chrono::steady_clock::now() + 6s;
  for (int round = 0; std::chrono::steady_clock::now() < end; ++round) {
    std::string sub = "r" + std::to_string(round);
    add("/s", 300, sub);
    int64_t paused = add_one("/slow.bin", sub + "p"), cancelled = add_one("/slow.bin", sub + "c");
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(cli({"pause", std::to_string(paused)}).rc, 0);
    EXPECT_EQ(cli({"cancel", std::to_string(cancelled)}).rc, 0);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(cli({"resume", std::to_string(paused)}).rc, 0);
    EXPECT_LE(cli({"wait", "--timeout", "30"}).rc, 1);  // 1 when it counts the cancelled job
    EXPECT_EQ(cli({"prune"}).rc, 0);
  }
  // The daemon is still running and idle: a checkpoint from outside must get through every
  // frame (a statement left open by the daemon would hold some back), and the WAL stays small.
  SQLite::Database d(db(), SQLite::OPEN_READWRITE);
  SQLite::Statement q(d, "PRAGMA wal_checkpoint(PASSIVE)");
  ASSERT_TRUE(q.executeStep());
  EXPECT_EQ(q.getColumn(0).getInt(), 0);
  int log = q.getColumn(1).getInt(), done = q.getColumn(2).getInt();
  EXPECT_GT(log, 0);
  EXPECT_EQ(done, log) << "fetchqd kept " << log - done << " WAL frames from the checkpoint";
  struct stat st {};
  ASSERT_EQ(::stat((db() + "-wal").c_str(), &st), 0);
  EXPECT_LE(st.st_size, 16 << 20);
  stop();
}

TEST_F(LogTest, PruneTakesTheEventsAlongAndRetentionTrimsTheRest) {
  Resource small;
  small.body = make_body(10000, 53);
  serve("/e", 10, small);
  ASSERT_TRUE(start({"--event-retention", "5"}));
  add("/e", 10, "a");
  ASSERT_EQ(cli({"wait", "--timeout", "30"}).rc, 0);
  int64_t last = scalar("SELECT MAX(seq) FROM events");
  ASSERT_GT(last, 10);
  // A restart trims at once (a running daemon trims now and then, between its commits).
  stop();
  ASSERT_TRUE(start({"--event-retention", "5"}));
  EXPECT_LE(scalar("SELECT COUNT(*) FROM events"), 5);
  int64_t first = scalar("SELECT MIN(seq) FROM events");
  EXPECT_EQ(first, last - 5 + 1);
  for (bool direct : {false, true}) {
    auto r = direct ? cli({"events", "--since", "1", "--db", db()}, false)
                    : cli({"events", "--since", "1"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.err.find("events before " + std::to_string(first) + " were removed"),
              std::string::npos)
        << (direct ? "--db: " : "socket: ") << r.err;
    EXPECT_NE(r.out.find(std::to_string(first) + "  "), std::string::npos) << r.out;
  }
  // Asking from within the log: nothing to tell.
  EXPECT_EQ(cli({"events", "--since", std::to_string(first)}).err, "");

  add("/e", 3, "b");
  ASSERT_EQ(cli({"wait", "--timeout", "30"}).rc, 0);
  ASSERT_EQ(cli({"prune"}).rc, 0);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM jobs"), 0);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM events WHERE job_id NOT IN (SELECT id FROM jobs)"), 0)
      << "events of pruned jobs were kept";
  // The sequence goes on after everything was removed.
  add("/e", 1, "c");
  ASSERT_EQ(cli({"wait", "--timeout", "30"}).rc, 0);
  EXPECT_GT(scalar("SELECT MIN(seq) FROM events"), last);
  stop();
}

// A daemon that runs for months trims its log as it goes, not only when it starts or prunes:
// with nothing pruned and no restart, the events of a first burst of jobs are trimmed to the
// retention while a later download keeps the queue busy.
TEST_F(LogTest, ARunningDaemonTrimsTheEventLogToItsRetention) {
  constexpr int kRetention = 20;
  Resource small;
  small.body = make_body(10000, 54);
  serve("/t", 40, small);
  Resource slow;
  slow.body = make_body(2 << 20, 55);
  slow.rate_bytes_per_s = 100000;  // about twenty seconds of progress and checkpoints
  server_.add("/slow.bin", slow);
  ASSERT_TRUE(start({"--event-retention", std::to_string(kRetention)}));
  const pid_t pid = daemon_->pid();
  add("/t", 40, "a");
  ASSERT_EQ(cli({"wait", "--timeout", "30"}).rc, 0);
  const int64_t burst = scalar("SELECT MAX(seq) FROM events");
  ASSERT_GT(burst, 3 * kRetention);
  int64_t slow_id = add_one("/slow.bin", "b");
  ASSERT_GT(slow_id, 0);
  // Within the slow download's time: every event of the burst but the newest kRetention is gone.
  EXPECT_TRUE(wait_until(
      [&] {
        return scalar("SELECT COUNT(*) FROM events WHERE seq <= " + std::to_string(burst)) <=
               kRetention;
      },
      15s, 100ms))
      << scalar("SELECT COUNT(*) FROM events") << " events kept, retention " << kRetention;
  EXPECT_GT(scalar("SELECT MIN(seq) FROM events"), burst - kRetention);
  // The same daemon all along: the trim was made while it ran.
  EXPECT_TRUE(daemon_->running());
  EXPECT_EQ(daemon_->pid(), pid);
  cli({"cancel", std::to_string(slow_id)});
  stop();
}

}  // namespace
}  // namespace fetchq::testing
