// set_url / `fetchq set-url`: a job given another URL keeps its bytes only when the new server
// has the same file, and never carries its secrets to another host.
#include <filesystem>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

class SetUrl : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;

  // set_url once the paused attempt has let go (until then it answers "try again").
  static Result<Job> set_url_settled(DownloadQueue& q, int64_t id, const std::string& url) {
    Result<Job> r = make_error(ErrorCode::kInternal, "not tried");
    wait_until([&] {
      r = q.set_url(id, url);
      return r.ok() || r.error().message.find("try again") == std::string::npos;
    }, std::chrono::seconds(10), std::chrono::milliseconds(5));
    return r;
  }

  // Starts a throttled download of `body` from /old.bin and pauses it with over 1 MiB synced.
  Job paused_midway(DownloadQueue& q, const std::string& body, DownloadOptions o = {}) {
    Resource r;
    r.body = body;
    r.rate_bytes_per_s = 2 << 20;
    server_.add("/old.bin", r);
    Job j = submit(q, server_.url("/old.bin"), dir_ / "f.bin", o);
    EXPECT_TRUE(wait_until([&] { return q.id_to_job(j.id)->bytes > (1 << 20); }));
    EXPECT_TRUE(q.pause_job(j.id).ok());
    EXPECT_TRUE(wait_until([&] { return std::filesystem::exists(dir_ / "f.bin.part"); }));
    return *q.id_to_job(j.id);
  }
};

TEST_F(SetUrl, TheSameFileElsewhereKeepsTheBytesSoFar) {
  const std::string body = make_body(4 << 20, 101);
  auto q = open_queue(fast_options(dir_));
  Job j = paused_midway(*q, body);
  Resource moved;
  moved.body = body;  // the same bytes, so the same ETag
  server_.add("/new.bin", moved);
  auto r = set_url_settled(*q, j.id, server_.url("/new.bin"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->source, server_.url("/new.bin"));
  EXPECT_EQ(r->status, JobStatus::kPaused);
  ASSERT_TRUE(q->resume_job(j.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  auto done = q->id_to_job(j.id);
  ASSERT_EQ(done->status, JobStatus::kCompleted) << done->error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(body));
  auto reqs = server_.requests_for("/new.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].range.rfind("bytes=", 0), 0u);
  EXPECT_NE(reqs[0].range, "bytes=0-");
  EXPECT_FALSE(reqs[0].if_range.empty());
  EXPECT_LT(reqs[0].body_bytes_sent, body.size() - (1 << 20));  // the synced bytes not again
  EXPECT_EQ(count_type(job_events(*q, j.id), "download_restarted"), 0u);
}

TEST_F(SetUrl, AnotherFileThereStartsOverAndSaysWhy) {
  auto q = open_queue(fast_options(dir_));
  Job j = paused_midway(*q, make_body(4 << 20, 102));
  Resource other;
  other.body = make_body(3 << 20, 103);  // other bytes and size: another ETag
  server_.add("/other.bin", other);
  ASSERT_TRUE(set_url_settled(*q, j.id, server_.url("/other.bin")).ok());
  ASSERT_TRUE(q->resume_job(j.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  auto done = q->id_to_job(j.id);
  ASSERT_EQ(done->status, JobStatus::kCompleted) << done->error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "f.bin"), sha256_hex_of(other.body));  // never a mixed file
  EXPECT_EQ(done->total_bytes, static_cast<int64_t>(other.body.size()));
  EXPECT_GE(count_type(job_events(*q, j.id), "download_restarted"), 1u);
}

TEST_F(SetUrl, WithoutAValidatorTheBytesAreDroppedAtOnce) {
  auto q = open_queue(fast_options(dir_));
  Resource r;
  r.body = make_body(4 << 20, 104);
  r.etag = "";  // nothing to check a new source against
  r.rate_bytes_per_s = 2 << 20;
  server_.add("/blind.bin", r);
  Job j = submit(*q, server_.url("/blind.bin"), dir_ / "b.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(j.id)->bytes > (1 << 20); }));
  ASSERT_TRUE(q->pause_job(j.id).ok());
  Resource same = r;
  same.rate_bytes_per_s = 0;
  server_.add("/blind2.bin", same);
  auto changed = set_url_settled(*q, j.id, server_.url("/blind2.bin"));
  ASSERT_TRUE(changed.ok()) << changed.error().message;
  EXPECT_EQ(changed->bytes, 0);
  auto events = job_events(*q, j.id);
  ASSERT_EQ(count_type(events, "download_restarted"), 1u);
  ASSERT_TRUE(q->resume_job(j.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  EXPECT_EQ(q->id_to_job(j.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(dir_ / "b.bin"), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/blind2.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].range.empty() || reqs[0].range == "bytes=0-") << reqs[0].range;
}

TEST_F(SetUrl, AWeakEtagIsNoValidatorAndAStoppingAttemptIsWaitedFor) {
  auto q = open_queue(fast_options(dir_));
  Resource r;
  r.body = make_body(4 << 20, 108);
  r.etag = "W/\"weak\"";  // If-Range cannot use it: the resume would be unchecked
  r.rate_bytes_per_s = 2 << 20;
  server_.add("/weak.bin", r);
  Resource other;
  other.body = make_body(4 << 20, 109);
  other.etag = "W/\"weak\"";
  server_.add("/other.bin", other);
  Job j = submit(*q, server_.url("/weak.bin"), dir_ / "w.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(j.id)->bytes > (1 << 20); }));
  ASSERT_TRUE(q->pause_job(j.id).ok());
  // At once: the paused attempt may still be stopping, and then the change must wait for it
  // (its last checkpoint of the old file would land after the reset otherwise).
  Result<Job> changed = make_error(ErrorCode::kInternal, "not tried");
  int refused = 0;
  ASSERT_TRUE(wait_until([&] {
    changed = q->set_url(j.id, server_.url("/other.bin"));
    if (!changed.ok()) {
      EXPECT_EQ(changed.error().code, ErrorCode::kWrongState) << changed.error().message;
      EXPECT_NE(changed.error().message.find("try again"), std::string::npos) << changed.error().message;
      ++refused;
    }
    return changed.ok();
  }, std::chrono::seconds(10), std::chrono::milliseconds(5)));
  EXPECT_EQ(changed->bytes, 0) << "refused " << refused << " times first";
  EXPECT_EQ(count_type(job_events(*q, j.id), "download_restarted"), 1u);
  ASSERT_TRUE(q->resume_job(j.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  ASSERT_EQ(q->id_to_job(j.id)->status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(dir_ / "w.bin"), sha256_hex_of(other.body));  // never a mixed file
}

TEST_F(SetUrl, RunningCompletedUnknownAndBadUrlsAreRefused) {
  auto q = open_queue(fast_options(dir_));
  Resource slow;
  slow.body = make_body(4 << 20, 105);
  slow.rate_bytes_per_s = 1 << 20;
  server_.add("/slow.bin", slow);
  Job running = submit(*q, server_.url("/slow.bin"), dir_ / "s.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(running.id)->status == JobStatus::kRunning; }));
  auto r = q->set_url(running.id, server_.url("/elsewhere.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kWrongState);
  EXPECT_NE(r.error().message.find("pause it first"), std::string::npos) << r.error().message;
  EXPECT_EQ(q->id_to_job(running.id)->source, server_.url("/slow.bin"));
  r = q->set_url(999, server_.url("/x.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(q->pause_job(running.id).ok());
  for (const char* bad : {"ftp://127.0.0.1/x", "not a url", "file:///etc/passwd"}) {
    r = q->set_url(running.id, bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().code, ErrorCode::kWrongState) << bad;  // the URL is what is wrong
  }
  ASSERT_TRUE(q->cancel_job(running.id).ok());
  r = q->set_url(running.id, server_.url("/x.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kWrongState);
}

TEST_F(SetUrl, AJobWithSecretsKeepsItsHost) {
  auto q = open_queue(fast_options(dir_));
  DownloadOptions o;
  o.headers = {{"Authorization", "Bearer s3cr3t-value"}};
  Job j = paused_midway(*q, make_body(4 << 20, 106), o);
  // localhost is another host than 127.0.0.1 as far as a secret is concerned.
  std::string other = server_.url("/new.bin");
  other.replace(other.find("127.0.0.1"), 9, "localhost");
  auto r = set_url_settled(*q, j.id, other);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("never sent elsewhere"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("s3cr3t"), std::string::npos);
  // Any header may be a credential (an API key in a header of its own): it stays on its host.
  DownloadOptions k;
  k.headers = {{"X-Api-Key", "k3y-value"}};
  Resource keyed;
  keyed.body = make_body(4 << 20, 110);
  keyed.rate_bytes_per_s = 1 << 20;
  server_.add("/keyed.bin", keyed);
  Job kp = submit(*q, server_.url("/keyed.bin"), dir_ / "k.bin", k);
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(kp.id)->bytes > 0; }));
  ASSERT_TRUE(q->pause_job(kp.id).ok());
  Result<Job> refused = make_error(ErrorCode::kInternal, "not tried");
  ASSERT_TRUE(wait_until([&] {  // past "still letting go" while the pause stops the transfer
    refused = q->set_url(kp.id, other);
    return !refused.ok() && refused.error().code != ErrorCode::kWrongState;
  }));
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument) << refused.error().message;
  EXPECT_EQ(refused.error().message.find("k3y-value"), std::string::npos);
  // The same scheme, host and port: fine, and the header goes along.
  Resource same;
  same.body = make_body(4 << 20, 106);
  server_.add("/new.bin", same);
  ASSERT_TRUE(set_url_settled(*q, j.id, server_.url("/new.bin")).ok());
  ASSERT_TRUE(q->resume_job(j.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  EXPECT_EQ(q->id_to_job(j.id)->status, JobStatus::kCompleted);
  auto reqs = server_.requests_for("/new.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].authorization, "Bearer s3cr3t-value");
}

TEST_F(SetUrl, TheCommandLineSpeaksToTheDaemon) {
  const std::string sock = dir_ / "d.sock";
  Process d({bin_path("fetchqd"), "--db", dir_ / "q.db", "--socket", sock}, "", dir_ / "d.log");
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(sock); }));
  Resource r;
  r.body = make_body(100000, 107);
  r.status = 404;
  server_.add("/gone.bin", r);
  Resource fine;
  fine.body = make_body(100000, 107);
  server_.add("/fine.bin", fine);
  auto fq = [&](std::vector<std::string> args) {
    args.insert(args.begin(), bin_path("fetchq"));
    args.push_back("--socket");
    args.push_back(sock);
    return run_capture(args, dir_ / "o", dir_ / "e", std::chrono::seconds(30));
  };
  ASSERT_EQ(fq({"add", server_.url("/gone.bin"), "-d", dir_.path()}).rc, 0);
  EXPECT_EQ(fq({"wait", "1"}).rc, 1);  // 404: failed
  auto bad = fq({"set-url", "1", "ftp://x/y"});
  EXPECT_EQ(bad.rc, 2) << bad.err;
  auto unknown = fq({"set-url", "7", server_.url("/fine.bin")});
  EXPECT_EQ(unknown.rc, 4) << unknown.err;
  auto ok = fq({"set-url", "1", server_.url("/fine.bin")});
  ASSERT_EQ(ok.rc, 0) << ok.err;
  EXPECT_NE(ok.out.find("job 1 (error) now fetches " + server_.url("/fine.bin")), std::string::npos) << ok.out;
  ASSERT_EQ(fq({"retry", "1"}).rc, 0);
  EXPECT_EQ(fq({"wait", "1"}).rc, 0);
  EXPECT_EQ(read_file(dir_ / "fine.bin"), fine.body);  // never named before: named after the new URL
}

}  // namespace
}  // namespace fetchq::testing
