-- fetchq schema 10: where a job's expected sha256 came from. NULL: from the user (--sha256) or
-- there is none; else the response header that stated it ('Repr-Digest', 'Digest',
-- 'X-Linked-Etag'), in which case `sha256` holds the server's digest of the file and is checked
-- like the user's before the file is kept.
ALTER TABLE jobs ADD COLUMN sha256_from TEXT;
