-- Objects waiting to go to the archive (`serve --archive`): a closed segment, or a stream's brand
-- report once the stream ended. A row is written before the upload is tried and deleted once the
-- object is in the archive, so an archive that is down, or a host that restarts, loses nothing:
-- the rows are uploaded when the archive answers again. Retention keeps a segment on disk while
-- it has a row here. `host`: the ingest host whose disk holds the segment (it uploads it).
CREATE TABLE archive_queue (
    stream_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    -- segment: its sequence number; report: when the stream went live (Unix ms).
    seq         BIGINT NOT NULL,
    tenant_id   TEXT NOT NULL,
    host        TEXT NOT NULL,
    -- report: when the stream ended (Unix ms); the report covers [seq, until_ms).
    until_ms    BIGINT NOT NULL DEFAULT 0,
    queued_at   BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (stream_id, kind, seq)
);

CREATE INDEX archive_queue_by_host ON archive_queue (host, queued_at);
