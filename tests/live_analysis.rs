//! The live path end to end: RTMP in (ffmpeg) → hub → decoder → detector components → store →
//! GET /api/v1/streams/{id}/detections.

use std::time::{Duration, Instant};

use e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_in_detections_out() {
    let photo = fixture_photo("coffee");
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 8);
    let started = Instant::now();
    let path = format!("/api/v1/streams/{}/detections?limit=1000", server.stream_id);
    let detections = loop {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let found = page["detections"].as_array().unwrap().clone();
        if found.iter().any(|d| d["label"] == "cup") {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no cup detected within 20 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cup = detections.iter().find(|d| d["label"] == "cup").unwrap();
    assert_eq!(cup["component"], "object-detector");
    assert!(cup["score"].as_f64().unwrap() > 0.35);
    let b: Vec<f64> = cup["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        b.iter().all(|v| (0.0..=1.0).contains(v)) && b[2] > 0.1,
        "{b:?}"
    );
    assert!(cup["pts_ms"].as_i64().unwrap() >= 0);
    // The analysis shows in /metrics.
    let (_, metrics) = server.get("/metrics").await;
    let counter = |name: &str| metric(&metrics, &format!("media_analyzer_analysis_{name}"));
    assert!(counter("frames_analysed_total") > 0);
    assert!(counter("detections_total") > 0);
    assert!(counter("inference_microseconds_total") > 0);
    assert_eq!(counter("component_failures_total"), 0);
    // Every analysed frame went through each stage's latency histogram.
    for stage in ["decode", "queue", "analysis", "output"] {
        let count = counter(&format!("stage_seconds_count{{stage=\"{stage}\"}}"));
        assert!(count > 0, "{stage}: {count}");
        assert!(
            count <= counter("frames_decoded_total"),
            "{stage}: {count} frames"
        );
    }
    // The video path is unaffected: HLS segments are written while analysis runs.
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");
    server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    assert!(segment_files(&server.hls_dir(&server.stream_id)).len() >= 3);
    server.stop().await;
}

/// Batch mode: the live decoder idles, each closed segment is queued in the store and analysed
/// from disk, every Nth frame, nothing skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_analyses_every_nth_frame_of_each_segment() {
    let photo = fixture_photo("coffee");
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let (status, body) = http_send(
        "PUT",
        &server.http(&format!("/api/v1/streams/{}/mode", server.stream_id)),
        Some(&server.api_key),
        r#"{"mode":"batch","every":15}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 6);
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");
    server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let segments = segment_files(&server.hls_dir(&server.stream_id)).len() as u64;
    assert!(segments >= 3, "{segments} segments");

    let counter =
        |metrics: &str, name: &str| metric(metrics, &format!("media_analyzer_analysis_{name}"));
    let started = Instant::now();
    loop {
        let (_, metrics) = server.get("/metrics").await;
        if counter(&metrics, "batch_segments_done_total") >= segments {
            assert_eq!(counter(&metrics, "batch_segments_failed_total"), 0);
            assert_eq!(counter(&metrics, "batch_segments_refused_total"), 0);
            assert_eq!(counter(&metrics, "batch_queue_depth"), 0);
            // 6 s at 30 fps, every 15th frame: about 12 frames, none skipped.
            let analysed = counter(&metrics, "frames_analysed_total");
            assert!((10..=14).contains(&analysed), "{analysed} frames analysed");
            assert_eq!(counter(&metrics, "frames_skipped_total"), 0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "batch analysis did not finish {segments} segments in 60 s: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let path = format!("/api/v1/streams/{}/detections?limit=1000", server.stream_id);
    let (status, body) = server.get(&path).await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let detections = page["detections"].as_array().unwrap();
    assert!(detections.iter().any(|d| d["label"] == "cup"), "{body}");
    for d in detections {
        let (seq, pts) = (d["seq"].as_i64().unwrap(), d["pts_ms"].as_i64().unwrap());
        assert_eq!(seq % 15, 0, "every 15th frame only: {d}");
        assert!(
            (pts - seq * 1000 / 30).abs() <= 34,
            "seq follows media time: {d}"
        );
    }
    server.stop().await;
}

/// A mode switch is a signal: it reaches the stream's live decoder at once, both ways. The store
/// is read when the stream starts and then only every 30 s as a fallback, so a switch seen within
/// half a second came by the signal (`PUT …/mode` → bus control signal → the decoder's `watch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_switch_reaches_the_live_decoder_at_once() {
    let photo = fixture_photo("coffee");
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 12);
    let counter =
        |metrics: &str, name: &str| metric(metrics, &format!("media_analyzer_analysis_{name}"));
    let started = Instant::now();
    loop {
        let (_, metrics) = server.get("/metrics").await;
        if counter(&metrics, "frames_analysed_total") > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no live analysis within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let path = server.http(&format!("/api/v1/streams/{}/mode", server.stream_id));
    for (switches, mode) in [(1, "batch"), (2, "realtime")] {
        let body = format!(r#"{{"mode":"{mode}","every":15}}"#);
        let (status, answer) = http_send("PUT", &path, Some(&server.api_key), &body).await;
        assert_eq!(status, 200, "{answer}");
        let asked = Instant::now();
        loop {
            let (_, metrics) = server.get("/metrics").await;
            if counter(&metrics, "mode_changes_total") >= switches {
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_millis(500),
                "the decoder had not switched to {mode} half a second after the request"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "the switch to {mode} reached the decoder within {:?} of the answer",
            asked.elapsed()
        );
    }
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");
    server.stop().await;
}
