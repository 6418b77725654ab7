-- fetchq schema 13: which source the job's etag and last_modified came from. NULL: the job's own
-- URL; else one of its mirrors (as in the mirrors column), which a resume then asks first, with
-- If-Range, so that a file begun from a mirror after its source failed resumes from that mirror.
ALTER TABLE jobs ADD COLUMN validator_url TEXT;
