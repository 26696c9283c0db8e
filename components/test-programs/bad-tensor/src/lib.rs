//! Sandbox test program: builds a tensor whose bytes do not match its dimensions

use media_analyzer_sdk::wasi::nn::tensor::{Tensor, TensorType};
use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        // Claims 1×3×4096×4096 floats (192 MiB) with 12 bytes of data.
        let t = Tensor::new(&[1, 3, 4096, 4096], TensorType::Fp32, &[0u8; 12]);
        Ok(vec![Detection {
            label: format!("made a tensor of {:?}", t.dimensions()),
            score: 1.0,
            box_: sdk::Bbox {
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
