//! Ingest end to end: real publishers (ffmpeg, GStreamer) → RTMP → HLS on disk and over HTTP,
//! checked with ffprobe and the API.

use std::time::Duration;

use e2e::*;

fn count(text: &str, pat: &str) -> usize {
    text.matches(pat).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_becomes_valid_hls() {
    let server = TestServer::start().await;
    let publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 10, "640x360");

    // Live: the first segment is listed within a few seconds, the stream is live, no ENDLIST yet.
    let live = server
        .wait_for_playlist(Duration::from_secs(8), |p| p.contains("seg-0.ts"))
        .await;
    assert!(!live.contains("#EXT-X-ENDLIST"));
    let stream = server.stream_json().await;
    assert_eq!(stream["state"], "live");
    assert_eq!(stream["video"]["codec"], "h264");
    assert_eq!(
        (
            stream["video"]["width"].as_u64(),
            stream["video"]["height"].as_u64()
        ),
        (Some(640), Some(360))
    );
    assert_eq!(stream["audio"]["codec"], "aac");
    assert_eq!(stream["audio"]["sample_rate"], 44100);

    let (ok, stderr) = finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "ffmpeg failed: {stderr}");
    let playlist = server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let segments = count(&playlist, "#EXTINF:");
    assert!((4..=6).contains(&segments), "{playlist}");
    assert_eq!(
        count(&playlist, "#EXT-X-PROGRAM-DATE-TIME:"),
        segments,
        "PDT on every segment"
    );
    assert_eq!(count(&playlist, "#EXT-X-DISCONTINUITY\n"), 0);
    for line in playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")) {
        let d: f64 = line.trim_end_matches(',').parse().unwrap();
        assert!(
            d <= 2.6,
            "segment of {d} s with a 2 s target and 2 s GOP: {playlist}"
        );
    }
    assert_valid_hls(&server.playback_url().await, 10.0).await;

    let stream = server.stream_json().await;
    assert_eq!(stream["state"], "offline");
    assert_eq!(stream["segments"].as_u64(), Some(segments as u64));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_publish_becomes_valid_hls() {
    let server = TestServer::start().await;
    let publisher = gstreamer_publish(&server.rtmp_url(&server.stream_key), 300);
    let (ok, stderr) = finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "gst-launch failed: {stderr}");
    let playlist = server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    assert!(count(&playlist, "#EXTINF:") >= 4, "{playlist}");
    assert_valid_hls(&server.playback_url().await, 10.0).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_continues_the_playlist_after_a_discontinuity() {
    let server = TestServer::start().await;
    for _ in 0..2 {
        let publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 3, "320x180");
        let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
        assert!(ok, "ffmpeg failed: {stderr}");
        server
            .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
            .await;
    }
    let playlist = server.playlist().unwrap();
    assert_eq!(count(&playlist, "#EXT-X-DISCONTINUITY\n"), 1, "{playlist}");
    assert!(
        !playlist.contains("#EXT-X-ENDLIST\n#"),
        "ENDLIST only at the end: {playlist}"
    );
    // Numbering continues across the reconnect: seg-0 … seg-N with no reuse.
    let files = segment_files(&server.hls_dir(&server.stream_id));
    assert_eq!(files.len(), count(&playlist, "#EXTINF:"), "{files:?}");
    let url = server.playback_url().await;
    let format = ffprobe(&url, "format=duration", None).await;
    let duration: f64 = format["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (5.4..=6.6).contains(&duration),
        "two 3 s sessions, got {duration} s"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_segments_and_ends_playlists() {
    let server = TestServer::start().await;
    let publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 30, "320x180");
    server
        .wait_for_playlist(Duration::from_secs(8), |p| p.contains("seg-1.ts"))
        .await;
    let hls_dir = server.hls_dir(&server.stream_id);
    let db = server.data.path().join("media-analyzer.db");
    let TestServer {
        running,
        data: server_data,
        ..
    } = server;
    running.unwrap().stop().await.expect("clean shutdown");
    let playlist = std::fs::read_to_string(hls_dir.join("index.m3u8")).unwrap();
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    assert_eq!(count(&playlist, "#EXTINF:"), segment_files(&hls_dir).len());
    // The publisher is told: its connection closes, so ffmpeg ends with an error.
    let (ok, _) = finish(publisher, Duration::from_secs(10)).await;
    assert!(!ok, "ffmpeg should notice the server went away");
    // The store says the stream is offline.
    let store = store_for(&db).await;
    let tenants = store.tenants().await.unwrap();
    let tenant = &tenants[0];
    let s = &store.streams(&tenant.id).await.unwrap()[0];
    assert_eq!(s.state, store::StreamState::Offline);
    assert!(s.segments >= 2);
    drop(server_data);
}

async fn store_for(db: &std::path::Path) -> store::Store {
    store::Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}
