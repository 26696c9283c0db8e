//! Brand rules (the bundled trigger): turns `brand:<name>` detections (from `brand-text`,
//! `logo-matcher`, `clip-brands`) into alerts.
//!
//! - `on-screen`: a brand has been on screen for `min-seconds` (default 3) — once per appearance,
//!   and not again for that brand within `cooldown-seconds` (default 60).
//! - `competitor`: a brand listed in `competitors` appears while one of ours is on screen
//!   (cooldown likewise, per competitor).
//!
//! An appearance ends when the brand is not seen for more than `gap-seconds` (default 1).
//! `brands` (comma-separated, default: every brand but the competitors) are ours; detections
//! under `min-score` (default 0.5) are ignored. Times are the frames' presentation times, so a
//! stalled or skipped frame does not stretch an appearance. State is kept per stream and brand.
//!
//! The rules themselves are `brand-rules-core`, shared with the Spin Redis component
//! `spin-brand-rules`; this component brings the host's detections and its `state` interface.

use brand_rules_core::{Found, Severity as Level, State};
use media_analyzer_sdk::trigger::{Rules, state};
use media_analyzer_sdk::{Alert, Detection, FrameInfo, Severity};

struct BrandRules;

/// A [`Detection`] as the rules see it.
#[derive(Clone)]
struct Sighting(Detection);

impl Found for Sighting {
    fn label(&self) -> &str {
        &self.0.label
    }
    fn score(&self) -> f32 {
        self.0.score
    }
}

/// The host's `state` interface.
struct HostState;

impl State for HostState {
    fn get(&mut self, key: &str) -> Option<String> {
        state::get(key)
    }
    fn set(&mut self, key: &str, value: Option<&str>) {
        state::set(key, value);
    }
}

impl Rules for BrandRules {
    fn on_detections(
        frame: FrameInfo,
        detections: Vec<Detection>,
        config: Vec<(String, String)>,
    ) -> Result<Vec<Alert>, String> {
        let found = detections.into_iter().map(Sighting).collect();
        let fired = brand_rules_core::on_detections(
            &frame.stream,
            frame.pts_ms,
            found,
            &config,
            &mut HostState,
        )?;
        Ok(fired
            .into_iter()
            .map(|f| Alert {
                rule: f.rule.into(),
                severity: match f.severity {
                    Level::Info => Severity::Info,
                    Level::Warning => Severity::Warning,
                },
                message: f.message,
                detections: f.detections.into_iter().map(|d| d.0).collect(),
            })
            .collect())
    }
}

media_analyzer_sdk::trigger::export_trigger!(BrandRules with_types_in media_analyzer_sdk::trigger);
