//! Logos: the tenant's reference logos (its brand catalogue, or `analyze --logos DIR`), found by
//! the host's native matcher, which this component reaches as the graph `logos`. The host
//! prepares the frame at most 720 rows high (logos at 5 % of a 1080p frame are still 36 px tall
//! there); each logo found is a `brand:<name>` detection with its box, the name folded as
//! `brand-text` folds it (lower case, letters and digits), so both agree on a brand.
//!
//! Settings: `min-score` (default 0.5).

use media_analyzer_sdk::{
    self as sdk, Bbox, ChannelOrder, Detection, Frame, Layout, Resize, TensorSpec,
};
use postprocess::ocr::fold;

/// The frame's height as sent to the matcher, at most.
const WORK_HEIGHT: u32 = 720;

struct LogoMatcher;

impl sdk::Detect for LogoMatcher {
    fn detect(frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let min_score: f32 = sdk::setting(&config, "min-score", 0.5)?;
        let info = frame.info();
        let height = info.height.clamp(1, WORK_HEIGHT);
        let width = (info.width as u64 * height as u64)
            .div_ceil(info.height.max(1) as u64)
            .clamp(1, 2048) as u32;
        let spec = TensorSpec {
            width,
            height,
            layout: Layout::Nhwc,
            channels: ChannelOrder::Rgb,
            resize: Resize::Stretch,
            mean: (0.0, 0.0, 0.0),
            std: (1.0, 1.0, 1.0),
        };
        let (input, _) = frame.tensor(spec)?;
        let outputs = sdk::Model::load("logos")?.compute(vec![("frame".to_string(), input)])?;
        let matches = outputs.values("matches")?;
        let names = String::from_utf8(outputs.bytes("brands")?)
            .map_err(|_| "brand names are not UTF-8".to_string())?;
        let brands: Vec<&str> = names.split('\n').collect();
        Ok(matches
            .chunks_exact(6)
            .filter(|m| m[1] >= min_score)
            .filter_map(|m| {
                let brand = brands.get(m[0] as usize)?;
                Some(Detection {
                    label: format!("brand:{}", fold(brand)),
                    score: m[1],
                    box_: Bbox {
                        x: m[2],
                        y: m[3],
                        w: m[4],
                        h: m[5],
                    },
                    attributes: vec![("brand".into(), brand.to_string())],
                })
            })
            .collect())
    }
}

media_analyzer_sdk::export_detector!(LogoMatcher with_types_in media_analyzer_sdk);
