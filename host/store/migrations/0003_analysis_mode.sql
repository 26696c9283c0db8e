-- Replay of detections by frame number (WebSocket ?since=SEQ), and per-stream analysis mode: 'realtime' (the newest decoded frame, live) or 'batch' (every Nth frame
-- of each closed HLS segment, through the queue below, which survives restarts).
ALTER TABLE streams ADD COLUMN analysis_mode TEXT NOT NULL DEFAULT 'realtime';
ALTER TABLE streams ADD COLUMN analysis_every BIGINT NOT NULL DEFAULT 1;

-- The batch queue: one job per closed segment of a stream in batch mode. state: queued | done | failed.
CREATE TABLE analysis_jobs (
    stream_id    TEXT NOT NULL REFERENCES streams (id),
    segment_seq  BIGINT NOT NULL,
    every        BIGINT NOT NULL,
    state        TEXT NOT NULL,
    queued_at    BIGINT NOT NULL,
    finished_at  BIGINT,
    frames       BIGINT,
    error        TEXT,
    PRIMARY KEY (stream_id, segment_seq)
);

CREATE INDEX analysis_jobs_by_state ON analysis_jobs (state, queued_at);

CREATE INDEX detections_by_seq ON detections (stream_id, seq);
