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
            effects: Vec::new(),
            effects_failed: Vec::new(),
            scene: None,
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

/// Detections also go to the tenant's own channel `ma:detections:{tenant}` (what a Spin Redis
/// trigger subscribes to: one named channel); other events and other tenants' detections do not.
#[tokio::test]
async fn redis_detections_reach_the_tenant_channel_and_nothing_else_does() {
    use futures::StreamExt;
    let url = redis_url();
    let bus = Bus::connect(&url.parse().unwrap()).await.unwrap();
    let (tenant, other) = (unique("ten_"), unique("ten_"));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("ma:detections:{tenant}"))
        .await
        .unwrap();
    let offline = Envelope::new(
        &tenant,
        Event::Stream(crate::StreamChange {
            stream: "str_s".into(),
            state: "offline".into(),
            at: "2026-12-04T00:00:00Z".into(),
        }),
    );
    bus.publish(&offline).await.unwrap();
    bus.publish(&detections(&other, "str_s", 1)).await.unwrap();
    bus.publish(&detections(&tenant, "str_s", 7)).await.unwrap();
    let mut messages = pubsub.on_message();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a message within 5 s")
        .unwrap();
    let envelope = Envelope::from_json(first.get_payload_bytes()).unwrap();
    assert_eq!(envelope, detections(&tenant, "str_s", 7));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), messages.next())
            .await
            .is_err(),
        "nothing else on the channel"
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

// ---- the batch work queue ----

fn job(stream: &str, segment: i64) -> SegmentJob {
    SegmentJob::new(stream, segment, 1_700_000_000_000 + segment)
}

/// A worker's claims: what it got, in order.
async fn take(queue: &SegmentQueue, within: Duration) -> Option<ClaimedJob> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(claimed) = queue.next(Duration::from_millis(500)).await.unwrap() {
            return Some(claimed);
        }
    }
    None
}

#[tokio::test]
async fn redis_work_queue_delivers_each_job_to_one_worker_and_a_dead_workers_job_to_another() {
    let redis = RedisServer::start(None);
    let config: BusConfig = redis.url().parse().unwrap();
    let lease = Duration::from_millis(800);
    let ingest = SegmentQueue::connect(&config, "ingest", lease)
        .await
        .unwrap()
        .unwrap();
    let a = SegmentQueue::connect(&config, "worker-a", lease)
        .await
        .unwrap()
        .unwrap();
    let b = SegmentQueue::connect(&config, "worker-b", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ingest.engine_name(), "redis");
    assert!(
        a.next(Duration::from_millis(50)).await.unwrap().is_none(),
        "nothing queued"
    );

    for segment in 0..3 {
        ingest.push(&job("str_a", segment)).await.unwrap();
    }
    let depth = ingest.depth().await.unwrap().unwrap();
    assert_eq!((depth.waiting, depth.in_flight), (3, 0));
    assert!(depth.oldest_age < Duration::from_secs(60), "{depth:?}");

    // Two workers take different jobs, oldest first.
    let first = take(&a, Duration::from_secs(5)).await.unwrap();
    let second = take(&b, Duration::from_secs(5)).await.unwrap();
    assert_eq!((first.job.segment, second.job.segment), (0, 1));
    let depth = ingest.depth().await.unwrap().unwrap();
    assert_eq!((depth.waiting, depth.in_flight), (1, 2));

    // A finishes its job: gone from the queue for good.
    a.done(first).await.unwrap();
    // B "dies" holding segment 1. Its job outlives the lease and A takes it over: before the
    // last new job, as the oldest.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let taken_over = take(&a, Duration::from_secs(5)).await.unwrap();
    assert_eq!(taken_over.job, job("str_a", 1));
    assert!(
        !b.renew(&second).await.unwrap(),
        "B's claim is no longer its own"
    );
    assert!(a.renew(&taken_over).await.unwrap(), "A's is");
    // Renewing keeps it: after another lease nobody takes it from A.
    tokio::time::sleep(lease / 2).await;
    assert!(a.renew(&taken_over).await.unwrap());
    tokio::time::sleep(lease / 2 + Duration::from_millis(100)).await;
    let last = take(&b, Duration::from_secs(5)).await.unwrap();
    assert_eq!(last.job.segment, 2, "the renewed job stays A's");
    a.done(taken_over).await.unwrap();
    b.done(last).await.unwrap();
    let depth = ingest.depth().await.unwrap().unwrap();
    assert_eq!((depth.waiting, depth.in_flight), (0, 0));
    assert_eq!(depth.oldest_age, Duration::ZERO);
    assert!(
        take(&a, Duration::from_millis(600)).await.is_none(),
        "each job once"
    );

    // Something that is not a job is dropped, and the next job still comes.
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::AsyncCommands::xadd(
        &mut c,
        segments::REDIS_JOBS_KEY,
        "*",
        &[("job", "{\"v\":1,\"stream\":\"../../etc\"")],
    )
    .await
    .unwrap();
    ingest.push(&job("str_b", 9)).await.unwrap();
    let next = take(&a, Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.job, job("str_b", 9));
    a.done(next).await.unwrap();
    let len: u64 = redis::AsyncCommands::xlen(&mut c, segments::REDIS_JOBS_KEY)
        .await
        .unwrap();
    assert_eq!(len, 0, "acknowledged and malformed entries are deleted");
}

#[tokio::test]
async fn redis_work_queue_survives_a_redis_restart_and_keeps_jobs_pushed_before_any_worker() {
    let redis = RedisServer::start(None);
    let config: BusConfig = redis.url().parse().unwrap();
    let lease = Duration::from_secs(30);
    let ingest = SegmentQueue::connect(&config, "ingest", lease)
        .await
        .unwrap()
        .unwrap();
    ingest.push(&job("str_a", 0)).await.unwrap();
    // The first worker connects after the job was pushed.
    let worker = SegmentQueue::connect(&config, "worker", lease)
        .await
        .unwrap()
        .unwrap();
    let claimed = take(&worker, Duration::from_secs(5)).await.unwrap();
    assert_eq!(claimed.job.segment, 0);
    worker.done(claimed).await.unwrap();

    // Redis restarts empty (no persistence here): the group is made again and work goes on.
    let port = redis.kill();
    let redis = RedisServer::start(Some(port));
    let mut failed = 0;
    let claimed = loop {
        let _ = ingest.push(&job("str_a", 1)).await.map_err(|_| failed += 1);
        match worker.next(Duration::from_millis(300)).await {
            Ok(Some(claimed)) => break claimed,
            Ok(None) | Err(_) => {
                assert!(failed < 50, "no job after Redis came back");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(claimed.job.stream, "str_a");
    worker.done(claimed).await.unwrap();
    drop(redis);
}

#[tokio::test]
async fn pubsub_work_queue_delivers_jobs_and_redelivers_one_handed_back() {
    let (_emulator, host) = start_emulator();
    let config = BusConfig::PubSub {
        project: "test-project".into(),
        prefix: unique("ma-jobs-"),
        emulator: Some(host),
    };
    let lease = Duration::from_secs(30);
    let ingest = SegmentQueue::connect(&config, "ingest", lease)
        .await
        .unwrap()
        .unwrap();
    let worker = SegmentQueue::connect(&config, "worker", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(worker.engine_name(), "pubsub");
    assert_eq!(
        worker.depth().await.unwrap(),
        None,
        "Cloud Monitoring's to tell"
    );
    for segment in 0..2 {
        ingest.push(&job("str_p", segment)).await.unwrap();
    }
    let mut seen = Vec::new();
    let first = take(&worker, Duration::from_secs(20)).await.unwrap();
    seen.push(first.job.segment);
    // Handed back (a shutdown): delivered again.
    let handed_back = first.job.clone();
    worker.again(first).await.unwrap();
    let mut again = false;
    while seen.len() < 3 {
        let claimed = take(&worker, Duration::from_secs(20)).await.expect("a job");
        again |= claimed.job == handed_back;
        seen.push(claimed.job.segment);
        worker.done(claimed).await.unwrap();
    }
    assert!(again, "the job handed back came again: {seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![0, 1]);
    assert!(
        take(&worker, Duration::from_secs(2)).await.is_none(),
        "acknowledged jobs stay gone"
    );
}
