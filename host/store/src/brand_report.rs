//! The brand report of a stream — per brand, its screen time, appearances, first and last
//! sighting and share of the picture — assembled from the stored results of its analysed frames
//! and the tenant's brand catalogue. The API serves it (`GET /api/v1/streams/{id}/brands`) and
//! the archive stores it when a stream ends; both get the same document.

use serde::Serialize;
use utoipa::ToSchema;

use crate::{GAP_MS, Result, ScreenTimeReport, Store, fold_brand};

/// One brand's line in the report.
#[derive(Debug, Clone, Serialize, ToSchema)]
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

#[derive(Debug, Clone, Serialize, ToSchema)]
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

impl Store {
    /// The brand report of `stream_id` over the frames analysed in `from <= wallclock < to`
    /// (Unix ms): its brands as the tenant's catalogue names them, aliases counted as their
    /// brand. The caller has checked that the stream is the tenant's.
    pub async fn brand_report(
        &self,
        tenant_id: &str,
        stream_id: &str,
        from: i64,
        to: i64,
    ) -> Result<BrandReport> {
        let catalogue = self.brands(tenant_id).await?;
        let aliases: Vec<(String, String)> = catalogue
            .iter()
            .flat_map(|b| b.aliases.iter().map(|a| (fold_brand(a), b.folded.clone())))
            .collect();
        let found = if to > from {
            self.brand_screen_time(stream_id, from, to, &aliases)
                .await?
        } else {
            ScreenTimeReport::default()
        };
        let analysed = found.analysed_ms.max(1) as f64;
        Ok(BrandReport {
            stream: stream_id.to_string(),
            frames: found.frames,
            analysed_s: found.analysed_ms as f64 / 1000.0,
            gap_s: GAP_MS as f64 / 1000.0,
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
                        first_seen: bus::rfc3339_ms(b.first_seen),
                        last_seen: bus::rfc3339_ms(b.last_seen),
                        first_pts_ms: b.first_pts_ms,
                        last_pts_ms: b.last_pts_ms,
                        share_of_area: b.share_of_area,
                        components: b.components.into_iter().collect(),
                        brand: b.brand,
                    }
                })
                .collect(),
        })
    }
}
