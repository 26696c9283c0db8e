-- Nothing stored is lost or duplicated.
--
-- Batch jobs are claimed with a lease: `lease_owner` (the host that runs it) until `leased_until`
-- (Unix ms), renewed while the job runs; a job whose lease ran out (its host crashed) can be
-- claimed again. `host` is the ingest host that has the segment file on its disk (NULL: any host
-- can read it), so a host never claims a segment it cannot open.
ALTER TABLE analysis_jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE analysis_jobs ADD COLUMN leased_until BIGINT;
ALTER TABLE analysis_jobs ADD COLUMN host TEXT;

-- One row per analysed frame and component whose results are stored (with or without
-- detections): the key that makes storing a frame's results idempotent. `session` tells a
-- stream's publish sessions apart (frame numbers start again at 0 in each): the Unix ms at which
-- the session began.
CREATE TABLE frame_results (
    stream_id   TEXT NOT NULL REFERENCES streams (id),
    session     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    component   TEXT NOT NULL,
    pts_ms      BIGINT NOT NULL,
    wallclock   BIGINT NOT NULL,
    detections  BIGINT NOT NULL,
    PRIMARY KEY (stream_id, session, seq, component)
);

CREATE INDEX frame_results_by_time ON frame_results (wallclock);
