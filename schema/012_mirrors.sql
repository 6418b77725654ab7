-- fetchq schema 12: other sources of a job's file (DownloadOptions::mirrors), in the order the
-- user gave them, joined by line feeds (no URL can hold one: queue::check_source_url refuses
-- control characters). NULL: none.
ALTER TABLE jobs ADD COLUMN mirrors TEXT;
