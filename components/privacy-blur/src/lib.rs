//! Privacy blur (bundled effect selector): every detection labelled `face` (or any label in
//! `labels`, comma-separated) is blurred, over a box grown by `grow` (default 0.35 of its size on
//! each side: face detectors box the features tightly, hair and ears stay outside), and at any
//! score above `min-score` (default 0.3: a blurred non-face costs little, an unblurred face is
//! the failure). `style`: `gaussian` (default; radius half the box's smaller side, at least
//! 8 px) or `pixelate` (blocks of a sixth of it, at least 6 px).

use media_analyzer_sdk::effects::Selector;
use media_analyzer_sdk::{Bbox, Detection, Effect, EffectKind, FrameInfo, setting};

struct PrivacyBlur;

impl Selector for PrivacyBlur {
    fn select(
        frame: FrameInfo,
        detections: Vec<Detection>,
        config: Vec<(String, String)>,
    ) -> Result<Vec<Effect>, String> {
        let labels: String = setting(&config, "labels", "face".to_string())?;
        let labels: Vec<&str> = labels.split(',').map(str::trim).collect();
        let grow: f32 = setting(&config, "grow", 0.35f32)?;
        let min_score: f32 = setting(&config, "min-score", 0.3f32)?;
        let style: String = setting(&config, "style", "gaussian".to_string())?;
        if !(0.0..=1.0).contains(&grow) {
            return Err(format!("grow must be within 0..1, got {grow}"));
        }
        let pixelate = match style.as_str() {
            "gaussian" => false,
            "pixelate" => true,
            other => return Err(format!("style must be gaussian or pixelate, got '{other}'")),
        };
        let (fw, fh) = (frame.width.max(1) as f32, frame.height.max(1) as f32);
        Ok(detections
            .iter()
            .filter(|d| labels.contains(&d.label.as_str()) && d.score >= min_score)
            .map(|d| {
                let b = &d.box_;
                let region = Bbox {
                    x: b.x - b.w * grow,
                    y: b.y - b.h * grow,
                    w: b.w * (1.0 + 2.0 * grow),
                    h: b.h * (1.0 + 2.0 * grow),
                };
                let side = (region.w * fw).min(region.h * fh);
                let params = if pixelate {
                    vec![("pixelate".to_string(), (side / 6.0).max(6.0))]
                } else {
                    let radius = (side / 2.0).max(8.0);
                    vec![
                        ("radius".to_string(), radius),
                        ("feather".to_string(), radius / 2.0),
                    ]
                };
                Effect {
                    kind: EffectKind::Blur,
                    region: Some(region),
                    params,
                }
            })
            .collect())
    }
}

media_analyzer_sdk::effects::export_effect_selector!(PrivacyBlur with_types_in media_analyzer_sdk::effects);
