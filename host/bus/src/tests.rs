//! Each backend against a real server: in-process; Redis (the one at 127.0.0.1:6379, and a
//! private `redis-server` this test starts and kills); the Pub/Sub emulator, started here.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::testing::RedisServer;

fn detections(tenant: &str, stream: &str, seq: u64) -> Envelope {
    Envelope::new(
        tenant,
        Event::Detections(FrameDetections {
            stream: stream.into(),
            seq,
            pts_ms: seq as i64 * 33,
            wallclock: "2026-11-25T12:00:00Z".into(),
            ingested: None,
            timing: None,
            width: 640,
            height: 360,
            detections: vec![Detection {
                label: "cup".into(),
                score: 0.8,
                bbox: [0.1, 0.2, 0.3, 0.4],
                component: "object-detector".into(),
            }],
        }),
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

/// Waits for the next message (skipping resubscription notices), failing after `within`.
async fn next_message(rx: &mut mpsc::Receiver<Delivery>, within: Duration) -> Envelope {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Delivery::Message(m))) => return (*m).clone(),
            Ok(Some(Delivery::Resubscribed)) => continue,
            Ok(None) => panic!("subscription closed"),
            Err(_) => panic!("no message within {within:?}"),
        }
    }
}

async fn round_trip(bus: &Bus) {
    let tenant = unique("ten_");
    let mut rx = bus.subscribe().await.unwrap();
    // Pub/Sub subscriptions only see messages published after they exist; give them a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for seq in 1..=3 {
        bus.publish(&detections(&tenant, "str_a", seq))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = next_message(&mut rx, Duration::from_secs(10)).await;
        if m.tenant == tenant {
            got.push(m);
        }
    }
    // Ordered per stream, intact.
    assert_eq!(
        got.iter()
            .map(|m| m.event.seq().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(got[0], detections(&tenant, "str_a", 1));
    assert!(bus.stats().published.load(Ordering::Relaxed) >= 3);
}

#[test]
fn bus_urls_parse_with_clear_errors() {
    assert_eq!("memory".parse::<BusConfig>().unwrap(), BusConfig::InProcess);
    assert!(matches!(
        "redis://127.0.0.1:6379".parse::<BusConfig>().unwrap(),
        BusConfig::Redis { .. }
    ));
    assert!(matches!(
        "pubsub://my-project/ma-test".parse::<BusConfig>().unwrap(),
        BusConfig::PubSub { project, prefix, .. } if project == "my-project" && prefix == "ma-test"
    ));
    let err = "kafka://x".parse::<BusConfig>().unwrap_err().to_string();
    assert!(
        err.contains("redis://") && err.contains("pubsub://"),
        "{err}"
    );
}

#[test]
fn messages_are_versioned_json() {
    let m = detections("ten_1", "str_a", 7);
    let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["event"]["type"], "detections");
    assert_eq!(json["event"]["detections"][0]["box"][2], 0.3);
    assert_eq!(Envelope::from_json(&m.to_json()).unwrap(), m);
    let future =
        br#"{"v":2,"tenant":"t","event":{"type":"stream","stream":"s","state":"live","at":"x"}}"#;
    assert!(
        Envelope::from_json(future)
            .unwrap_err()
            .to_string()
            .contains("version 2")
    );
    assert!(Envelope::from_json(b"garbage").is_err());
}

#[tokio::test]
async fn in_process_round_trip() {
    round_trip(&Bus::connect(&BusConfig::InProcess).await.unwrap()).await;
}

fn redis_url() -> String {
    std::env::var("MEDIA_ANALYZER_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn redis_round_trip_and_replay() {
    let url = redis_url();
    let bus = Bus::connect(&url.parse().unwrap())
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required (scripts/test starts it): {e}"));
    round_trip(&bus).await;
    // Replay: the capped Stream per tenant/stream, after a given seq.
    let tenant = unique("ten_");
    for seq in 1..=5 {
        bus.publish(&detections(&tenant, "str_r", seq))
            .await
            .unwrap();
    }
    let replayed = bus.replay(&tenant, "str_r", 2).await.unwrap().unwrap();
    assert_eq!(
        replayed
            .iter()
            .map(|m| m.event.seq().unwrap())
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(
        bus.replay(&tenant, "str_other", 0)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    control_round_trip(&bus, &tenant).await;
    // A control signal is for hosts only: nothing of it is kept for a viewer's replay.
    assert!(
        bus.replay(&tenant, "", 0)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

/// A control signal (tenant-wide, no stream) reaches subscribers as it was sent.
async fn control_round_trip(bus: &Bus, tenant: &str) {
    let mut rx = bus.subscribe().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = Envelope::new(
        tenant,
        Event::Control(crate::Control::KeyRevoked {
            key: "key_0123456789abcdef".into(),
        }),
    );
    assert!(!revoked.event.for_viewers());
    let json: serde_json::Value = serde_json::from_slice(&revoked.to_json()).unwrap();
    assert_eq!(json["event"]["type"], "control", "{json}");
    assert_eq!(json["event"]["action"], "key_revoked", "{json}");
    bus.publish(&revoked).await.unwrap();
    // Other tests publish on the same server: skip their tenants' messages.
    loop {
        let m = next_message(&mut rx, Duration::from_secs(10)).await;
        if m.tenant == tenant {
            assert_eq!(m, revoked);
            break;
        }
    }
}

/// A subscription lives as long as its receiver: dropping it closes the Redis subscription
/// connection, also when nothing is being published (no task left waiting for a message).
#[tokio::test]
async fn a_dropped_subscription_closes_its_redis_connection() {
    let server = RedisServer::start(None);
    let bus = Bus::connect(&server.url().parse().unwrap()).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let patterns = async |admin: &mut redis::aio::MultiplexedConnection| -> i64 {
        redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(admin)
            .await
            .unwrap()
    };
    let rx = bus.subscribe().await.unwrap();
    assert_eq!(patterns(&mut admin).await, 1);
    drop(rx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while patterns(&mut admin).await != 0 {
        assert!(
            Instant::now() < deadline,
            "the subscription outlived its receiver"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis goes away mid-stream: publishing never blocks, the gap is counted, and after Redis is back
/// publishing resumes and the subscription is re-established by itself.
#[tokio::test]
async fn redis_outage_is_counted_and_recovered_from() {
    let server = RedisServer::start(None);
    let url = format!("redis://127.0.0.1:{}", server.port);
    let bus = Bus::connect(&url.parse().unwrap()).await.unwrap();
    let mut rx = bus.subscribe().await.unwrap();
    let publisher = bus.publisher(16);
    publisher.send(detections("ten_o", "str_o", 1));
    assert_eq!(
        next_message(&mut rx, Duration::from_secs(5))
            .await
            .event
            .seq(),
        Some(1)
    );

    let port = server.kill();
    let mut sent = 1;
    for seq in 2..=40 {
        publisher.send(detections("ten_o", "str_o", seq));
        sent += 1;
    }
    // `send` never waits for room: once the queue (16) is full the rest are dropped and counted at
    // once (this test's runtime is single-threaded, so the queue is not drained meanwhile).
    let dropped = bus.stats().gap.load(Ordering::Relaxed);
    assert!(
        dropped >= 39 - 16,
        "{dropped} of 39 dropped with the queue full"
    );
    let started = Instant::now();
    while bus.stats().gap.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no gap counted during the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let _server = RedisServer::start(Some(port));
    // The subscription comes back on its own and says so.
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
            Ok(Some(Delivery::Resubscribed)) => break,
            Ok(Some(Delivery::Message(_))) => {}
            other => panic!("expected a resubscription, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(15));
    }
    // Publishing resumes: a new message goes through end to end.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seq = 100;
    loop {
        publisher.send(detections("ten_o", "str_o", seq));
        sent += 1;
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(Delivery::Message(m))) if m.event.seq() >= Some(100) => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "publishing did not resume");
        seq += 1;
    }
    assert!(bus.stats().resubscribed.load(Ordering::Relaxed) >= 1);
    // Every message sent is accounted for: published, or counted in the gap — none vanish.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let gap = bus.stats().gap.load(Ordering::Relaxed);
        let published = bus.stats().published.load(Ordering::Relaxed);
        if gap + published == sent {
            assert!(
                gap >= dropped && published >= 2,
                "gap {gap}, published {published}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sent} sent, {published} published, {gap} in the gap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Pub/Sub emulator (Google Cloud CLI's `cloud-pubsub-emulator`), started on a free port.
struct Emulator {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_emulator() -> (Emulator, String) {
    let binary = std::env::var("MEDIA_ANALYZER_PUBSUB_EMULATOR").unwrap_or_else(|_| {
        "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator".into()
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(&binary)
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--dir={}", dir.path().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("the Pub/Sub emulator at {binary} is required (Google Cloud CLI emulator package): {e}"));
    let emulator = Emulator { child, _dir: dir };
    let started = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read(&mut buf).is_ok_and(|n| n > 0) && buf.starts_with(b"HTTP/1.") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Pub/Sub emulator did not start in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (emulator, format!("127.0.0.1:{port}"))
}

#[tokio::test]
async fn pubsub_round_trip_on_the_emulator() {
    let (_emulator, host) = start_emulator();
    let config = BusConfig::PubSub {
        project: "test-project".into(),
        prefix: unique("ma-test-"),
        emulator: Some(host),
    };
    let bus = Bus::connect(&config).await.unwrap();
    round_trip(&bus).await;
    // Other kinds go to their own topics and arrive too.
    let mut rx = bus.subscribe().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let change = Envelope::new(
        "ten_p",
        Event::Stream(StreamChange {
            stream: "str_p".into(),
            state: "live".into(),
            at: "2026-11-25T12:00:00Z".into(),
        }),
    );
    bus.publish(&change).await.unwrap();
    assert_eq!(next_message(&mut rx, Duration::from_secs(10)).await, change);
    control_round_trip(&bus, "ten_p").await;
}

#[test]
fn event_times_have_a_fixed_width_so_text_order_is_time_order() {
    assert_eq!(rfc3339_ms(1_764_590_405_000), "2025-12-01T12:00:05.000Z");
    assert_eq!(rfc3339_ms(1_764_590_405_120), "2025-12-01T12:00:05.120Z");
    let times = [
        0,
        5,
        999,
        1_000,
        1_764_590_405_000,
        1_764_590_405_007,
        1_764_590_405_120,
    ];
    for pair in times.windows(2) {
        assert!(rfc3339_ms(pair[0]) < rfc3339_ms(pair[1]), "{pair:?}");
    }
}
