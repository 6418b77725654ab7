// Disk faults injected through the file-system Env (support/fault_env.h): the real queue, engine
// and settle step, a real HTTP server on 127.0.0.1 and real files, with chosen calls failing.
// Needs no root and no full disk, so it runs everywhere (disk_test.cpp needs a tmpfs mount).
#include "support/fault_env.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <filesystem>

#include "integration/helpers.h"
#include "queue/open_with_env.h"

namespace fetchq::testing {
namespace {

class FaultEnvTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  FaultEnv env_;

  std::unique_ptr<DownloadQueue> open(QueueOptions o) {
    auto q = queue::open_with_env(std::move(o), env_);
    EXPECT_TRUE(q.ok()) << (q.ok() ? "" : q.error().message);
    return q.ok() ? std::move(q.value()) : nullptr;
  }

  int64_t checkpoint_bytes(int64_t id) {
    SQLite::Database db(dir_ / "queue.db", SQLite::OPEN_READONLY);
    SQLite::Statement q(db, "SELECT checkpoint_bytes FROM jobs WHERE id = ?");
    q.bind(1, static_cast<int64_t>(id));
    return q.executeStep() ? q.getColumn(0).getInt64() : -1;
  }

  // A failed job: its error names the step, the file and the cause on one line.
  static void expect_one_line_error(const Job& j, const std::string& type, const std::string& step,
                                    const std::string& path, const std::string& cause) {
    ASSERT_EQ(j.status, JobStatus::kError) << j.error.value_or("");
    EXPECT_EQ(j.error_type.value_or(""), type) << j.error.value_or("");
    const std::string e = j.error.value_or("");
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    EXPECT_EQ(e.rfind(step, 0), 0u) << e;
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find(cause), std::string::npos) << e;
  }

  // With the fault gone, a retry resumes after the bytes kept and the file comes out whole.
  void retry_completes(DownloadQueue& q, int64_t id, const std::string& path,
                       const std::string& body, const std::string& server_path, size_t kept) {
    env_.clear();
    ASSERT_TRUE(q.retry_job(id).ok());
    ASSERT_TRUE(q.join(std::chrono::seconds(20)));
    auto j = q.id_to_job(id);
    ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
    EXPECT_TRUE(read_file(path) == body) << "the file is not the body served";
    auto reqs = server_.requests_for(server_path);
    ASSERT_GE(reqs.size(), 2u);
    if (kept > 0) {
      EXPECT_EQ(reqs.back().range, "bytes=" + std::to_string(kept) + "-");
    }
  }
};

// join() promises more than "ended on record": a job cancelled while running has ended at once,
// but its .part goes only when its transfer has let go of it. Whoever joins right after the
// cancel (for all jobs, or for that one) must not find the .part still there, however slow its
// removal (here 400 ms).
TEST_F(FaultEnvTest, JoinAfterCancelWaitsUntilThePartIsGone) {
  Resource r;
  r.body = make_body(4 << 20, 67);
  r.rate_bytes_per_s = 400000;
  server_.add("/held.bin", r);
  env_.add({.op = FsOp::kUnlink,
            .path_contains = "held.bin.part",
            .delay = std::chrono::milliseconds(400)});
  auto q = open(fast_options(dir_));
  for (bool all : {true, false}) {
    const std::string folder = dir_ / (all ? "all" : "one");
    std::filesystem::create_directories(folder);
    auto job = submit(*q, server_.url("/held.bin"), folder);
    ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes > 0; }));
    ASSERT_TRUE(file_exists(folder + "/held.bin.part"));
    ASSERT_TRUE(q->cancel_job(job.id).ok());
    if (all) {
      ASSERT_TRUE(q->join(std::chrono::seconds(10)));
    } else {
      ASSERT_TRUE(q->join(std::chrono::seconds(10), {job.id}));
    }
    EXPECT_FALSE(file_exists(folder + "/held.bin.part")) << (all ? "join()" : "join({id})");
    EXPECT_FALSE(file_exists(folder + "/held.bin"));
  }
  EXPECT_EQ(env_.faults(), 2);
}

// Many small files into one folder open it once while something holds it open (here a slow
// download into the same folder): each file shares the open folder instead of opening it again,
// as long as the path still names that folder.
TEST_F(FaultEnvTest, SmallFilesIntoAFolderAlreadyOpenShareIt) {
  Resource slow;
  slow.body = make_body(400000, 70);
  slow.rate_bytes_per_s = 20000;
  server_.add("/slow.bin", slow);
  Resource small;
  small.body = make_body(3000, 71);
  server_.add("/small", small);
  auto q = open(fast_options(dir_));
  const std::string folder = dir_ / "shared-folder";
  auto running = submit(*q, server_.url("/slow.bin"), folder + "/slow.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(running.id)->bytes > 0; }));
  // Opens of the folder itself: those of its files have its path and a slash before their name.
  auto folder_opens = [&] {
    return env_.calls(FsOp::kOpen, "shared-folder") - env_.calls(FsOp::kOpen, "shared-folder/");
  };
  const int before = folder_opens();
  EXPECT_GE(before, 1) << "the slow download never opened its folder";
  constexpr int kFiles = 10;
  std::vector<int64_t> ids;
  for (int i = 0; i < kFiles; ++i)
    ids.push_back(submit(*q, server_.url("/small"), folder + "/s" + std::to_string(i)).id);
  ASSERT_TRUE(q->join(std::chrono::seconds(30), ids));
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_EQ(q->id_to_job(ids[static_cast<size_t>(i)])->status, JobStatus::kCompleted);
    EXPECT_TRUE(read_file(folder + "/s" + std::to_string(i)) == small.body);
  }
  EXPECT_EQ(folder_opens(), before) << "a file opened the folder again though it was open";
  // The folder moved away (the slow download still holds it): a new file goes where its path
  // says now, a folder made again, not into the moved one.
  std::filesystem::rename(folder, dir_ / "moved-folder");
  auto later = submit(*q, server_.url("/small"), folder + "/later");
  ASSERT_TRUE(q->join(std::chrono::seconds(30), {later.id}));
  ASSERT_EQ(q->id_to_job(later.id)->status, JobStatus::kCompleted)
      << q->id_to_job(later.id)->error.value_or("");
  EXPECT_TRUE(read_file(folder + "/later") == small.body);
  EXPECT_FALSE(file_exists(dir_ / "moved-folder/later"));
  ASSERT_TRUE(q->cancel_job(running.id).ok());
  EXPECT_TRUE(q->join(std::chrono::seconds(30)));
}

TEST_F(FaultEnvTest, ADiskFullWriteFailsTheJobKeepsThePartAndARetryResumes) {
  Resource r;
  r.body = make_body(2 << 20, 61);
  r.no_length = true;  // unknown size: no free-space check first, the write finds the disk full
  server_.add("/full.bin", r);
  env_.add({.op = FsOp::kWrite, .path_contains = "full.bin.part", .nth = 3, .err = ENOSPC});
  auto q = open(fast_options(dir_));
  const std::string out = dir_ / "full.bin";
  auto job = submit(*q, server_.url("/full.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  expect_one_line_error(*q->id_to_job(job.id), "DiskFull", "write", out + ".part",
                        "No space left on device");
  EXPECT_GE(env_.faults(), 1);
  ASSERT_TRUE(file_exists(out + ".part"));
  const auto kept = std::filesystem::file_size(out + ".part");
  EXPECT_GT(kept, 0u) << "the bytes written before the disk filled were thrown away";
  EXPECT_FALSE(file_exists(out));
  r.no_length = false;
  server_.add("/full.bin", r);
  retry_completes(*q, job.id, out, r.body, "/full.bin", kept);
}

TEST_F(FaultEnvTest, AnIoErrorOnWriteFailsTheJobWithADiskError) {
  Resource r;
  r.body = make_body(1 << 20, 62);
  server_.add("/eio.bin", r);
  env_.add({.op = FsOp::kWrite, .path_contains = "eio.bin.part", .nth = 2, .err = EIO});
  auto o = fast_options(dir_);
  auto q = open(o);
  const std::string out = dir_ / "eio.bin";
  auto job = submit(*q, server_.url("/eio.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  expect_one_line_error(*q->id_to_job(job.id), "DiskError", "write", out + ".part",
                        "Input/output error");
  EXPECT_EQ(server_.requests_for("/eio.bin").size(), 1u) << "a disk error is not retried by itself";
  EXPECT_FALSE(file_exists(out));
  ASSERT_TRUE(file_exists(out + ".part"));
  retry_completes(*q, job.id, out, r.body, "/eio.bin", std::filesystem::file_size(out + ".part"));
}

TEST_F(FaultEnvTest, ANearlyFullDiskIsRefusedBeforeTheBodyWhenTheSizeIsKnown) {
  Resource r;
  r.body = make_body(2 << 20, 68);
  server_.add("/known.bin", r);
  env_.add(
      {.op = FsOp::kStatvfs, .path_contains = "known.bin.part", .free_bytes = uint64_t{1} << 20});
  auto q = open(fast_options(dir_));
  const std::string out = dir_ / "known.bin";
  auto job = submit(*q, server_.url("/known.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  expect_one_line_error(*q->id_to_job(job.id), "DiskFull", "not enough space for", out,
                        std::to_string(r.body.size()) + " more bytes needed");
  EXPECT_GE(env_.faults(), 1);
  EXPECT_FALSE(file_exists(out + ".part")) << "the refused download left its .part";
  EXPECT_FALSE(file_exists(out));
}

TEST_F(FaultEnvTest, ShortWritesAreCompletedAndTheFileIsWhole) {
  Resource r;
  r.body = make_body(3 << 20, 63);
  server_.add("/short.bin", r);
  // Every write of the .part writes only half of what was asked.
  env_.add({.op = FsOp::kWrite, .path_contains = "short.bin.part", .short_write = true});
  auto q = open(fast_options(dir_));
  const std::string out = dir_ / "short.bin";
  auto job = submit(*q, server_.url("/short.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_GE(env_.faults(), 2);
  EXPECT_EQ(j->bytes, static_cast<int64_t>(r.body.size()));
  EXPECT_TRUE(read_file(out) == r.body) << "a short write lost or misplaced bytes";
}

// The kernel reports a writeback error once per descriptor: after a data sync of the .part
// failed, the next one through it succeeds without the bytes that were lost. So the first
// failure alone fails the attempt, nothing after the last good checkpoint is promised, and the
// file is never called whole. (Only the first sync fails here, as on a real disk.)
TEST_F(FaultEnvTest, NoCheckpointPromisesBytesWhoseDataSyncFailed) {
  Resource r;
  r.body = make_body(2 << 20, 64);
  r.rate_bytes_per_s = 1 << 20;
  server_.add("/slow.bin", r);
  env_.add({.op = FsOp::kFdatasync, .path_contains = "slow.bin.part", .times = 1, .err = EIO});
  auto q = open(fast_options(dir_));
  const std::string out = dir_ / "slow.bin";
  auto job = submit(*q, server_.url("/slow.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  EXPECT_EQ(env_.faults(), 1);
  expect_one_line_error(*q->id_to_job(job.id), "DiskError", "fdatasync", out + ".part",
                        "Input/output error");
  EXPECT_EQ(checkpoint_bytes(job.id), 0)
      << "a later sync through the same descriptor promised bytes the failed one may have lost";
  EXPECT_FALSE(file_exists(out)) << "a file whose data sync failed was called whole";
  retry_completes(*q, job.id, out, r.body, "/slow.bin", 0);
  EXPECT_EQ(server_.requests_for("/slow.bin").back().range, "")
      << "the retry resumed after bytes that were never promised";
}

TEST_F(FaultEnvTest, AnIoErrorOnTheRenameLeavesThePartAndARetryCompletes) {
  Resource r;
  r.body = make_body(300000, 65);
  // Still coming when its .part is on record, so named .part and renamed at the end (a file
  // whole before that is linked to its name instead: unnamed_finish_test.cpp).
  r.rate_bytes_per_s = 600000;
  server_.add("/ren.bin", r);
  env_.add({.op = FsOp::kRename, .path_contains = "ren.bin", .err = EIO});
  auto q = open(fast_options(dir_));
  const std::string out = dir_ / "ren.bin";
  auto job = submit(*q, server_.url("/ren.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  expect_one_line_error(*q->id_to_job(job.id), "DiskError", "rename " + out + ".part to", out,
                        "Input/output error");
  EXPECT_GE(env_.calls(FsOp::kRename, "ren.bin"), 1);
  EXPECT_FALSE(file_exists(out)) << "completed though the rename failed";
  ASSERT_TRUE(file_exists(out + ".part"));
  EXPECT_TRUE(read_file(out + ".part") == r.body) << "the whole body should stay in the .part";
  env_.clear();
  ASSERT_TRUE(q->retry_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_TRUE(read_file(out) == r.body);
  EXPECT_FALSE(file_exists(out + ".part"));
}

TEST_F(FaultEnvTest, AFailingSyncfsFallsBackToAFullFsyncOfEachFile) {
  Resource r;
  r.body = make_body(200000, 66);
  server_.add("/s.bin", r);
  env_.add({.op = FsOp::kSyncfs, .err = EIO});
  auto o = fast_options(dir_);
  o.syncfs_from = 1;  // a single finished file is written out with syncfs too
  auto q = open(o);
  const std::string out = dir_ / "s.bin";
  auto job = submit(*q, server_.url("/s.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_GE(env_.calls(FsOp::kSyncfs), 1) << "syncfs was never tried";
  // The failed syncfs wrote nothing out for sure: the file needs its own full fsync, not the
  // fdatasync that only checks a syncfs that worked.
  EXPECT_GE(env_.calls(FsOp::kFsync, "s.bin.part"), 1);
  EXPECT_TRUE(read_file(out) == r.body);
}

TEST_F(FaultEnvTest, AFailingSyncfsAndFsyncLeaveTheJobUncompleted) {
  Resource r;
  r.body = make_body(200000, 67);
  server_.add("/t.bin", r);
  env_.add({.op = FsOp::kSyncfs, .err = EIO});
  env_.add({.op = FsOp::kFsync, .path_contains = "t.bin.part", .err = EIO});
  auto o = fast_options(dir_);
  o.syncfs_from = 1;
  o.checkpoint_interval = std::chrono::hours(1);  // no checkpoint promises bytes before the end
  auto q = open(o);
  const std::string out = dir_ / "t.bin";
  auto job = submit(*q, server_.url("/t.bin"), out);
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  expect_one_line_error(*q->id_to_job(job.id), "DiskError", "fsync", out + ".part",
                        "Input/output error");
  EXPECT_FALSE(file_exists(out));
  // The failed fsync had the error to report; a data sync after it would succeed without the
  // lost bytes, so the failed attempt promises none of them.
  EXPECT_EQ(checkpoint_bytes(job.id), 0);
}

}  // namespace
}  // namespace fetchq::testing
