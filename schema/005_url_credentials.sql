-- fetchq schema 5: the password of a job's URL (user:password@host), kept apart like a token.
-- The job's source shows "***" in its place; only the transfer is given the secret.
CREATE TABLE url_credentials (
  job_id   INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  password TEXT NOT NULL
);
