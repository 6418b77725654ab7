// End-to-end tests of fetchqd as users run it: the real daemon driven by the real fetchq binary.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

uint64_t size_or_zero(const std::string& path) {
  std::error_code ec;
  auto s = fs::file_size(path, ec);
  return ec ? 0 : s;
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    out.push_back(json::parse(line, nullptr, false));
  }
  return out;
}

// The start of "bytes=N-", or -1 when the header is absent or malformed.
int64_t range_start(const std::string& range) {
  if (range.rfind("bytes=", 0) != 0) return -1;
  try {
    return std::stoll(range.substr(6));
  } catch (...) {
    return -1;
  }
}

// The GET requests for `path` (a HEAD probe, if the client sends one, carries no Range).
std::vector<RequestLog> gets_for(const TestServer& server, std::string_view path) {
  std::vector<RequestLog> out;
  for (auto& r : server.requests_for(path)) {
    if (r.method == "GET") out.push_back(r);
  }
  return out;
}

// One fetchqd in a TempDir, and the fetchq command line pointed at it.
class Daemon {
 public:
  explicit Daemon(const TempDir& dir, int max_parallel = 2) : dir_(dir), max_parallel_(max_parallel) {}

  std::string socket() const { return dir_ / "fetchqd.sock"; }
  std::string db() const { return dir_ / "fetchq.db"; }
  std::string err_path() const { return dir_ / ("fetchqd." + std::to_string(starts_) + ".err"); }

  std::vector<std::string> argv(const std::string& db, const std::string& sock) const {
    return {bin_path("fetchqd"),  "--db",
            db,                   "--socket",
            sock,                 "--download-root",
            dir_.path(),          "--max-parallel",
            std::to_string(max_parallel_), "--checkpoint-interval-ms",
            "200"};
  }

  // Starts fetchqd and waits until `fetchq stats` answers; false if that took over 10 s.
  bool start() {
    ++starts_;
    proc_ = std::make_unique<Process>(argv(db(), socket()), "", err_path());
    return wait_until(
        [&] {
          if (!proc_->running()) return false;
          return cli({"stats"}, 2s).rc == 0;
        },
        10s, 20ms);
  }

  Process& process() { return *proc_; }
  std::string log() const { return read_file(err_path()); }

  // Runs `fetchq ARGS... --socket SOCK` (no --socket when `with_socket` is false).
  CliResult cli(std::vector<std::string> args, std::chrono::milliseconds timeout = 20s,
                bool with_socket = true) {
    int n = ++runs_;
    std::string out = dir_ / ("cli." + std::to_string(n) + ".out");
    std::string err = dir_ / ("cli." + std::to_string(n) + ".err");
    std::vector<std::string> argv{bin_path("fetchq")};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_socket) {
      argv.push_back("--socket");
      argv.push_back(socket());
    }
    return run_capture(argv, out, err, timeout);
  }

  // `show ID --json` parsed; a null json when the command failed.
  json show(int64_t id) {
    auto r = cli({"show", std::to_string(id), "--json"});
    if (r.rc != 0) return json();
    return json::parse(r.out, nullptr, false);
  }

  std::string status_of(int64_t id) {
    json j = show(id);
    return j.is_object() ? j.value("status", std::string()) : std::string();
  }

  // Adds one URL with `add URL -d DIR --json [extra...]` and returns its id (0 on failure).
  int64_t add(const std::string& url, const std::string& dir, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"add", url, "-d", dir, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = cli(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    if (r.rc != 0) return 0;
    json j = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    return j.is_object() ? j.value("id", int64_t{0}) : 0;
  }

  std::vector<json> events(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"events", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = cli(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    return json_lines(r.out);
  }

 private:
  const TempDir& dir_;
  int max_parallel_;
  int starts_ = 0;
  int runs_ = 0;
  std::unique_ptr<Process> proc_;
};

// A resource whose transfer starts and then stalls, so its job stays running.
Resource stalling() {
  Resource r;
  r.body = make_body(1 << 20, 4);
  r.stall_after = 1000;
  return r;
}

// A resource answered with `status` (404, 410, ...).
Resource answering(int status) {
  Resource r;
  r.status = status;
  return r;
}

std::string make_dl(const TempDir& dir) {
  fs::create_directories(dir / "dl");
  return dir / "dl";
}

// ---- raw control socket, for the protocol abuse test

// Reads one line within `timeout`. "" with *closed set when the peer closed (or reset) first;
// "" with *closed clear on a timeout.
std::string read_line(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr) {
  if (closed) *closed = false;
  std::string line;
  auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "";
    pollfd p{fd, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return "";
    char c;
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (closed) *closed = true;
      return "";
    }
    if (c == '\n') return line;
    line.push_back(c);
  }
}

// Sends `request` on a fresh connection and returns the parsed answer (null json on none).
json call_once(const std::string& sock, const std::string& request, std::chrono::milliseconds timeout = 2s) {
  int fd = connect_unix(sock);
  if (fd < 0) return json();
  json out;
  if (send_all(fd, request + "\n")) out = json::parse(read_line(fd, timeout), nullptr, false);
  ::close(fd);
  return out.is_discarded() ? json() : out;
}

int error_code(const json& answer) {
  if (!answer.is_object() || !answer.contains("error") || !answer["error"].is_object()) return 0;
  return answer["error"].value("code", 0);
}

// ---- the tests

TEST(Daemon, SubmitListShowPruneAndWaitExitStatus) {
  TempDir dir;
  TestServer server;
  Resource a;
  a.body = "hello from a\n";
  server.add("/a.txt", a);
  Resource b;
  b.body = make_body(200000, 7);
  server.add("/b.bin", b);
  Resource missing = answering(404);
  server.add("/missing.bin", missing);
  std::string dl = make_dl(dir);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();

  auto r = d.cli({"add", server.url("/a.txt"), "-d", dl, "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json added = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(added.is_object()) << r.out;
  EXPECT_GE(added.value("id", 0), 1);
  EXPECT_EQ(added["source"], server.url("/a.txt"));
  EXPECT_EQ(added["priority"], 10);  // the documented default
  int64_t ida = added["id"];
  int64_t idb = d.add(server.url("/b.bin"), dl);
  ASSERT_GT(idb, ida);  // ids grow with submission

  auto w = d.cli({"wait", std::to_string(ida), std::to_string(idb), "--timeout", "20"});
  EXPECT_EQ(w.rc, 0) << w.err;

  auto l = d.cli({"list", "--json"});
  ASSERT_EQ(l.rc, 0) << l.err;
  json list = json::parse(l.out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << l.out;
  ASSERT_EQ(list.size(), 2u);
  for (auto& j : list) EXPECT_EQ(j["status"], "completed") << j.dump();

  json sa = d.show(ida);
  ASSERT_TRUE(sa.is_object());
  // Every documented field is present, even when null.
  for (const char* k : {"id", "source", "dest", "priority", "status", "download_path", "job_started", "job_ended",
                        "bytes", "total_bytes", "error_type", "error", "cancelled", "attempts",
                        "has_access_token"}) {
    EXPECT_TRUE(sa.contains(k)) << k;
  }
  EXPECT_EQ(sa["download_path"], dl + "/a.txt");
  EXPECT_EQ(sa["bytes"], a.body.size());
  EXPECT_TRUE(sa["job_ended"].is_string());
  EXPECT_EQ(read_file(dl + "/a.txt"), a.body);
  EXPECT_EQ(sha256_file(dl + "/b.bin"), sha256_hex_of(b.body));

  // A job ending in error makes `wait` exit 1.
  int64_t idm = d.add(server.url("/missing.bin"), dl);
  ASSERT_GT(idm, 0);
  auto wm = d.cli({"wait", std::to_string(idm), "--timeout", "20"});
  EXPECT_EQ(wm.rc, 1) << wm.err;
  EXPECT_FALSE(wm.err.empty());
  json sm = d.show(idm);
  EXPECT_EQ(sm["status"], "error");
  EXPECT_EQ(sm["error_type"], "HTTPError(404 Not Found)");

  // Unknown job: show fails with a message, not a crash.
  auto unknown = d.cli({"show", "999999", "--json"});
  EXPECT_NE(unknown.rc, 0);
  EXPECT_FALSE(unknown.err.empty());

  auto p = d.cli({"prune"});
  EXPECT_EQ(p.rc, 0) << p.err;
  auto after = d.cli({"list", "--json"});
  ASSERT_EQ(after.rc, 0) << after.err;
  json left = json::parse(after.out, nullptr, false);
  ASSERT_TRUE(left.is_array()) << after.out;
  EXPECT_TRUE(left.empty()) << after.out;  // all three ended, so all three went
  EXPECT_EQ(read_file(dl + "/a.txt"), a.body);  // prune drops jobs, never finished files
}

// A join on several jobs must not answer while one of them, seen ended earlier, was put back
// to waiting by `retry` and still runs.
TEST(Daemon, JoinSeesAJobThatWasRetriedWhileItWaited) {
  TempDir dir;
  TestServer server;
  Resource missing = answering(404);
  server.add("/late.bin", missing);
  Resource slow;
  slow.body = make_body(75000, 3);
  slow.rate_bytes_per_s = 50000;  // about 1.5 s
  server.add("/slow.bin", slow);
  std::string dl = make_dl(dir);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t idl = d.add(server.url("/late.bin"), dl);
  ASSERT_GT(idl, 0);
  ASSERT_TRUE(wait_until([&] { return d.status_of(idl) == "error"; }, 10s, 20ms));
  int64_t ids = d.add(server.url("/slow.bin"), dl);
  ASSERT_GT(ids, 0);
  // One join for the whole test: it sees late.bin ended and slow.bin running first.
  json answer;
  std::thread joiner([&] {
    json req{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "join"},
             {"params", {{"ids", {idl, ids}}, {"timeout", 30}}}};
    answer = call_once(d.socket(), req.dump(), 40s);
  });
  std::this_thread::sleep_for(300ms);
  Resource late;
  late.body = make_body(300000, 4);
  late.rate_bytes_per_s = 100000;  // about 3 s: still running when slow.bin is done
  server.add("/late.bin", late);
  EXPECT_EQ(d.cli({"retry", std::to_string(idl)}).rc, 0);
  joiner.join();
  ASSERT_TRUE(answer.is_object()) << answer.dump();
  EXPECT_EQ(answer["result"]["done"], true) << answer.dump();
  EXPECT_EQ(d.status_of(ids), "completed");
  EXPECT_EQ(d.status_of(idl), "completed");  // not "running": the answer waited for it
  EXPECT_EQ(sha256_file(dl + "/late.bin"), sha256_hex_of(late.body));
}

TEST(Daemon, BatchStartsInPriorityThenIdOrder) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  // One running slot: the start order is exactly the scheduling order.
  Daemon d(dir, 1);
  ASSERT_TRUE(d.start()) << d.log();
  std::vector<int> prios{5, 1, 5, 3, 10, 1};
  std::string lines;
  for (size_t i = 0; i < prios.size(); ++i) {
    std::string path = "/p" + std::to_string(i) + ".bin";
    Resource r;
    r.body = make_body(20000, static_cast<uint32_t>(100 + i));
    server.add(path, r);
    json j{{"source", server.url(path)}, {"dest", dl + "/"}, {"priority", prios[i]}};
    lines += j.dump() + "\n";
  }
  write_file(dir / "batch.jsonl", lines);
  auto r = d.cli({"add", "-i", dir / "batch.jsonl", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  json added = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(added.is_array()) << r.out;
  ASSERT_EQ(added.size(), prios.size());
  std::vector<std::pair<int, int64_t>> expected;
  for (size_t i = 0; i < prios.size(); ++i) {
    EXPECT_EQ(added[i]["priority"], prios[i]);
    expected.emplace_back(prios[i], added[i]["id"].get<int64_t>());
  }
  std::sort(expected.begin(), expected.end());
  auto w = d.cli({"wait", "--timeout", "20"});
  ASSERT_EQ(w.rc, 0) << w.err;

  std::vector<int64_t> started;
  int64_t last_seq = 0;
  for (auto& e : d.events()) {
    ASSERT_TRUE(e.is_object());
    EXPECT_GT(e["seq"].get<int64_t>(), last_seq);  // seq only grows
    last_seq = e["seq"];
    if (e["type"] == "download_started") started.push_back(e["job_id"]);
  }
  std::vector<int64_t> want;
  for (auto& [p, id] : expected) want.push_back(id);
  EXPECT_EQ(started, want);
}

TEST(Daemon, CancelRemovesPartAndPauseResumeUsesRange) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource slow;
  slow.body = make_body(2 << 20, 41);
  slow.rate_bytes_per_s = 256 << 10;
  server.add("/cancel.bin", slow);
  Resource pr;
  pr.body = make_body(1 << 20, 42);
  pr.rate_bytes_per_s = 512 << 10;
  server.add("/pause.bin", pr);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();

  // Cancel while bytes are flowing.
  int64_t idc = d.add(server.url("/cancel.bin"), dl);
  ASSERT_GT(idc, 0);
  std::string cpart = dl + "/cancel.bin.part";
  ASSERT_TRUE(wait_until([&] { return size_or_zero(cpart) > 50000; }, 10s));
  auto c = d.cli({"cancel", std::to_string(idc)});
  EXPECT_EQ(c.rc, 0) << c.err;
  EXPECT_TRUE(wait_until([&] { return d.status_of(idc) == "cancelled"; }, 5s, 50ms));
  EXPECT_TRUE(wait_until([&] { return !file_exists(cpart); }, 5s)) << "the .part of a cancelled job stays";
  EXPECT_FALSE(file_exists(dl + "/cancel.bin"));
  json sc = d.show(idc);
  EXPECT_EQ(sc["cancelled"], true);
  auto evs = d.events({"--job", std::to_string(idc)});
  bool saw_cancel = false;
  for (auto& e : evs) {
    EXPECT_EQ(e["job_id"], idc);  // --job filters
    saw_cancel = saw_cancel || e["type"] == "download_cancelled";
  }
  EXPECT_TRUE(saw_cancel);

  // Pause mid-transfer, then resume: the rest comes with a Range.
  int64_t idp = d.add(server.url("/pause.bin"), dl);
  ASSERT_GT(idp, 0);
  std::string ppart = dl + "/pause.bin.part";
  ASSERT_TRUE(wait_until([&] { return size_or_zero(ppart) > 100000; }, 10s));
  auto p = d.cli({"pause", std::to_string(idp)});
  EXPECT_EQ(p.rc, 0) << p.err;
  EXPECT_TRUE(wait_until([&] { return d.status_of(idp) == "paused"; }, 5s, 50ms));
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(d.status_of(idp), "paused");  // it stays parked
  EXPECT_TRUE(file_exists(ppart));        // and keeps its bytes
  EXPECT_FALSE(file_exists(dl + "/pause.bin"));
  auto rs = d.cli({"resume", std::to_string(idp)});
  EXPECT_EQ(rs.rc, 0) << rs.err;
  auto w = d.cli({"wait", std::to_string(idp), "--timeout", "20"});
  EXPECT_EQ(w.rc, 0) << w.err;
  EXPECT_EQ(sha256_file(dl + "/pause.bin"), sha256_hex_of(pr.body));
  EXPECT_FALSE(file_exists(ppart));
  auto reqs = gets_for(server, "/pause.bin");
  ASSERT_GE(reqs.size(), 2u);
  EXPECT_GT(range_start(reqs[1].range), 0) << "second request's Range: '" << reqs[1].range << "'";
}

TEST(Daemon, EventsFollowPrintsEventsAppendedLater) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource first;
  first.body = "first";
  server.add("/first.txt", first);
  Resource second;
  second.body = make_body(100000, 5);
  server.add("/second.bin", second);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t id1 = d.add(server.url("/first.txt"), dl);
  ASSERT_EQ(d.cli({"wait", std::to_string(id1), "--timeout", "20"}).rc, 0);

  Process follow({bin_path("fetchq"), "events", "--follow", "--json", "--socket", d.socket()},
                 dir / "follow.out", dir / "follow.err");
  auto complete_seen = [&](int64_t id) {
    for (auto& e : json_lines(read_file(dir / "follow.out"))) {
      if (e.is_object() && e["type"] == "download_complete" && e["job_id"] == id) return true;
    }
    return false;
  };
  // Seeing the old job's completion proves the subscription is live before the new job exists.
  ASSERT_TRUE(wait_until([&] { return complete_seen(id1); }, 10s)) << read_file(dir / "follow.err");
  int64_t id2 = d.add(server.url("/second.bin"), dl);
  ASSERT_GT(id2, id1);
  EXPECT_TRUE(wait_until([&] { return complete_seen(id2); }, 15s))
      << "stdout:\n" << read_file(dir / "follow.out") << "stderr:\n" << read_file(dir / "follow.err");
  EXPECT_TRUE(follow.running());  // --follow does not stop at the end of the backlog
  follow.signal(SIGKILL);
  follow.wait(5s);
  for (auto& e : json_lines(read_file(dir / "follow.out"))) {
    ASSERT_TRUE(e.is_object());  // --json: JSON only on stdout
    EXPECT_TRUE(e.contains("seq") && e.contains("ts") && e.contains("job_id") && e.contains("type"));
  }
}

// `fetchq events` without --json is for people: one short line per event with no URL, and
// --type keeps only the types asked for, over the socket and from --db alike.
TEST(Daemon, EventsForPeopleAreShortAndFilteredByType) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource ok;
  ok.body = make_body(300000, 3);
  server.add("/a-rather-long-name-for-a-file-0001-of-0128.bin", ok);
  Resource missing = answering(404);
  server.add("/missing.bin", missing);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t id1 = d.add(server.url("/a-rather-long-name-for-a-file-0001-of-0128.bin") + "?sig=secretish", dl);
  int64_t id2 = d.add(server.url("/missing.bin"), dl);
  d.cli({"wait", std::to_string(id1), std::to_string(id2), "--timeout", "20"});
  ASSERT_EQ(d.status_of(id1), "completed");

  auto all = d.cli({"events"});
  ASSERT_EQ(all.rc, 0) << all.err;
  auto lines = [](const std::string& out) {
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  };
  const auto shown = lines(all.out);
  ASSERT_GE(shown.size(), 3u) << all.out;
  bool complete = false, error = false;
  for (const auto& l : shown) {
    EXPECT_LE(l.size(), 170u) << l;
    // Only an error's message may name a URL (the one it failed on).
    if (l.find("  error  ") == std::string::npos) {
      EXPECT_EQ(l.find("http://"), std::string::npos) << l;
    }
    EXPECT_EQ(l.find("sig="), std::string::npos) << l;
    complete = complete || (l.find("#" + std::to_string(id1) + "  complete") != std::string::npos &&
                            l.find("0128.bin") != std::string::npos);
    error = error || l.find("#" + std::to_string(id2) + "  error") != std::string::npos;
  }
  EXPECT_TRUE(complete) << all.out;
  EXPECT_TRUE(error) << all.out;

  for (std::vector<std::string> where : {std::vector<std::string>{}, std::vector<std::string>{"--db", d.db()}}) {
    std::vector<std::string> args{"events", "--json", "--type", "error,download_complete"};
    args.insert(args.end(), where.begin(), where.end());
    auto typed = d.cli(args);
    ASSERT_EQ(typed.rc, 0) << typed.err;
    std::set<std::string> types;
    for (auto& e : json_lines(typed.out)) types.insert(e.value("type", std::string()));
    EXPECT_EQ(types, (std::set<std::string>{"download_error", "download_complete"})) << typed.out;
  }
  auto bad = d.cli({"events", "--type", "finished"});
  EXPECT_EQ(bad.rc, 2);
  EXPECT_NE(bad.err.find("finished"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.out, "");
}

// `fetchq list` for people: a running job's rate from the daemon, several statuses at once,
// an order, a limit, failures counted by cause, and a Sum row.
TEST(Daemon, ListShowsRatesSeveralStatusesAndCountsFailures) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource slow;
  slow.body = make_body(4 << 20, 9);
  slow.rate_bytes_per_s = 256 << 10;
  server.add("/slow.bin", slow);
  Resource missing = answering(404);
  server.add("/missing.bin", missing);
  Resource gone = answering(410);
  server.add("/gone.bin", gone);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t running = d.add(server.url("/slow.bin"), dl);
  int64_t m1 = d.add(server.url("/missing.bin"), dl + "/one");
  int64_t m2 = d.add(server.url("/missing.bin"), dl + "/two");
  int64_t g = d.add(server.url("/gone.bin"), dl);
  int64_t paused = d.add(server.url("/slow.bin"), dl + "/later");
  ASSERT_EQ(d.cli({"pause", std::to_string(paused)}).rc, 0);
  d.cli({"wait", std::to_string(m1), std::to_string(m2), std::to_string(g), "--timeout", "20"});

  // The rate shows once the daemon has measured a window (2 s) of the running job.
  std::string table;
  ASSERT_TRUE(wait_until([&] {
    auto r = d.cli({"list", "--status", "running"});
    table = r.out;
    return r.rc == 0 && table.find("KiB/s") != std::string::npos;
  }, 15s, 500ms)) << table;
  EXPECT_NE(table.find("Sum: 1 job"), std::string::npos) << table;

  auto two = d.cli({"list", "--status", "running,paused", "--json"});
  ASSERT_EQ(two.rc, 0) << two.err;
  std::set<int64_t> ids;
  for (auto& j : json::parse(two.out)) ids.insert(j["id"].get<int64_t>());
  EXPECT_EQ(ids, (std::set<int64_t>{running, paused})) << two.out;

  auto newest = d.cli({"list", "--sort", "newest", "--limit", "2", "--json"});
  ASSERT_EQ(newest.rc, 0) << newest.err;
  json nj = json::parse(newest.out);
  ASSERT_EQ(nj.size(), 2u) << newest.out;
  EXPECT_EQ(nj[0]["id"], paused);
  EXPECT_EQ(nj[1]["id"], g);

  auto errors = d.cli({"list", "--errors", "--json"});
  ASSERT_EQ(errors.rc, 0) << errors.err;
  json ej = json::parse(errors.out);
  EXPECT_EQ(ej.value("HTTPError(404 Not Found)", 0), 2) << errors.out;
  EXPECT_EQ(ej.value("HTTPError(410 Gone)", 0), 1) << errors.out;
  auto failed = d.cli({"list", "--status", "error"});
  EXPECT_NE(failed.out.find("ERROR"), std::string::npos) << failed.out;
  EXPECT_NE(failed.out.find("HTTPError(404 Not Found)"), std::string::npos) << failed.out;
  EXPECT_EQ(d.cli({"list", "--status", "running,finished"}).rc, 2);
  EXPECT_EQ(d.cli({"list", "--sort", "size"}).rc, 2);
  d.cli({"cancel", "--all"});
}

// pause, resume and retry act on every job they fit with --all, or on the statuses named.
TEST(Daemon, PauseResumeAndRetryAll) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource slow = stalling();
  server.add("/slow.bin", slow);
  Resource missing = answering(404);
  server.add("/missing.bin", missing);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t failed = d.add(server.url("/missing.bin"), dl);
  d.cli({"wait", std::to_string(failed), "--timeout", "20"});
  ASSERT_EQ(d.status_of(failed), "error");
  std::vector<int64_t> slow_ids;  // running and waiting ones
  for (int i = 0; i < 3; ++i) slow_ids.push_back(d.add(server.url("/slow.bin"), dl + "/s" + std::to_string(i)));

  auto p = d.cli({"pause", "--all", "--json"});
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_EQ(json::parse(p.out).size(), 3u) << p.out;
  for (auto id : slow_ids) EXPECT_EQ(d.status_of(id), "paused") << id;
  EXPECT_EQ(d.status_of(failed), "error");

  EXPECT_EQ(d.cli({"resume", "--status", "error"}).rc, 2);  // resume fits paused jobs only
  EXPECT_EQ(d.cli({"resume", "--all", "3"}).rc, 2);
  auto r = d.cli({"resume", "--status", "paused"});
  ASSERT_EQ(r.rc, 0) << r.err;
  for (auto id : slow_ids) EXPECT_NE(d.status_of(id), "paused") << id;

  auto t = d.cli({"retry", "--all", "--json"});
  ASSERT_EQ(t.rc, 0) << t.err;
  json tj = json::parse(t.out);
  ASSERT_EQ(tj.size(), 1u) << t.out;
  EXPECT_EQ(tj[0]["id"], failed);
  EXPECT_EQ(d.cli({"cancel", "--all"}).rc, 0);
  auto none = d.cli({"pause", "--all"});
  EXPECT_EQ(none.rc, 0) << none.err;
  EXPECT_NE(none.out.find("no job"), std::string::npos) << none.out;
}

// Adding what a live job already fetches returns that job (exit 0, a note, duplicate_of)
// instead of a second job that fails on the same file; within a batch too; --allow-duplicate
// adds it anyway.
TEST(Daemon, AddingALiveJobsUrlAndDestinationAgainReturnsThatJob) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource slow = stalling();
  server.add("/a.bin", slow);
  server.add("/b.bin", slow);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t first = d.add(server.url("/a.bin"), dl);
  ASSERT_GT(first, 0);

  auto again = d.cli({"add", server.url("/a.bin"), "-d", dl, "--json"});
  ASSERT_EQ(again.rc, 0) << again.err;
  json aj = json::parse(again.out);
  EXPECT_EQ(aj["id"], first) << again.out;
  EXPECT_EQ(aj["duplicate_of"], first) << again.out;
  EXPECT_NE(again.err.find("already queued"), std::string::npos) << again.err;

  // A batch: one live duplicate, one new URL given twice.
  write_file(dir / "urls.txt", server.url("/a.bin") + "\n" + server.url("/b.bin") + "\n" + server.url("/b.bin") + "\n");
  auto batch = d.cli({"add", "-i", dir / "urls.txt", "-d", dl, "--json"});
  ASSERT_EQ(batch.rc, 0) << batch.err;
  json bj = json::parse(batch.out);
  ASSERT_EQ(bj.size(), 3u) << batch.out;
  EXPECT_EQ(bj[0]["id"], first);
  EXPECT_FALSE(bj[1].contains("duplicate_of")) << batch.out;
  EXPECT_EQ(bj[2]["id"], bj[1]["id"]);
  EXPECT_EQ(bj[2]["duplicate_of"], bj[1]["id"]);

  auto all = d.cli({"list", "--json"});
  EXPECT_EQ(json::parse(all.out).size(), 2u) << all.out;

  auto forced = d.cli({"add", server.url("/a.bin"), "-d", dl + "/other/", "--json"});
  ASSERT_EQ(forced.rc, 0) << forced.err;
  EXPECT_FALSE(json::parse(forced.out).contains("duplicate_of")) << "another destination is another job";
  auto allowed = d.cli({"add", server.url("/a.bin"), "-d", dl, "--allow-duplicate", "--json"});
  ASSERT_EQ(allowed.rc, 0) << allowed.err;
  EXPECT_NE(json::parse(allowed.out)["id"], first);
  // Once the job ended, the same URL may be added again (if-exists decides about the file).
  d.cli({"cancel", "--all"});
  auto after = d.cli({"add", server.url("/a.bin"), "-d", dl, "--json"});
  ASSERT_EQ(after.rc, 0) << after.err;
  EXPECT_FALSE(json::parse(after.out).contains("duplicate_of")) << after.out;
  d.cli({"cancel", "--all"});
}

// prune takes only the ended statuses named, and only jobs that ended longer ago than
// --older-than; a running job or a bad age is a usage error.
TEST(Daemon, PruneByStatusAndAge) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource ok;
  ok.body = "fine";
  server.add("/ok.txt", ok);
  Resource missing = answering(404);
  server.add("/missing.bin", missing);
  Resource slow = stalling();
  server.add("/slow.bin", slow);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t done = d.add(server.url("/ok.txt"), dl);
  int64_t failed = d.add(server.url("/missing.bin"), dl);
  d.cli({"wait", std::to_string(done), std::to_string(failed), "--timeout", "20"});
  int64_t cancelled = d.add(server.url("/slow.bin"), dl);
  ASSERT_EQ(d.cli({"cancel", std::to_string(cancelled)}).rc, 0);
  int64_t running = d.add(server.url("/slow.bin"), dl + "/still/");

  auto by_status = d.cli({"prune", "--status", "error", "--json"});
  ASSERT_EQ(by_status.rc, 0) << by_status.err;
  EXPECT_EQ(json::parse(by_status.out)["removed"], 1) << by_status.out;
  EXPECT_EQ(d.status_of(failed), "") << "pruned: show finds no such job";
  EXPECT_EQ(d.status_of(done), "completed");

  auto young = d.cli({"prune", "--older-than", "1h", "--json"});
  ASSERT_EQ(young.rc, 0) << young.err;
  EXPECT_EQ(json::parse(young.out)["removed"], 0) << "they ended seconds ago";

  auto rest = d.cli({"prune", "--older-than", "0s", "--json"});
  ASSERT_EQ(rest.rc, 0) << rest.err;
  EXPECT_EQ(json::parse(rest.out)["removed"], 2) << rest.out;
  auto left = json::parse(d.cli({"list", "--json"}).out);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0]["id"], running);

  EXPECT_EQ(d.cli({"prune", "--status", "running"}).rc, 2);
  EXPECT_EQ(d.cli({"prune", "--status", ","}).rc, 2);  // never "every status"
  EXPECT_EQ(d.cli({"prune", "--older-than", "7x"}).rc, 2);
  EXPECT_EQ(d.cli({"prune", "--older-than", "d"}).rc, 2);
  d.cli({"cancel", "--all"});
}

TEST(Daemon, KillNineMidDownloadThenRestartResumesWithRange) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource r;
  r.body = make_body(3 << 20, 51);
  r.rate_bytes_per_s = 1 << 20;
  server.add("/big.bin", r);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t id = d.add(server.url("/big.bin"), dl);
  ASSERT_GT(id, 0);
  // Wait for a checkpoint in the database, not only bytes in the file: only those survive -9.
  ASSERT_TRUE(wait_until(
      [&] {
        json j = d.show(id);
        return j.is_object() && j["bytes"].is_number() && j["bytes"].get<int64_t>() > 300000;
      },
      10s, 50ms));
  d.process().signal(SIGKILL);
  ASSERT_EQ(d.process().wait(5s), 128 + SIGKILL);
  EXPECT_FALSE(file_exists(dl + "/big.bin"));
  EXPECT_TRUE(file_exists(dl + "/big.bin.part"));

  ASSERT_TRUE(d.start()) << d.log();  // same flags, same database; a stale socket file is left over
  auto w = d.cli({"wait", std::to_string(id), "--timeout", "20"});
  EXPECT_EQ(w.rc, 0) << w.err;
  EXPECT_EQ(d.status_of(id), "completed");
  EXPECT_EQ(sha256_file(dl + "/big.bin"), sha256_hex_of(r.body));
  EXPECT_FALSE(file_exists(dl + "/big.bin.part"));
  auto reqs = gets_for(server, "/big.bin");
  ASSERT_GE(reqs.size(), 2u);
  EXPECT_GT(range_start(reqs.back().range), 0) << "Range: '" << reqs.back().range << "'";
  EXPECT_FALSE(reqs.back().if_range.empty());  // guarded, per SPEC "Resume"
  // Resuming means not fetching the whole file twice.
  EXPECT_LT(server.total_body_bytes_sent(), 2 * r.body.size());
}

TEST(Daemon, SigtermExitsZeroWithinTwoSecondsAndNextStartResumes) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource r;
  r.body = make_body(3 << 20, 61);
  r.rate_bytes_per_s = 1 << 20;
  server.add("/term.bin", r);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t id = d.add(server.url("/term.bin"), dl);
  ASSERT_GT(id, 0);
  std::string part = dl + "/term.bin.part";
  ASSERT_TRUE(wait_until([&] { return size_or_zero(part) > 300000; }, 10s));
  auto t0 = std::chrono::steady_clock::now();
  d.process().signal(SIGTERM);
  int rc = d.process().wait(2s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_EQ(rc, 0) << "exit status after SIGTERM (-1: still running after 2 s), took " << took.count()
                   << " ms\n" << d.log();
  if (rc != 0) {
    d.process().signal(SIGKILL);
    d.process().wait(5s);
  }
  EXPECT_FALSE(file_exists(dl + "/term.bin"));
  ASSERT_TRUE(file_exists(part));
  auto part_size = size_or_zero(part);
  EXPECT_FALSE(file_exists(d.socket()));  // a clean stop removes its socket

  ASSERT_TRUE(d.start()) << d.log();
  auto w = d.cli({"wait", std::to_string(id), "--timeout", "20"});
  EXPECT_EQ(w.rc, 0) << w.err;
  EXPECT_EQ(sha256_file(dl + "/term.bin"), sha256_hex_of(r.body));
  auto reqs = gets_for(server, "/term.bin");
  ASSERT_GE(reqs.size(), 2u);
  // SIGTERM checkpoints every running job, so nothing on disk is fetched again.
  EXPECT_EQ(reqs.back().range, "bytes=" + std::to_string(part_size) + "-");
}

TEST(Daemon, ProtocolAbuseGetsErrorsAndOthersAreStillServed) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  const std::string sock = d.socket();
  const std::string stats = R"({"jsonrpc":"2.0","id":77,"method":"stats","params":{}})";
  // Another client's stats must come back within a second whatever the others do.
  auto stats_quickly = [&] {
    auto t0 = std::chrono::steady_clock::now();
    json a = call_once(sock, stats, 1s);
    bool fast = std::chrono::steady_clock::now() - t0 < 1s;
    return fast && a.is_object() && a.contains("result") && a["id"] == 77;
  };

  json garbage = call_once(sock, "this is not json {");
  EXPECT_EQ(error_code(garbage), -32700) << garbage.dump();
  json unknown = call_once(sock, R"({"jsonrpc":"2.0","id":2,"method":"no_such_method","params":{}})");
  EXPECT_EQ(error_code(unknown), -32601) << unknown.dump();
  EXPECT_EQ(unknown["id"], 2);
  json bad = call_once(sock, R"({"jsonrpc":"2.0","id":3,"method":"get_job","params":{"id":"x"}})");
  EXPECT_EQ(error_code(bad), -32602) << bad.dump();
  json nojob = call_once(sock, R"({"jsonrpc":"2.0","id":4,"method":"get_job","params":{"id":424242}})");
  EXPECT_GE(error_code(nojob), 1) << nojob.dump();
  EXPECT_FALSE(nojob["error"].value("message", std::string()).empty());

  // A bad request does not end its own connection either: the next line is answered.
  {
    int fd = connect_unix(sock);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "][\n" + stats + "\n"));
    json first = json::parse(read_line(fd, 2s), nullptr, false);
    json second = json::parse(read_line(fd, 2s), nullptr, false);
    EXPECT_EQ(error_code(first), -32700) << first.dump();
    EXPECT_TRUE(second.is_object() && second.contains("result")) << second.dump();
    ::close(fd);
  }

  // Half a request, held open for the rest of the test.
  int half = connect_unix(sock);
  ASSERT_GE(half, 0);
  ASSERT_TRUE(send_all(half, R"({"jsonrpc":"2.0","id":9,"meth)"));
  EXPECT_TRUE(stats_quickly());

  // A 5 MB line, sent from another thread while this one keeps asking for stats.
  int big = connect_unix(sock);
  ASSERT_GE(big, 0);
  std::atomic<bool> sent_all{false};
  std::thread flood([&] {
    std::string line = R"({"jsonrpc":"2.0","id":5,"method":"stats","params":{"pad":")";
    line += std::string(5 << 20, 'a');
    line += "\"}}\n";
    // Non-blocking with a deadline: a daemon that stops reading must not hang the test.
    ::fcntl(big, F_SETFL, ::fcntl(big, F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    auto end = std::chrono::steady_clock::now() + 10s;
    while (off < line.size() && std::chrono::steady_clock::now() < end) {
      ssize_t n = ::send(big, line.data() + off, line.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        pollfd p{big, POLLOUT, 0};
        ::poll(&p, 1, 50);
      } else {
        break;  // EPIPE / ECONNRESET: the daemon gave up on it, which is allowed
      }
    }
    sent_all = off == line.size();
  });
  int fast_answers = 0;
  for (int i = 0; i < 5; ++i) fast_answers += stats_quickly();
  flood.join();
  EXPECT_EQ(fast_answers, 5);
  {
    ::fcntl(big, F_SETFL, ::fcntl(big, F_GETFL) & ~O_NONBLOCK);
    bool closed = false;
    std::string answer = read_line(big, 5s, &closed);
    json a = json::parse(answer, nullptr, false);
    // Either an error answer or the connection dropped; never a result, never silence.
    bool error_answer = !a.is_discarded() && a.is_object() && a.contains("error");
    EXPECT_TRUE(error_answer || closed) << "sent all: " << sent_all << ", answer: '" << answer.substr(0, 200)
                                        << "'";
    EXPECT_FALSE(!a.is_discarded() && a.is_object() && a.contains("result"));
    ::close(big);
  }

  EXPECT_TRUE(stats_quickly());
  // The half-sent request got no answer (there is nothing to answer yet) and its line is still open.
  {
    pollfd p{half, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "revents " << p.revents;
  }
  ::close(half);
  EXPECT_TRUE(d.process().running()) << d.log();
  EXPECT_EQ(d.cli({"stats"}).rc, 0);
}

TEST(Daemon, RefusedSubmissionsAndRedirectToFileScheme) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource redir;
  redir.redirect_to = "file:///etc/passwd";
  server.add("/redir", redir);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();

  for (const std::string url : {"file:///etc/passwd", "ftp://x/y", "gopher://x/", "not-a-url"}) {
    auto r = d.cli({"add", url, "-d", dl});
    EXPECT_NE(r.rc, 0) << url;
    EXPECT_NE(r.rc, 3) << url << ": the daemon was reachable";
    EXPECT_FALSE(r.err.empty()) << url;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << url << ": one line, got: " << r.err;
    if (url.find("://") != std::string::npos) {
      EXPECT_NE(r.err.find("scheme"), std::string::npos) << url << ": " << r.err;
    }
  }
  std::string outside = "/tmp/outside-root-" + std::to_string(::getpid());
  auto o = d.cli({"add", server.url("/redir"), "-d", outside});
  EXPECT_NE(o.rc, 0);
  EXPECT_NE(o.err.find("outside"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("(" + dir.path() + ")"), std::string::npos) << "the roots are named: " << o.err;
  EXPECT_FALSE(file_exists(outside));
  auto l = d.cli({"list", "--json"});
  ASSERT_EQ(l.rc, 0) << l.err;
  EXPECT_EQ(json::parse(l.out, nullptr, false), json::array()) << "refused jobs were queued: " << l.out;
  EXPECT_TRUE(server.requests().empty());

  int64_t id = d.add(server.url("/redir"), dl);
  ASSERT_GT(id, 0);
  auto w = d.cli({"wait", std::to_string(id), "--timeout", "20"});
  EXPECT_EQ(w.rc, 1) << w.err;
  json j = d.show(id);
  EXPECT_EQ(j["status"], "error") << j.dump();
  EXPECT_EQ(j["bytes"], 0);
  // Nothing written: no file, and no .part holding anything (least of all /etc/passwd).
  uint64_t written = 0;
  for (auto& e : fs::recursive_directory_iterator(dl)) {
    if (e.is_regular_file()) written += e.file_size();
  }
  EXPECT_EQ(written, 0u);
  EXPECT_FALSE(file_exists(dl + "/redir"));
}

TEST(Daemon, ExistingDestinationIsKeptAndRenameMakesNameDot1) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource r;
  r.body = "the server's version\n";
  server.add("/report.txt", r);
  const std::string mine = "my own file, keep it\n";
  write_file(dl + "/report.txt", mine);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();

  int64_t id = d.add(server.url("/report.txt"), dl);
  ASSERT_GT(id, 0);
  auto w = d.cli({"wait", std::to_string(id), "--timeout", "20"});
  EXPECT_EQ(w.rc, 1) << w.err;
  json j = d.show(id);
  EXPECT_EQ(j["status"], "error");
  EXPECT_EQ(j["error_type"], "DestinationExists") << j.dump();
  // The message names the flag that decides it.
  EXPECT_NE(j["error"].get<std::string>().find("--if-exists"), std::string::npos) << j.dump();
  EXPECT_EQ(read_file(dl + "/report.txt"), mine);

  int64_t id2 = d.add(server.url("/report.txt"), dl, {"--if-exists", "rename"});
  ASSERT_GT(id2, 0);
  auto w2 = d.cli({"wait", std::to_string(id2), "--timeout", "20"});
  EXPECT_EQ(w2.rc, 0) << w2.err;
  json j2 = d.show(id2);
  EXPECT_EQ(j2["status"], "completed") << j2.dump();
  EXPECT_EQ(j2["download_path"], dl + "/report.1.txt");
  EXPECT_EQ(read_file(dl + "/report.1.txt"), r.body);
  EXPECT_EQ(read_file(dl + "/report.txt"), mine);
}

TEST(Daemon, ListFromDbWhileRunningAndAfterStopAndFileModes) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource r;
  r.body = "db\n";
  server.add("/db.txt", r);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();
  int64_t id = d.add(server.url("/db.txt"), dl);
  ASSERT_GT(id, 0);
  ASSERT_EQ(d.cli({"wait", std::to_string(id), "--timeout", "20"}).rc, 0);

  struct stat st {};
  ASSERT_EQ(::stat(d.db().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << std::oct << (st.st_mode & 0777);  // it may hold tokens
  ASSERT_EQ(::stat(d.socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u) << std::oct << (st.st_mode & 0777);

  auto check_list = [&](const char* when) {
    auto l = d.cli({"list", "--db", d.db(), "--json"}, 20s, false);
    ASSERT_EQ(l.rc, 0) << when << ": " << l.err;
    json list = json::parse(l.out, nullptr, false);
    ASSERT_TRUE(list.is_array()) << when << ": " << l.out;
    ASSERT_EQ(list.size(), 1u) << when;
    EXPECT_EQ(list[0]["id"], id) << when;
    EXPECT_EQ(list[0]["status"], "completed") << when;
    EXPECT_EQ(list[0]["download_path"], dl + "/db.txt") << when;
  };
  check_list("while fetchqd runs");

  d.process().signal(SIGTERM);
  ASSERT_EQ(d.process().wait(5s), 0) << d.log();
  check_list("after fetchqd stopped");
  auto s = d.cli({"show", std::to_string(id), "--db", d.db(), "--json"}, 20s, false);
  EXPECT_EQ(s.rc, 0) << s.err;
  EXPECT_EQ(json::parse(s.out, nullptr, false).value("status", std::string()), "completed");
  // With no daemon, socket commands exit 3.
  EXPECT_EQ(d.cli({"stats"}).rc, 3);
}

TEST(Daemon, SecondDaemonOnSameDatabaseIsRefused) {
  TempDir dir;
  TestServer server;
  std::string dl = make_dl(dir);
  Resource r;
  r.body = "still here\n";
  server.add("/after.txt", r);
  Daemon d(dir);
  ASSERT_TRUE(d.start()) << d.log();

  // Its own socket, so only the database can be the reason for refusal.
  Process second(d.argv(d.db(), dir / "second.sock"), "", dir / "second.err");
  int rc = second.wait(10s);
  EXPECT_NE(rc, 0);
  EXPECT_NE(rc, -1) << "the second fetchqd is still running";
  std::string err = read_file(dir / "second.err");
  EXPECT_NE(err.find("database"), std::string::npos) << err;
  EXPECT_NE(err.find("in use"), std::string::npos) << err;
  EXPECT_FALSE(file_exists(dir / "second.sock"));

  // Same database and same socket: refused too, and the first one's socket is left alone.
  Process third(d.argv(d.db(), d.socket()), "", dir / "third.err");
  int rc3 = third.wait(10s);
  EXPECT_NE(rc3, 0);
  EXPECT_NE(rc3, -1);
  EXPECT_FALSE(read_file(dir / "third.err").empty());

  EXPECT_TRUE(d.process().running());
  EXPECT_EQ(d.cli({"stats"}).rc, 0);
  int64_t id = d.add(server.url("/after.txt"), dl);
  ASSERT_GT(id, 0);
  EXPECT_EQ(d.cli({"wait", std::to_string(id), "--timeout", "20"}).rc, 0);
  EXPECT_EQ(read_file(dl + "/after.txt"), r.body);
}

}  // namespace
}  // namespace fetchq::testing
