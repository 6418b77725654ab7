-- fetchq schema 6: when the job's .part was created (ns since the epoch, from statx). File
-- systems such as ext4 give a freed inode number to the next file made, so a file put in the
-- place of a deleted .part can carry the recorded device and inode; its birth time differs.
-- NULL: the file system keeps no birth time, or the .part was recorded before schema 6.
ALTER TABLE jobs ADD COLUMN part_birth_ns INTEGER;
