// The queue's threads against a store that watches its callers: no lock of the queue is held
// across a store call, the transfer thread enters the store only to record a new .part, and a
// store that fails on the loop thread is logged and outlived, never fatal.
#include <pthread.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "integration/helpers.h"
#include "queue/checked_mutex.h"
#include "queue/queue_impl.h"

namespace fetchq::testing {
namespace {

std::string thread_name() {
  char buf[32] = {};
  ::pthread_getname_np(::pthread_self(), buf, sizeof buf);
  return buf;
}

// Forwards to the real SQLite store. Every call first checks who calls it; calls from the loop
// thread can be made to fail, and its commits to be slow.
class WatchedStore final : public store::Store {
 public:
  explicit WatchedStore(std::unique_ptr<store::Store> inner) : inner_(std::move(inner)) {}

  std::vector<std::string> breaches() {
    std::lock_guard lk(mu_);
    return breaches_;
  }
  int calls_from(const std::string& thread, const std::string& method) {
    std::lock_guard lk(mu_);
    return calls_[thread + " " + method];
  }
  // The next n calls of `method` from the loop thread throw.
  void fail_on_loop(const std::string& method, int n) {
    std::lock_guard lk(mu_);
    failures_[method] = n;
  }
  std::atomic<int> slow_commit_ms{0};

  void transaction(const std::function<void()>& body) override {
    enter("transaction");
    inner_->transaction([&] {
      body();
      if (int ms = slow_commit_ms.load(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    });
  }
  std::vector<Job> insert_jobs(const std::vector<store::NewJob>& jobs, const std::string& now) override {
    enter("insert_jobs");
    return inner_->insert_jobs(jobs, now);
  }
  std::vector<store::ClaimedJob> claim(int n, int64_t now_ms, const std::optional<std::vector<int64_t>>& only,
                                       const std::string& now) override {
    enter("claim");
    return inner_->claim(n, now_ms, only, now);
  }
  std::optional<int64_t> next_retry_ms(int64_t now_ms) override {
    enter("next_retry_ms");
    return inner_->next_retry_ms(now_ms);
  }
  int64_t recover_running() override {
    enter("recover_running");
    return inner_->recover_running();
  }
  bool set_started(int64_t id, int attempt, const store::StartInfo& info) override {
    enter("set_started");
    return inner_->set_started(id, attempt, info);
  }
  bool set_progress(int64_t id, int attempt, int64_t bytes, int64_t total_bytes) override {
    enter("set_progress");
    return inner_->set_progress(id, attempt, bytes, total_bytes);
  }
  bool finish(int64_t id, int attempt, const store::Finish& finish, const std::string& now) override {
    enter("finish");
    return inner_->finish(id, attempt, finish, now);
  }
  bool requeue(int64_t id, int attempt, int64_t not_before_ms, int failures,
               std::optional<int64_t> failing_since_ms, std::optional<std::string> error_type,
               std::optional<std::string> error) override {
    enter("requeue");
    return inner_->requeue(id, attempt, not_before_ms, failures, failing_since_ms, error_type, error);
  }
  void note_best_bytes(int64_t id, int64_t bytes) override {
    enter("note_best_bytes");
    inner_->note_best_bytes(id, bytes);
  }
  bool set_checkpoint(int64_t id, int attempt, int64_t bytes, const std::string& boot_id) override {
    enter("set_checkpoint");
    return inner_->set_checkpoint(id, attempt, bytes, boot_id);
  }
  bool seal(int64_t id, int attempt, const std::string& download_path, int64_t bytes,
            const std::string& boot_id) override {
    enter("seal");
    return inner_->seal(id, attempt, download_path, bytes, boot_id);
  }
  bool record_part(int64_t id, int attempt, const std::string& download_path, uint64_t dev, uint64_t ino,
                   int64_t birth_ns) override {
    enter("record_part");
    return inner_->record_part(id, attempt, download_path, dev, ino, birth_ns);
  }
  void reset_resume_state(int64_t id) override {
    enter("reset_resume_state");
    inner_->reset_resume_state(id);
  }
  bool change_status(int64_t id, const std::vector<JobStatus>& from, JobStatus to,
                     const std::string& now) override {
    enter("change_status");
    return inner_->change_status(id, from, to, now);
  }
  std::optional<Job> get_job(int64_t id) override {
    enter("get_job");
    return inner_->get_job(id);
  }
  std::vector<Job> list_jobs(const ListFilter& filter) override {
    enter("list_jobs");
    return inner_->list_jobs(filter);
  }
  store::StatusCounts counts() override {
    enter("counts");
    return inner_->counts();
  }
  bool any_unfinished(const std::vector<int64_t>& ids) override {
    enter("any_unfinished");
    return inner_->any_unfinished(ids);
  }
  std::vector<int64_t> ids_in(const std::vector<JobStatus>& statuses) override {
    enter("ids_in");
    return inner_->ids_in(statuses);
  }
  std::vector<store::PrunedJob> prune(const std::string& now) override {
    enter("prune");
    return inner_->prune(now);
  }
  int64_t append_event(int64_t job_id, const std::string& type, const std::string& payload,
                       const std::string& ts) override {
    enter("append_event");
    return inner_->append_event(job_id, type, payload, ts);
  }
  std::vector<Event> events_since(int64_t since, int64_t limit, std::optional<int64_t> job_id) override {
    enter("events_since");
    return inner_->events_since(since, limit, job_id);
  }
  int64_t last_event_seq() override {
    enter("last_event_seq");
    return inner_->last_event_seq();
  }
  int64_t first_event_seq() override {
    enter("first_event_seq");
    return inner_->first_event_seq();
  }
  int64_t trim_events(int64_t keep, int64_t batch) override {
    enter("trim_events");
    return inner_->trim_events(keep, batch);
  }

 private:
  void enter(const std::string& method) {
    const std::string thread = thread_name();
    const int held = queue::queue_locks_held();
    std::lock_guard lk(mu_);
    ++calls_[thread + " " + method];
    if (held > 0) {
      breaches_.push_back(method + " called on " + thread + " holding " + std::to_string(held) +
                          " queue lock(s)");
    }
    if (thread == "fetchq-transfer" && method != "record_part") {
      breaches_.push_back(method + " called on the transfer thread");
    }
    if (thread == "fetchq-queue") {
      auto f = failures_.find(method);
      if (f != failures_.end() && f->second > 0) {
        --f->second;
        throw std::runtime_error("injected failure of " + method);
      }
    }
  }

  std::unique_ptr<store::Store> inner_;
  std::mutex mu_;
  std::vector<std::string> breaches_;
  std::map<std::string, int> calls_;
  std::map<std::string, int> failures_;
};

class QueueThreadsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  WatchedStore* store_ = nullptr;  // owned by the queue

  std::unique_ptr<DownloadQueue> open(QueueOptions o) {
    auto inner = store::open_sqlite_store(o.db_path, {});
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

TEST_F(QueueThreadsTest, NoQueueLockIsHeldAcrossStoreCallsAndTheTransferThreadOnlyRecordsParts) {
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
  for (int i = 0; i < 24; ++i) ids.push_back(submit(*q, server_.url("/f" + std::to_string(i)), dl()).id);
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
  EXPECT_GT(store_->calls_from("fetchq-transfer", "record_part"), 0);
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
  for (int i = 0; i < 6; ++i) ids.push_back(submit(*q, server_.url("/f" + std::to_string(i)), dl()).id);
  ASSERT_TRUE(q->join(std::chrono::seconds(30), ids));
  for (int64_t id : ids) EXPECT_EQ(q->id_to_job(id)->status, JobStatus::kCompleted);
  // The failed reads cost their callbacks, nothing else.
  q->shutdown();
  EXPECT_EQ(started.load() + completed.load(), 12 - 4);
}

TEST_F(QueueThreadsTest, ACommandThatMeetsAFailingStoreThrowsToItsCallerAndTheLoopGoesOn) {
  Resource r;
  r.body = make_body(30000, 7);
  server_.add("/a", r);
  server_.add("/b", r);
  auto q = open(fast_options(dir_));
  auto a = submit(*q, server_.url("/a"), dl() + "/a.bin");
  store_->fail_on_loop("get_job", 1);
  EXPECT_THROW(q->cancel_job(a.id), std::runtime_error);
  auto b = submit(*q, server_.url("/b"), dl() + "/b.bin");
  ASSERT_TRUE(q->join(std::chrono::seconds(30)));
  EXPECT_EQ(q->id_to_job(b.id)->status, JobStatus::kCompleted);
}

}  // namespace
}  // namespace fetchq::testing
