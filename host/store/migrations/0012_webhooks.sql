-- Webhooks: endpoints a tenant's alert and stream events are POSTed to. `events` is a
-- comma-separated list (`alert`, `stream`). `secret` signs each delivery (HMAC-SHA256 of the
-- body), so it is kept as given, unlike API and stream keys (stored as hashes): the host needs it
-- to sign. The delivery counters and the last attempt's outcome are what the tenant sees.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    delivered   BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    dropped     BIGINT NOT NULL DEFAULT 0,
    last_status BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    last_at     BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id);
