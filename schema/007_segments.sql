-- fetchq schema 7: segmented downloads. A big file may be fetched over several connections at
-- once, each writing its own byte range of the one .part. The segment map is what a restart
-- resumes from: for each range [start_byte, end_byte) of the file, how many bytes from its start
-- are durable (fdatasync'd before the row was committed, in the checkpoint's transaction and
-- fenced by the job's attempt). No rows: the job is not segmented (one connection, resumed
-- from checkpoint_bytes as before). Forgotten when the job completes, restarts from zero or is
-- cancelled.
CREATE TABLE segments (
  job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  start_byte  INTEGER NOT NULL CHECK (start_byte >= 0),
  end_byte    INTEGER NOT NULL CHECK (end_byte > start_byte),
  durable     INTEGER NOT NULL DEFAULT 0 CHECK (durable >= 0 AND durable <= end_byte - start_byte),
  PRIMARY KEY (job_id, start_byte)
) WITHOUT ROWID;
-- How many connections the job may use for one file: NULL takes the daemon's default
-- (setting `connections`), 1 keeps the file on one connection.
ALTER TABLE jobs ADD COLUMN connections INTEGER CHECK (connections IS NULL OR connections BETWEEN 1 AND 16);
