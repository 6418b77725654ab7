-- fetchq schema 4: which file a job's .part is. Set (with the download path) when the job
-- creates the .part, before a byte of it is promised; a later attempt uses an existing .part
-- only when it is still that file (same device and inode, one link, a regular file). NULL: the
-- job has created none yet, or it comes from an older database (see the engine's legacy rule).
ALTER TABLE jobs ADD COLUMN part_dev INTEGER;
ALTER TABLE jobs ADD COLUMN part_ino INTEGER;
