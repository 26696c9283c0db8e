//! `GET /api/v1/streams/{id}/brands`: the brand report of a stream — per brand, its screen time,
//! appearances, first and last sighting and share of the picture — from the stored results of
//! its analysed frames, as JSON or CSV. Every component's sightings of a brand count as one track
//! (the logo matcher, on-screen text, CLIP), a catalogue brand's aliases included; see
//! [`store::ScreenTime`] for how time is counted.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::detections::page_bounds;
use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::streams::rfc3339_ms;
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

/// One brand's line in the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrandScreenTimeView {
    /// The brand as detections name it (`brand:<brand>`): lower case, letters and digits.
    pub brand: String,
    /// Its name in the brand catalogue; the folded name when it is not in the catalogue (a
    /// brand found as on-screen text, say).
    pub name: String,
    /// Whether the brand is in the tenant's catalogue.
    pub in_catalogue: bool,
    /// Seconds on screen: from each sighting until the next analysed frame; sightings at most
    /// `gap_s` apart are one appearance and the time between counts, longer gaps do not.
    pub screen_time_s: f64,
    /// Screen time over the analysed time (0..1).
    pub share_of_time: f64,
    /// Times it came on screen.
    pub appearances: u64,
    /// Analysed frames it was seen on.
    pub frames: u64,
    /// When it was first and last seen (RFC 3339, when the frame was analysed).
    pub first_seen: String,
    pub last_seen: String,
    /// The same frames' presentation times on the stream's media clock (matches HLS), ms.
    pub first_pts_ms: i64,
    pub last_pts_ms: i64,
    /// The part of the picture it covered while on screen: the mean over the frames it was seen
    /// on of the area of the union of its boxes (0..1).
    pub share_of_area: f64,
    /// The components that found it.
    pub components: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandReport {
    pub stream: String,
    /// Analysed frames in the range.
    pub frames: u64,
    /// Media time the analysed frames cover, seconds (gaps in analysis over `gap_s` left out).
    pub analysed_s: f64,
    /// The longest gap between sightings that still counts as on screen, seconds.
    pub gap_s: f64,
    /// Most screen time first.
    pub brands: Vec<BrandScreenTimeView>,
}

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
    let catalogue = state.store.brands(&tenant.id).await?;
    let aliases: Vec<(String, String)> = catalogue
        .iter()
        .flat_map(|b| {
            b.aliases
                .iter()
                .map(|a| (store::fold_brand(a), b.folded.clone()))
        })
        .collect();
    let found = if to > from {
        state
            .store
            .brand_screen_time(&id, from, to, &aliases)
            .await?
    } else {
        store::ScreenTimeReport::default()
    };
    let analysed = found.analysed_ms.max(1) as f64;
    let report = BrandReport {
        stream: id,
        frames: found.frames,
        analysed_s: found.analysed_ms as f64 / 1000.0,
        gap_s: store::GAP_MS as f64 / 1000.0,
        brands: found
            .brands
            .into_iter()
            .map(|b| {
                let listed = catalogue.iter().find(|c| c.folded == b.brand);
                BrandScreenTimeView {
                    name: listed.map_or_else(|| b.brand.clone(), |c| c.name.clone()),
                    in_catalogue: listed.is_some(),
                    screen_time_s: b.screen_ms as f64 / 1000.0,
                    share_of_time: b.screen_ms as f64 / analysed,
                    appearances: b.appearances,
                    frames: b.frames,
                    first_seen: rfc3339_ms(b.first_seen),
                    last_seen: rfc3339_ms(b.last_seen),
                    first_pts_ms: b.first_pts_ms,
                    last_pts_ms: b.last_pts_ms,
                    share_of_area: b.share_of_area,
                    components: b.components.into_iter().collect(),
                    brand: b.brand,
                }
            })
            .collect(),
    };
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
