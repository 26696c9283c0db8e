//! Sandbox test program: panics (a Wasm trap)

use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let values: Vec<u32> = std::hint::black_box(Vec::new());
        Ok(vec![Detection {
            label: values[3].to_string(),
            score: 1.0,
            box_: media_analyzer_sdk::Bbox {
                x: 0.0,
                y: 0.0,
                w: 1.0,
                h: 1.0,
            },
            attributes: Vec::new(),
        }])
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
