-- Portable between SQLite and PostgreSQL: TEXT ids, BIGINT integers and millisecond timestamps,
-- DOUBLE PRECISION reals, no engine-specific types or defaults.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE streams (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    ended_at     BIGINT,
    video_codec  TEXT,
    width        BIGINT,
    height       BIGINT,
    fps          DOUBLE PRECISION,
    audio_codec  TEXT,
    sample_rate  BIGINT,
    channels     BIGINT,
    UNIQUE (tenant_id, name)
);

CREATE TABLE stream_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    stream_id   TEXT NOT NULL REFERENCES streams (id),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE segments (
    stream_id          TEXT NOT NULL REFERENCES streams (id),
    seq                BIGINT NOT NULL,
    duration_ms        BIGINT NOT NULL,
    program_date_time  BIGINT NOT NULL,
    bytes              BIGINT NOT NULL,
    discontinuity      BIGINT NOT NULL,
    removed_at         BIGINT,
    PRIMARY KEY (stream_id, seq)
);

CREATE INDEX segments_by_time ON segments (stream_id, program_date_time);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
