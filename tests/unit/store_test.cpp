// Store: ordering, conditional updates, crash recovery, locking and refusal of foreign files.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <array>
#include <filesystem>
#include <functional>

#include "store/sqlite/schema_files.h"
#include "util/fs.h"
#include "store/sqlite/sqlite_store.h"
#include "store/store.h"
#include "support/temp_dir.h"

namespace fetchq::store {
namespace {

using fetchq::testing::TempDir;

NewJob job(const std::string& url, int priority = 10, std::optional<std::string> token = {}) {
  NewJob nj;
  nj.request.source = url;
  nj.request.dest = "/tmp/x/";
  nj.request.options.priority = priority;
  nj.request.options.access_token = token;
  nj.dest_is_dir = true;
  return nj;
}

std::unique_ptr<Store> open_store(const std::string& path) {
  auto s = open_sqlite_store(path, {});
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return std::move(s.value());
}

TEST(StoreTest, ClaimsByPriorityThenSubmissionOrder) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a", 10), job("http://h/b", 5), job("http://h/c", 10), job("http://h/d", 5)}, "t");
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    auto c = s->claim(1, 0, std::nullopt, "t");
    ASSERT_EQ(c.size(), 1u);
    order.push_back(c[0].job.source);
    EXPECT_EQ(c[0].job.status, JobStatus::kRunning);
    EXPECT_EQ(c[0].attempt, 1);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"http://h/b", "http://h/d", "http://h/a", "http://h/c"}));
  EXPECT_TRUE(s->claim(5, 0, std::nullopt, "t").empty());
}

TEST(StoreTest, ClaimUsesThePartialIndex) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s.reset();
  SQLite::Database db(dir / "q.db");
  SQLite::Statement q(db,
                      "EXPLAIN QUERY PLAN SELECT id FROM jobs INDEXED BY jobs_waiting WHERE status = "
                      "'waiting' AND not_before_ms <= 0 ORDER BY priority, id LIMIT 5");
  std::string plan;
  while (q.executeStep()) plan += q.getColumn(3).getString() + "\n";
  EXPECT_NE(plan.find("jobs_waiting"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

TEST(StoreTest, IdsAreNeverReusedAfterPrune) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto a = s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  auto c = s->claim(2, 0, std::nullopt, "t");
  for (auto& cj : c) {
    Finish f;
    ASSERT_TRUE(s->finish(cj.job.id, cj.attempt, f, "t"));
  }
  EXPECT_EQ(s->prune({}, "t").size(), 2u);
  auto b = s->insert_jobs({job("http://h/c")}, "t");
  EXPECT_GT(b[0].id, a[1].id);
}

TEST(StoreTest, LateTransferWritesCannotReviveACancelledJob) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a")}, "t");
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->change_status(c.job.id, {JobStatus::kRunning}, JobStatus::kCancelled, "t"));
  EXPECT_FALSE(s->set_progress(c.job.id, c.attempt, 100, 200));
  Finish f;
  EXPECT_FALSE(s->finish(c.job.id, c.attempt, f, "t"));
  EXPECT_FALSE(s->requeue(c.job.id, c.attempt, 0, 1, std::nullopt, std::nullopt, std::nullopt));
  auto j = s->get_job(c.job.id);
  EXPECT_EQ(j->status, JobStatus::kCancelled);
  EXPECT_TRUE(j->cancelled);
  EXPECT_EQ(j->error_type.value_or(""), "Cancelled");
}

TEST(StoreTest, AStaleAttemptCannotFinishANewerOne) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a")}, "t");
  auto first = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->requeue(first.job.id, first.attempt, 0, 1, int64_t{1}, std::string("Timeout"), std::string("x")));
  auto second = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(second.attempt, 2);
  Finish f;
  EXPECT_FALSE(s->finish(first.job.id, first.attempt, f, "t"));
  EXPECT_TRUE(s->finish(second.job.id, second.attempt, f, "t"));
}

TEST(StoreTest, RunningJobsGoBackToWaitingAfterACrash) {
  TempDir dir;
  {
    auto s = open_store(dir / "q.db");
    s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
    auto c = s->claim(1, 0, std::nullopt, "t");
    ASSERT_TRUE(s->set_checkpoint(c[0].job.id, c[0].attempt, 4096, "boot-1"));
  }
  auto s = open_store(dir / "q.db");
  EXPECT_EQ(s->recover_running(), 1);
  auto c = s->claim(2, 0, std::nullopt, "t");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].checkpoint_bytes, 4096);
  EXPECT_EQ(c[0].checkpoint_boot_id, "boot-1");
  EXPECT_EQ(c[0].attempt, 2);
}

TEST(StoreTest, RetryTimeDelaysTheClaim) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a")}, "t");
  auto c = s->claim(1, 1000, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->requeue(c.job.id, c.attempt, 5000, 1, std::nullopt, std::nullopt, std::nullopt));
  EXPECT_TRUE(s->claim(1, 4999, std::nullopt, "t").empty());
  EXPECT_EQ(s->next_retry_ms(4999).value_or(-1), 5000);
  // Once due, the job is the claim's business: no wake-up is asked for it any more.
  EXPECT_FALSE(s->next_retry_ms(5000).has_value());
  EXPECT_EQ(s->claim(1, 5000, std::nullopt, "t").size(), 1u);
}

TEST(StoreTest, NextRetryTimeIgnoresJobsThatNeverFailed) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a"), job("http://h/b"), job("http://h/c")}, "t");
  EXPECT_FALSE(s->next_retry_ms(1000).has_value());
  auto c = s->claim(2, 1000, std::nullopt, "t");
  ASSERT_EQ(c.size(), 2u);
  ASSERT_TRUE(s->requeue(c[0].job.id, c[0].attempt, 9000, 1, std::nullopt, std::nullopt, std::nullopt));
  ASSERT_TRUE(s->requeue(c[1].job.id, c[1].attempt, 7000, 1, std::nullopt, std::nullopt, std::nullopt));
  EXPECT_EQ(s->next_retry_ms(1000).value_or(-1), 7000);
  EXPECT_EQ(s->next_retry_ms(7000).value_or(-1), 9000);
}

TEST(StoreTest, NextRetryTimeUsesItsIndex) {
  TempDir dir;
  open_store(dir / "q.db").reset();
  SQLite::Database db(dir / "q.db");
  SQLite::Statement q(db,
                      "EXPLAIN QUERY PLAN SELECT MIN(not_before_ms) FROM jobs INDEXED BY jobs_retry WHERE status = "
                      "'waiting' AND not_before_ms > 0 AND not_before_ms > 5");
  std::string plan;
  while (q.executeStep()) plan += q.getColumn(3).getString() + "\n";
  EXPECT_NE(plan.find("jobs_retry"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
}

TEST(StoreTest, AnyUnfinishedSeesWaitingAndRunningJobsOnly) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  EXPECT_FALSE(s->any_unfinished({}));
  auto jobs = s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  EXPECT_TRUE(s->any_unfinished({}));
  auto c = s->claim(1, 0, std::nullopt, "t");
  ASSERT_TRUE(s->finish(c[0].job.id, c[0].attempt, Finish{}, "t"));
  EXPECT_FALSE(s->any_unfinished({c[0].job.id}));
  EXPECT_TRUE(s->any_unfinished({}));
  ASSERT_TRUE(s->change_status(jobs[1].id, {JobStatus::kWaiting}, JobStatus::kPaused, "t"));
  EXPECT_FALSE(s->any_unfinished({}));
}

TEST(StoreTest, AVersionOneDatabaseIsMigratedWithItsJobsTokensAndIdsKept) {
  TempDir dir;
  const auto& files = schema_files();
  ASSERT_GE(files.size(), 3u);
  ASSERT_EQ(files[0].version, 1);
  {
    SQLite::Database db(dir / "q.db", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(files[0].sql);
    db.exec("PRAGMA user_version = 1");
    for (const char* src : {"http://h/one", "http://h/two", "http://h/three"}) {
      db.exec(std::string("INSERT INTO jobs (source, dest, priority, status, created_at, dest_is_dir) "
                          "VALUES ('") + src + "', '/tmp/x/', 3, 'waiting', 't', 1)");
    }
    db.exec("INSERT INTO tokens (job_id, token) VALUES (2, 'secret-two')");
    db.exec("DELETE FROM jobs WHERE id IN (1, 3)");  // pruned: id 3 must never come back
  }
  auto s = open_store(dir / "q.db");
  auto c = s->claim(5, 0, std::nullopt, "t");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].job.id, 2);
  EXPECT_EQ(c[0].job.source, "http://h/two");
  EXPECT_EQ(c[0].access_token.value_or(""), "secret-two");
  auto added = s->insert_jobs({job("http://h/four")}, "t");
  EXPECT_EQ(added.at(0).id, 4);
  s.reset();
  SQLite::Database db(dir / "q.db");
  EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(), files.back().version);
  for (const char* index : {"jobs_waiting", "jobs_status", "jobs_retry"}) {
    EXPECT_EQ(db.execAndGet(std::string("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND "
                                        "name = '") + index + "'").getInt(), 1) << index;
  }
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM sqlite_master WHERE name = 'jobs_new'").getInt(), 0);
  SQLite::Statement fk(db, "PRAGMA foreign_key_check");
  EXPECT_FALSE(fk.executeStep());  // every token still belongs to a job
}

TEST(StoreTest, StatusAndIfExistsRulesHoldAfterTheRebuild) {
  TempDir dir;
  open_store(dir / "q.db").reset();
  SQLite::Database db(dir / "q.db", SQLite::OPEN_READWRITE);
  std::string sql = db.execAndGet("SELECT sql FROM sqlite_master WHERE name = 'jobs'").getString();
  EXPECT_EQ(sql.find(" IN ("), std::string::npos) << sql;  // the slow form is gone
  EXPECT_THROW(db.exec("INSERT INTO jobs (source, dest, status, created_at) VALUES ('a', 'b', 'bogus', 't')"),
               SQLite::Exception);
  EXPECT_THROW(db.exec("INSERT INTO jobs (source, dest, created_at, if_exists) VALUES ('a', 'b', 't', 'clobber')"),
               SQLite::Exception);
  db.exec("INSERT INTO jobs (source, dest, status, created_at, if_exists) VALUES ('a', 'b', 'paused', 't', 'rename')");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM jobs").getInt(), 1);
}

TEST(StoreTest, OnlyListedJobsAreClaimed) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto jobs = s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  auto c = s->claim(5, 0, std::vector<int64_t>{jobs[1].id}, "t");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].job.id, jobs[1].id);
}

TEST(StoreTest, TokensAreKeptApartFromJobs) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto jobs = s->insert_jobs({job("http://h/a", 10, std::string("s3cret-token"))}, "t");
  EXPECT_TRUE(jobs[0].has_access_token);
  EXPECT_TRUE(s->get_job(jobs[0].id)->has_access_token);
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(c.access_token.value_or(""), "s3cret-token");
  s.reset();
  SQLite::Database db(dir / "q.db");
  SQLite::Statement q(db, "SELECT * FROM jobs");
  while (q.executeStep()) {
    for (int i = 0; i < q.getColumnCount(); ++i) {
      if (!q.getColumn(i).isNull()) {
        EXPECT_EQ(q.getColumn(i).getString().find("s3cret"), std::string::npos);
      }
    }
  }
}

TEST(StoreTest, HeadersComeBackWholeWithTheClaimAndRedactedEverywhereElse) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  NewJob nj = job("http://h/a");
  nj.request.options.headers = {{"Cookie", "sid=c00kie"}, {"X-A", "1"}, {"Authorization", "Basic s3cret"},
                                {"X-Empty", ""}};
  nj.request.options.user_agent = "agent/2";
  NewJob plain = job("http://h/b");
  auto jobs = s->insert_jobs({nj, plain}, "t");
  const std::vector<std::string> shown = {"Cookie: <secret>", "X-A: 1", "Authorization: <secret>", "X-Empty: "};
  EXPECT_EQ(jobs[0].headers, shown);
  EXPECT_EQ(s->get_job(jobs[0].id)->headers, shown);
  EXPECT_EQ(s->list_jobs({}).at(0).headers, shown);
  EXPECT_EQ(s->get_job(jobs[0].id)->user_agent, "agent/2");
  EXPECT_TRUE(s->get_job(jobs[1].id)->headers.empty());
  EXPECT_FALSE(s->get_job(jobs[1].id)->user_agent);
  auto claimed = s->claim(2, 0, std::nullopt, "t");
  ASSERT_EQ(claimed.size(), 2u);
  EXPECT_EQ(claimed[0].headers, nj.request.options.headers);  // in order, secrets in place
  EXPECT_EQ(claimed[0].job.user_agent, "agent/2");
  EXPECT_TRUE(claimed[1].headers.empty());
  s.reset();
  SQLite::Database db(dir / "q.db");
  SQLite::Statement q(db, "SELECT * FROM jobs");
  while (q.executeStep()) {
    for (int i = 0; i < q.getColumnCount(); ++i) {
      if (q.getColumn(i).isNull()) continue;
      EXPECT_EQ(q.getColumn(i).getString().find("s3cret"), std::string::npos);
      EXPECT_EQ(q.getColumn(i).getString().find("c00kie"), std::string::npos);
    }
  }
}

TEST(StoreTest, MirrorsSurviveInsertReadAndClaimInOrder) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  NewJob nj = job("https://h/a", 10, std::string("tok"));
  nj.request.options.mirrors = {"https://h/b", "https://h/a?alt=1", "https://h/c"};
  // Options the claim reads from its own columns, after the job's: they must not shift.
  nj.request.options.connections = 7;
  nj.request.options.headers = {{"Authorization", "Basic s3cret"}, {"X-A", "1"}};
  NewJob plain = job("http://h/p");
  auto jobs = s->insert_jobs({nj, plain}, "t");
  EXPECT_EQ(jobs[0].mirrors, nj.request.options.mirrors);
  EXPECT_TRUE(jobs[1].mirrors.empty());
  EXPECT_EQ(s->get_job(jobs[0].id)->mirrors, nj.request.options.mirrors);
  EXPECT_TRUE(s->get_job(jobs[1].id)->mirrors.empty());
  auto listed = s->list_jobs({});
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].mirrors, nj.request.options.mirrors);
  EXPECT_TRUE(listed[1].mirrors.empty());
  auto claimed = s->claim(2, 0, std::nullopt, "t");
  ASSERT_EQ(claimed.size(), 2u);
  EXPECT_EQ(claimed[0].job.mirrors, nj.request.options.mirrors);
  EXPECT_EQ(claimed[0].connections, 7);
  EXPECT_EQ(claimed[0].access_token.value_or(""), "tok");
  EXPECT_EQ(claimed[0].headers, nj.request.options.headers);
  EXPECT_EQ(claimed[0].if_exists, IfExists::kError);
  EXPECT_TRUE(claimed[0].dest_is_dir);
  EXPECT_TRUE(claimed[1].job.mirrors.empty());
  s.reset();
  // No mirrors is NULL, not an empty text that would read back as one empty URL.
  SQLite::Database db(dir / "q.db");
  EXPECT_TRUE(
      db.execAndGet("SELECT mirrors IS NULL FROM jobs WHERE id = " + std::to_string(jobs[1].id))
          .getInt());
  EXPECT_EQ(db.execAndGet("SELECT mirrors FROM jobs WHERE id = " + std::to_string(jobs[0].id))
                .getString(),
            "https://h/b\nhttps://h/a?alt=1\nhttps://h/c");
}

TEST(StoreTest, ASecondWriterIsRefusedButReadersAreWelcome) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a")}, "t");
  auto second = open_sqlite_store(dir / "q.db", {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kBusy);
  EXPECT_NE(second.error().message.find("another fetchq process"), std::string::npos);
  OpenOptions ro;
  ro.read_only = true;
  auto reader = open_sqlite_store(dir / "q.db", ro);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  EXPECT_EQ(reader.value()->list_jobs({}).size(), 1u);
}

TEST(StoreTest, AForeignDatabaseIsRefusedAndLeftAlone) {
  TempDir dir;
  {
    SQLite::Database db(dir / "other.db", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep me')");
  }
  auto s = open_sqlite_store(dir / "other.db", {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not a fetchq one"), std::string::npos) << s.error().message;
  SQLite::Database db(dir / "other.db");
  EXPECT_EQ(db.execAndGet("SELECT x FROM notes").getString(), "keep me");
  EXPECT_FALSE(db.tableExists("jobs"));
}

TEST(StoreTest, AFileThatIsNotSqliteIsRefusedAndLeftAlone) {
  TempDir dir;
  std::string junk(8192, 'z');
  fetchq::testing::write_file(dir / "junk.db", junk);
  auto s = open_sqlite_store(dir / "junk.db", {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(fetchq::testing::read_file(dir / "junk.db"), junk);
}

TEST(StoreTest, ANewerSchemaIsRefused) {
  TempDir dir;
  { open_store(dir / "q.db"); }
  {
    SQLite::Database db(dir / "q.db", SQLite::OPEN_READWRITE);
    db.exec("PRAGMA user_version = 999");
  }
  auto s = open_sqlite_store(dir / "q.db", {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("newer"), std::string::npos);
}

TEST(StoreTest, TheDatabaseIsReadableByItsOwnerOnly) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  struct stat st {};
  ASSERT_EQ(::stat((dir / "q.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(StoreTest, EventSequenceOnlyGrows) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  int64_t a = s->append_event(1, "download_started", "{}", "t");
  int64_t b = s->append_event(1, "download_progress", "{}", "t");
  EXPECT_GT(b, a);
  EXPECT_EQ(s->last_event_seq(), b);
  auto ev = s->events_since(a, 10, std::nullopt);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, "download_progress");
}

// (busy, frames in the WAL, frames checkpointed) of a passive checkpoint from a second connection.
std::array<int, 3> passive_checkpoint(const std::string& path) {
  SQLite::Database db(path, SQLite::OPEN_READWRITE);
  SQLite::Statement q(db, "PRAGMA wal_checkpoint(PASSIVE)");
  EXPECT_TRUE(q.executeStep());
  return {q.getColumn(0).getInt(), q.getColumn(1).getInt(), q.getColumn(2).getInt()};
}

// Every reading call must leave no read transaction open behind it: one stepped once and never
// reset pins the WAL, which then grows for as long as the process runs.
TEST(StoreTest, NoReadLeavesTheWalPinned) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto jobs = s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  auto c = s->claim(1, 0, std::nullopt, "t");
  ASSERT_EQ(c.size(), 1u);
  ASSERT_TRUE(s->requeue(c[0].job.id, c[0].attempt, 1000000, 1, 0, std::nullopt, std::nullopt));
  s->append_event(jobs[0].id, "download_started", "{}", "t");
  std::vector<std::pair<std::string, std::function<void()>>> reads = {
      {"next_retry_ms", [&] { EXPECT_EQ(s->next_retry_ms(10), 1000000); }},
      {"get_job", [&] { EXPECT_TRUE(s->get_job(jobs[1].id).has_value()); }},
      {"any_unfinished", [&] { EXPECT_TRUE(s->any_unfinished({})); }},
      {"any_unfinished(ids)", [&] { EXPECT_TRUE(s->any_unfinished({jobs[0].id})); }},
      {"counts", [&] { EXPECT_EQ(s->counts().waiting, 2); }},
      {"list_jobs", [&] { EXPECT_EQ(s->list_jobs({std::nullopt, 0, 1}).size(), 1u); }},
      {"events_since", [&] { EXPECT_EQ(s->events_since(0, 1, std::nullopt).size(), 1u); }},
      {"last_event_seq", [&] { EXPECT_GT(s->last_event_seq(), 0); }},
      {"claim", [&] { EXPECT_TRUE(s->claim(1, 10, std::vector<int64_t>{jobs[0].id}, "t").empty()); }},
  };
  for (auto& [name, read] : reads) {
    read();
    // Writes after the read, then a checkpoint from elsewhere: it must get through all of them.
    for (int i = 0; i < 20; ++i) s->note_best_bytes(jobs[1].id, i);
    auto [busy, log, done] = passive_checkpoint(dir / "q.db");
    EXPECT_EQ(busy, 0) << name;
    EXPECT_GT(log, 0) << name;
    EXPECT_EQ(done, log) << "after " << name << " a read transaction kept " << log - done
                         << " WAL frames from the checkpoint";
  }
}

TEST(StoreTest, TheWalIsCutBackAfterACheckpoint) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  // About 30 MB in one commit: the WAL grows past the limit.
  std::string big(300 * 1024, 'x');
  s->transaction([&] {
    for (int i = 0; i < 100; ++i) s->append_event(1, "download_progress", big, "t");
  });
  auto [busy, log, done] = passive_checkpoint(dir / "q.db");
  EXPECT_EQ(busy, 0);
  EXPECT_EQ(done, log);
  s->append_event(1, "download_progress", "{}", "t");  // the next write starts the WAL again
  struct stat st {};
  ASSERT_EQ(::stat((dir / "q.db-wal").c_str(), &st), 0);
  EXPECT_LE(st.st_size, 16 << 20);
}

// Opens `path` read-only as user nobody in a forked child (tests run as root, who may write
// anywhere); returns "" when it listed `want` jobs, else what went wrong.
std::string list_as_nobody(const std::string& path, size_t want) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      msg = "cannot become nobody";
    } else {
      OpenOptions ro;
      ro.read_only = true;
      auto r = open_sqlite_store(path, ro);
      if (!r.ok()) {
        msg = r.error().message;
      } else if (auto n = r.value()->list_jobs({}).size(); n != want) {
        msg = "listed " + std::to_string(n) + " jobs";
      }
    }
    (void)!::write(fds[1], msg.data(), msg.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

// A reader who may read the file but not create the -shm beside it (a folder of another user,
// a read-only mount): list --db and show --db must still work.
TEST(StoreTest, AReaderWhoCannotWriteBesideTheDatabaseCanStillRead) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  TempDir dir;
  { open_store(dir / "q.db")->insert_jobs({job("http://h/a"), job("http://h/b")}, "t"); }
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod((dir / "q.db").c_str(), 0644), 0);
  // Closed cleanly: no -wal and no -shm, and nobody may create them.
  EXPECT_EQ(list_as_nobody(dir / "q.db", 2), "");
  // With the writer still running: the -wal and -shm exist but are not the reader's to write.
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/c")}, "t");
  EXPECT_EQ(list_as_nobody(dir / "q.db", 3), "");
}

TEST(StoreTest, PruneRemovesTheEventsOfThePrunedJobsOnly) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto jobs = s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  s->append_event(jobs[0].id, "job_added", "{}", "t");
  s->append_event(jobs[1].id, "job_added", "{}", "t");
  ASSERT_TRUE(s->change_status(jobs[0].id, {JobStatus::kWaiting}, JobStatus::kCancelled, "t"));
  ASSERT_EQ(s->prune({}, "t").size(), 1u);
  auto ev = s->events_since(0, 10, std::nullopt);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].job_id, jobs[1].id);
  EXPECT_EQ(s->first_event_seq(), ev[0].seq);
}

TEST(StoreTest, TrimEventsKeepsTheNewestInBatchesAndTheSequenceGoesOn) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  for (int i = 0; i < 100; ++i) s->append_event(1, "download_progress", "{}", "t");
  EXPECT_EQ(s->trim_events(0, 1000), 0);  // 0 keeps all
  EXPECT_EQ(s->trim_events(30, 50), 50);  // one batch at a time
  EXPECT_EQ(s->trim_events(30, 50), 20);
  EXPECT_EQ(s->trim_events(30, 50), 0);
  EXPECT_EQ(s->first_event_seq(), 71);
  EXPECT_EQ(s->events_since(0, 1000, std::nullopt).size(), 30u);
  EXPECT_EQ(s->trim_events(1, 1000), 29);
  EXPECT_EQ(s->last_event_seq(), 100);
  EXPECT_EQ(s->events_since(0, 1000, std::nullopt).size(), 1u);
  // Old events gone or not, the sequence goes on from the last seq ever given.
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 101);
}

// A power cut may take back the events of crash-safe commits with their seqs: a store that
// starts in another boot skips as many seqs as those may hold, once per boot.
TEST(StoreTest, EventsAppendedInANewBootComeAfterEverySeqAPowerCutCanHaveTakenBack) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->fence_events("boot-a");  // a new log: nothing to skip
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 1);
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 2);
  s->fence_events("boot-a");  // the same boot (a restart of the process): nothing lost
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 3);
  s->fence_events("boot-b");
  s->fence_events("boot-c");  // two boots without an event between: two skips
  // The newest event given is still 3 (a reader waiting for it to appear must not wait for a
  // seq no event took), and the log, empty or not, does not start after it.
  EXPECT_EQ(s->last_event_seq(), 3);
  EXPECT_EQ(s->first_event_seq(), 1);
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 4 + 2 * kMaxUnsyncedEvents);
  EXPECT_EQ(s->last_event_seq(), 4 + 2 * kMaxUnsyncedEvents);
  s->fence_events("boot-b");
  EXPECT_EQ(s->last_event_seq(), 4 + 2 * kMaxUnsyncedEvents);
  s->fence_events("boot-b");
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 5 + 3 * kMaxUnsyncedEvents);
  EXPECT_EQ(s->events_since(0, 100, std::nullopt).size(), 5u);
  EXPECT_EQ(s->first_event_seq(), 1);
  // Trimmed to its newest event and fenced again: that event is still the newest given.
  for (int64_t k; (k = s->trim_events(1, 1000)) > 0;) {
  }
  s->fence_events("boot-d");
  EXPECT_EQ(s->events_since(0, 100, std::nullopt).size(), 1u);
  EXPECT_EQ(s->last_event_seq(), 5 + 3 * kMaxUnsyncedEvents);
  // Every event of the last boot lost, the sequence with them: still after the last fence.
  s.reset();
  {
    SQLite::Database db(dir / "q.db", SQLite::OPEN_READWRITE);
    db.exec("DELETE FROM events");
    db.exec("DELETE FROM sqlite_sequence WHERE name = 'events'");
  }
  s = open_store(dir / "q.db");
  s->fence_events("boot-c");
  EXPECT_GT(s->append_event(1, "download_progress", "{}", "t"), kMaxUnsyncedEvents);
}

// Trimmed up to skipped seqs, the log starts where they began: a reader that saw the last event
// before them is told of no removed events.
TEST(StoreTest, ALogThatStartsAfterSkippedSeqsMissesNoEvent) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->fence_events("boot-a");
  s->append_event(1, "download_progress", "{}", "t");
  s->append_event(1, "download_progress", "{}", "t");
  s->fence_events("boot-b");
  s->fence_events("boot-c");
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 3 + 2 * kMaxUnsyncedEvents);
  for (int64_t k; (k = s->trim_events(1, 1000)) > 0;) {
  }
  EXPECT_EQ(s->events_since(0, 100, std::nullopt).size(), 1u);
  EXPECT_EQ(s->first_event_seq(), 3);
  auto fences = [&] {
    SQLite::Database db(dir / "q.db", SQLite::OPEN_READONLY);
    return db.execAndGet("SELECT COUNT(*) FROM event_fences").getInt();
  };
  EXPECT_EQ(fences(), 2);  // the two skips the log starts after stay
  s->append_event(1, "download_progress", "{}", "t");
  for (int64_t k; (k = s->trim_events(1, 1000)) > 0;) {
  }
  EXPECT_EQ(s->first_event_seq(), 4 + 2 * kMaxUnsyncedEvents);
  EXPECT_EQ(fences(), 1);  // below the log, only the newest (this boot's) stays
  s->fence_events("boot-c");
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 5 + 2 * kMaxUnsyncedEvents);
}

TEST(StoreTest, ALogOfAnOlderFetchqMayHaveLostEventsAsAnyOther) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->append_event(1, "download_progress", "{}", "t");  // no fence: events of an unknown boot
  s->fence_events("boot-a");
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 2 + kMaxUnsyncedEvents);
}

// The seqs a fence skipped hold no events: the retention keeps the newest `keep` events, not
// the events of the newest `keep` seqs, which a skip would leave empty.
TEST(StoreTest, TrimEventsCountsEventsNotTheSeqsAFenceSkipped) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->fence_events("boot-a");
  for (int i = 0; i < 10; ++i) s->append_event(1, "download_progress", "{}", "t");
  s->fence_events("boot-b");
  for (int i = 0; i < 5; ++i) s->append_event(1, "download_progress", "{}", "t");
  s->fence_events("boot-c");
  for (int i = 0; i < 5; ++i) s->append_event(1, "download_progress", "{}", "t");
  // A batch is a range of seqs: trimmed as fetchq does, until a call removes none.
  auto trim = [&](int64_t keep) {
    int64_t n = 0;
    for (int64_t k; (k = s->trim_events(keep, 1000)) > 0;) n += k;
    return n;
  };
  EXPECT_EQ(trim(20), 0);
  EXPECT_EQ(trim(12), 8);  // 10 + 5 + 5 events: the 8 oldest go
  auto left = s->events_since(0, 100, std::nullopt);
  ASSERT_EQ(left.size(), 12u);
  EXPECT_EQ(left.front().seq, 9);
  EXPECT_EQ(trim(7), 5);
  left = s->events_since(0, 100, std::nullopt);
  ASSERT_EQ(left.size(), 7u);
  EXPECT_EQ(left.front().seq, 14 + kMaxUnsyncedEvents);
  EXPECT_EQ(trim(3), 4);
  EXPECT_EQ(s->events_since(0, 100, std::nullopt).size(), 3u);
  // The fence of this boot stays; the next start in it skips nothing.
  s->fence_events("boot-c");
  EXPECT_EQ(s->append_event(1, "download_progress", "{}", "t"), 21 + 2 * kMaxUnsyncedEvents);
}

TEST(StoreOpenTest, APathAndASqliteSpecNameTheSameFile) {
  TempDir dir;
  const std::string path = dir / "q.db";
  {
    auto s = open(path);
    ASSERT_TRUE(s.ok()) << s.error().message;
    s.value()->insert_jobs({job("http://h/a")}, "t");
  }
  OpenOptions ro;
  ro.read_only = true;
  auto r = open("sqlite:" + path, ro);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value()->list_jobs({}).size(), 1u);
  // "sqlite:" then an absolute path: the form a URL would take works too.
  auto url = open("sqlite://" + path, ro);
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_EQ(url.value()->list_jobs({}).size(), 1u);
}

TEST(StoreSpec, PathsAndSqliteSpecsNameAnSqliteFile) {
  struct Case {
    std::string spec, path;
  };
  for (const auto& c : std::vector<Case>{
           {"/var/lib/fetchq/q.db", "/var/lib/fetchq/q.db"},
           {"q.db", "q.db"},
           {"state/q.db", "state/q.db"},
           {"sqlite:/var/q.db", "/var/q.db"},
           {"sqlite:q.db", "q.db"},
           {"sqlite:../q.db", "../q.db"},
           {"SQLite:q.db", "q.db"},
           {"sqlite:///var/q.db", "/var/q.db"},
           {"sqlite:a:b.db", "a:b.db"},
           {"./foo:bar", "./foo:bar"},   // a path that says so
           {"q.db:1", "q.db:1"},         // a '.' before the ':' is no scheme
           {"/tmp/x:y", "/tmp/x:y"},
           {"2024:q.db", "2024:q.db"},   // a scheme starts with a letter
       }) {
    auto l = locate(c.spec);
    ASSERT_TRUE(l.ok()) << c.spec << ": " << l.error().message;
    EXPECT_EQ(l.value().kind, StoreKind::kSqlite) << c.spec;
    EXPECT_EQ(l.value().path, c.path) << c.spec;
  }
}

TEST(StoreSpec, PostgresqlIsRefusedWithoutRepeatingTheSpec) {
  for (const std::string spec : {"postgresql://fetchq:s3cret@db.example/fetchq",
                                 "postgres://fetchq:s3cret@db.example/fetchq",
                                 "PostgreSQL://fetchq:s3cret@db.example/fetchq", "postgresql:s3cret"}) {
    auto l = locate(spec);
    ASSERT_FALSE(l.ok()) << spec;
    EXPECT_EQ(l.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(l.error().message.rfind("PostgreSQL is not supported yet", 0), 0u) << l.error().message;
    EXPECT_EQ(l.error().message.find("s3cret"), std::string::npos) << l.error().message;
    EXPECT_EQ(l.error().message.find('\n'), std::string::npos) << l.error().message;
    auto s = open(spec);  // open goes through the same parser
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(StoreSpec, UnknownSchemesAndEmptySpecsAreRefused) {
  for (const std::string spec : {"foo:bar", "mysql://u:s3cret@h/db", "redis+tls://h", "file:q.db"}) {
    auto l = locate(spec);
    ASSERT_FALSE(l.ok()) << spec;
    EXPECT_EQ(l.error().code, ErrorCode::kInvalidArgument) << spec;
    EXPECT_NE(l.error().message.find("unknown kind of store"), std::string::npos) << l.error().message;
    EXPECT_EQ(l.error().message.find("s3cret"), std::string::npos) << l.error().message;
  }
  EXPECT_NE(locate("mysql://h/db").error().message.find("\"mysql\""), std::string::npos);
  for (const std::string spec : {"", "sqlite:", "sqlite://", "sqlite://host/q.db"}) {
    auto l = locate(spec);
    ASSERT_FALSE(l.ok()) << spec;
    EXPECT_EQ(l.error().code, ErrorCode::kInvalidArgument) << spec;
  }
}

TEST(StoreSpec, ARefusedSpecCreatesNothing) {
  TempDir dir;
  for (const std::string spec : {"postgresql://h/db", "foo:bar", "sqlite:"}) {
    EXPECT_FALSE(open(spec).ok()) << spec;
  }
  EXPECT_FALSE(std::filesystem::exists("postgresql:"));
  EXPECT_FALSE(std::filesystem::exists("foo:bar"));
  EXPECT_FALSE(std::filesystem::exists("foo:bar.lock"));
}

TEST(StoreErrorTest, AFailingCallThrowsStoreErrorNotTheBackendsException) {
  TempDir dir;
  { open_store(dir / "q.db")->insert_jobs({job("http://h/a")}, "t"); }
  OpenOptions ro;
  ro.read_only = true;
  auto r = open(dir / "q.db", ro);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto& store = *r.value();
  try {
    store.note_best_bytes(1, 10);  // a write to a read-only database
    FAIL() << "the write went through";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.kind(), StoreErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("readonly"), std::string::npos) << e.what();
  } catch (const SQLite::Exception& e) {
    FAIL() << "SQLite::Exception escaped the store: " << e.what();
  }
  // The same inside a transaction: the nested call's StoreError comes out as it is.
  EXPECT_THROW(store.transaction([&] { store.reset_resume_state(1); }), StoreError);
}

TEST(StoreErrorTest, ATransactionLetsItsBodysOwnErrorThroughAndRollsBack) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto jobs = s->insert_jobs({job("http://h/a")}, "t");
  EXPECT_THROW(s->transaction([&] {
    s->note_best_bytes(jobs[0].id, 100);
    s->set_checkpoint(jobs[0].id, 0, 100, "boot");
    throw std::logic_error("the caller's own failure");
  }),
               std::logic_error);
  auto claimed = s->claim(1, 0, std::nullopt, "t");
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].best_bytes, 0);
  EXPECT_EQ(claimed[0].checkpoint_bytes, 0);
}

TEST(StoreErrorTest, SqliteCodesMapToKinds) {
  EXPECT_EQ(sqlite_error_kind(SQLITE_BUSY), StoreErrorKind::kBusy);
  EXPECT_EQ(sqlite_error_kind(SQLITE_BUSY_SNAPSHOT), StoreErrorKind::kBusy);
  EXPECT_EQ(sqlite_error_kind(SQLITE_LOCKED), StoreErrorKind::kBusy);
  EXPECT_EQ(sqlite_error_kind(SQLITE_IOERR_FSYNC), StoreErrorKind::kIo);
  EXPECT_EQ(sqlite_error_kind(SQLITE_CANTOPEN), StoreErrorKind::kIo);
  EXPECT_EQ(sqlite_error_kind(SQLITE_CORRUPT), StoreErrorKind::kCorrupt);
  EXPECT_EQ(sqlite_error_kind(SQLITE_NOTADB), StoreErrorKind::kCorrupt);
  EXPECT_EQ(sqlite_error_kind(SQLITE_FULL), StoreErrorKind::kFull);
  EXPECT_EQ(sqlite_error_kind(SQLITE_CONSTRAINT_FOREIGNKEY), StoreErrorKind::kConstraint);
  EXPECT_EQ(sqlite_error_kind(SQLITE_MISMATCH), StoreErrorKind::kOther);
  EXPECT_EQ(to_string(StoreErrorKind::kFull), "full");
}

TEST(SegmentStoreTest, TheSegmentMapIsSavedAndLoadedByStartAndComesWithTheClaim) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto nj = job("http://h/a");
  nj.request.options.connections = 6;
  auto id = s->insert_jobs({nj, job("http://h/b")}, "t").at(0).id;
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(c.connections.value_or(0), 6);
  EXPECT_TRUE(c.segments.empty());
  std::vector<Segment> map{{8, 16, 3}, {0, 8, 8}};  // written: as much as durable
  ASSERT_TRUE(s->save_segments(id, c.attempt, map));
  std::vector<Segment> sorted{{0, 8, 8, 8}, {8, 16, 3, 3}};
  EXPECT_EQ(s->load_segments(id), sorted);
  // A second save replaces the map (a segment split in two by work stealing).
  std::vector<Segment> split{{0, 8, 8, 8}, {8, 12, 4, 4}, {12, 16, 1, 1}};
  ASSERT_TRUE(s->save_segments(id, c.attempt, split));
  EXPECT_EQ(s->load_segments(id), split);
  // A crash: the next attempt is handed the map with the job.
  s.reset();
  s = open_store(dir / "q.db");
  s->recover_running();
  auto again = s->claim(2, 0, std::nullopt, "t");
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].segments, split);
  EXPECT_EQ(again[0].connections.value_or(0), 6);
  EXPECT_TRUE(again[1].segments.empty());
  EXPECT_FALSE(again[1].connections.has_value());
}

TEST(SegmentStoreTest, AStaleAttemptCannotWriteTheSegmentMap) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto id = s->insert_jobs({job("http://h/a")}, "t").at(0).id;
  auto first = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->save_segments(id, first.attempt, {{0, 10, 5}}));
  ASSERT_TRUE(s->requeue(id, first.attempt, 0, 1, std::nullopt, std::nullopt, std::nullopt));
  auto second = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_FALSE(s->save_segments(id, first.attempt, {{0, 10, 9}}));
  EXPECT_EQ(s->load_segments(id), (std::vector<Segment>{{0, 10, 5, 5}}));
  EXPECT_TRUE(s->save_segments(id, second.attempt, {{0, 10, 7}}));
  EXPECT_EQ(s->load_segments(id), (std::vector<Segment>{{0, 10, 7, 7}}));
}

// Progress records what each segment wrote; the durable bytes stay those of the last checkpoint,
// carried into ranges cut since.
TEST(SegmentStoreTest, ProgressRecordsWrittenBytesAndKeepsTheCheckpointsDurableOnes) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto id = s->insert_jobs({job("http://h/a")}, "t").at(0).id;
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->save_segments(id, c.attempt, {{0, 100, 30}, {100, 200, 10}}));
  // The second range was cut at 150 (work stealing); the map takes the new ranges. The durable
  // value given is ignored, a written value below durable is raised to it, one past the end cut.
  std::vector<Segment> progress{{.start = 0, .end = 100, .durable = 99, .written = 20},
                                {.start = 100, .end = 150, .written = 40},
                                {.start = 150, .end = 200, .written = 500}};
  ASSERT_TRUE(s->note_segments_written(id, c.attempt, progress));
  EXPECT_EQ(s->load_segments(id),
            (std::vector<Segment>{{0, 100, 30, 30}, {100, 150, 10, 40}, {150, 200, 0, 50}}));
  // The next checkpoint makes what was written durable.
  ASSERT_TRUE(s->save_segments(id, c.attempt, {{0, 100, 60}, {100, 150, 40}, {150, 200, 5}}));
  EXPECT_EQ(s->load_segments(id),
            (std::vector<Segment>{{0, 100, 60, 60}, {100, 150, 40, 40}, {150, 200, 5, 5}}));
  // Paused: progress of the attempt no longer counts (the pause recorded its own checkpoint).
  ASSERT_TRUE(s->change_status(id, {JobStatus::kRunning}, JobStatus::kPaused, "t"));
  EXPECT_FALSE(s->note_segments_written(id, c.attempt, {{.start = 0, .end = 200, .written = 200}}));
  EXPECT_EQ(s->load_segments(id).size(), 3u);
  // A crash and a new attempt: the claim hands over written and durable bytes alike; a late
  // report of the old attempt changes nothing.
  ASSERT_TRUE(s->change_status(id, {JobStatus::kPaused}, JobStatus::kWaiting, "t"));
  auto next = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(next.segments,
            (std::vector<Segment>{{0, 100, 60, 60}, {100, 150, 40, 40}, {150, 200, 5, 5}}));
  EXPECT_FALSE(s->note_segments_written(id, c.attempt, {{.start = 0, .end = 200, .written = 200}}));
  ASSERT_TRUE(s->note_segments_written(id, next.attempt,
                                       {{.start = 0, .end = 100, .written = 70},
                                        {.start = 100, .end = 150, .written = 45},
                                        {.start = 150, .end = 200, .written = 9}}));
  EXPECT_EQ(s->claim(1, 0, std::nullopt, "t").size(), 0u);
  EXPECT_EQ(s->load_segments(id),
            (std::vector<Segment>{{0, 100, 60, 70}, {100, 150, 40, 45}, {150, 200, 5, 9}}));
}

// Written bytes live in one boot's page cache. A claim in another boot forgets them for good, so
// a later stamp of the new boot (a start, a failed attempt's checkpoint) cannot bring them back.
TEST(SegmentStoreTest, AClaimInAnotherBootForgetsTheWrittenBytesForGood) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto id = s->insert_jobs({job("http://h/a")}, "t").at(0).id;
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->set_checkpoint(id, c.attempt, 0, "an earlier boot"));
  ASSERT_TRUE(s->save_segments(id, c.attempt, {{0, 100, 10}, {100, 200, 5}}));
  ASSERT_TRUE(s->note_segments_written(id, c.attempt, {{.start = 0, .end = 100, .written = 60},
                                                       {.start = 100, .end = 200, .written = 50}}));
  s.reset();  // a power cut
  s = open_store(dir / "q.db");
  s->recover_running();
  auto next = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(next.segments, (std::vector<Segment>{{0, 100, 10, 10}, {100, 200, 5, 5}}));
  // This boot stamps the job (the attempt fails at once and promises its synced prefix).
  ASSERT_TRUE(s->set_checkpoint(id, next.attempt, 0, util::boot_id()));
  ASSERT_TRUE(s->requeue(id, next.attempt, 0, 1, std::nullopt, std::nullopt, std::nullopt));
  auto again = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(again.checkpoint_boot_id, util::boot_id());
  EXPECT_EQ(again.segments, (std::vector<Segment>{{0, 100, 10, 10}, {100, 200, 5, 5}}));
}

// A sync of the .part failed: what was written since the checkpoint may be gone from this
// boot's page cache too. The job's bytes and every segment's written bytes go back to what the
// checkpoint promised, and the next claim, in this very boot, keeps no more.
TEST(SegmentStoreTest, AfterAFailedSyncNoClaimKeepsMoreThanTheCheckpoint) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto id = s->insert_jobs({job("http://h/a")}, "t").at(0).id;
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->set_checkpoint(id, c.attempt, 40, util::boot_id()));
  ASSERT_TRUE(s->save_segments(id, c.attempt, {{0, 100, 40}, {100, 200, 10}}));
  ASSERT_TRUE(s->set_progress(id, c.attempt, 90, 200));
  ASSERT_TRUE(s->note_segments_written(
      id, c.attempt,
      {{.start = 0, .end = 100, .written = 90}, {.start = 100, .end = 200, .written = 70}}));
  EXPECT_FALSE(s->forget_unsynced(id, c.attempt + 1)) << "another attempt's failure";
  EXPECT_EQ(s->get_job(id)->bytes, 90);
  ASSERT_TRUE(s->requeue(id, c.attempt, 0, 1, std::nullopt, std::nullopt, std::nullopt));
  ASSERT_TRUE(s->forget_unsynced(id, c.attempt));
  EXPECT_EQ(s->get_job(id)->bytes, 40);
  auto next = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_EQ(next.checkpoint_bytes, 40);
  EXPECT_NE(next.checkpoint_boot_id, util::boot_id()) << "a claim in this boot would trust bytes";
  EXPECT_EQ(next.job.bytes, 40);
  EXPECT_EQ(next.segments, (std::vector<Segment>{{0, 100, 40, 40}, {100, 200, 10, 10}}));
  // An attempt claimed before the failed one's end was recorded has not begun: it is covered.
  ASSERT_TRUE(s->set_checkpoint(id, next.attempt, 40, util::boot_id()));
  ASSERT_TRUE(s->set_progress(id, next.attempt, 120, 200));
  EXPECT_TRUE(s->forget_unsynced(id, c.attempt));
  EXPECT_EQ(s->get_job(id)->bytes, 40);
}

// A new .part holds none of the bytes the old map promises: recording it drops the map.
TEST(SegmentStoreTest, RecordingANewPartDropsTheOldMap) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto id = s->insert_jobs({job("http://h/a")}, "t").at(0).id;
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  ASSERT_TRUE(s->save_segments(id, c.attempt, {{0, 100, 10}, {100, 200, 5}}));
  EXPECT_FALSE(s->record_part(id, c.attempt + 1, dir / "f", 1, 2, 3));  // a stale attempt: kept
  EXPECT_EQ(s->load_segments(id).size(), 2u);
  ASSERT_TRUE(s->record_part(id, c.attempt, dir / "f", 1, 2, 3));
  EXPECT_TRUE(s->load_segments(id).empty());
}

// A pause can come while a new .part's record is on its way: the file is still the job's, and
// the next attempt reopens it. A cancelled job's is not recorded (the file is let go).
TEST(SegmentStoreTest, ANewPartIsRecordedForAPausedJobButNotForACancelledOne) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  auto c = s->claim(2, 0, std::nullopt, "t");
  ASSERT_EQ(c.size(), 2u);
  ASSERT_TRUE(s->change_status(c[0].job.id, {JobStatus::kRunning}, JobStatus::kPaused, "t"));
  ASSERT_TRUE(s->change_status(c[1].job.id, {JobStatus::kRunning}, JobStatus::kCancelled, "t"));
  EXPECT_TRUE(s->record_part(c[0].job.id, c[0].attempt, dir / "a", 1, 2, 3));
  EXPECT_FALSE(s->record_part(c[1].job.id, c[1].attempt, dir / "b", 4, 5, 6));
  ASSERT_TRUE(s->change_status(c[0].job.id, {JobStatus::kPaused}, JobStatus::kWaiting, "t"));
  auto again = s->claim(1, 0, std::nullopt, "t");
  ASSERT_EQ(again.size(), 1u);
  ASSERT_TRUE(again[0].part_identity);
  EXPECT_EQ(again[0].part_identity->ino, 2u);
  EXPECT_EQ(again[0].job.download_path.value_or(""), dir / "a");
  EXPECT_FALSE(s->get_job(c[1].job.id)->download_path);
}

// A pause handled in the same batch as the attempt's start: the start (its validator and the
// source that gave it) is recorded beside the offsets the stopped attempt then promises. Not
// for a cancelled job, nor for an attempt that is not the job's last.
TEST(SegmentStoreTest, AStartIsRecordedForAPausedJobButNotForACancelledOneOrAnOldAttempt) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  s->insert_jobs({job("http://h/a"), job("http://h/b")}, "t");
  auto c = s->claim(2, 0, std::nullopt, "t");
  ASSERT_EQ(c.size(), 2u);
  ASSERT_TRUE(s->change_status(c[0].job.id, {JobStatus::kRunning}, JobStatus::kPaused, "t"));
  ASSERT_TRUE(s->change_status(c[1].job.id, {JobStatus::kRunning}, JobStatus::kCancelled, "t"));
  StartInfo info;
  info.download_path = dir / "a";
  info.total_bytes = 100;
  info.etag = "\"m1\"";
  info.validator_url = "http://mirror/a";
  EXPECT_TRUE(s->set_started(c[0].job.id, c[0].attempt, info));
  EXPECT_FALSE(s->set_started(c[1].job.id, c[1].attempt, info));
  EXPECT_FALSE(s->set_started(c[0].job.id, c[0].attempt - 1, info));
  ASSERT_TRUE(s->set_checkpoint(c[0].job.id, c[0].attempt, 40, "boot"));
  ASSERT_TRUE(s->change_status(c[0].job.id, {JobStatus::kPaused}, JobStatus::kWaiting, "t"));
  auto again = s->claim(1, 0, std::nullopt, "t");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].etag, "\"m1\"");
  EXPECT_EQ(again[0].validator_url, "http://mirror/a");
  EXPECT_EQ(again[0].checkpoint_bytes, 40);
  // A restart from zero forgets the validator and the source it came from.
  s->reset_resume_state(again[0].job.id);
  ASSERT_TRUE(s->requeue(again[0].job.id, again[0].attempt, 0, 0, std::nullopt, std::nullopt,
                         std::nullopt));
  auto third = s->claim(1, 0, std::nullopt, "t");
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].etag, "");
  EXPECT_EQ(third[0].validator_url, "");
}

TEST(SegmentStoreTest, TheMapIsForgottenOnCompletionRestartCancelAndPrune) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto jobs = s->insert_jobs({job("http://h/a"), job("http://h/b"), job("http://h/c"), job("http://h/d")}, "t");
  auto c = s->claim(4, 0, std::nullopt, "t");
  ASSERT_EQ(c.size(), 4u);
  for (auto& cj : c) ASSERT_TRUE(s->save_segments(cj.job.id, cj.attempt, {{0, 4, 2}, {4, 8, 1}}));
  Finish done;
  ASSERT_TRUE(s->finish(c[0].job.id, c[0].attempt, done, "t"));
  EXPECT_TRUE(s->load_segments(c[0].job.id).empty());
  s->reset_resume_state(c[1].job.id);
  EXPECT_TRUE(s->load_segments(c[1].job.id).empty());
  ASSERT_TRUE(s->change_status(c[2].job.id, {JobStatus::kRunning}, JobStatus::kCancelled, "t"));
  EXPECT_TRUE(s->load_segments(c[2].job.id).empty());
  // A failed job keeps its map (a retry resumes it) until it is pruned.
  Finish failed;
  failed.status = JobStatus::kError;
  ASSERT_TRUE(s->finish(c[3].job.id, c[3].attempt, failed, "t"));
  EXPECT_EQ(s->load_segments(c[3].job.id).size(), 2u);
  s->forget_segments(c[3].job.id);
  EXPECT_TRUE(s->load_segments(c[3].job.id).empty());
  ASSERT_TRUE(s->save_segments(c[3].job.id, c[3].attempt, {{0, 4, 2}}));
  s->prune({}, "t");
  s.reset();
  SQLite::Database db(dir / "q.db");
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM segments").getInt(), 0);
}

TEST(SegmentStoreTest, TheSchemaRefusesBadRangesAndConnections) {
  TempDir dir;
  auto s = open_store(dir / "q.db");
  auto id = s->insert_jobs({job("http://h/a")}, "t").at(0).id;
  auto c = s->claim(1, 0, std::nullopt, "t").at(0);
  EXPECT_THROW(s->save_segments(id, c.attempt, {{10, 5, 0}}), StoreError);
  EXPECT_THROW(s->save_segments(id, c.attempt, {{0, 5, 6}}), StoreError);
  // The failed save left the map as it was (one transaction).
  ASSERT_TRUE(s->save_segments(id, c.attempt, {{0, 5, 1}}));
  EXPECT_THROW(s->save_segments(id, c.attempt, {{0, 2, 0}, {2, 1, 0}}), StoreError);
  EXPECT_EQ(s->load_segments(id), (std::vector<Segment>{{0, 5, 1, 1}}));
  // Written bytes past the range's end are refused by the schema as well.
  EXPECT_THROW(
      s->save_segments(id, c.attempt, {{.start = 0, .end = 5, .durable = 1, .written = 6}}),
      StoreError);
  auto nj = job("http://h/b");
  nj.request.options.connections = 17;
  EXPECT_THROW(s->insert_jobs({nj}, "t"), StoreError);
}

}  // namespace
}  // namespace fetchq::store
