-- fetchq schema 8: request options of a job, sent with every request of its transfer (the
-- first, each segment's, each resume's).
-- headers: the job's request headers as shown, one "Name: value" line each, joined by a line
-- feed (a header can hold none); a secret header (Authorization, Proxy-Authorization, Cookie)
-- shows "Name: <secret>" in its place. NULL: none.
ALTER TABLE jobs ADD COLUMN headers TEXT;
-- user_agent: the job's own User-Agent; NULL: fetchq's.
ALTER TABLE jobs ADD COLUMN user_agent TEXT;
-- The secret headers themselves, kept apart like a token: their "Name: value" lines in the order
-- of the <secret> lines of jobs.headers, joined by line feeds. Only the transfer is given them.
CREATE TABLE header_secrets (
  job_id  INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  headers TEXT NOT NULL
);
