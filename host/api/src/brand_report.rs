//! `GET /api/v1/streams/{id}/brands`: the brand report of a stream — per brand, its screen time,
//! appearances, first and last sighting and share of the picture — from the stored results of
//! its analysed frames, as JSON or CSV. Every component's sightings of a brand count as one track
//! (the logo matcher, on-screen text, CLIP), a catalogue brand's aliases included; see
//! [`store::ScreenTime`] for how time is counted.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::detections::page_bounds;
use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BrandReportQuery {
    /// Frames analysed from (inclusive): RFC 3339 or Unix milliseconds. Default: the beginning.
    #[param(schema_with = crate::detections::time_bound)]
    pub from: Option<String>,
    /// Frames analysed before (exclusive): RFC 3339 or Unix milliseconds. Default: now and
    /// later.
    #[param(schema_with = crate::detections::time_bound)]
    pub to: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

pub use store::{BrandReport, BrandScreenTimeView};

/// The brand report of one stream.
#[utoipa::path(get, path = "/api/v1/streams/{id}/brands", tag = "analysis",
    params(("id" = String, Path, description = "stream id", max_length = 64), BrandReportQuery),
    responses(
        (status = 200, description = "The report: JSON, or CSV with `?format=csv` (one line per brand, the JSON fields as columns, components joined by `;`)",
            content((BrandReport = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream_brands(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<BrandReportQuery>,
) -> Result<Response, ApiError> {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::BadRequest("format must be json or csv".into())),
    };
    state
        .store
        .stream(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let (from, to, _) = page_bounds(&query.from, &query.to, &None, None)?;
    let report = state.store.brand_report(&tenant.id, &id, from, to).await?;
    if csv {
        let disposition = format!("attachment; filename=\"brands-{}.csv\"", report.stream);
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            report_csv(&report),
        )
            .into_response())
    } else {
        Ok(axum::Json(report).into_response())
    }
}

/// The report as CSV (RFC 4180): a header, then a line per brand.
fn report_csv(report: &BrandReport) -> String {
    let mut out = String::from(
        "brand,name,in_catalogue,screen_time_s,share_of_time,appearances,frames,first_seen,last_seen,first_pts_ms,last_pts_ms,share_of_area,components\r\n",
    );
    for b in &report.brands {
        let cells = [
            cell(&b.brand),
            cell(&b.name),
            b.in_catalogue.to_string(),
            format!("{:.3}", b.screen_time_s),
            format!("{:.4}", b.share_of_time),
            b.appearances.to_string(),
            b.frames.to_string(),
            b.first_seen.clone(),
            b.last_seen.clone(),
            b.first_pts_ms.to_string(),
            b.last_pts_ms.to_string(),
            format!("{:.4}", b.share_of_area),
            cell(&b.components.join(";")),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A text cell: quoted when it holds a comma, quote or line break; a cell a spreadsheet would
/// take for a formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`, so a brand name
/// a tenant typed never runs as one.
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(cell("acme"), "acme");
        assert_eq!(cell("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1+2"), "'-1+2");
        assert_eq!(cell("a\nb"), "\"a\nb\"");
    }
}
