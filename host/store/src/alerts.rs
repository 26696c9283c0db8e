//! Alerts: what trigger components raised on a tenant's analysed frames, kept for the alerts API
//! (by time range, one stream or all, paged) and for replaying to viewers.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, new_id};

/// One alert, as stored and listed.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// `alr_{wallclock}_{random}`: ids sort by when the frame was analysed.
    pub id: String,
    pub stream_id: String,
    pub seq: i64,
    pub pts_ms: i64,
    /// When the frame was analysed (Unix ms).
    pub wallclock: i64,
    /// The trigger that raised it (`name`, or `name@version` for an upload).
    pub component: String,
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub message: String,
    pub detections: Vec<bus::Detection>,
}

/// The alerts of one frame, to store.
#[derive(Debug, Clone)]
pub struct FrameAlerts<'a> {
    pub tenant_id: &'a str,
    pub stream_id: &'a str,
    /// The publish session (Unix ms when it began): with `seq`, it names the frame.
    pub session: i64,
    pub seq: i64,
    pub pts_ms: i64,
    pub wallclock: i64,
    /// Per trigger, its alerts in the order it raised them.
    pub raised: &'a [(String, Vec<NewAlert>)],
}

/// One alert a trigger raised.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub rule: String,
    pub severity: String,
    pub message: String,
    pub detections: Vec<bus::Detection>,
}

/// A page of alerts, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPage {
    pub alerts: Vec<AlertRecord>,
    /// The last id of a full page: pass it as `after` for the next.
    pub next: Option<String>,
}

const ALERT_COLUMNS: &str =
    "id, stream_id, seq, pts_ms, wallclock, component, rule, severity, message, detections";

fn alert_from_row(r: &AnyRow) -> Result<AlertRecord> {
    let detections: String = r.try_get(9)?;
    Ok(AlertRecord {
        id: r.try_get(0)?,
        stream_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        pts_ms: r.try_get(3)?,
        wallclock: r.try_get(4)?,
        component: r.try_get(5)?,
        rule: r.try_get(6)?,
        severity: r.try_get(7)?,
        message: r.try_get(8)?,
        // Written by this store from valid values: unreadable JSON (a hand-edited row) lists none.
        detections: serde_json::from_str(&detections).unwrap_or_default(),
    })
}

impl Store {
    /// Stores a frame's alerts in one transaction and returns them as stored (with their ids).
    /// Writing the same frame's alerts again (a retry after a lost reply) adds nothing and
    /// returns those stored the first time.
    pub async fn store_alerts(&self, frame: &FrameAlerts<'_>) -> Result<Vec<AlertRecord>> {
        let mut tx = self.pool.begin().await?;
        let mut stored = Vec::new();
        for (component, alerts) in frame.raised {
            for (ordinal, alert) in alerts.iter().enumerate() {
                let id = format!("alr_{:013}_{}", frame.wallclock.max(0), &new_id("x")[2..]);
                let detections = serde_json::to_string(&alert.detections)
                    .map_err(|e| crate::StoreError::Invalid(format!("alert detections: {e}")))?;
                sqlx::query(
                    "INSERT INTO alerts (id, tenant_id, stream_id, session, seq, pts_ms, wallclock, \
                     component, ordinal, rule, severity, message, detections) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (stream_id, session, seq, component, ordinal) DO NOTHING",
                )
                .bind(&id)
                .bind(frame.tenant_id)
                .bind(frame.stream_id)
                .bind(frame.session)
                .bind(frame.seq)
                .bind(frame.pts_ms)
                .bind(frame.wallclock)
                .bind(component)
                .bind(ordinal as i64)
                .bind(&alert.rule)
                .bind(&alert.severity)
                .bind(&alert.message)
                .bind(&detections)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE stream_id = $1 AND session = $2 \
                     AND seq = $3 AND component = $4 AND ordinal = $5"
                ))
                .bind(frame.stream_id)
                .bind(frame.session)
                .bind(frame.seq)
                .bind(component)
                .bind(ordinal as i64)
                .fetch_one(&mut *tx)
                .await?;
                stored.push(alert_from_row(&row)?);
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The tenant's alerts analysed in `from..to` (Unix ms), of one stream or all, oldest
    /// first, after the id `after`, at most `limit` (1..=1000).
    pub async fn alerts(
        &self,
        tenant_id: &str,
        stream_id: Option<&str>,
        from: i64,
        to: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<AlertPage> {
        let limit = limit.clamp(1, 1000) as i64;
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 AND ($2 = '' OR stream_id = $2) \
             AND wallclock >= $3 AND wallclock < $4 AND id > $5 ORDER BY id LIMIT $6"
        ))
        .bind(tenant_id)
        .bind(stream_id.unwrap_or(""))
        .bind(from)
        .bind(to)
        .bind(after.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let (alerts, next) = crate::one_page(&rows, limit, alert_from_row, |a| &a.id)?;
        Ok(AlertPage { alerts, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand(name: &str) -> bus::Detection {
        bus::Detection {
            label: format!("brand:{name}"),
            score: 0.9,
            bbox: [0.1, 0.1, 0.2, 0.1],
            component: "logo-matcher".into(),
        }
    }

    #[tokio::test]
    async fn alerts_are_stored_once_per_frame_and_listed_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/s.db", dir.path().display()))
            .await
            .unwrap();
        let (a, b) = (
            store.create_tenant("a").await.unwrap().id,
            store.create_tenant("b").await.unwrap().id,
        );
        let raised = vec![(
            "brand-rules".to_string(),
            vec![
                NewAlert {
                    rule: "on-screen".into(),
                    severity: "info".into(),
                    message: "Acme on screen for 3.0 s".into(),
                    detections: vec![brand("Acme")],
                },
                NewAlert {
                    rule: "competitor".into(),
                    severity: "warning".into(),
                    message: "Rival appeared beside Acme".into(),
                    detections: vec![brand("Rival")],
                },
            ],
        )];
        let frame = |tenant_id, stream_id, seq: i64| FrameAlerts {
            tenant_id,
            stream_id,
            session: 1000,
            seq,
            pts_ms: seq * 100,
            wallclock: 2000 + seq,
            raised: &raised,
        };
        let first = store.store_alerts(&frame(&a, "str_a", 30)).await.unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].detections, vec![brand("Rival")]);
        // The same frame again (a retried write): nothing added, the same rows returned.
        let again = store.store_alerts(&frame(&a, "str_a", 30)).await.unwrap();
        assert_eq!(again, first);
        store.store_alerts(&frame(&a, "str_a", 40)).await.unwrap();
        store.store_alerts(&frame(&b, "str_b", 30)).await.unwrap();

        let all = store
            .alerts(&a, None, 0, i64::MAX, None, 1000)
            .await
            .unwrap();
        assert_eq!(all.alerts.len(), 4);
        assert!(all.alerts.iter().all(|x| x.stream_id == "str_a"));
        // Pages, and a time range that holds frame 40 only.
        let page = store
            .alerts(&a, Some("str_a"), 0, i64::MAX, None, 3)
            .await
            .unwrap();
        assert_eq!(page.alerts.len(), 3);
        let rest = store
            .alerts(&a, Some("str_a"), 0, i64::MAX, page.next.as_deref(), 3)
            .await
            .unwrap();
        assert_eq!((rest.alerts.len(), rest.next), (1, None));
        let late = store.alerts(&a, None, 2040, 2041, None, 10).await.unwrap();
        assert!(late.alerts.iter().all(|x| x.seq == 40));
        // Another tenant's stream id lists nothing for this tenant.
        let theirs = store
            .alerts(&a, Some("str_b"), 0, i64::MAX, None, 10)
            .await
            .unwrap();
        assert!(theirs.alerts.is_empty());
    }
}
