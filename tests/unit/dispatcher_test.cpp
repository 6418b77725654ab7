// Dispatcher: the control methods without any socket, through a fake Session, over a real
// DownloadQueue on a temporary SQLite file. The queue claims no job (only_jobs is empty), so
// nothing touches the network and jobs stay waiting until the test changes them.
#include "control/dispatcher.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "support/temp_dir.h"

namespace fetchq::control {
namespace {

using fetchq::testing::TempDir;
using namespace std::chrono_literals;

// Records what the dispatcher sends; waits (bounded) for more.
class FakeSession : public Session {
 public:
  void send(std::string message) override {
    std::lock_guard lk(mu_);
    messages_.push_back(json::parse(message));
    cv_.notify_all();
  }
  void resume() override {
    std::lock_guard lk(mu_);
    ++resumed_;
    cv_.notify_all();
  }
  bool gone() override { return gone_; }
  EventState event_state() override { return gone_ ? EventState::kGone : state_.load(); }
  bool send_events(const std::vector<std::string>& messages) override {
    if (state_ != EventState::kReady) return false;
    std::lock_guard lk(mu_);
    for (const auto& m : messages) messages_.push_back(json::parse(m));
    cv_.notify_all();
    return true;
  }
  std::string peer() const override { return "uid test"; }

  // The first `n` messages, once that many arrived; fails the test after 10 s.
  std::vector<json> wait_for(size_t n) {
    std::unique_lock lk(mu_);
    bool ok = cv_.wait_for(lk, 10s, [&] { return messages_.size() >= n; });
    EXPECT_TRUE(ok) << "got " << messages_.size() << " messages, waited for " << n;
    return messages_;
  }
  std::vector<json> messages() {
    std::lock_guard lk(mu_);
    return messages_;
  }
  int resumed() {
    std::lock_guard lk(mu_);
    return resumed_;
  }
  // resume() follows the answer it concerns: wait for it too (bounded).
  int wait_resumed(int n) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, 10s, [&] { return resumed_ >= n; });
    return resumed_;
  }

  std::atomic<bool> gone_{false};
  std::atomic<EventState> state_{EventState::kReady};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<json> messages_;
  int resumed_ = 0;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::warn);  // each change is logged at info
    QueueOptions o;
    o.db_path = dir_ / "q.db";
    o.only_jobs = std::vector<int64_t>{};  // claim nothing: jobs stay waiting
    o.on_change = [this] {
      if (auto* d = dispatcher_.load()) d->notify_change();
    };
    auto q = DownloadQueue::open(o);
    ASSERT_TRUE(q.ok()) << q.error().message;
    queue_ = std::move(q.value());
    owned_ = std::make_unique<Dispatcher>(queue_.get());
    dispatcher_ = owned_.get();
    owned_->start();
  }
  void TearDown() override {
    if (owned_) owned_->stop();
    dispatcher_ = nullptr;
    owned_.reset();
    if (queue_) queue_->shutdown();
  }

  // Sends one request; returns how the dispatcher took it.
  Dispatcher::Outcome call(const std::shared_ptr<FakeSession>& s, const std::string& method, json params,
                           json id = 1) {
    RpcRequest r{std::move(id), method, std::move(params)};
    return owned_->handle(r, s);
  }
  // One immediate call's answer.
  json ask(const std::string& method, json params = json::object()) {
    auto s = std::make_shared<FakeSession>();
    EXPECT_EQ(call(s, method, std::move(params)), Dispatcher::Outcome::kAnswered);
    auto m = s->messages();
    EXPECT_EQ(m.size(), 1u);
    return m.empty() ? json() : m[0];
  }
  int64_t add_job(const std::string& name) {
    json a = ask("download", {{"source", "http://127.0.0.1:9/" + name}, {"dest", dir_ / "dl/"}});
    EXPECT_TRUE(a.contains("result")) << a.dump();
    return a["result"]["id"].get<int64_t>();
  }

  TempDir dir_;
  std::unique_ptr<DownloadQueue> queue_;
  std::unique_ptr<Dispatcher> owned_;
  std::atomic<Dispatcher*> dispatcher_{nullptr};
};

// JSON-RPC 2.0: an id is a string, a number or null; anything else is an invalid request
// (answered with a null id). A line is JSON up to its end: bytes after a NUL are not ignored.
TEST(RpcRequestTest, AnIdThatIsNotAStringNumberOrNullAndBytesAfterANulAreRefused) {
  json err;
  for (const char* line : {R"({"jsonrpc":"2.0","id":{"a":1},"method":"stats"})",
                           R"({"jsonrpc":"2.0","id":[1],"method":"stats"})",
                           R"({"jsonrpc":"2.0","id":true,"method":"stats"})"}) {
    err = nullptr;
    EXPECT_FALSE(parse_request(line, &err)) << line;
    EXPECT_EQ(err["error"]["code"], kInvalidRequest) << line;
    EXPECT_TRUE(err["id"].is_null()) << line;
  }
  const std::string with_nul = std::string(R"({"jsonrpc":"2.0","id":1,"method":"stats"})") +
                               std::string(1, '\0') + "garbage";
  err = nullptr;
  EXPECT_FALSE(parse_request(with_nul, &err));
  EXPECT_EQ(err["error"]["code"], kParseError);
  for (const char* line : {R"({"jsonrpc":"2.0","id":7,"method":"stats"})",
                           R"({"jsonrpc":"2.0","id":"x","method":"stats"})",
                           R"({"jsonrpc":"2.0","id":null,"method":"stats"})",
                           R"({"jsonrpc":"2.0","method":"stats"})"}) {
    auto r = parse_request(line, &err);
    ASSERT_TRUE(r) << line;
    EXPECT_EQ(r->method, "stats");
  }
}

TEST_F(DispatcherTest, ListAndStatsAnswerAtOnce) {
  json empty = ask("list_jobs");
  EXPECT_EQ(empty["id"], 1);
  EXPECT_EQ(empty["result"], json::array());
  int64_t a = add_job("a.bin");
  int64_t b = add_job("b.bin");
  json list = ask("list_jobs", {{"status", "waiting"}});
  ASSERT_EQ(list["result"].size(), 2u);
  EXPECT_EQ(list["result"][0]["id"], a);
  EXPECT_EQ(list["result"][1]["id"], b);
  EXPECT_EQ(ask("list_jobs", {{"after_id", a}})["result"].size(), 1u);
  json stats = ask("stats");
  EXPECT_EQ(stats["result"]["waiting"], 2);
  EXPECT_EQ(stats["result"]["running"], 0);
  EXPECT_TRUE(stats["result"].contains("version"));
}

TEST_F(DispatcherTest, UnknownMethodAndBadParamsAreErrors) {
  json unknown = ask("no_such_method");
  EXPECT_EQ(unknown["error"]["code"], kMethodNotFound);
  EXPECT_EQ(unknown["error"]["message"], "unknown method 'no_such_method'");
  json no_id = ask("get_job");
  EXPECT_EQ(no_id["error"]["code"], kInvalidParams);
  EXPECT_EQ(no_id["error"]["message"], "invalid params: 'id' (an integer) is required");
  json bad_status = ask("list_jobs", {{"status", "sleeping"}});
  EXPECT_EQ(bad_status["error"]["code"], kInvalidParams);
  EXPECT_EQ(bad_status["error"]["message"], "invalid params: unknown status 'sleeping'");
  json empty_batch = ask("download_batch", {{"jobs", json::array()}});
  EXPECT_EQ(empty_batch["error"]["message"], "invalid params: 'jobs' must be a non-empty list");
  json bad_join = ask("join", {{"timeout", -1}});
  EXPECT_EQ(bad_join["error"]["message"], "invalid params: 'timeout' must be a number of seconds >= 0");
  json bad_since = ask("subscribe", {{"since", "x"}});
  EXPECT_EQ(bad_since["error"]["code"], kInvalidParams);
  json missing = ask("get_job", {{"id", 424242}});
  EXPECT_EQ(missing["error"]["code"], static_cast<int>(ErrorCode::kNotFound));
  EXPECT_EQ(missing["error"]["message"], "no job with id 424242");
}

TEST_F(DispatcherTest, ConnectionsAreOneToSixteen) {
  for (int bad : {0, 17, -1}) {
    json r = ask("download", {{"source", "http://127.0.0.1:9/c.bin"}, {"dest", dir_ / "dl/"},
                              {"connections", bad}});
    EXPECT_EQ(r["error"]["code"], kInvalidParams) << bad;
    EXPECT_EQ(r["error"]["message"], "invalid params: 'connections' must be 1 to 16") << bad;
  }
  json ok = ask("download", {{"source", "http://127.0.0.1:9/c.bin"}, {"dest", dir_ / "dl/"},
                             {"connections", 16}});
  EXPECT_FALSE(ok.contains("error")) << ok.dump();
}

TEST_F(DispatcherTest, MirrorsAreAnArrayOfUrlStringsKeptInOrder) {
  const json mirrors = json::array({"http://127.0.0.2:9/m.bin", "http://127.0.0.3:9/m.bin"});
  json ok =
      ask("download",
          {{"source", "http://127.0.0.1:9/m.bin"}, {"dest", dir_ / "dl/"}, {"mirrors", mirrors}});
  ASSERT_TRUE(ok.contains("result")) << ok.dump();
  EXPECT_EQ(ok["result"]["mirrors"], mirrors);
  json got = ask("get_job", {{"id", ok["result"]["id"]}});
  EXPECT_EQ(got["result"]["mirrors"], mirrors);
  for (const json& bad :
       {json("http://127.0.0.2:9/m.bin"), json{{"url", "http://127.0.0.2:9/m.bin"}},
        json::array({"http://127.0.0.2:9/m.bin", 7}), json::array({nullptr})}) {
    json r =
        ask("download",
            {{"source", "http://127.0.0.1:9/n.bin"}, {"dest", dir_ / "dl/"}, {"mirrors", bad}});
    EXPECT_EQ(r["error"]["code"], kInvalidParams) << bad.dump();
    EXPECT_EQ(r["error"]["message"], "invalid params: 'mirrors' must be an array of URL strings")
        << bad.dump();
  }
  json none =
      ask("download",
          {{"source", "http://127.0.0.1:9/o.bin"}, {"dest", dir_ / "dl/"}, {"mirrors", nullptr}});
  ASSERT_TRUE(none.contains("result")) << none.dump();
  EXPECT_EQ(none["result"]["mirrors"], json::array());
}

TEST_F(DispatcherTest, AMirrorOnAnotherOriginIsRefusedWhenTheJobHoldsSecrets) {
  const json other = json::array({"http://127.0.0.2:9/s.bin"});
  const json same = json::array({"http://127.0.0.1:9/alt/s.bin"});
  for (const json& secret :
       {json{{"headers", json::array({"X-Api-Key: k"})}}, json{{"access_token", "t0ken"}}}) {
    json params = {
        {"source", "http://127.0.0.1:9/s.bin"}, {"dest", dir_ / "dl/"}, {"mirrors", other}};
    params.update(secret);
    json r = ask("download", params);
    ASSERT_TRUE(r.contains("error")) << r.dump();
    EXPECT_EQ(r["error"]["code"], static_cast<int>(ErrorCode::kInvalidArgument)) << r.dump();
    const std::string message = r["error"]["message"];
    EXPECT_NE(message.find("never sent elsewhere"), std::string::npos) << message;
    EXPECT_EQ(message.find("t0ken"), std::string::npos) << message;
    params["mirrors"] = same;
    params["allow_duplicate"] = true;
    json ok = ask("download", params);
    EXPECT_TRUE(ok.contains("result")) << ok.dump();
  }
  // A password in the source URL is a secret too.
  json pw = ask(
      "download",
      {{"source", "http://u:pw@127.0.0.1:9/p.bin"}, {"dest", dir_ / "dl/"}, {"mirrors", other}});
  EXPECT_EQ(pw["error"]["code"], static_cast<int>(ErrorCode::kInvalidArgument)) << pw.dump();
  // In a batch the message names the job.
  json batch =
      ask("download_batch", {{"jobs",
                              {{{"source", "http://127.0.0.1:9/b1.bin"}, {"dest", dir_ / "dl/"}},
                               {{"source", "http://127.0.0.1:9/b2.bin"},
                                {"dest", dir_ / "dl/"},
                                {"headers", json::array({"X-Api-Key: k"})},
                                {"mirrors", other}}}}});
  ASSERT_TRUE(batch.contains("error")) << batch.dump();
  EXPECT_EQ(batch["error"]["message"].get<std::string>().rfind("job 1: ", 0), 0u) << batch.dump();
}

TEST_F(DispatcherTest, JoinOfUnknownIdIsErrorTwo) {
  int64_t a = add_job("a.bin");
  json r = ask("join", {{"ids", {a, 777, 778}}, {"timeout", 0}});
  EXPECT_EQ(r["error"]["code"], 2);
  EXPECT_EQ(r["error"]["message"], "no jobs with ids 777, 778");
}

TEST_F(DispatcherTest, JoinAnswersDoneFalseWhenItsTimeoutPasses) {
  int64_t a = add_job("a.bin");
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(call(s, "join", {{"ids", {a}}, {"timeout", 0}}, 7), Dispatcher::Outcome::kWaiting);
  auto m = s->wait_for(1);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["id"], 7);
  EXPECT_EQ(m[0]["result"]["done"], false);
  EXPECT_EQ(s->wait_resumed(1), 1);
}

TEST_F(DispatcherTest, JoinAnswersDoneOnceItsJobsEnd) {
  int64_t a = add_job("a.bin");
  int64_t b = add_job("b.bin");
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(call(s, "join", {{"ids", {a, b}}}), Dispatcher::Outcome::kWaiting);
  ask("cancel_job", {{"id", a}});
  EXPECT_TRUE(s->messages().empty());  // b still waits
  EXPECT_EQ(s->resumed(), 0);
  ask("pause_job", {{"id", b}});
  auto m = s->wait_for(1);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["result"]["done"], true);
  EXPECT_EQ(s->wait_resumed(1), 1);
}

TEST_F(DispatcherTest, CancelledSessionIsNeverAnswered) {
  int64_t a = add_job("a.bin");
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(call(s, "join", {{"ids", {a}}}), Dispatcher::Outcome::kWaiting);
  owned_->cancel(s.get());
  ask("cancel_job", {{"id", a}});
  // A second join on another session, answered after the change: the first had its chance.
  auto other = std::make_shared<FakeSession>();
  EXPECT_EQ(call(other, "join", {{"ids", {a}}}), Dispatcher::Outcome::kWaiting);
  other->wait_for(1);
  EXPECT_TRUE(s->messages().empty());
  EXPECT_EQ(s->resumed(), 0);
}

// A session found gone is not answered but is resumed, so its transport can let it go (the
// socket transport counts the join as in progress and kept the connection open for good).
TEST_F(DispatcherTest, GoneSessionIsResumedWithoutAnAnswer) {
  int64_t a = add_job("a.bin");
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(call(s, "join", {{"ids", {a}}}), Dispatcher::Outcome::kWaiting);
  s->gone_ = true;
  owned_->notify_change();
  EXPECT_EQ(s->wait_resumed(1), 1);
  EXPECT_TRUE(s->messages().empty());
}

TEST_F(DispatcherTest, SubscribeReplaysEventsAfterItsSeq) {
  int64_t a = add_job("a.bin");
  int64_t b = add_job("b.bin");
  int64_t c = add_job("c.bin");
  for (int64_t id : {a, b, c}) ask("pause_job", {{"id", id}});
  int64_t head = queue_->last_event_seq();
  ASSERT_GE(head, 3);
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(call(s, "subscribe", {{"since", head - 2}}, "sub"), Dispatcher::Outcome::kAnswered);
  auto m = s->wait_for(3);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0]["id"], "sub");
  EXPECT_EQ(m[0]["result"]["since"], head - 2);
  EXPECT_EQ(m[0]["result"]["last_seq"], head);
  EXPECT_EQ(m[1]["method"], "event");
  EXPECT_EQ(m[1]["params"]["seq"], head - 1);
  EXPECT_EQ(m[1]["params"]["type"], "download_paused");
  EXPECT_EQ(m[1]["params"]["job_id"], b);
  EXPECT_EQ(m[2]["params"]["seq"], head);
  EXPECT_EQ(m[2]["params"]["job_id"], c);
  // A busy session gets nothing until it is ready and the dispatcher is told.
  s->state_ = Session::EventState::kBusy;
  ask("resume_job", {{"id", a}});
  ask("pause_job", {{"id", a}});
  EXPECT_EQ(s->messages().size(), 3u);
  int64_t now_head = queue_->last_event_seq();
  ASSERT_GT(now_head, head);
  s->state_ = Session::EventState::kReady;
  owned_->notify_change();
  size_t want = 3 + static_cast<size_t>(now_head - head);
  m = s->wait_for(want);
  ASSERT_EQ(m.size(), want);
  EXPECT_EQ(m[3]["params"]["seq"], head + 1);
  EXPECT_EQ(m.back()["params"]["seq"], now_head);
}

}  // namespace
}  // namespace fetchq::control
