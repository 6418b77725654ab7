// `fetchq get` as a user runs it: the real binary, killed with SIGKILL and run again.
#include <signal.h>

#include <algorithm>
#include <filesystem>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

std::vector<std::string> get_argv(const TempDir& dir, const std::vector<std::string>& urls,
                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{bin_path("fetchq"), "get"};
  argv.insert(argv.end(), urls.begin(), urls.end());
  for (const std::string& a : {std::string("-d"), dir / "dl", std::string("--state"), dir / "state.db"}) {
    argv.push_back(a);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

TEST(CliGet, KilledWithSigkillAndRunAgainItResumesWithARange) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(3 << 20, 31);
  r.rate_bytes_per_s = 1 << 20;
  server.add("/big.bin", r);
  {
    Process p(get_argv(dir, {server.url("/big.bin")}, {"--quiet"}));
    ASSERT_TRUE(wait_until([&] {
      auto s = std::filesystem::exists(dir / "dl/big.bin.part")
                   ? std::filesystem::file_size(dir / "dl/big.bin.part") : 0;
      return s > 1600000;  // past the first progress record (about a second in)
    }));
    p.signal(SIGKILL);
    EXPECT_EQ(p.wait(), 128 + SIGKILL);
  }
  EXPECT_FALSE(file_exists(dir / "dl/big.bin"));
  auto part = std::filesystem::file_size(dir / "dl/big.bin.part");
  Process again(get_argv(dir, {server.url("/big.bin")}, {"--json"}), dir / "out.json", dir / "err.txt");
  ASSERT_EQ(again.wait(), 0) << read_file(dir / "err.txt");
  EXPECT_EQ(sha256_file(dir / "dl/big.bin"), sha256_hex_of(r.body));
  EXPECT_FALSE(file_exists(dir / "dl/big.bin.part"));
  auto reqs = server.requests_for("/big.bin");
  ASSERT_EQ(reqs.size(), 2u);
  // Same boot: the run resumes past the last synced checkpoint, from the bytes the job recorded
  // as written (its progress, about once a second), never past the file's length.
  ASSERT_EQ(reqs[1].range.rfind("bytes=", 0), 0u) << reqs[1].range;
  const auto from = std::stoull(reqs[1].range.substr(6));
  EXPECT_GT(from, 0u);
  EXPECT_LE(from, part);
  auto jobs = nlohmann::json::parse(read_file(dir / "out.json"));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["status"], "completed");
  EXPECT_EQ(jobs[0]["id"], 1);  // the same job, not a second one
  EXPECT_LE(server.total_body_bytes_sent(), r.body.size() + (2 << 20));
}

TEST(CliGet, InterruptCheckpointsAndExits130) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(2 << 20, 32);
  r.rate_bytes_per_s = 512 << 10;
  server.add("/int.bin", r);
  Process p(get_argv(dir, {server.url("/int.bin")}, {"--quiet"}));
  ASSERT_TRUE(wait_until([&] { return file_exists(dir / "dl/int.bin.part"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(std::chrono::seconds(5)), 130);
  Process again(get_argv(dir, {server.url("/int.bin")}, {"--quiet"}));
  EXPECT_EQ(again.wait(), 0);
  EXPECT_EQ(sha256_file(dir / "dl/int.bin"), sha256_hex_of(r.body));
  auto reqs = server.requests_for("/int.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_NE(reqs[1].range, "");
}

TEST(CliGet, ExitCodesAndJson) {
  TempDir dir;
  TestServer server;
  Resource ok;
  ok.body = "hello";
  server.add("/ok.txt", ok);
  Resource missing;
  missing.status = 404;
  server.add("/missing", missing);
  Process a(get_argv(dir, {server.url("/ok.txt"), server.url("/missing")}, {"--json"}), dir / "a.json");
  EXPECT_EQ(a.wait(), 1);
  auto jobs = nlohmann::json::parse(read_file(dir / "a.json"));
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0]["status"], "completed");
  EXPECT_EQ(jobs[1]["status"], "error");
  EXPECT_EQ(jobs[1]["error_type"], "HTTPError(404 Not Found)");
  Process usage({bin_path("fetchq"), "get", "--no-such-flag"}, "", dir / "usage.txt");
  EXPECT_EQ(usage.wait(), 2);
  EXPECT_FALSE(read_file(dir / "usage.txt").empty());
  Process scheme({bin_path("fetchq"), "get", "ftp://127.0.0.1/x", "--state", dir / "s2.db"}, "", dir / "scheme.txt");
  EXPECT_EQ(scheme.wait(), 2);
  EXPECT_NE(read_file(dir / "scheme.txt").find("scheme"), std::string::npos);
}

// Parser messages lead somewhere: an unknown command is named with its near matches, an
// option a command does not take points to that command's help, and -c (a wget/curl habit)
// is taken with a note that resuming is automatic.
TEST(CliGet, MessagesNameTheCommandAndItsHelp) {
  TempDir dir;
  auto run = [&](std::vector<std::string> args, const std::string& name) {
    args.insert(args.begin(), bin_path("fetchq"));
    Process p(args, dir / (name + ".out"), dir / (name + ".err"));
    int rc = p.wait();
    return std::make_pair(rc, read_file(dir / (name + ".err")));
  };
  auto [rc1, lst] = run({"lst"}, "lst");
  EXPECT_EQ(rc1, 2);
  EXPECT_NE(lst.find("unknown command 'lst'; did you mean list?"), std::string::npos) << lst;
  EXPECT_NE(lst.find("get add list"), std::string::npos) << lst;
  EXPECT_EQ(std::count(lst.begin(), lst.end(), '\n'), 1) << "not one line: " << lst;
  // Numbers out of range are usage errors that say what is wanted, in one line.
  for (const auto& [args, wanted] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"show", "99999999999999999999"}, "a job id is a whole number from 1"},
           {{"show", "0"}, "a job id is a whole number from 1"},
           {{"cancel", "abc"}, "a job id is a whole number from 1"},
           {{"events", "--since", "-5"}, "--since: a seq is a whole number from 0"},
           {{"wait", "1", "--timeout", "-1"}, "--timeout: a number of seconds from 0"}}) {
    auto [rc, err] = run(args, "range");
    EXPECT_EQ(rc, 2) << args[0] << ": " << err;
    EXPECT_NE(err.find(wanted), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "not one line: " << err;
  }
  // An id with a leading zero is the decimal number, not an octal one (010 is job 10, not 8).
  {
    auto st = store::open(dir / "ids.db");
    ASSERT_TRUE(st.ok());
    std::vector<store::NewJob> jobs(10);
    for (size_t i = 0; i < jobs.size(); ++i) {
      jobs[i].request = {"http://127.0.0.1:1/f" + std::to_string(i + 1), dir / "f", {}};
    }
    st.value()->insert_jobs(jobs, "t");
  }
  for (const std::string id : {"010", "08", "+9"}) {
    Process show({bin_path("fetchq"), "show", id, "--db", dir / "ids.db", "--json"},
                 dir / "show.out", dir / "show.err");
    ASSERT_EQ(show.wait(), 0) << read_file(dir / "show.err");
    auto j = nlohmann::json::parse(read_file(dir / "show.out"), nullptr, false);
    EXPECT_EQ(j.value("id", 0), std::stoi(id)) << id;
  }
  auto [rc2, foo] = run({"foo"}, "foo");
  EXPECT_EQ(rc2, 2);
  EXPECT_NE(foo.find("unknown command 'foo'"), std::string::npos) << foo;
  EXPECT_EQ(foo.find("did you mean"), std::string::npos) << foo;
  auto [rc3, bogus] = run({"add", "--bogus", "http://127.0.0.1:1/x"}, "bogus");
  EXPECT_EQ(rc3, 2);
  EXPECT_NE(bogus.find("--bogus"), std::string::npos) << bogus;
  EXPECT_NE(bogus.find("see fetchq add --help"), std::string::npos) << bogus;

  TestServer server;
  Resource ok;
  ok.body = "hello";
  server.add("/ok.txt", ok);
  Process c(get_argv(dir, {server.url("/ok.txt")}, {"-c"}), dir / "c.out", dir / "c.err");
  EXPECT_EQ(c.wait(), 0) << read_file(dir / "c.err");
  EXPECT_NE(read_file(dir / "c.err").find("-c is not needed"), std::string::npos) << read_file(dir / "c.err");
  EXPECT_EQ(read_file(dir / "dl/ok.txt"), "hello");
}

// get -i FILE reads URLs one a line (blank and # lines skipped), '-' from standard input, and
// takes them with the ones on the command line; a JSON line is for add -i and is refused.
// A job claimed ahead behind a file that runs long is handed back to wait (a higher priority
// could come first) and runs later: one "started" line for it, not one per hand-over.
TEST(CliGet, AJobHandedBackBeforeItBeganIsAnnouncedOnce) {
  TempDir dir;
  TestServer server;
  std::vector<std::string> urls;
  Resource small;
  small.body = make_body(4000, 33);
  for (int i = 0; i < 8; ++i) {
    server.add("/s" + std::to_string(i) + ".bin", small);
    urls.push_back(server.url("/s" + std::to_string(i) + ".bin"));
  }
  Resource slow;
  slow.body = make_body(3 << 20, 34);
  slow.rate_bytes_per_s = 1 << 20;  // three seconds, past the two after which waiting jobs go back
  server.add("/slow.bin", slow);
  // Long enough to be seen running again by the display, which looks four times a second.
  Resource w;
  w.body = make_body(512 << 10, 35);
  w.rate_bytes_per_s = 1 << 20;
  server.add("/w.bin", w);
  urls.push_back(server.url("/slow.bin"));
  urls.push_back(server.url("/w.bin"));
  auto r = run_capture(get_argv(dir, urls, {"-j", "1"}), dir / "out.txt", dir / "err.txt",
                       std::chrono::seconds(60));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(sha256_file(dir / "dl/w.bin"), sha256_hex_of(w.body));
  const std::string line = "started " + server.url("/w.bin") + "\n";
  size_t lines = 0;
  for (size_t at = r.err.find(line); at != std::string::npos; at = r.err.find(line, at + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << r.err;
}

TEST(CliGet, InputFileAndStandardInput) {
  TempDir dir;
  TestServer server;
  for (const char* name : {"/a.txt", "/b.txt", "/c.txt"}) {
    Resource r;
    r.body = std::string("body of ") + name;
    server.add(name, r);
  }
  write_file(dir / "urls.txt", "# the list\n" + server.url("/a.txt") + "\n\n  " + server.url("/b.txt") + "  \n");
  Process p(get_argv(dir, {server.url("/c.txt")}, {"-i", dir / "urls.txt", "-q"}), dir / "p.out", dir / "p.err");
  EXPECT_EQ(p.wait(), 0) << read_file(dir / "p.err");
  EXPECT_EQ(read_file(dir / "dl/a.txt"), "body of /a.txt");
  EXPECT_EQ(read_file(dir / "dl/b.txt"), "body of /b.txt");
  EXPECT_EQ(read_file(dir / "dl/c.txt"), "body of /c.txt");

  // A list saved by an editor that starts it with a UTF-8 byte-order mark and ends lines in CRLF.
  write_file(dir / "bom.txt", "\xEF\xBB\xBF" + server.url("/a.txt") + "\r\n");
  Process bom({bin_path("fetchq"), "get", "-i", dir / "bom.txt", "-q", "-d", dir / "dl3", "--state",
               dir / "bom.db"},
              dir / "bom.out", dir / "bom.err");
  EXPECT_EQ(bom.wait(), 0) << read_file(dir / "bom.err");
  EXPECT_EQ(read_file(dir / "dl3/a.txt"), "body of /a.txt");

  // Standard input, through a shell so the list can be piped in.
  auto piped = run_capture({"/bin/sh", "-c",
                            "printf '%s\\n' \"$0\" | \"$1\" get -i - -q -d \"$2\" --state \"$3\"",
                            server.url("/a.txt"), bin_path("fetchq"), dir / "dl2", dir / "s2.db"},
                           dir / "s.out", dir / "s.err", std::chrono::seconds(30));
  EXPECT_EQ(piped.rc, 0) << piped.err;
  EXPECT_EQ(read_file(dir / "dl2/a.txt"), "body of /a.txt");

  write_file(dir / "json.txt", "{\"source\": \"" + server.url("/a.txt") + "\"}\n");
  Process j(get_argv(dir, {}, {"-i", dir / "json.txt"}), dir / "j.out", dir / "j.err");
  EXPECT_EQ(j.wait(), 2);
  EXPECT_NE(read_file(dir / "j.err").find("json.txt:1"), std::string::npos) << read_file(dir / "j.err");
  Process none({bin_path("fetchq"), "get", "--state", dir / "s3.db"}, dir / "n.out", dir / "n.err");
  EXPECT_EQ(none.wait(), 2);
  EXPECT_NE(read_file(dir / "n.err").find("-i FILE"), std::string::npos) << read_file(dir / "n.err");
}

}  // namespace
}  // namespace fetchq::testing
