//! Sandbox test program: an effect-selector component (not a detector).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "media-analyzer:pipeline/effect-selector",
    generate_all,
});

use exports::media_analyzer::pipeline::effects::Guest;
use media_analyzer::pipeline::types::{Detection, Effect, FrameInfo};

struct Selector;

impl Guest for Selector {
    fn select(
        _frame: FrameInfo,
        _detections: Vec<Detection>,
        _config: Vec<(String, String)>,
    ) -> Result<Vec<Effect>, String> {
        Ok(Vec::new())
    }
}

export!(Selector);
