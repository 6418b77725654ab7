// The engine and the record of a new .part, with an observer that answers when the test says:
// a real HTTP server on 127.0.0.1, real files, no queue and no store. The file has no name and
// none of its bytes is promised until the answer; an attempt that ends before it is reported
// after it; a refused record lets the file go, and so does an engine that stops meanwhile.
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "integration/helpers.h"
#include "transfer/engine.h"

namespace fetchq::testing {
namespace {

// Records what the engine reports; never answers a record by itself.
class HeldObserver final : public transfer::Observer {
 public:
  void on_started(int64_t, int, const transfer::Started&) override {}
  void on_progress(int64_t, int, int64_t bytes, int64_t,
                   std::vector<transfer::SegmentSpan>) override {
    std::lock_guard lk(mu_);
    progress.push_back(bytes);
  }
  void on_checkpoint(int64_t, int, std::shared_ptr<transfer::PartFile>, int64_t bytes,
                     std::vector<transfer::SegmentSpan>) override {
    std::lock_guard lk(mu_);
    checkpoints.push_back(bytes);
  }
  void on_finished(int64_t, int, transfer::Result r) override {
    {
      std::lock_guard lk(mu_);
      finished = std::move(r);
    }
    cv_.notify_all();
  }
  void on_part_created(int64_t, int, const std::string&, const transfer::PartIdentity&) override {
    {
      std::lock_guard lk(mu_);
      ++created;
    }
    cv_.notify_all();
  }
  void on_transfer_over(int64_t, int) override {
    {
      std::lock_guard lk(mu_);
      ++over;
    }
    cv_.notify_all();
  }

  template <class Pred>
  bool wait(Pred pred, std::chrono::seconds limit = std::chrono::seconds(20)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, limit, [&] { return pred(); });
  }
  // What was seen so far, read under the lock.
  template <class F>
  auto read(F f) {
    std::lock_guard lk(mu_);
    return f();
  }

  std::vector<int64_t> progress, checkpoints;
  std::optional<transfer::Result> finished;
  int created = 0, over = 0;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

class PartRecord : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_;
  HeldObserver observer_;
  transfer::PathRegistry paths_;

  std::unique_ptr<transfer::Engine> engine() {
    transfer::EngineOptions o;
    o.progress_interval = std::chrono::milliseconds(10);
    o.checkpoint_interval = std::chrono::milliseconds(10);
    return std::make_unique<transfer::Engine>(o, &observer_, &paths_);
  }

  std::string serve(const std::string& path, size_t n, uint64_t rate = 0) {
    Resource r;
    r.body = make_body(n, 7);
    r.rate_bytes_per_s = rate;
    server_.add(path, r);
    return r.body;
  }

  transfer::Request request(const std::string& path) {
    transfer::Request r;
    r.job_id = 1;
    r.attempt = 1;
    r.url = server_.url(path);
    r.dest = dir_ / path.substr(1);
    r.download_path = r.dest;
    return r;
  }

  // Runs req until its transfer is over, then answers its record: the completed result.
  transfer::Result finished_before_answer(const transfer::Request& req) {
    auto e = engine();
    e->submit(req);
    EXPECT_TRUE(observer_.wait([&] { return observer_.over == 1; }));
    e->part_recorded(1, 1, true);
    EXPECT_TRUE(observer_.wait([&] { return observer_.finished.has_value(); }));
    auto r = observer_.read([&] { return *observer_.finished; });
    EXPECT_EQ(r.outcome, transfer::Outcome::kCompleted) << r.failure.message;
    return r;
  }

  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
      out.push_back(e.path().filename());
    return out;
  }
};

TEST_F(PartRecord, ANewPartIsNamedAndItsBytesPromisedOnlyAfterItsRecord) {
  const std::string body = serve("/slow.bin", 200000, 400000);
  auto e = engine();
  e->submit(request("/slow.bin"));
  ASSERT_TRUE(observer_.wait([&] { return observer_.created == 1; }));
  // Many progress and checkpoint intervals while the body comes and the record is not answered.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(names(), std::vector<std::string>{}) << "the .part had a name before its record";
  EXPECT_EQ(observer_.read([&] { return observer_.progress.size(); }), 0u);
  EXPECT_EQ(observer_.read([&] { return observer_.checkpoints.size(); }), 0u);
  e->part_recorded(1, 1, true);
  ASSERT_TRUE(observer_.wait([&] { return observer_.finished.has_value(); }));
  auto r = observer_.read([&] { return *observer_.finished; });
  ASSERT_EQ(r.outcome, transfer::Outcome::kCompleted) << r.failure.message;
  EXPECT_EQ(read_file(dir_ / "slow.bin.part"), body);
  EXPECT_GT(observer_.read([&] { return observer_.progress.size(); }), 0u)
      << "progress never came after the answer";
}

// All of the file came before its record was answered: it is reported after the answer, still
// without a name (the settle step gives it its final one), its bytes all there.
TEST_F(PartRecord, AnAttemptThatEndsBeforeItsRecordIsReportedAfterTheAnswerWithoutAName) {
  const std::string body = serve("/quick.bin", 30000);
  auto e = engine();
  e->submit(request("/quick.bin"));
  ASSERT_TRUE(observer_.wait([&] { return observer_.over == 1; }))
      << "the end of the transfer was not told apart (its slot stays taken)";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(observer_.read([&] { return observer_.finished.has_value(); }))
      << "reported before the record was answered";
  EXPECT_EQ(names(), std::vector<std::string>{});
  e->part_recorded(1, 1, true);
  ASSERT_TRUE(observer_.wait([&] { return observer_.finished.has_value(); }));
  auto r = observer_.read([&] { return *observer_.finished; });
  ASSERT_EQ(r.outcome, transfer::Outcome::kCompleted) << r.failure.message;
  ASSERT_TRUE(r.file);
  EXPECT_TRUE(r.file->unnamed());
  EXPECT_EQ(names(), std::vector<std::string>{}) << "named though nothing is left to resume";
  std::string bytes(body.size() + 1, '\0');
  ASSERT_EQ(::pread(r.file->fd(), bytes.data(), bytes.size(), 0),
            static_cast<ssize_t>(body.size()));
  bytes.resize(body.size());
  EXPECT_TRUE(bytes == body) << "the unnamed file is not the body served";
}

// A big file is named .part even when all of it came first: unnamed, a crash before it settles
// would lose all of it; named, a resume keeps it.
TEST_F(PartRecord, ABigAttemptThatEndsBeforeItsRecordIsNamedAfterTheAnswer) {
  const std::string body = serve("/big.bin", (4 << 20) + 1);
  auto r = finished_before_answer(request("/big.bin"));
  ASSERT_TRUE(r.file);
  EXPECT_FALSE(r.file->unnamed());
  EXPECT_TRUE(read_file(dir_ / "big.bin.part") == body);
}

// Overwrite replaces the file at the final name, which only a rename of the .part does: a file
// finished before its record still gets its .part name.
TEST_F(PartRecord, AnAttemptToOverwriteThatEndsBeforeItsRecordIsNamedAfterTheAnswer) {
  const std::string body = serve("/quick.bin", 30000);
  auto req = request("/quick.bin");
  req.if_exists = IfExists::kOverwrite;
  auto r = finished_before_answer(req);
  ASSERT_TRUE(r.file);
  EXPECT_FALSE(r.file->unnamed());
  EXPECT_TRUE(read_file(dir_ / "quick.bin.part") == body);
}

// Refused while the body still comes, and refused once it is whole: either way the attempt
// fails, promises no byte, and nothing is left on disk.
TEST_F(PartRecord, AFileWhoseRecordIsRefusedIsLetGo) {
  serve("/slow.bin", 200000, 400000);
  serve("/quick.bin", 30000);
  for (const std::string path : {"/slow.bin", "/quick.bin"}) {
    observer_.read([&] {
      observer_.finished.reset();
      observer_.created = observer_.over = 0;
      return 0;
    });
    auto e = engine();
    e->submit(request(path));
    if (path == "/quick.bin") {
      ASSERT_TRUE(observer_.wait([&] { return observer_.over == 1; })) << path;
    } else {
      ASSERT_TRUE(observer_.wait([&] { return observer_.created == 1; })) << path;
    }
    e->part_recorded(1, 1, false);
    ASSERT_TRUE(observer_.wait([&] { return observer_.finished.has_value(); })) << path;
    auto r = observer_.read([&] { return *observer_.finished; });
    EXPECT_EQ(r.outcome, transfer::Outcome::kFailed) << path;
    EXPECT_EQ(r.failure.type, "DiskError") << path;
    EXPECT_FALSE(r.file) << path;
    EXPECT_EQ(r.bytes, 0) << path;
    EXPECT_EQ(names(), std::vector<std::string>{}) << path;
    paths_.release(r.download_path);
  }
  EXPECT_EQ(observer_.read([&] { return observer_.checkpoints.size(); }), 0u);
}

// An answer for another attempt changes nothing; an engine that stops while an ended attempt
// waits for its answer reports it, its file let go, instead of waiting forever.
TEST_F(PartRecord, AnEngineThatStopsLetsGoOfFilesWaitingForTheirRecord) {
  serve("/quick.bin", 30000);
  auto e = engine();
  e->submit(request("/quick.bin"));
  ASSERT_TRUE(observer_.wait([&] { return observer_.over == 1; }));
  e->part_recorded(1, 2, true);  // a later attempt's answer: not this one's
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(observer_.read([&] { return observer_.finished.has_value(); }));
  e.reset();
  ASSERT_TRUE(observer_.read([&] { return observer_.finished.has_value(); }))
      << "the engine ended without reporting the attempt";
  auto r = observer_.read([&] { return *observer_.finished; });
  EXPECT_NE(r.outcome, transfer::Outcome::kCompleted);
  EXPECT_FALSE(r.file);
  EXPECT_EQ(names(), std::vector<std::string>{});
}

}  // namespace
}  // namespace fetchq::testing
