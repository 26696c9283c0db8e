//! Brand spotlight (bundled effect selector): where a brand of the tenant's catalogue appears
//! (`brand:<name>` detections from `brand-text`, `logo-matcher` or `clip-brands`, which look only
//! for the tenant's brands), dim the rest of the picture and outline the brand. `brands`
//! (comma-separated) narrows it to some of them; `min-score` (default 0.5), `dim` (0.4),
//! `outline` (pixels, 4) and `colour` (`#rrggbb`, default amber) style it.

use media_analyzer_sdk::effects::Selector;
use media_analyzer_sdk::{Detection, Effect, EffectKind, FrameInfo, setting};

struct BrandSpotlight;

fn colour(hex: &str) -> Result<[f32; 3], String> {
    let digits = hex.strip_prefix('#').unwrap_or(hex);
    let value = (digits.len() == 6)
        .then(|| u32::from_str_radix(digits, 16).ok())
        .flatten()
        .ok_or_else(|| format!("colour must be #rrggbb, got '{hex}'"))?;
    Ok([16, 8, 0].map(|shift| ((value >> shift) & 0xff) as f32 / 255.0))
}

impl Selector for BrandSpotlight {
    fn select(
        _frame: FrameInfo,
        detections: Vec<Detection>,
        config: Vec<(String, String)>,
    ) -> Result<Vec<Effect>, String> {
        let only: String = setting(&config, "brands", String::new())?;
        let only: Vec<String> = only
            .split(',')
            .map(|b| b.trim().to_lowercase())
            .filter(|b| !b.is_empty())
            .collect();
        let min_score: f32 = setting(&config, "min-score", 0.5f32)?;
        let dim: f32 = setting(&config, "dim", 0.4f32)?;
        let outline: f32 = setting(&config, "outline", 4.0f32)?;
        let [r, g, b] = colour(&setting(&config, "colour", "#ffc800".to_string())?)?;
        Ok(detections
            .iter()
            .filter(|d| d.score >= min_score)
            .filter(|d| {
                d.label.strip_prefix("brand:").is_some_and(|name| {
                    only.is_empty() || only.iter().any(|o| *o == name.to_lowercase())
                })
            })
            .map(|d| Effect {
                kind: EffectKind::Highlight,
                region: Some(d.box_),
                params: vec![
                    ("dim".into(), dim),
                    ("outline".into(), outline),
                    ("r".into(), r),
                    ("g".into(), g),
                    ("b".into(), b),
                    ("a".into(), 1.0),
                ],
            })
            .collect())
    }
}

media_analyzer_sdk::effects::export_effect_selector!(BrandSpotlight with_types_in media_analyzer_sdk::effects);
