-- The brand catalogue: a tenant's brands (`folded` is the name as detections carry it after
-- `brand:`: lower case, letters and digits only, so two names that would meet in one label are one
-- brand), their aliases and CLIP prompts (JSON lists), and their reference logos (files kept by
-- content hash, `logos/<sha256>.logo` in the data directory).
CREATE TABLE brands (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    folded      TEXT NOT NULL,
    name        TEXT NOT NULL,
    aliases     TEXT NOT NULL,
    prompts     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, folded)
);

CREATE TABLE brand_logos (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    brand       TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    format      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    FOREIGN KEY (tenant_id, brand) REFERENCES brands (tenant_id, folded)
);

CREATE INDEX brand_logos_by_tenant ON brand_logos (tenant_id, brand);
CREATE INDEX brand_logos_by_hash ON brand_logos (sha256);
