// Store specs at every entry point (fetchqd --db, fetchq get --state, fetchq --db): the real
// binaries, bounded in time.
#include <signal.h>

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

}  // namespace
}  // namespace fetchq::testing
