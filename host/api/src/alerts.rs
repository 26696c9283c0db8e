//! `GET /api/v1/alerts`: what the tenant's trigger components raised, paged, by time range, for
//! one stream or all of them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::detections::page_bounds;
use crate::error::{ApiQuery, ErrorBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this stream's alerts (one of the tenant's stream ids); default: every stream.
    #[param(max_length = 64)]
    pub stream: Option<String>,
    /// Start of the range (inclusive, by when the frame was analysed): RFC 3339 or Unix
    /// milliseconds. Default: the beginning.
    #[param(schema_with = crate::detections::time_bound)]
    pub from: Option<String>,
    /// End of the range (exclusive): RFC 3339 or Unix milliseconds. Default: now and later.
    #[param(schema_with = crate::detections::time_bound)]
    pub to: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next` from the previous page.
    #[param(max_length = 64)]
    pub cursor: Option<String>,
}

/// A detection that caused an alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDetectionView {
    pub label: String,
    pub score: f32,
    /// `[x, y, w, h]` relative to the frame (0..1).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub component: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    pub stream: String,
    /// The frame that raised it: its number in decode order and presentation time (ms).
    pub seq: i64,
    pub pts_ms: i64,
    /// When the frame was analysed (RFC 3339).
    pub wallclock: String,
    /// The trigger component that raised it (`name`, or `name@version` for an upload).
    pub component: String,
    pub rule: String,
    #[schema(pattern = "^(info|warning|critical)$")]
    pub severity: String,
    pub message: String,
    pub detections: Vec<AlertDetectionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub alerts: Vec<AlertView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next: Option<String>,
}

/// The tenant's alerts, oldest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "analysis",
    params(AlertQuery),
    responses((status = 200, body = AlertPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`stream` is not one of the tenant's streams", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_alerts(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    if let Some(stream) = &query.stream {
        if stream.chars().count() > 64 {
            return Err(ApiError::BadRequest(
                "stream must be at most 64 characters".into(),
            ));
        }
        state
            .store
            .stream(&tenant.id, stream)
            .await?
            .ok_or(ApiError::NotFound("stream"))?;
    }
    let (from, to, limit) = page_bounds(&query.from, &query.to, &query.cursor, query.limit)?;
    if to <= from {
        return Ok(Json(AlertPage {
            alerts: Vec::new(),
            next: None,
        }));
    }
    let page = state
        .store
        .alerts(
            &tenant.id,
            query.stream.as_deref(),
            from,
            to,
            query.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok(Json(AlertPage {
        alerts: page
            .alerts
            .into_iter()
            .map(|a| AlertView {
                id: a.id,
                stream: a.stream_id,
                seq: a.seq,
                pts_ms: a.pts_ms,
                wallclock: rfc3339_ms(a.wallclock),
                component: a.component,
                rule: a.rule,
                severity: a.severity,
                message: a.message,
                detections: a
                    .detections
                    .into_iter()
                    .map(|d| AlertDetectionView {
                        label: d.label,
                        score: d.score,
                        bbox: d.bbox,
                        component: d.component,
                    })
                    .collect(),
            })
            .collect(),
        next: page.next,
    }))
}
