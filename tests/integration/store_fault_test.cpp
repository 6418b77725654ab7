// A real queue on a store that fails on demand (busy, I/O error): the loop thread lives on, and
// each job either recovers or ends in a clean error. Without that, one storage error on the
// loop thread reached std::terminate and took fetchqd down with it.
#include <atomic>
#include <filesystem>

#include "integration/helpers.h"
#include "queue/open_with_store.h"
#include "support/failing_store.h"

namespace fetchq::testing {
namespace {

using store::StoreErrorKind;
using store::StoreOp;

class StoreFaultTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;

  std::string dl() {
    std::filesystem::create_directories(dir_ / "dl");
    return dir_ / "dl";
  }

  // A queue on the real SQLite store of fast_options, behind a FailingStore (failing_).
  std::unique_ptr<DownloadQueue> open_failing(QueueOptions o) {
    auto real = store::open(o.db_path);
    EXPECT_TRUE(real.ok()) << real.error().message;
    auto failing = std::make_unique<FailingStore>(std::move(real.value()));
    failing_ = failing.get();
    auto q = queue::open_with_store(std::move(o), std::move(failing));
    EXPECT_TRUE(q.ok()) << (q.ok() ? "" : q.error().message);
    return q.ok() ? std::move(q.value()) : nullptr;
  }

  // Adds a resource of n bytes at path and returns its body.
  std::string serve(const std::string& path, size_t n, uint32_t seed, uint64_t rate = 0) {
    Resource r;
    r.body = make_body(n, seed);
    r.rate_bytes_per_s = rate;
    server_.add(path, r);
    return r.body;
  }

  // Downloads path into dl() and expects the file whole; the queue must still be alive for it.
  void expect_download_completes(DownloadQueue& q, const std::string& path,
                                 const std::string& body) {
    auto job = submit(q, server_.url(path), dl());
    ASSERT_TRUE(q.join(std::chrono::seconds(30), {job.id})) << path << " never finished";
    auto done = q.id_to_job(job.id);
    ASSERT_TRUE(done);
    ASSERT_EQ(done->status, JobStatus::kCompleted) << done->error.value_or("");
    EXPECT_EQ(done->bytes, static_cast<int64_t>(body.size()));
    EXPECT_EQ(sha256_file(done->download_path.value_or("")), sha256_hex_of(body));
  }

  FailingStore* failing_ = nullptr;  // owned by the queue
};

TEST_F(StoreFaultTest, AFailedClaimOrRetryLookupLeavesTheLoopRunning) {
  auto q = open_failing(fast_options(dir_));
  ASSERT_TRUE(q);
  failing_->fail(StoreOp::kClaim, StoreErrorKind::kBusy, 1);
  failing_->fail(StoreOp::kNextRetryMs, StoreErrorKind::kIo, 2);
  expect_download_completes(*q, "/a", serve("/a", 100000, 1));
  EXPECT_EQ(failing_->failed(StoreOp::kClaim), 1);
  ASSERT_TRUE(wait_until([&] { return failing_->pending(StoreOp::kNextRetryMs) == 0; }));
  // The loop thread is still there: another job runs.
  expect_download_completes(*q, "/b", serve("/b", 50000, 2));
}

TEST_F(StoreFaultTest, FailedCommitsOfProgressCheckpointsAndEventsAreTriedAgain) {
  auto q = open_failing(fast_options(dir_));
  ASSERT_TRUE(q);
  failing_->fail(StoreOp::kSetStarted, StoreErrorKind::kBusy, 1);
  failing_->fail(StoreOp::kSetProgress, StoreErrorKind::kBusy, 1);
  failing_->fail(StoreOp::kSetCheckpoint, StoreErrorKind::kIo, 1);
  failing_->fail(StoreOp::kAppendEvent, StoreErrorKind::kIo, 1);
  // Slow enough for progress reports and checkpoints (every 100 ms) to come during the body.
  // (Checkpoints wait for the .part's record, which comes with the retried first batch.)
  auto body = serve("/slow", 400000, 3, 100000);
  expect_download_completes(*q, "/slow", body);
  EXPECT_EQ(failing_->failed(StoreOp::kSetStarted), 1);
  EXPECT_EQ(failing_->failed(StoreOp::kAppendEvent), 1);
  EXPECT_EQ(failing_->failed(StoreOp::kSetProgress) + failing_->failed(StoreOp::kSetCheckpoint), 2);
  expect_download_completes(*q, "/after", serve("/after", 1000, 4));
}

TEST_F(StoreFaultTest, ACallbackWhoseJobCannotBeReadIsSkippedAndTheQueueGoesOn) {
  auto o = fast_options(dir_);
  std::atomic<int> started{0}, completed{0};
  o.callbacks.on_start = [&](const Job&) { ++started; };
  o.callbacks.on_complete = [&](const Job&) { ++completed; };
  auto q = open_failing(std::move(o));
  ASSERT_TRUE(q);
  failing_->fail(StoreOp::kGetJob, StoreErrorKind::kIo, 1);
  auto body = serve("/a", 20000, 5);
  auto job = submit(*q, server_.url("/a"), dl());
  // The loop thread's read for the first callback takes the failure (the test reads nothing
  // before: DownloadQueue::id_to_job still lets a StoreError through).
  ASSERT_TRUE(wait_until([&] { return failing_->failed(StoreOp::kGetJob) == 1; }));
  ASSERT_TRUE(q->join(std::chrono::seconds(30), {job.id}));
  auto done = q->id_to_job(job.id);
  ASSERT_EQ(done->status, JobStatus::kCompleted) << done->error.value_or("");
  EXPECT_EQ(sha256_file(done->download_path.value_or("")), sha256_hex_of(body));
  expect_download_completes(*q, "/b", serve("/b", 20000, 6));
  // One of the four callbacks was lost with its failed read; the others came.
  EXPECT_TRUE(wait_until([&] { return started + completed == 3; }))
      << started << " started, " << completed << " completed";
}

TEST_F(StoreFaultTest, AFinishedFileWhoseSealFailsIsDownloadedAgainOrFailsCleanly) {
  auto q = open_failing(fast_options(dir_));
  ASSERT_TRUE(q);
  failing_->fail(StoreOp::kSeal, StoreErrorKind::kIo, 1);
  expect_download_completes(*q, "/sealed", serve("/sealed", 60000, 7));
  EXPECT_EQ(failing_->failed(StoreOp::kSeal), 1);
}

// The record of a new .part goes in the loop's batch: a batch that fails is tried again as a
// whole, and the job goes on with the .part recorded.
TEST_F(StoreFaultTest, APartRecordThatFailsIsTriedAgainWithItsBatch) {
  auto q = open_failing(fast_options(dir_));
  ASSERT_TRUE(q);
  failing_->fail(StoreOp::kRecordPart, StoreErrorKind::kBusy, 1);
  expect_download_completes(*q, "/part", serve("/part", 30000, 8));
  EXPECT_EQ(failing_->failed(StoreOp::kRecordPart), 1);
}

// A store that refuses to record the next `refuse` new .part files (as it does for an attempt
// that moved on).
class RefusingStore final : public store::ForwardingStore {
 public:
  RefusingStore(std::unique_ptr<store::Store> inner, int refuse)
      : ForwardingStore(std::move(inner)), refuse_(refuse) {}
  bool record_part(int64_t id, int attempt, const std::string& path, uint64_t dev, uint64_t ino,
                   int64_t birth_ns) override {
    if (refuse_ > 0) {
      --refuse_;
      return false;
    }
    return ForwardingStore::record_part(id, attempt, path, dev, ino, birth_ns);
  }

 private:
  std::atomic<int> refuse_;
};

// A .part whose record is refused is let go, whether its body is still coming (slow) or already
// whole (quick): the job ends in a clean error, no file and no .part is left, and the queue goes
// on. Its bytes were written into a file without a name, never promised.
TEST_F(StoreFaultTest, APartWhoseRecordIsRefusedIsLetGoAndItsJobFailsCleanly) {
  auto o = fast_options(dir_);
  o.max_parallel = 1;
  auto real = store::open(o.db_path);
  ASSERT_TRUE(real.ok()) << real.error().message;
  auto opened = queue::open_with_store(std::move(o),
                                       std::make_unique<RefusingStore>(std::move(real.value()), 2));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& q = *opened.value();
  serve("/quick", 30000, 8);
  serve("/slow", 300000, 9, 300000);
  for (const char* path : {"/quick", "/slow"}) {
    auto job = submit(q, server_.url(path), dl());
    ASSERT_TRUE(q.join(std::chrono::seconds(30), {job.id})) << path;
    auto done = q.id_to_job(job.id);
    ASSERT_TRUE(done);
    EXPECT_EQ(done->status, JobStatus::kError) << path;
    EXPECT_EQ(done->error_type.value_or(""), "DiskError") << path;
    EXPECT_NE(done->error.value_or("").find("cannot record"), std::string::npos)
        << done->error.value_or("");
    EXPECT_FALSE(std::filesystem::exists(dl() + path + ".part")) << path;
    EXPECT_FALSE(std::filesystem::exists(dl() + path)) << path;
  }
  expect_download_completes(q, "/next", serve("/next", 30000, 10));
}

// The public calls that return a Result give a storage failure as its Error, whatever the
// call; those that return a value throw the public StorageError, never a backend's exception.
TEST_F(StoreFaultTest, PublicCallsReportStorageFailuresAsErrorsOrStorageError) {
  auto q = open_failing(fast_options(dir_));
  ASSERT_TRUE(q);
  auto job = submit(*q, server_.url("/gone"), dl());  // a 404: the job ends in error
  ASSERT_TRUE(q->join(std::chrono::seconds(30), {job.id}));
  ASSERT_EQ(q->id_to_job(job.id)->status, JobStatus::kError);

  failing_->fail(StoreOp::kChangeStatus, StoreErrorKind::kBusy);
  auto retried = q->retry_job(job.id);
  ASSERT_FALSE(retried.ok());
  EXPECT_EQ(retried.error().code, ErrorCode::kBusy) << retried.error().message;

  failing_->fail(StoreOp::kGetJob, StoreErrorKind::kIo, 2);
  auto resumed = q->resume_job(job.id);
  ASSERT_FALSE(resumed.ok());
  EXPECT_EQ(resumed.error().code, ErrorCode::kIo) << resumed.error().message;
  auto paused = q->pause_job(job.id);
  ASSERT_FALSE(paused.ok());
  EXPECT_EQ(paused.error().code, ErrorCode::kIo) << paused.error().message;

  failing_->fail(StoreOp::kListJobs, StoreErrorKind::kCorrupt);
  try {
    q->list_jobs();
    ADD_FAILURE() << "list_jobs did not report the failure";
  } catch (const StorageError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::kStorage);
  }

  // Once the store answers again, so does the queue.
  ASSERT_TRUE(q->retry_job(job.id).ok());
}

}  // namespace
}  // namespace fetchq::testing
