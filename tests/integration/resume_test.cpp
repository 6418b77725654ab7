// Resume: Range with If-Range after drops, restarts, 416s, wrong offsets, short bodies, and the
// boot-id rule that picks the file's length (same boot) or the checkpoint (after a reboot).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>

#include <filesystem>

#include "integration/helpers.h"
#include "util/fs.h"

namespace fetchq::testing {
namespace {

class ResumeTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  std::string out() { return dir_ / "out.bin"; }

  // Runs one job to its end and returns it.
  Job run(const std::string& path, QueueOptions o = {}) {
    if (o.db_path.empty()) o = fast_options(dir_);
    auto q = open_queue(o);
    auto job = submit(*q, server_.url(path), out());
    EXPECT_TRUE(q->join(std::chrono::seconds(30)));
    events_ = job_events(*q, job.id);
    return *q->id_to_job(job.id);
  }
  std::vector<Event> events_;
};

TEST_F(ResumeTest, ADroppedConnectionResumesWithRangeAndIfRange) {
  Resource r;
  r.body = make_body(1 << 20, 11);
  r.drop_after = 400000;
  server_.add("/drop.bin", r);
  auto j = run("/drop.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/drop.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range, "bytes=400000-");
  EXPECT_EQ(reqs[1].if_range.empty(), false);
  EXPECT_EQ(count_type(events_, "download_retrying"), 1u);
  EXPECT_EQ(count_type(events_, "download_resumed"), 1u);
  EXPECT_EQ(j.attempts, 2);
}

TEST_F(ResumeTest, LastModifiedIsTheValidatorWithoutAnEtag) {
  Resource r;
  r.body = make_body(300000, 12);
  r.etag = "";
  r.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  r.drop_after = 100000;
  server_.add("/lm.bin", r);
  auto j = run("/lm.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted);
  auto reqs = server_.requests_for("/lm.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].if_range, "Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
}

TEST_F(ResumeTest, AServerThatIgnoresRangesMeansStartingOver) {
  Resource r;
  r.body = make_body(500000, 13);
  r.honour_range = false;
  r.drop_after = 200000;
  server_.add("/norange.bin", r);
  auto j = run("/norange.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  EXPECT_EQ(count_type(events_, "download_restarted"), 1u);
  EXPECT_EQ(j.bytes, 500000);
}

TEST_F(ResumeTest, AChangedEtagMeansStartingOver) {
  Resource r;
  r.body = make_body(500000, 14);
  r.etag_changes = true;
  r.drop_after = 200000;
  server_.add("/etag.bin", r);
  auto j = run("/etag.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/etag.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range, "bytes=200000-");
  EXPECT_EQ(count_type(events_, "download_restarted"), 1u);
}

TEST_F(ResumeTest, AWrongContentRangeStartIsNeverSpliced) {
  Resource r;
  r.body = make_body(400000, 15);
  r.drop_after = 100000;
  r.wrong_range_start = 50000;
  server_.add("/wrong.bin", r);
  auto j = run("/wrong.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  EXPECT_GE(count_type(events_, "download_restarted"), 1u);
  auto reqs = server_.requests_for("/wrong.bin");
  ASSERT_GE(reqs.size(), 3u);
  EXPECT_EQ(reqs.back().range, "");  // the last one started from zero
}

// Writes a whole response (head then body) to a raw handler's socket.
void send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
}

// A server whose first answer is cut after 100,000 bytes and whose answer to the first range
// request is `bad` (a head and body built from the file); later requests are answered honestly.
void serve_with_one_bad_206(TestServer& server, const std::string& path, const std::string& body,
                            std::function<std::string(const std::string&)> bad) {
  auto ranges = std::make_shared<std::atomic<int>>(0);
  server.set_handler(path, [body, bad, ranges](const RequestLog& req, int fd) {
    const std::string total = std::to_string(body.size());
    if (req.range.empty()) {
      send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + total +
                       "\r\nAccept-Ranges: bytes\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n" +
                       (ranges->load() == 0 ? body.substr(0, 100000) : body));
      return;
    }
    if (ranges->fetch_add(1) == 0) {
      send_all(fd, bad(body));
      return;
    }
    const size_t from = std::stoul(req.range.substr(6));
    send_all(fd, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(from) + "-" +
                     std::to_string(body.size() - 1) + "/" + total + "\r\nContent-Length: " +
                     std::to_string(body.size() - from) + "\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n" +
                     body.substr(from));
  });
}

// The bad 206 starts at 50,000 for a request from 100,000, yet its 300,000 bytes end exactly at
// the announced total: only the check of the start tells it from a good answer.
TEST_F(ResumeTest, A206StartingElsewhereButEndingAtTheTotalIsNeverSpliced) {
  const std::string body = make_body(400000, 31);
  serve_with_one_bad_206(server_, "/shifted.bin", body, [](const std::string& b) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 50000-349999/400000\r\n"
           "Content-Length: 300000\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n" +
           b.substr(50000, 300000);
  });
  auto j = run("/shifted.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(body));
  auto reqs = server_.requests_for("/shifted.bin");
  ASSERT_GE(reqs.size(), 3u);
  EXPECT_EQ(reqs[1].range, "bytes=100000-");
  EXPECT_EQ(reqs.back().range, "");  // started over after the bad answer
}

// A 206 that says it covers 100,000-199,999 of 400,000: its bytes are right but end early.
// Its head alone says so, so it is refused before its body is written (RangeMismatch) and the
// retry asks again from 100,000; the count of bytes on disk at the end is a later guard only.
TEST_F(ResumeTest, A206EndingBeforeTheTotalDoesNotComplete) {
  const std::string body = make_body(400000, 32);
  serve_with_one_bad_206(server_, "/early.bin", body, [](const std::string& b) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100000-199999/400000\r\n"
           "Content-Length: 100000\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n" +
           b.substr(100000, 100000);
  });
  auto j = run("/early.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(body));
  auto reqs = server_.requests_for("/early.bin");
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[1].range, "bytes=100000-");
  EXPECT_EQ(reqs[2].range, "bytes=100000-")
      << "the short 206's body was written before it was refused";
  std::vector<std::string> reasons;
  for (auto& e : events_) {
    if (e.type == "download_retrying") {
      reasons.push_back(nlohmann::json::parse(e.payload).value("reason", ""));
    }
  }
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_NE(reasons[1].find("RangeMismatch"), std::string::npos) << reasons[1];
  EXPECT_NE(reasons[1].find("ends before the last byte"), std::string::npos) << reasons[1];
}

// A 206 whose head is right (to the end of the file) but whose body, delimited by the closing
// connection, stops halfway: only the count of bytes on disk at the end can tell.
TEST_F(ResumeTest, A206WhoseBodyStopsEarlyDoesNotComplete) {
  const std::string body = make_body(400000, 33);
  serve_with_one_bad_206(server_, "/cut.bin", body, [](const std::string& b) {
    return "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100000-399999/400000\r\n"
           "ETag: \"e1\"\r\nConnection: close\r\n\r\n" +
           b.substr(100000, 100000);
  });
  auto j = run("/cut.bin");
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(body));
  auto reqs = server_.requests_for("/cut.bin");
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[2].range, "bytes=200000-");  // the good bytes of the short answer were kept
}

TEST_F(ResumeTest, AShortBodyIsAFailureNotASuccess) {
  Resource r;
  r.body = make_body(100000, 16);
  r.lie_length = 200000;
  server_.add("/short.bin", r);
  auto o = fast_options(dir_);
  o.max_attempts = 3;  // short body, 416 with another size, short body again: no progress
  auto j = run("/short.bin", o);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "IncompleteBody");
  EXPECT_FALSE(file_exists(out()));  // never renamed into place
}

// Puts a job in the state a crash leaves: a .part of `part_bytes` and a checkpoint.
int64_t crashed_job(const TempDir& dir, const std::string& url, const std::string& dest,
                    const std::string& body, int64_t part_bytes, int64_t checkpoint,
                    const std::string& boot_id, const std::string& etag,
                    const std::string& last_modified = "") {
  auto st = store::open(dir / "queue.db");
  EXPECT_TRUE(st.ok());
  auto& s = *st.value();
  store::NewJob nj;
  nj.request = {url, dest, {}};
  nj.download_path = dest;
  auto id = s.insert_jobs({nj}, "t").at(0).id;
  auto c = s.claim(1, 0, std::nullopt, "t").at(0);
  write_file(dest + ".part", body.substr(0, static_cast<size_t>(part_bytes)));
  struct stat sb {};
  EXPECT_EQ(::stat((dest + ".part").c_str(), &sb), 0);
  EXPECT_TRUE(s.record_part(id, c.attempt, dest, sb.st_dev, sb.st_ino,
                            util::birth_time_ns(AT_FDCWD, (dest + ".part").c_str())));
  store::StartInfo info{dest, static_cast<int64_t>(body.size()), etag, last_modified, 0, "", "",
                        ""};
  EXPECT_TRUE(s.set_started(id, c.attempt, info));
  // Every byte of the .part was written by the job (its progress says so); `checkpoint` synced.
  EXPECT_TRUE(s.set_progress(id, c.attempt, part_bytes, static_cast<int64_t>(body.size())));
  EXPECT_TRUE(s.set_checkpoint(id, c.attempt, checkpoint, boot_id));
  return id;  // left "running", as a kill -9 leaves it
}

TEST_F(ResumeTest, AfterAProcessCrashTheFileLengthIsTrusted) {
  Resource r;
  r.body = make_body(600000, 17);
  r.etag = "\"fixed-etag\"";
  server_.add("/crash.bin", r);
  crashed_job(dir_, server_.url("/crash.bin"), out(), r.body, 450000, 100000, util::boot_id(), r.etag);
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->list_jobs().at(0).status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/crash.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].range, "bytes=450000-");
  EXPECT_EQ(reqs[0].if_range, "\"fixed-etag\"");
  EXPECT_EQ(server_.total_body_bytes_sent(), 150000u);
}

TEST_F(ResumeTest, AfterARebootOnlyTheCheckpointIsTrusted) {
  Resource r;
  r.body = make_body(600000, 18);
  r.etag = "\"fixed-etag\"";
  server_.add("/reboot.bin", r);
  crashed_job(dir_, server_.url("/reboot.bin"), out(), r.body, 450000, 100000, "another-boot", r.etag);
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->list_jobs().at(0).status, JobStatus::kCompleted);
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/reboot.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].range, "bytes=100000-");
}

// The file changed on the server while the job was down, and the server ignores If-Range: it
// answers the resume's range with a 206 of its new version, under a new ETag. Those bytes are
// never spliced onto the old ones: the job starts over and ends with the new file, whole.
TEST_F(ResumeTest, A206NamingAnotherETagThanIfRangeIsNeverSpliced) {
  const std::string old_body = make_body(600000, 19);
  Resource now;
  now.body = make_body(600000, 20);
  now.etag = "\"v2\"";
  now.honour_if_range = false;
  server_.add("/changed.bin", now);
  crashed_job(dir_, server_.url("/changed.bin"), out(), old_body, 450000, 100000, util::boot_id(),
              "\"v1\"");
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  Job j = q->list_jobs().at(0);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(now.body)) << "another version was spliced in";
  auto reqs = server_.requests_for("/changed.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].range, "bytes=450000-");
  EXPECT_EQ(reqs[0].if_range, "\"v1\"");
  EXPECT_EQ(reqs[1].range, "");  // started over
  EXPECT_EQ(count_type(job_events(*q, j.id), "download_restarted"), 1u);
}

// The same with Last-Modified as the only validator.
TEST_F(ResumeTest, A206NamingAnotherLastModifiedThanIfRangeIsNeverSpliced) {
  const std::string old_body = make_body(600000, 21);
  Resource now;
  now.body = make_body(600000, 22);
  now.etag = "";
  now.last_modified = "Thu, 03 Dec 2026 10:00:00 GMT";
  now.honour_if_range = false;
  server_.add("/changed.bin", now);
  crashed_job(dir_, server_.url("/changed.bin"), out(), old_body, 450000, 100000, util::boot_id(),
              "", "Wed, 02 Dec 2026 10:00:00 GMT");
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  Job j = q->list_jobs().at(0);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(now.body)) << "another version was spliced in";
  auto reqs = server_.requests_for("/changed.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].if_range, "Wed, 02 Dec 2026 10:00:00 GMT");
  EXPECT_EQ(reqs[1].range, "");
}

// A 206 that names no validator at all says nothing of the version: it is taken as before.
TEST_F(ResumeTest, A206NamingNoValidatorIsTakenAsTheSameFile) {
  Resource r;
  r.body = make_body(600000, 23);
  r.etag = "";
  r.honour_if_range = false;
  server_.add("/plain.bin", r);
  crashed_job(dir_, server_.url("/plain.bin"), out(), r.body, 450000, 100000, util::boot_id(),
              "\"v1\"");
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  Job j = q->list_jobs().at(0);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/plain.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].range, "bytes=450000-");
}

TEST_F(ResumeTest, A416WithTheRightSizeMeansTheFileIsWhole) {
  Resource r;
  r.body = make_body(200000, 19);
  r.etag = "\"fixed-etag\"";
  r.on416 = Resource::On416::kWithContentRange;
  server_.add("/whole.bin", r);
  crashed_job(dir_, server_.url("/whole.bin"), out(), r.body, 200000, 200000, util::boot_id(), r.etag);
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->list_jobs().at(0);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/whole.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].status, 416);
}

TEST_F(ResumeTest, A416WithoutContentRangeMeansStartingOver) {
  Resource r;
  r.body = make_body(200000, 20);
  r.etag = "\"fixed-etag\"";
  r.on416 = Resource::On416::kWithoutContentRange;
  server_.add("/nocr.bin", r);
  // A .part longer than the file: the server answers 416 and gives no size.
  std::string longer = r.body + "extra bytes";
  crashed_job(dir_, server_.url("/nocr.bin"), out(), longer, static_cast<int64_t>(longer.size()),
              static_cast<int64_t>(longer.size()), util::boot_id(), r.etag);
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->list_jobs().at(0);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(out()), sha256_hex_of(r.body));
  auto reqs = server_.requests_for("/nocr.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].status, 416);
  EXPECT_EQ(reqs[1].range, "");
}

TEST_F(ResumeTest, ChecksumIsVerifiedBeforeTheRename) {
  Resource r;
  r.body = make_body(100000, 21);
  server_.add("/sum.bin", r);
  auto q = open_queue(fast_options(dir_));
  DownloadOptions good;
  good.sha256 = sha256_hex_of(r.body);
  auto a = submit(*q, server_.url("/sum.bin"), dir_ / "good.bin", good);
  DownloadOptions bad;
  bad.sha256 = std::string(64, '0');
  auto b = submit(*q, server_.url("/sum.bin"), dir_ / "bad.bin", bad);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(q->id_to_job(a.id)->status, JobStatus::kCompleted);
  auto jb = q->id_to_job(b.id);
  EXPECT_EQ(jb->status, JobStatus::kError);
  EXPECT_EQ(jb->error_type.value_or(""), "ChecksumMismatch");
  EXPECT_FALSE(file_exists(dir_ / "bad.bin"));
}

TEST_F(ResumeTest, PassingHttpFailuresAreRetriedAndLastingOnesAreNot) {
  Resource busy;
  busy.status = 503;
  busy.retry_after = "0";
  server_.add("/busy.bin", busy);
  auto o = fast_options(dir_);
  o.max_attempts = 3;
  auto j = run("/busy.bin", o);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "HTTPError(503 Service Unavailable)");
  EXPECT_EQ(server_.requests_for("/busy.bin").size(), 3u);
  EXPECT_EQ(count_type(events_, "download_retrying"), 2u);
  EXPECT_EQ(count_type(events_, "download_error"), 1u);
}

}  // namespace
}  // namespace fetchq::testing

namespace fetchq::testing {
namespace {

TEST(FaultMatrix, AGzipEncodedBodyIsStoredAsSentAndItsLengthChecked) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(50000, 61);  // stands for compressed bytes: fetchq asked for identity
  r.content_encoding = "gzip";
  server.add("/z.bin", r);
  auto q = open_queue(fast_options(dir));
  auto job = submit(*q, server.url("/z.bin"), dir / "z.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_EQ(sha256_file(dir / "z.bin"), sha256_hex_of(r.body));  // not "decoded"
  EXPECT_EQ(server.requests_for("/z.bin").at(0).accept_encoding, "identity");
}

// A response whose Content-Length is not one length (two lines that disagree, a list of two,
// a number too big to hold) does not say where its body ends: no file is made of it, whatever
// the bytes that came; the job ends with BadResponseHeader after its retries.
TEST(FaultMatrix, AContentLengthThatIsNotOneLengthKeepsNoFile) {
  for (const std::string lengths :
       {"Content-Length: 100\r\nContent-Length: 50\r\n", "Content-Length: 100, 50\r\n",
        "Content-Length: 99999999999999999999\r\n"}) {
    TempDir dir;
    TestServer server;
    server.set_handler("/f.bin", [lengths](const RequestLog&, int fd) {
      send_all(fd, "HTTP/1.1 200 OK\r\n" + lengths + "Connection: close\r\n\r\n" +
                       std::string(100, 'x'));
    });
    auto q = open_queue(fast_options(dir));
    auto job = submit(*q, server.url("/f.bin"), dir / "f.bin");
    ASSERT_TRUE(q->join(std::chrono::seconds(30)));
    Job j = *q->id_to_job(job.id);
    EXPECT_EQ(j.status, JobStatus::kError) << lengths;
    EXPECT_EQ(j.error_type.value_or(""), "BadResponseHeader") << lengths;
    EXPECT_FALSE(file_exists(dir / "f.bin")) << lengths;
  }
}

TEST(FaultMatrix, RedirectLoopsAndLongChainsEnd) {
  TempDir dir;
  TestServer server;
  Resource a, b;
  a.redirect_to = "/loop-b";
  b.redirect_to = "/loop-a";
  server.add("/loop-a", a);
  server.add("/loop-b", b);
  for (int i = 0; i < 30; ++i) {
    Resource hop;
    hop.redirect_to = "/chain" + std::to_string(i + 1);
    server.add("/chain" + std::to_string(i), hop);
  }
  Resource end;
  end.body = "the end";
  server.add("/chain30", end);
  auto q = open_queue(fast_options(dir));
  auto loop = submit(*q, server.url("/loop-a"), dir / "loop.bin");
  auto chain = submit(*q, server.url("/chain0"), dir / "chain.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  for (auto id : {loop.id, chain.id}) {
    auto j = q->id_to_job(id);
    EXPECT_EQ(j->status, JobStatus::kError);
    EXPECT_EQ(j->error_type.value_or(""), "TooManyRedirects");
  }
  EXPECT_LE(server.requests().size(), 22u);  // at most 10 redirects each, and no retry
  EXPECT_FALSE(file_exists(dir / "loop.bin"));
  EXPECT_FALSE(file_exists(dir / "chain.bin"));
}

TEST(FaultMatrix, EndlessServiceUnavailableEnds) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.status = 503;
  server.add("/down", r);
  auto o = fast_options(dir);
  o.max_attempts = 4;
  auto q = open_queue(o);
  auto job = submit(*q, server.url("/down"), dir / "down.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->attempts, 4);
  EXPECT_EQ(server.requests_for("/down").size(), 4u);
}

}  // namespace
}  // namespace fetchq::testing

namespace fetchq::testing {
namespace {

// Found by Chaos: killed after the rename and before the commit, a job came back as
// DestinationExists for its own whole file.
TEST(CrashRecovery, AFileRenamedJustBeforeACrashIsRecognisedAsTheJobsOwn) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(100000, 71);
  server.add("/done.bin", r);
  {
    auto st = store::open(dir / "queue.db");
    ASSERT_TRUE(st.ok());
    auto& s = *st.value();
    store::NewJob nj;
    nj.request = {server.url("/done.bin"), dir / "done.bin", {}};
    nj.download_path = dir / "done.bin";
    auto id = s.insert_jobs({nj}, "t").at(0).id;
    auto c = s.claim(1, 0, std::nullopt, "t").at(0);
    ASSERT_TRUE(s.seal(id, c.attempt, dir / "done.bin", 100000, "any-boot"));
    write_file(dir / "done.bin", r.body);  // renamed into place; the commit never happened
  }
  auto q = open_queue(fast_options(dir));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->list_jobs().at(0);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(j.bytes, 100000);
  EXPECT_TRUE(server.requests().empty());
  EXPECT_EQ(count_type(job_events(*q, j.id), "download_complete"), 1u);
  EXPECT_EQ(sha256_file(dir / "done.bin"), sha256_hex_of(r.body));
}

// A sealed job whose .part identity is on record: the file at its path counts as the job's
// only if it is that very file (a rename or link keeps the inode), whatever its size says.
class SealedRecovery : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  std::string body_ = make_body(50000, 73);

  // A job claimed, its .part recorded with the identity of `identity_of`, and sealed.
  void seal_with_identity_of(const std::string& identity_of) {
    Resource r;
    r.body = body_;
    server_.add("/sealed.bin", r);
    auto st = store::open(dir_ / "queue.db");
    ASSERT_TRUE(st.ok());
    auto& s = *st.value();
    store::NewJob nj;
    nj.request = {server_.url("/sealed.bin"), dir_ / "sealed.bin", {}};
    nj.download_path = dir_ / "sealed.bin";
    auto id = s.insert_jobs({nj}, "t").at(0).id;
    auto c = s.claim(1, 0, std::nullopt, "t").at(0);
    struct stat sb {};
    ASSERT_EQ(::lstat(identity_of.c_str(), &sb), 0);
    ASSERT_TRUE(s.record_part(id, c.attempt, dir_ / "sealed.bin", sb.st_dev, sb.st_ino,
                              util::birth_time_ns(AT_FDCWD, identity_of.c_str())));
    ASSERT_TRUE(
        s.seal(id, c.attempt, dir_ / "sealed.bin", static_cast<int64_t>(body_.size()), "any-boot"));
  }
};

TEST_F(SealedRecovery, TheRecordedFileAtThePathIsCompletedWithoutADownload) {
  write_file(dir_ / "sealed.bin", body_);  // linked into place; the commit never happened
  seal_with_identity_of(dir_ / "sealed.bin");
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->list_jobs().at(0);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_TRUE(server_.requests().empty());
}

// The sealed file never got its name (it was lost with the crash), and someone else's file of
// the same size is there now: it is not taken for the job's.
TEST_F(SealedRecovery, ASameSizeFileThatIsNotTheRecordedOneIsNotTakenForTheJobs) {
  write_file(dir_ / "lost", body_);
  seal_with_identity_of(dir_ / "lost");
  write_file(dir_ / "sealed.bin", std::string(body_.size(), 'u'));  // the user's, made later
  ASSERT_EQ(::unlink((dir_ / "lost").c_str()), 0);
  auto q = open_queue(fast_options(dir_));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->list_jobs().at(0);
  EXPECT_EQ(j.status, JobStatus::kError) << "completed with someone else's file";
  EXPECT_EQ(j.error_type.value_or(""), "DestinationExists");
  EXPECT_EQ(read_file(dir_ / "sealed.bin"), std::string(body_.size(), 'u'));
}

TEST(CrashRecovery, AnUnsealedFileAtThePathIsNotTakenForTheJobs) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(1000, 72);
  server.add("/other.bin", r);
  {
    auto st = store::open(dir / "queue.db");
    ASSERT_TRUE(st.ok());
    store::NewJob nj;
    nj.request = {server.url("/other.bin"), dir / "other.bin", {}};
    nj.download_path = dir / "other.bin";
    st.value()->insert_jobs({nj}, "t");
    st.value()->claim(1, 0, std::nullopt, "t");
    write_file(dir / "other.bin", std::string(1000, 'u'));  // the user's file, same size
  }
  auto q = open_queue(fast_options(dir));
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->list_jobs().at(0);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "DestinationExists");
  EXPECT_EQ(read_file(dir / "other.bin"), std::string(1000, 'u'));
}

}  // namespace
}  // namespace fetchq::testing

namespace fetchq::testing {
namespace {

TEST(FaultMatrix, FailingTooLongWithoutProgressEndsTheJob) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.status = 503;
  server.add("/down", r);
  auto o = fast_options(dir);
  o.max_attempts = 1000;  // only the time limit can end it
  o.retry_base_delay = std::chrono::milliseconds(50);
  o.retry_max_delay = std::chrono::milliseconds(50);
  o.give_up_after = std::chrono::milliseconds(400);
  auto q = open_queue(o);
  auto job = submit(*q, server.url("/down"), dir / "down.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  EXPECT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "HTTPError(503 Service Unavailable)");
  EXPECT_GE(j->attempts, 3);
  EXPECT_LT(j->attempts, 100);
}

TEST(FaultMatrix, APartPathPlantedAsASymbolicLinkIsNotFollowed) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "payload";
  server.add("/x.bin", r);
  write_file(dir / "target", "precious");
  ASSERT_EQ(::symlink((dir / "target").c_str(), (dir / "x.bin.part").c_str()), 0);
  auto q = open_queue(fast_options(dir));
  auto job = submit(*q, server.url("/x.bin"), dir / "x.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  EXPECT_EQ(j->status, JobStatus::kError);
  // Says what was refused and why, not "Too many levels of symbolic links".
  EXPECT_NE(j->error.value_or("").find("x.bin.part exists (a symbolic link, never followed)"), std::string::npos)
      << j->error.value_or("");
  EXPECT_EQ(read_file(dir / "target"), "precious");
  EXPECT_FALSE(file_exists(dir / "x.bin"));
}

}  // namespace
}  // namespace fetchq::testing
