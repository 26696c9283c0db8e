-- What each component did on a tenant's streams, for the tenant to see: counters (added to by the
-- analysing hosts every few seconds) and its latest log lines (the newest 200 per component are
-- kept). `component` is as detections name it: `name`, or `name@version` for an upload.
CREATE TABLE component_activity (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    component     TEXT NOT NULL,
    calls         BIGINT NOT NULL,
    failures      BIGINT NOT NULL,
    deadlines     BIGINT NOT NULL,
    -- Time spent in its calls, microseconds.
    call_us       BIGINT NOT NULL,
    last_error    TEXT,
    last_error_at BIGINT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, component)
);

CREATE TABLE component_log (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    component   TEXT NOT NULL,
    at          BIGINT NOT NULL,
    -- Orders lines of the same millisecond.
    n           BIGINT NOT NULL,
    stream_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL
);

CREATE INDEX component_log_by_component ON component_log (tenant_id, component, at);
