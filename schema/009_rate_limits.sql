-- fetchq schema 9: a job's own bandwidth limit, in bytes per second over all of its connections
-- together (`fetchq add --limit-rate`, the set_limits method). NULL: none of its own; the
-- daemon's limit for the whole queue (setting `limit-rate`) applies to every job either way,
-- and the tighter of the two holds.
ALTER TABLE jobs ADD COLUMN limit_rate INTEGER CHECK (limit_rate IS NULL OR limit_rate > 0);
