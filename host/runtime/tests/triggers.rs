//! The trigger world's host with the bundled `brand-rules` trigger: alerts from a sequence of
//! frames' detections, state kept per tenant and component, and the world checked both ways.

mod common;

use std::sync::Arc;

use runtime::{LoadError, ModelRegistry, RuleState, Runtime, SandboxConfig, World};
use runtime_wit::{Bbox, Detection, FrameInfo};

fn brand(name: &str, score: f32) -> Detection {
    Detection {
        label: format!("brand:{name}"),
        score,
        box_: Bbox {
            x: 0.1,
            y: 0.1,
            w: 0.2,
            h: 0.1,
        },
        attributes: vec![("component".into(), "logo-matcher@0".into())],
    }
}

fn frame(seq: u64) -> FrameInfo {
    FrameInfo {
        stream: "str_main".into(),
        seq,
        // 10 frames a second.
        pts_ms: seq as i64 * 100,
        width: 1280,
        height: 720,
    }
}

/// Runs frames `seqs`, each with `brands(seq)`, and returns (seq, rule, message) of each alert.
fn run(
    rt: &Runtime,
    trigger: &runtime::TriggerComponent,
    state: &Arc<RuleState>,
    seqs: std::ops::Range<u64>,
    brands: impl Fn(u64) -> Vec<Detection>,
    config: &[(&str, &str)],
) -> Vec<(u64, String, String)> {
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut alerts = Vec::new();
    for seq in seqs {
        let call = rt.run_rules(trigger, state, &frame(seq), &brands(seq), &config);
        let raised = call
            .result
            .unwrap_or_else(|e| panic!("frame {seq}: {e}; log {:?}", call.log));
        alerts.extend(raised.into_iter().map(|a| (seq, a.rule, a.message)));
    }
    alerts
}

#[test]
fn brand_rules_alerts_once_per_appearance_after_its_time_on_screen() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let trigger = rt.load_trigger(&common::component("brand-rules")).unwrap();
    let state = Arc::new(RuleState::default());
    // On screen from 0 s to 5 s, then away for 2 s (past the 1 s gap), back from 7 s to 12 s;
    // a low-confidence find never counts.
    let on = |seq: u64| {
        let mut found = vec![brand("rival", 0.2)];
        if seq < 50 || (70..120).contains(&seq) {
            found.push(brand("Acme", 0.9));
        }
        found
    };
    let alerts = run(&rt, &trigger, &state, 0..120, on, &[("min-seconds", "3")]);
    // Once, at 3 s; the second appearance is within the 60 s cooldown.
    assert_eq!(
        alerts,
        [(30, "on-screen".into(), "Acme on screen for 3.0 s".into())]
    );

    // With a 5 s cooldown the second appearance alerts too, 3 s after it began (at 10 s).
    let state = Arc::new(RuleState::default());
    let alerts = run(
        &rt,
        &trigger,
        &state,
        0..120,
        on,
        &[("min-seconds", "3"), ("cooldown-seconds", "5")],
    );
    let seqs: Vec<u64> = alerts.iter().map(|a| a.0).collect();
    assert_eq!(seqs, [30, 100]);
}

#[test]
fn a_competitor_beside_our_brand_alerts_and_state_is_per_tenant() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let trigger = rt.load_trigger(&common::component("brand-rules")).unwrap();
    let config = [
        ("brands", "acme"),
        ("competitors", "rival"),
        ("min-seconds", "100"),
    ];
    let (tenant_a, tenant_b) = (
        Arc::new(RuleState::default()),
        Arc::new(RuleState::default()),
    );
    // The rival alone: nothing; beside ours (from frame 10): one warning, then the cooldown.
    let both = |seq: u64| {
        let mut found = vec![brand("rival", 0.9)];
        if seq >= 10 {
            found.push(brand("acme", 0.9));
        }
        found
    };
    let alerts = run(&rt, &trigger, &tenant_a, 0..40, both, &config);
    assert_eq!(
        alerts,
        [(10, "competitor".into(), "rival appeared beside acme".into())]
    );
    assert!(!tenant_a.is_empty());
    // Another tenant's state starts empty: its own first alert, not suppressed by A's cooldown.
    let alerts = run(&rt, &trigger, &tenant_b, 10..11, both, &config);
    assert_eq!(alerts.len(), 1);
}

#[test]
fn a_trigger_is_not_a_detector_nor_the_reverse() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let checked = rt
        .check_upload(World::Trigger, &common::component("brand-rules"))
        .unwrap();
    assert!(
        checked
            .imports
            .iter()
            .any(|i| i.starts_with("media-analyzer:pipeline/state")),
        "{:?}",
        checked.imports
    );
    assert!(matches!(
        rt.load_trigger(&common::component("object-detector")),
        Err(LoadError::WrongWorld {
            world: "trigger",
            ..
        })
    ));
    assert!(matches!(
        rt.load_detector(&common::component("brand-rules")),
        Err(LoadError::WrongWorld {
            world: "detector",
            ..
        })
    ));
}

#[test]
fn bad_settings_fail_the_call_with_the_components_reason() {
    let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
    let trigger = rt.load_trigger(&common::component("brand-rules")).unwrap();
    let state = Arc::new(RuleState::default());
    let config = [("min-seconds".to_string(), "soon".to_string())];
    let call = rt.run_rules(&trigger, &state, &frame(0), &[], &config);
    let error = call.result.unwrap_err().to_string();
    assert!(error.contains("min-seconds"), "{error}");
}
