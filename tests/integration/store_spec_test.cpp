// Store specs at every entry point (fetchqd --db, fetchq get --state, fetchq --db), and a
// `fetchq get` whose state file another process holds: the real binaries, bounded in time.
#include <signal.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

size_t entries_in(const std::string& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

size_t lines_in(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

// `path` relative to the test's working folder, which the binaries inherit.
std::string relative_to_cwd(const std::string& path) { return fs::relative(path, fs::current_path()).string(); }

// Starts fetchqd on `spec` and stops it with SIGTERM once its socket is there; its exit status.
int run_daemon_briefly(const TempDir& dir, const std::string& spec, const std::string& name) {
  const std::string sock = dir / (name + ".sock");
  Process d({bin_path("fetchqd"), "--db", spec, "--socket", sock}, "", dir / (name + ".err"));
  bool up = wait_until([&] { return fs::exists(sock) || !d.running(); }, 20s);
  if (!up || !d.running()) {
    int rc = d.wait(1s);
    return rc == -1 ? -2 : rc;
  }
  d.signal(SIGTERM);
  return d.wait(10s);
}

TEST(StoreSpecCli, SqliteSpecsRelativeAndAbsoluteWorkEverywhere) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "spec\n";
  server.add("/a.txt", r);

  // fetchq get --state sqlite:ABSOLUTE and sqlite:RELATIVE
  auto abs = run_capture({bin_path("fetchq"), "get", server.url("/a.txt"), "-d", dir / "dl1", "--state",
                          "sqlite:" + (dir / "abs.db"), "--quiet"},
                         dir / "abs.out", dir / "abs.err", 60s);
  EXPECT_EQ(abs.rc, 0) << abs.err;
  EXPECT_TRUE(file_exists(dir / "abs.db"));
  EXPECT_TRUE(file_exists(dir / "dl1/a.txt"));
  auto rel = run_capture({bin_path("fetchq"), "get", server.url("/a.txt"), "-d", dir / "dl2", "--state",
                          "sqlite:" + relative_to_cwd(dir / "rel.db"), "--quiet"},
                         dir / "rel.out", dir / "rel.err", 60s);
  EXPECT_EQ(rel.rc, 0) << rel.err;
  EXPECT_TRUE(file_exists(dir / "rel.db"));
  EXPECT_FALSE(fs::exists("sqlite:" + relative_to_cwd(dir / "rel.db")));

  // fetchq list --db sqlite:... reads what get wrote, absolute and relative, and the URL form.
  for (const std::string& spec : {"sqlite:" + (dir / "abs.db"), "sqlite:" + relative_to_cwd(dir / "rel.db"),
                                  "sqlite://" + (dir / "abs.db")}) {
    auto l = run_capture({bin_path("fetchq"), "list", "--db", spec, "--json"}, dir / "l.out", dir / "l.err", 30s);
    ASSERT_EQ(l.rc, 0) << spec << ": " << l.err;
    auto jobs = nlohmann::json::parse(l.out);
    ASSERT_EQ(jobs.size(), 1u) << spec;
    EXPECT_EQ(jobs[0]["status"], "completed");
  }

  // fetchqd --db sqlite:ABSOLUTE and sqlite:RELATIVE
  EXPECT_EQ(run_daemon_briefly(dir, "sqlite:" + (dir / "d1/q.db"), "d1"), 0) << read_file(dir / "d1.err");
  EXPECT_TRUE(file_exists(dir / "d1/q.db"));
  EXPECT_EQ(run_daemon_briefly(dir, "sqlite:" + relative_to_cwd(dir / "d2/q.db"), "d2"), 0)
      << read_file(dir / "d2.err");
  EXPECT_TRUE(file_exists(dir / "d2/q.db"));
}

// Each entry point refuses a spec it cannot serve as a usage error (exit 2), with one line that
// does not repeat the spec's password, and before creating anything on disk.
void expect_refused(const std::string& spec, const std::string& says) {
  TempDir dir;
  const std::string work = dir / "work";
  fs::create_directory(work);
  const std::string out = dir / "out";
  const std::string err = dir / "err";
  std::vector<std::vector<std::string>> commands = {
      {bin_path("fetchqd"), "--db", spec, "--socket", work + "/d/fetchqd.sock"},
      {bin_path("fetchq"), "get", "http://127.0.0.1:9/x", "-d", work + "/dl", "--state", spec},
      {bin_path("fetchq"), "list", "--db", spec},
      {bin_path("fetchq"), "show", "1", "--db", spec},
      {bin_path("fetchq"), "events", "--db", spec},
  };
  for (const auto& argv : commands) {
    SCOPED_TRACE(argv[0] + " " + argv[1] + " with " + spec);
    auto r = run_capture(argv, out, err, 30s);
    EXPECT_EQ(r.rc, 2) << r.err;
    EXPECT_EQ(lines_in(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("s3cret"), std::string::npos) << r.err;
    EXPECT_EQ(entries_in(work), 0u) << "something was created under " << work;
  }
  // Nothing named after the spec in the working folder either.
  auto colon = spec.find(':');
  EXPECT_FALSE(fs::exists(spec.substr(0, colon + 1))) << spec.substr(0, colon + 1);
}

TEST(StoreSpecCli, PostgresqlIsRefusedAsAUsageErrorAndNothingIsCreated) {
  expect_refused("postgresql://fetchq:s3cret@db.example/fetchq", "PostgreSQL is not supported yet");
  expect_refused("postgres://fetchq:s3cret@db.example/fetchq", "PostgreSQL is not supported yet");
}

TEST(StoreSpecCli, UnknownSchemesAreRefusedAsAUsageError) {
  expect_refused("foo:s3cret", "unknown kind of store \"foo\"");
  expect_refused("mysql://u:s3cret@h/db", "unknown kind of store \"mysql\"");
}

// ---- a state file held by another process

// Holds the SQLite write lock of `path` (BEGIN EXCLUSIVE, as an sqlite3 shell would) until it
// goes out of scope.
class ExclusiveHold {
 public:
  explicit ExclusiveHold(const std::string& path) : db_(path, SQLite::OPEN_READWRITE) {
    db_.exec("BEGIN EXCLUSIVE");
  }
  ~ExclusiveHold() {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
    }
  }

 private:
  SQLite::Database db_;
};

// `took` is bounded by a few busy timeouts (5 s each): the one that fails, and those of the
// final commits as the queue shuts down.
void expect_state_failure(const CliResult& r, const std::string& state, std::chrono::steady_clock::duration took) {
  EXPECT_EQ(r.rc, 4) << r.err;
  EXPECT_EQ(lines_in(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find(state), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("locked"), std::string::npos) << r.err;
  EXPECT_LT(took, 45s);
}

TEST(StateFailure, GetStopsWhenAnotherProcessHoldsTheWriteLockOfANewStateFile) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "a\n";
  server.add("/a.txt", r);
  server.add("/b.txt", r);
  const std::string state = dir / "state.db";
  auto first = run_capture({bin_path("fetchq"), "get", server.url("/a.txt"), "-d", dir / "dl", "--state", state,
                            "--quiet"},
                           dir / "1.out", dir / "1.err", 60s);
  ASSERT_EQ(first.rc, 0) << first.err;
  ExclusiveHold hold(state);
  auto t0 = std::chrono::steady_clock::now();
  auto r2 = run_capture({bin_path("fetchq"), "get", server.url("/b.txt"), "-d", dir / "dl", "--state", state,
                         "--quiet"},
                        dir / "2.out", dir / "2.err", 90s);
  expect_state_failure(r2, state, std::chrono::steady_clock::now() - t0);
  EXPECT_FALSE(file_exists(dir / "dl/b.txt"));
}

TEST(StateFailure, GetStopsWhenTheWriteLockIsHeldOnAStateFileWithAJobToResume) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(3 << 20, 7);
  r.rate_bytes_per_s = 1 << 20;
  server.add("/big.bin", r);
  const std::string state = dir / "state.db";
  std::vector<std::string> argv{bin_path("fetchq"), "get", server.url("/big.bin"), "-d", dir / "dl", "--state",
                                state, "--quiet"};
  {
    Process p(argv);
    ASSERT_TRUE(wait_until([&] { return file_exists(dir / "dl/big.bin.part"); }, 20s));
    p.signal(SIGINT);  // checkpointed and left waiting for the next run
    EXPECT_EQ(p.wait(20s), 130);
  }
  ExclusiveHold hold(state);
  auto t0 = std::chrono::steady_clock::now();
  auto again = run_capture(argv, dir / "2.out", dir / "2.err", 90s);
  expect_state_failure(again, state, std::chrono::steady_clock::now() - t0);
  EXPECT_FALSE(file_exists(dir / "dl/big.bin"));
}

TEST(StateFailure, GetStopsWhenTheWriteLockIsTakenInTheMiddleOfARun) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(8 << 20, 5);
  r.rate_bytes_per_s = 512 << 10;
  server.add("/big.bin", r);
  const std::string state = dir / "state.db";
  Process p({bin_path("fetchq"), "get", server.url("/big.bin"), "-d", dir / "dl", "--state", state, "--quiet"}, "",
            dir / "err.txt");
  ASSERT_TRUE(wait_until([&] { return file_exists(dir / "dl/big.bin.part"); }, 20s));
  SQLite::Database db(state, SQLite::OPEN_READWRITE, 10000);
  db.exec("BEGIN EXCLUSIVE");  // waits out a commit of get's, then keeps every later one out
  auto t0 = std::chrono::steady_clock::now();
  int rc = p.wait(60s);
  auto took = std::chrono::steady_clock::now() - t0;
  db.exec("ROLLBACK");
  if (rc == -1) p.signal(SIGKILL);
  CliResult res{rc, "", read_file(dir / "err.txt")};
  expect_state_failure(res, state, took);
  EXPECT_FALSE(file_exists(dir / "dl/big.bin"));
}

TEST(StateFailure, GetStopsWhenAnotherGetHoldsTheStateFile) {
  TempDir dir;
  TestServer server;
  Resource slow;
  slow.body = make_body(4 << 20, 9);
  slow.rate_bytes_per_s = 256 << 10;
  server.add("/slow.bin", slow);
  Resource small;
  small.body = "b\n";
  server.add("/b.txt", small);
  const std::string state = dir / "state.db";
  Process holder({bin_path("fetchq"), "get", server.url("/slow.bin"), "-d", dir / "dl", "--state", state, "--quiet"});
  ASSERT_TRUE(wait_until([&] { return file_exists(dir / "dl/slow.bin.part"); }, 20s));
  auto t0 = std::chrono::steady_clock::now();
  auto second = run_capture({bin_path("fetchq"), "get", server.url("/b.txt"), "-d", dir / "dl2", "--state", state,
                             "--quiet"},
                            dir / "2.out", dir / "2.err", 60s);
  expect_state_failure(second, state, std::chrono::steady_clock::now() - t0);
  EXPECT_FALSE(file_exists(dir / "dl2/b.txt"));
  holder.signal(SIGKILL);
}

}  // namespace
}  // namespace fetchq::testing
