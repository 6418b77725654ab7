-- Finds the next retry time without walking every waiting job: only jobs that wait for a
-- retry have not_before_ms > 0, and they are few.
CREATE INDEX jobs_retry ON jobs (not_before_ms) WHERE status = 'waiting' AND not_before_ms > 0;
