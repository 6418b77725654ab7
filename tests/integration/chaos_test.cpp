// Chaos test: the real fetchqd, killed with SIGKILL at random moments while 24 downloads are in
// flight (the bigger ones in segments), restarted each time with the same flags; in the end every
// job completes exactly once, every file is byte for byte the server's, and nothing else is left
// on disk.
//
// Knobs (environment): FETCHQ_CHAOS_SEED (default 20261129), FETCHQ_CHAOS_CYCLES (default 16,
// at least 10 is what the test is about), FETCHQ_CHAOS_SCALE (default 1.0; multiplies the
// resource sizes, e.g. 0.5 under sanitizer builds).
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// fetchqd in `root` (db, socket) with the test's own files (logs, CLI output, the batch) in
// `root/t`, so that the final walk can tell the daemon's writes from the test's.
class ChaosDaemon {
 public:
  explicit ChaosDaemon(const std::string& root) : root_(root), own_(root + "/t") {
    fs::create_directories(own_);
  }

  std::string socket() const { return root_ + "/fetchqd.sock"; }
  std::string db() const { return root_ + "/fetchq.db"; }
  std::string own() const { return own_; }
  std::string err_path() const { return own_ + "/fetchqd." + std::to_string(starts_) + ".err"; }
  int starts() const { return starts_; }

  std::vector<std::string> argv() const {
    return {bin_path("fetchqd"), "--db", db(), "--socket", socket(), "--download-root", root_,
            "--max-parallel", "4", "--checkpoint-interval-ms", "100",
            // The 2 MiB and 6 MiB files come in segments, four connections each: the kills land
            // on segment maps as well as on single transfers.
            "--segment-threshold", "1048576", "--segment-min-size", "262144", "--connections", "4"};
  }

  // Starts fetchqd and waits until `fetchq stats` answers; false if that took over 15 s.
  bool start() {
    ++starts_;
    proc_ = std::make_unique<Process>(argv(), "", err_path());
    return wait_until(
        [&] {
          if (!proc_->running()) return false;
          return cli({"stats"}, 5s).rc == 0;
        },
        15s, 20ms);
  }

  // Why start() failed: the daemon's exit status (127: the binary could not be run) and log.
  std::string start_failure() {
    std::string why = proc_ && !proc_->running()
                          ? "fetchqd exited with status " + std::to_string(proc_->wait(0ms))
                          : std::string("fetchqd runs but `fetchq stats` did not answer");
    return why + "\n" + log();
  }

  Process& process() { return *proc_; }
  std::string log() const { return read_file(err_path()); }

  CliResult cli(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s,
                bool with_socket = true) {
    int n = ++runs_;
    std::string out = own_ + "/cli." + std::to_string(n) + ".out";
    std::string err = own_ + "/cli." + std::to_string(n) + ".err";
    std::vector<std::string> argv{bin_path("fetchq")};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_socket) {
      argv.push_back("--socket");
      argv.push_back(socket());
    }
    return run_capture(argv, out, err, timeout);
  }

  // `fetchq list --db DB --json`, without a socket; a null json when it failed.
  json list_from_db(CliResult* raw = nullptr) {
    auto r = cli({"list", "--db", db(), "--json"}, 30s, false);
    if (raw) *raw = r;
    if (r.rc != 0) return json();
    json j = json::parse(r.out, nullptr, false);
    return j.is_discarded() ? json() : j;
  }

 private:
  std::string root_;
  std::string own_;
  int starts_ = 0;
  int runs_ = 0;
  std::unique_ptr<Process> proc_;
};

struct Planned {
  std::string url_path;
  std::string body;
  std::string sha;
  std::string expected_path;  // the final file's absolute path
  bool folder_dest = false;
};

TEST(Chaos, RepeatedKillNineWhileDownloadingEndsWithEveryFileWholeOnce) {
  const auto t_start = std::chrono::steady_clock::now();
  const uint32_t seed = static_cast<uint32_t>(std::stoul(env_or("FETCHQ_CHAOS_SEED", "20261129")));
  const int cycles = std::max(1, std::stoi(env_or("FETCHQ_CHAOS_CYCLES", "16")));
  const double scale = std::max(0.01, std::stod(env_or("FETCHQ_CHAOS_SCALE", "1.0")));
  std::cout << "[chaos] seed " << seed << " (FETCHQ_CHAOS_SEED), cycles " << cycles << ", scale "
            << scale << std::endl;
  std::mt19937 rng(seed);

  TempDir dir;
  const std::string root = dir.path();
  const std::string dl = root + "/dl";
  fs::create_directories(dl);
  TestServer server;

  // 24 resources: 8 x 16 KiB, 8 x 512 KiB, 6 x 2 MiB, 2 x 6 MiB, interleaved so that big and
  // small ones are scheduled side by side. Throttled ones stay in flight across kills.
  struct Kind {
    size_t size;
    uint64_t rate;  // 0: full speed
  };
  auto scaled = [&](size_t n) { return std::max<size_t>(1024, static_cast<size_t>(n * scale)); };
  std::vector<Kind> kinds;
  for (int i = 0; i < 8; ++i) kinds.push_back({scaled(16 << 10), 0});
  for (int i = 0; i < 8; ++i) kinds.push_back({scaled(512 << 10), i % 2 ? 0u : 2'000'000u});
  // These come over four connections (segments), each at a quarter of the rate: together
  // 4 or 2 MB/s, so the kills still find them running.
  for (int i = 0; i < 6; ++i)
    kinds.push_back({scaled(2 << 20), i % 3 == 0 ? 1'000'000u : 500'000u});
  for (int i = 0; i < 2; ++i) kinds.push_back({scaled(6 << 20), 500'000u});
  // A fixed interleaving (independent of the seed): 6 MiB early, 2 MiB spread out.
  const std::vector<int> order{22, 0,  16, 8,  17, 1, 9,  23, 18, 2,  10, 3,
                               19, 11, 4,  12, 20, 5, 13, 6,  21, 14, 7,  15};
  ASSERT_EQ(order.size(), 24u);

  // Content-Disposition names for some folder-dest resources: (index, header, expected name).
  const std::map<int, std::pair<std::string, std::string>> disposition{
      {2, {"attachment; filename=\"cd-report-2.bin\"", "cd-report-2.bin"}},
      {6,
       {"attachment; filename=\"fallback-6.bin\"; filename*=UTF-8''star%20name-6.bin",
        "star name-6.bin"}},
      {10, {"inline; filename=plain-10.dat", "plain-10.dat"}},
      {16, {"attachment; filename=\"cd-big-16.bin\"", "cd-big-16.bin"}},
  };

  std::vector<Planned> plan;
  uint64_t total_size = 0;
  std::string batch;
  for (int i = 0; i < 24; ++i) {
    const Kind& k = kinds[static_cast<size_t>(order[static_cast<size_t>(i)])];
    Planned p;
    p.url_path = "/res/r" + std::to_string(i) + ".bin";
    p.body = make_body(k.size, 1000 + static_cast<uint32_t>(i));
    p.sha = sha256_hex_of(p.body);
    p.folder_dest = i % 2 == 0;
    Resource r;
    r.body = p.body;
    r.rate_bytes_per_s = k.rate;
    std::string name = "r" + std::to_string(i) + ".bin";
    if (auto it = disposition.find(i); it != disposition.end()) {
      EXPECT_TRUE(p.folder_dest);
      r.content_disposition = it->second.first;
      name = it->second.second;
    }
    p.expected_path = p.folder_dest ? dl + "/" + name : dl + "/f" + std::to_string(i) + ".bin";
    server.add(p.url_path, r);
    json line{{"source", server.url(p.url_path)},
              {"dest", p.folder_dest ? dl + "/" : p.expected_path}};
    batch += line.dump() + "\n";
    total_size += p.body.size();
    plan.push_back(std::move(p));
  }
  {
    std::set<std::string> names;
    for (auto& p : plan) names.insert(p.expected_path);
    ASSERT_EQ(names.size(), plan.size());
  }

  ChaosDaemon d(root);
  const std::string batch_path = d.own() + "/batch.jsonl";
  write_file(batch_path, batch);
  ASSERT_TRUE(d.start()) << d.start_failure();
  auto added = d.cli({"add", "-i", batch_path, "--json"});
  ASSERT_EQ(added.rc, 0) << added.err;
  json added_json = json::parse(added.out, nullptr, false);
  ASSERT_TRUE(added_json.is_array()) << added.out;
  ASSERT_EQ(added_json.size(), 24u) << added.out;
  std::map<int64_t, size_t> plan_of_id;  // job id -> index in plan
  for (size_t i = 0; i < added_json.size(); ++i) {
    int64_t id = added_json[i].value("id", int64_t{0});
    EXPECT_EQ(added_json[i]["source"], server.url(plan[i].url_path));
    plan_of_id[id] = i;
  }
  ASSERT_EQ(plan_of_id.size(), 24u) << "ids not unique: " << added.out;

  // SHA-256 of a file, remembered by (inode, size, mtime): files only grow whole once, and the
  // test's self-contained SHA-256 is slow in unoptimized builds.
  std::map<std::string, std::pair<std::string, std::string>> hash_cache;  // path -> (stamp, sha)
  auto file_sha = [&](const std::string& path) -> std::string {
    struct stat sb {};
    if (::stat(path.c_str(), &sb) != 0) return "";
    std::string stamp = std::to_string(sb.st_ino) + ":" + std::to_string(sb.st_size) + ":" +
                        std::to_string(sb.st_mtim.tv_sec) + "." +
                        std::to_string(sb.st_mtim.tv_nsec);
    auto it = hash_cache.find(path);
    if (it != hash_cache.end() && it->second.first == stamp) return it->second.second;
    std::string sha = sha256_file(path);
    hash_cache[path] = {stamp, sha};
    return sha;
  };

  // While the daemon is down: the database is readable without it, a file without .part is
  // always whole, and a job recorded completed has its whole file in place.
  std::set<int64_t> reported;  // jobs already reported in a bad state, so each shows up once
  auto check_while_down = [&](int cycle, int* running_at_kill, int* completed_at_kill) {
    CliResult raw;
    json list = d.list_from_db(&raw);
    ASSERT_TRUE(list.is_array()) << "cycle " << cycle << ": list --db failed, rc " << raw.rc << ": "
                                 << raw.err << raw.out;
    ASSERT_EQ(list.size(), 24u) << "cycle " << cycle << ": " << raw.out;
    *running_at_kill = 0;
    *completed_at_kill = 0;
    for (auto& j : list) {
      std::string st = j.value("status", std::string());
      // The server never fails, so no job may end in error (or anything else) on the way.
      if (!(st == "waiting" || st == "running" || st == "completed") &&
          reported.insert(j.value("id", int64_t{0})).second) {
        ADD_FAILURE() << "after kill " << cycle << ": job " << j["id"] << " is " << st << ": "
                      << j.dump();
      }
      *running_at_kill += st == "running";
      *completed_at_kill += st == "completed";
      auto it = plan_of_id.find(j.value("id", int64_t{0}));
      ASSERT_NE(it, plan_of_id.end()) << j.dump();
      const Planned& p = plan[it->second];
      if (st == "completed") {
        EXPECT_EQ(file_sha(p.expected_path), p.sha)
            << "cycle " << cycle << ": job " << j["id"]
            << " recorded completed but its file is not whole: " << j.dump();
      }
    }
    for (auto& p : plan) {
      if (file_exists(p.expected_path)) {
        EXPECT_EQ(file_sha(p.expected_path), p.sha) << "cycle " << cycle << ": " << p.expected_path
                                                    << " exists without .part but is not whole";
      }
    }
  };

  int kills = 0;
  int kills_with_running = 0;
  std::ostringstream cycle_log;
  std::uniform_int_distribution<int> pause_ms(50, 400);
  for (int c = 1; c <= cycles; ++c) {
    int ms = pause_ms(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    ASSERT_TRUE(d.process().running()) << "cycle " << c << ": fetchqd ended on its own\n"
                                       << d.log();
    d.process().signal(SIGKILL);
    ASSERT_EQ(d.process().wait(10s), 128 + SIGKILL) << "cycle " << c;
    ++kills;
    // Every cycle, not only every third: it also tells whether the kill hit running downloads.
    int running = -1, completed = -1;
    auto t_down = std::chrono::steady_clock::now();
    check_while_down(c, &running, &completed);
    if (::testing::Test::HasFatalFailure()) return;
    kills_with_running += running > 0;
    auto t_restart = std::chrono::steady_clock::now();
    ASSERT_TRUE(d.start()) << "cycle " << c << ": restart failed: " << d.start_failure();
    auto ms_since = [](std::chrono::steady_clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - t)
          .count();
    };
    cycle_log << "  cycle " << c << ": slept " << ms << " ms, at kill: " << running << " running, "
              << completed << " completed; checks while down " << (t_restart - t_down) / 1ms
              << " ms, restart until stats answers " << ms_since(t_restart) << " ms\n";
  }
  std::cout << "[chaos] cycles:\n" << cycle_log.str() << std::flush;
  const double chaos_secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  const auto t_wait = std::chrono::steady_clock::now();
  auto w = d.cli({"wait", "--timeout", "120"}, 180s);
  const double wait_secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_wait).count();
  EXPECT_EQ(w.rc, 0) << "wait: " << w.err << w.out << "\nlast daemon log:\n" << d.log();

  // Every job completed exactly once, ids 1..24, every file whole and where it was expected.
  CliResult raw;
  json list = d.list_from_db(&raw);
  ASSERT_TRUE(list.is_array()) << raw.rc << " " << raw.err << raw.out;
  EXPECT_EQ(list.size(), 24u) << raw.out;
  std::multiset<int64_t> ids;
  for (auto& j : list) {
    int64_t id = j.value("id", int64_t{0});
    ids.insert(id);
    EXPECT_EQ(j["status"], "completed") << j.dump();
    if (j["status"] != "completed") {
      auto ev =
          d.cli({"events", "--db", d.db(), "--job", std::to_string(id), "--json"}, 30s, false);
      ADD_FAILURE() << "events of job " << id << " (rc " << ev.rc << "):\n" << ev.out << ev.err;
    }
    auto it = plan_of_id.find(id);
    if (it == plan_of_id.end()) {
      ADD_FAILURE() << "unknown job " << j.dump();
      continue;
    }
    const Planned& p = plan[it->second];
    EXPECT_EQ(j["source"], server.url(p.url_path)) << j.dump();
    EXPECT_EQ(j["download_path"], p.expected_path) << j.dump();
    EXPECT_EQ(j["bytes"], p.body.size()) << j.dump();
    EXPECT_EQ(j["total_bytes"], p.body.size()) << j.dump();
    EXPECT_EQ(file_sha(p.expected_path), p.sha) << p.expected_path << " " << j.dump();
  }
  std::multiset<int64_t> want_ids;
  for (int64_t i = 1; i <= 24; ++i) want_ids.insert(i);
  EXPECT_EQ(ids, want_ids);

  // The download folder holds exactly the 24 files and no .part; nothing else was written
  // outside it but the database (with its WAL, shared memory and lock files) and the socket.
  size_t files_in_dl = 0;
  std::vector<std::string> parts, unexpected;
  std::set<std::string> expected_paths;
  for (auto& p : plan) expected_paths.insert(p.expected_path);
  for (auto& e : fs::recursive_directory_iterator(root)) {
    const std::string path = e.path().string();
    const std::string name = e.path().filename().string();
    if (name.size() > 5 && name.substr(name.size() - 5) == ".part") parts.push_back(path);
    if (path == dl || path == d.own()) continue;
    if (path.rfind(dl + "/", 0) == 0) {
      if (e.is_regular_file()) {
        ++files_in_dl;
        if (!expected_paths.count(path)) unexpected.push_back(path);
      } else {
        unexpected.push_back(path + " (not a regular file)");
      }
      continue;
    }
    if (path.rfind(d.own() + "/", 0) == 0) continue;  // the test's own logs and CLI output
    const std::set<std::string> daemon_files{d.db(),           d.db() + "-wal",
                                             d.db() + "-shm",  d.db() + "-journal",
                                             d.db() + ".lock", d.socket()};
    if (!daemon_files.count(path)) unexpected.push_back(path);
  }
  EXPECT_TRUE(parts.empty()) << ".part files left: " << ::testing::PrintToString(parts);
  EXPECT_TRUE(unexpected.empty()) << "unexpected entries: " << ::testing::PrintToString(unexpected);
  EXPECT_EQ(files_in_dl, 24u);

  // Sanitizer builds: a report from any fetchqd or fetchq run (their stderr is in t/) fails the
  // test.
  for (auto& e : fs::directory_iterator(d.own())) {
    const std::string name = e.path().filename().string();
    if (name.size() < 4 || name.substr(name.size() - 4) != ".err") continue;
    const std::string text = read_file(e.path().string());
    for (const char* mark : {"Sanitizer", "runtime error:"}) {
      auto at = text.find(mark);
      if (at != std::string::npos) {
        ADD_FAILURE() << name << " holds a sanitizer report:\n"
                      << text.substr(at > 200 ? at - 200 : 0, 4000);
        break;
      }
    }
  }

  // FETCHQ_CHAOS_KEEP=DIR: on failure, keep the database, the download folder and the logs.
  if (const char* keep = std::getenv("FETCHQ_CHAOS_KEEP"); keep && *keep && HasFailure()) {
    std::error_code ec;
    fs::create_directories(keep, ec);
    for (const std::string& f : {d.db(), d.db() + "-wal", d.db() + "-shm", dl, d.own()}) {
      std::error_code one;
      if (fs::exists(f, one)) {
        fs::copy(f, std::string(keep) + "/" + fs::path(f).filename().string(),
                 fs::copy_options::recursive | fs::copy_options::overwrite_existing, one);
      }
      if (one && !ec) ec = one;
    }
    std::cout << "[chaos] kept the database, dl/ and t/ in " << keep
              << (ec ? " (" + ec.message() + ")" : "") << std::endl;
  }

  const uint64_t sent = server.total_body_bytes_sent();
  const double waste = total_size ? static_cast<double>(sent) / static_cast<double>(total_size) : 0;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::cout << "[chaos] kill cycles: " << kills << " (" << kills_with_running
            << " with downloads running), daemon starts: " << d.starts() << "\n"
            << "[chaos] body bytes sent " << sent << " / file bytes " << total_size
            << " = waste ratio " << waste << "\n"
            << "[chaos] wall time " << secs << " s (add + kill cycles " << chaos_secs
            << " s, final wait " << wait_secs << " s)" << std::endl;
  RecordProperty("kill_cycles", kills);
  RecordProperty("waste_ratio", std::to_string(waste));
  RecordProperty("wall_time_s", std::to_string(secs));
  EXPECT_GE(kills_with_running, 1) << "no kill hit a running download; the test proved little";
  // Segments ask for bounded ranges ("bytes=A-B"); a resume over one connection asks "bytes=A-".
  int segment_asks = 0;
  for (const auto& rq : server.requests()) {
    segment_asks += rq.range.rfind("bytes=", 0) == 0 && rq.range.back() != '-';
  }
  EXPECT_GT(segment_asks, 0) << "no file came in segments";
  std::cout << "[chaos] ranges asked by segments: " << segment_asks << std::endl;
}

}  // namespace
}  // namespace fetchq::testing
