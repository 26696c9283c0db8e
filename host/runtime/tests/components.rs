//! Detector components on real photos, through the whole path: frame.tensor (host) → wasi-nn →
//! ONNX Runtime (host) → decoding and NMS inside the sandbox.

use std::time::Duration;

use runtime::{CallError, ModelRegistry, Runtime, SandboxConfig};

mod common;
use common::{catalog, component, fixture, frame, runtime_with};

#[test]
fn the_object_detector_finds_the_cup_through_wasi_nn() {
    let catalog = catalog();
    let rt = runtime_with(&catalog, &["nanodet-coco"], Duration::from_secs(1));
    let detector = rt.load_detector(&component("object-detector")).unwrap();
    for (name, expected) in [("coffee", "cup"), ("astronaut", "person")] {
        let outcome = rt.detect(&detector, fixture(&catalog, name), &[]).unwrap();
        let top = &outcome.detections[0];
        assert_eq!(top.label, expected, "{name}: {:?}", outcome.detections);
        let b = top.box_;
        assert!(
            b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= 1.0001 && b.y + b.h <= 1.0001 && b.w > 0.1,
            "{b:?}"
        );
        assert!(outcome.inference > Duration::ZERO && outcome.inference < outcome.elapsed);
    }
    // Unknown models are a clean error from the component, not a trap.
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let detector = rt.load_detector(&component("object-detector")).unwrap();
    let err = rt.detect(&detector, frame(16, 16), &[]).unwrap_err();
    assert!(
        matches!(&err, CallError::Component(m) if m.contains("nanodet-coco")),
        "{err}"
    );
}

#[test]
fn the_face_detector_finds_one_face_on_the_astronaut_and_none_on_the_coffee() {
    let catalog = catalog();
    let rt = runtime_with(&catalog, &["blazeface"], Duration::from_secs(1));
    let detector = rt.load_detector(&component("face-detector")).unwrap();
    let faces = rt
        .detect(&detector, fixture(&catalog, "astronaut"), &[])
        .unwrap()
        .detections;
    assert_eq!(faces.len(), 1, "{faces:?}");
    let face = &faces[0];
    assert!(face.label == "face" && face.score > 0.5, "{face:?}");
    // The astronaut's face is in the upper middle of the photo.
    let (cx, cy) = (
        face.box_.x + face.box_.w / 2.0,
        face.box_.y + face.box_.h / 2.0,
    );
    assert!(
        (0.3..0.7).contains(&cx) && (0.05..0.5).contains(&cy),
        "{face:?}"
    );
    assert!(
        rt.detect(&detector, fixture(&catalog, "coffee"), &[])
            .unwrap()
            .detections
            .is_empty()
    );
    // Letterboxing: the top half of the photo (2:1, padded above and below in the tensor) puts
    // the same face at the same x and at twice the relative y.
    let wide = top_half(&fixture(&catalog, "astronaut"));
    let faces = rt.detect(&detector, wide, &[]).unwrap().detections;
    assert_eq!(faces.len(), 1, "{faces:?}");
    let b = faces[0].box_;
    let (cx_wide, cy_wide) = (b.x + b.w / 2.0, b.y + b.h / 2.0);
    assert!((cx_wide - cx).abs() < 0.03, "{cx_wide} vs {cx}");
    assert!((cy_wide - 2.0 * cy).abs() < 0.06, "{cy_wide} vs {cy}");
}

/// The upper half of a frame.
fn top_half(f: &runtime_wit::Frame) -> runtime_wit::Frame {
    let rows = (f.height / 2) as usize;
    let rgb = f.rgb[..rows * f.width as usize * 3].to_vec();
    runtime_wit::Frame {
        height: rows as u32,
        rgb: std::sync::Arc::new(rgb),
        ..f.clone()
    }
}

#[test]
fn brand_text_reads_coca_cola_and_netflix() {
    let catalog = catalog();
    let rt = runtime_with(
        &catalog,
        &["ppocr-det", "ppocr-rec"],
        Duration::from_secs(5),
    );
    let detector = rt.load_detector(&component("brand-text")).unwrap();
    let settings = [("emit-text".to_string(), "true".to_string())];
    let outcome = rt
        .detect(&detector, fixture(&catalog, "ocr-brands"), &settings)
        .unwrap();
    let labels: Vec<&str> = outcome
        .detections
        .iter()
        .map(|d| d.label.as_str())
        .collect();
    assert!(
        labels.contains(&"brand:cocacola"),
        "{:?}",
        outcome.detections
    );
    assert!(
        labels.contains(&"brand:netflix"),
        "{:?}",
        outcome.detections
    );
    let coke = outcome
        .detections
        .iter()
        .find(|d| d.label == "brand:cocacola")
        .unwrap();
    assert!(coke.score > 0.8, "{coke:?}");
    assert!(
        coke.box_.w > 0.1 && coke.box_.x + coke.box_.w <= 1.0,
        "{coke:?}"
    );
    // A tenant's own lexicon: only its brands are reported.
    let only_netflix = [("brands".to_string(), "Netflix".to_string())];
    let outcome = rt
        .detect(&detector, fixture(&catalog, "ocr-brands"), &only_netflix)
        .unwrap();
    let labels: Vec<&str> = outcome
        .detections
        .iter()
        .map(|d| d.label.as_str())
        .collect();
    assert_eq!(labels, vec!["brand:netflix"]);
    // No text, no brands.
    assert!(
        rt.detect(&detector, fixture(&catalog, "astronaut"), &[])
            .unwrap()
            .detections
            .iter()
            .all(|d| !d.label.starts_with("brand:"))
    );
}
