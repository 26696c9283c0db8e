//! Bad input at the RTMP port: each case gets a clear refusal or a closed connection, nothing
//! is stored, and the server goes on serving publishers.

use std::time::Duration;

use e2e::raw::{assert_closed, chunk, command, connect, connect_from, handshake, message, publish};
use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    // Every idle socket beyond the pending limit was turned away: evicted, or refused by the
    // per-address rate limit before it took a slot.
    let (_, metrics) = server.get("/metrics").await;
    let turned_away = metric(&metrics, "media_analyzer_rtmp_evicted_total")
        + metric(&metrics, "media_analyzer_rtmp_rate_limited_total");
    assert!(
        turned_away >= 200 - 64,
        "{turned_away} turned away: {metrics}"
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

/// The value of `media_analyzer_rtmp_violations_total{kind=…}`.
async fn violations(server: &TestServer, kind: &str) -> u64 {
    let (_, metrics) = server.get("/metrics").await;
    metric(
        &metrics,
        &format!("media_analyzer_rtmp_violations_total{{kind=\"{kind}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_amf_in_connect_closes_that_connection_only() {
    // The attack that used to abort the process: a connect whose AMF0 body nests strict arrays
    // 100,000 deep, right after the handshake, unauthenticated.
    let server = TestServer::start().await;
    let live = ffmpeg_publish(&server.rtmp_url(&server.stream_key), 8, "320x180");
    server
        .wait_for_playlist(Duration::from_secs(8), |p| p.contains("seg-0.ts"))
        .await;
    for depth in [100_000, 10_000] {
        let mut body = command("connect", 1.0, &[]);
        for _ in 0..depth {
            body.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        body.push(0x05);
        let mut socket = handshake(server.rtmp_port()).await;
        socket
            .write_all(&message(20, 0, &body, 128))
            .await
            .unwrap_or(());
        assert_closed(&mut socket, Duration::from_secs(3)).await;
    }
    assert_eq!(
        violations(&server, "message_size").await,
        1,
        "100,000 deep is over 64 KiB"
    );
    assert_eq!(
        violations(&server, "amf_depth").await,
        1,
        "10,000 deep fits but nests too far"
    );
    let (ok, stderr) = finish(live, Duration::from_secs(30)).await;
    assert!(ok, "the live publisher noticed: {stderr}");
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_and_chunk_streams_are_refused_without_a_panic() {
    let server = TestServer::start().await;
    let port = server.rtmp_port();
    // A command with fewer than three values (rml_rtmp's drain(..3) panicked on it).
    let mut socket = handshake(port).await;
    socket
        .write_all(&chunk(3, 20, 0, &command("connect", 1.0, &[])[..]))
        .await
        .unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    let mut socket = handshake(port).await;
    socket
        .write_all(&chunk(3, 20, 0, &[0x02, 0, 1, b'x']))
        .await
        .unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    // A new message header on a chunk stream whose message is incomplete (the chunk reader's
    // length underflow).
    let mut socket = handshake(port).await;
    let mut bytes = vec![0x04, 0, 0, 0, 0, 1, 0, 20, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0x05; 128]);
    bytes.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 4, 20, 0, 0, 0, 0, 5, 5, 5, 5]);
    socket.write_all(&bytes).await.unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    // Too many chunk streams, and a message size over the command limit.
    let mut socket = handshake(port).await;
    let mut bytes = Vec::new();
    for csid in 3..40u8 {
        // One-byte video messages before publishing: ignored, but each takes a chunk stream.
        bytes.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0x17]);
    }
    socket.write_all(&bytes).await.unwrap_or(());
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    let mut socket = handshake(port).await;
    socket
        .write_all(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(violations(&server, "protocol").await, 2);
    assert_eq!(violations(&server, "chunk_stream").await, 1);
    assert_eq!(violations(&server, "chunk_streams").await, 1);
    assert_eq!(violations(&server, "message_size").await, 1);
    assert_still_serves(&server).await;
    server.stop().await;
}

/// An FLV video tag carrying an AVC sequence header for a `width`×`height` picture.
fn sequence_header(width: u32, height: u32) -> Vec<u8> {
    let mut tag = vec![0x17, 0, 0, 0, 0];
    tag.extend_from_slice(&media::fixtures::avc_record_for_size(width, height));
    tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_picture_is_refused_before_anything_is_decoded() {
    let server = TestServer::start().await;
    let mut socket = handshake(server.rtmp_port()).await;
    let stream = publish(&mut socket, &server.stream_key).await;
    socket
        .write_all(&message(9, stream, &sequence_header(16384, 16384), 128))
        .await
        .unwrap_or(());
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(violations(&server, "picture_size").await, 1);
    // The same with a sane sequence header, then an oversized SPS inside a keyframe.
    let mut socket = handshake(server.rtmp_port()).await;
    let stream = publish(&mut socket, &server.stream_key).await;
    socket
        .write_all(&message(9, stream, &sequence_header(640, 360), 128))
        .await
        .unwrap();
    let sps = media::fixtures::sps_for_size(8192, 4320);
    let mut frame = vec![0x17, 1, 0, 0, 0];
    frame.extend_from_slice(&(sps.len() as u32).to_be_bytes());
    frame.extend_from_slice(&sps);
    frame.extend_from_slice(&[0, 0, 0, 2, 0x65, 0x88]);
    socket
        .write_all(&message(9, stream, &frame, 128))
        .await
        .unwrap_or(());
    assert_closed(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(violations(&server, "picture_size").await, 2);
    let json = server.stream_json().await;
    assert_eq!(json["state"], "offline", "{json}");
    assert_still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_cannot_evict_an_encoder_mid_handshake() {
    let server = TestServer::start_with(|c| {
        c.ingest.max_pending = 64;
        c.ingest.max_pending_per_ip = 16;
        c.ingest.connections_per_second_per_ip = 50.0;
        c.ingest.connection_burst_per_ip = 100.0;
    })
    .await;
    let port = server.rtmp_port();
    // A real encoder at 127.0.0.2 has sent C0+C1 and waits for the server's reply.
    let mut encoder = connect_from([127, 0, 0, 2], port).await;
    let mut hs = rml_rtmp::handshake::Handshake::new(rml_rtmp::handshake::PeerType::Client);
    encoder
        .write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    // 300 connections from 127.0.0.1 that never speak, as fast as possible.
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(connect(port).await);
    }
    // The encoder finishes its handshake and connects.
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), encoder.read(&mut buf))
            .await
            .expect("handshake reply")
            .unwrap();
        assert!(n > 0, "the encoder mid-handshake was closed by the flood");
        match hs.process_bytes(&buf[..n]).unwrap() {
            rml_rtmp::handshake::HandshakeProcessResult::InProgress { response_bytes } => {
                encoder.write_all(&response_bytes).await.unwrap()
            }
            rml_rtmp::handshake::HandshakeProcessResult::Completed { response_bytes, .. } => {
                encoder.write_all(&response_bytes).await.unwrap();
                break;
            }
        }
    }
    publish(&mut encoder, &server.stream_key).await;
    let (_, metrics) = server.get("/metrics").await;
    let limited = metric(&metrics, "media_analyzer_rtmp_rate_limited_total");
    let evicted = metric(&metrics, "media_analyzer_rtmp_evicted_total");
    assert!(
        limited + evicted >= 300 - 16,
        "limited {limited}, evicted {evicted}"
    );
    // At most 16 of the flood are still held.
    let mut open = 0;
    for socket in &mut flood {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(10), socket.peek(&mut b)).await {
            Err(_) | Ok(Ok(1..)) => open += 1,
            _ => {}
        }
    }
    assert!(open <= 16, "{open} flood connections held");
    drop(encoder);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_stops_sending_keyframes_cannot_grow_a_segment_forever() {
    let server = TestServer::start_with(|c| {
        c.hls.target_duration = Duration::from_secs(1);
    })
    .await;
    // One keyframe, then 14 s of P-frames only.
    let publisher = ffmpeg_publish_gop(&server.rtmp_url(&server.stream_key), 14, "320x180", 10_000);
    let (ok, stderr) = finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    let playlist = server
        .wait_for_playlist(Duration::from_secs(5), |p| p.contains("#EXT-X-ENDLIST"))
        .await;
    let durations: Vec<f64> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse().ok())
        .collect();
    assert!(
        durations.len() >= 2,
        "the keyframe-less stream was cut: {playlist}"
    );
    assert!(
        durations.iter().all(|d| *d <= 10.5),
        "no segment is longer than 10 target durations: {durations:?}"
    );
    assert_still_serves(&server).await;
    server.stop().await;
}
