// Ownership of .part files: a job writes only a .part it created (O_EXCL, identity recorded),
// never a user's file, another job's file or a link planted in its place, and after a stop it
// keeps no byte of its .part that it did not write itself.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <SQLiteCpp/SQLiteCpp.h>

#include "integration/helpers.h"
#include "support/process.h"

namespace fetchq::testing {
namespace {

using namespace std::chrono_literals;

std::string make_body(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

Job wait_end(DownloadQueue& q, int64_t id) {
  EXPECT_TRUE(wait_until(
      [&] {
        auto j = q.id_to_job(id);
        return j && (j->status == JobStatus::kCompleted || j->status == JobStatus::kError);
      },
      30s));
  return *q.id_to_job(id);
}

// -- Item: a .part the job did not create is never taken over.

TEST(Ownership, AUsersFileNamedLikeThePartIsLeftAlone) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "the server's report";
  server.add("/report", r);
  write_file(dir / "report.part", "the user's own notes");
  auto q = open_queue(fast_options(dir));
  auto job = submit(*q, server.url("/report"), std::string(dir / "") + "/");
  auto j = wait_end(*q, job.id);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "DestinationExists");
  EXPECT_NE(j.error.value_or("").find("report.part exists"), std::string::npos)
      << j.error.value_or("");
  EXPECT_EQ(read_file(dir / "report.part"), "the user's own notes");
  EXPECT_FALSE(file_exists(dir / "report"));
}

TEST(Ownership, WithRenameAForeignPartMeansTheNextName) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = "the server's report";
  server.add("/report", r);
  write_file(dir / "report.part", "the user's own notes");
  auto q = open_queue(fast_options(dir));
  DownloadOptions o;
  o.if_exists = IfExists::kRename;
  auto job = submit(*q, server.url("/report"), std::string(dir / "") + "/", o);
  auto j = wait_end(*q, job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_NE(j.download_path.value_or(""), std::string(dir / "report"));
  EXPECT_EQ(read_file(j.download_path.value_or("")), r.body);
  EXPECT_EQ(read_file(dir / "report.part"), "the user's own notes");
}

// --if-exists rename, and a file of the user's takes the name while the job is paused: the
// resume goes to a numbered name, from zero, and the job's own .part under the old name is
// removed rather than left on disk with nothing to clean it up. The user's file is untouched.
TEST(Ownership, WithRenameANameTakenWhilePausedMeansTheNextNameAndNoStrayPart) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(1200000, 5);
  r.rate_bytes_per_s = 600000;
  server.add("/x.bin", r);
  auto q = open_queue(fast_options(dir));
  DownloadOptions o;
  o.if_exists = IfExists::kRename;
  auto job = submit(*q, server.url("/x.bin"), std::string(dir / "") + "/", o);
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes > 100000; }));
  ASSERT_TRUE(q->pause_job(job.id).ok());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->status == JobStatus::kPaused; }));
  ASSERT_TRUE(wait_until([&] { return file_exists(dir / "x.bin.part"); }));
  write_file(dir / "x.bin", "the user's file");
  ASSERT_TRUE(q->resume_job(job.id).ok());
  auto j = wait_end(*q, job.id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(j.download_path.value_or(""), std::string(dir / "x.1.bin"));
  EXPECT_EQ(sha256_file(dir / "x.1.bin"), sha256_hex_of(r.body));
  EXPECT_EQ(read_file(dir / "x.bin"), "the user's file");
  EXPECT_FALSE(file_exists(dir / "x.bin.part")) << "the job's own .part was left behind";
  EXPECT_FALSE(file_exists(dir / "x.1.bin.part"));
}

// --if-exists rename, and the name is taken while the body is still coming: the rename into
// place finds it taken, and the job goes on by itself under a numbered name (from zero), leaving
// no .part; with the default policy the job fails and its .part stays for the user.
TEST(Ownership, WithRenameANameTakenWhileDownloadingMeansTheNextName) {
  for (IfExists policy : {IfExists::kRename, IfExists::kError}) {
    TempDir dir;
    TestServer server;
    Resource r;
    r.body = make_body(600000, 6);
    r.rate_bytes_per_s = 600000;
    server.add("/y.bin", r);
    auto q = open_queue(fast_options(dir));
    DownloadOptions o;
    o.if_exists = policy;
    auto job = submit(*q, server.url("/y.bin"), std::string(dir / "") + "/", o);
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes > 0; }));
    write_file(dir / "y.bin", "the user's file");
    auto j = wait_end(*q, job.id);
    EXPECT_EQ(read_file(dir / "y.bin"), "the user's file");
    if (policy == IfExists::kError) {
      EXPECT_EQ(j.status, JobStatus::kError);
      EXPECT_EQ(j.error_type.value_or(""), "DestinationExists");
      EXPECT_TRUE(file_exists(dir / "y.bin.part"));
      continue;
    }
    ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
    EXPECT_EQ(j.download_path.value_or(""), std::string(dir / "y.1.bin"));
    EXPECT_EQ(sha256_file(dir / "y.1.bin"), sha256_hex_of(r.body));
    EXPECT_FALSE(file_exists(dir / "y.bin.part")) << "the job's own .part was left behind";
  }
}

TEST(Ownership, AFinishedFileNamedLikeAnotherJobsPartIsTaken) {
  TempDir dir;
  TestServer server;
  Resource a, b;
  a.body = "first job's file, named victim.part";
  b.body = "second job's victim";
  server.add("/a/victim.part", a);
  server.add("/b/victim", b);
  auto q = open_queue(fast_options(dir));
  const std::string folder = std::string(dir / "") + "/";
  auto j1 = wait_end(*q, submit(*q, server.url("/a/victim.part"), folder).id);
  ASSERT_EQ(j1.status, JobStatus::kCompleted) << j1.error.value_or("");
  auto j2 = wait_end(*q, submit(*q, server.url("/b/victim"), folder).id);
  EXPECT_EQ(j2.status, JobStatus::kError);
  EXPECT_EQ(j2.error_type.value_or(""), "DestinationExists");
  EXPECT_EQ(read_file(dir / "victim.part"), a.body);  // job 1's file is still what it says
  EXPECT_FALSE(file_exists(dir / "victim"));
}

TEST(Ownership, AFinalNameThatIsALiveJobsPartIsRefused) {
  TempDir dir;
  TestServer server;
  Resource a, b;
  a.body = make_body(600000, 1);
  a.rate_bytes_per_s = 600000;  // about a second: still running when B comes
  b.body = "bbbbbb";
  server.add("/a", a);
  server.add("/b", b);
  auto q = open_queue(fast_options(dir));
  auto ja = submit(*q, server.url("/a"), dir / "x");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(ja.id)->bytes > 0; }));
  DownloadOptions o;
  o.if_exists = IfExists::kOverwrite;
  auto jb = wait_end(*q, submit(*q, server.url("/b"), dir / "x.part", o).id);
  EXPECT_EQ(jb.status, JobStatus::kError);
  EXPECT_EQ(jb.error_type.value_or(""), "DestinationExists");
  auto done = wait_end(*q, ja.id);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error.value_or("");
  EXPECT_EQ(read_file(dir / "x"), a.body);
}

// Two queues on two databases stand for two processes (fetchqd and `fetchq get --state`).
TEST(Ownership, TwoProcessesNeverWriteOnePart) {
  TempDir dir, db2;
  TestServer server;
  Resource a;
  a.body = make_body(600000, 2);
  a.rate_bytes_per_s = 600000;
  server.add("/m3.bin", a);
  const std::string folder = std::string(dir / "") + "/";
  auto q1 = open_queue(fast_options(dir));
  auto j1 = submit(*q1, server.url("/m3.bin"), folder);
  ASSERT_TRUE(wait_until([&] { return q1->id_to_job(j1.id)->bytes > 0; }));
  auto q2 = open_queue(fast_options(db2));
  auto j2 = wait_end(*q2, submit(*q2, server.url("/m3.bin"), folder).id);
  EXPECT_EQ(j2.status, JobStatus::kError);
  EXPECT_EQ(j2.error_type.value_or(""), "DestinationExists");
  auto done = wait_end(*q1, j1.id);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error.value_or("");
  EXPECT_EQ(read_file(dir / "m3.bin"), a.body);
}

// The same with the real programs: fetchqd downloads into DIR/m3.bin.part while
// `fetchq get -d DIR --state other.db` asks for the same name.
TEST(Ownership, FetchqGetBesideTheDaemonNeverWritesItsPart) {
  TempDir dir;
  TestServer server;
  Resource a;
  a.body = make_body(1500000, 5);
  a.rate_bytes_per_s = 1000000;
  server.add("/m3.bin", a);
  const std::string dl = dir / "dl";
  std::filesystem::create_directory(dl);
  const std::string sock = dir / "fetchqd.sock";
  Process d(
      {bin_path("fetchqd"), "--db", dir / "fetchq.db", "--socket", sock, "--download-root", dl}, "",
      dir / "fetchqd.err");
  auto cli = [&](std::vector<std::string> args, const std::string& name) {
    std::vector<std::string> argv{bin_path("fetchq")};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_capture(argv, dir / (name + ".out"), dir / (name + ".err"), 30s);
  };
  ASSERT_TRUE(wait_until(
      [&] {
        return cli({"stats", "--socket", sock}, "stats").rc == 0;
      },
      10s, 50ms))
      << read_file(dir / "fetchqd.err");
  auto added = cli({"add", server.url("/m3.bin"), "-d", dl, "--json", "--socket", sock}, "add");
  ASSERT_EQ(added.rc, 0) << added.err;
  ASSERT_TRUE(wait_until([&] { return file_exists(dl + "/m3.bin.part"); }, 10s));
  auto got =
      cli({"get", server.url("/m3.bin"), "-d", dl, "--state", dir / "other.db", "--json"}, "get");
  EXPECT_NE(got.rc, 0) << got.out;
  EXPECT_NE(got.out.find("DestinationExists"), std::string::npos) << got.out << got.err;
  auto w = cli({"wait", "--timeout", "20", "--socket", sock}, "wait");
  EXPECT_EQ(w.rc, 0) << w.err << w.out;
  EXPECT_EQ(read_file(dl + "/m3.bin"), a.body);
  EXPECT_FALSE(file_exists(dl + "/m3.bin.part"));
}

// -- Item: a .part changed while fetchq was down is not trusted.

class TamperedPart : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  std::string body_ = make_body(800000, 3);
  std::string out() { return dir_ / "out.bin"; }
  std::string part() { return out() + ".part"; }
  int64_t id_ = 0;

  // A job paused partway with its .part on disk and the queue closed, as after a stop.
  void SetUp() override {
    Resource r;
    r.body = body_;
    r.rate_bytes_per_s = 400000;
    server_.add("/f.bin", r);
    auto q = open_queue(fast_options(dir_));
    id_ = submit(*q, server_.url("/f.bin"), out()).id;
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(id_)->bytes >= 100000; }));
    ASSERT_TRUE(q->pause_job(id_).ok());
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(id_)->status == JobStatus::kPaused; }));
    q.reset();
    ASSERT_TRUE(file_exists(part()));
    // The rest of the file comes fast from now on.
    r.rate_bytes_per_s = 0;
    server_.add("/f.bin", r);
  }

  Job resume() {
    auto q = open_queue(fast_options(dir_));
    EXPECT_TRUE(q->resume_job(id_).ok());
    auto j = wait_end(*q, id_);
    events_ = job_events(*q, id_);
    return j;
  }
  std::vector<Event> events_;
};

TEST_F(TamperedPart, AnUntouchedPartResumesWithARange) {
  auto j = resume();
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(out()), body_);
  auto reqs = server_.requests_for("/f.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range.rfind("bytes=", 0), 0u) << reqs[1].range;
}

// overwrite: a file at the final name does not stop the job resuming its own .part.
TEST(Ownership, WithOverwriteAnExistingFinalFileDoesNotStopAResume) {
  TempDir dir;
  TestServer server;
  Resource r;
  r.body = make_body(800000, 6);
  r.rate_bytes_per_s = 400000;
  server.add("/f.bin", r);
  write_file(dir / "out.bin", "an older copy");
  DownloadOptions opts;
  opts.if_exists = IfExists::kOverwrite;
  auto q = open_queue(fast_options(dir));
  const int64_t id = submit(*q, server.url("/f.bin"), dir / "out.bin", opts).id;
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(id)->bytes >= 100000; }));
  ASSERT_TRUE(q->pause_job(id).ok());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(id)->status == JobStatus::kPaused; }));
  q.reset();
  r.rate_bytes_per_s = 0;
  server.add("/f.bin", r);
  q = open_queue(fast_options(dir));
  ASSERT_TRUE(q->resume_job(id).ok());
  auto j = wait_end(*q, id);
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(dir / "out.bin"), r.body);
  auto reqs = server.requests_for("/f.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].range.rfind("bytes=", 0), 0u) << reqs[1].range;
}

TEST_F(TamperedPart, BytesAppendedWhileDownAreNotKept) {
  {
    std::ofstream f(part(), std::ios::app | std::ios::binary);
    f << std::string(5000, 'J');
  }
  auto j = resume();
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(out()), body_);
}

TEST_F(TamperedPart, AHardLinkInItsPlaceIsNeverWrittenThrough) {
  write_file(dir_ / "outside", "precious, not fetchq's");
  ASSERT_EQ(::unlink(part().c_str()), 0);
  ASSERT_EQ(::link((dir_ / "outside").c_str(), part().c_str()), 0);
  auto j = resume();
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(out()), body_);
  EXPECT_EQ(read_file(dir_ / "outside"), "precious, not fetchq's");
  EXPECT_GE(count_type(events_, "download_restarted"), 1u);
}

TEST_F(TamperedPart, ASymbolicLinkInItsPlaceIsNamedAndNotFollowed) {
  write_file(dir_ / "outside", "precious, not fetchq's");
  ASSERT_EQ(::unlink(part().c_str()), 0);
  ASSERT_EQ(::symlink((dir_ / "outside").c_str(), part().c_str()), 0);
  auto j = resume();
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(out()), body_);
  EXPECT_EQ(read_file(dir_ / "outside"), "precious, not fetchq's");
  bool named = false;
  for (auto& e : events_) {
    if (e.type == "download_restarted" && e.payload.find("symbolic link") != std::string::npos)
      named = true;
  }
  EXPECT_TRUE(named) << "no download_restarted event names the symbolic link";
}

TEST_F(TamperedPart, AFifoInItsPlaceDoesNotHangTheQueue) {
  ASSERT_EQ(::unlink(part().c_str()), 0);
  ASSERT_EQ(::mkfifo(part().c_str(), 0644), 0);
  auto j = resume();
  ASSERT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(out()), body_);
}

TEST_F(TamperedPart, AnotherFileInItsPlaceIsLeftAlone) {
  ASSERT_EQ(::unlink(part().c_str()), 0);
  write_file(part(), "someone else's file");
  auto j = resume();
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "DestinationExists");
  EXPECT_EQ(read_file(part()), "someone else's file");
  EXPECT_FALSE(file_exists(out()));
}

// ext4 gives a freed inode number to the next file made, so a file put in the place of the
// deleted .part can carry the recorded device and inode. Made certain here by recording the new
// file's numbers: only the birth time still tells it is not the job's file.
TEST_F(TamperedPart, AFileThatReusedThePartsInodeNumberIsLeftAlone) {
  ASSERT_EQ(::unlink(part().c_str()), 0);
  write_file(part(), "someone else's file");
  struct stat sb {};
  ASSERT_EQ(::stat(part().c_str(), &sb), 0);
  {
    SQLite::Database db(dir_ / "queue.db", SQLite::OPEN_READWRITE);
    SQLite::Statement born(db, "SELECT part_birth_ns FROM jobs WHERE id = ?");
    born.bind(1, id_);
    ASSERT_TRUE(born.executeStep());
    if (born.getColumn(0).isNull()) GTEST_SKIP() << "this file system keeps no birth time";
    SQLite::Statement q(db, "UPDATE jobs SET part_dev = ?, part_ino = ? WHERE id = ?");
    q.bind(1, static_cast<int64_t>(sb.st_dev));
    q.bind(2, static_cast<int64_t>(sb.st_ino));
    q.bind(3, id_);
    ASSERT_EQ(q.exec(), 1);
  }
  auto j = resume();
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "DestinationExists");
  EXPECT_EQ(read_file(part()), "someone else's file");
  EXPECT_FALSE(file_exists(out()));
}

// -- Item: a folder swapped for a symbolic link after submission leads nowhere.

TEST(Confinement, AFolderSwappedForALinkWhilePausedIsNotFollowed) {
  TempDir root, outside;
  TestServer server;
  Resource r;
  r.body = make_body(800000, 4);
  r.rate_bytes_per_s = 400000;
  server.add("/f.bin", r);
  std::filesystem::create_directory(root / "esc");
  auto o = fast_options(root);
  o.download_roots = {root / ""};
  auto q = open_queue(o);
  const int64_t id = submit(*q, server.url("/f.bin"), std::string(root / "esc") + "/").id;
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(id)->bytes >= 100000; }));
  ASSERT_TRUE(q->pause_job(id).ok());
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(id)->status == JobStatus::kPaused; }));
  q.reset();
  std::filesystem::rename(root / "esc", root / "esc.away");
  ASSERT_EQ(::symlink(std::string(outside / "").c_str(), (root / "esc").c_str()), 0);
  r.rate_bytes_per_s = 0;
  server.add("/f.bin", r);
  q = open_queue(o);
  ASSERT_TRUE(q->resume_job(id).ok());
  auto j = wait_end(*q, id);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "OutsideRoots");
  EXPECT_NE(j.error.value_or("").find("symbolic link"), std::string::npos) << j.error.value_or("");
  EXPECT_TRUE(std::filesystem::is_empty(std::string(outside / "")));
}

// Without download roots (fetchq get) a linked folder in the destination is followed as
// before; only the .part itself is never reached through a link.
TEST(Confinement, WithoutRootsALinkedFolderIsFollowedAsBefore) {
  TempDir root, outside;
  TestServer server;
  Resource r;
  r.body = "payload";
  server.add("/f.bin", r);
  ASSERT_EQ(::symlink(std::string(outside / "").c_str(), (root / "esc").c_str()), 0);
  auto q = open_queue(fast_options(root));
  auto j = wait_end(*q, submit(*q, server.url("/f.bin"), root / "esc/a.bin").id);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(read_file(outside / "a.bin"), "payload");
}

}  // namespace
}  // namespace fetchq::testing
