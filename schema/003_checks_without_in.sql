-- fetchq schema 3: the jobs table again, with the same rules written without IN lists.
-- SQLite checks "x IN ('a', 'b', ...)" with a temporary table built for every row, which made
-- an insert of a job cost more than twice what it does with comparisons joined by OR. Run with
-- foreign keys off (see migrate()), so dropping the old table leaves the tokens in place.
CREATE TABLE jobs_new (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
  source             TEXT    NOT NULL,
  dest               TEXT    NOT NULL,
  priority           INTEGER NOT NULL DEFAULT 10,
  status             TEXT    NOT NULL DEFAULT 'waiting'
                     CHECK (status = 'waiting' OR status = 'running' OR status = 'paused' OR
                            status = 'completed' OR status = 'cancelled' OR status = 'error'),
  download_path      TEXT,
  bytes              INTEGER NOT NULL DEFAULT 0,
  total_bytes        INTEGER NOT NULL DEFAULT 0,
  error_type         TEXT,
  error              TEXT,
  created_at         TEXT    NOT NULL,
  job_started        TEXT,
  job_ended          TEXT,
  cancelled          INTEGER NOT NULL DEFAULT 0,
  attempts           INTEGER NOT NULL DEFAULT 0,
  dest_is_dir        INTEGER NOT NULL DEFAULT 0,
  if_exists          TEXT    NOT NULL DEFAULT 'error'
                     CHECK (if_exists = 'error' OR if_exists = 'skip' OR if_exists = 'overwrite' OR
                            if_exists = 'rename'),
  sha256             TEXT,
  -- Resume state: bytes known to be on disk (fdatasync'd), and the boot in which the .part was
  -- last written: in that same boot the page cache survived and the file's length is trusted.
  checkpoint_bytes   INTEGER NOT NULL DEFAULT 0,
  checkpoint_boot_id TEXT,
  etag               TEXT,
  last_modified      TEXT,
  -- Retry state: earliest start (unix ms) and failures since the last progress.
  not_before_ms      INTEGER NOT NULL DEFAULT 0,
  failures           INTEGER NOT NULL DEFAULT 0,
  failing_since_ms   INTEGER,  -- first failure since the last progress (unix ms)
  -- Most bytes any attempt reached: only going past it counts as progress for retries.
  best_bytes         INTEGER NOT NULL DEFAULT 0,
  -- Size of the finished, fsync'd .part, recorded just before it is renamed into place: after a
  -- crash between the rename and the commit, a file of this size and no .part is the job's own.
  sealed_bytes       INTEGER
);

INSERT INTO jobs_new (
  id, source, dest, priority, status, download_path, bytes, total_bytes, error_type, error,
  created_at, job_started, job_ended, cancelled, attempts, dest_is_dir, if_exists, sha256,
  checkpoint_bytes, checkpoint_boot_id, etag, last_modified, not_before_ms, failures,
  failing_since_ms, best_bytes, sealed_bytes)
SELECT
  id, source, dest, priority, status, download_path, bytes, total_bytes, error_type, error,
  created_at, job_started, job_ended, cancelled, attempts, dest_is_dir, if_exists, sha256,
  checkpoint_bytes, checkpoint_boot_id, etag, last_modified, not_before_ms, failures,
  failing_since_ms, best_bytes, sealed_bytes
FROM jobs;
-- Ids are never reused: the new table goes on from the old one's counter, not from its largest id.
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_new', seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX jobs_waiting ON jobs (priority, id) WHERE status = 'waiting';
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_retry ON jobs (not_before_ms) WHERE status = 'waiting' AND not_before_ms > 0;
