-- fetchq schema 11: what each segment has written, not only what is durable. `written` is the
-- bytes from the segment's start that reached the .part (written, not synced) as of the job's
-- last progress report. The page cache keeps them through a crash of the process, so a rerun in
-- the boot of the job's checkpoint (jobs.checkpoint_boot_id) resumes each segment from
-- MAX(durable, written), and after a reboot from `durable` only, as a single connection does
-- with its `bytes`.
ALTER TABLE segments ADD COLUMN written INTEGER NOT NULL DEFAULT 0
  CHECK (written >= 0 AND written <= end_byte - start_byte);
