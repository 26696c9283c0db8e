//! Scene grade (bundled effect selector): a colour grade for the whole picture, chosen by the
//! scene. `looks` maps scenes (the `scene:<name>` labels `clip-brands` gives when its `scenes`
//! are set) to looks, e.g. `stadium=punchy,studio=warm,night=cool`; `look` is the look for any
//! other scene (default `neutral`: no grade). Looks: neutral, warm, cool, punchy, muted, mono.

use media_analyzer_sdk::effects::Selector;
use media_analyzer_sdk::{Detection, Effect, EffectKind, FrameInfo, setting};

struct SceneGrade;

/// `(temperature, tint, contrast, saturation, brightness)` of a look (the host's looks).
fn look(name: &str) -> Result<Option<[f32; 5]>, String> {
    Ok(Some(match name {
        "neutral" => return Ok(None),
        "warm" => [0.6, 0.0, 1.0, 1.1, 0.0],
        "cool" => [-0.6, 0.0, 1.0, 1.0, 0.0],
        "punchy" => [0.0, 0.0, 1.25, 1.3, 0.0],
        "muted" => [0.0, 0.0, 0.9, 0.6, 0.0],
        "mono" => [0.0, 0.0, 1.1, 0.0, 0.0],
        other => {
            return Err(format!(
                "unknown look '{other}' (neutral, warm, cool, punchy, muted, mono)"
            ));
        }
    }))
}

impl Selector for SceneGrade {
    fn select(
        _frame: FrameInfo,
        detections: Vec<Detection>,
        config: Vec<(String, String)>,
    ) -> Result<Vec<Effect>, String> {
        let default: String = setting(&config, "look", "neutral".to_string())?;
        let looks: String = setting(&config, "looks", String::new())?;
        let mut by_scene = Vec::new();
        for pair in looks.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (scene, name) = pair
                .split_once('=')
                .ok_or_else(|| format!("looks: '{pair}' is not scene=look"))?;
            look(name.trim())?;
            by_scene.push((scene.trim().to_lowercase(), name.trim().to_string()));
        }
        look(&default)?;
        // The most likely scene in this frame.
        let scene = detections
            .iter()
            .filter_map(|d| d.label.strip_prefix("scene:").map(|s| (s, d.score)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s.to_lowercase());
        let chosen = scene
            .and_then(|s| by_scene.iter().find(|(name, _)| *name == s))
            .map_or(default.as_str(), |(_, l)| l.as_str());
        Ok(look(chosen)?
            .map(
                |[temperature, tint, contrast, saturation, brightness]| Effect {
                    kind: EffectKind::ColourGrade,
                    region: None,
                    params: vec![
                        ("temperature".into(), temperature),
                        ("tint".into(), tint),
                        ("contrast".into(), contrast),
                        ("saturation".into(), saturation),
                        ("brightness".into(), brightness),
                    ],
                },
            )
            .into_iter()
            .collect())
    }
}

media_analyzer_sdk::effects::export_effect_selector!(SceneGrade with_types_in media_analyzer_sdk::effects);
