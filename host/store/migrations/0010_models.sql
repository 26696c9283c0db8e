-- Tenant models: ONNX files a tenant uploads for its own components to load by name
-- (wasi-nn `load-by-name`), in its own namespace. Each upload of a name is a new version; the
-- newest is the one components load. The bytes are kept once per content hash
-- (`models/<sha256>.onnx` in the data directory). `signature` is the JSON of the model's inputs
-- and outputs as ONNX Runtime read them when the upload was checked.
CREATE TABLE models (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    signature   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    deleted_at  BIGINT,
    PRIMARY KEY (tenant_id, name, version)
);

CREATE INDEX models_by_hash ON models (sha256);
