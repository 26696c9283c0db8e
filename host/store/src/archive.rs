//! The archive's queue (`serve --archive`): what an ingest host still has to copy to the archive.
//! Rows are written when a segment closes or a stream ends and deleted once the object is in the
//! archive; the archiver is woken by a signal and reads this table when it starts or after a
//! failed upload, so nothing queued is lost to an archive outage or a restart.

use sqlx::Row;

use crate::{Result, Store};

/// Most rows one read of the queue returns.
pub const ARCHIVE_BATCH: i64 = 256;

/// Most segments an archived run's playlist lists: 48 hours of 2 s segments.
pub const MAX_RUN_SEGMENTS: i64 = 86_400;

/// What an archive row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// A closed segment (`seq`: its sequence number).
    Segment,
    /// The brand report of one run of a stream (`seq`: when it went live, Unix ms).
    Report,
    /// The playlist of one run's segments, as VOD (`seq`: when it went live, Unix ms).
    Playlist,
}

impl ArchiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Segment => "segment",
            Self::Report => "report",
            Self::Playlist => "playlist",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "segment" => Some(Self::Segment),
            "report" => Some(Self::Report),
            "playlist" => Some(Self::Playlist),
            _ => None,
        }
    }
}

/// One object waiting to be archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveItem {
    pub tenant_id: String,
    pub stream_id: String,
    pub kind: ArchiveKind,
    /// A segment's sequence number, or when the stream went live (a report).
    pub seq: i64,
    /// A report or playlist: when the stream ended (it covers `seq..until_ms`); 0 for a segment.
    pub until_ms: i64,
    pub queued_at: i64,
    /// Failed uploads so far, and the latest one's error.
    pub attempts: i64,
    pub last_error: String,
}

impl Store {
    /// Queues `item` for `host`'s archiver; queuing the same object twice keeps the first row.
    pub async fn queue_archive(&self, host: &str, item: &ArchiveItem) -> Result<()> {
        sqlx::query(
            "INSERT INTO archive_queue (stream_id, kind, seq, tenant_id, host, until_ms, queued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (stream_id, kind, seq) DO NOTHING",
        )
        .bind(&item.stream_id)
        .bind(item.kind.as_str())
        .bind(item.seq)
        .bind(&item.tenant_id)
        .bind(host)
        .bind(item.until_ms)
        .bind(item.queued_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `host`'s queued objects, at most [`ARCHIVE_BATCH`]: those that failed least first (one
    /// object that keeps failing does not hold up the others), then the oldest.
    pub async fn archive_queue(&self, host: &str) -> Result<Vec<ArchiveItem>> {
        let rows = sqlx::query(
            "SELECT tenant_id, stream_id, kind, seq, until_ms, queued_at, attempts, last_error \
             FROM archive_queue WHERE host = $1 ORDER BY attempts, queued_at, stream_id, kind, seq LIMIT $2",
        )
        .bind(host)
        .bind(ARCHIVE_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get(2)?;
            // A kind this version does not know (written by a newer one) is left for it.
            let Some(kind) = ArchiveKind::parse(&kind) else {
                continue;
            };
            items.push(ArchiveItem {
                tenant_id: r.try_get(0)?,
                stream_id: r.try_get(1)?,
                kind,
                seq: r.try_get(3)?,
                until_ms: r.try_get(4)?,
                queued_at: r.try_get(5)?,
                attempts: r.try_get(6)?,
                last_error: r.try_get(7)?,
            });
        }
        Ok(items)
    }

    /// The segments `host`'s queue lists (what retention must keep until they are archived).
    pub async fn archive_queued_segments(&self, host: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT stream_id, seq FROM archive_queue WHERE host = $1 AND kind = 'segment'",
        )
        .bind(host)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The segments of `stream_id` that began in `from <= program date-time < to` (Unix ms),
    /// also those retention removed since, oldest first; at most [`MAX_RUN_SEGMENTS`].
    pub async fn run_segments(
        &self,
        stream_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<crate::SegmentRecord>> {
        let rows = sqlx::query(
            "SELECT seq, duration_ms, program_date_time, bytes, discontinuity FROM segments \
             WHERE stream_id = $1 AND program_date_time >= $2 AND program_date_time < $3 \
             ORDER BY seq LIMIT $4",
        )
        .bind(stream_id)
        .bind(from)
        .bind(to)
        .bind(MAX_RUN_SEGMENTS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::segment_record).collect()
    }

    /// How many objects `host` has queued, and when the oldest was queued.
    pub async fn archive_backlog(&self, host: &str) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query("SELECT COUNT(*), MIN(queued_at) FROM archive_queue WHERE host = $1")
            .bind(host)
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// The object is in the archive (or can never be: its segment is gone): its row goes.
    pub async fn archive_done(&self, item: &ArchiveItem) -> Result<()> {
        sqlx::query("DELETE FROM archive_queue WHERE stream_id = $1 AND kind = $2 AND seq = $3")
            .bind(&item.stream_id)
            .bind(item.kind.as_str())
            .bind(item.seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An upload failed: counted, with its error, on the row (which stays queued).
    pub async fn archive_failed(&self, item: &ArchiveItem, error: &str) -> Result<()> {
        let error: String = error.chars().take(1000).collect();
        sqlx::query(
            "UPDATE archive_queue SET attempts = attempts + 1, last_error = $4 \
             WHERE stream_id = $1 AND kind = $2 AND seq = $3",
        )
        .bind(&item.stream_id)
        .bind(item.kind.as_str())
        .bind(item.seq)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
