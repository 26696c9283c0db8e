-- Alerts raised by trigger components on analysed frames. One row per alert; `ordinal` is its
-- place among the alerts one component raised on one frame, so a write tried again after a lost
-- reply adds nothing (the unique key). `detections` is the JSON of the detections that caused it.
CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    stream_id   TEXT NOT NULL,
    session     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    pts_ms      BIGINT NOT NULL,
    wallclock   BIGINT NOT NULL,
    component   TEXT NOT NULL,
    ordinal     BIGINT NOT NULL,
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    message     TEXT NOT NULL,
    detections  TEXT NOT NULL,
    UNIQUE (stream_id, session, seq, component, ordinal)
);

CREATE INDEX alerts_by_tenant ON alerts (tenant_id, id);
