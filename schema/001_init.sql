-- fetchq schema 1: jobs, their tokens (kept apart) and the append-only event log.
CREATE TABLE jobs (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
  source             TEXT    NOT NULL,
  dest               TEXT    NOT NULL,
  priority           INTEGER NOT NULL DEFAULT 10,
  status             TEXT    NOT NULL DEFAULT 'waiting'
                     CHECK (status IN ('waiting','running','paused','completed','cancelled','error')),
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
                     CHECK (if_exists IN ('error','skip','overwrite','rename')),
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

-- "Next job by (priority, id)" walks this index only over waiting rows.
CREATE INDEX jobs_waiting ON jobs (priority, id) WHERE status = 'waiting';
CREATE INDEX jobs_status ON jobs (status, id);

CREATE TABLE tokens (
  job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  token  TEXT NOT NULL
);

CREATE TABLE events (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- only grows, even after rows are removed
  ts      TEXT    NOT NULL,
  job_id  INTEGER,
  type    TEXT    NOT NULL,
  payload TEXT    NOT NULL
);
CREATE INDEX events_job ON events (job_id, seq);
