//! What components did on a tenant's streams: call counters and recent log lines, added to by the
//! analysing hosts in batches ([`Store::record_component_activity`]) and read by the tenant.

use sqlx::Row;

use crate::{Result, Store, new_id, now_ms};

/// Log lines kept per component (the newest).
pub const COMPONENT_LOG_LINES: i64 = 200;

/// What one component did since the last batch, on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityDelta {
    pub tenant_id: String,
    /// As detections name it: `name`, or `name@version`.
    pub component: String,
    pub calls: u64,
    pub failures: u64,
    /// Failures by running past the deadline (counted in `failures` too).
    pub deadlines: u64,
    pub call_us: u64,
    /// The latest failure: why, and when (Unix ms).
    pub last_error: Option<(String, i64)>,
    pub log: Vec<LogLine>,
}

/// One line a component logged (or its failure, as level `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: i64,
    pub stream_id: String,
    pub seq: i64,
    /// `debug`, `info`, `warn`, `error` or `stdout`.
    pub level: String,
    pub message: String,
}

/// A component's counters, all hosts together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStats {
    pub component: String,
    pub calls: i64,
    pub failures: i64,
    pub deadlines: i64,
    pub call_us: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub updated_at: i64,
}

/// A stored log line and the component (label) that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentLogLine {
    pub component: String,
    pub line: LogLine,
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `name` itself and its versions `name@N` (names are lowercase letters, digits and '-', so
/// they hold no LIKE wildcard).
const OF_NAME: &str = "(component = $2 OR component LIKE $2 || '@%')";

impl Store {
    /// Adds a batch of component activity, in one transaction; each component keeps its newest
    /// [`COMPONENT_LOG_LINES`] lines.
    pub async fn record_component_activity(&self, deltas: &[ActivityDelta]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for d in deltas {
            let (error, error_at) = match &d.last_error {
                Some((e, at)) => (Some(e.as_str()), Some(*at)),
                None => (None, None),
            };
            sqlx::query(
                "INSERT INTO component_activity (tenant_id, component, calls, failures, deadlines, call_us, \
                 last_error, last_error_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, component) DO UPDATE SET \
                 calls = component_activity.calls + excluded.calls, \
                 failures = component_activity.failures + excluded.failures, \
                 deadlines = component_activity.deadlines + excluded.deadlines, \
                 call_us = component_activity.call_us + excluded.call_us, \
                 last_error = COALESCE(excluded.last_error, component_activity.last_error), \
                 last_error_at = COALESCE(excluded.last_error_at, component_activity.last_error_at), \
                 updated_at = excluded.updated_at",
            )
            .bind(&d.tenant_id)
            .bind(&d.component)
            .bind(i64_of(d.calls))
            .bind(i64_of(d.failures))
            .bind(i64_of(d.deadlines))
            .bind(i64_of(d.call_us))
            .bind(error)
            .bind(error_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for (n, line) in d.log.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO component_log (id, tenant_id, component, at, n, stream_id, seq, level, message) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(new_id("log"))
                .bind(&d.tenant_id)
                .bind(&d.component)
                .bind(line.at)
                .bind(n as i64)
                .bind(&line.stream_id)
                .bind(line.seq)
                .bind(&line.level)
                .bind(&line.message)
                .execute(&mut *tx)
                .await?;
            }
            if !d.log.is_empty() {
                sqlx::query(
                    "DELETE FROM component_log WHERE tenant_id = $1 AND component = $2 AND id NOT IN \
                     (SELECT id FROM component_log WHERE tenant_id = $1 AND component = $2 \
                      ORDER BY at DESC, n DESC LIMIT $3)",
                )
                .bind(&d.tenant_id)
                .bind(&d.component)
                .bind(COMPONENT_LOG_LINES)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The counters of the tenant's component `name`, per version (and the bundled one of that
    /// name), all hosts together.
    pub async fn component_stats(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Vec<ComponentStats>> {
        let rows = sqlx::query(&format!(
            "SELECT component, calls, failures, deadlines, call_us, last_error, last_error_at, updated_at \
             FROM component_activity WHERE tenant_id = $1 AND {OF_NAME} ORDER BY component"
        ))
        .bind(tenant_id)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ComponentStats {
                    component: r.try_get(0)?,
                    calls: r.try_get(1)?,
                    failures: r.try_get(2)?,
                    deadlines: r.try_get(3)?,
                    call_us: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                    last_error_at: r.try_get(6)?,
                    updated_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// The newest log lines of the tenant's component `name` (all its versions), newest first.
    pub async fn component_log(
        &self,
        tenant_id: &str,
        name: &str,
        limit: u32,
    ) -> Result<Vec<ComponentLogLine>> {
        let rows = sqlx::query(&format!(
            "SELECT component, at, stream_id, seq, level, message FROM component_log \
             WHERE tenant_id = $1 AND {OF_NAME} ORDER BY at DESC, n DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ComponentLogLine {
                    component: r.try_get(0)?,
                    line: LogLine {
                        at: r.try_get(1)?,
                        stream_id: r.try_get(2)?,
                        seq: r.try_get(3)?,
                        level: r.try_get(4)?,
                        message: r.try_get(5)?,
                    },
                })
            })
            .collect()
    }
}
