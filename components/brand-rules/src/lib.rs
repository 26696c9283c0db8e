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

use media_analyzer_sdk::trigger::{Rules, state};
use media_analyzer_sdk::{self as sdk, Alert, Detection, FrameInfo, Severity};

struct BrandRules;

/// One brand's appearance on one stream, as kept in state: `first last alerted` (ms; `alerted`
/// is when this brand last raised an alert, or -1).
#[derive(Clone, Copy)]
struct Seen {
    first: i64,
    last: i64,
    alerted: i64,
    /// Whether this appearance has raised its alert.
    done: bool,
}

impl Seen {
    fn load(key: &str) -> Option<Seen> {
        let text = state::get(key)?;
        let mut parts = text.split(' ').map(|p| p.parse::<i64>().ok());
        Some(Seen {
            first: parts.next()??,
            last: parts.next()??,
            alerted: parts.next()??,
            done: parts.next()?? == 1,
        })
    }

    fn store(&self, key: &str) {
        state::set(
            key,
            Some(&format!(
                "{} {} {} {}",
                self.first,
                self.last,
                self.alerted,
                i64::from(self.done)
            )),
        );
    }
}

fn list(config: &[(String, String)], key: &str) -> Vec<String> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

impl Rules for BrandRules {
    fn on_detections(
        frame: FrameInfo,
        detections: Vec<Detection>,
        config: Vec<(String, String)>,
    ) -> Result<Vec<Alert>, String> {
        let min_on_screen = ms(sdk::setting(&config, "min-seconds", 3.0)?);
        let cooldown = ms(sdk::setting(&config, "cooldown-seconds", 60.0)?);
        let gap = ms(sdk::setting(&config, "gap-seconds", 1.0)?);
        let min_score: f32 = sdk::setting(&config, "min-score", 0.5)?;
        let (ours, competitors) = (list(&config, "brands"), list(&config, "competitors"));
        let is_ours = |b: &str| {
            !competitors.iter().any(|c| c == b) && (ours.is_empty() || ours.iter().any(|o| o == b))
        };

        // This frame's brands (matched in lowercase, named as first found), with their detections.
        let mut brands: Vec<(String, String, Vec<Detection>)> = Vec::new();
        for d in detections.into_iter().filter(|d| d.score >= min_score) {
            let Some(name) = d.label.strip_prefix("brand:").map(str::to_string) else {
                continue;
            };
            let brand = name.to_lowercase();
            match brands.iter_mut().find(|(b, _, _)| *b == brand) {
                Some((_, _, found)) => found.push(d),
                None => brands.push((brand, name, vec![d])),
            }
        }

        let now = frame.pts_ms;
        let key = |brand: &str| format!("{}/{brand}", frame.stream);
        let mut alerts = Vec::new();
        let mut ours_on_screen = Vec::new();
        for (brand, name, found) in &brands {
            let k = key(brand);
            let mut seen = match Seen::load(&k) {
                // The same appearance, unless it was away for longer than the gap (or time went
                // back: a new publish session).
                Some(s) if now >= s.last && now - s.last <= gap => Seen { last: now, ..s },
                Some(s) => Seen {
                    first: now,
                    last: now,
                    done: false,
                    ..s
                },
                None => Seen {
                    first: now,
                    last: now,
                    alerted: -1,
                    done: false,
                },
            };
            let cooled = seen.alerted < 0 || now < seen.alerted || now - seen.alerted >= cooldown;
            if is_ours(brand) {
                ours_on_screen.push(name.clone());
                if !seen.done && now - seen.first >= min_on_screen && cooled {
                    seen.done = true;
                    seen.alerted = now;
                    alerts.push(Alert {
                        rule: "on-screen".into(),
                        severity: Severity::Info,
                        message: format!(
                            "{name} on screen for {:.1} s",
                            (now - seen.first) as f64 / 1000.0
                        ),
                        detections: found.clone(),
                    });
                }
            }
            seen.store(&k);
        }
        for (brand, name, found) in &brands {
            if !competitors.iter().any(|c| c == brand) || ours_on_screen.is_empty() {
                continue;
            }
            let k = format!("{}#competitor", key(brand));
            let last: i64 = state::get(&k).and_then(|v| v.parse().ok()).unwrap_or(-1);
            if last < 0 || now < last || now - last >= cooldown {
                state::set(&k, Some(&now.to_string()));
                alerts.push(Alert {
                    rule: "competitor".into(),
                    severity: Severity::Warning,
                    message: format!("{name} appeared beside {}", ours_on_screen.join(", ")),
                    detections: found.clone(),
                });
            }
        }
        Ok(alerts)
    }
}

media_analyzer_sdk::trigger::export_trigger!(BrandRules with_types_in media_analyzer_sdk::trigger);
