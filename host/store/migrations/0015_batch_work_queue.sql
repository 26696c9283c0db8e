-- With a work queue engine (Redis Streams, Pub/Sub), a batch job is recorded here and then pushed
-- to the engine; `pushed_at` says it reached the engine. A job recorded but never pushed (the
-- engine was down, or the host stopped in between) is pushed again when an ingest host starts.
ALTER TABLE analysis_jobs ADD COLUMN pushed_at BIGINT;
