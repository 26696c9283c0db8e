-- One row per detection. Boxes are relative to the frame (0..1); pts_ms is the stream's media
-- clock (matches HLS), wallclock the Unix milliseconds when the frame was analysed.
CREATE TABLE detections (
    id          TEXT PRIMARY KEY,
    stream_id   TEXT NOT NULL REFERENCES streams (id),
    seq         BIGINT NOT NULL,
    pts_ms      BIGINT NOT NULL,
    wallclock   BIGINT NOT NULL,
    label       TEXT NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    x           DOUBLE PRECISION NOT NULL,
    y           DOUBLE PRECISION NOT NULL,
    w           DOUBLE PRECISION NOT NULL,
    h           DOUBLE PRECISION NOT NULL,
    component   TEXT NOT NULL
);

CREATE INDEX detections_by_time ON detections (stream_id, wallclock, id);
