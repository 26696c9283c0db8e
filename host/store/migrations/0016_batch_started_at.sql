-- When a batch job's latest attempt started (ms since the epoch): `started_at - queued_at` is the
-- time it waited in the queue, `finished_at - started_at` the time a worker spent on it.
ALTER TABLE analysis_jobs ADD COLUMN started_at BIGINT;
