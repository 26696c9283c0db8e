//! Real-time results end to end: RTMP in (ffmpeg) → analysis → bus → WebSocket viewers; resume
//! from the store with `?since=`; tenant isolation; and two hosts (`--role ingest` and
//! `--role api`) that meet only through Redis and PostgreSQL.

use std::time::Duration;

use e2e::*;
use serde_json::Value;

fn is_cup_frame(e: &Value) -> bool {
    e["type"] == "detections"
        && e["detections"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["label"] == "cup"))
}

/// The cup in coffee.png is in the middle of the picture.
fn assert_cup_where_it_is(e: &Value) {
    let cup = e["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == "cup")
        .unwrap();
    let b: Vec<f64> = cup["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (cx, cy) = (b[0] + b[2] / 2.0, b[1] + b[3] / 2.0);
    assert!(
        (0.2..0.8).contains(&cx) && (0.2..0.8).contains(&cy),
        "cup box {b:?}"
    );
    assert_eq!(cup["component"], "object-detector");
    assert_eq!(
        (e["width"].as_u64(), e["height"].as_u64()),
        (Some(640), Some(360))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_reach_websocket_viewers_live_and_on_resume() {
    let photo = fixture_photo("coffee");
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let base = server.http("");
    let token = server.playback_token().await;

    // Authorisation: a bad token, no credentials, another stream's token.
    assert!(
        Viewer::connect(&base, &server.stream_id, "token=nope")
            .await
            .is_err()
    );
    assert!(Viewer::connect(&base, &server.stream_id, "").await.is_err());
    assert!(
        Viewer::connect(&base, "str_other", &format!("token={token}"))
            .await
            .is_err()
    );

    let mut viewer = Viewer::connect(&base, &server.stream_id, &format!("token={token}"))
        .await
        .unwrap();
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 6);
    let seen = viewer.until(Duration::from_secs(20), is_cup_frame).await;
    assert!(
        seen.iter()
            .any(|e| e["type"] == "stream" && e["state"] == "live"),
        "the stream's going live is announced: {seen:?}"
    );
    let first_cup = seen.last().unwrap().clone();
    assert_cup_where_it_is(&first_cup);
    assert_eq!(first_cup["stream"], server.stream_id.as_str());
    assert!(first_cup["wallclock"].as_str().unwrap().ends_with('Z'));
    // A live frame says when its video arrived and where its time went on the host.
    assert!(first_cup["ingested"].as_str().unwrap() <= first_cup["wallclock"].as_str().unwrap());
    let timing = &first_cup["timing"];
    let ms = |k: &str| {
        timing[k]
            .as_f64()
            .unwrap_or_else(|| panic!("timing.{k} in {first_cup}"))
    };
    assert!(ms("inference_ms") > 0.0, "{timing}");
    assert!(ms("analysis_ms") + 1.0 >= ms("inference_ms"), "{timing}");
    for stage in ["reorder_ms", "decode_ms", "queue_ms"] {
        assert!(ms(stage) < 10_000.0, "{timing}");
    }
    // Frames arrive in order (several analysers may work on a stream's frames at once).
    let mut last = first_cup["seq"].as_u64().unwrap();
    let rest = viewer
        .until(Duration::from_secs(30), |e| {
            e["type"] == "stream" && e["state"] == "offline"
        })
        .await;
    for e in rest.iter().filter(|e| e["type"] == "detections") {
        let seq = e["seq"].as_u64().unwrap();
        assert!(seq > last, "out of order: {seq} after {last}");
        last = seq;
    }
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");

    // A viewer that comes back with ?since= gets what it missed from the store, in order.
    let since = first_cup["seq"].as_u64().unwrap();
    let mut resumed = Viewer::connect(
        &base,
        &server.stream_id,
        &format!("token={token}&since={since}"),
    )
    .await
    .unwrap();
    let mut replayed = Vec::new();
    while let Some(e) = resumed.next(Duration::from_secs(2)).await {
        replayed.push(e);
    }
    assert!(!replayed.is_empty(), "nothing replayed after frame {since}");
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > since,
        "{seqs:?}"
    );
    assert!(replayed.iter().any(is_cup_frame));

    // The bus and the viewers show in /metrics.
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "media_analyzer_bus_published_total{backend=\"memory\"}"
        ) > 0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "media_analyzer_ws_messages_total") > 0,
        "{metrics}"
    );
    server.stop().await;
}

/// A bearer API key works too, but only the owning tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_viewers_are_tenant_scoped() {
    let server = TestServer::start().await;
    let base = server.http("");
    let store = server.running.as_ref().unwrap().store.clone();
    let other = store.create_tenant("other").await.unwrap();
    let other_key = store.create_api_key(&other.id, "t").await.unwrap().secret;
    let request = |key: &str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/api/v1/streams/{}/events",
            base.replacen("http://", "ws://", 1),
            server.stream_id
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        req
    };
    let err = tokio_tungstenite::connect_async(request(&other_key))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert!(
        tokio_tungstenite::connect_async(request(&server.api_key))
            .await
            .is_ok()
    );
    server.stop().await;
}

/// Two hosts on one machine: `--role ingest` (RTMP, HLS packaging, analysis) and `--role api`
/// (API, HLS delivery, WebSocket viewers), sharing only Redis (the bus) and PostgreSQL (the
/// store) — and the HLS folder, as a shared volume would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_api_hosts_meet_through_redis_and_postgres() {
    use media_analyzer::config::Role;
    let photo = fixture_photo("coffee");
    let redis = std::env::var("MEDIA_ANALYZER_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let (store_url, db, admin) = postgres_test_database("ma_e2e").await;

    let ingest = TestServer::start_with(|c| {
        c.role = Role::Ingest;
        c.store = store_url.clone();
        c.bus = redis.parse().unwrap();
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let hls_root = ingest.data.path().join("hls");
    let mut api = TestServer::start_with(|c| {
        c.role = Role::Api;
        c.store = store_url.clone();
        c.bus = redis.parse().unwrap();
        c.hls.root = hls_root.clone();
    })
    .await;
    assert!(
        api.running.as_ref().unwrap().rtmp_addr.is_none(),
        "an API host takes no RTMP"
    );
    api.api_key = ingest.api_key.clone();
    api.stream_key = ingest.stream_key.clone();
    api.stream_id = ingest.stream_id.clone();

    // The ingest host serves health and metrics only; the API lives on the API host.
    let (status, _) = ingest.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = ingest.get("/api/v1/streams").await;
    assert_eq!(status, 404, "{body}");

    let token = api.playback_token().await;
    let mut viewer = Viewer::connect(&api.http(""), &api.stream_id, &format!("token={token}"))
        .await
        .unwrap();
    let publisher = publish_photo(&photo, &ingest.rtmp_url(&ingest.stream_key), 5);
    let seen = viewer.until(Duration::from_secs(25), is_cup_frame).await;
    assert_cup_where_it_is(seen.last().unwrap());
    // HLS written by the ingest host is served by the API host (once the first segment closes).
    let playlist_url = api.http(&format!("/hls/{}/index.m3u8?token={token}", api.stream_id));
    let started = std::time::Instant::now();
    loop {
        let (status, playlist) = http_get(&playlist_url, None).await;
        if status == 200 {
            assert!(playlist.contains("#EXTM3U"), "{playlist}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{status}: {playlist}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");
    viewer
        .until(Duration::from_secs(15), |e| {
            e["type"] == "stream" && e["state"] == "offline"
        })
        .await;
    // The stream's state and detections went through the shared store.
    let stream = api.stream_json().await;
    assert_eq!(stream["state"], "offline");
    let (status, body) = api
        .get(&format!(
            "/api/v1/streams/{}/detections?limit=1000",
            api.stream_id
        ))
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"cup\""), "{body}");

    api.stop().await;
    ingest.stop().await;
    drop_test_database(&admin, &db).await;
}

/// Redis dies mid-stream and comes back: analysis goes on, nothing stored is lost, and a viewer
/// that stayed connected to the API gets every frame with detections (re-synchronised from the
/// store once the bus is back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_loses_nothing_for_viewers() {
    let photo = fixture_photo("coffee");
    let redis = RedisServer::start(None);
    let url = redis.url();
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
        c.bus = url.parse().unwrap();
    })
    .await;
    let token = server.playback_token().await;
    let mut viewer = Viewer::connect(
        &server.http(""),
        &server.stream_id,
        &format!("token={token}"),
    )
    .await
    .unwrap();
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 9);
    viewer.until(Duration::from_secs(20), is_cup_frame).await;

    let port = redis.port;
    drop(redis); // the bus goes away mid-stream
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _redis = RedisServer::start(Some(port));

    let (ok, stderr) = finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    let mut received = std::collections::BTreeSet::new();
    while let Some(e) = viewer.next(Duration::from_secs(8)).await {
        if is_cup_frame(&e) {
            received.insert(e["seq"].as_u64().unwrap());
        }
    }
    let (_, metrics) = server.get("/metrics").await;
    let gap = metric(&metrics, "media_analyzer_bus_gap_total{backend=\"redis\"}");
    assert!(
        gap > 0,
        "the outage should have cost some bus messages: {metrics}"
    );

    // Everything the store has (from the first frame the viewer saw) reached the viewer.
    let (status, body) = server
        .get(&format!(
            "/api/v1/streams/{}/detections?limit=1000",
            server.stream_id
        ))
        .await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    let first = *received.iter().next().unwrap();
    let stored: std::collections::BTreeSet<u64> = page["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "cup")
        .map(|d| d["seq"].as_u64().unwrap())
        .filter(|&s| s >= first)
        .collect();
    let missing: Vec<_> = stored.difference(&received).collect();
    assert!(
        missing.is_empty(),
        "viewer missed frames {missing:?} of {stored:?} (gap {gap})"
    );
    server.stop().await;
}

/// A viewer that stops reading falls behind the stream's ring: it is told how much it skipped
/// (`lagged`) and then carries on with live events; a viewer that keeps reading gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_is_told_it_lagged_and_never_slows_the_others() {
    let server = TestServer::start().await;
    let running = server.running.as_ref().unwrap();
    let tenant = running
        .store
        .stream_tenant(&server.stream_id)
        .await
        .unwrap()
        .unwrap();
    let token = server.playback_token().await;
    let query = format!("token={token}");
    let mut slow = Viewer::connect(&server.http(""), &server.stream_id, &query)
        .await
        .unwrap();
    let mut fast = Viewer::connect(&server.http(""), &server.stream_id, &query)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Big events and many of them, published far faster than a socket drains: the slow viewer's
    // kernel buffers fill and its place in the 256-event ring is overtaken.
    let detections: Vec<bus::Detection> = (0..60)
        .map(|i| bus::Detection {
            label: format!("brand:label-{i:03}"),
            score: 0.5,
            bbox: [0.1, 0.1, 0.2, 0.2],
            component: "test".into(),
        })
        .collect();
    let total = 3000u64;
    let fast_reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Some(e) = fast.next(Duration::from_secs(10)).await {
            if let Some(seq) = e["seq"].as_u64() {
                seqs.push(seq);
                if seq + 1 == total {
                    break;
                }
            }
        }
        seqs
    });
    for seq in 0..total {
        let event = bus::Event::Detections(bus::FrameDetections {
            effects: Vec::new(),
            effects_failed: Vec::new(),
            scene: None,
            stream: server.stream_id.clone(),
            seq,
            pts_ms: seq as i64 * 33,
            wallclock: "2026-11-25T12:00:00Z".into(),
            ingested: None,
            timing: None,
            width: 640,
            height: 360,
            detections: detections.clone(),
        });
        running
            .bus
            .publish(&bus::Envelope::new(&tenant, event))
            .await
            .unwrap();
        if seq % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let fast_seqs = fast_reader.await.unwrap();
    assert_eq!(
        fast_seqs.last(),
        Some(&(total - 1)),
        "the reading viewer kept up"
    );

    let mut lagged = None;
    let mut after = 0;
    while let Some(e) = slow.next(Duration::from_secs(3)).await {
        if e["type"] == "lagged" {
            lagged = Some(e.clone());
        } else if lagged.is_some() {
            after += 1;
        }
    }
    let lagged = lagged.expect("the slow viewer was told it lagged");
    assert!(lagged["skipped"].as_u64().unwrap() > 0, "{lagged}");
    assert!(after > 0, "events kept coming after the lagged notice");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metric(&metrics, "media_analyzer_ws_lagged_total") > 0,
        "{metrics}"
    );
    server.stop().await;
}
