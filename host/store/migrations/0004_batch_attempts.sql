-- How many times the batch worker has started each job: a job that keeps stopping the worker (a
-- panic, a crash of the process) is marked failed after a few attempts instead of being retried
-- forever.
ALTER TABLE analysis_jobs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
