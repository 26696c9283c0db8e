//! Sandbox test program: returns a label, attributes or an error message far larger than
//! allowed. `("what", "label" | "attributes" | "attribute" | "total" | "error")`.

use media_analyzer_sdk::{self as sdk, Bbox, Detection, Frame};

struct Case;

fn detection(label: String, attributes: Vec<(String, String)>) -> Detection {
    Detection {
        label,
        score: 0.5,
        box_: Bbox {
            x: 0.0,
            y: 0.0,
            w: 1.0,
            h: 1.0,
        },
        attributes,
    }
}

impl sdk::Detect for Case {
    fn detect(_frame: &Frame, config: Vec<(String, String)>) -> Result<Vec<Detection>, String> {
        let what: String = sdk::setting(&config, "what", "label".to_string())?;
        let big = "x".repeat(4 << 20);
        Ok(match what.as_str() {
            "label" => vec![detection(big, Vec::new())],
            "attributes" => vec![detection(
                "many".into(),
                (0..10_000).map(|i| (format!("k{i}"), "v".into())).collect(),
            )],
            "attribute" => vec![detection("one".into(), vec![("text".into(), big)])],
            // Each string within its limit, all together far over the total.
            "total" => (0..1000)
                .map(|_| detection("t".into(), vec![("text".into(), "y".repeat(4000))]))
                .collect(),
            "error" => return Err(format!("{}{big}", "é".repeat(3000))),
            other => return Err(format!("unknown what '{other}'")),
        })
    }
}

media_analyzer_sdk::export_detector!(Case with_types_in media_analyzer_sdk);
