//! Sandbox test program: allocates until refused; the host must stop it at the memory limit

use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
