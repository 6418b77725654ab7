// The queue end to end against a real HTTP server on 127.0.0.1: names, errors, callbacks,
// cancel, pause, events and ordering.
#include <SQLiteCpp/SQLiteCpp.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "integration/helpers.h"

namespace fetchq::testing {
namespace {

class QueueTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  std::string dl() {
    std::filesystem::create_directories(dir_ / "dl");
    return dir_ / "dl";
  }
  // Twelve short transfers (20 kB at 2 MB/s, 10 ms each: two at once would overlap at the
  // server), run to their end: the queue then claims jobs ahead (ClaimAhead).
  void run_short_transfers(DownloadQueue& q, uint32_t seed) {
    std::vector<DownloadRequest> smalls;
    for (uint32_t i = 0; i < 12; ++i) {
      Resource r;
      r.body = make_body(20000, seed + i);
      r.rate_bytes_per_s = 2000000;
      const std::string path = "/short" + std::to_string(seed + i);
      server_.add(path, r);
      smalls.push_back({server_.url(path), dl(), {}});
    }
    ASSERT_TRUE(q.download_batch(smalls).ok());
    ASSERT_TRUE(q.join(std::chrono::seconds(20)));
  }
};

TEST_F(QueueTest, FolderDownloadTakesTheContentDispositionNameAndBytesMatch) {
  Resource r;
  r.body = make_body(300000);
  r.content_disposition = "attachment; filename=\"weights.bin\"";
  server_.add("/files/x123", r);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/files/x123"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto done = q->id_to_job(job.id);
  ASSERT_EQ(done->status, JobStatus::kCompleted) << done->error.value_or("");
  EXPECT_EQ(done->download_path.value_or(""), dl() + "/weights.bin");
  EXPECT_EQ(sha256_file(dl() + "/weights.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(done->bytes, 300000);
  EXPECT_EQ(done->total_bytes, 300000);
  EXPECT_FALSE(file_exists(dl() + "/weights.bin.part"));
  auto reqs = server_.requests_for("/files/x123");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].accept_encoding, "identity");
  EXPECT_EQ(reqs[0].user_agent.rfind("fetchq/", 0), 0u) << reqs[0].user_agent;
  EXPECT_EQ(reqs[0].range, "");
}

TEST_F(QueueTest, FilenameStarWinsAndUrlNameIsTheFallback) {
  Resource a;
  a.body = "aaa";
  a.content_disposition = "attachment; filename=\"plain.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt";
  server_.add("/a", a);
  Resource b;
  b.body = "bbb";
  server_.add("/dir/from%20url.txt", b);
  auto q = open_queue(fast_options(dir_));
  auto ja = submit(*q, server_.url("/a"), dl());
  auto jb = submit(*q, server_.url("/dir/from%20url.txt?x=1"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(ja.id)->download_path.value_or(""), dl() + "/\xE2\x82\xAC rates.txt");
  EXPECT_EQ(q->id_to_job(jb.id)->download_path.value_or(""), dl() + "/from url.txt");
  EXPECT_EQ(read_file(dl() + "/from url.txt"), "bbb");
}

TEST_F(QueueTest, UnsafeHeaderNamesNeverLeaveTheFolder) {
  const std::vector<std::string> names = {
      "../evil", "..\\evil", "sub/evil", "sub\\evil", "C:\\evil", "C:evil", "/evil", ".", "..",
      "", "bad\x01name", "bad\nname", std::string(300, 'n')};
  auto q = open_queue(fast_options(dir_));
  std::vector<std::pair<int64_t, std::string>> jobs;
  for (size_t i = 0; i < names.size(); ++i) {
    Resource r;
    r.body = "payload " + std::to_string(i);
    std::string header_name = names[i];
    // Control characters cannot travel in a header line; send them percent-encoded.
    if (header_name.find_first_of("\x01\n") != std::string::npos) {
      std::string enc;
      for (unsigned char c : header_name) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", c);
        enc += (c < 0x20) ? std::string(buf) : std::string(1, static_cast<char>(c));
      }
      r.content_disposition = "attachment; filename*=UTF-8''" + enc;
    } else {
      std::string quoted;
      for (char c : header_name) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      r.content_disposition = "attachment; filename=\"" + quoted + "\"";
    }
    std::string path = "/case" + std::to_string(i) + "/fallback.bin";
    server_.add(path, r);
    std::string dest = dir_ / ("d" + std::to_string(i));
    std::filesystem::create_directories(dest);
    jobs.push_back({submit(*q, server_.url(path), dest).id, dest});
  }
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto j = q->id_to_job(jobs[i].first);
    SCOPED_TRACE("header name #" + std::to_string(i));
    ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
    EXPECT_EQ(j->download_path.value_or(""), jobs[i].second + "/fallback.bin");
    EXPECT_EQ(read_file(jobs[i].second + "/fallback.bin"), "payload " + std::to_string(i));
  }
  // Nothing was written beside the per-case folders.
  for (auto& e : std::filesystem::directory_iterator(dir_.path())) {
    std::string n = e.path().filename().string();
    EXPECT_TRUE(n.rfind("d", 0) == 0 || n.rfind("queue.db", 0) == 0) << n;
  }
}

TEST_F(QueueTest, NotFoundEndsInErrorWithOneErrorEvent) {
  Resource r;
  r.status = 404;
  server_.add("/missing.bin", r);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/missing.bin"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "HTTPError(404 Not Found)");
  EXPECT_NE(j->error.value_or("").find("/missing.bin"), std::string::npos);
  auto ev = job_events(*q, job.id);
  EXPECT_EQ(count_type(ev, "download_error"), 1u);
  EXPECT_EQ(count_type(ev, "download_complete"), 0u);
  EXPECT_EQ(server_.requests_for("/missing.bin").size(), 1u);  // a lasting failure: no retry
  EXPECT_FALSE(file_exists(dl() + "/missing.bin"));
  EXPECT_FALSE(file_exists(dl() + "/missing.bin.part"));
}

// join on several ids keeps its place between changes; it must still see a job it passed as
// ended that was retried meanwhile.
TEST_F(QueueTest, JoinOnIdsSeesAJobRetriedAfterItWasPassed) {
  Resource missing;
  missing.status = 404;
  server_.add("/late.bin", missing);
  Resource slow;
  slow.body = make_body(75000, 3);
  slow.rate_bytes_per_s = 50000;  // about 1.5 s
  server_.add("/slow.bin", slow);
  auto q = open_queue(fast_options(dir_));
  auto late = submit(*q, server_.url("/late.bin"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(10), {late.id}));
  ASSERT_EQ(q->id_to_job(late.id)->status, JobStatus::kError);
  auto slow_job = submit(*q, server_.url("/slow.bin"), dl());
  std::atomic<bool> joined{false};
  std::thread joiner([&] { joined = q->join(std::chrono::seconds(30), {late.id, slow_job.id}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the join has passed late.bin
  Resource again;
  again.body = make_body(300000, 4);
  again.rate_bytes_per_s = 100000;  // about 3 s: still running when slow.bin is done
  server_.add("/late.bin", again);
  ASSERT_TRUE(q->retry_job(late.id).ok());
  joiner.join();
  EXPECT_TRUE(joined);
  EXPECT_EQ(q->id_to_job(slow_job.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(q->id_to_job(late.id)->status, JobStatus::kCompleted);  // not running: join waited
  EXPECT_EQ(sha256_file(dl() + "/late.bin"), sha256_hex_of(again.body));
}

TEST_F(QueueTest, BodiesWithoutContentLengthComplete) {
  Resource close_delimited;
  close_delimited.body = make_body(200000, 2);
  close_delimited.no_length = true;
  server_.add("/nolen.bin", close_delimited);
  Resource chunked;
  chunked.body = make_body(150000, 3);
  chunked.chunked = true;
  server_.add("/chunked.bin", chunked);
  auto q = open_queue(fast_options(dir_));
  auto a = submit(*q, server_.url("/nolen.bin"), dl());
  auto b = submit(*q, server_.url("/chunked.bin"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(a.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(dl() + "/nolen.bin"), sha256_hex_of(close_delimited.body));
  EXPECT_EQ(sha256_file(dl() + "/chunked.bin"), sha256_hex_of(chunked.body));
}

TEST_F(QueueTest, AThrowingCallbackDoesNotStopTheDownload) {
  Resource r;
  r.body = make_body(500000, 4);
  r.rate_bytes_per_s = 2000000;
  server_.add("/cb.bin", r);
  auto o = fast_options(dir_);
  std::atomic<int> starts{0}, progress{0}, completes{0};
  o.callbacks.on_start = [&](const Job&) { ++starts; throw std::runtime_error("boom in on_start"); };
  o.callbacks.on_progress = [&](const Job&) { ++progress; throw 42; };
  o.callbacks.on_complete = [&](const Job&) { ++completes; throw std::runtime_error("boom"); };
  auto q = open_queue(o);
  auto job = submit(*q, server_.url("/cb.bin"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(dl() + "/cb.bin"), sha256_hex_of(r.body));
  EXPECT_TRUE(wait_until([&] { return completes.load() == 1; }));
  EXPECT_EQ(starts.load(), 1);
  EXPECT_GE(progress.load(), 1);
}

TEST_F(QueueTest, CancellingARunningJobRemovesItsPartAndFiresTheEvent) {
  Resource r;
  r.body = make_body(2000000, 5);
  r.rate_bytes_per_s = 200000;
  server_.add("/slow.bin", r);
  auto o = fast_options(dir_);
  std::atomic<int> cancelled{0};
  o.callbacks.on_cancelled = [&](const Job& j) { cancelled += j.status == JobStatus::kCancelled; };
  auto q = open_queue(o);
  auto job = submit(*q, server_.url("/slow.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return file_exists(dl() + "/slow.bin.part") && q->id_to_job(job.id)->bytes > 0; }));
  auto c = q->cancel_job(job.id);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  EXPECT_TRUE(c->cancelled);
  EXPECT_TRUE(wait_until([&] { return !file_exists(dl() + "/slow.bin.part"); }));
  ASSERT_TRUE(q->join(std::chrono::seconds(5)));
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kCancelled);
  EXPECT_FALSE(file_exists(dl() + "/slow.bin"));
  EXPECT_EQ(count_type(job_events(*q, job.id), "download_cancelled"), 1u);
  EXPECT_TRUE(wait_until([&] { return cancelled.load() == 1; }));
}

TEST_F(QueueTest, EventsComeInOrderStartedProgressComplete) {
  Resource r;
  r.body = make_body(1000000, 6);
  r.rate_bytes_per_s = 2500000;
  server_.add("/ev.bin", r);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/ev.bin"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto types = event_types(job_events(*q, job.id));
  ASSERT_GE(types.size(), 3u);
  EXPECT_EQ(types.front(), "download_started");
  EXPECT_EQ(types.back(), "download_complete");
  for (size_t i = 1; i + 1 < types.size(); ++i) EXPECT_EQ(types[i], "download_progress") << i;
  auto ev = job_events(*q, job.id);
  auto last_progress = nlohmann::json::parse(ev[ev.size() - 2].payload);
  EXPECT_EQ(last_progress["current_bytes"], 1000000);
  auto complete = nlohmann::json::parse(ev.back().payload);
  EXPECT_EQ(complete["total_bytes"], 1000000);
  EXPECT_EQ(complete["download_path"], dl() + "/ev.bin");
}

TEST_F(QueueTest, WithOneSlotJobsStartInPriorityThenIdOrder) {
  for (int i = 0; i < 6; ++i) {
    Resource r;
    r.body = make_body(1000, static_cast<uint32_t>(i));
    server_.add("/p" + std::to_string(i), r);
  }
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  std::mutex mu;
  std::vector<int64_t> started;
  o.callbacks.on_start = [&](const Job& j) {
    std::lock_guard lk(mu);
    started.push_back(j.id);
  };
  auto q = open_queue(o);
  std::vector<DownloadRequest> batch;
  const int prio[6] = {10, 5, 10, 1, 5, 20};
  for (int i = 0; i < 6; ++i) {
    DownloadOptions opt;
    opt.priority = prio[i];
    batch.push_back({server_.url("/p" + std::to_string(i)), dl(), opt});
  }
  auto jobs = q->download_batch(batch);
  ASSERT_TRUE(jobs.ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  ASSERT_TRUE(wait_until([&] { std::lock_guard lk(mu); return started.size() == 6; }));
  auto id = [&](int i) { return jobs.value()[static_cast<size_t>(i)].id; };
  EXPECT_EQ(started, (std::vector<int64_t>{id(3), id(1), id(4), id(0), id(2), id(5)}));
}

// After a run of short transfers the queue claims jobs ahead of its free slots (ClaimAhead).
// The engine still begins no more than max_parallel at once, and a job that waits there for a
// slot is stopped untouched: cancelled, the .part of its earlier attempt goes and the server
// never hears of it again; paused, it asked nothing and resumes later like any paused job.
// (The server counts a body until it has sent it: a stopped transfer's body may still be going
// out when the next begins, so the count of bodies at once is read over the short files only.)
TEST_F(QueueTest, JobsClaimedAheadWaitForASlotAndStopUntouched) {
  Resource held;
  held.body = make_body(1500000, 11);
  held.rate_bytes_per_s = 300000;
  server_.add("/held.bin", held);
  Resource slow = held;
  slow.body = make_body(3000000, 12);
  server_.add("/slow.bin", slow);
  Resource later;
  later.body = make_body(100000, 13);
  server_.add("/later.bin", later);
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  auto q = open_queue(o);
  const std::string part = dl() + "/held.bin.part";

  // A job with a .part of its own, paused.
  auto h = submit(*q, server_.url("/held.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(h.id)->bytes > 100000; }));
  ASSERT_TRUE(q->pause_job(h.id).ok());
  ASSERT_TRUE(wait_until([&] { return file_exists(part) && server_.concurrent_bodies() == 0; }));
  // Short transfers: the queue starts to claim ahead, and the engine begins one at a time.
  server_.reset_log();
  run_short_transfers(*q, 20);
  EXPECT_EQ(server_.peak_concurrent_bodies(), 1) << "more than max_parallel bodies at once";

  // One slot, taken by a slow job; the paused one, resumed, is claimed and waits for the slot
  // (all within ClaimAhead::kLongest of the slow job's start).
  auto sl = submit(*q, server_.url("/slow.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(sl.id)->bytes > 0; }));
  ASSERT_TRUE(q->resume_job(h.id).ok());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(h.id)->status == JobStatus::kRunning; }))
      << "the resumed job was not claimed ahead while the slot was taken";
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(server_.requests_for("/held.bin").empty()) << "a job began past max_parallel";
  EXPECT_EQ(server_.concurrent_bodies(), 1);
  // Cancelled while it waits: its .part goes, the server never hears of it.
  ASSERT_TRUE(q->cancel_job(h.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(10), {h.id}));
  EXPECT_EQ(q->id_to_job(h.id)->status, JobStatus::kCancelled);
  EXPECT_FALSE(file_exists(part)) << "the cancelled job's .part stayed";
  EXPECT_TRUE(server_.requests_for("/held.bin").empty());
  // A new job claimed ahead, paused while it waits: nothing asked, nothing on disk.
  auto l = submit(*q, server_.url("/later.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(l.id)->status == JobStatus::kRunning; }));
  ASSERT_TRUE(q->pause_job(l.id).ok());
  EXPECT_EQ(q->id_to_job(l.id)->status, JobStatus::kPaused);
  EXPECT_TRUE(server_.requests_for("/later.bin").empty());
  EXPECT_FALSE(file_exists(dl() + "/later.bin.part"));
  EXPECT_EQ(q->id_to_job(sl.id)->status, JobStatus::kRunning) << "the slow job was disturbed";

  // The slot freed, the paused job runs whole.
  ASSERT_TRUE(q->cancel_job(sl.id).ok());
  ASSERT_TRUE(q->resume_job(l.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(l.id)->status, JobStatus::kCompleted);
  EXPECT_TRUE(read_file(dl() + "/later.bin") == later.body);
}

// only_jobs keeps the queue to some jobs of its store (`fetchq get`); allow_jobs adds more
// while it runs, and the others stay where they are.
TEST_F(QueueTest, OnlyTheAllowedJobsRunAndMoreCanBeAllowedWhileItRuns) {
  for (int i = 0; i < 3; ++i) {
    Resource r;
    r.body = make_body(5000, static_cast<uint32_t>(40 + i));
    server_.add("/o" + std::to_string(i), r);
  }
  auto o = fast_options(dir_);
  o.only_jobs = std::vector<int64_t>{};
  auto q = open_queue(o);
  auto a = submit(*q, server_.url("/o0"), dl());
  auto b = submit(*q, server_.url("/o1"), dl());
  auto c = submit(*q, server_.url("/o2"), dl());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(server_.requests().empty()) << "a job ran that was not allowed";
  q->allow_jobs({a.id, c.id});
  ASSERT_TRUE(q->join(std::chrono::seconds(20), {a.id, c.id}));
  EXPECT_EQ(q->id_to_job(a.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(q->id_to_job(c.id)->status, JobStatus::kCompleted);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kWaiting);
  EXPECT_TRUE(server_.requests_for("/o1").empty());
  q->allow_jobs({b.id});
  ASSERT_TRUE(q->join(std::chrono::seconds(20), {b.id}));
  EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kCompleted);
}

// Files that grow longer than short on average stop further claims, but the jobs claimed ahead
// meanwhile are not handed back (each hand-back costs an attempt and a trip through the
// store): with no transfer near ClaimAhead::kLongest they run as claimed, each in one attempt.
// Here one transfer of about 1.2 s lifts the average over ClaimAhead::kShort while six small
// jobs claimed with it wait behind it.
TEST_F(QueueTest, JobsClaimedAheadStayWhenFilesAreNoLongerShortOnAverage) {
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  auto q = open_queue(o);
  run_short_transfers(*q, 80);
  Resource longer;
  longer.body = make_body(250000, 90);
  longer.rate_bytes_per_s = 200000;
  server_.add("/longer.bin", longer);
  std::vector<DownloadRequest> batch{{server_.url("/longer.bin"), dl(), {}}};
  for (int i = 0; i < 6; ++i) {
    Resource r;
    r.body = make_body(20000, 91 + static_cast<uint32_t>(i));
    const std::string path = "/behind" + std::to_string(i);
    server_.add(path, r);
    batch.push_back({server_.url(path), dl(), {}});
  }
  auto jobs = q->download_batch(batch);
  ASSERT_TRUE(jobs.ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  for (const auto& j : jobs.value()) {
    auto done = q->id_to_job(j.id);
    EXPECT_EQ(done->status, JobStatus::kCompleted) << j.source;
    EXPECT_EQ(done->attempts, 1) << j.source << " was handed back while it waited";
  }
}

// A transfer that stalls sends nothing, yet the jobs claimed ahead behind it go back to waiting
// once it has run for ClaimAhead::kLongest, not at the loop's next routine wake-up (5 s).
TEST_F(QueueTest, JobsClaimedAheadGoBackBehindAStalledTransferInTime) {
  Resource stalled;
  stalled.body = make_body(200000, 71);
  stalled.stall_after = 1000;
  server_.add("/stalled.bin", stalled);
  Resource small;
  small.body = make_body(20000, 72);
  server_.add("/w.bin", small);
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  o.stall_timeout = std::chrono::seconds(30);
  auto q = open_queue(o);
  run_short_transfers(*q, 100);

  const auto t0 = std::chrono::steady_clock::now();
  auto st = submit(*q, server_.url("/stalled.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(st.id)->bytes > 0; }));
  auto w = submit(*q, server_.url("/w.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(w.id)->status == JobStatus::kRunning; }))
      << "not claimed ahead";
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(w.id)->status == JobStatus::kWaiting; },
                         std::chrono::seconds(10)))
      << "the job claimed ahead was never given back";
  const double after = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(after, 3.5) << "given back " << after << " s after the stalled transfer began";
  ASSERT_TRUE(q->cancel_job(st.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(w.id)->status, JobStatus::kCompleted);
}

// A job claimed ahead behind a transfer that runs long (a big file after small ones) goes back
// to waiting after ClaimAhead::kLongest, so a job added later with a higher priority comes
// first, as without claiming ahead.
TEST_F(QueueTest, JobsClaimedAheadGoBackWhenATransferRunsLong) {
  Resource slow;
  slow.body = make_body(3000000, 51);
  slow.rate_bytes_per_s = 300000;
  server_.add("/slow.bin", slow);
  Resource small;
  small.body = make_body(20000, 52);
  server_.add("/w.bin", small);
  server_.add("/p.bin", small);
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  auto q = open_queue(o);
  run_short_transfers(*q, 60);

  auto sl = submit(*q, server_.url("/slow.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(sl.id)->bytes > 0; }));
  auto w = submit(*q, server_.url("/w.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(w.id)->status == JobStatus::kRunning; }))
      << "not claimed ahead";
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(w.id)->status == JobStatus::kWaiting; },
                         std::chrono::seconds(10)))
      << "the job claimed ahead was not given back while the slow one ran on";
  DownloadOptions first;
  first.priority = 1;
  auto p = q->download({server_.url("/p.bin"), dl(), first});
  ASSERT_TRUE(p.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(q->id_to_job(p->id)->status, JobStatus::kWaiting)
      << "claimed ahead behind a long transfer";
  EXPECT_EQ(q->id_to_job(w.id)->status, JobStatus::kWaiting)
      << "claimed ahead behind a long transfer";
  EXPECT_TRUE(server_.requests_for("/w.bin").empty());

  ASSERT_TRUE(q->cancel_job(sl.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(w.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(q->id_to_job(p->id)->status, JobStatus::kCompleted);
  std::vector<std::string> order;
  for (const auto& r : server_.requests()) {
    if (r.path == "/w.bin" || r.path == "/p.bin") order.push_back(r.path);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"/p.bin", "/w.bin"}))
      << "the higher priority did not come first";
}

// A cancelled job that is not running removes its .part only when it is the file the job
// made: one put in its place by someone else stays, and so does a pruned failed job's.
TEST_F(QueueTest, CancellingAPausedJobRemovesOnlyAPartItMade) {
  Resource r;
  r.body = make_body(1500000, 81);
  r.rate_bytes_per_s = 300000;
  server_.add("/mine.bin", r);
  server_.add("/swapped.bin", r);
  auto q = open_queue(fast_options(dir_));
  auto mine = submit(*q, server_.url("/mine.bin"), dl());
  auto swapped = submit(*q, server_.url("/swapped.bin"), dl());
  for (const auto& j : {mine, swapped}) {
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(j.id)->bytes > 50000; }));
    ASSERT_TRUE(q->pause_job(j.id).ok());
  }
  const std::string mine_part = dl() + "/mine.bin.part", swapped_part = dl() + "/swapped.bin.part";
  ASSERT_TRUE(wait_until([&] { return file_exists(mine_part) && file_exists(swapped_part); }));
  ASSERT_TRUE(q->join(std::chrono::seconds(10)));
  // Someone else's file takes the paused job's .part name.
  write_file(dl() + "/other", "not the job's");
  ASSERT_EQ(::rename((dl() + "/other").c_str(), swapped_part.c_str()), 0);

  ASSERT_TRUE(q->cancel_job(mine.id).ok());
  ASSERT_TRUE(q->cancel_job(swapped.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(10)));
  EXPECT_FALSE(file_exists(mine_part)) << "the job's own .part stayed";
  ASSERT_TRUE(file_exists(swapped_part)) << "a .part the job did not make was removed";
  EXPECT_EQ(read_file(swapped_part), "not the job's");
}

TEST_F(QueueTest, PauseKeepsThePartAndResumeContinuesWithARange) {
  Resource r;
  r.body = make_body(1500000, 7);
  r.rate_bytes_per_s = 300000;
  server_.add("/pause.bin", r);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/pause.bin"), dl());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes > 100000; }));
  auto p = q->pause_job(job.id);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->status, JobStatus::kPaused);
  EXPECT_TRUE(q->join(std::chrono::seconds(5)));  // join does not wait for paused jobs
  ASSERT_TRUE(wait_until([&] { return file_exists(dl() + "/pause.bin.part"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kPaused);
  auto res = q->resume_job(job.id);
  ASSERT_TRUE(res.ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(dl() + "/pause.bin"), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/pause.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range.rfind("bytes=", 0), 0u);
  EXPECT_NE(reqs[1].range, "bytes=0-");
  EXPECT_FALSE(reqs[1].if_range.empty());
  auto types = event_types(job_events(*q, job.id));
  EXPECT_EQ(count_type(job_events(*q, job.id), "download_paused"), 1u);
  EXPECT_EQ(count_type(job_events(*q, job.id), "download_resumed"), 1u);
}

TEST_F(QueueTest, AnExistingFileIsLeftAloneUnlessAskedOtherwise) {
  Resource r;
  r.body = "new content";
  server_.add("/f.txt", r);
  write_file(dl() + "/f.txt", "old content");
  auto q = open_queue(fast_options(dir_));
  auto a = submit(*q, server_.url("/f.txt"), dl());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(a.id)->status, JobStatus::kError);
  EXPECT_EQ(q->id_to_job(a.id)->error_type.value_or(""), "DestinationExists");
  EXPECT_EQ(read_file(dl() + "/f.txt"), "old content");

  DownloadOptions rename;
  rename.if_exists = IfExists::kRename;
  auto b = submit(*q, server_.url("/f.txt"), dl(), rename);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(b.id)->download_path.value_or(""), dl() + "/f.1.txt");
  EXPECT_EQ(read_file(dl() + "/f.1.txt"), "new content");
  EXPECT_EQ(read_file(dl() + "/f.txt"), "old content");

  DownloadOptions overwrite;
  overwrite.if_exists = IfExists::kOverwrite;
  auto c = submit(*q, server_.url("/f.txt"), dl() + "/f.txt", overwrite);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(c.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(read_file(dl() + "/f.txt"), "new content");

  DownloadOptions skip;
  skip.if_exists = IfExists::kSkip;
  server_.reset_log();
  auto d = submit(*q, server_.url("/f.txt"), dl() + "/f.txt", skip);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(d.id)->status, JobStatus::kCompleted);
  EXPECT_FALSE(file_exists(dl() + "/f.txt.part"));
}

TEST_F(QueueTest, TheTokenGoesToTheOriginalHostOnlyAndIsNeverShown) {
  Resource target;
  target.body = "secret data";
  server_.add("/target.bin", target);
  Resource redirect;
  // Another host (localhost instead of 127.0.0.1): the token must not follow.
  redirect.redirect_to = "http://localhost:" + std::to_string(server_.port()) + "/target.bin";
  server_.add("/start.bin", redirect);
  auto q = open_queue(fast_options(dir_));
  DownloadOptions opt;
  opt.access_token = "tok-abc-123";
  auto job = submit(*q, server_.url("/start.bin"), dl() + "/out.bin", opt);
  EXPECT_TRUE(job.has_access_token);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  ASSERT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
  auto first = server_.requests_for("/start.bin");
  auto second = server_.requests_for("/target.bin");
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(first[0].authorization, "Bearer tok-abc-123");
  EXPECT_EQ(second[0].authorization, "");
  nlohmann::json shown = *q->id_to_job(job.id);
  EXPECT_EQ(shown.dump().find("tok-abc"), std::string::npos);
  for (auto& e : q->events_since(0, 1000, std::chrono::milliseconds(0))) {
    EXPECT_EQ(e.payload.find("tok-abc"), std::string::npos);
  }
}

TEST_F(QueueTest, RedirectToFileSchemeEndsInErrorWithNothingWritten) {
  Resource redirect;
  redirect.redirect_to = "file:///etc/passwd";
  server_.add("/evil", redirect);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/evil"), dl() + "/passwd");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "UnsupportedProtocol");
  EXPECT_FALSE(file_exists(dl() + "/passwd"));
  EXPECT_FALSE(file_exists(dl() + "/passwd.part"));
}

TEST_F(QueueTest, BadSubmissionsAreRefusedAtOnce) {
  auto q = open_queue(fast_options(dir_));
  for (const char* url : {"file:///etc/passwd", "ftp://h/x", "gopher://h/", "not-a-url"}) {
    auto r = q->download({url, dl(), {}});
    EXPECT_FALSE(r.ok()) << url;
  }
  EXPECT_FALSE(q->download({server_.url("/x"), "relative/dir", {}}).ok());
  EXPECT_TRUE(q->list_jobs().empty());
}

TEST_F(QueueTest, CancelAllAndPrune) {
  Resource r;
  r.body = make_body(1000000, 8);
  r.rate_bytes_per_s = 100000;
  server_.add("/s.bin", r);
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  auto q = open_queue(o);
  for (int i = 0; i < 3; ++i) submit(*q, server_.url("/s.bin"), dl() + "/s" + std::to_string(i));
  ASSERT_TRUE(wait_until([&] { return q->stats().running == 1; }));
  EXPECT_EQ(q->cancel_all_jobs(), 3);
  ASSERT_TRUE(q->join(std::chrono::seconds(5)));
  EXPECT_EQ(q->stats().cancelled, 3);
  EXPECT_EQ(q->prune_jobs(), 3);
  EXPECT_TRUE(q->list_jobs().empty());
  EXPECT_FALSE(q->cancel_job(1).ok());
}

}  // namespace
}  // namespace fetchq::testing

namespace fetchq::testing {
namespace {

TEST(QueueSecurity, PrivateAddressesAreRefusedWhenAsked) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "should never arrive";
  server.add("/x", r);
  auto o = fast_options(dir);
  o.block_private_addresses = true;
  auto q = open_queue(o);
  auto job = submit(*q, server.url("/x"), dir / "x.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "AddressBlocked");
  EXPECT_NE(j->error.value_or("").find("127.0.0.1"), std::string::npos);
  EXPECT_TRUE(server.requests().empty());
  EXPECT_FALSE(file_exists(dir / "x.bin"));
}

TEST(QueueSecurity, AStalledConnectionIsDroppedAndRetried) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(300000, 41);
  r.stall_after = 100000;
  server.add("/stall.bin", r);
  auto o = fast_options(dir);
  o.stall_timeout = std::chrono::milliseconds(1000);
  auto q = open_queue(o);
  auto job = submit(*q, server.url("/stall.bin"), dir / "stall.bin");
  ASSERT_TRUE(wait_until([&] { return server.requests_for("/stall.bin").size() >= 2; }, std::chrono::seconds(10)));
  // Every request stalls after 100000 bytes; the job keeps its bytes and asks for the rest.
  auto reqs = server.requests_for("/stall.bin");
  EXPECT_EQ(reqs[1].range, "bytes=100000-");
  q->cancel_job(job.id);
  auto ev = job_events(*q, job.id);
  ASSERT_GE(count_type(ev, "download_retrying"), 1u);
  for (auto& e : ev) {
    if (e.type == "download_retrying") {
      EXPECT_NE(e.payload.find("Stalled"), std::string::npos) << e.payload;
      break;
    }
  }
}

}  // namespace
}  // namespace fetchq::testing

namespace fetchq::testing {
namespace {

TEST(QueueSecurity, TokenRulesGiveATokenByHostNameOnly) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "data";
  server.add("/a", r);
  server.add("/b", r);
  auto o = fast_options(dir);
  // Plain http: the rule names scheme, host and port (a bare host would apply to https only).
  o.token_rules = {{"http://127.0.0.1:" + std::to_string(server.port()), "rule-token"}};
  auto q = open_queue(o);
  auto a = submit(*q, server.url("/a"), dir / "a.bin");
  // Same server reached as "localhost", with the rule's host only in the query: no token.
  auto b = submit(*q, "http://localhost:" + std::to_string(server.port()) + "/b?via=127.0.0.1",
                  dir / "b.bin");
  EXPECT_TRUE(a.has_access_token);
  EXPECT_FALSE(b.has_access_token);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(server.requests_for("/a").at(0).authorization, "Bearer rule-token");
  EXPECT_EQ(server.requests_for("/b").at(0).authorization, "");
}

}  // namespace
}  // namespace fetchq::testing

namespace fetchq::testing {
namespace {

// An admin's sqlite3 reading the database, even inside a long read transaction, never stops
// the queue from recording progress (WAL readers do not block the writer).
TEST(QueueDatabase, AReaderHoldingATransactionDoesNotStopTheQueue) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(400000, 81);
  r.rate_bytes_per_s = 1000000;
  server.add("/r.bin", r);
  auto q = open_queue(fast_options(dir));
  SQLite::Database reader(dir / "queue.db", SQLite::OPEN_READONLY);
  reader.exec("BEGIN");
  EXPECT_EQ(reader.execAndGet("SELECT COUNT(*) FROM jobs").getInt(), 0);
  auto job = submit(*q, server.url("/r.bin"), dir / "r.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(reader.execAndGet("SELECT COUNT(*) FROM jobs").getInt(), 0);  // its snapshot
  reader.exec("COMMIT");
  EXPECT_EQ(reader.execAndGet("SELECT status FROM jobs").getString(), "completed");
  EXPECT_EQ(sha256_file(dir / "r.bin"), sha256_hex_of(r.body));
}

}  // namespace
}  // namespace fetchq::testing
