// Files that arrive whole before their .part is on record are never named .part: the settle step
// links them to their final name once they are synced. The real queue, engine and settle step on
// a real SQLite store whose record of a new .part is made slow (support/failing_store.h), so the
// body always wins that race, and a file system that counts and fails calls on demand
// (support/fault_env.h).
#include <filesystem>
#include <thread>

#include "integration/helpers.h"
#include "queue/open_with_store.h"
#include "support/failing_store.h"
#include "support/fault_env.h"

namespace fetchq::testing {
namespace {

using store::StoreOp;

class UnnamedFinishTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  FaultEnv env_;
  FailingStore* store_ = nullptr;  // owned by the queue

  // A queue whose record of each new .part takes `record_delay`.
  std::unique_ptr<DownloadQueue> open(std::chrono::milliseconds record_delay) {
    QueueOptions o = fast_options(dir_);
    auto real = store::open(o.db_path);
    EXPECT_TRUE(real.ok()) << real.error().message;
    auto failing = std::make_unique<FailingStore>(std::move(real.value()));
    failing->slow(StoreOp::kRecordPart, record_delay);
    store_ = failing.get();
    auto q = queue::open_with_store(std::move(o), std::move(failing), env_);
    EXPECT_TRUE(q.ok()) << (q.ok() ? "" : q.error().message);
    return q.ok() ? std::move(q.value()) : nullptr;
  }

  std::string serve(const std::string& path, size_t n, uint32_t seed, uint64_t rate = 0) {
    Resource r;
    r.body = make_body(n, seed);
    r.rate_bytes_per_s = rate;
    server_.add(path, r);
    return r.body;
  }

  std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(UnnamedFinishTest, SmallFilesAreLinkedStraightToTheirNamesWithNoPartOnTheWay) {
  auto q = open(std::chrono::milliseconds(150));
  ASSERT_TRUE(q);
  const std::string out = dir_ / "out";
  std::filesystem::create_directories(out);
  std::vector<std::string> bodies;
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    const std::string path = "/small" + std::to_string(i) + ".bin";
    bodies.push_back(serve(path, 20000 + i, 40 + i));
    ids.push_back(submit(*q, server_.url(path), out).id);
  }
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  for (int i = 0; i < 5; ++i) {
    auto j = q->id_to_job(ids[i]);
    ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
    const std::string file = out + "/small" + std::to_string(i) + ".bin";
    EXPECT_TRUE(read_file(file) == bodies[i]) << file << " is not the body served";
  }
  EXPECT_EQ(names_in(out), (std::vector<std::string>{"small0.bin", "small1.bin", "small2.bin",
                                                     "small3.bin", "small4.bin"}));
  EXPECT_EQ(env_.calls(FsOp::kRename, "small"), 0) << "a .part was renamed into place";
  EXPECT_EQ(env_.calls(FsOp::kLink, ".part"), 0) << "a finished file was first named .part";
  EXPECT_EQ(env_.calls(FsOp::kLink, "small"), 5);
  EXPECT_GE(env_.calls_at(FsOp::kFsync, out), 1) << "the folder was not synced after the links";
}

// A body still coming when its record is answered is named .part then (a crash resumes from
// it), and renamed into place at the end as before.
TEST_F(UnnamedFinishTest, AFileStillComingWhenItsRecordIsAnsweredIsNamedPartAndRenamed) {
  auto q = open(std::chrono::milliseconds(0));
  ASSERT_TRUE(q);
  const std::string body = serve("/slow.bin", 300000, 50, 600000);
  const std::string out = dir_ / "slow.bin";
  auto job = submit(*q, server_.url("/slow.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_TRUE(read_file(out) == body);
  EXPECT_EQ(env_.calls(FsOp::kLink, "slow.bin.part"), 1);
  EXPECT_GE(env_.calls(FsOp::kRename, "slow.bin"), 1);
  EXPECT_FALSE(file_exists(out + ".part"));
}

// The final name fails (EIO): the bytes stay in the job's own .part, and a retry ends with the
// file whole from it.
TEST_F(UnnamedFinishTest, AnIoErrorLinkingAFinishedFileKeepsItsBytesInThePartAndARetryCompletes) {
  auto q = open(std::chrono::milliseconds(150));
  ASSERT_TRUE(q);
  const std::string body = serve("/lnk.bin", 30000, 51);
  const std::string out = dir_ / "lnk.bin";
  env_.add({.op = FsOp::kLink, .path_contains = out, .whole_path = true, .times = 1, .err = EIO});
  auto job = submit(*q, server_.url("/lnk.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto failed = q->id_to_job(job.id);
  ASSERT_EQ(failed->status, JobStatus::kError);
  EXPECT_EQ(failed->error_type.value_or(""), "DiskError");
  EXPECT_EQ(failed->error.value_or("").rfind("link the finished download to " + out + ": ", 0), 0u)
      << failed->error.value_or("");
  EXPECT_FALSE(file_exists(out)) << "completed though the link failed";
  ASSERT_TRUE(file_exists(out + ".part")) << "the finished bytes were not kept";
  EXPECT_TRUE(read_file(out + ".part") == body);
  env_.clear();
  store_->slow(StoreOp::kRecordPart, std::chrono::milliseconds(0));
  ASSERT_TRUE(q->retry_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_TRUE(read_file(out) == body);
  EXPECT_FALSE(file_exists(out + ".part"));
}

// Someone else's file appears at the final name while the download runs (--if-exists error):
// it is never replaced, and the download stays in the job's .part, as a named one does.
TEST_F(UnnamedFinishTest, AFileThatAppearsAtTheNameIsKeptAndTheDownloadStaysInThePart) {
  auto q = open(std::chrono::milliseconds(400));
  ASSERT_TRUE(q);
  const std::string body = serve("/taken.bin", 30000, 52);
  const std::string out = dir_ / "taken.bin";
  auto job = submit(*q, server_.url("/taken.bin"), out);
  // The body is in (unnamed) and its record still on its way: the user's file comes now.
  ASSERT_TRUE(wait_until([&] { return server_.requests_for("/taken.bin").size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  write_file(out, "the user's own");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kError);
  EXPECT_EQ(j->error_type.value_or(""), "DestinationExists");
  EXPECT_NE(j->error.value_or("").find("the download stays in " + out + ".part"), std::string::npos)
      << j->error.value_or("");
  EXPECT_EQ(read_file(out), "the user's own");
  EXPECT_TRUE(read_file(out + ".part") == body);
  EXPECT_EQ(env_.calls_at(FsOp::kLink, out), 1) << "the file was not linked to its name unnamed";
  EXPECT_EQ(env_.calls_at(FsOp::kLink, out + ".part"), 1);
  EXPECT_EQ(env_.calls(FsOp::kRename, "taken"), 0);
}

// A pause that comes while the record of a finished file is on its way: the file takes its
// .part name, its bytes are promised, and a resume completes from them.
TEST_F(UnnamedFinishTest, APauseWhileTheRecordIsOnItsWayKeepsTheFinishedFileInThePart) {
  auto q = open(std::chrono::milliseconds(400));
  ASSERT_TRUE(q);
  const std::string body = serve("/paused.bin", 30000, 54);
  const std::string out = dir_ / "paused.bin";
  auto job = submit(*q, server_.url("/paused.bin"), out);
  ASSERT_TRUE(wait_until([&] { return server_.requests_for("/paused.bin").size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(q->pause_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(30), {job.id}));
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->status == JobStatus::kPaused; }));
  ASSERT_TRUE(wait_until([&] { return file_exists(out + ".part"); }))
      << "the finished bytes were not kept";
  EXPECT_TRUE(read_file(out + ".part") == body);
  EXPECT_FALSE(file_exists(out));
  store_->slow(StoreOp::kRecordPart, std::chrono::milliseconds(0));
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_TRUE(read_file(out) == body);
  EXPECT_FALSE(file_exists(out + ".part"));
  const auto reqs = server_.requests_for("/paused.bin");
  ASSERT_GE(reqs.size(), 2u);
  EXPECT_EQ(reqs.back().range, "bytes=30000-") << "the resume did not go on from the kept bytes";
}

// --if-exists rename: the retry starts again under a numbered name; the unnamed bytes of the
// first attempt leave nothing behind.
TEST_F(UnnamedFinishTest, UnderRenameAFileThatAppearsAtTheNameSendsTheDownloadToANumberedName) {
  auto q = open(std::chrono::milliseconds(400));
  ASSERT_TRUE(q);
  const std::string body = serve("/ren.bin", 30000, 53);
  const std::string out = dir_ / "out";
  std::filesystem::create_directories(out);
  DownloadOptions opts;
  opts.if_exists = IfExists::kRename;
  auto job = submit(*q, server_.url("/ren.bin"), out, opts);
  ASSERT_TRUE(wait_until([&] { return server_.requests_for("/ren.bin").size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  write_file(out + "/ren.bin", "the user's own");
  store_->slow(StoreOp::kRecordPart, std::chrono::milliseconds(0));
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  ASSERT_TRUE(j->download_path);
  EXPECT_NE(*j->download_path, out + "/ren.bin");
  EXPECT_TRUE(read_file(*j->download_path) == body);
  EXPECT_EQ(read_file(out + "/ren.bin"), "the user's own");
  EXPECT_EQ(env_.calls_at(FsOp::kLink, out + "/ren.bin"), 1)
      << "the file was not linked to its name unnamed";
  for (const auto& name : names_in(out)) {
    EXPECT_EQ(name.find(".part"), std::string::npos) << name << " left behind";
  }
}

}  // namespace
}  // namespace fetchq::testing
