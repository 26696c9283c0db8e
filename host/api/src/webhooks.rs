//! `POST/GET /api/v1/webhooks`, `DELETE /api/v1/webhooks/{id}`: where the tenant's `alert` and
//! `stream` events are delivered (see the `webhooks` crate for how). The signing secret is shown
//! once, when the webhook is created. Admin keys only: a webhook sends the tenant's results out.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Admin, Caller};
use crate::error::{ApiPath, ErrorBody, JsonBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `https://…` (or `http://…`); by default only public addresses are reached.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Which events: `alert`, `stream` (live/offline).
    #[schema(min_items = 1, max_items = 2)]
    pub events: Vec<String>,
}

/// A webhook as created: with its secret, shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// Signs every delivery: `X-MediaAnalyzer-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// `whk_…`
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    /// The API key (id) that created it.
    pub created_by: String,
    pub deliveries: DeliveriesView,
}

/// What the deliveries did.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesView {
    /// Events the endpoint accepted (a 2xx answer).
    pub delivered: i64,
    /// Events given up on after every attempt failed.
    pub failed: i64,
    /// Events not attempted because the webhook's queue was full.
    pub dropped: i64,
    /// The last attempt: its HTTP status (absent when there was no answer), why it failed
    /// (absent when it succeeded) and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

impl From<store::Webhook> for WebhookView {
    fn from(w: store::Webhook) -> Self {
        let d = w.deliveries;
        let attempted = d.last_at > 0;
        Self {
            id: w.id,
            url: w.url,
            events: w.events,
            created_at: rfc3339_ms(w.created_at),
            created_by: w.created_by,
            deliveries: DeliveriesView {
                delivered: d.delivered,
                failed: d.failed,
                dropped: d.dropped,
                last_status: (attempted && d.last_status > 0)
                    .then(|| d.last_status.clamp(0, u16::MAX as i64) as u16),
                last_error: (attempted && !d.last_error.is_empty()).then_some(d.last_error),
                last_attempt_at: attempted.then(|| rfc3339_ms(d.last_at)),
            },
        }
    }
}

/// Adds a webhook for the tenant's events.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "account", request_body = WebhookRequest,
    responses((status = 201, body = CreatedWebhook),
        (status = 400, description = "not an http(s) URL, a URL with credentials, an address webhooks may not reach, or unknown events", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "not an admin key", body = ErrorBody),
        (status = 409, description = "the tenant has 16 webhooks", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(body): JsonBody<WebhookRequest>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let url = state
        .webhook_policy
        .check_url(&body.url)
        .map_err(ApiError::BadRequest)?;
    if body.events.is_empty() || body.events.len() > ::webhooks::EVENTS.len() {
        return Err(ApiError::BadRequest(
            "events: one or both of \"alert\", \"stream\"".into(),
        ));
    }
    let mut events = Vec::new();
    for event in &body.events {
        if !::webhooks::EVENTS.contains(&event.as_str()) {
            return Err(ApiError::BadRequest(
                "events: one or both of \"alert\", \"stream\"".into(),
            ));
        }
        if !events.contains(event) {
            events.push(event.clone());
        }
    }
    let created = state
        .store
        .create_webhook(&caller.tenant.id, url.as_str(), &events, &caller.key_id)
        .await?;
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, webhook = %created.id, ?events, "webhook created");
    let secret = created.secret.clone();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: created.into(),
            secret,
        }),
    ))
}

/// The tenant's webhooks and what their deliveries did (no secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "account",
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state.store.webhooks(&tenant.id).await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.into_iter().map(Into::into).collect(),
    }))
}

/// Deletes a webhook: nothing more is delivered to it, also of events already queued.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "account",
    params(("id" = String, Path, description = "webhook id (`whk_…`)", max_length = 64)),
    responses((status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "not one of the tenant's webhooks", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if id.len() > 64 || !state.store.delete_webhook(&caller.tenant.id, &id).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    tracing::info!(tenant = %caller.tenant.id, key = %caller.key_id, webhook = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}
