//! The effect-selector world's host with the bundled selectors (`privacy-blur`,
//! `brand-spotlight`, `scene-grade`), and hostile selectors bounded like any component: a loop
//! stopped at the deadline, a trap, a flood of effects or parameters, a memory bomb — each fails
//! its own call only.

mod common;

use std::time::{Duration, Instant};

use runtime::{CallError, ModelRegistry, Runtime, SandboxConfig, World};
use runtime_wit::{Bbox, Detection, EffectKind, FrameInfo};

fn found(label: &str, score: f32, x: f32, y: f32, w: f32, h: f32) -> Detection {
    Detection {
        label: label.into(),
        score,
        box_: Bbox { x, y, w, h },
        attributes: Vec::new(),
    }
}

fn frame() -> FrameInfo {
    FrameInfo {
        stream: "str_main".into(),
        seq: 7,
        pts_ms: 700,
        width: 1280,
        height: 720,
    }
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn param(e: &runtime_wit::Effect, name: &str) -> Option<f32> {
    e.params.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

#[test]
fn privacy_blur_blurs_every_face_over_a_grown_box() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let selector = rt
        .load_selector(&common::component("privacy-blur"))
        .unwrap();
    let detections = [
        found("face", 0.9, 0.5, 0.2, 0.05, 0.1),
        // A faint face is still blurred (min-score 0.3 by default).
        found("face", 0.35, 0.1, 0.6, 0.005, 0.01),
        found("face", 0.1, 0.8, 0.8, 0.05, 0.05),
        found("person", 0.9, 0.4, 0.1, 0.3, 0.9),
    ];
    let call = rt.run_selector(&selector, &frame(), &detections, &[]);
    let effects = call.result.unwrap();
    assert_eq!(effects.len(), 2, "{effects:?}");
    let e = &effects[0];
    assert_eq!(e.kind, EffectKind::Blur);
    let r = e.region.unwrap();
    // Grown by 35 % of its size on each side (the whole head).
    assert!(
        (r.x - 0.4825).abs() < 1e-5 && (r.w - 0.085).abs() < 1e-5,
        "{r:?}"
    );
    assert!(
        (r.y - 0.165).abs() < 1e-5 && (r.h - 0.17).abs() < 1e-5,
        "{r:?}"
    );
    // Half the smaller side in pixels (0.085 × 1280 = 108.8 px).
    let radius = param(e, "radius").unwrap();
    assert!((radius - 108.8 / 2.0).abs() < 0.01, "{radius}");
    // Small faces still get at least 8 px.
    assert_eq!(param(&effects[1], "radius"), Some(8.0));

    let pixelated = rt
        .run_selector(
            &selector,
            &frame(),
            &detections,
            &config(&[("style", "pixelate"), ("labels", "face,person")]),
        )
        .result
        .unwrap();
    assert_eq!(pixelated.len(), 3);
    assert!(pixelated.iter().all(|e| param(e, "pixelate").is_some()));

    let refused = rt.run_selector(
        &selector,
        &frame(),
        &detections,
        &config(&[("style", "smear")]),
    );
    assert!(
        matches!(&refused.result, Err(CallError::Component(m)) if m.contains("gaussian or pixelate")),
        "{:?}",
        refused.result
    );
}

#[test]
fn brand_spotlight_highlights_the_tenants_brands_only() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let selector = rt
        .load_selector(&common::component("brand-spotlight"))
        .unwrap();
    let detections = [
        found("brand:Acme", 0.9, 0.1, 0.1, 0.2, 0.1),
        found("brand:Rival", 0.8, 0.6, 0.1, 0.2, 0.1),
        found("brand:Acme", 0.2, 0.6, 0.6, 0.2, 0.1),
        found("cup", 0.9, 0.3, 0.3, 0.2, 0.2),
    ];
    let all = rt
        .run_selector(&selector, &frame(), &detections, &[])
        .result
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.kind == EffectKind::Highlight));
    let acme = rt
        .run_selector(
            &selector,
            &frame(),
            &detections,
            &config(&[("brands", "acme"), ("colour", "#00ff00")]),
        )
        .result
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].region.unwrap().x, 0.1);
    assert_eq!(
        (param(&acme[0], "r"), param(&acme[0], "g")),
        (Some(0.0), Some(1.0))
    );
}

#[test]
fn scene_grade_picks_the_look_of_the_scene() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let selector = rt.load_selector(&common::component("scene-grade")).unwrap();
    let looks = config(&[("looks", "stadium=punchy,studio=warm"), ("look", "cool")]);
    let stadium = [
        found("scene:studio", 0.3, 0.0, 0.0, 1.0, 1.0),
        found("scene:stadium", 0.7, 0.0, 0.0, 1.0, 1.0),
    ];
    let e = rt
        .run_selector(&selector, &frame(), &stadium, &looks)
        .result
        .unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, EffectKind::ColourGrade);
    assert_eq!(param(&e[0], "contrast"), Some(1.25));
    // Another scene: the default look; no scene and the default neutral: nothing.
    let other = rt
        .run_selector(
            &selector,
            &frame(),
            &[found("scene:beach", 0.9, 0.0, 0.0, 1.0, 1.0)],
            &looks,
        )
        .result
        .unwrap();
    assert_eq!(param(&other[0], "temperature"), Some(-0.6));
    assert!(
        rt.run_selector(&selector, &frame(), &[], &[])
            .result
            .unwrap()
            .is_empty()
    );
    let bad = rt.run_selector(&selector, &frame(), &[], &config(&[("look", "sepia")]));
    assert!(matches!(bad.result, Err(CallError::Component(_))));
}

#[test]
fn hostile_selectors_fail_their_own_call_only() {
    let deadline = Duration::from_millis(200);
    let rt = Runtime::new(
        SandboxConfig {
            deadline,
            memory_bytes: 32 << 20,
            ..SandboxConfig::default()
        },
        ModelRegistry::new(),
    )
    .unwrap();
    let hostile = rt
        .load_selector(&common::component("hostile-selector"))
        .unwrap();
    let blur = rt
        .load_selector(&common::component("privacy-blur"))
        .unwrap();
    let face = [found("face", 0.9, 0.5, 0.2, 0.05, 0.1)];
    for (what, expect) in [
        ("loop", "deadline"),
        ("trap", "trap"),
        ("flood", "max_effects"),
        ("params", "max_effect_params"),
        ("memory", "memory"),
    ] {
        let started = Instant::now();
        let call = rt.run_selector(&hostile, &frame(), &face, &config(&[("do", what)]));
        let err = call.result.expect_err(what);
        let message = match &err {
            CallError::Deadline(_) => "deadline".to_string(),
            CallError::OutputLimit(l) => l.limit.to_string(),
            CallError::OutOfMemory | CallError::HostMemory { .. } => "memory".to_string(),
            CallError::Trap(_) => "trap".to_string(),
            other => format!("{other}"),
        };
        assert!(message.contains(expect), "{what}: {err}");
        assert!(
            started.elapsed() < deadline * 10,
            "{what} took {:?}",
            started.elapsed()
        );
        // The next call, of another component, is unaffected.
        let ok = rt.run_selector(&blur, &frame(), &face, &[]);
        assert_eq!(ok.result.unwrap().len(), 1, "after {what}");
    }
    // And a well-behaved call of the same component still works.
    assert!(
        rt.run_selector(&hostile, &frame(), &face, &[])
            .result
            .unwrap()
            .is_empty()
    );
}

#[test]
fn selectors_are_checked_against_their_world() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    rt.check_upload(World::Effects, &common::component("privacy-blur"))
        .unwrap();
    assert!(
        rt.check_upload(World::Detector, &common::component("privacy-blur"))
            .is_err()
    );
    assert!(rt.load_selector(&common::component("brand-rules")).is_err());
}
