//! Detector components on real photos, through the whole path: frame.tensor (host) → wasi-nn →
//! ONNX Runtime (host) → decoding and NMS inside the sandbox.

use std::time::Duration;

use runtime::{CallError, ModelRegistry, Runtime, SandboxConfig};

/// These tests check what the components find, not how fast: the deadline only stops a hang (the
/// sandbox tests check deadlines), so a slow debug build on a busy machine does not fail them.
const NO_HANG: Duration = Duration::from_secs(60);

mod common;
use common::{catalog, component, fixture, frame, runtime_with};

#[test]
fn the_object_detector_finds_the_cup_through_wasi_nn() {
    let catalog = catalog();
    let rt = runtime_with(&catalog, &["nanodet-coco"], NO_HANG);
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
    let rt = runtime_with(&catalog, &["blazeface", "blazeface-back"], NO_HANG);
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

#[test]
fn the_face_detector_finds_faces_at_broadcast_framing_and_none_on_a_cat() {
    let catalog = catalog();
    let rt = runtime_with(&catalog, &["blazeface", "blazeface-back"], NO_HANG);
    let detector = rt.load_detector(&component("face-detector")).unwrap();
    let astronaut = fixture(&catalog, "astronaut");
    let faces_in = |frame: runtime_wit::Frame, settings: &[(&str, &str)]| {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rt.detect(&detector, frame, &settings).unwrap().detections
    };

    // The astronaut in a 1280×720 frame, unscaled (her face is 13 % of the height): the
    // front-camera model alone (`range` `close`, the detector's old way) misses it.
    let mut wide = canvas(1280, 720);
    paste(&mut wide, &astronaut, 384, 104);
    let faces = faces_in(wide.clone(), &[]);
    assert_eq!(faces.len(), 1, "{faces:?}");
    let b = faces[0].box_;
    let (cx, cy) = (
        (b.x + b.w / 2.0) * 1280.0 - 384.0,
        (b.y + b.h / 2.0) * 720.0 - 104.0,
    );
    assert!(
        (200.0..260.0).contains(&cx) && (100.0..160.0).contains(&cy),
        "{b:?}"
    );
    assert!(faces_in(wide, &[("range", "close")]).is_empty());

    // A quarter of the size among the clutter of the coffee photo: the face is 24 px, 3.3 % of
    // the height.
    let mut small = canvas(1280, 720);
    paste(&mut small, &fixture(&catalog, "coffee"), 0, 0);
    paste(&mut small, &shrink(&astronaut, 4), 1000, 500);
    let faces = faces_in(small, &[]);
    assert_eq!(faces.len(), 1, "{faces:?}");
    let b = faces[0].box_;
    let (cx, cy) = ((b.x + b.w / 2.0) * 1280.0, (b.y + b.h / 2.0) * 720.0);
    assert!(
        (1050.0..1070.0).contains(&cx) && (525.0..545.0).contains(&cy),
        "{b:?}"
    );
    assert!(b.h * 720.0 < 40.0, "{b:?}");

    // The cat (which each BlazeFace model alone takes for a face) and the cup: no face, as they
    // are and in a 1280×720 frame.
    for name in ["chelsea", "coffee"] {
        let photo = fixture(&catalog, name);
        assert!(faces_in(photo.clone(), &[]).is_empty(), "{name}");
        let mut wide = canvas(1280, 720);
        paste(&mut wide, &photo, 300, 150);
        assert!(faces_in(wide, &[]).is_empty(), "{name} in 1280×720");
    }

    // Bad settings are the component's error, not a trap.
    for (key, value) in [("range", "far"), ("min-face", "2"), ("min-score", "x")] {
        let settings = [(key.to_string(), value.to_string())];
        let err = rt.detect(&detector, frame(64, 64), &settings).unwrap_err();
        assert!(
            matches!(&err, CallError::Component(m) if m.contains(key)),
            "{key}={value}: {err}"
        );
    }
}

/// A mid-grey frame.
fn canvas(width: u32, height: u32) -> runtime_wit::Frame {
    frame(width, height)
}

/// Copies `src` into `dst` with its top-left corner at `(x, y)` (clipped).
fn paste(dst: &mut runtime_wit::Frame, src: &runtime_wit::Frame, x: u32, y: u32) {
    let (dw, sw) = (dst.width as usize, src.width as usize);
    let rgb = std::sync::Arc::make_mut(&mut dst.rgb);
    for row in 0..src.height.min(dst.height.saturating_sub(y)) as usize {
        let cols = sw.min(dw.saturating_sub(x as usize));
        let d = ((y as usize + row) * dw + x as usize) * 3;
        let s = row * sw * 3;
        rgb[d..d + cols * 3].copy_from_slice(&src.rgb[s..s + cols * 3]);
    }
}

/// `src` shrunk by an integer `factor`, each pixel the mean of its `factor`×`factor` block.
fn shrink(src: &runtime_wit::Frame, factor: u32) -> runtime_wit::Frame {
    let (w, h) = (src.width / factor, src.height / factor);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..factor {
                    for dx in 0..factor {
                        let i =
                            (((y * factor + dy) * src.width + x * factor + dx) * 3 + c) as usize;
                        sum += src.rgb[i] as u32;
                    }
                }
                rgb.push((sum / (factor * factor)) as u8);
            }
        }
    }
    runtime_wit::Frame {
        width: w,
        height: h,
        rgb: std::sync::Arc::new(rgb),
        ..src.clone()
    }
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

/// A frame of one colour, with an optional centre square of another (a `width`:`height` frame
/// whose short side is the square).
fn coloured(width: u32, height: u32, outside: [u8; 3], centre: [u8; 3]) -> runtime_wit::Frame {
    let side = width.min(height);
    let (x0, y0) = ((width - side) / 2, (height - side) / 2);
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let inside = (x0..x0 + side).contains(&x) && (y0..y0 + side).contains(&y);
            rgb.extend_from_slice(if inside { &centre } else { &outside });
        }
    }
    runtime_wit::Frame {
        width,
        height,
        rgb: std::sync::Arc::new(rgb),
        ..frame(1, 1)
    }
}

/// CLIP's code path end to end on the generated CLIP-shaped model (`clip-test`: only the words
/// red/green/blue carry meaning): prompts tokenised in the sandbox with CLIP's real vocabulary,
/// the centre square prepared by the host, both towers in one call, cosine + softmax.
#[test]
fn clip_brands_classifies_zero_shot_on_a_clip_shaped_model() {
    let catalog = catalog();
    let rt = runtime_with(&catalog, &["clip-test"], Duration::from_secs(2));
    let detector = rt.load_detector(&component("clip-brands")).unwrap();
    let settings = |brands: &str| {
        vec![
            ("model".to_string(), "clip-test".to_string()),
            ("brands".to_string(), brands.to_string()),
        ]
    };
    let (red, green, blue) = ([230, 20, 20], [20, 230, 20], [20, 20, 230]);
    for (colour, expected) in [
        (red, "brand:red"),
        (green, "brand:green"),
        (blue, "brand:blue"),
    ] {
        let outcome = rt
            .detect(
                &detector,
                coloured(64, 64, colour, colour),
                &settings("Red,Green,Blue"),
            )
            .unwrap();
        assert_eq!(outcome.detections.len(), 1, "{:?}", outcome.detections);
        let d = &outcome.detections[0];
        assert_eq!(d.label, expected);
        assert!(d.score > 0.9, "{d:?}");
        assert!(
            d.attributes
                .iter()
                .any(|(k, v)| k == "prompt" && v.starts_with("a photo of"))
        );
    }
    // Only the centre square is analysed (CLIP's centre crop); the box says where it was.
    let wide = rt
        .detect(
            &detector,
            coloured(128, 64, blue, red),
            &settings("Red,Blue"),
        )
        .unwrap();
    assert_eq!(wide.detections[0].label, "brand:red");
    let b = wide.detections[0].box_;
    assert!(
        (b.x - 0.25).abs() < 1e-4 && (b.w - 0.5).abs() < 1e-4 && b.h == 1.0,
        "{b:?}"
    );
    // No prompt fits (only "green" on offer for a red picture): "none of these" wins, no brand.
    let none = rt
        .detect(&detector, coloured(64, 64, red, red), &settings("Green"))
        .unwrap();
    assert!(none.detections.is_empty(), "{:?}", none.detections);
    // Scenes are a separate question over the same embeddings.
    let mut with_scenes = settings("Green");
    with_scenes.push(("scenes".to_string(), "red,blue".to_string()));
    let scene = rt
        .detect(&detector, coloured(64, 64, blue, blue), &with_scenes)
        .unwrap();
    let labels: Vec<&str> = scene.detections.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["scene:blue"]);
    // Bad settings and a missing model are the component's clear errors, not traps.
    let bad = vec![("template".to_string(), "no placeholder".to_string())];
    let err = rt.detect(&detector, frame(8, 8), &bad).unwrap_err();
    assert!(
        matches!(&err, CallError::Component(m) if m.contains("template")),
        "{err}"
    );
    let err = rt.detect(&detector, frame(8, 8), &[]).unwrap_err();
    assert!(
        matches!(&err, CallError::Component(m) if m.contains("clip")),
        "{err}"
    );
}

/// The logo matcher: the component asks the host for the frame at most 720 rows high and runs
/// the tenant's logo graph; a mark in the frame comes back as `brand:<folded name>` with its box.
#[test]
fn the_logo_matcher_finds_a_reference_mark_through_the_logos_graph() {
    let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M2 2h9v9H2zM13 13h9v9h-9zM13 2l9 9h-9zM2 22l9-9v9z" fill="#d00013"/></svg>"##;
    let mut index = logos::LogoIndex::new();
    index.add_file("Acme Co.", svg).unwrap();
    let reference = logos::decode_logo(svg).unwrap();
    // The mark 216 px tall at (400, 300) on a 1920×1080 light frame.
    let (w, h) = (1920usize, 1080usize);
    let side = 216;
    let mark = reference.resized(side, side);
    let mut rgb = vec![235u8; w * h * 3];
    for y in 0..side {
        for x in 0..side {
            let v = mark.pixels[y * side + x];
            let i = ((300 + y) * w + 400 + x) * 3;
            rgb[i..i + 3].copy_from_slice(&[v, v / 3, v / 3]);
        }
    }
    let frame = runtime_wit::Frame {
        stream: "str_test".into(),
        seq: 0,
        pts_ms: 0,
        width: w as u32,
        height: h as u32,
        rgb: std::sync::Arc::new(rgb),
    };
    let mut models = ModelRegistry::new();
    let options = inference::SessionOptions::default();
    models.insert(
        logos::graph::GRAPH.to_string(),
        logos::graph::logo_model(std::sync::Arc::new(index), &options).unwrap(),
    );
    let config = SandboxConfig {
        deadline: NO_HANG,
        ..SandboxConfig::default()
    };
    let rt = Runtime::new(config, models).unwrap();
    let matcher = rt.load_detector(&component("logo-matcher")).unwrap();
    let found = rt.detect(&matcher, frame.clone(), &[]).unwrap().detections;
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.label, "brand:acmeco");
    // The mark (without the reference's margin) covers x 400+m..616-m of 1920.
    let b = d.box_;
    assert!(
        (b.x - 420.0 / 1920.0).abs() < 0.02 && (b.w - 176.0 / 1920.0).abs() < 0.02,
        "{b:?}"
    );
    assert!(
        (b.y - 320.0 / 1080.0).abs() < 0.03 && (b.h - 176.0 / 1080.0).abs() < 0.03,
        "{b:?}"
    );
    // A tenant without logos: a clear error.
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let matcher = rt.load_detector(&component("logo-matcher")).unwrap();
    let err = rt.detect(&matcher, frame, &[]).unwrap_err();
    assert!(
        matches!(&err, CallError::Component(m) if m.contains("logos")),
        "{err}"
    );
}
