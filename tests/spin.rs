//! The Spin brand trigger (`components/spin-brand-rules`, spin-sdk 5.2, Spin's `inbound-redis`
//! world) run by this host from the repository's own `spin.toml`, against a real Redis: the
//! detections of a brand sequence go onto the bus (the Redis bus publishes them on
//! `ma:detections:{tenant}` too), the component keeps its rule state in Redis and publishes
//! alerts, and those alerts are exactly the ones the in-host `brand-rules` trigger raises on the
//! same frames with the same settings.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus::{BusConfig, Envelope, Event, FrameDetections};
use e2e::*;
use futures::StreamExt;
use runtime::spin::SpinHost;
use runtime::spin_app::SpinApp;
use runtime::{ModelRegistry, RuleState, Runtime, SandboxConfig};

const TENANT: &str = "ten_spin";
const STREAM: &str = "str_spin";

/// What a frame shows: `(pts_ms, [(label, score)])`, every 250 ms: Acme for 5 s (on screen after
/// 2 s), nothing for 2 s (a new appearance after), Acme with its competitor Globex for 5 s (on
/// screen again, the competitor twice: 4 s cooldown), a low-score Acme (ignored, within the 1 s
/// gap), then Acme alone for 4 s (the same appearance: no alert).
fn frames() -> Vec<(i64, Vec<(&'static str, f32)>)> {
    let mut out = Vec::new();
    let mut pts = 0;
    let mut push = |n: usize, found: &[(&'static str, f32)]| {
        for _ in 0..n {
            out.push((pts, found.to_vec()));
            pts += 250;
        }
    };
    push(20, &[("brand:Acme", 0.9), ("person", 0.95)]);
    push(8, &[]);
    push(20, &[("brand:Acme", 0.8), ("brand:Globex", 0.7)]);
    push(2, &[("brand:Acme", 0.2)]);
    push(16, &[("brand:Acme", 0.9)]);
    out
}

/// The settings both triggers get: rule names as the in-host trigger takes them, and as Spin
/// variables.
const SETTINGS: [(&str, &str, &str); 3] = [
    ("competitors", "competitors", "globex"),
    ("cooldown-seconds", "cooldown_seconds", "4"),
    ("min-seconds", "min_seconds", "2"),
];

/// An alert as both report it: `(pts_ms, rule, severity, message, detection labels)`.
type Seen = (i64, String, String, String, Vec<String>);

fn in_host_alerts(runtime: &Runtime) -> Vec<Seen> {
    let bytes = std::fs::read(TestServer::components_dir().join("brand_rules.wasm")).unwrap();
    let trigger = runtime.load_trigger(&bytes).unwrap();
    let state = Arc::new(RuleState::default());
    let config: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|(k, _, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut seen = Vec::new();
    for (seq, (pts, found)) in frames().into_iter().enumerate() {
        let frame = runtime_wit::FrameInfo {
            stream: STREAM.into(),
            seq: seq as u64,
            pts_ms: pts,
            width: 1280,
            height: 720,
        };
        let detections: Vec<runtime_wit::Detection> = found
            .iter()
            .map(|(label, score)| runtime_wit::Detection {
                label: label.to_string(),
                score: *score,
                box_: runtime_wit::Bbox {
                    x: 0.1,
                    y: 0.1,
                    w: 0.2,
                    h: 0.1,
                },
                attributes: Vec::new(),
            })
            .collect();
        let call = runtime.run_rules(&trigger, &state, &frame, &detections, &config);
        for alert in call.result.unwrap() {
            seen.push((
                pts,
                alert.rule,
                match alert.severity {
                    runtime_wit::Severity::Info => "info",
                    runtime_wit::Severity::Warning => "warning",
                    runtime_wit::Severity::Critical => "critical",
                }
                .to_string(),
                alert.message,
                alert.detections.into_iter().map(|d| d.label).collect(),
            ));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_component_raises_the_same_alerts_as_the_in_host_trigger() {
    let redis = RedisServer::start(None);
    let runtime = Arc::new(Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap());
    let expected = in_host_alerts(&runtime);
    assert_eq!(
        expected.iter().map(|a| a.1.as_str()).collect::<Vec<_>>(),
        ["on-screen", "competitor", "on-screen", "competitor"],
        "the sequence exercises both rules, the gap and the cooldown: {expected:#?}"
    );

    // The repository's spin.toml, as `media-analyzer spin up --variable …` loads it.
    let host = Arc::new(SpinHost::new(&runtime).unwrap());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
    let mut variables: HashMap<String, String> = SETTINGS
        .iter()
        .map(|(_, name, v)| (name.to_string(), v.to_string()))
        .collect();
    variables.insert("redis_address".into(), redis.url());
    variables.insert("tenant".into(), TENANT.into());
    let app = Arc::new(
        SpinApp::load(
            &manifest,
            &variables,
            Some(&TestServer::components_dir()),
            &runtime,
            &host,
        )
        .unwrap(),
    );
    assert_eq!(
        app.subscriptions[0].channel,
        format!("ma:detections:{TENANT}")
    );

    // Alerts come out on the manifest's alerts channel.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut alerts = client.get_async_pubsub().await.unwrap();
    alerts
        .subscribe(format!("ma:alerts:{TENANT}"))
        .await
        .unwrap();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(app.clone().run(runtime.clone(), host, move || {
        let _ = subscribed_tx.send(());
    }));
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("subscribed within 10 s")
        .unwrap();

    // The detections, through the bus as an analysis host publishes them.
    let bus = bus::Bus::connect(&BusConfig::Redis {
        url: redis.url(),
        replay_len: 100,
    })
    .await
    .unwrap();
    let frames = frames();
    for (seq, (pts, found)) in frames.iter().enumerate() {
        let event = Event::Detections(FrameDetections {
            effects: Vec::new(),
            effects_failed: Vec::new(),
            scene: None,
            stream: STREAM.into(),
            seq: seq as u64,
            pts_ms: *pts,
            wallclock: "2026-12-04T00:00:00.000Z".into(),
            ingested: None,
            timing: None,
            width: 1280,
            height: 720,
            detections: found
                .iter()
                .map(|(label, score)| bus::Detection {
                    label: label.to_string(),
                    score: *score,
                    bbox: [0.1, 0.1, 0.2, 0.1],
                    component: "logo-matcher".into(),
                })
                .collect(),
        });
        bus.publish(&Envelope::new(TENANT, event)).await.unwrap();
    }

    let mut got: Vec<Seen> = Vec::new();
    let mut messages = alerts.on_message();
    while got.len() < expected.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} alerts within 30 s ({} handled, {} failed): {got:#?}",
                    got.len(),
                    expected.len(),
                    app.handled.load(std::sync::atomic::Ordering::Relaxed),
                    app.failed.load(std::sync::atomic::Ordering::Relaxed)
                )
            })
            .unwrap();
        let envelope = Envelope::from_json(message.get_payload_bytes()).unwrap();
        assert_eq!(envelope.tenant, TENANT);
        let Event::Alert(alert) = envelope.event else {
            panic!("not an alert: {envelope:?}")
        };
        assert_eq!(alert.stream, STREAM);
        assert_eq!(alert.component, "spin-brand-rules");
        assert_eq!(frames[alert.seq as usize].0, alert.pts_ms);
        got.push((
            alert.pts_ms,
            alert.rule,
            alert.severity,
            alert.message,
            alert.detections.into_iter().map(|d| d.label).collect(),
        ));
    }
    assert_eq!(got, expected);
    // Every frame was handled, none failed, and nothing more came.
    let started = std::time::Instant::now();
    while app.handled.load(std::sync::atomic::Ordering::Relaxed) < frames.len() as u64 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), messages.next())
            .await
            .is_err()
    );
    // The rule state lives in Redis under the manifest's prefix, per tenant, stream and brand.
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let state: Option<String> = redis::cmd("GET")
        .arg(format!("ma:spin:brand-rules:{TENANT}:{STREAM}/acme"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(state.is_some());
    running.abort();
}

/// A manifest that lets the component reach only another Redis: its `open` is refused, the
/// handler fails, and the failure is counted without stopping the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_address_the_manifest_does_not_allow_is_refused() {
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let source = TestServer::components_dir().join("spin_brand_rules.wasm");
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"spin_manifest_version = 2
[application]
name = "fenced"
[application.trigger.redis]
address = "{url}"
[[trigger.redis]]
channel = "ma:detections:t"
component = "rules"
[component.rules]
source = "{source}"
allowed_outbound_hosts = ["redis://127.0.0.1:1"]
[component.rules.variables]
redis_address = "{url}"
alerts_channel = "a"
state_prefix = "s:"
brands = ""
competitors = ""
min_seconds = ""
cooldown_seconds = ""
gap_seconds = ""
min_score = ""
"#,
            url = redis.url(),
            source = source.display()
        ),
    )
    .unwrap();
    let runtime = Arc::new(Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap());
    let host = Arc::new(SpinHost::new(&runtime).unwrap());
    let app = Arc::new(SpinApp::load(&manifest, &HashMap::new(), None, &runtime, &host).unwrap());
    let (tx, subscribed) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(app.clone().run(runtime.clone(), host, move || {
        let _ = tx.send(());
    }));
    subscribed.await.unwrap();
    let bus = bus::Bus::connect(&BusConfig::Redis {
        url: redis.url(),
        replay_len: 10,
    })
    .await
    .unwrap();
    for seq in 0..2 {
        let event = Event::Detections(FrameDetections {
            effects: Vec::new(),
            effects_failed: Vec::new(),
            scene: None,
            stream: "s".into(),
            seq,
            pts_ms: 0,
            wallclock: "x".into(),
            ingested: None,
            timing: None,
            width: 1,
            height: 1,
            detections: vec![],
        });
        bus.publish(&Envelope::new("t", event)).await.unwrap();
    }
    let started = std::time::Instant::now();
    while app.failed.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refused open did not fail the calls"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.handled.load(std::sync::atomic::Ordering::Relaxed), 0);
    running.abort();
}
