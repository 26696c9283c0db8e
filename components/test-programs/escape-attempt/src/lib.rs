//! Sandbox test program: tries to read a file, list a directory, read the environment and open a socket; reports what happened

use media_analyzer_sdk::{self as sdk, Detection, Frame};

struct Case;

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, _config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let file = std::fs::read("/etc/passwd")
            .map(|b| format!("read {} bytes", b.len()))
            .unwrap_or_else(|e| format!("error: {e}"));
        let dir = std::fs::read_dir("/")
            .map(|_| "listed".to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        let env = std::env::vars().count().to_string();
        let socket = std::net::TcpStream::connect("127.0.0.1:5432")
            .map(|_| "connected".to_string())
            .unwrap_or_else(|e| format!("error: {e}"));
        let report = |label: &str, value: String| Detection {
            label: label.to_string(),
            score: 1.0,
            box_: media_analyzer_sdk::Bbox {
                x: 0.0,
                y: 0.0,
                w: 0.0,
                h: 0.0,
            },
            attributes: vec![("result".to_string(), value)],
        };
        println!("escape attempt finished");
        Ok(vec![
            report("file", file),
            report("dir", dir),
            report("env", env),
            report("socket", socket),
        ])
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
