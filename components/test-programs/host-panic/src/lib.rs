//! Sandbox test program: logs the message on which the runtime's unit-test hook panics inside the
//! host call (only the runtime's own unit tests have that hook)

use media_analyzer_sdk::{self as sdk, Detection, Frame, Level};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        sdk::log(Level::Error, "test hook: panic in this host call");
        Ok(Vec::new())
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
