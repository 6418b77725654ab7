// The queue's threads against a store that watches its callers: no lock of the queue is held
// across a store call, the transfer thread enters the store only to record a new .part, and a
// store that fails on the loop thread is logged and outlived, never fatal.
#include <atomic>
#include <filesystem>
#include <string>

#include "integration/helpers.h"
#include "queue/queue_impl.h"
#include "support/watched_store.h"

namespace fetchq::testing {
namespace {

class QueueThreadsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  WatchedStore* store_ = nullptr;  // owned by the queue

  std::unique_ptr<DownloadQueue> open(QueueOptions o) {
    auto inner = store::open(o.db_path);
    EXPECT_TRUE(inner.ok());
    auto watched = std::make_unique<WatchedStore>(std::move(inner.value()));
    store_ = watched.get();
    return queue::make_queue(std::move(o), std::move(watched));
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
  slow.body = make_body(600000, 99);
  slow.rate_bytes_per_s = 300000;
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
  const int before = store_->calls_from(me, "get_job");
  constexpr int kCalls = 20;
  for (int i = 0; i < kCalls; ++i) EXPECT_FALSE(q->join(std::chrono::milliseconds(5), ids));
  const int reads = store_->calls_from(me, "get_job") - before;
  // One walk over the ended jobs, then about one read per call (plus one per change seen).
  EXPECT_LT(reads, 2 * kEnded + 10 * kCalls) << reads << " job reads for " << kCalls << " joins";
  EXPECT_GE(reads, kEnded) << "the first join walks past every ended job";
  ASSERT_TRUE(q->cancel_job(running.id).ok());
  EXPECT_TRUE(q->join(std::chrono::seconds(30), ids));
}

}  // namespace
}  // namespace fetchq::testing
