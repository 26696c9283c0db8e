//! A fair share of analysis per live stream: several streams on one host with analysis on, more
//! than the machine can analyse at full rate; every stream gets about the same number of analysed
//! frames per second, none gets none, and the HLS path is intact for all of them.

use std::collections::HashMap;
use std::time::Duration;

use e2e::*;

/// Publishes `n` streams of the coffee photo (640x360, 30 fps) for `seconds` at once and counts the
/// analysed frames each one gets (detections events on the bus, one per analysed frame) over the
/// middle of the run, once every stream is going.
async fn analysed_per_stream(n: usize, seconds: u32) -> (TestServer, Vec<(String, f64)>) {
    let photo = fixture_photo("coffee");
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let mut streams = vec![(server.stream_id.clone(), server.stream_key.clone())];
    for i in 1..n {
        let (status, body) = http_send(
            "POST",
            &server.http("/api/v1/streams"),
            Some(&server.api_key),
            &format!("{{\"name\":\"fair-{i}\"}}"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        streams.push((
            v["stream"]["id"].as_str().unwrap().to_string(),
            v["stream_key"].as_str().unwrap().to_string(),
        ));
    }
    let mut deliveries = server
        .running
        .as_ref()
        .unwrap()
        .bus
        .subscribe()
        .await
        .unwrap();
    let publishers: Vec<_> = streams
        .iter()
        .map(|(_, key)| publish_photo(&photo, &server.rtmp_url(key), seconds))
        .collect();
    // Let every stream start (and the decoders settle on their effort), then count.
    let warmup = Duration::from_secs(6);
    let window = Duration::from_secs(seconds as u64) - warmup - Duration::from_secs(2);
    let start = tokio::time::Instant::now() + warmup;
    let end = start + window;
    let mut counts: HashMap<String, u64> = HashMap::new();
    loop {
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        match tokio::time::timeout_at(end, deliveries.recv()).await {
            Ok(Some(bus::Delivery::Message(envelope))) => {
                if let bus::Event::Detections(d) = &envelope.event
                    && tokio::time::Instant::now() >= start
                {
                    *counts.entry(d.stream.clone()).or_default() += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    for p in publishers {
        let (ok, stderr) = finish(p, Duration::from_secs(30)).await;
        assert!(ok, "{stderr}");
    }
    let rates = streams
        .iter()
        .map(|(id, _)| {
            let fps = counts.get(id).copied().unwrap_or(0) as f64 / window.as_secs_f64();
            (id.clone(), fps)
        })
        .collect();
    (server, rates)
}

fn assert_fair(rates: &[(String, f64)]) {
    let values: Vec<f64> = rates.iter().map(|(_, r)| *r).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!(
        values.iter().all(|r| *r > 0.0),
        "a stream got no analysis: {rates:?}"
    );
    for (stream, r) in rates {
        assert!(
            (r - mean).abs() <= 0.2 * mean,
            "stream {stream} got {r:.2} analysed frames/s, the mean is {mean:.2}: {rates:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_live_stream_gets_its_share_of_analysis() {
    let (server, rates) = analysed_per_stream(5, 22).await;
    eprintln!("analysed frames/s per stream: {rates:?}");
    assert_fair(&rates);
    // The video path was untouched: every stream's playlist ends (the publisher has gone; the
    // last segment is written when the host sees the connection close, which on a loaded 2-core
    // machine can take a few seconds) and every segment of its 22 s is on disk (the live playlist
    // lists only the last few).
    for (id, _) in &rates {
        server
            .wait_for_playlist_of(id, Duration::from_secs(20), |p| {
                p.contains("#EXT-X-ENDLIST")
            })
            .await;
        let segments = segment_files(&server.hls_dir(id)).len();
        assert!(
            segments >= 10,
            "{id} lost media: {segments} segments of 2 s"
        );
    }
    server.stop().await;
}
