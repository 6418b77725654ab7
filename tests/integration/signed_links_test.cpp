// Signed links: a hub whose URL answers 302 to a CDN link that expires (403, or 410). Every
// request of a job — the first, each segment's, each resume's after a pause or a kill — goes to
// the job's own URL and follows the redirect afresh, so a link that has expired is never asked
// again. The in-process server plays both: the hub hands out a new link per request, and a link
// already used is expired as soon as a newer one is handed out (or at once, by the test, while
// the job is down), as a CDN whose signature timed out would.
#include <sys/socket.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include <SQLiteCpp/SQLiteCpp.h>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

constexpr size_t kBig = 24 << 20;  // over the 16 MiB segment threshold

// The hub at `source` and its CDN links /cdn/1, /cdn/2, ... on one TestServer. The state is
// shared with the server's handler, which may run until the server is gone.
class SignedHub {
 public:
  SignedHub(TestServer& server, std::string source, Resource file, int expired_status)
      : s_(std::make_shared<State>(server, std::move(file), expired_status)) {
    server.set_handler(std::move(source), [s = s_](const RequestLog&, int fd) {
      const std::string location = s->issue();
      const std::string head = "HTTP/1.1 302 Found\r\nLocation: " + location +
                               "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      size_t off = 0;
      while (off < head.size()) {
        const ssize_t w = ::send(fd, head.data() + off, head.size() - off, MSG_NOSIGNAL);
        if (w <= 0) return;
        off += static_cast<size_t>(w);
      }
    });
  }

  static std::string path_of(int n) { return "/cdn/" + std::to_string(n); }
  // The link number of a CDN path, 0 for any other path.
  static int number_of(const std::string& path) {
    return path.rfind("/cdn/", 0) == 0 ? std::stoi(path.substr(5)) : 0;
  }

  // Links handed out so far (the newest is /cdn/<issued()>).
  int issued() const {
    std::lock_guard lock(s_->mu);
    return s_->issued;
  }
  // Every link handed out so far expires now (the job is down long enough for its signature).
  void expire_all() {
    std::lock_guard lock(s_->mu);
    for (int k = 1; k <= s_->issued; ++k) s_->expire(k);
  }
  // Links handed out from now on serve at this rate.
  void set_rate(uint64_t bytes_per_s) {
    std::lock_guard lock(s_->mu);
    auto changed = std::make_shared<Resource>(*s_->file);
    changed->rate_bytes_per_s = bytes_per_s;
    s_->file = std::move(changed);
  }

  // The server's log of every CDN request, in arrival order.
  static std::vector<RequestLog> cdn_requests(const TestServer& server) {
    std::vector<RequestLog> out;
    for (auto& rq : server.requests()) {
      if (number_of(rq.path) > 0) out.push_back(std::move(rq));
    }
    return out;
  }

 private:
  struct State {
    State(TestServer& sv, Resource f, int st) : server(sv), expired_status(st) {
      f.etag = "\"v1\"";  // the same validator on every link, so If-Range matches
      file = std::make_shared<const Resource>(std::move(f));
    }
    TestServer& server;
    // Shared by every link: a copy of a large body per link would hold the hub's lock long
    // enough (seconds in a sanitizer build) for a waiting redirect to trip the stall timeout.
    std::shared_ptr<const Resource> file;
    int expired_status;
    mutable std::mutex mu;
    int issued = 0;
    std::map<int, bool> expired;  // link -> expired already

    void expire(int k) {
      if (expired[k]) return;
      expired[k] = true;
      Resource gone;
      gone.status = expired_status;
      server.add(path_of(k), gone);
    }
    // A new link, live before its redirect is sent. Each earlier link that has been asked
    // expires with it: only a link handed out and not yet followed (another connection between
    // the 302 and its GET) stays live, so any second request to a link meets the expired answer.
    std::string issue() {
      std::lock_guard lock(mu);
      const int n = ++issued;
      for (int k = 1; k < n; ++k) {
        if (!expired[k] && !server.requests_for(path_of(k)).empty()) expire(k);
      }
      server.add(path_of(n), file);
      return server.url(path_of(n));
    }
  };
  std::shared_ptr<State> s_;
};

class SignedLinks : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;

  static Resource file(size_t size, uint32_t seed, uint64_t rate) {
    Resource r;
    r.body = make_body(size, seed);
    r.rate_bytes_per_s = rate;
    return r;
  }

  // Every CDN request has its final status (an answer cut by the client sets it once the server
  // notices), and the log of CDN requests then.
  std::vector<RequestLog> settled_cdn_requests() {
    std::vector<RequestLog> reqs;
    EXPECT_TRUE(wait_until([&] {
      reqs = SignedHub::cdn_requests(server_);
      for (const auto& rq : reqs) {
        if (rq.status == 0) return false;
      }
      return true;
    }, std::chrono::seconds(10)));
    return reqs;
  }

  static std::string describe(const std::vector<RequestLog>& reqs) {
    std::string s;
    for (const auto& rq : reqs) s += "[" + rq.path + " " + rq.range + " " + std::to_string(rq.status) + "]";
    return s;
  }

  // What every CDN request in `reqs` must show: a link newer than `after`, asked once only,
  // answered (200 or 206, never the expired answer), one link per request to the hub.
  void expect_fresh_links(const std::vector<RequestLog>& reqs, int after, size_t hub_requests) {
    const std::string seen = describe(reqs);
    std::map<std::string, int> asked;
    for (const auto& rq : reqs) {
      EXPECT_GT(SignedHub::number_of(rq.path), after) << "a link from before: " << seen;
      EXPECT_TRUE(rq.status == 200 || rq.status == 206) << rq.path << " answered " << rq.status << ": " << seen;
      EXPECT_EQ(++asked[rq.path], 1) << rq.path << " asked again: " << seen;
    }
    EXPECT_EQ(reqs.size(), hub_requests) << "every request went through the hub: " << seen;
  }

  static int ranged(const std::vector<RequestLog>& reqs) {
    int n = 0;
    for (const auto& r : reqs) n += !r.range.empty();
    return n;
  }

  // A download of `size` bytes at 2 MiB/s over one connection, paused with over 1 MiB on
  // disk; the links expire while it is paused (with `expired_status`); resumed, it completes.
  void pause_expire_resume(int expired_status, uint32_t seed) {
    constexpr size_t kSize = 8 << 20;
    Resource r = file(kSize, seed, 2 << 20);
    SignedHub hub(server_, "/model.bin", r, expired_status);
    auto q = open_queue(fast_options(dir_));
    Job job = submit(*q, server_.url("/model.bin"), dir_ / "model.bin");
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes > (1 << 20); }));
    ASSERT_TRUE(q->pause_job(job.id).ok());
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->status == JobStatus::kPaused; }));
    // The paused transfer has let go of its connection.
    settled_cdn_requests();
    const int before = hub.issued();
    ASSERT_GE(before, 1);
    hub.expire_all();
    hub.set_rate(8 << 20);
    server_.reset_log();
    ASSERT_TRUE(q->resume_job(job.id).ok());
    ASSERT_TRUE(q->join(std::chrono::seconds(60)));
    Job j = *q->id_to_job(job.id);
    ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error_type.value_or("") << " " << j.error.value_or("");
    EXPECT_EQ(sha256_file(dir_ / "model.bin"), sha256_hex_of(r.body));
    // The resume asked the hub again, got a new link, and went on from where it was.
    const auto reqs = settled_cdn_requests();
    const std::string seen = describe(reqs);
    ASSERT_GE(reqs.size(), 1u) << seen;
    expect_fresh_links(reqs, before, server_.requests_for("/model.bin").size());
    uint64_t sent = 0;
    for (const auto& rq : reqs) {
      EXPECT_EQ(rq.range.rfind("bytes=", 0), 0u) << seen;
      EXPECT_NE(rq.range.rfind("bytes=0-", 0), 0u) << "from zero: " << seen;
      EXPECT_FALSE(rq.if_range.empty()) << seen;
      EXPECT_EQ(rq.status, 206) << seen;
      sent += rq.body_bytes_sent;
    }
    EXPECT_LT(sent, kSize) << seen;
    const auto events = job_events(*q, job.id);
    EXPECT_GE(count_type(events, "download_resumed"), 1u);
    EXPECT_EQ(count_type(events, "download_restarted"), 0u);
  }
};

TEST_F(SignedLinks, EverySegmentFollowsTheHubToAFreshLink) {
  Resource r = file(kBig, 81, 2 << 20);  // 4 connections at 2 MiB/s: about 3 s
  SignedHub hub(server_, "/model.bin", r, 403);
  QueueOptions o = fast_options(dir_);
  o.connections = 4;
  auto q = open_queue(o);
  Job job = submit(*q, server_.url("/model.bin"), dir_ / "model.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  Job j = *q->id_to_job(job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error_type.value_or("") << " " << j.error.value_or("");
  EXPECT_EQ(j.attempts, 1);
  EXPECT_EQ(sha256_file(dir_ / "model.bin"), sha256_hex_of(r.body));
  const auto reqs = settled_cdn_requests();
  expect_fresh_links(reqs, 0, server_.requests_for("/model.bin").size());
  EXPECT_GE(ranged(reqs), 3) << describe(reqs);
  for (const auto& rq : reqs) {
    if (!rq.range.empty()) {
      EXPECT_FALSE(rq.if_range.empty()) << describe(reqs);  // never spliced blind
    }
  }
  EXPECT_EQ(count_type(job_events(*q, job.id), "download_retrying"), 0u);
}

TEST_F(SignedLinks, AResumeAfterAPauseFollowsTheHubToAFreshLinkAndGoesOnWithRange) {
  pause_expire_resume(403, 82);
}

TEST_F(SignedLinks, ALinkThatExpiresWith410IsNeverAskedEither) {
  pause_expire_resume(410, 83);
}

// `fetchq get` of a segmented file, killed with SIGKILL once two segments have synced bytes;
// the links expire while it is down; run again, every segment goes through the hub.
TEST_F(SignedLinks, AfterAKillTheRerunFollowsTheHubToFreshLinksForEverySegment) {
  Resource r = file(kBig, 84, 2 << 20);
  SignedHub hub(server_, "/model.bin", r, 403);
  const std::string state = dir_ / "state.db";
  const std::vector<std::string> argv = {bin_path("fetchq"), "get", server_.url("/model.bin"), "-o",
                                         dir_ / "model.bin", "--state", state, "--quiet",
                                         "--connections", "4"};
  auto durable_rows = [&]() -> int64_t {
    if (!std::filesystem::exists(state)) return 0;
    try {
      SQLite::Database db(state, SQLite::OPEN_READONLY);
      return db.execAndGet("SELECT COUNT(*) FROM segments WHERE durable > 0").getInt64();
    } catch (const std::exception&) {
      return 0;
    }
  };
  {
    Process p(argv);
    ASSERT_TRUE(wait_until([&] { return durable_rows() >= 2; }, std::chrono::seconds(30),
                           std::chrono::milliseconds(50)));
    p.signal(SIGKILL);
    ASSERT_EQ(p.wait(), 128 + SIGKILL);
  }
  ASSERT_FALSE(std::filesystem::exists(dir_ / "model.bin"));
  settled_cdn_requests();
  const int before = hub.issued();
  ASSERT_GE(before, 2);
  hub.expire_all();
  hub.set_rate(8 << 20);
  server_.reset_log();
  {
    Process p(argv);
    ASSERT_EQ(p.wait(std::chrono::seconds(60)), 0);
  }
  EXPECT_EQ(sha256_file(dir_ / "model.bin"), sha256_hex_of(r.body));
  const auto reqs = settled_cdn_requests();
  const std::string seen = describe(reqs);
  expect_fresh_links(reqs, before, server_.requests_for("/model.bin").size());
  int past_zero = 0;
  for (const auto& rq : reqs) {
    EXPECT_FALSE(rq.range.empty()) << "not resumed: " << seen;
    EXPECT_FALSE(rq.if_range.empty()) << seen;
    EXPECT_EQ(rq.status, 206) << seen;
    past_zero += rq.range.rfind("bytes=0-", 0) != 0;
  }
  EXPECT_GE(past_zero, 2) << seen;
  SQLite::Database db(state, SQLite::OPEN_READONLY);
  EXPECT_GE(db.execAndGet("SELECT COUNT(*) FROM events WHERE type = 'download_resumed'").getInt64(), 1);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM events WHERE type = 'download_restarted'").getInt64(), 0);
}

}  // namespace
}  // namespace fetchq::testing
