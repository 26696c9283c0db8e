-- Tenant components, pipelines and roles.
--
-- Each upload of a name is a new version (1, 2, …) in the tenant's own namespace; the bytes are
-- kept once per content hash (`components/<sha256>.wasm` in the data directory). A deleted
-- version keeps its row (`deleted_at`), so its number is never given out again.
CREATE TABLE components (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    world       TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    deleted_at  BIGINT,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE INDEX components_by_hash ON components (sha256);

-- What runs, per tenant and scope ('' = the tenant's default for its streams, else a stream id)
-- and world: `stages` is the JSON list of {"name","version","config"} in order. No row: the
-- stream inherits the tenant's, the tenant the bundled defaults.
CREATE TABLE pipelines (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    scope       TEXT NOT NULL,
    world       TEXT NOT NULL,
    stages      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, scope, world)
);

-- API keys get a role: admin (keys, webhooks, components), editor (pipelines, brands, streams),
-- viewer (read and watch). Keys issued before roles existed could do everything: admin.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
