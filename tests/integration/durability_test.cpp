// Durability order: data is synced before the checkpoint that promises it, and a finished file
// counts as completed only once its folder is synced. Syncs are made to fail with
// support/sync_faults.h; a checkpoint or a completion that gets through anyway is a lost file
// after a power cut.
#include <SQLiteCpp/SQLiteCpp.h>

#include <filesystem>

#include "integration/helpers.h"
#include "support/sync_faults.h"

namespace fetchq::testing {
namespace {

class DurabilityTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;

  int64_t checkpoint_bytes(int64_t id) {
    SQLite::Database db(dir_ / "queue.db", SQLite::OPEN_READONLY);
    SQLite::Statement q(db, "SELECT checkpoint_bytes FROM jobs WHERE id = ?");
    q.bind(1, static_cast<int64_t>(id));
    return q.executeStep() ? q.getColumn(0).getInt64() : -1;
  }

  // A 3 MiB file served at 1 MiB/s into dir/out.bin, with no periodic checkpoint: returned once
  // its job has written 300,000 bytes. The caller makes the .part's syncs fail beforehand.
  struct Running {
    std::unique_ptr<DownloadQueue> q;
    Job job;
    std::string body;
  };
  Running slow_download_under_way(int seed) {
    Resource r;
    r.body = make_body(3 << 20, seed);
    r.rate_bytes_per_s = 1 << 20;
    server_.add("/slow.bin", r);
    auto o = fast_options(dir_);
    o.checkpoint_interval = std::chrono::minutes(10);  // only the pause syncs
    Running run{open_queue(o), {}, r.body};
    run.job = submit(*run.q, server_.url("/slow.bin"), dir_ / "out.bin");
    EXPECT_TRUE(wait_until([&] { return run.q->id_to_job(run.job.id)->bytes > 300000; }));
    return run;
  }
};

// A failed sync of the .part ends the attempt: Linux reports a write-back error once per open
// file, so a later sync through it would succeed without the lost bytes. Nothing is promised,
// not even for a rerun in this boot, and once syncs work a retry checkpoints and completes.
TEST_F(DurabilityTest, ACheckpointNeverPromisesBytesWhoseSyncFailed) {
  Resource r;
  r.body = make_body(3 << 20, 41);
  r.rate_bytes_per_s = 1 << 20;
  server_.add("/slow.bin", r);
  SyncFaultScope faults(SyncTarget::kPartFiles, dir_.path(), /*fail=*/true);
  auto q = open_queue(fast_options(dir_));
  auto job = submit(*q, server_.url("/slow.bin"), dir_ / "out.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(20)));
  auto j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kError);
  EXPECT_EQ(j.error_type.value_or(""), "DiskError");
  EXPECT_EQ(j.error.value_or("").rfind("fdatasync " + (dir_ / "out.bin.part"), 0), 0u)
      << j.error.value_or("");
  EXPECT_GE(SyncFaults::calls(), 1) << "a checkpoint was taken without a sync of the .part";
  EXPECT_EQ(checkpoint_bytes(job.id), 0)
      << "a checkpoint was committed though its fdatasync failed";
  EXPECT_EQ(j.bytes, 0) << "bytes past the last checkpoint are still trusted";
  EXPECT_FALSE(file_exists(dir_ / "out.bin"));

  SyncFaults::set_failing(false);
  ASSERT_TRUE(q->retry_job(job.id).ok());
  ASSERT_TRUE(wait_until([&] { return checkpoint_bytes(job.id) > 0; }))
      << to_string(q->id_to_job(job.id)->status) << " " << q->id_to_job(job.id)->error.value_or("");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "out.bin"), sha256_hex_of(r.body));
}

// The pause path syncs and checkpoints too. Its sync failing, it promises nothing, and the
// resume in the same boot starts from zero instead of trusting the bytes it had written.
TEST_F(DurabilityTest, APauseWhoseSyncFailsPromisesNothing) {
  SyncFaultScope faults(SyncTarget::kPartFiles, dir_.path(), /*fail=*/true);
  auto [q, job, body] = slow_download_under_way(45);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(q->pause_job(job.id).ok());
  // The status changes at once; the transfer stops (and syncs) a moment later.
  ASSERT_TRUE(wait_until([&] { return SyncFaults::calls() >= 1; }));
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes == 0; }))
      << "the pause whose sync failed left bytes to trust: " << q->id_to_job(job.id)->bytes;
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kPaused);
  EXPECT_EQ(checkpoint_bytes(job.id), 0)
      << "the pause committed a checkpoint though its fdatasync failed";

  SyncFaults::set_failing(false);
  // The stopped transfer has let go of its .part by now (a resume at once: the next test).
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "out.bin"), sha256_hex_of(body));
  auto reqs = server_.requests_for("/slow.bin");
  ASSERT_GE(reqs.size(), 2u);
  EXPECT_EQ(reqs.back().range, "") << "the resume kept bytes that no sync promised";
}

// The same with the resume at once: the next attempt is claimed while the paused one is still
// letting go of its .part, and waits for it. What it was told to keep is cut back to what the
// failed sync left promised.
TEST_F(DurabilityTest, AResumeAtOnceAfterAPauseWhoseSyncFailsKeepsNothingUnsynced) {
  SyncFaultScope faults(SyncTarget::kPartFiles, dir_.path(), /*fail=*/true);
  auto [q, job, body] = slow_download_under_way(46);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(q->pause_job(job.id).ok());
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(wait_until([&] { return SyncFaults::calls() >= 1; }));
  SyncFaults::set_failing(false);
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "out.bin"), sha256_hex_of(body));
  auto reqs = server_.requests_for("/slow.bin");
  ASSERT_GE(reqs.size(), 2u);
  EXPECT_EQ(reqs.back().range, "") << "the resume kept bytes that no sync promised";
}

TEST_F(DurabilityTest, AFailedAttemptCheckpointsOnlyBytesWhoseSyncWorked) {
  // Two attempts end with the connection dropped. A failed attempt checkpoints the bytes it
  // wrote, after syncing them: the first one's sync fails, so it must promise nothing; the
  // second one's sync works, so it promises what it wrote (which shows the failure path does
  // checkpoint at all). The periodic checkpoints are kept out of the way by a long interval.
  Resource r;
  r.body = make_body(1 << 20, 44);
  r.drop_after = 300000;
  r.drop_times = 2;
  server_.add("/drop.bin", r);
  SyncFaultScope faults(SyncTarget::kPartFiles, dir_.path(), /*fail=*/true);
  auto o = fast_options(dir_);
  o.checkpoint_interval = std::chrono::minutes(10);
  // Long enough to look at the job between a failure and its retry (1.5 to 3 s with jitter).
  o.retry_base_delay = std::chrono::milliseconds(3000);
  o.retry_max_delay = std::chrono::milliseconds(3000);
  auto q = open_queue(o);
  auto job = submit(*q, server_.url("/drop.bin"), dir_ / "out.bin");
  auto retries = [&] { return count_type(job_events(*q, job.id), "download_retrying"); };

  const std::string part = dir_ / "out.bin.part";
  ASSERT_TRUE(wait_until([&] { return retries() >= 1; }));
  EXPECT_GE(std::filesystem::file_size(part), 300000u);
  EXPECT_GE(SyncFaults::calls(), 1) << "the failed attempt never synced its .part";
  EXPECT_EQ(checkpoint_bytes(job.id), 0)
      << "the failed attempt checkpointed bytes whose fdatasync failed";

  SyncFaults::set_failing(false);
  ASSERT_TRUE(wait_until([&] { return retries() >= 2; }));
  // Nothing promised the first attempt's bytes, so the second may have started over: what it
  // promises is what the .part holds now.
  const auto on_disk = static_cast<int64_t>(std::filesystem::file_size(part));
  EXPECT_GE(on_disk, 300000);
  EXPECT_EQ(checkpoint_bytes(job.id), on_disk)
      << "the second failed attempt, whose sync worked, did not checkpoint its bytes";

  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = *q->id_to_job(job.id);
  EXPECT_EQ(j.status, JobStatus::kCompleted) << j.error.value_or("");
  EXPECT_EQ(sha256_file(dir_ / "out.bin"), sha256_hex_of(r.body));
}

TEST_F(DurabilityTest, AFinishedFileWhoseDataSyncFailsIsNotCompleted) {
  Resource r;
  r.body = make_body(200000, 42);
  server_.add("/f.bin", r);
  SyncFaultScope faults(SyncTarget::kPartFiles, dir_.path(), /*fail=*/true);
  auto o = fast_options(dir_);
  o.max_attempts = 2;
  auto q = open_queue(o);
  auto job = submit(*q, server_.url("/f.bin"), dir_ / "out.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  auto j = *q->id_to_job(job.id);
  EXPECT_NE(j.status, JobStatus::kCompleted);
  EXPECT_GE(SyncFaults::calls(), 1);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out.bin"));
}

TEST_F(DurabilityTest, AJobIsCompletedOnlyAfterItsFolderIsSynced) {
  Resource r;
  r.body = make_body(200000, 43);
  server_.add("/a.bin", r);
  server_.add("/b.bin", r);
  std::filesystem::create_directories(dir_ / "ok");
  std::filesystem::create_directories(dir_ / "bad");
  auto o = fast_options(dir_);
  o.max_attempts = 2;
  auto q = open_queue(o);
  {
    // Syncs work: the folder is synced once at least before the job is completed.
    SyncFaultScope faults(SyncTarget::kFolders, dir_ / "ok", /*fail=*/false);
    auto job = submit(*q, server_.url("/a.bin"), dir_ / "ok/a.bin");
    ASSERT_TRUE(q->join(std::chrono::seconds(30)));
    EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
    EXPECT_GE(SyncFaults::calls(), 1) << "the folder was never synced after the rename";
  }
  {
    // The folder sync fails with EIO: the rename may not survive a power cut.
    SyncFaultScope faults(SyncTarget::kFolders, dir_ / "bad", /*fail=*/true);
    auto job = submit(*q, server_.url("/b.bin"), dir_ / "bad/b.bin");
    ASSERT_TRUE(q->join(std::chrono::seconds(30)));
    auto j = *q->id_to_job(job.id);
    EXPECT_NE(j.status, JobStatus::kCompleted) << "completed though the folder sync failed";
    EXPECT_GE(SyncFaults::calls(), 1);
  }
}

// A queue that starts in another boot than the one that last appended events skips the seqs a
// power cut may have taken back (progress events commit without a disk sync); a restart in the
// same boot skips none. What the last boot's log says is read from the database itself.
TEST_F(DurabilityTest, EventsAfterARebootNeverTakeASeqAPowerCutCanHaveTakenBack) {
  Resource r;
  r.body = make_body(64 << 10, 43);
  server_.add("/a.bin", r);
  server_.add("/b.bin", r);
  server_.add("/c.bin", r);
  auto run = [&](const std::string& name) {
    auto q = open_queue(fast_options(dir_));
    auto job = submit(*q, server_.url("/" + name), dir_ / name);
    EXPECT_TRUE(q->join(std::chrono::seconds(30)));
    EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
    auto events = job_events(*q, job.id);
    EXPECT_FALSE(events.empty());
    q->shutdown();
    return events.empty() ? std::pair<int64_t, int64_t>{0, 0}
                          : std::pair{events.front().seq, events.back().seq};
  };
  const auto a = run("a.bin");
  const auto b = run("b.bin");  // the same boot: the log goes on
  EXPECT_EQ(b.first, a.second + 1);
  {  // as if the log had been written in the boot before this one
    SQLite::Database db(dir_ / "queue.db", SQLite::OPEN_READWRITE);
    EXPECT_EQ(db.exec("UPDATE event_fences SET boot_id = 'the-boot-before'"), 1);
  }
  const auto c = run("c.bin");
  EXPECT_EQ(c.first, b.second + 1 + store::kMaxUnsyncedEvents);
}

}  // namespace
}  // namespace fetchq::testing
