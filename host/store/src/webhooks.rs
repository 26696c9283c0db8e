//! Webhooks: where a tenant's events are delivered, with the signing secret and what the
//! deliveries did. Every read a tenant can trigger is scoped by tenant id.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, new_id, new_secret, now_ms};

/// Webhooks one tenant may have.
pub const MAX_WEBHOOKS: i64 = 16;

/// One stored webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `whk_…`
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    /// The event kinds delivered (`alert`, `stream`).
    pub events: Vec<String>,
    /// Signs each delivery; shown to the tenant once, when created.
    pub secret: String,
    pub created_at: i64,
    pub created_by: String,
    pub deliveries: DeliveryCounts,
}

/// What the deliveries to one webhook did, and the last attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Accepted by the endpoint (a 2xx answer).
    pub delivered: i64,
    /// Given up on after every attempt failed.
    pub failed: i64,
    /// Not attempted: the webhook's queue was full (its endpoint too slow for its events).
    pub dropped: i64,
    /// The last attempt's HTTP status (0: no answer) and its error ("" when it succeeded).
    pub last_status: i64,
    pub last_error: String,
    /// When the last attempt ended (Unix ms; 0: none yet).
    pub last_at: i64,
}

/// How one delivery ended, or (`Attempt`) how one of its attempts did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        status: u16,
    },
    /// An attempt failed; another follows.
    Attempt {
        status: u16,
        error: String,
    },
    /// The last attempt failed.
    Failed {
        status: u16,
        error: String,
    },
    Dropped,
}

const WEBHOOK_COLUMNS: &str = "id, tenant_id, url, events, secret, created_at, created_by, \
     delivered, failed, dropped, last_status, last_error, last_at";

fn webhook_from_row(r: &AnyRow) -> Result<Webhook> {
    let events: String = r.try_get(3)?;
    Ok(Webhook {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        url: r.try_get(2)?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        secret: r.try_get(4)?,
        created_at: r.try_get(5)?,
        created_by: r.try_get(6)?,
        deliveries: DeliveryCounts {
            delivered: r.try_get(7)?,
            failed: r.try_get(8)?,
            dropped: r.try_get(9)?,
            last_status: r.try_get(10)?,
            last_error: r.try_get(11)?,
            last_at: r.try_get(12)?,
        },
    })
}

impl Store {
    /// Adds a webhook with a new secret; `Conflict` when the tenant has [`MAX_WEBHOOKS`] already
    /// (checked in the same statement as the insert).
    pub async fn create_webhook(
        &self,
        tenant_id: &str,
        url: &str,
        events: &[String],
        created_by: &str,
    ) -> Result<Webhook> {
        let id = new_id("whk");
        let secret = new_secret("whsec");
        let done = sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, events, secret, created_at, created_by) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM webhooks WHERE tenant_id = $2) < $8",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(url)
        .bind(events.join(","))
        .bind(&secret)
        .bind(now_ms())
        .bind(created_by)
        .bind(MAX_WEBHOOKS)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a tenant may have at most {MAX_WEBHOOKS} webhooks; delete one first"
            )));
        }
        self.webhook(tenant_id, &id)
            .await?
            .ok_or(StoreError::NotFound("webhook"))
    }

    /// The tenant's webhooks, oldest first.
    pub async fn webhooks(&self, tenant_id: &str) -> Result<Vec<Webhook>> {
        sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(webhook_from_row)
        .collect()
    }

    /// One of the tenant's webhooks (`None` for another tenant's).
    pub async fn webhook(&self, tenant_id: &str, id: &str) -> Result<Option<Webhook>> {
        sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(webhook_from_row)
        .transpose()
    }

    /// Deletes one of the tenant's webhooks; whether it existed.
    pub async fn delete_webhook(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Counts a delivery's outcome on its webhook (nothing when the webhook is gone).
    pub async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<()> {
        let (counter, status, error) = match outcome {
            DeliveryOutcome::Dropped => {
                sqlx::query("UPDATE webhooks SET dropped = dropped + 1 WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                return Ok(());
            }
            DeliveryOutcome::Delivered { status } => ("delivered = delivered + 1, ", *status, ""),
            DeliveryOutcome::Failed { status, error } => {
                ("failed = failed + 1, ", *status, error.as_str())
            }
            // Another attempt follows: only the last attempt's outcome changes.
            DeliveryOutcome::Attempt { status, error } => ("", *status, error.as_str()),
        };
        sqlx::query(&format!(
            "UPDATE webhooks SET {counter}last_status = $2, last_error = $3, last_at = $4 \
             WHERE id = $1"
        ))
        .bind(id)
        .bind(i64::from(status))
        .bind(error)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
