//! Sandbox test program: sleeps for an hour inside a host call (wasi:clocks + wasi:io/poll); the
//! host must stop it at the deadline

use std::time::Duration;

use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(Vec::new())
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
