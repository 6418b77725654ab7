// The queue's threads against a store that watches its callers: no lock of the queue is held
// across a store call, the transfer thread enters the store only to record a new .part, and a
// store that fails on the loop thread is logged and outlived, never fatal.
#include <SQLiteCpp/SQLiteCpp.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "integration/helpers.h"
#include "queue/join_walk.h"
#include "queue/queue_impl.h"
#include "support/process.h"
#include "support/watched_store.h"

namespace fetchq::testing {
namespace {

class QueueThreadsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  WatchedStore* store_ = nullptr;  // owned by the queue

  std::unique_ptr<DownloadQueue> open(QueueOptions o, util::Env& env = util::Env::posix()) {
    auto inner = store::open(o.db_path);
    EXPECT_TRUE(inner.ok());
    auto watched = std::make_unique<WatchedStore>(std::move(inner.value()));
    store_ = watched.get();
    return queue::make_queue(std::move(o), std::move(watched), env);
  }
  std::string dl() {
    std::filesystem::create_directories(dir_ / "dl");
    return dir_ / "dl";
  }
};

TEST_F(QueueThreadsTest, NoQueueLockIsHeldAcrossStoreCallsAndTheTransferThreadNeverCallsTheStore) {
  for (int i = 0; i < 24; ++i) {
    Resource r;
    r.body = make_body(i % 3 == 0 ? 400000 : 20000, i + 1);
    if (i % 3 == 0) r.rate_bytes_per_s = 2000000;  // long enough for progress and checkpoints
    server_.add("/f" + std::to_string(i), r);
  }
  Resource slow;
  slow.body = make_body(1200000, 99);
  slow.rate_bytes_per_s = 300000;  // still running once the others are submitted
  server_.add("/slow", slow);
  auto o = fast_options(dir_);
  o.max_parallel = 4;
  std::atomic<int> completed{0};
  o.callbacks.on_complete = [&](const Job&) { ++completed; };
  auto q = open(o);
  store_->slow_commit_ms = 20;  // commits the transfer thread must never wait for
  auto paused = submit(*q, server_.url("/slow"), dl() + "/paused.bin");
  auto cancelled = submit(*q, server_.url("/slow"), dl() + "/cancelled.bin");
  std::vector<int64_t> ids;
  for (int i = 0; i < 24; ++i)
    ids.push_back(submit(*q, server_.url("/f" + std::to_string(i)), dl()).id);
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(paused.id)->bytes > 0; }));
  ASSERT_TRUE(q->pause_job(paused.id).ok());
  ASSERT_TRUE(q->cancel_job(cancelled.id).ok());
  q->stats();
  q->list_jobs({});
  ASSERT_TRUE(q->join(std::chrono::seconds(60), ids));
  ASSERT_TRUE(q->resume_job(paused.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  q->prune_jobs();
  q->shutdown();
  EXPECT_EQ(store_->breaches(), std::vector<std::string>{});
  EXPECT_EQ(completed.load(), 25);
  // The checks above saw the threads they are about.
  EXPECT_GT(store_->calls_from("fetchq-queue", "record_part"), 0);
  EXPECT_GT(store_->calls_from("fetchq-queue", "transaction"), 0);
  EXPECT_GT(store_->calls_from("fetchq-settle", "seal"), 0);
}

TEST_F(QueueThreadsTest, StorageErrorsOnTheLoopThreadAreLoggedAndOutlived) {
  for (int i = 0; i < 6; ++i) {
    Resource r;
    r.body = make_body(30000, i + 1);
    server_.add("/f" + std::to_string(i), r);
  }
  auto o = fast_options(dir_);
  std::atomic<int> started{0}, completed{0};
  o.callbacks.on_start = [&](const Job&) { ++started; };
  o.callbacks.on_complete = [&](const Job&) { ++completed; };
  auto q = open(o);
  // schedule() asks next_retry_ms after every batch; fire() reads the job for each callback.
  store_->fail_on_loop("next_retry_ms", 3);
  store_->fail_on_loop("get_job", 4);
  store_->fail_on_loop("claim", 2);
  std::vector<int64_t> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(submit(*q, server_.url("/f" + std::to_string(i)), dl()).id);
  ASSERT_TRUE(q->join(std::chrono::seconds(30), ids));
  for (int64_t id : ids) EXPECT_EQ(q->id_to_job(id)->status, JobStatus::kCompleted);
  // The failed reads cost their callbacks, nothing else.
  q->shutdown();
  EXPECT_EQ(started.load() + completed.load(), 12 - 4);
}

TEST_F(QueueThreadsTest, ACommandThatMeetsAFailingStoreFailsWithItsErrorAndTheLoopGoesOn) {
  Resource r;
  r.body = make_body(30000, 7);
  server_.add("/a", r);
  server_.add("/b", r);
  auto q = open(fast_options(dir_));
  auto a = submit(*q, server_.url("/a"), dl() + "/a.bin");
  store_->fail_on_loop("get_job", 1);
  auto cancelled = q->cancel_job(a.id);  // a Result: the storage failure is its error, not a throw
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code, ErrorCode::kIo);
  EXPECT_NE(cancelled.error().message.find("injected failure of get_job"), std::string::npos);
  auto b = submit(*q, server_.url("/b"), dl() + "/b.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kCompleted);
}

// fetchq get asks join again every quarter of a second with the same ids, to redraw: each call
// goes on from where the last walk stopped instead of reading every ended job again (with
// thousands of jobs that rereading took most of fetchq get's CPU time).
TEST_F(QueueThreadsTest, JoinAskedAgainWithTheSameIdsGoesOnFromWhereTheLastOneStopped) {
  Resource small;
  small.body = make_body(2000, 3);
  server_.add("/small", small);
  Resource slow;
  slow.body = make_body(600000, 4);
  slow.rate_bytes_per_s = 20000;  // still running while join is asked
  server_.add("/slow", slow);
  auto q = open(fast_options(dir_));
  constexpr int kEnded = 150;
  std::vector<int64_t> ids;
  for (int i = 0; i < kEnded; ++i)
    ids.push_back(submit(*q, server_.url("/small"), dl() + "/s" + std::to_string(i)).id);
  ASSERT_TRUE(q->join(std::chrono::seconds(60), ids));
  auto running = submit(*q, server_.url("/slow"), dl() + "/slow.bin");
  ids.push_back(running.id);
  const std::string me = thread_name();
  auto reads_so_far = [&] {
    return store_->calls_from(me, "get_job") + store_->calls_from(me, "any_unfinished");
  };
  const int before = reads_so_far();
  ASSERT_FALSE(q->join(std::chrono::milliseconds(5), ids));
  const int first = reads_so_far() - before;
  // The first join walks past the ended jobs a chunk at a time, and stops at the running one.
  const int chunks = static_cast<int>((ids.size() + queue::kJoinChunk - 1) / queue::kJoinChunk);
  EXPECT_GE(first, chunks) << "the first join walks past every ended job";
  EXPECT_LE(first, chunks + 3) << first << " reads for one join over " << ids.size() << " ids";
  constexpr int kCalls = 20;
  for (int i = 0; i < kCalls; ++i) EXPECT_FALSE(q->join(std::chrono::milliseconds(5), ids));
  const int reads = reads_so_far() - before - first;
  // The later ones go on from there: a read or two each (a change seen may ask again), never
  // the walk again (three reads each).
  EXPECT_GE(reads, kCalls) << "each join asks the store at least once";
  EXPECT_LT(reads, 2 * kCalls + 5) << reads << " reads for " << kCalls << " joins";
  ASSERT_TRUE(q->cancel_job(running.id).ok());
  EXPECT_TRUE(q->join(std::chrono::seconds(30), ids));
}

// The files' fdatasync calls (SQLite's own go around the Env), each slowed down like a disk busy
// with a big file's writeback. While one waits, the job's recorded bytes are read twice from
// another connection: did any progress commit meanwhile?
class SlowSyncEnv final : public util::EnvWrapper {
 public:
  SlowSyncEnv(std::string db, std::chrono::milliseconds delay)
      : util::EnvWrapper(util::Env::posix()), db_(std::move(db)), delay_(delay) {}
  int fdatasync(int fd) override {
    ++started;
    const int64_t before = recorded_bytes();
    std::this_thread::sleep_for(delay_);
    const int64_t after = recorded_bytes();
    std::lock_guard lk(mu_);
    threads_.push_back(thread_name());
    moved_while_syncing_ += after > before;
    return EnvWrapper::fdatasync(fd);
  }
  std::vector<std::string> threads() {
    std::lock_guard lk(mu_);
    return threads_;
  }
  int moved_while_syncing() {
    std::lock_guard lk(mu_);
    return moved_while_syncing_;
  }
  std::atomic<int> started{0};

 private:
  int64_t recorded_bytes() {
    try {
      SQLite::Database db(db_, SQLite::OPEN_READONLY, 2000);
      return db.execAndGet("SELECT COALESCE(MAX(bytes), 0) FROM jobs").getInt64();
    } catch (const SQLite::Exception&) {
      return -1;  // counts as no move
    }
  }
  std::string db_;
  std::chrono::milliseconds delay_;
  std::mutex mu_;
  std::vector<std::string> threads_;
  int moved_while_syncing_ = 0;
};

// A checkpoint syncs its .part on a thread of its own: the loop's commits (progress, which a
// rerun resumes by) go on meanwhile, and progress alone commits without waiting for the disk.
TEST_F(QueueThreadsTest, ACheckpointsSyncHoldsUpNoProgressAndProgressAloneWaitsForNoDisk) {
  Resource r;
  r.body = make_body(24 << 20, 5);
  r.rate_bytes_per_s = 2 << 20;  // about 3 s over four connections
  server_.add("/big", r);
  auto o = fast_options(dir_);
  o.connections = 4;
  o.progress_interval = std::chrono::milliseconds(50);
  o.checkpoint_interval = std::chrono::milliseconds(300);
  SlowSyncEnv env(o.db_path, std::chrono::milliseconds(400));
  auto q = open(o, env);
  auto job = submit(*q, server_.url("/big"), dl() + "/big.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_EQ(sha256_file(dl() + "/big.bin"), sha256_hex_of(r.body));
  q->shutdown();
  int checkpoint_syncs = 0;
  for (const auto& t : env.threads()) {
    EXPECT_NE(t, "fetchq-queue") << "the loop thread waited for a file's fdatasync";
    checkpoint_syncs += t == "fetchq-ckpt";
  }
  EXPECT_GE(checkpoint_syncs, 2);
  EXPECT_GE(env.moved_while_syncing(), 2);  // progress was recorded while a sync waited
  // Progress went without a disk sync (its events too: a new boot skips their seqs); nothing
  // else did.
  EXPECT_GT(store_->commits_of(store::Commit::kCrashSafe), 0);
  EXPECT_GT(store_->commits_of(store::Commit::kDurable), 0);
  const std::set<std::string> may = {"set_progress", "note_segments_written", "append_event",
                                     "set_checkpoint", "save_segments"};
  for (const auto& m : store_->called_in_crash_safe()) {
    EXPECT_TRUE(may.count(m)) << m << " was committed without waiting for the disk";
  }
  EXPECT_TRUE(store_->called_in_crash_safe().count("set_progress"));
  const auto events = job_events(*q, job.id);
  EXPECT_GE(count_type(events, "download_progress"), 3);
}

// A segmented transfer records what its segments wrote ten times a second (what a rerun after a
// crash of the process resumes from), while events and callbacks keep to progress_interval.
TEST_F(QueueThreadsTest, ASegmentedTransferRecordsProgressOftenAndReportsItAsUsual) {
  Resource r;
  r.body = make_body(24 << 20, 6);
  r.rate_bytes_per_s = 2 << 20;  // about 3 s over four connections
  server_.add("/big", r);
  auto o = fast_options(dir_);
  o.connections = 4;
  o.progress_interval = std::chrono::milliseconds(1000);
  std::atomic<int> callbacks{0};
  o.callbacks.on_progress = [&](const Job&) { ++callbacks; };
  auto q = open(o);
  const auto t0 = std::chrono::steady_clock::now();
  auto job = submit(*q, server_.url("/big"), dl() + "/big.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(q->id_to_job(job.id)->status, JobStatus::kCompleted);
  q->shutdown();
  EXPECT_GE(store_->calls_from("fetchq-queue", "note_segments_written"), 15);
  SQLite::Database db(o.db_path, SQLite::OPEN_READONLY);
  const int events =
      db.execAndGet("SELECT COUNT(*) FROM events WHERE type = 'download_progress'").getInt();
  EXPECT_GE(events, 2);
  EXPECT_LE(events, static_cast<int>(took) + 2) << "in " << took << " s";
  EXPECT_GE(callbacks.load(), 1);
  EXPECT_LE(callbacks.load(), events);
}

// A checkpoint still being synced holds the job's .part (and its lock): a pause and a resume at
// once must wait for it, not find the file locked and fail.
TEST_F(QueueThreadsTest, AResumeAtOnceWaitsForACheckpointStillBeingSynced) {
  Resource r;
  r.body = make_body(8 << 20, 8);
  r.rate_bytes_per_s = 2 << 20;
  server_.add("/f", r);
  auto o = fast_options(dir_);
  SlowSyncEnv env(o.db_path, std::chrono::milliseconds(1500));
  auto q = open(o, env);
  auto job = submit(*q, server_.url("/f"), dl() + "/f.bin");
  // Checkpoints every 100 ms, each sync 1.5 s: some wait behind the one being synced.
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->bytes > (2 << 20); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_GT(env.started.load(), 0);
  ASSERT_TRUE(q->pause_job(job.id).ok());
  ASSERT_TRUE(q->resume_job(job.id).ok());
  ASSERT_TRUE(q->join(std::chrono::seconds(60)));
  auto j = q->id_to_job(job.id);
  ASSERT_EQ(j->status, JobStatus::kCompleted) << j->error.value_or("");
  EXPECT_EQ(sha256_file(dl() + "/f.bin"), sha256_hex_of(r.body));
  q->shutdown();
  SQLite::Database db(o.db_path, SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM events WHERE type = 'download_retrying'").getInt(),
            0);
}

// The loop runs the commands it took before the reports that came with them: a pause that came
// with a transfer's first answer is told first. The start is then not told after it (an
// events reader would take the job for running again), nor is on_start called.
TEST_F(QueueThreadsTest, AnAnswerThatComesWithAPauseIsNotToldAfterIt) {
  auto answer = std::make_shared<std::atomic<bool>>(false);
  server_.set_handler("/a", [answer](const RequestLog&, int fd) {
    for (int i = 0; i < 3000 && !answer->load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\nETag: \"a1\"\r\n\r\n")) return;
    const std::string chunk(64 << 10, 'a');
    for (int i = 0; i < 600 && send_all(fd, chunk); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  });
  Resource b;
  b.body = make_body(1 << 20, 7);
  b.stall_after = 0;  // answers, then holds the connection
  server_.add("/b", b);
  auto o = fast_options(dir_);
  o.max_parallel = 2;
  auto started = std::make_shared<std::atomic<int>>(0);
  o.callbacks.on_start = [started](const Job& j) {
    if (j.source.find("/a") != std::string::npos) ++*started;
  };
  auto q = open(o);
  Job a = submit(*q, server_.url("/a"), dl() + "/a.bin");
  ASSERT_TRUE(wait_until([&] { return server_.requests_for("/a").size() == 1; }));
  // The loop is kept in its next transaction (b's answer) ...
  store_->hold_loop_transactions(true);
  submit(*q, server_.url("/b"), dl() + "/b.bin");
  ASSERT_TRUE(wait_until([&] { return store_->held_at_gate() == 1; }));
  // ... while a's answer and a pause of a wait in its inbox.
  answer->store(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::thread pauser([&] { EXPECT_TRUE(q->pause_job(a.id).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  store_->hold_loop_transactions(false);
  pauser.join();
  ASSERT_TRUE(wait_until([&] {
    auto j = q->id_to_job(a.id);
    return j && j->status == JobStatus::kPaused && j->total_bytes == 8388608;
  }));
  q->shutdown();
  const auto types = event_types(job_events(*q, a.id));
  auto paused = std::find(types.begin(), types.end(), "download_paused");
  ASSERT_NE(paused, types.end());
  EXPECT_EQ(std::find(paused, types.end(), "download_started"), types.end())
      << "the job was said to start after its pause";
  EXPECT_EQ(started->load(), 0) << "on_start was called for a job already paused";
  // What the answer said of the file was still recorded (only set_started records its size):
  // a resume keeps the bytes by it.
  EXPECT_EQ(q->id_to_job(a.id)->total_bytes, 8388608);
}

// An event appended in a transaction that is then rolled back was never given: the queue's last
// seq stays where it was, and a reader who follows from it gets the event that later takes the
// seq (a rolled-back seq is given again).
TEST_F(QueueThreadsTest, AnEventOfARolledBackTransactionIsNeverSaidToBeThere) {
  // Answers with a first piece, then sends nothing (for up to 4 s, within the stall timeout):
  // the job runs and, once its first bytes are told, appends no more events.
  server_.set_handler("/r", [](const RequestLog&, int fd) {
    if (!send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\nETag: \"r1\"\r\n\r\n" +
                          std::string(16 << 10, 'r'))) {
      return;
    }
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 4000);  // until the client lets go
  });
  auto q = open(fast_options(dir_));
  Job job = submit(*q, server_.url("/r"), dl() + "/r.bin");
  ASSERT_TRUE(wait_until([&] { return q->id_to_job(job.id)->status == JobStatus::kRunning; }))
      << to_string(q->id_to_job(job.id)->status) << " " << q->id_to_job(job.id)->error.value_or("");
  ASSERT_TRUE(wait_until([&] {
    auto types = event_types(job_events(*q, job.id));
    return std::find(types.begin(), types.end(), "download_started") != types.end();
  })) << ::testing::PrintToString(event_types(job_events(*q, job.id)));
  // The loop quiet for half a second (no transaction: no event, no checkpoint), so that the
  // failure below meets the pause.
  int transactions = store_->calls_from("fetchq-queue", "transaction");
  for (int quiet = 0; quiet < 5; ++quiet) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int now = store_->calls_from("fetchq-queue", "transaction");
    if (now != transactions) quiet = 0, transactions = now;
  }
  const int64_t before = q->last_event_seq();
  store_->fail_loop_commits(1);
  EXPECT_FALSE(q->pause_job(job.id).ok()) << "the pause was not recorded";
  EXPECT_EQ(q->id_to_job(job.id)->status, JobStatus::kRunning);
  EXPECT_EQ(q->last_event_seq(), before) << "a seq that no event holds was given out";
  EXPECT_TRUE(q->events_since(before, 100, std::chrono::milliseconds(0)).empty());
  // A follower from the last seq: the pause that then succeeds is the next event it gets.
  const int64_t from = q->last_event_seq();
  ASSERT_TRUE(q->pause_job(job.id).ok());
  auto next = q->events_since(from, 100, std::chrono::milliseconds(2000));
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.back().type, "download_paused");
  EXPECT_EQ(next.back().seq, q->last_event_seq());
  q->shutdown();
}

}  // namespace
}  // namespace fetchq::testing
