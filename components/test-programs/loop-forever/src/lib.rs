//! Sandbox test program: runs forever; the host must stop it at the deadline

use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
