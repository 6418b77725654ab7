-- fetchq schema 14: no event seq is given twice, also after a power cut. A power cut may take
-- back the events of commits that waited for no disk sync, and the sequence with them. A store
-- that starts in a boot other than the last one noted here skips seqs first (as many as such
-- commits may hold) and notes the skip, so that the event log's retention counts events, not
-- seqs. The newest row names the boot that appends events now.
CREATE TABLE event_fences (
  boot_id   TEXT    NOT NULL,  -- the boot that appended the events after this fence
  after_seq INTEGER NOT NULL,  -- the last seq before the fence
  skipped   INTEGER NOT NULL   -- seqs skipped after after_seq (0: none)
);
