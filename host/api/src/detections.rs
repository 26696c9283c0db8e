//! `GET /api/v1/streams/{id}/detections`: what the analysis found, paged, by time range.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::streams::rfc3339_ms;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DetectionQuery {
    /// Start of the range (inclusive): RFC 3339 or Unix milliseconds. Default: the beginning.
    #[param(schema_with = time_bound)]
    pub from: Option<String>,
    /// End of the range (exclusive): RFC 3339 or Unix milliseconds. Default: now and later.
    /// A range that ends where or before it starts is empty.
    #[param(schema_with = time_bound)]
    pub to: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next` from the previous page.
    #[param(max_length = 64)]
    pub cursor: Option<String>,
}

/// `from` and `to` in the OpenAPI document: a date-time or Unix milliseconds (at most 64 bytes).
pub(crate) fn time_bound() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .max_length(Some(64)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(i64::MIN as f64))
                .maximum(Some(i64::MAX as f64)),
        )
        .build()
        .into()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DetectionView {
    pub id: String,
    /// Frame number in decode order.
    pub seq: i64,
    /// Presentation time on the stream's media clock (matches HLS), milliseconds.
    pub pts_ms: i64,
    /// When the frame was analysed (RFC 3339).
    pub wallclock: String,
    pub label: String,
    pub score: f32,
    /// `[x, y, w, h]` relative to the frame (0..1).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub component: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DetectionPage {
    pub detections: Vec<DetectionView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next: Option<String>,
}

fn parse_time(field: &str, value: Option<&str>, default: i64) -> Result<i64, ApiError> {
    let Some(v) = value else { return Ok(default) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    OffsetDateTime::parse(v, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| ApiError::BadRequest(format!("{field} must be RFC 3339 or Unix milliseconds")))
}

/// A paged listing's `from`, `to` (Unix ms; defaults: all time) and `limit` (default 100),
/// checked: the time bounds and `cursor` at most 64 characters, `limit` 1..=1000.
pub(crate) fn page_bounds(
    from: &Option<String>,
    to: &Option<String>,
    cursor: &Option<String>,
    limit: Option<u32>,
) -> Result<(i64, i64, u32), ApiError> {
    for (field, value) in [("from", from), ("to", to), ("cursor", cursor)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 64) {
            return Err(ApiError::BadRequest(format!(
                "{field} must be at most 64 characters"
            )));
        }
    }
    let from = parse_time("from", from.as_deref(), 0)?;
    let to = parse_time("to", to.as_deref(), i64::MAX)?;
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1..=1000".into()));
    }
    Ok((from, to, limit))
}

/// Detections of one stream, oldest first.
#[utoipa::path(get, path = "/api/v1/streams/{id}/detections", tag = "analysis",
    params(("id" = String, Path, description = "stream id", max_length = 64), DetectionQuery),
    responses((status = 200, body = DetectionPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_detections(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DetectionQuery>,
) -> Result<Json<DetectionPage>, ApiError> {
    state
        .store
        .stream(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let (from, to, limit) = page_bounds(&query.from, &query.to, &query.cursor, query.limit)?;
    if to <= from {
        // An empty range: nothing in it.
        return Ok(Json(DetectionPage {
            detections: Vec::new(),
            next: None,
        }));
    }
    let page = state
        .store
        .detections(&id, from, to, query.cursor.as_deref(), limit)
        .await?;
    Ok(Json(DetectionPage {
        detections: page
            .detections
            .into_iter()
            .map(|d| DetectionView {
                id: d.id,
                seq: d.seq,
                pts_ms: d.pts_ms,
                wallclock: rfc3339_ms(d.wallclock),
                label: d.detection.label,
                score: d.detection.score,
                bbox: d.detection.bbox,
                component: d.detection.component,
            })
            .collect(),
        next: page.next,
    }))
}
