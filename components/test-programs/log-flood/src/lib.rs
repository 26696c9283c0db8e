//! Sandbox test program: logs a message whose cut falls inside a character, and far more lines
//! than kept

use media_analyzer_sdk::{self as sdk, Detection, Frame, Level};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        // "a" then two-byte characters: byte 2000 falls in the middle of one.
        sdk::log(Level::Info, &format!("a{}", "é".repeat(1500)));
        for i in 0..5000 {
            sdk::log(Level::Debug, &format!("line {i}"));
        }
        for _ in 0..100 {
            println!("{}", "é".repeat(100));
        }
        Ok(Vec::new())
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
