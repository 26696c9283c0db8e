//! Bad input at the RTMP port: each case gets a clear refusal or a closed connection, nothing
//! is stored, and the server goes on serving publishers.

use std::time::Duration;

use e2e::raw::{assert_closed, chunk, connect, handshake};
use e2e::*;
use tokio::io::AsyncWriteExt;

/// A 3 s ffmpeg publish to the demo key succeeds and produces segments.
async fn assert_still_serves(server: &TestServer) {
    let before = segment_files(&server.hls_dir(&server.stream_id)).len();
    let publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 3, "320x180");
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "a good publisher was refused after bad input: {stderr}");
    let after = segment_files(&server.hls_dir(&server.stream_id)).len();
    assert!(after > before, "no new segments after bad input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_handshake_is_dropped() {
    let server = TestServer::start().await;
    let mut socket = connect(server.rtmp_port()).await;
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_times_out() {
    let server =
        TestServer::start_with(|c| c.ingest.handshake_timeout = Duration::from_secs(1)).await;
    let mut socket = connect(server.rtmp_port()).await;
    socket.write_all(&[3, 0, 0]).await.unwrap(); // C0 and the start of C1, then nothing
    let started = std::time::Instant::now();
    assert_closed(&mut socket, Duration::from_secs(4)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the deadline"
    );
    // A handshake that completes but never publishes is held to the same deadline.
    let mut idle = handshake(server.rtmp_port()).await;
    assert_closed(&mut idle, Duration::from_secs(4)).await;
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_negative_chunk_sizes_are_refused() {
    let server = TestServer::start().await;
    for size in [0x7fff_ffffu32, 0x8000_0000, 0xffff_ffff, 0] {
        let mut socket = handshake(server.rtmp_port()).await;
        socket
            .write_all(&chunk(2, 1, 0, &size.to_be_bytes()))
            .await
            .unwrap();
        assert_closed(&mut socket, Duration::from_secs(3)).await;
    }
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_amf_command_is_refused() {
    let server = TestServer::start().await;
    // An AMF0 string marker claiming 65535 bytes, followed by 3.
    let mut socket = handshake(server.rtmp_port()).await;
    socket
        .write_all(&chunk(3, 20, 0, &[0x02, 0xff, 0xff, b'c', b'o', b'n']))
        .await
        .unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    // A command before connect.
    let mut socket = handshake(server.rtmp_port()).await;
    let publish = [
        0x02, 0x00, 0x07, b'p', b'u', b'b', b'l', b'i', b's', b'h', 0x00, 0x40, 0x08, 0, 0, 0, 0,
        0, 0, 0x05,
    ];
    socket.write_all(&chunk(3, 20, 0, &publish)).await.unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_stream_key_is_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    for url in [
        server.rtmp_url("sk_not_a_key"),
        format!("rtmp://127.0.0.1:{}/live", server.rtmp_port()),
        format!(
            "rtmp://127.0.0.1:{}/other-app/{}",
            server.rtmp_port(),
            server.stream_key
        ),
    ] {
        let publisher = ffmpeg_publish(&url, 2, "320x180");
        let (ok, _) = finish(publisher, Duration::from_secs(20)).await;
        assert!(!ok, "{url} must be refused");
    }
    let (_, body) = server.get("/api/v1/streams").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let streams = v["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "no stream was created: {body}");
    assert_eq!(streams[0]["state"], "offline");
    assert!(
        streams[0]["started_at"].is_null(),
        "the demo stream never went live: {body}"
    );
    assert!(
        !server.data.path().join("hls").exists()
            || segment_files(&server.hls_dir(&server.stream_id)).is_empty()
    );
    let (_, metrics) = server.get("/metrics").await;
    // Only the unknown key reaches authorisation; the other two fail earlier in the session.
    assert!(
        metrics.contains("media_analyzer_rtmp_publish_refused_total 1\n"),
        "{metrics}"
    );
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_on_the_same_key_is_refused() {
    let server = TestServer::start().await;
    let first = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 8, "320x180");
    server
        .wait_for_playlist(Duration::from_secs(8), |p| p.contains("seg-0.ts"))
        .await;
    let second = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 3, "320x180");
    let (ok, _) = finish(second, Duration::from_secs(20)).await;
    assert!(!ok, "the second publisher must be refused");
    let (ok, stderr) = finish(first, Duration::from_secs(30)).await;
    assert!(ok, "the first publisher was disturbed: {stderr}");
    let playlist = server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
    assert_valid_hls(&server.playback_url().await, 8.0).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_vanishes_mid_segment_ends_the_playlist_cleanly() {
    let server = TestServer::start().await;
    let mut publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 30, "320x180");
    server
        .wait_for_playlist(Duration::from_secs(8), |p| p.contains("seg-1.ts"))
        .await;
    tokio::time::sleep(Duration::from_millis(900)).await; // mid-way through the next segment
    publisher.start_kill().unwrap(); // SIGKILL: no FCUnpublish, no deleteStream
    let _ = publisher.wait().await;
    let playlist = server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let files = segment_files(&server.hls_dir(&server.stream_id));
    assert_eq!(
        files.len(),
        playlist.matches("#EXTINF:").count(),
        "every segment is kept and listed"
    );
    assert!(
        files.len() >= 3,
        "the partial segment was written: {playlist}"
    );
    let url = server.playback_url().await;
    let format = ffprobe(&url, "format=duration", None).await;
    let duration: f64 = format["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration > 4.0, "{duration}");
    assert_eq!(server.stream_json().await["state"], "offline");
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_and_publishers_still_get_in() {
    let server = TestServer::start_with(|c| c.ingest.max_pending = 64).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(server.rtmp_port()).await);
    }
    // A real publisher still gets in while the idle sockets are open.
    let publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 3, "320x180");
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "publisher locked out by idle connections: {stderr}");
    // At most `max_pending` of the idle ones are still held.
    let mut open = 0;
    for socket in &mut idle {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(20), socket.peek(&mut buf)).await {
            Err(_) => open += 1,         // nothing to read: still open
            Ok(Ok(0)) | Ok(Err(_)) => {} // closed by the server
            Ok(Ok(_)) => open += 1,
        }
    }
    assert!(open <= 64, "{open} idle connections held, limit 64");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("media_analyzer_rtmp_evicted_total"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_does_not_disturb_a_live_stream() {
    let server = TestServer::start().await;
    let publisher = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 10, "640x360");
    server
        .wait_for_playlist(Duration::from_secs(8), |p| p.contains("seg-0.ts"))
        .await;
    let port = server.rtmp_port();
    for _ in 0..5 {
        let mut s = connect(port).await;
        s.write_all(&[0xde, 0xad, 0xbe, 0xef]).await.unwrap();
        let mut s2 = handshake(port).await;
        s2.write_all(&chunk(2, 1, 0, &0x8000_0000u32.to_be_bytes()))
            .await
            .unwrap();
        let mut s3 = handshake(port).await;
        s3.write_all(&chunk(3, 20, 0, &[0x02, 0xff, 0xff]))
            .await
            .unwrap();
        let refused = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 1, "320x180");
        assert!(!finish(refused, Duration::from_secs(20)).await.0);
        for s in [&mut s, &mut s2, &mut s3] {
            assert_closed(s, Duration::from_secs(3)).await;
        }
    }
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");
    let playlist = server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
    assert_valid_hls(&server.playback_url().await, 10.0).await;
    server.stop().await;
}
