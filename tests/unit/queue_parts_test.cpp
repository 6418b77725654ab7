// Parts of the queue on their own: the scheduler's launch of a claimed job, the rate meter, and
// the loop thread outliving a store that fails (no transfer is started: no network).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <limits>

#include "queue/claim_ahead.h"
#include "queue/queue_impl.h"
#include "queue/rate_meter.h"
#include "queue/scheduler.h"
#include "support/temp_dir.h"
#include "support/watched_store.h"
#include "util/fs.h"

namespace fetchq::testing {
namespace {

store::ClaimedJob Claimed(const std::string& path) {
  store::ClaimedJob c;
  c.job.id = 7;
  c.job.source = "https://example.org/a?x=1";
  c.job.dest = path;
  c.job.download_path = path;
  c.job.bytes = 300;
  c.job.total_bytes = 1000;
  c.attempt = 3;
  c.checkpoint_bytes = 200;
  c.checkpoint_boot_id = util::boot_id();
  c.failures = 2;
  c.failing_since_ms = 1234;
  c.best_bytes = 400;
  c.sha256 = "ab";
  c.if_exists = IfExists::kOverwrite;
  c.part_identity = store::ClaimedJob::PartRecord{1, 2, 3};
  return c;
}

TEST(Scheduler, AClaimedJobBecomesATransferThatResumesWhatItMayKeep) {
  TempDir dir;
  auto l = queue::prepare_launch(Claimed(dir / "f"), {});
  ASSERT_TRUE(l.request);
  EXPECT_FALSE(l.recovered);
  EXPECT_EQ(l.job_id, 7);
  EXPECT_EQ(l.request->attempt, 3);
  EXPECT_EQ(l.request->offset, 300);  // same boot: the recorded progress survived in the cache
  ASSERT_TRUE(l.request->part_identity);
  EXPECT_EQ(l.request->part_identity->ino, 2u);
  EXPECT_FALSE(l.request->legacy_part);
  EXPECT_FALSE(l.request->confined);
  EXPECT_EQ(l.request->expected_total, 1000);
  EXPECT_EQ(l.active.failures, 2);
  EXPECT_EQ(l.active.failing_since_ms, 1234);
  EXPECT_EQ(l.active.best_bytes, 400);
  EXPECT_EQ(l.active.if_exists, IfExists::kOverwrite);
  EXPECT_EQ(l.active.attempt, 3);
}

TEST(Scheduler, AfterARebootOnlyTheCheckpointIsKept) {
  TempDir dir;
  auto c = Claimed(dir / "f");
  c.checkpoint_boot_id = "another boot";
  EXPECT_EQ(queue::prepare_launch(c, {}).request->offset, 200);
}

TEST(Scheduler, AJobWithoutARecordedPartTrustsOnlyItsCheckpoint) {
  TempDir dir;
  auto c = Claimed(dir / "f");
  c.part_identity.reset();
  auto l = queue::prepare_launch(c, {});
  EXPECT_TRUE(l.request->legacy_part);
  EXPECT_EQ(l.request->offset, 200);
  c.checkpoint_bytes = 0;
  EXPECT_FALSE(queue::prepare_launch(c, {}).request->legacy_part);
}

TEST(Scheduler, ASealedFileFoundWholeInPlaceIsRecoveredNotDownloaded) {
  TempDir dir;
  auto c = Claimed(dir / "f");
  write_file(dir / "f", "0123456789");
  struct stat st {};
  ASSERT_EQ(::lstat((dir / "f").c_str(), &st), 0);
  c.part_identity = store::ClaimedJob::PartRecord{
      static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
      util::birth_time_ns(AT_FDCWD, (dir / "f").c_str())};
  c.sealed_bytes = 10;
  auto l = queue::prepare_launch(c, {});
  EXPECT_FALSE(l.request);
  ASSERT_TRUE(l.recovered);
  EXPECT_TRUE(l.recovered->recovered);
  EXPECT_EQ(l.recovered->r.outcome, transfer::Outcome::kAlreadyThere);
  EXPECT_EQ(l.recovered->r.bytes, 10);
  EXPECT_EQ(l.active.download_path, dir / "f");
  // A different size, another file than the recorded one, or a .part still there, means the
  // rename never happened: download.
  c.sealed_bytes = 11;
  EXPECT_TRUE(queue::prepare_launch(c, {}).request);
  c.sealed_bytes = 10;
  auto recorded = c.part_identity;
  c.part_identity->ino += 1;
  EXPECT_TRUE(queue::prepare_launch(c, {}).request)
      << "a file of that size taken for the recorded one";
  c.part_identity = recorded;
  c.sealed_bytes = 10;
  write_file(dir / "f.part", "");
  EXPECT_TRUE(queue::prepare_launch(c, {}).request);
}

TEST(Scheduler, DownloadRootsConfineTheTransfer) {
  TempDir dir;
  auto l = queue::prepare_launch(Claimed(dir / "f"), {dir.path()});
  EXPECT_TRUE(l.request->confined);
  EXPECT_FALSE(l.request->root.empty());
}

TEST(ClaimAhead, ClaimsAheadOnlyWhileTheLastTransfersWereShort) {
  using std::chrono::milliseconds;
  queue::ClaimAhead c;
  EXPECT_EQ(c.extra(5), 0) << "nothing seen yet";
  for (int i = 0; i < 3; ++i) c.note(milliseconds(2));
  EXPECT_EQ(c.extra(5), 0) << "three transfers are too few to judge by";
  c.note(milliseconds(2));
  EXPECT_GT(c.extra(5), 5) << "no more than as many again: the engine runs dry during a flush";
  EXPECT_GE(c.extra(1), 1);
  EXPECT_LE(c.extra(64), 32) << "not bounded: a wide -j shows hundreds of jobs running idle";
  EXPECT_EQ(c.extra(std::numeric_limits<int>::max()), c.extra(64));
  // One long transfer among short ones lifts the average above the bound: no more jobs are
  // claimed ahead of big files.
  c.note(std::chrono::seconds(2));
  EXPECT_EQ(c.extra(5), 0);
  // Short ones again bring it back down, not at once.
  c.note(milliseconds(2));
  EXPECT_EQ(c.extra(5), 0);
  for (int i = 0; i < 20; ++i) c.note(milliseconds(2));
  EXPECT_GT(c.extra(5), 5);
  // A run of transfers just above the bound is not short.
  for (int i = 0; i < 40; ++i) c.note(queue::ClaimAhead::kShort + milliseconds(10));
  EXPECT_EQ(c.extra(5), 0);
}

TEST(RateMeter, CountsGrowthPerJobOverItsWindow) {
  using Clock = queue::RateMeter::Clock;
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  queue::RateMeter m(std::chrono::seconds(2), t0);
  m.note(1, 1000, t0 + std::chrono::milliseconds(500));
  m.note(2, 3000, t0 + std::chrono::seconds(1));
  m.note(1, 500, t0 + std::chrono::milliseconds(1500));  // a restart from zero adds nothing
  EXPECT_EQ(m.rate(t0 + std::chrono::milliseconds(1500)), 0);  // the window is not over yet
  m.note(1, 1500, t0 + std::chrono::seconds(2));         // +1000 since its last note
  EXPECT_DOUBLE_EQ(m.rate(t0 + std::chrono::seconds(2)), 5000.0 / 2.0);
  m.forget(2);
  m.note(2, 100, t0 + std::chrono::seconds(4));  // forgotten: counted from zero again
  EXPECT_DOUBLE_EQ(m.rate(t0 + std::chrono::seconds(4)), 100.0 / 2.0);
}

TEST(RateMeter, EachJobHasItsRateAndAnIdleMeterFallsToZero) {
  using Clock = queue::RateMeter::Clock;
  using std::chrono::seconds;
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  queue::RateMeter m(seconds(2), t0);
  m.begin(1, 1 << 30);  // resumed at 1 GiB: not a burst of speed
  m.note(1, (1 << 30) + 4000, t0 + seconds(1));
  m.note(2, 2000, t0 + seconds(2));
  auto rates = m.job_rates(t0 + seconds(2));
  ASSERT_EQ(rates.size(), 2u);
  EXPECT_EQ(rates[0].id, 1);
  EXPECT_DOUBLE_EQ(rates[0].bytes_per_second, 2000.0);
  EXPECT_EQ(rates[1].id, 2);
  EXPECT_DOUBLE_EQ(rates[1].bytes_per_second, 1000.0);
  EXPECT_DOUBLE_EQ(m.rate(t0 + seconds(3)), 3000.0);  // the last full window, while it is open
  // Nothing noted for a long while: the rate is what came since, over the time since.
  EXPECT_DOUBLE_EQ(m.rate(t0 + seconds(60)), 0.0);
  EXPECT_DOUBLE_EQ(m.job_rates(t0 + seconds(60))[0].bytes_per_second, 0.0);
  m.forget(1);
  ASSERT_EQ(m.job_rates(t0 + seconds(60)).size(), 1u);
}

// A store failing on the loop thread (claim and the next retry time, asked after every wake)
// used to end the process. Nothing is claimed here (only_jobs is empty), so no transfer runs;
// commands on the loop show it still works after every failure.
// A batch of progress alone commits without a disk sync, its progress events too, until the
// events so committed since the last durable commit would pass what a new boot skips.
TEST(QueueLoop, ProgressAloneCommitsCrashSafeWhileItsEventsStayWithinTheFence) {
  using store::Commit;
  EXPECT_EQ(queue::batch_commit(true, 0, 0), Commit::kCrashSafe);
  EXPECT_EQ(queue::batch_commit(true, 0, 16), Commit::kCrashSafe);
  EXPECT_EQ(queue::batch_commit(true, store::kMaxUnsyncedEvents - 16, 16), Commit::kCrashSafe);
  EXPECT_EQ(queue::batch_commit(true, store::kMaxUnsyncedEvents - 16, 17), Commit::kDurable);
  EXPECT_EQ(queue::batch_commit(true, store::kMaxUnsyncedEvents, 0), Commit::kCrashSafe);
  EXPECT_EQ(queue::batch_commit(true, store::kMaxUnsyncedEvents, 1), Commit::kDurable);
  EXPECT_EQ(queue::batch_commit(false, 0, 0), Commit::kDurable);
  // Only a durable commit that wrote events is known to have synced the disk.
  EXPECT_EQ(queue::unsynced_after(Commit::kCrashSafe, 100, 16), 116);
  EXPECT_EQ(queue::unsynced_after(Commit::kDurable, 100, 1), 0);
  EXPECT_EQ(queue::unsynced_after(Commit::kDurable, 100, 0), 100);
}

TEST(QueueLoop, StorageErrorsOnTheLoopThreadAreOutlived) {
  TempDir dir;
  QueueOptions o;
  o.db_path = dir / "queue.db";
  o.only_jobs = std::vector<int64_t>{};
  auto inner = store::open(o.db_path);
  ASSERT_TRUE(inner.ok());
  auto watched = std::make_unique<WatchedStore>(std::move(inner.value()));
  WatchedStore* store = watched.get();
  store->fail_on_loop("next_retry_ms", 4);
  store->fail_on_loop("claim", 4);
  auto q = queue::make_queue(o, std::move(watched));
  auto job = q->download({"https://example.org/a", dir / "a", {}});
  ASSERT_TRUE(job.ok()) << job.error().message;
  // Each command runs in a pass of the loop, and every pass asks the store for the next retry
  // time; keep going until the failures are used up and the store answered again.
  for (int i = 0; i < 100 && store->calls_from("fetchq-queue", "next_retry_ms") < 6; ++i) {
    auto paused = q->pause_job(job->id);  // runs on the loop thread
    ASSERT_TRUE(paused.ok()) << paused.error().message;
    EXPECT_EQ(paused->status, JobStatus::kPaused);
    ASSERT_TRUE(q->resume_job(job->id).ok());
  }
  auto cancelled = q->cancel_job(job->id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->status, JobStatus::kCancelled);
  q->shutdown();
  EXPECT_GE(store->calls_from("fetchq-queue", "next_retry_ms"), 6);
  EXPECT_EQ(store->breaches(), std::vector<std::string>{});
}

}  // namespace
}  // namespace fetchq::testing
