// The HTTP fetcher on its own, against the in-process server: byte ranges, heads, failures and
// cancel, with no file, job or name involved.
#include "transfer/fetcher.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <mutex>

#include "support/test_server.h"

namespace fetchq::testing {
namespace {

using transfer::ByteRange;
using transfer::FetchId;
using transfer::FetchRequest;
using transfer::FetchResponse;

// Starts the requests it is given on the fetcher thread and keeps what comes back.
class Collector final : public transfer::FetchClient {
 public:
  struct Got {
    long code = 0;
    int64_t content_length = -1;
    std::string content_range;
    std::string body;
    bool done = false;
    std::optional<transfer::Failure> failure;
  };

  Collector() : fetcher_({.connect_timeout = std::chrono::seconds(5)}, this) {
    fetcher_.start_thread();
  }
  ~Collector() override {
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    fetcher_.wakeup();
    fetcher_.join();
  }

  // Runs the fetch to its end (or for at most 20 s) and returns what came back.
  Got fetch(FetchRequest r, size_t abort_after = SIZE_MAX) {
    std::unique_lock lk(mu_);
    got_ = Got{};
    abort_after_ = abort_after;
    todo_ = std::move(r);
    fetcher_.wakeup();
    cv_.wait_for(lk, std::chrono::seconds(20), [&] { return got_.done; });
    return got_;
  }

  bool on_wake() override {
    std::optional<FetchRequest> r;
    {
      std::lock_guard lk(mu_);
      if (quit_) return false;
      r.swap(todo_);
    }
    if (r) fetcher_.start(std::move(*r));
    return true;
  }
  void on_tick() override {}
  bool on_response(FetchId, const FetchResponse& r) override {
    std::lock_guard lk(mu_);
    got_.code = r.code;
    got_.content_length = r.content_length;
    got_.content_range = r.header("content-range");
    return true;
  }
  bool on_data(FetchId, const char* data, size_t len) override {
    std::lock_guard lk(mu_);
    got_.body.append(data, len);
    return got_.body.size() < abort_after_;
  }
  void on_done(FetchId id, std::optional<transfer::Failure> failure) override {
    const std::string where = fetcher_.where(id);
    std::lock_guard lk(mu_);
    got_.failure = std::move(failure);
    got_.done = true;
    EXPECT_EQ(where.rfind("GET http://127.0.0.1:", 0), 0u) << where;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<FetchRequest> todo_;
  Got got_;
  size_t abort_after_ = SIZE_MAX;
  bool quit_ = false;
  transfer::Fetcher fetcher_;  // last: its thread calls into the members above
};

TEST(FetcherTest, ABoundedRangeIsAskedAndDeliveredAsIs) {
  TestServer server;
  Resource r;
  r.body = make_body(100000, 71);
  server.add("/r.bin", r);
  Collector c;
  auto got = c.fetch({.url = server.url("/r.bin"), .range = ByteRange{.start = 1000, .end = 3000}});
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.failure) << got.failure->message;
  EXPECT_EQ(got.code, 206);
  EXPECT_EQ(got.content_length, 2000);
  EXPECT_EQ(got.content_range, "bytes 1000-2999/100000");
  EXPECT_TRUE(got.body == r.body.substr(1000, 2000));
  auto reqs = server.requests_for("/r.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].range, "bytes=1000-2999");
  EXPECT_EQ(reqs[0].accept_encoding, "identity");
}

TEST(FetcherTest, AnOpenRangeRunsToTheEndAndExtraHeadersAreSent) {
  TestServer server;
  Resource r;
  r.body = make_body(50000, 72);
  server.add("/o.bin", r);
  Collector c;
  auto got = c.fetch({.url = server.url("/o.bin"),
                      .headers = {"If-Range: \"nope\""},
                      .range = ByteRange{.start = 49000}});
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.failure);
  // The validator does not match: the server sends the whole body, and the fetcher passes it
  // on as it came (what that means for a file is the layer above's to decide).
  EXPECT_EQ(got.code, 200);
  EXPECT_TRUE(got.body == r.body);
  auto reqs = server.requests_for("/o.bin");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].range, "bytes=49000-");
  EXPECT_EQ(reqs[0].if_range, "\"nope\"");
}

TEST(FetcherTest, AFailureIsNamedOnOneLineAndAnAbortIsReported) {
  TestServer server;
  Resource cut;
  cut.body = make_body(200000, 73);
  cut.drop_after = 1000;
  server.add("/cut.bin", cut);
  Collector c;
  auto got = c.fetch({.url = server.url("/cut.bin")});
  ASSERT_TRUE(got.done);
  ASSERT_TRUE(got.failure);
  EXPECT_TRUE(got.failure->retryable);
  EXPECT_EQ(got.failure->message.find('\n'), std::string::npos);
  EXPECT_EQ(got.failure->message.rfind("GET " + server.url("/cut.bin") + ": ", 0), 0u)
      << got.failure->message;

  Resource big;
  big.body = make_body(1 << 20, 74);
  server.add("/big.bin", big);
  got = c.fetch({.url = server.url("/big.bin")}, /*abort_after=*/1);
  ASSERT_TRUE(got.done);
  ASSERT_TRUE(got.failure) << "an aborted fetch must not look successful";
  EXPECT_LT(got.body.size(), big.body.size());
}

}  // namespace
}  // namespace fetchq::testing
