// The SQLite implementation of Store (WAL, cached statements, one lock for all callers).
#include "store/sqlite/sqlite_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <SQLiteCpp/VariadicBind.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "store/forwarding_store.h"
#include "store/sqlite/schema_files.h"
#include "util/fs.h"

namespace fetchq::store {
namespace {

constexpr int64_t kJournalSizeLimit = 16 << 20;

constexpr const char* kJobColumns =
    "id, source, dest, priority, status, download_path, job_started, job_ended, bytes, "
    "total_bytes, error_type, error, cancelled, attempts, "
    "EXISTS(SELECT 1 FROM tokens t WHERE t.job_id = jobs.id), created_at, headers, user_agent, "
    "limit_rate, sha256, sha256_from, mirrors";
// Columns read_job reads; a query's own columns follow them.
constexpr int kJobColumnCount = 22;

// Header lines and mirror URLs are stored joined by line feeds, which no header can hold
// (queue::check_header) and no URL either (queue::check_source_url).
std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// "Name: value" back into its parts (names hold no colon).
RequestHeader header_of(const std::string& line) {
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return RequestHeader{line, ""};
  size_t v = colon + 1;
  while (v < line.size() && line[v] == ' ') ++v;
  return RequestHeader{line.substr(0, colon), line.substr(v)};
}

std::optional<std::string> opt_text(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getString();
}

Job read_job(SQLite::Statement& q, int base = 0) {
  Job j;
  j.id = q.getColumn(base + 0).getInt64();
  j.source = q.getColumn(base + 1).getString();
  j.dest = q.getColumn(base + 2).getString();
  j.priority = q.getColumn(base + 3).getInt();
  j.status = parse_job_status(q.getColumn(base + 4).getString()).value_or(JobStatus::kError);
  j.download_path = opt_text(q.getColumn(base + 5));
  j.job_started = opt_text(q.getColumn(base + 6));
  j.job_ended = opt_text(q.getColumn(base + 7));
  j.bytes = q.getColumn(base + 8).getInt64();
  j.total_bytes = q.getColumn(base + 9).getInt64();
  j.error_type = opt_text(q.getColumn(base + 10));
  j.error = opt_text(q.getColumn(base + 11));
  j.cancelled = q.getColumn(base + 12).getInt() != 0;
  j.attempts = q.getColumn(base + 13).getInt();
  j.has_access_token = q.getColumn(base + 14).getInt() != 0;
  j.created_at = q.getColumn(base + 15).getString();
  if (!q.getColumn(base + 16).isNull()) j.headers = split_lines(q.getColumn(base + 16).getString());
  j.user_agent = opt_text(q.getColumn(base + 17));
  j.limit_rate = q.getColumn(base + 18).isNull() ? 0 : q.getColumn(base + 18).getInt64();
  j.sha256 = opt_text(q.getColumn(base + 19));
  j.sha256_from = opt_text(q.getColumn(base + 20));
  if (!q.getColumn(base + 21).isNull()) j.mirrors = split_lines(q.getColumn(base + 21).getString());
  return j;
}

// The headers a transfer sends: the shown lines, each <secret> one replaced by the next of the
// job's secret lines.
std::vector<RequestHeader> request_headers(const std::vector<std::string>& shown,
                                           const std::optional<std::string>& secrets) {
  std::vector<std::string> secret = secrets ? split_lines(*secrets) : std::vector<std::string>{};
  size_t next = 0;
  std::vector<RequestHeader> out;
  for (const auto& line : shown) {
    RequestHeader h = header_of(line);
    if (is_secret_header(h.name)) {
      if (next >= secret.size()) continue;  // its secret is gone: send nothing rather than "<secret>"
      h = header_of(secret[next++]);
    }
    out.push_back(std::move(h));
  }
  return out;
}

// Binds args to ?1, ?2, ... in order, as SQLite::bind (VariadicBind.h) does, with an empty
// optional bound as NULL, which SQLite::bind cannot express.
template <class T>
void bind_at(SQLite::Statement& q, int index, const std::optional<T>& v) {
  if (v) {
    q.bind(index, *v);
  } else {
    q.bind(index);
  }
}
template <class T>
void bind_at(SQLite::Statement& q, int index, const T& v) {
  q.bind(index, v);
}
template <class... Args>
void bind_row(SQLite::Statement& q, const Args&... args) {
  int index = 0;
  (bind_at(q, ++index, args), ...);
}

std::string status_list(const std::vector<JobStatus>& statuses) {
  std::string s;
  for (auto st : statuses) {
    if (!s.empty()) s += ",";
    s += "'" + std::string(to_string(st)) + "'";
  }
  return s;
}

std::string id_list(const std::vector<int64_t>& ids) {
  std::string s;
  for (auto id : ids) {
    if (!s.empty()) s += ",";
    s += std::to_string(id);
  }
  return s;
}

// A cached statement lent to one caller and reset when the caller is done with it. A SELECT
// stepped once and left unreset keeps its read transaction open: the WAL cannot be
// checkpointed past it and grows without end while the process runs.
// Commits made while it lives wait for no disk sync (synchronous=NORMAL: in WAL mode they
// still survive a crash of the process), unless `on` is false (inside an outer transaction,
// whose commit decides). FULL comes back when it goes.
class RelaxedSync {
 public:
  RelaxedSync(SQLite::Database& db, bool on) : db_(db), on_(on) {
    if (on_) db_.exec("PRAGMA synchronous = NORMAL");
  }
  RelaxedSync(const RelaxedSync&) = delete;
  RelaxedSync& operator=(const RelaxedSync&) = delete;
  ~RelaxedSync() {
    try {
      if (on_) db_.exec("PRAGMA synchronous = FULL");
    } catch (const SQLite::Exception&) {  // the next open sets it again; never throw here
    }
  }

 private:
  SQLite::Database& db_;
  bool on_;
};

class Lent {
 public:
  explicit Lent(SQLite::Statement& s) : s_(&s) {}
  Lent(const Lent&) = delete;
  Lent& operator=(const Lent&) = delete;
  ~Lent() { s_->tryReset(); }
  SQLite::Statement* operator->() const { return s_; }
  SQLite::Statement& operator*() const { return *s_; }

 private:
  SQLite::Statement* s_;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(std::unique_ptr<SQLite::Database> db, std::optional<util::LockFile> lock)
      : db_(std::move(db)), lock_(std::move(lock)) {}

  using Store::transaction;
  void transaction(const std::function<void()>& body, Commit commit) override {
    std::lock_guard lk(mu_);
    if (depth_ > 0) {  // already inside one: join it
      body();
      return;
    }
    // Set before the transaction begins, back to FULL after its commit.
    RelaxedSync relaxed(*db_, commit == Commit::kCrashSafe);
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    ++depth_;
    try {
      body();
    } catch (...) {
      --depth_;
      throw;  // tx rolls back in its destructor
    }
    --depth_;
    tx.commit();
  }

  std::vector<Job> insert_jobs(const std::vector<NewJob>& jobs, const std::string& now) override {
    std::vector<Job> out;
    out.reserve(jobs.size());
    transaction([&] {
      Lent ins = stmt(
          "INSERT INTO jobs (source, dest, priority, status, download_path, created_at, "
          "dest_is_dir, if_exists, sha256, connections, headers, user_agent, limit_rate, mirrors) "
          "VALUES (?, ?, ?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      Lent tok = stmt("INSERT INTO tokens (job_id, token) VALUES (?, ?)");
      Lent pw = stmt("INSERT INTO url_credentials (job_id, password) VALUES (?, ?)");
      Lent hs = stmt("INSERT INTO header_secrets (job_id, headers) VALUES (?, ?)");
      for (const auto& nj : jobs) {
        const auto& r = nj.request;
        std::vector<std::string> shown, secret;
        for (const auto& h : r.options.headers) {
          shown.push_back(shown_header(h));
          if (is_secret_header(h.name)) secret.push_back(h.name + ": " + h.value);
        }
        ins->reset();
        ins->clearBindings();
        bind_row(
            *ins, r.source, r.dest, r.options.priority, nj.download_path, now,
            nj.dest_is_dir ? 1 : 0, std::string(to_string(r.options.if_exists)), r.options.sha256,
            r.options.connections,
            shown.empty() ? std::nullopt : std::optional<std::string>(join_lines(shown)),
            r.options.user_agent,
            r.options.limit_rate > 0 ? std::optional<int64_t>(r.options.limit_rate) : std::nullopt,
            r.options.mirrors.empty() ? std::nullopt
                                      : std::optional<std::string>(join_lines(r.options.mirrors)));
        ins->exec();
        Job j;
        j.id = db_->getLastInsertRowid();
        j.source = r.source;
        j.dest = r.dest;
        j.priority = r.options.priority;
        j.download_path = nj.download_path;
        j.created_at = now;
        j.limit_rate = r.options.limit_rate;
        j.has_access_token = r.options.access_token.has_value();
        if (r.options.access_token) {
          tok->reset();
          SQLite::bind(*tok, j.id, *r.options.access_token);
          tok->exec();
        }
        if (nj.url_password) {
          pw->reset();
          SQLite::bind(*pw, j.id, *nj.url_password);
          pw->exec();
        }
        if (!secret.empty()) {
          hs->reset();
          SQLite::bind(*hs, j.id, join_lines(secret));
          hs->exec();
        }
        j.headers = std::move(shown);
        j.user_agent = r.options.user_agent;
        j.mirrors = r.options.mirrors;
        out.push_back(std::move(j));
      }
    });
    return out;
  }

  std::vector<ClaimedJob> claim(int n, int64_t now_ms,
                                const std::optional<std::vector<int64_t>>& only,
                                const std::string& now) override {
    std::vector<ClaimedJob> out;
    if (n <= 0) return out;
    // A claim lost in a power cut costs nothing (running jobs go back to waiting at start), so
    // it is not worth a sync of its own; the next durable commit carries it to disk.
    std::lock_guard lk(mu_);
    RelaxedSync relaxed(*db_, depth_ == 0);
    transaction([&] {
      std::string sql =
          std::string("SELECT ") + kJobColumns +
          ", dest_is_dir, if_exists, sha256, checkpoint_bytes, checkpoint_boot_id, "
          "etag, last_modified, failures, best_bytes, sealed_bytes, failing_since_ms, "
          "(SELECT token FROM tokens t WHERE t.job_id = jobs.id), "
          "(SELECT password FROM url_credentials u WHERE u.job_id = jobs.id), part_dev, part_ino, "
          "part_birth_ns, connections, "
          "(SELECT headers FROM header_secrets h WHERE h.job_id = jobs.id), validator_url "
          "FROM jobs INDEXED BY jobs_waiting WHERE status = 'waiting' AND "
          "not_before_ms <= ? ORDER BY priority, id";
      // With `only`, rows are walked in order and filtered here: an "id IN (...)" of thousands
      // of ids, parsed again for every claim, cost more than the downloads of small files.
      Lent q = stmt(only ? sql : sql + " LIMIT ?");
      q->bind(1, static_cast<int64_t>(now_ms));
      if (!only) q->bind(2, n);
      while (static_cast<int>(out.size()) < n && q->executeStep()) {
        if (only && !std::binary_search(only->begin(), only->end(), q->getColumn(0).getInt64()))
          continue;
        ClaimedJob c;
        c.job = read_job(*q);
        // The claim's own columns, after the job's.
        auto col = [&](int k) { return q->getColumn(kJobColumnCount + k); };
        c.dest_is_dir = col(0).getInt() != 0;
        c.if_exists = parse_if_exists(col(1).getString()).value_or(IfExists::kError);
        c.sha256 = opt_text(col(2));
        c.checkpoint_bytes = col(3).getInt64();
        c.checkpoint_boot_id = col(4).isNull() ? "" : col(4).getString();
        c.etag = col(5).isNull() ? "" : col(5).getString();
        c.last_modified = col(6).isNull() ? "" : col(6).getString();
        c.failures = col(7).getInt();
        c.best_bytes = col(8).getInt64();
        if (!col(9).isNull()) c.sealed_bytes = col(9).getInt64();
        if (!col(10).isNull()) c.failing_since_ms = col(10).getInt64();
        c.access_token = opt_text(col(11));
        c.url_password = opt_text(col(12));
        if (!col(13).isNull() && !col(14).isNull()) {
          c.part_identity = ClaimedJob::PartRecord{
              static_cast<uint64_t>(col(13).getInt64()),
              static_cast<uint64_t>(col(14).getInt64()),
              col(15).isNull() ? 0 : col(15).getInt64()};
        }
        if (!col(16).isNull()) c.connections = col(16).getInt();
        c.headers = request_headers(c.job.headers, opt_text(col(17)));
        c.validator_url = col(18).isNull() ? "" : col(18).getString();
        out.push_back(std::move(c));
      }
      q->reset();  // close the read cursor before the rows are changed
      Lent unwritten = stmt("UPDATE segments SET written = durable WHERE job_id = ?");
      for (auto& c : out) {
        if (c.checkpoint_boot_id != util::boot_id()) {
          // Written bytes were in the page cache of another boot: only the durable ones are
          // there. Forgotten now, before this boot stamps the job as its own.
          unwritten->reset();
          unwritten->bind(1, static_cast<int64_t>(c.job.id));
          unwritten->exec();
        }
        c.segments = segments_of(c.job.id);
      }
      Lent up = stmt(
          "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
          "job_started = COALESCE(job_started, ?), error_type = NULL, error = NULL "
          "WHERE id = ? AND status = 'waiting'");
      for (auto& c : out) {
        up->reset();
        SQLite::bind(*up, now, c.job.id);
        up->exec();
        c.job.status = JobStatus::kRunning;
        c.job.attempts += 1;
        c.attempt = c.job.attempts;
        if (!c.job.job_started) c.job.job_started = now;
        c.job.error_type.reset();
        c.job.error.reset();
      }
    });
    return out;
  }

  std::optional<int64_t> next_retry_ms(int64_t now_ms) override {
    std::lock_guard lk(mu_);
    // Through the jobs_retry index: O(log n) however many jobs wait. Jobs already due are not
    // asked for: they start when a slot frees, and the slot's release wakes the loop anyway.
    // Not limited to a `fetchq get` run's own jobs: another job's retry time costs one needless
    // wake-up at most.
    Lent q = stmt(
        "SELECT MIN(not_before_ms) FROM jobs INDEXED BY jobs_retry WHERE status = 'waiting' AND "
        "not_before_ms > 0 "
        "AND not_before_ms > ?");  // without INDEXED BY the planner prefers jobs_status
    q->bind(1, static_cast<int64_t>(now_ms));
    if (q->executeStep() && !q->getColumn(0).isNull()) return q->getColumn(0).getInt64();
    return std::nullopt;
  }

  int64_t recover_running() override {
    std::lock_guard lk(mu_);
    return db_->exec("UPDATE jobs SET status = 'waiting', not_before_ms = 0 WHERE status = 'running'");
  }

  void fence_events(const std::string& boot_id) override {
    std::lock_guard lk(mu_);
    transaction([&] {
      Lent noted = stmt("SELECT boot_id FROM event_fences ORDER BY rowid DESC LIMIT 1");
      std::optional<std::string> last_boot;
      if (noted->executeStep()) last_boot = noted->getColumn(0).getString();
      if (last_boot == boot_id) return;
      const int64_t last = sequence_locked();
      // No fence yet and no event yet: a new log, nothing to protect. A log of an older fetchq
      // (no fence, some events) may have lost some as any other.
      const int64_t skip = !last_boot && last == 0 ? 0 : kMaxUnsyncedEvents;
      if (skip > 0) {
        Lent up = stmt("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'events'");
        up->bind(1, static_cast<int64_t>(skip));
        if (up->exec() == 0) {  // every event so far lost: the sequence has no row yet
          Lent ins = stmt("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)");
          ins->bind(1, static_cast<int64_t>(skip));
          ins->exec();
        }
      }
      Lent note = stmt("INSERT INTO event_fences (boot_id, after_seq, skipped) VALUES (?, ?, ?)");
      SQLite::bind(*note, boot_id, last, skip);
      note->exec();
    });
  }

  bool set_started(int64_t id, int attempt, const StartInfo& info) override {
    std::lock_guard lk(mu_);
    // Wherever the attempt may still record a checkpoint (set_checkpoint): a pause that came
    // in the same batch must not leave its offsets beside another attempt's validator.
    // A digest the server states replaces one it stated before (never the user's --sha256); a
    // body from byte 0 without one drops the old one, which may be of another file.
    Lent q = stmt(
        "UPDATE jobs SET download_path = ?1, total_bytes = ?2, etag = ?3, last_modified = ?4, "
        "bytes = ?5, checkpoint_boot_id = ?6, "
        "sha256 = CASE WHEN sha256 IS NOT NULL AND sha256_from IS NULL THEN sha256 "
        "WHEN ?9 <> '' THEN ?9 WHEN ?5 = 0 THEN NULL ELSE sha256 END, "
        "sha256_from = CASE WHEN sha256 IS NOT NULL AND sha256_from IS NULL THEN NULL "
        "WHEN ?9 <> '' THEN ?10 WHEN ?5 = 0 THEN NULL ELSE sha256_from END, "
        "validator_url = NULLIF(?11, '') "
        "WHERE id = ?7 AND attempts = ?8 AND status IN ('running', 'paused', 'waiting', 'error')");
    // boot_id: the boot whose page cache holds what this attempt writes.
    SQLite::bind(*q, info.download_path, info.total_bytes, info.etag, info.last_modified,
                 info.bytes, util::boot_id(), id, attempt, info.server_sha256,
                 info.server_sha256_from, info.validator_url);
    return q->exec() > 0;
  }

  bool set_progress(int64_t id, int attempt, int64_t bytes, int64_t total_bytes) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "UPDATE jobs SET bytes = ?, total_bytes = ? WHERE id = ? AND attempts = ? AND "
        "status = 'running'");
    SQLite::bind(*q, bytes, total_bytes, id, attempt);
    return q->exec() > 0;
  }

  bool finish(int64_t id, int attempt, const Finish& f, const std::string& now) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "UPDATE jobs SET status = ?, bytes = ?, total_bytes = CASE WHEN ? >= 0 THEN ? ELSE "
        "total_bytes END, error_type = ?, error = ?, job_ended = ?, failures = 0, failing_since_ms = NULL "
        "WHERE id = ? AND attempts = ? AND status = 'running'");
    bind_row(*q, std::string(to_string(f.status)), f.bytes, f.total_bytes, f.total_bytes,
             f.error_type, f.error, now, id, attempt);
    const bool done = q->exec() > 0;
    if (done && (f.status == JobStatus::kCompleted || f.status == JobStatus::kCancelled)) {
      forget_segments_locked(id);
    }
    return done;
  }

  bool requeue(int64_t id, int attempt, int64_t not_before_ms, int failures,
               std::optional<int64_t> failing_since_ms, std::optional<std::string> error_type,
               std::optional<std::string> error) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "UPDATE jobs SET status = 'waiting', not_before_ms = ?, failures = ?, error_type = ?, "
        "error = ?, failing_since_ms = ? WHERE id = ? AND attempts = ? AND status = 'running'");
    bind_row(*q, not_before_ms, failures, error_type, error, failing_since_ms, id, attempt);
    return q->exec() > 0;
  }

  void note_best_bytes(int64_t id, int64_t bytes) override {
    std::lock_guard lk(mu_);
    Lent q = stmt("UPDATE jobs SET best_bytes = MAX(best_bytes, ?) WHERE id = ?");
    SQLite::bind(*q, bytes, id);
    q->exec();
  }

  bool set_checkpoint(int64_t id, int attempt, int64_t bytes, const std::string& boot) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "UPDATE jobs SET checkpoint_bytes = ?, checkpoint_boot_id = ?, bytes = MAX(bytes, ?) "
        "WHERE id = ? AND attempts = ? AND status IN ('running', 'paused', 'waiting', 'error')");
    SQLite::bind(*q, bytes, boot, bytes, id, attempt);
    return q->exec() > 0;
  }

  bool seal(int64_t id, int attempt, const std::string& path, int64_t bytes,
            const std::string& boot) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "UPDATE jobs SET download_path = ?, total_bytes = ?, bytes = ?, checkpoint_bytes = ?, "
        "checkpoint_boot_id = ?, sealed_bytes = ? WHERE id = ? AND attempts = ? AND status = 'running'");
    SQLite::bind(*q, path, bytes, bytes, bytes, boot, bytes, id, attempt);
    return q->exec() > 0;
  }

  bool record_part(int64_t id, int attempt, const std::string& path, uint64_t dev,
                   uint64_t ino, int64_t birth_ns) override {
    std::lock_guard lk(mu_);
    // Once per new file, in the queue loop's transaction (whose commit decides). Called alone,
    // it commits with synchronous=NORMAL: in WAL mode that survives a crash of the process
    // without waiting for the disk. After a power cut the record may be lost, and then the
    // .part is left alone as not the job's.
    RelaxedSync relaxed(*db_, depth_ == 0);
    // A new file holds none of the bytes an old segment map promises: the map goes first, so no
    // crash leaves it beside the new file's identity.
    // Paused too: a pause that came while the record was on its way keeps the file, and what
    // the attempt wrote into it is checkpointed as it ends.
    Lent fq = stmt(
        "DELETE FROM segments WHERE job_id = ? AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND "
        "attempts = ? AND status IN ('running', 'paused'))");
    SQLite::bind(*fq, id, id, attempt);
    fq->exec();
    Lent q = stmt(
        "UPDATE jobs SET download_path = ?, part_dev = ?, part_ino = ?, part_birth_ns = ?, "
        "checkpoint_bytes = 0, bytes = 0 WHERE id = ? AND attempts = ? AND status IN ('running', "
        "'paused')");
    bind_row(*q, path, static_cast<int64_t>(dev), static_cast<int64_t>(ino),
             birth_ns != 0 ? std::optional<int64_t>(birth_ns) : std::nullopt, id, attempt);
    return q->exec() > 0;
  }

  bool forget_unsynced(int64_t id, int attempt) override {
    bool changed = false;
    transaction([&] {
      // No boot's stamp: the next claim keeps the checkpoint only, and forgets each segment's
      // written bytes past its durable ones (claim()). A later attempt claimed meanwhile has
      // not begun (it waits for this one's end) and resumes from the same file.
      Lent q = stmt(
          "UPDATE jobs SET bytes = checkpoint_bytes, checkpoint_boot_id = NULL WHERE id = ? AND "
          "attempts >= ? AND status IN ('running', 'paused', 'waiting', 'error')");
      SQLite::bind(*q, id, attempt);
      changed = q->exec() > 0;
      if (!changed) return;
      Lent seg = stmt("UPDATE segments SET written = durable WHERE job_id = ?");
      seg->bind(1, static_cast<int64_t>(id));
      seg->exec();
    });
    return changed;
  }

  void reset_resume_state(int64_t id) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "UPDATE jobs SET checkpoint_bytes = 0, checkpoint_boot_id = NULL, etag = NULL, "
        "last_modified = NULL, validator_url = NULL, bytes = 0, total_bytes = 0, "
        "sealed_bytes = NULL, sha256 = CASE WHEN sha256_from IS NULL THEN sha256 END, "
        "sha256_from = NULL WHERE id = ?");
    q->bind(1, static_cast<int64_t>(id));
    q->exec();
    forget_segments_locked(id);
  }

  bool save_segments(int64_t id, int attempt, const std::vector<Segment>& segments) override {
    bool saved = false;
    transaction([&] {
      // Fenced like set_checkpoint: a late write of an attempt that moved on changes nothing.
      Lent q = stmt(
          "SELECT 1 FROM jobs WHERE id = ? AND attempts = ? AND status IN ('running', 'paused', "
          "'waiting', 'error')");
      SQLite::bind(*q, id, attempt);
      if (!q->executeStep()) return;
      q->reset();
      forget_segments_locked(id);
      insert_segments(id, segments);
      saved = true;
    });
    return saved;
  }

  bool note_segments_written(int64_t id, int attempt,
                             const std::vector<Segment>& segments) override {
    bool saved = false;
    transaction([&] {
      Lent q = stmt("SELECT 1 FROM jobs WHERE id = ? AND attempts = ? AND status = 'running'");
      SQLite::bind(*q, id, attempt);
      if (!q->executeStep()) return;
      q->reset();
      // The ranges may have changed since the checkpoint (a range cut in two, one taken over):
      // each new range keeps the durable bytes of the old one it starts in, up to its own end.
      // A cut falls past what the old range had written, so the new right half has none.
      const std::vector<Segment> old = segments_of(id);
      std::vector<Segment> rows;
      rows.reserve(segments.size());
      for (const auto& sg : segments) {
        Segment row = sg;
        row.durable = 0;
        for (const auto& o : old) {
          if (o.start <= sg.start && sg.start < o.end) {
            row.durable = std::clamp<int64_t>(o.start + o.durable - sg.start, 0, sg.end - sg.start);
            break;
          }
        }
        row.written = std::clamp<int64_t>(sg.written, row.durable, sg.end - sg.start);
        rows.push_back(row);
      }
      forget_segments_locked(id);
      insert_segments(id, rows);
      saved = true;
    });
    return saved;
  }

  std::vector<Segment> load_segments(int64_t id) override {
    std::lock_guard lk(mu_);
    return segments_of(id);
  }

  void forget_segments(int64_t id) override {
    std::lock_guard lk(mu_);
    forget_segments_locked(id);
  }

  bool change_status(int64_t id, const std::vector<JobStatus>& from, JobStatus to,
                     const std::string& now) override {
    std::lock_guard lk(mu_);
    std::string sql = "UPDATE jobs SET status = ?";
    if (to == JobStatus::kCancelled) {
      sql += ", cancelled = 1, error_type = 'Cancelled', error = 'cancelled by the user', "
             "job_ended = ?";
    } else if (to == JobStatus::kWaiting) {
      sql += ", not_before_ms = 0, failures = 0, failing_since_ms = NULL, error_type = NULL, error = NULL, "
             "job_ended = NULL";
    }
    sql += " WHERE id = ? AND status IN (" + status_list(from) + ")";
    SQLite::Statement q(*db_, sql);
    int i = 1;
    q.bind(i++, std::string(to_string(to)));
    if (to == JobStatus::kCancelled) q.bind(i++, now);
    q.bind(i++, static_cast<int64_t>(id));
    const bool changed = q.exec() > 0;
    if (changed && to == JobStatus::kCancelled) forget_segments_locked(id);
    return changed;
  }

  SourceChange set_source(int64_t id, const std::vector<JobStatus>& from, const std::string& source,
                          const std::optional<std::string>& url_password) override {
    SourceChange out = SourceChange::kNotInStatus;
    transaction([&] {
      // A new source starts with a clean slate of failures: its back-off was the old one's. The
      // validator is put to the new source, whichever source gave it.
      SQLite::Statement q(
          *db_,
          "UPDATE jobs SET source = ?, not_before_ms = 0, failures = 0, "
          "failing_since_ms = NULL, validator_url = NULL WHERE id = ? AND status IN (" +
              status_list(from) + ")");
      SQLite::bind(q, source, id);
      if (q.exec() == 0) return;
      out = SourceChange::kBytesKept;
      SQLite::Statement v(*db_, "SELECT (COALESCE(etag, '') = '' OR etag LIKE 'W/%') AND COALESCE(last_modified, '') = '' "
                               "FROM jobs WHERE id = ?");
      v.bind(1, id);
      if (v.executeStep() && v.getColumn(0).getInt() != 0) {
        out = SourceChange::kFromZero;
        SQLite::Statement reset(*db_,
                                "UPDATE jobs SET checkpoint_bytes = 0, checkpoint_boot_id = NULL, bytes = 0, "
                                "total_bytes = 0, sealed_bytes = NULL, "
                                "sha256 = CASE WHEN sha256_from IS NULL THEN sha256 END, sha256_from = NULL "
                                "WHERE id = ?");
        reset.bind(1, id);
        reset.exec();
        forget_segments_locked(id);
      }
      Lent del = stmt("DELETE FROM url_credentials WHERE job_id = ?");
      del->bind(1, id);
      del->exec();
      if (url_password) {
        Lent pw = stmt("INSERT INTO url_credentials (job_id, password) VALUES (?, ?)");
        SQLite::bind(*pw, id, *url_password);
        pw->exec();
      }
    });
    return out;
  }

  bool has_secrets(int64_t id) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(
        "SELECT EXISTS (SELECT 1 FROM tokens WHERE job_id = ?1) OR "
        "EXISTS (SELECT 1 FROM header_secrets WHERE job_id = ?1)");
    q->bind(1, id);
    return q->executeStep() && q->getColumn(0).getInt() != 0;
  }

  bool set_limit_rate(int64_t id, int64_t bytes_per_second) override {
    std::lock_guard lk(mu_);
    Lent q = stmt("UPDATE jobs SET limit_rate = ? WHERE id = ?");
    bind_row(*q, bytes_per_second > 0 ? std::optional<int64_t>(bytes_per_second) : std::nullopt,
             id);
    return q->exec() > 0;
  }

  std::optional<Job> get_job(int64_t id) override {
    std::lock_guard lk(mu_);
    Lent q = stmt(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?");
    q->bind(1, static_cast<int64_t>(id));
    if (!q->executeStep()) return std::nullopt;
    Job j = read_job(*q);
    q->reset();
    for (const auto& s : segments_of(id)) j.segments.push_back(JobSegment{s.start, s.end, s.durable});
    return j;
  }

  std::optional<ClaimedJob::PartRecord> part_record(int64_t id) override {
    std::lock_guard lk(mu_);
    Lent q = stmt("SELECT part_dev, part_ino, part_birth_ns FROM jobs WHERE id = ?");
    q->bind(1, static_cast<int64_t>(id));
    if (!q->executeStep() || q->getColumn(0).isNull() || q->getColumn(1).isNull())
      return std::nullopt;
    return ClaimedJob::PartRecord{static_cast<uint64_t>(q->getColumn(0).getInt64()),
                                  static_cast<uint64_t>(q->getColumn(1).getInt64()),
                                  q->getColumn(2).isNull() ? 0 : q->getColumn(2).getInt64()};
  }

  std::vector<Job> list_jobs(const ListFilter& f) override {
    std::lock_guard lk(mu_);
    std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id > ?";
    if (f.status) sql += " AND status = ?";
    sql += " ORDER BY id LIMIT ?";
    Lent q = stmt(sql);
    int i = 1;
    q->bind(i++, static_cast<int64_t>(f.after_id));
    if (f.status) q->bind(i++, std::string(to_string(*f.status)));
    q->bind(i++, static_cast<int64_t>(f.limit));
    std::vector<Job> out;
    while (q->executeStep()) out.push_back(read_job(*q));
    return out;
  }

  StatusCounts counts() override {
    std::lock_guard lk(mu_);
    StatusCounts c;
    Lent q = stmt("SELECT status, COUNT(*) FROM jobs GROUP BY status");
    while (q->executeStep()) {
      auto st = parse_job_status(q->getColumn(0).getString());
      int64_t n = q->getColumn(1).getInt64();
      if (!st) continue;
      switch (*st) {
        case JobStatus::kWaiting: c.waiting = n; break;
        case JobStatus::kRunning: c.running = n; break;
        case JobStatus::kPaused: c.paused = n; break;
        case JobStatus::kCompleted: c.completed = n; break;
        case JobStatus::kCancelled: c.cancelled = n; break;
        case JobStatus::kError: c.error = n; break;
      }
    }
    return c;
  }

  bool any_unfinished(const std::vector<int64_t>& ids) override {
    std::lock_guard lk(mu_);
    // EXISTS stops at the first row of jobs_status; a COUNT walked every unfinished job, and
    // join asks again after every change.
    if (ids.empty()) {
      Lent q = stmt("SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('waiting', 'running'))");
      q->executeStep();
      return q->getColumn(0).getInt() != 0;
    }
    // The ids go in as one JSON array to a cached statement: join asks about a chunk of ids
    // after every change, and preparing a statement with the ids written into it cost more
    // than the answer.
    Lent q = stmt(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('waiting', 'running') "
        "AND id IN (SELECT value FROM json_each(?)))");
    q->bind(1, "[" + id_list(ids) + "]");
    q->executeStep();
    return q->getColumn(0).getInt() != 0;
  }

  std::vector<LiveTarget> live_targets(const std::vector<std::string>& sources) override {
    std::lock_guard lk(mu_);
    // The sources go in as one JSON array: SQLite makes a lookup table of them and passes over
    // the live jobs once, returning only the matches.
    SQLite::Statement q(*db_,
                        "SELECT id, source, dest FROM jobs WHERE status IN ('waiting', 'running', 'paused') "
                        "AND source IN (SELECT value FROM json_each(?))");
    q.bind(1, nlohmann::json(sources).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    std::vector<LiveTarget> out;
    while (q.executeStep()) {
      out.push_back(LiveTarget{q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString()});
    }
    return out;
  }

  std::vector<int64_t> ids_in(const std::vector<JobStatus>& statuses) override {
    std::lock_guard lk(mu_);
    SQLite::Statement q(*db_, "SELECT id FROM jobs WHERE status IN (" + status_list(statuses) +
                                  ") ORDER BY id");
    std::vector<int64_t> out;
    while (q.executeStep()) out.push_back(q.getColumn(0).getInt64());
    return out;
  }

  std::vector<PrunedJob> prune(const PruneFilter& filter, const std::string&) override {
    // The jobs to remove, by id, into a temporary table the deletes below take them from.
    std::string where = "status IN ('completed', 'cancelled', 'error')";
    if (!filter.statuses.empty()) {
      where = "status IN (";
      bool first = true;
      for (auto st : filter.statuses) {
        if (st != JobStatus::kCompleted && st != JobStatus::kCancelled && st != JobStatus::kError) continue;
        where += std::string(first ? "'" : ", '") + std::string(to_string(st)) + "'";
        first = false;
      }
      if (first) return {};  // no ended status named: nothing to remove
      where += ")";
    }
    if (filter.ended_before) where += " AND job_ended IS NOT NULL AND job_ended < ?";
    std::vector<PrunedJob> out;
    transaction([&] {
      db_->exec("CREATE TEMP TABLE IF NOT EXISTS pruning (id INTEGER PRIMARY KEY)");
      db_->exec("DELETE FROM temp.pruning");
      SQLite::Statement pick(*db_, "INSERT INTO temp.pruning (id) SELECT id FROM jobs WHERE " + where);
      if (filter.ended_before) pick.bind(1, *filter.ended_before);
      pick.exec();
      if (!filter.keep.empty()) {
        SQLite::Statement spare(*db_, "DELETE FROM temp.pruning WHERE id = ?");
        for (int64_t id : filter.keep) {
          spare.bind(1, id);
          spare.exec();
          spare.reset();
        }
      }
      SQLite::Statement q(
          *db_,
          "SELECT id, status, download_path, part_dev, part_ino, part_birth_ns FROM jobs "
          "WHERE id IN (SELECT id FROM temp.pruning)");
      while (q.executeStep()) {
        PrunedJob p;
        p.id = q.getColumn(0).getInt64();
        p.status = parse_job_status(q.getColumn(1).getString()).value_or(JobStatus::kError);
        p.download_path = opt_text(q.getColumn(2));
        if (!q.getColumn(3).isNull() && !q.getColumn(4).isNull()) {
          p.part = ClaimedJob::PartRecord{static_cast<uint64_t>(q.getColumn(3).getInt64()),
                                          static_cast<uint64_t>(q.getColumn(4).getInt64()),
                                          q.getColumn(5).isNull() ? 0 : q.getColumn(5).getInt64()};
        }
        out.push_back(std::move(p));
      }
      db_->exec("DELETE FROM tokens WHERE job_id IN (SELECT id FROM temp.pruning)");
      db_->exec("DELETE FROM url_credentials WHERE job_id IN (SELECT id FROM temp.pruning)");
      db_->exec("DELETE FROM header_secrets WHERE job_id IN (SELECT id FROM temp.pruning)");
      db_->exec("DELETE FROM segments WHERE job_id IN (SELECT id FROM temp.pruning)");
      // Nobody can ask about a pruned job again: its events would only fill the file.
      db_->exec("DELETE FROM events WHERE job_id IN (SELECT id FROM temp.pruning)");
      db_->exec("DELETE FROM jobs WHERE id IN (SELECT id FROM temp.pruning)");
      db_->exec("DELETE FROM temp.pruning");
    });
    return out;
  }

  int64_t append_event(int64_t job_id, const std::string& type, const std::string& payload,
                       const std::string& ts) override {
    std::lock_guard lk(mu_);
    Lent q = stmt("INSERT INTO events (ts, job_id, type, payload) VALUES (?, ?, ?, ?)");
    SQLite::bind(*q, ts, job_id, type, payload);
    q->exec();
    return db_->getLastInsertRowid();
  }

  std::vector<Event> events_since(int64_t since, int64_t limit,
                                  std::optional<int64_t> job_id) override {
    std::lock_guard lk(mu_);
    std::string sql = "SELECT seq, ts, job_id, type, payload FROM events WHERE seq > ?";
    if (job_id) sql += " AND job_id = ?";
    sql += " ORDER BY seq LIMIT ?";
    Lent q = stmt(sql);
    int i = 1;
    q->bind(i++, static_cast<int64_t>(since));
    if (job_id) q->bind(i++, static_cast<int64_t>(*job_id));
    q->bind(i++, static_cast<int64_t>(limit));
    std::vector<Event> out;
    while (q->executeStep()) {
      Event e;
      e.seq = q->getColumn(0).getInt64();
      e.ts = q->getColumn(1).getString();
      e.job_id = q->getColumn(2).isNull() ? 0 : q->getColumn(2).getInt64();
      e.type = q->getColumn(3).getString();
      e.payload = q->getColumn(4).getString();
      out.push_back(std::move(e));
    }
    return out;
  }

  int64_t last_event_seq() override {
    std::lock_guard lk(mu_);
    return last_seq_locked();
  }

  int64_t first_event_seq() override {
    std::lock_guard lk(mu_);
    const auto oldest = oldest_seq_locked();
    return oldest ? first_event_seq_locked(*oldest) : last_seq_locked() + 1;
  }

  int64_t trim_events(int64_t keep, int64_t batch) override {
    std::lock_guard lk(mu_);
    if (keep <= 0) return 0;
    // Events with seq <= upto go: the newest `keep` seqs stay, not counting those skipped by
    // fences (newest first: the seqs above a fence's skip count, then the walk goes below it).
    int64_t upto = sequence_locked(), left = keep;
    {
      Lent fences = stmt(
          "SELECT after_seq, skipped FROM event_fences WHERE skipped > 0 ORDER BY after_seq DESC");
      while (fences->executeStep()) {
        const int64_t after = fences->getColumn(0).getInt64();
        const int64_t above = upto - (after + fences->getColumn(1).getInt64());
        if (above >= left) break;
        left -= std::max<int64_t>(above, 0);
        upto = after;
      }
    }
    upto -= left;
    if (upto <= 0) return 0;
    const auto oldest = oldest_seq_locked();
    if (!oldest || *oldest > upto) return 0;
    const int64_t from = *oldest;
    // By seq, the primary key: a range of the table, however large the log.
    int64_t removed = 0;
    {
      Lent del = stmt("DELETE FROM events WHERE seq <= ?");
      del->bind(1, static_cast<int64_t>(std::min(upto, from + batch - 1)));
      removed = del->exec();
    }
    forget_fences_below_locked();
    return removed;
  }

 private:
  // A job's segment map, by start; the caller holds mu_.
  std::vector<Segment> segments_of(int64_t id) {
    Lent q = stmt(
        "SELECT start_byte, end_byte, durable, written FROM segments WHERE job_id = ? "
        "ORDER BY start_byte");
    q->bind(1, static_cast<int64_t>(id));
    std::vector<Segment> out;
    while (q->executeStep()) {
      out.push_back(Segment{q->getColumn(0).getInt64(), q->getColumn(1).getInt64(),
                            q->getColumn(2).getInt64(), q->getColumn(3).getInt64()});
    }
    return out;
  }

  // Inserts the rows of a map whose rows were just removed. A row has written at least what is
  // durable (a checkpoint's bytes were written before they were synced). The caller holds mu_,
  // in a transaction.
  void insert_segments(int64_t id, const std::vector<Segment>& segments) {
    Lent ins = stmt(
        "INSERT INTO segments (job_id, start_byte, end_byte, durable, written) "
        "VALUES (?, ?, ?, ?, ?)");
    for (const auto& sg : segments) {
      ins->reset();
      SQLite::bind(*ins, id, sg.start, sg.end, sg.durable, std::max(sg.durable, sg.written));
      ins->exec();
    }
  }

  // holds mu_.
  void forget_segments_locked(int64_t id) {
    Lent q = stmt("DELETE FROM segments WHERE job_id = ?");
    q->bind(1, static_cast<int64_t>(id));
    q->exec();
  }

  // The seq AUTOINCREMENT gave last (which stays when the newest events are removed), or the
  // last one a fence skipped; the caller holds mu_.
  int64_t sequence_locked() {
    Lent q = stmt("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)");
    q->executeStep();
    return q->getColumn(0).getInt64();
  }

  // The seq of the newest event ever given, removed since or not: the sequence, back past the
  // fences that skipped seqs after it (no event took those); the caller holds mu_.
  int64_t last_seq_locked() {
    int64_t seq = sequence_locked();
    if (!has_fences_locked()) return seq;
    Lent fences = stmt("SELECT after_seq, skipped FROM event_fences ORDER BY rowid DESC");
    while (fences->executeStep()) {
      const int64_t after = fences->getColumn(0).getInt64();
      if (after + fences->getColumn(1).getInt64() != seq) break;
      seq = after;
    }
    return seq;
  }

  // Fences whose skipped seqs end below the seq just before the log's start (after the skips
  // that lead up to it) concern no event left: gone, but for the newest, which names the boot.
  // Keeps the table as small as the log, also where every start has a boot of its own. The
  // caller holds mu_, with events left.
  void forget_fences_below_locked() {
    const auto oldest = oldest_seq_locked();
    if (!oldest) return;
    const int64_t first = first_event_seq_locked(*oldest);
    Lent del = stmt(
        "DELETE FROM event_fences WHERE after_seq + skipped < ? AND rowid < (SELECT MAX(rowid) "
        "FROM event_fences)");
    del->bind(1, static_cast<int64_t>(first - 1));
    del->exec();
  }

  // The seq of the oldest event kept, none when the log is empty; the caller holds mu_.
  std::optional<int64_t> oldest_seq_locked() {
    Lent q = stmt("SELECT MIN(seq) FROM events");
    if (!q->executeStep() || q->getColumn(0).isNull()) return std::nullopt;
    return q->getColumn(0).getInt64();
  }

  // The seq the log starts at, given its oldest event: right after seqs a fence skipped, where
  // those began (no event is missing); the caller holds mu_.
  int64_t first_event_seq_locked(int64_t first) {
    if (!has_fences_locked()) return first;
    Lent below =
        stmt("SELECT after_seq FROM event_fences WHERE skipped > 0 AND after_seq + skipped = ?");
    for (;;) {
      below->reset();
      below->bind(1, static_cast<int64_t>(first - 1));
      if (!below->executeStep()) return first;
      first = below->getColumn(0).getInt64() + 1;
    }
  }

  // The database has the event_fences table (a read-only open of an older fetchq's database
  // may not); the caller holds mu_.
  bool has_fences_locked() {
    if (!has_fences_) {
      Lent q = stmt("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_fences'");
      has_fences_ = q->executeStep();
    }
    return has_fences_;
  }

  // Cached prepared statement for a constant SQL text, reset again when the Lent goes; the
  // caller holds mu_ for as long as it keeps the Lent.
  Lent stmt(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      it = cache_.emplace(sql, std::make_unique<SQLite::Statement>(*db_, sql)).first;
    }
    it->second->reset();
    it->second->clearBindings();
    return Lent(*it->second);
  }

  std::recursive_mutex mu_;
  int depth_ = 0;
  bool has_fences_ = false;  // seen once, it stays
  std::unique_ptr<SQLite::Database> db_;
  std::optional<util::LockFile> lock_;
  std::map<std::string, std::unique_ptr<SQLite::Statement>> cache_;
};

// The SQLite store as everyone sees it: the one place where SQLite::Exception becomes
// StoreError, so no backend type escapes through the Store interface.
class TranslatedErrors final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

 protected:
  void around(StoreOp, const Body& body) override {
    try {
      body();
    } catch (const SQLite::Exception& e) {
      throw StoreError(sqlite_error_kind(e.getErrorCode()), e.what());
    }
  }
};

Status migrate(SQLite::Database& db) {
  int version = db.execAndGet("PRAGMA user_version").getInt();
  int latest = schema_files().empty() ? 0 : schema_files().back().version;
  if (version > latest) {
    return make_error(ErrorCode::kStorage,
                      "the database has schema version " + std::to_string(version) +
                          ", newer than this fetchq knows (" + std::to_string(latest) + ")");
  }
  if (version == 0) {
    // A version-0 file that already holds tables is not ours: never write into it.
    int tables = db.execAndGet("SELECT COUNT(*) FROM sqlite_master").getInt();
    if (tables > 0) {
      return make_error(ErrorCode::kStorage,
                        "the file is an SQLite database but not a fetchq one (it has tables and "
                        "no fetchq schema version)");
    }
  }
  if (version == latest) return Ok{};
  // A migration may rebuild a table (SQLite cannot change a constraint in place); with foreign
  // keys on, dropping the old table would delete the rows that refer to it. So they are off
  // meanwhile (the pragma is ignored inside a transaction), and each migration commits only
  // when every reference still holds.
  db.exec("PRAGMA foreign_keys = OFF");
  struct KeysBackOn {
    SQLite::Database& db;
    ~KeysBackOn() {
      try {
        db.exec("PRAGMA foreign_keys = ON");
      } catch (const SQLite::Exception&) {  // cannot happen outside a transaction; never throw here
      }
    }
  } keys_back_on{db};
  // A new file has no rows to break: its whole schema goes in one transaction (one sync, not
  // one a migration: a `fetchq get` of one small file spent a third of its time on them).
  std::optional<SQLite::Transaction> whole;
  if (version == 0) whole.emplace(db, SQLite::TransactionBehavior::IMMEDIATE);
  for (const auto& f : schema_files()) {
    if (f.version <= version) continue;
    std::optional<SQLite::Transaction> tx;
    if (!whole) tx.emplace(db, SQLite::TransactionBehavior::IMMEDIATE);
    db.exec(f.sql);
    SQLite::Statement fk(db, "PRAGMA foreign_key_check");
    if (fk.executeStep()) {
      return make_error(ErrorCode::kStorage, "migration " + f.name + " broke a reference in table " +
                                                 fk.getColumn(0).getString() + "; nothing was changed");
    }
    db.exec("PRAGMA user_version = " + std::to_string(f.version));
    if (tx) tx->commit();
  }
  if (whole) whole->commit();
  return Ok{};
}

// "file:" URI of a path, with the characters a URI gives a meaning to escaped.
std::string file_uri(const std::string& path, const char* query) {
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (c == '?' || c == '#' || c == '%' || c < 0x20 || c >= 0x7f) {
      static const char* hex = "0123456789ABCDEF";
      uri += '%';
      uri += hex[c >> 4];
      uri += hex[c & 15];
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri + "?" + query;
}

// A read-only open that never writes: mode=ro, and when even the -shm cannot be opened or
// created (a folder or mount the reader may not write to), immutable=1, which reads the main
// file alone. The user_version read is what first needs the -shm.
std::unique_ptr<SQLite::Database> open_read_only(const std::string& path, int* version) {
  const int flags = SQLite::OPEN_READONLY | SQLite::OPEN_URI | SQLite::OPEN_NOMUTEX;
  try {
    auto db = std::make_unique<SQLite::Database>(file_uri(path, "mode=ro"), flags, 5000);
    *version = db->execAndGet("PRAGMA user_version").getInt();
    return db;
  } catch (const SQLite::Exception& e) {
    int rc = e.getErrorCode() & 0xff;
    if (rc != SQLITE_READONLY && rc != SQLITE_CANTOPEN) throw;
  }
  auto db = std::make_unique<SQLite::Database>(file_uri(path, "mode=ro&immutable=1"), flags, 5000);
  *version = db->execAndGet("PRAGMA user_version").getInt();
  return db;
}

}  // namespace

StoreErrorKind sqlite_error_kind(int code) {
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return StoreErrorKind::kBusy;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return StoreErrorKind::kIo;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StoreErrorKind::kCorrupt;
    case SQLITE_FULL:
      return StoreErrorKind::kFull;
    case SQLITE_CONSTRAINT:
      return StoreErrorKind::kConstraint;
    default:
      return StoreErrorKind::kOther;
  }
}

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path, OpenOptions options) {
  std::optional<util::LockFile> lock;
  if (!options.read_only) {
    auto l = util::LockFile::acquire(path + ".lock");
    if (!l) return l.error();
    lock.emplace(std::move(l.value()));
  }
  try {
    if (options.read_only) {
      if (!util::exists(path)) return make_error(ErrorCode::kStorage, "no database at " + path);
      int version = 0;
      auto db = open_read_only(path, &version);
      if (version == 0) return make_error(ErrorCode::kStorage, path + " is not a fetchq database");
      return std::unique_ptr<Store>(std::make_unique<TranslatedErrors>(
          std::make_unique<SqliteStore>(std::move(db), std::nullopt)));
    }
    // Every use of the connection holds the store's own lock: SQLite's per-call locking
    // would only be paid again (about a hundred lock pairs per job).
    int flags = SQLite::OPEN_READWRITE | SQLite::OPEN_NOMUTEX;
    bool fresh = false;
    if (options.create && !util::exists(path)) {
      flags |= SQLite::OPEN_CREATE;
      fresh = true;
    }
    if (!util::exists(path) && !options.create) {
      return make_error(ErrorCode::kStorage, "no database at " + path);
    }
    mode_t old_mask = 0;
    if (fresh) old_mask = ::umask(0077);  // the database holds tokens: owner only
    std::unique_ptr<SQLite::Database> db;
    try {
      db = std::make_unique<SQLite::Database>(path, flags, 5000);
    } catch (...) {
      if (fresh) ::umask(old_mask);
      throw;
    }
    if (fresh) ::umask(old_mask);
    db->exec("PRAGMA foreign_keys = ON");
    {
      // Cheap check that the file is an SQLite database at all before anything is written.
      std::string qc = db->execAndGet("PRAGMA quick_check").getString();
      if (qc != "ok") {
        return make_error(ErrorCode::kStorage, "the database " + path + " is damaged: " + qc);
      }
      // FULL: a commit that says a job completed must survive a power cut; group commits keep
      // the number of WAL syncs small.
      db->exec("PRAGMA journal_mode = WAL");
      db->exec("PRAGMA synchronous = FULL");
      // After a checkpoint that reached the end of the WAL, the file is cut back to this size,
      // so one burst of writes does not leave a large WAL on disk for good.
      db->exec("PRAGMA journal_size_limit = " + std::to_string(kJournalSizeLimit));
      auto st = migrate(*db);
      if (!st) return make_error(st.error().code, path + ": " + st.error().message);
    }
    return std::unique_ptr<Store>(std::make_unique<TranslatedErrors>(
        std::make_unique<SqliteStore>(std::move(db), std::move(lock))));
  } catch (const SQLite::Exception& e) {
    return make_error(ErrorCode::kStorage, "cannot open the database " + path + ": " + e.what());
  }
}

}  // namespace fetchq::store
