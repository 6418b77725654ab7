// Mirrors: other sources of the same file. The real queue, engine and SQLite store against two
// in-process HTTP servers (two origins): a segmented file takes ranges from each source that
// passed the check, a mirror that disagrees or fails is dropped, and the first request goes to
// a mirror when the source fails.
#include <SQLiteCpp/SQLiteCpp.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

constexpr size_t kBig = 24 << 20;      // over the 16 MiB threshold: segmented
constexpr int64_t kSample = 64 << 10;  // what a mirror's check asks for

class Mirrors : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer source_;
  TestServer mirror_;

  // Four connections, two to each host at most: the file gets all four only with the mirror.
  QueueOptions options() {
    QueueOptions o = fast_options(dir_);
    o.connections = 4;
    o.max_connections_per_host = 2;
    return o;
  }

  static Resource big(uint32_t seed, uint64_t rate = 4 << 20) {
    Resource r;
    r.body = make_body(kBig, seed);
    r.rate_bytes_per_s = rate;
    return r;
  }

  static int64_t body_bytes(const std::vector<RequestLog>& reqs) {
    int64_t n = 0;
    for (const auto& r : reqs) n += static_cast<int64_t>(r.body_bytes_sent);
    return n;
  }

  // The first byte "Range: bytes=N-" asks for; -1 without a Range.
  static int64_t range_start(const RequestLog& r) {
    if (r.range.rfind("bytes=", 0) != 0) return -1;
    return std::stoll(r.range.substr(6, r.range.find('-') - 6));
  }

  // The requests that asked for a segment, not for the check's sample.
  static std::vector<RequestLog> segment_requests(const std::vector<RequestLog>& reqs) {
    std::vector<RequestLog> out;
    for (const auto& r : reqs) {
      if (r.range.empty()) continue;
      auto dash = r.range.find('-');
      const std::string end = r.range.substr(dash + 1);
      const int64_t first = std::stoll(r.range.substr(r.range.find('=') + 1, dash));
      if (!end.empty() && std::stoll(end) - first + 1 == kSample && r.if_range.empty()) continue;
      out.push_back(r);
    }
    return out;
  }

  // Answers a raw handler's "Range: bytes=A-B" with a 206 of those bytes of `body`, as of the
  // version `etag`.
  static void send_range(int fd, const RequestLog& req, const std::string& body,
                         const std::string& etag) {
    const size_t eq = req.range.find('='), dash = req.range.find('-');
    const size_t from = std::stoul(req.range.substr(eq + 1, dash - eq - 1));
    const size_t to = std::stoul(req.range.substr(dash + 1));
    send_all(fd, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(from) +
                     "-" + std::to_string(to) + "/" + std::to_string(body.size()) +
                     "\r\nContent-Length: " + std::to_string(to - from + 1) + "\r\nETag: " + etag +
                     "\r\nConnection: close\r\n\r\n" + body.substr(from, to - from + 1));
  }

  // Submits the source's `path` with `mirrors` and pauses the job once `bytes` are in.
  Job start_then_pause(DownloadQueue& q, const std::string& path, const std::string& name,
                       std::vector<std::string> mirrors, int64_t bytes) {
    DownloadOptions o;
    o.mirrors = std::move(mirrors);
    Job job = submit(q, source_.url(path), dir_ / name, o);
    EXPECT_TRUE(
        wait_until([&] { return q.id_to_job(job.id)->bytes >= bytes; }, std::chrono::seconds(30)));
    EXPECT_TRUE(q.pause_job(job.id).ok());
    EXPECT_TRUE(wait_until([&] { return q.id_to_job(job.id)->status == JobStatus::kPaused; }));
    return job;
  }

  // The mirror is down (503, unless a raw handler serves it) while the source serves the job's
  // first part; then the job is paused and the source's file goes (404).
  Job pause_then_lose_the_source(DownloadQueue& q) {
    Resource down;
    down.status = 503;
    mirror_.add("/data.bin", down);
    Job job =
        start_then_pause(q, "/data.bin", "data.bin", {mirror_.url("/data.bin")}, int64_t{4} << 20);
    Resource gone;
    gone.status = 404;
    source_.add("/data.bin", gone);
    return job;
  }

  // The same, then the mirror comes up with `mirror_then` and the job resumes.
  Job lose_the_source_after_pausing(DownloadQueue& q, Resource mirror_then) {
    Job job = pause_then_lose_the_source(q);
    mirror_.add("/data.bin", std::move(mirror_then));
    EXPECT_TRUE(q.resume_job(job.id).ok());
    return job;
  }

  // The source is down (503) when the job starts, so the mirror serves `path` as `m` with
  // ETag "m1" (2 MiB/s unless `m` says otherwise); the job is paused once `bytes` are in.
  Job begin_from_mirror_then_pause(DownloadQueue& q, const std::string& path, Resource m,
                                   int64_t bytes) {
    Resource down;
    down.status = 503;
    source_.add(path, down);
    m.etag = "\"m1\"";
    if (m.rate_bytes_per_s == 0) m.rate_bytes_per_s = 2 << 20;
    mirror_.add(path, m);
    return start_then_pause(q, path, path.substr(1), {mirror_.url(path)}, bytes);
  }

  // Resumes the job and waits until it ends; the job as it ended.
  static Job resume_and_wait(DownloadQueue& q, int64_t id) {
    EXPECT_TRUE(q.resume_job(id).ok());
    EXPECT_TRUE(q.join(std::chrono::seconds(60)));
    return q.id_to_job(id).value_or(Job{});
  }

  static Resource small(uint32_t seed) {  // one connection: under the segment threshold
    Resource r;
    r.body = make_body(8 << 20, seed);
    return r;
  }

  // The URLs of the job's download_source_dropped events, in order; each names a reason.
  static std::vector<std::string> dropped(DownloadQueue& q, int64_t job_id) {
    std::vector<std::string> urls;
    for (const auto& e : job_events(q, job_id)) {
      if (e.type != "download_source_dropped") continue;
      auto p = nlohmann::json::parse(e.payload);
      EXPECT_FALSE(p.value("reason", "").empty()) << e.payload;
      urls.push_back(p.value("url", ""));
    }
    return urls;
  }

  Job run(DownloadQueue& q, const std::string& path, const std::string& name,
          std::vector<std::string> mirrors) {
    DownloadOptions o;
    o.mirrors = std::move(mirrors);
    auto job = submit(q, source_.url(path), dir_ / name, o);
    EXPECT_TRUE(q.join(std::chrono::seconds(60)));
    return q.id_to_job(job.id).value_or(Job{});
  }
};

TEST_F(Mirrors, SegmentsAreSpreadOverTheSourceAndAMirrorThatPassedItsCheck) {
  Resource r = big(301);
  source_.add("/model.bin", r);
  Resource m = r;
  m.etag = "\"mirror-etag\"";  // another host's own validator
  mirror_.add("/copy/model.bin", m);
  auto q = open_queue(options());
  Job j = run(*q, "/model.bin", "model.bin", {mirror_.url("/copy/model.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "model.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 1);
  EXPECT_EQ(j.mirrors, std::vector<std::string>{mirror_.url("/copy/model.bin")});

  auto from_mirror = mirror_.requests_for("/copy/model.bin");
  ASSERT_FALSE(from_mirror.empty());
  // First the check: the sample that ends what the file holds, asked without If-Range.
  EXPECT_TRUE(from_mirror.front().if_range.empty()) << from_mirror.front().range;
  auto mirror_segments = segment_requests(from_mirror);
  ASSERT_FALSE(mirror_segments.empty()) << "the mirror served no range";
  for (const auto& rq : mirror_segments) {
    EXPECT_EQ(rq.if_range, "\"mirror-etag\"") << rq.range;  // its own validator, not the source's
  }
  for (const auto& rq : segment_requests(source_.requests_for("/model.bin"))) {
    EXPECT_NE(rq.if_range, "\"mirror-etag\"") << rq.range;
  }
  const int64_t mirror_bytes = body_bytes(mirror_segments);
  const int64_t source_bytes = body_bytes(source_.requests_for("/model.bin"));
  EXPECT_GT(mirror_bytes, int64_t{2} << 20) << "the mirror carried almost nothing";
  EXPECT_GT(source_bytes, int64_t{2} << 20);
  // Each byte came about once: cut fetches cost a little, nothing like a second copy.
  EXPECT_LT(mirror_bytes + source_bytes, static_cast<int64_t>(kBig + kBig / 4));
}

TEST_F(Mirrors, AMirrorThatServesOtherBytesOfTheSameSizeIsDropped) {
  Resource r = big(311);
  source_.add("/data.bin", r);
  mirror_.add("/data.bin", big(312));  // same size, other content
  auto q = open_queue(options());
  Job j = run(*q, "/data.bin", "data.bin", {mirror_.url("/data.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  auto from_mirror = mirror_.requests_for("/data.bin");
  ASSERT_EQ(from_mirror.size(), 1u) << "the mirror was asked for more than its check";
  EXPECT_EQ(body_bytes(from_mirror), kSample);
  EXPECT_EQ(dropped(*q, j.id), std::vector<std::string>{mirror_.url("/data.bin")});
}

TEST_F(Mirrors, AMirrorOfAnotherSizeOrWithoutRangesIsDropped) {
  Resource r = big(321);
  source_.add("/data.bin", r);
  Resource longer = r;
  longer.body += "x";
  mirror_.add("/longer.bin", longer);
  Resource no_ranges = r;
  no_ranges.honour_range = false;
  no_ranges.rate_bytes_per_s = 1 << 20;  // its whole body would take long: it must be cut
  mirror_.add("/whole.bin", no_ranges);
  auto q = open_queue(options());
  Job j = run(*q, "/data.bin", "data.bin", {mirror_.url("/longer.bin"), mirror_.url("/whole.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(mirror_.requests_for("/longer.bin").size(), 1u);
  EXPECT_EQ(mirror_.requests_for("/whole.bin").size(), 1u);
  EXPECT_LT(body_bytes(mirror_.requests_for("/whole.bin")), int64_t{4} << 20);
}

TEST_F(Mirrors, AMirrorWhoseConnectionsDropIsDroppedAndTheSourceFinishes) {
  Resource r = big(331);
  source_.add("/data.bin", r);
  Resource flaky = r;
  flaky.drop_after = 512 << 10;  // the check's 64 KiB pass; every range breaks
  flaky.drop_times = 1000;
  mirror_.add("/data.bin", flaky);
  auto q = open_queue(options());
  Job j = run(*q, "/data.bin", "data.bin", {mirror_.url("/data.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 1) << "a mirror's failure failed the attempt";
  auto from_mirror = mirror_.requests_for("/data.bin");
  EXPECT_GE(from_mirror.size(), 2u) << "the mirror was never given a range";
  // Dropped at its first failure: not asked again and again.
  EXPECT_LE(segment_requests(from_mirror).size(), 2u);
}

TEST_F(Mirrors, WhenTheSourceFailsTheFirstRequestGoesToTheNextMirror) {
  Resource gone;
  gone.status = 404;
  source_.add("/f.bin", gone);
  Resource down;
  down.status = 503;
  mirror_.add("/down/f.bin", down);
  Resource r;
  r.body = make_body(300 << 10, 341);
  mirror_.add("/up/f.bin", r);
  auto q = open_queue(options());
  Job j = run(*q, "/f.bin", "f.bin", {mirror_.url("/down/f.bin"), mirror_.url("/up/f.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 1);
  EXPECT_EQ(source_.requests_for("/f.bin").size(), 1u);
  EXPECT_EQ(mirror_.requests_for("/down/f.bin").size(), 1u);
  EXPECT_EQ(mirror_.requests_for("/up/f.bin").size(), 1u);
  EXPECT_EQ(dropped(*q, j.id),
            (std::vector<std::string>{source_.url("/f.bin"), mirror_.url("/down/f.bin")}));
}

TEST_F(Mirrors, TheJobFailsOnlyWhenEverySourceHas) {
  Resource gone;
  gone.status = 404;
  source_.add("/f.bin", gone);
  mirror_.add("/f.bin", gone);
  auto q = open_queue(options());
  Job j = run(*q, "/f.bin", "f.bin", {mirror_.url("/f.bin")});
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "HTTPError(404 Not Found)");
  EXPECT_EQ(source_.requests_for("/f.bin").size(), 1u);
  EXPECT_EQ(mirror_.requests_for("/f.bin").size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "f.bin"));
}

// A mirror whose file changes after its check (a new ETag on every answer): its ranges carry
// If-Range with the validator of the check, so it answers 200 and is dropped; no byte of
// another version is spliced in.
TEST_F(Mirrors, AMirrorWhoseFileChangesAfterItsCheckIsDroppedNeverSpliced) {
  Resource r = big(361);
  source_.add("/data.bin", r);
  Resource changing = r;
  changing.etag_changes = true;
  mirror_.add("/data.bin", changing);
  auto q = open_queue(options());
  Job j = run(*q, "/data.bin", "data.bin", {mirror_.url("/data.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 1);
  auto ranges = segment_requests(mirror_.requests_for("/data.bin"));
  ASSERT_FALSE(ranges.empty()) << "the mirror never passed its check";
  EXPECT_LE(ranges.size(), 2u) << "a mirror that answered 200 was asked again";
  for (const auto& rq : ranges) {
    EXPECT_FALSE(rq.if_range.empty()) << rq.range;
    EXPECT_NE(rq.status, 206) << rq.range;
  }
}

// `kill -9` of `fetchq get` with a mirror, three times, then a run to the end: the file is the
// source's, byte for byte, and no .part is left.
TEST_F(Mirrors, RepeatedKillNineOfGetWithAMirrorEndsWithTheFileWhole) {
  Resource r = big(371, 512 << 10);  // 4 connections: about 12 s in all
  Resource capped = r;
  capped.max_in_flight = 2;  // the source takes two connections: the mirror gets the others
  source_.add("/data.bin", capped);
  mirror_.add("/data.bin", r);
  const std::string state = dir_ / "state.db";
  const std::vector<std::string> argv{bin_path("fetchq"),
                                      "get",
                                      source_.url("/data.bin"),
                                      "--mirror",
                                      mirror_.url("/data.bin"),
                                      "-o",
                                      dir_ / "data.bin",
                                      "--state",
                                      state,
                                      "--quiet",
                                      "--connections",
                                      "4"};
  auto synced = [&]() -> int64_t {
    if (!std::filesystem::exists(state)) return 0;
    try {
      SQLite::Database db(state, SQLite::OPEN_READONLY);
      return db.execAndGet("SELECT COALESCE(SUM(durable), 0) FROM segments").getInt64();
    } catch (const std::exception&) {
      return 0;
    }
  };
  int64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    Process p(argv);
    // Each round is killed once a checkpoint synced more than the round before.
    ASSERT_TRUE(wait_until([&] { return synced() > last; }, std::chrono::seconds(30),
                           std::chrono::milliseconds(50)))
        << "round " << round
        << (p.running() ? ", running" : ", exited " + std::to_string(p.wait()));
    p.signal(SIGKILL);
    ASSERT_EQ(p.wait(), 128 + SIGKILL);
    last = synced();
    EXPECT_FALSE(std::filesystem::exists(dir_ / "data.bin")) << "round " << round;
  }
  EXPECT_FALSE(segment_requests(mirror_.requests_for("/data.bin")).empty())
      << "the mirror served no range before the kills";
  r.rate_bytes_per_s = 0;
  source_.add("/data.bin", r);
  mirror_.add("/data.bin", r);
  Process p(argv, "", dir_ / "last.err");
  ASSERT_EQ(p.wait(std::chrono::seconds(60)), 0);
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "data.bin.part"));
}

// A mirror whose server ignores If-Range: its check saw one ETag, its ranges come back 206
// with another ETag and other bytes. The named validator differs from the check's, so the
// range is refused and the mirror dropped; none of its other version is spliced in.
TEST_F(Mirrors, AMirrorThatIgnoresIfRangeAndServesANewVersionIsDropped) {
  Resource r = big(381, 2 << 20);  // 6 s: the mirror's check has time to pass before the end
  source_.add("/data.bin", r);
  const std::string old_body = r.body, new_body = make_body(kBig, 382);
  mirror_.set_handler("/data.bin", [old_body, new_body](const RequestLog& req, int fd) {
    // The check (no If-Range) gets the version the source has, ranges the new one.
    const bool check = req.if_range.empty();
    send_range(fd, req, check ? old_body : new_body, check ? "\"v1\"" : "\"v2\"");
  });
  auto q = open_queue(options());
  Job j = run(*q, "/data.bin", "data.bin", {mirror_.url("/data.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  auto reqs = mirror_.requests_for("/data.bin");
  ASSERT_GE(reqs.size(), 2u) << "the mirror never got a range";
  EXPECT_LE(reqs.size(), 3u) << "a mirror that named another version was asked again";
}

// A resumed attempt whose source fails stays with the source: a mirror's bytes past the
// offset could not be told from another file's (here neither has a validator). The job fails
// with the source's error, and the mirror is never asked.
TEST_F(Mirrors, AResumeWhoseSourceFailsDoesNotTakeAMirrorsBytes) {
  Resource r;
  r.body = make_body(8 << 20, 391);
  r.etag = "";
  r.rate_bytes_per_s = 2 << 20;
  source_.add("/f.bin", r);
  Resource other;
  other.body = make_body(8 << 20, 392);  // another file of the same size
  other.etag = "";
  mirror_.add("/f.bin", other);
  auto q = open_queue(options());
  Job job = start_then_pause(*q, "/f.bin", "f.bin", {mirror_.url("/f.bin")}, int64_t{3} << 20);
  ASSERT_FALSE(HasFailure());
  Resource gone;
  gone.status = 404;
  source_.add("/f.bin", gone);
  mirror_.reset_log();
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "HTTPError(404 Not Found)");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "f.bin"));
  EXPECT_TRUE(mirror_.requests_for("/f.bin").empty());
}

// A paused segmented job resumes while its source is gone (404): the source's ranges fail
// before the mirror's check has run; they wait for it instead of failing the attempt, and the
// mirror, once checked, serves the rest.
TEST_F(Mirrors, AResumedSegmentedJobWhoseSourceIsGoneFinishesFromTheMirror) {
  Resource r = big(401, 2 << 20);
  source_.add("/data.bin", r);
  Resource m = r;
  m.rate_bytes_per_s = 0;
  m.etag = "\"mirror\"";
  auto q = open_queue(options());
  Job job = lose_the_source_after_pausing(*q, m);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted)
      << j.error_type.value_or("") << ": " << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 2);  // the first, paused; the resume, which did not fail
  EXPECT_FALSE(segment_requests(mirror_.requests_for("/data.bin")).empty());
}

// The same, but the mirror holds another file: its check fails, no source is left, and each
// attempt ends (never waits forever) until the job fails.
TEST_F(Mirrors, WhenNoSourceIsLeftTheAttemptEndsInsteadOfWaiting) {
  Resource r = big(411, 2 << 20);
  source_.add("/data.bin", r);
  auto q = open_queue(options());
  Job job = lose_the_source_after_pausing(*q, big(412));  // same size, other bytes
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(q->join(std::chrono::seconds(60))) << "an attempt waited for a source forever";
  Job j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "data.bin"));
  for (const auto& rq : mirror_.requests_for("/data.bin")) {
    EXPECT_TRUE(rq.if_range.empty()) << "the mirror got a range: " << rq.range;
  }
}

// A paused segmented job takes up its map again with the mirror: checked anew (its validator
// is its own and is not stored), then given ranges again.
TEST_F(Mirrors, APausedJobResumesWithItsMirror) {
  Resource r = big(351, 2 << 20);
  source_.add("/data.bin", r);
  mirror_.add("/data.bin", r);
  auto q = open_queue(options());
  Job job =
      start_then_pause(*q, "/data.bin", "data.bin", {mirror_.url("/data.bin")}, int64_t{6} << 20);
  ASSERT_FALSE(HasFailure());
  mirror_.reset_log();
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_FALSE(segment_requests(mirror_.requests_for("/data.bin")).empty());
}

// A file begun from the mirror after the source failed resumes from that mirror, with the
// mirror's own validator: no byte is fetched twice and the source is not asked for the body.
TEST_F(Mirrors, AFileBegunFromAMirrorResumesFromThatMirror) {
  const Resource m = small(361);
  auto q = open_queue(options());
  Job job = begin_from_mirror_then_pause(*q, "/f.bin", m, int64_t{3} << 20);
  ASSERT_FALSE(HasFailure());
  source_.reset_log();
  mirror_.reset_log();
  Job j = resume_and_wait(*q, job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted)
      << j.error_type.value_or("") << ": " << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(m.body));
  EXPECT_EQ(j.attempts, 2);
  auto reqs = mirror_.requests_for("/f.bin");
  ASSERT_EQ(reqs.size(), 1u);
  const int64_t from = range_start(reqs[0]);
  EXPECT_GE(from, int64_t{3} << 20) << reqs[0].range;
  EXPECT_EQ(reqs[0].if_range, "\"m1\"");
  EXPECT_EQ(body_bytes(reqs), static_cast<int64_t>(m.body.size()) - from);
  EXPECT_TRUE(source_.requests_for("/f.bin").empty());
  for (const auto& e : job_events(*q, job.id)) EXPECT_NE(e.type, "download_restarted") << e.payload;
}

// The same file, but by the resume the mirror is gone (404) and the source is back: the job's
// URL is asked for the whole file, and its 200 ends that attempt with a restart from zero (the
// record forgets the mirror's validator and offsets before a byte of the source is written);
// the next attempt fetches the file from the source.
TEST_F(Mirrors, AResumeWhoseMirrorIsGoneStartsOverFromTheSource) {
  const Resource m = small(362);
  auto q = open_queue(options());
  Job job = begin_from_mirror_then_pause(*q, "/f.bin", m, int64_t{3} << 20);
  ASSERT_FALSE(HasFailure());
  Resource gone;
  gone.status = 404;
  mirror_.add("/f.bin", gone);
  Resource back = m;
  back.etag = "\"s1\"";
  source_.add("/f.bin", back);
  source_.reset_log();
  mirror_.reset_log();
  Job j = resume_and_wait(*q, job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted)
      << j.error_type.value_or("") << ": " << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(m.body));
  EXPECT_EQ(j.attempts, 3);  // paused; ended by the restart; from zero
  EXPECT_EQ(mirror_.requests_for("/f.bin").size(), 1u);
  auto reqs = source_.requests_for("/f.bin");
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& r : reqs) EXPECT_TRUE(r.range.empty()) << r.range;
  int restarts = 0;
  for (const auto& e : job_events(*q, job.id)) {
    if (e.type != "download_restarted") continue;
    ++restarts;
    EXPECT_NE(e.payload.find(mirror_.url("/f.bin")), std::string::npos) << e.payload;
  }
  EXPECT_EQ(restarts, 1);
}

// By the resume the mirror fails for a moment (503) and the job's URL is gone (404): the bytes
// kept are not touched, the mirror's passing failure makes the attempt one to retry (not the
// 404), and the next attempt resumes the bytes from the mirror.
TEST_F(Mirrors, AMirrorThatFailsForAMomentOnAResumeKeepsTheBytes) {
  const Resource m = small(365);
  QueueOptions o = options();
  // The mirror is back before the retry: at fast_options' 20 ms a slow (TSan) test thread could
  // see every attempt used up first.
  o.retry_base_delay = std::chrono::milliseconds(1000);
  o.retry_max_delay = std::chrono::milliseconds(2000);
  auto q = open_queue(o);
  Job job = begin_from_mirror_then_pause(*q, "/f.bin", m, int64_t{3} << 20);
  ASSERT_FALSE(HasFailure());
  Resource down;
  down.status = 503;
  mirror_.add("/f.bin", down);
  Resource gone;
  gone.status = 404;
  source_.add("/f.bin", gone);
  source_.reset_log();
  mirror_.reset_log();
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(wait_until([&] { return !source_.requests_for("/f.bin").empty(); }));
  Resource again = m;  // the same file, the same validator
  again.etag = "\"m1\"";
  mirror_.add("/f.bin", again);
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted)
      << j.error_type.value_or("") << ": " << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(m.body));
  auto reqs = mirror_.requests_for("/f.bin");
  ASSERT_GE(reqs.size(), 2u);
  const RequestLog& last = reqs.back();
  EXPECT_GE(range_start(last), int64_t{3} << 20) << last.range;
  EXPECT_EQ(last.if_range, "\"m1\"");
  for (const auto& e : job_events(*q, job.id)) EXPECT_NE(e.type, "download_restarted") << e.payload;
}

// set_url on a file begun from the mirror: the next attempt asks the new URL, with the
// validator on record (the mirror's), not the mirror.
TEST_F(Mirrors, SetUrlOnAFileBegunFromAMirrorAsksTheNewUrl) {
  const Resource m = small(364);
  Resource same = m;  // the same file and validator at the new URL
  same.etag = "\"m1\"";
  source_.add("/new.bin", same);
  auto q = open_queue(options());
  Job job = begin_from_mirror_then_pause(*q, "/f.bin", m, int64_t{3} << 20);
  ASSERT_FALSE(HasFailure());
  Result<Job> set = make_error(ErrorCode::kInternal, "not tried");
  wait_until(
      [&] {
        set = q->set_url(job.id, source_.url("/new.bin"));
        return set.ok() || set.error().message.find("try again") == std::string::npos;
      },
      std::chrono::seconds(10), std::chrono::milliseconds(5));
  ASSERT_TRUE(set.ok()) << set.error().message;
  mirror_.reset_log();
  Job j = resume_and_wait(*q, job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted)
      << j.error_type.value_or("") << ": " << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(m.body));
  EXPECT_TRUE(mirror_.requests_for("/f.bin").empty());
  auto reqs = source_.requests_for("/new.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_GE(range_start(reqs[0]), int64_t{3} << 20) << reqs[0].range;
  EXPECT_EQ(reqs[0].if_range, "\"m1\"");
}

// A segmented file begun from the mirror resumes its map there: the mirror's ranges carry its
// own validator, the source (still down) is checked and dropped, and no byte is sent twice.
TEST_F(Mirrors, ASegmentedFileBegunFromAMirrorResumesItsMapFromThatMirror) {
  const Resource m = big(363);
  auto q = open_queue(options());
  Job job = begin_from_mirror_then_pause(*q, "/data.bin", m, int64_t{6} << 20);
  ASSERT_FALSE(HasFailure());
  const int64_t before = body_bytes(mirror_.requests_for("/data.bin"));
  mirror_.reset_log();
  Job j = resume_and_wait(*q, job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted)
      << j.error_type.value_or("") << ": " << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(m.body));
  auto reqs = mirror_.requests_for("/data.bin");
  ASSERT_FALSE(reqs.empty());
  for (const auto& r : reqs) {
    EXPECT_FALSE(r.range.empty());
    EXPECT_EQ(r.if_range, "\"m1\"") << r.range;
  }
  // What the first attempt's connections had on their way when it paused may come again.
  EXPECT_LE(before + body_bytes(reqs), static_cast<int64_t>(m.body.size()) + (int64_t{4} << 20));
  for (const auto& e : job_events(*q, job.id)) EXPECT_NE(e.type, "download_restarted") << e.payload;
}

// An adaptive count that settled on fewer connections (16 made more than one, but they shared
// the source's link) is not thrown away when a mirror passes its check afterwards: the mirror's
// host gets as many as the source kept, not a full share. The source: 1 MiB/s a connection
// behind a 2 MiB/s link. The mirror answers its check only once the count has settled, and
// counts the range answers it sends at once.
TEST_F(Mirrors, AMirrorCheckedAfterTheCountSettledOnFewerGetsAsManyAsTheSourceKept) {
  const Resource r = serve_behind_shared_link(source_, "/shared.bin", 431);
  struct Counts {
    std::atomic<bool> answer_check{false};
    std::atomic<int> now{0}, peak{0}, ranges{0};
  };
  auto counts = std::make_shared<Counts>();
  const auto body = std::make_shared<const std::string>(r.body);
  mirror_.set_handler("/shared.bin", [counts, body](const RequestLog& req, int fd) {
    if (req.if_range.empty()) {  // the check
      for (int i = 0; i < 3000 && !counts->answer_check; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      send_range(fd, req, *body, "\"m1\"");
      return;
    }
    const size_t eq = req.range.find('='), dash = req.range.find('-');
    const size_t from = std::stoul(req.range.substr(eq + 1, dash - eq - 1));
    const size_t to = std::stoul(req.range.substr(dash + 1));
    ++counts->ranges;
    const int n = ++counts->now;
    for (int p = counts->peak; n > p && !counts->peak.compare_exchange_weak(p, n);) {
    }
    // 1 MiB/s, in 64 KiB pieces. It stops counting before its last piece goes: a client that
    // has the whole answer and asks for the next range never sees this one counted.
    bool ok = send_all(
        fd, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(from) + "-" +
                std::to_string(to) + "/" + std::to_string(body->size()) + "\r\nContent-Length: " +
                std::to_string(to - from + 1) + "\r\nETag: \"m1\"\r\nConnection: close\r\n\r\n");
    bool counted = true;
    for (size_t at = from; ok && at <= to; at += 64 << 10) {
      const size_t piece = std::min<size_t>(64 << 10, to + 1 - at);
      if (at + piece > to && counted) {
        --counts->now;
        counted = false;
      }
      ok = send_all(fd, body->substr(at, piece));
      if (at + piece <= to) std::this_thread::sleep_for(std::chrono::milliseconds(62));
    }
    if (counted) --counts->now;
  });
  auto q = open_queue(adaptive_small_options(dir_));
  DownloadOptions d;
  d.mirrors = {mirror_.url("/shared.bin")};
  Job job = submit(*q, source_.url("/shared.bin"), dir_ / "shared.bin", d);
  // Past the probe: 16 were tried, then fewer run once the others ended their asks, for two
  // windows of the measure. (A check that passes before the count settles is counted when it
  // does, the same way.)
  ASSERT_TRUE(
      wait_until([&] { return source_.peak_concurrent_bodies() >= 12; }, std::chrono::seconds(30)));
  ASSERT_TRUE(
      wait_until([&] { return source_.concurrent_bodies() <= 8; }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int source_kept = source_.concurrent_bodies();
  if (kAdaptiveCountIsChecked) {
    ASSERT_LE(q->id_to_job(job.id)->bytes, 8 << 20)
        << "the probe did not end before most of the file";
  }
  counts->answer_check = true;
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "shared.bin"), sha256_hex_of(r.body));
  EXPECT_GE(counts->ranges.load(), 1) << "the mirror never joined";
  if (!kAdaptiveCountIsChecked) return;
  EXPECT_GE(source_kept, 2);
  EXPECT_LE(counts->peak.load(), 5)
      << "the mirror got more connections than the source kept (" << source_kept << ")";
}

// A mirror that passed its check refuses every range with 503 while the job has no other
// connection to it: it gets no more of the job's connections for a while (the source takes
// the ranges), instead of being asked again at every turn of the engine.
TEST_F(Mirrors, AMirrorThatRefusesItsFirstRangeIsNotAskedAgainAtOnce) {
  Resource r = big(411, 8 << 20);
  source_.add("/data.bin", r);
  const std::string body = r.body;
  mirror_.set_handler("/data.bin", [body](const RequestLog& req, int fd) {
    if (!req.if_range.empty()) {  // a range, not the check
      send_all(
          fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    send_range(fd, req, body, "\"m1\"");
  });
  auto q = open_queue(options());
  Job j = run(*q, "/data.bin", "data.bin", {mirror_.url("/data.bin")});
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 1);
  int ranges = 0;
  for (const auto& rq : mirror_.requests_for("/data.bin")) ranges += !rq.if_range.empty();
  // The ranges started together (the mirror's host takes two of the four connections) are
  // all there may be.
  EXPECT_GE(ranges, 1);
  EXPECT_LE(ranges, 2) << "the mirror that refused was asked again while the source had room";
}

// The source is gone after a pause; the mirror passes its check, then refuses every range with
// 404. It was the last source left, but its refusal says nothing of the source's file: the
// attempt fails as retryable and the job is retried, not ended by a mirror's 404.
TEST_F(Mirrors, AMirrorsRefusalAsTheLastSourceLeftIsRetried) {
  Resource r = big(421, 2 << 20);
  source_.add("/data.bin", r);
  auto up = std::make_shared<std::atomic<bool>>(false);
  const std::string body = r.body;
  mirror_.set_handler("/data.bin", [up, body](const RequestLog& req, int fd) {
    if (!up->load() || !req.if_range.empty()) {  // down at first; then every range refused
      // ... after the source's own 404 is in, however loaded the machine: the mirror is then
      // the last source left, as this test means.
      if (up->load()) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      send_all(fd, std::string("HTTP/1.1 ") +
                       (up->load() ? "404 Not Found" : "503 Service Unavailable") +
                       "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    send_range(fd, req, body, "\"m1\"");
  });
  auto q = open_queue(options());
  Job job = pause_then_lose_the_source(*q);
  ASSERT_FALSE(HasFailure());
  up->store(true);
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_GE(j.attempts, 3) << "the mirror's 404 ended the job without a retry";
  bool named = false;
  for (const auto& e : job_events(*q, job.id)) {
    if (e.type == "download_retrying" &&
        e.payload.find(mirror_.url("/data.bin")) != std::string::npos &&
        e.payload.find("404") != std::string::npos)
      named = true;
  }
  EXPECT_TRUE(named) << "no retry after the mirror's 404";
  EXPECT_TRUE(std::filesystem::exists(dir_ / "data.bin.part")) << "the bytes so far were lost";
}

// A password in the job's URL stays out of the event that says the URL was dropped: the event
// names it as the job shows its source.
TEST_F(Mirrors, TheDroppedSourceOfAJobWithAPasswordIsNamedWithoutIt) {
  Resource gone;
  gone.status = 404;
  source_.add("/f.bin", gone);
  Resource r;
  r.body = make_body(300 << 10, 431);
  source_.add("/up/f.bin", r);  // the same origin: a job with a password takes no other
  auto q = open_queue(options());
  const std::string with_password =
      "http://user:s3cr3t@127.0.0.1:" + std::to_string(source_.port());
  DownloadOptions o;
  o.mirrors = {with_password.substr(0, 7) + with_password.substr(with_password.find('@') + 1) +
               "/up/f.bin"};
  Job job = submit(*q, with_password + "/f.bin", dir_ / "f.bin", o);
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(j.source.find("s3cr3t"), std::string::npos) << j.source;
  EXPECT_EQ(dropped(*q, j.id), std::vector<std::string>{j.source});
  for (const auto& e : job_events(*q, j.id)) {
    EXPECT_EQ(e.payload.find("s3cr3t"), std::string::npos) << e.type << ": " << e.payload;
  }
}

// The connection budget is full with another job's download when a resumed segmented job finds
// its source gone: its mirror is checked anyway (the job has nothing else running, and waiting
// for room could take as long as the other download), then serves the rest while the other
// download still runs.
TEST_F(Mirrors, AJobLeftWithNoSourceChecksItsMirrorWhenTheBudgetIsFull) {
  QueueOptions o = options();
  o.max_connections = 1;  // all the jobs together
  auto q = open_queue(o);
  Resource r = big(441, 4 << 20);
  source_.add("/data.bin", r);
  Job job = pause_then_lose_the_source(*q);
  ASSERT_FALSE(HasFailure());
  Resource m = r;
  m.rate_bytes_per_s = 0;
  m.etag = "\"mirror\"";
  mirror_.add("/data.bin", m);
  // Another download takes the one connection of the budget for about 30 s.
  Resource slow;
  slow.body = make_body(2 << 20, 442);
  slow.rate_bytes_per_s = 64 << 10;
  source_.add("/slow.bin", slow);
  Job other = submit(*q, source_.url("/slow.bin"), dir_ / "slow.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(other.id)->bytes > 0; }));
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = q->id_to_job(job.id)->status;
        return s == JobStatus::kCompleted || s == JobStatus::kError;
      },
      std::chrono::seconds(20)))
      << "the job waited for the other download's connection";
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(q->id_to_job(other.id)->status, JobStatus::kRunning);
  EXPECT_EQ(sha256_file(dir_ / "data.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(j.attempts, 2);  // the first, paused; the resume, which did not fail
  EXPECT_FALSE(segment_requests(mirror_.requests_for("/data.bin")).empty());
  EXPECT_TRUE(q->cancel_job(other.id).ok());
}

}  // namespace
}  // namespace fetchq::testing
