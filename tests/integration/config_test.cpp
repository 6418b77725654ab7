// Config files: fetchq's ~/.config/fetchq/config (defaults for its flags, `fetchq config`) and
// fetchqd's default fetchqd.conf; and `fetchq get` forgetting old completed jobs.
#include <filesystem>

#include <SQLiteCpp/SQLiteCpp.h>
#include <nlohmann/json.hpp>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

// Runs fetchq with `args`, FETCHQ_CONFIG naming `config`, and any extra environment.
CliResult fetchq_with(const TempDir& dir, const std::string& config, std::vector<std::string> args,
                      std::vector<std::string> env = {}) {
  args.insert(args.begin(), bin_path("fetchq"));
  env.push_back("FETCHQ_CONFIG=" + config);
  Process p(args, dir / "out.txt", dir / "err.txt", env);
  CliResult r;
  r.rc = p.wait(std::chrono::seconds(60));
  r.out = read_file(dir / "out.txt");
  r.err = read_file(dir / "err.txt");
  return r;
}

TEST(UserConfig, TheFileFillsWhatTheFlagsLeaveUnsetAndFlagsWin) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(100000, 81);
  server.add("/a.bin", r);
  server.add("/b.bin", r);
  server.add("/c.bin", r);
  const std::string config = dir / "config";
  write_file(config, "# defaults\ndir = " + (dir / "from-config") + "\nstate = \"" +
                         (dir / "state.db") + "\"\nparallel = 3\n");
  auto got = fetchq_with(dir, config, {"get", server.url("/a.bin"), "--quiet"});
  ASSERT_EQ(got.rc, 0) << got.err;
  EXPECT_TRUE(file_exists(dir / "from-config/a.bin"));
  EXPECT_TRUE(file_exists(dir / "state.db"));
  // A flag wins over the file.
  got = fetchq_with(dir, config, {"get", server.url("/b.bin"), "-d", dir / "from-flag", "--quiet"});
  ASSERT_EQ(got.rc, 0) << got.err;
  EXPECT_TRUE(file_exists(dir / "from-flag/b.bin"));
  EXPECT_FALSE(file_exists(dir / "from-config/b.bin"));
  // -o names the file: the file's folder does not clash with it.
  got = fetchq_with(dir, config, {"get", server.url("/c.bin"), "-o", dir / "named.bin", "--quiet"});
  ASSERT_EQ(got.rc, 0) << got.err;
  EXPECT_TRUE(file_exists(dir / "named.bin"));
  // Both runs used the state file the config names.
  SQLite::Database db(dir / "state.db", SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM jobs WHERE status = 'completed'").getInt(), 3);
}

TEST(UserConfig, ConfigSaysWhatIsInEffectAndWhereEachValueComesFrom) {
  TempDir dir;
  const std::string config = dir / "config";
  write_file(config, "connections = 8\n\ndir = ~/models\nsocket = /nowhere/config.sock\n");
  auto shown = fetchq_with(dir, config, {"config", "--json"},
                           {"FETCHQ_SOCKET=" + (dir / "env.sock"), "HOME=" + (dir / "home")});
  ASSERT_EQ(shown.rc, 0) << shown.err;
  auto js = nlohmann::json::parse(shown.out);
  EXPECT_EQ(js["file"], config);
  EXPECT_EQ(js["found"], true);
  const auto& s = js["settings"];
  EXPECT_EQ(s["connections"]["value"], "8");
  EXPECT_EQ(s["connections"]["from"], config + ":1");
  EXPECT_EQ(s["dir"]["value"], (dir / "home") + "/models");  // ~/ is $HOME
  EXPECT_EQ(s["dir"]["from"], config + ":3");
  // The environment wins over the file.
  EXPECT_EQ(s["socket"]["value"], dir / "env.sock");
  EXPECT_EQ(s["socket"]["from"], "environment FETCHQ_SOCKET");
  EXPECT_EQ(s["parallel"]["value"], "5");
  EXPECT_EQ(s["parallel"]["from"], "default");
  // The same as lines for people.
  shown = fetchq_with(dir, config, {"config"}, {"HOME=" + (dir / "home")});
  ASSERT_EQ(shown.rc, 0) << shown.err;
  EXPECT_NE(shown.out.find("config file " + config), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("\nsocket "), std::string::npos) << shown.out;
  const auto line = shown.out.substr(shown.out.find("\nsocket ") + 1);
  EXPECT_LT(line.find("/nowhere/config.sock "), line.find(" " + config + ":4\n")) << shown.out;
  EXPECT_NE(line.find(" " + config + ":4\n"), std::string::npos) << shown.out;
  // No file is no error: every value is a default.
  shown = fetchq_with(dir, dir / "absent", {"config", "--json"});
  ASSERT_EQ(shown.rc, 0) << shown.err;
  js = nlohmann::json::parse(shown.out);
  EXPECT_EQ(js["found"], false);
  EXPECT_EQ(js["settings"]["priority"]["from"], "default");
}

TEST(UserConfig, TheSocketOfTheFileIsTheOneAskedAndEnvironmentWins) {
  TempDir dir;
  const std::string config = dir / "config";
  write_file(config, "socket = " + (dir / "from-config.sock") + "\n");
  auto r = fetchq_with(dir, config, {"stats"});
  EXPECT_EQ(r.rc, 3);
  EXPECT_NE(r.err.find(dir / "from-config.sock"), std::string::npos) << r.err;
  r = fetchq_with(dir, config, {"stats"}, {"FETCHQ_SOCKET=" + (dir / "from-env.sock")});
  EXPECT_EQ(r.rc, 3);
  EXPECT_NE(r.err.find(dir / "from-env.sock"), std::string::npos) << r.err;
  r = fetchq_with(dir, config, {"stats", "--socket", dir / "from-flag.sock"},
                  {"FETCHQ_SOCKET=" + (dir / "from-env.sock")});
  EXPECT_EQ(r.rc, 3);
  EXPECT_NE(r.err.find(dir / "from-flag.sock"), std::string::npos) << r.err;
}

TEST(UserConfig, ABadFileIsAUsageErrorThatNamesItsLine) {
  TempDir dir;
  const std::string config = dir / "config";
  write_file(config, "dir = /tmp\n# colour\ncolour = blue\n");
  for (const auto& args : std::vector<std::vector<std::string>>{{"config"}, {"list"}, {"get", "http://127.0.0.1:9/x"}}) {
    auto r = fetchq_with(dir, config, args);
    EXPECT_EQ(r.rc, 2) << args[0];
    EXPECT_NE(r.err.find(config + ":3: unknown setting 'colour'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("socket, dir, connections"), std::string::npos) << r.err;
  }
  // A value the flag would refuse is refused with the file's line.
  write_file(config, "connections = 40\n");
  auto r = fetchq_with(dir, config, {"config"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find(config + ":1: connections:"), std::string::npos) << r.err;
  r = fetchq_with(dir, config, {"get", "http://127.0.0.1:9/x", "--state", dir / "s.db"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find(config + ":1: connections:"), std::string::npos) << r.err;
  EXPECT_FALSE(file_exists(dir / "s.db"));
  // ... unless the command line gives the value itself. (A 404, not a closed port: that is
  // retried for about a minute.)
  TestServer server;
  Resource gone;
  gone.status = 404;
  server.add("/x", gone);
  write_file(config, "parallel = many\n");
  r = fetchq_with(dir, config,
                  {"get", "--parallel", "2", "--state", dir / "s.db", "-d", dir / "dl",
                   server.url("/x"), "--quiet"});
  EXPECT_EQ(r.rc, 1) << r.err;  // the job failed: the setting was taken from the command line
  EXPECT_EQ(r.err.find("parallel"), std::string::npos) << r.err;
  // A file that exists but cannot be read is not taken for an absent one.
  std::filesystem::remove(config);
  std::filesystem::create_directory(config);
  r = fetchq_with(dir, config, {"config"});
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.err.find("cannot read the config file " + config), std::string::npos) << r.err;
}

TEST(DaemonConfig, WithoutConfigFetchqdReadsItsDefaultFileWhenThereIsOne) {
  TempDir dir;
  const std::string sock = dir / "d.sock";
  // As the shipped unit runs it: ConfigurationDirectory= gives $CONFIGURATION_DIRECTORY.
  std::filesystem::create_directories(dir / "etc");
  write_file(dir / "etc/fetchqd.conf",
             "db = " + (dir / "q.db") + "\nsocket = " + sock + "\nmax-parallel = 3\n");
  Process d({bin_path("fetchqd")}, "", dir / "d.log", {"CONFIGURATION_DIRECTORY=" + (dir / "etc")});
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(sock); })) << read_file(dir / "d.log");
  auto r = run_capture({bin_path("fetchq"), "stats", "--json", "--socket", sock}, dir / "s.out",
                       dir / "s.err", std::chrono::seconds(30));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(file_exists(dir / "q.db"));
  // The ready line comes just after the socket listens.
  EXPECT_TRUE(wait_until([&] {
    return read_file(dir / "d.log").find("config " + (dir / "etc/fetchqd.conf")) != std::string::npos;
  })) << read_file(dir / "d.log");
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0);
  // An explicit --config must exist; the default file may not.
  r = run_capture({bin_path("fetchqd"), "--config", dir / "absent.conf"}, dir / "x.out",
                  dir / "x.err", std::chrono::seconds(30));
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("cannot read the config file " + (dir / "absent.conf")), std::string::npos) << r.err;
}

TEST(DaemonConfig, HelpShowsEachSettingOnceWithItsTypeAndDefaultAndFlagsMayRepeat) {
  TempDir dir;
  auto help = run_capture({bin_path("fetchqd"), "--help"}, dir / "h.out", dir / "h.err",
                          std::chrono::seconds(30));
  ASSERT_EQ(help.rc, 0) << help.err;
  EXPECT_NE(help.out.find("--max-parallel INT=5 "), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--log-level TEXT=info "), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("..."), std::string::npos) << help.out;
  // A list setting given twice keeps both; another takes its last value.
  std::filesystem::create_directories(dir / "r1");
  std::filesystem::create_directories(dir / "r2");
  const std::string sock = dir / "d.sock";
  Process d({bin_path("fetchqd"), "--db", dir / "q.db", "--socket", sock, "--download-root", dir / "r1",
             "--download-root", dir / "r2", "--max-parallel", "3", "--max-parallel", "2"},
            "", dir / "d.log");
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(sock); })) << read_file(dir / "d.log");
  // The ready line comes just after the socket listens.
  EXPECT_TRUE(wait_until([&] { return read_file(dir / "d.log").find("2 at once") != std::string::npos; }))
      << read_file(dir / "d.log");
  TestServer server;
  Resource r;
  r.body = make_body(1000, 83);
  server.add("/x.bin", r);
  for (const char* root : {"r1", "r2"}) {
    auto add = run_capture({bin_path("fetchq"), "add", server.url("/x.bin"), "-d", dir / root, "--socket", sock},
                           dir / "a.out", dir / "a.err", std::chrono::seconds(30));
    EXPECT_EQ(add.rc, 0) << root << ": " << add.err;
  }
  auto outside = run_capture({bin_path("fetchq"), "add", server.url("/x.bin"), "-d", dir.path(), "--socket", sock},
                             dir / "a.out", dir / "a.err", std::chrono::seconds(30));
  EXPECT_EQ(outside.rc, 4) << outside.err;
}

// Makes every completed job of the state file look as if it ended `days` ago.
void age_completed(const std::string& state, int days) {
  SQLite::Database db(state, SQLite::OPEN_READWRITE);
  db.exec("UPDATE jobs SET job_ended = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-" +
          std::to_string(days) + " days') WHERE status = 'completed'");
}

std::vector<std::string> sources(const std::string& state) {
  SQLite::Database db(state, SQLite::OPEN_READONLY);
  SQLite::Statement q(db, "SELECT source FROM jobs ORDER BY id");
  std::vector<std::string> out;
  while (q.executeStep()) out.push_back(q.getColumn(0).getString());
  return out;
}

TEST(CliGet, CompletedJobsOfEarlierRunsAreForgottenAfterTheRetention) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(50000, 82);
  for (const char* p : {"/old.bin", "/again.bin", "/new.bin", "/recent.bin", "/last.bin"}) server.add(p, r);
  const std::string state = dir / "state.db";
  auto get = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv{bin_path("fetchq"), "get", "-d", dir / "dl", "--state", state, "--quiet"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_capture(argv, dir / "o", dir / "e", std::chrono::seconds(60));
  };
  ASSERT_EQ(get({server.url("/old.bin"), server.url("/again.bin")}).rc, 0);
  age_completed(state, 31);
  // /again.bin is asked for again: its job is this run's, so it stays however old it is.
  auto again = get({server.url("/again.bin"), server.url("/new.bin")});
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_EQ(sources(state), (std::vector<std::string>{server.url("/again.bin"), server.url("/new.bin")}));
  // Nothing older than the retention: nothing forgotten; 0 keeps every job.
  age_completed(state, 20);
  ASSERT_EQ(get({server.url("/recent.bin")}).rc, 0);
  EXPECT_EQ(sources(state).size(), 3u);
  age_completed(state, 400);
  ASSERT_EQ(get({server.url("/recent.bin"), "--retention", "0"}).rc, 0);
  EXPECT_EQ(sources(state).size(), 3u);
  // A shorter retention forgets sooner; a bad one is a usage error.
  auto shorter = get({server.url("/last.bin"), "--retention", "1d"});
  ASSERT_EQ(shorter.rc, 0) << shorter.err;
  EXPECT_EQ(sources(state), (std::vector<std::string>{server.url("/last.bin")}));
  auto bad = get({server.url("/last.bin"), "--retention", "soon"});
  EXPECT_EQ(bad.rc, 2);
  EXPECT_NE(bad.err.find("--retention 'soon'"), std::string::npos) << bad.err;
  // Files on disk are the user's: forgetting a job never removes its file.
  EXPECT_TRUE(file_exists(dir / "dl/old.bin"));
}

}  // namespace
}  // namespace fetchq::testing
