-- Every change of a pipeline stage is kept: who made it, when, from what to what. A stage names
-- the change that set it, which is also what analysis reports in the `pipeline` event.
CREATE TABLE pipeline_changes (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    scope       TEXT NOT NULL,
    world       TEXT NOT NULL,
    -- The JSON stages before and after; NULL: nothing of its own (inherited).
    from_stages TEXT,
    to_stages   TEXT,
    at          BIGINT NOT NULL,
    by_key      TEXT NOT NULL
);

CREATE INDEX pipeline_changes_by_tenant ON pipeline_changes (tenant_id, at);

ALTER TABLE pipelines ADD COLUMN change_id TEXT NOT NULL DEFAULT '';
