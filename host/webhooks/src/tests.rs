//! Deliveries to real HTTP endpoints on 127.0.0.1: a receiver that checks signatures, one that
//! fails before it accepts, one that never answers.

use std::sync::atomic::AtomicU32;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::*;

/// What a receiver got: per request, its headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A webhook's delivery counters as the store has them now.
async fn deliveries(store: &store::Store, tenant: &str, hook: &str) -> store::DeliveryCounts {
    store
        .webhook(tenant, hook)
        .await
        .unwrap()
        .expect("the webhook is stored")
        .deliveries
}

/// An HTTP receiver that answers 500 to its first `fail_first` requests, then 204.
async fn receiver(fail_first: u32) -> (String, Received) {
    let received = Received::default();
    let failures = Arc::new(AtomicU32::new(fail_first));
    let app = axum::Router::new()
        .route(
            "/in",
            post(
                |State((received, failures)): State<(Received, Arc<AtomicU32>)>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    received.lock().unwrap().push((headers, body.to_vec()));
                    let fail = failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state((received.clone(), failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// An endpoint that takes connections and never answers.
async fn hanging_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

fn alert(tenant: &str, id: &str) -> bus::Envelope {
    bus::Envelope::new(
        tenant,
        bus::Event::Alert(bus::Alert {
            id: id.into(),
            stream: "str_main".into(),
            seq: 30,
            pts_ms: 3_000,
            wallclock: "2026-12-03T10:00:00.000Z".into(),
            component: "brand-rules".into(),
            rule: "on-screen".into(),
            severity: "info".into(),
            message: "Acme on screen for 3.0 s".into(),
            detections: Vec::new(),
        }),
    )
}

fn quick(allow_private: bool) -> WebhookConfig {
    WebhookConfig {
        policy: AddressPolicy { allow_private },
        attempts: 3,
        timeout: Duration::from_millis(400),
        first_backoff: Duration::from_millis(50),
        queue: 2,
        dispatch_queue: 64,
    }
}

/// Waits (up to 10 s) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap().to_str().unwrap()
}

/// A delivery is signed with the webhook's secret, keeps its id over retries, is tried again
/// after failures until the endpoint takes it, and reaches only the tenant's webhooks that take
/// its kind.
#[tokio::test]
async fn deliveries_are_signed_retried_with_one_id_and_go_only_to_their_tenant() {
    let (store, _dir) = store().await;
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    let (url, received) = receiver(2).await;
    let (other_url, other_received) = receiver(0).await;
    let hook = store
        .create_webhook(&a.id, &url, &["alert".into()], "key_a")
        .await
        .unwrap();
    // Another tenant's webhook, and one of ours for stream events only.
    store
        .create_webhook(
            &b.id,
            &other_url,
            &["alert".into(), "stream".into()],
            "key_b",
        )
        .await
        .unwrap();
    store
        .create_webhook(&a.id, &other_url, &["stream".into()], "key_a")
        .await
        .unwrap();
    let webhooks = Webhooks::start(store.clone(), quick(true)).unwrap();
    webhooks.observe(&alert(&a.id, "alr_1"));
    until("three attempts", async || {
        received.lock().unwrap().len() == 3
    })
    .await;
    until("the delivery recorded", async || {
        let counts = deliveries(&store, &a.id, &hook.id).await;
        counts.delivered == 1
    })
    .await;
    let requests = received.lock().unwrap().clone();
    for (n, (headers, body)) in requests.iter().enumerate() {
        assert_eq!(
            header(headers, SIGNATURE_HEADER),
            signature(&hook.secret, body)
        );
        assert_ne!(
            header(headers, SIGNATURE_HEADER),
            signature("whsec_wrong", body)
        );
        assert_eq!(header(headers, DELIVERY_HEADER), "alr_1");
        assert_eq!(header(headers, EVENT_HEADER), "alert");
        assert_eq!(header(headers, ATTEMPT_HEADER), (n + 1).to_string());
        let event: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (event["type"].as_str(), event["id"].as_str()),
            (Some("alert"), Some("alr_1"))
        );
    }
    let counts = deliveries(&store, &a.id, &hook.id).await;
    assert_eq!(
        (counts.delivered, counts.failed, counts.last_status),
        (1, 0, 204)
    );
    assert_eq!(webhooks.stats().attempts_failed.load(Ordering::Relaxed), 2);
    // Detections are never delivered; the other tenant's and the stream-only webhook got nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(other_received.lock().unwrap().is_empty());
}

/// An endpoint that never answers costs the sender nothing and the tenant's other webhook no
/// delay: its attempts time out, the event is given up on after the last, and what overflows
/// its queue is dropped — each counted on the webhook.
#[tokio::test]
async fn a_hanging_endpoint_is_counted_and_dropped_and_never_slows_anything_else() {
    let (store, _dir) = store().await;
    let a = store.create_tenant("a").await.unwrap();
    let hanging = store
        .create_webhook(&a.id, &hanging_endpoint().await, &["alert".into()], "key")
        .await
        .unwrap();
    let (url, received) = receiver(0).await;
    store
        .create_webhook(&a.id, &url, &["alert".into()], "key")
        .await
        .unwrap();
    let webhooks = Webhooks::start(store.clone(), quick(true)).unwrap();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..8 {
        let observed = Instant::now();
        webhooks.observe(&alert(&a.id, &format!("alr_{n}")));
        slowest = slowest.max(observed.elapsed());
        // Paced, so that only the hanging endpoint's queue fills.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        slowest < Duration::from_millis(5),
        "observing took {slowest:?}"
    );
    until("the healthy endpoint's 8 events", async || {
        received.lock().unwrap().len() == 8
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the healthy endpoint waited {:?}",
        started.elapsed()
    );
    let ids: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| header(h, DELIVERY_HEADER).to_string())
        .collect();
    assert_eq!(
        ids,
        (0..8).map(|n| format!("alr_{n}")).collect::<Vec<_>>(),
        "in order"
    );
    // One in flight, two queued, five dropped; each of the three given up after 3 attempts.
    until("every event failed or dropped", async || {
        let counts = deliveries(&store, &a.id, &hanging.id).await;
        counts.failed + counts.dropped == 8
    })
    .await;
    let counts = deliveries(&store, &a.id, &hanging.id).await;
    assert_eq!((counts.failed, counts.dropped, counts.delivered), (3, 5, 0));
    assert_eq!(counts.last_status, 0);
    assert!(
        counts.last_error.contains("no answer within 0.4 s"),
        "{}",
        counts.last_error
    );
}

/// By default a webhook cannot reach this host: the attempt says why; a deleted webhook gets
/// nothing more.
#[tokio::test]
async fn private_addresses_are_refused_by_default_and_deleted_webhooks_get_nothing() {
    let (store, _dir) = store().await;
    let a = store.create_tenant("a").await.unwrap();
    let (url, received) = receiver(0).await;
    let local = url.replace("127.0.0.1", "localhost");
    let hook = store
        .create_webhook(&a.id, &local, &["alert".into()], "key")
        .await
        .unwrap();
    let webhooks = Webhooks::start(store.clone(), quick(false)).unwrap();
    webhooks.observe(&alert(&a.id, "alr_1"));
    until("the refused delivery", async || {
        deliveries(&store, &a.id, &hook.id).await.failed == 1
    })
    .await;
    let counts = deliveries(&store, &a.id, &hook.id).await;
    assert!(
        counts.last_error.contains("loopback"),
        "{}",
        counts.last_error
    );
    assert!(received.lock().unwrap().is_empty());

    let allowed = Webhooks::start(store.clone(), quick(true)).unwrap();
    let hanging = store
        .create_webhook(&a.id, &hanging_endpoint().await, &["alert".into()], "key")
        .await
        .unwrap();
    allowed.observe(&alert(&a.id, "alr_2"));
    allowed.observe(&alert(&a.id, "alr_3"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.delete_webhook(&a.id, &hanging.id).await.unwrap());
    until("both events cancelled", async || {
        allowed.stats().cancelled.load(Ordering::Relaxed) == 2
    })
    .await;
}
