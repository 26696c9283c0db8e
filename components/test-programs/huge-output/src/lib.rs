//! Sandbox test program: returns far more detections than allowed

use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let one = Detection {
            label: "x".repeat(16),
            score: 0.5,
            box_: media_analyzer_sdk::Bbox {
                x: 0.0,
                y: 0.0,
                w: 1.0,
                h: 1.0,
            },
            attributes: Vec::new(),
        };
        Ok(vec![one; 200_000])
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
