//! Effect selectors on a live stream: the stream's pipeline names the bundled `privacy-blur`,
//! and every analysed frame's event carries a blur over each face the face detector found (the
//! box grown, never smaller than the face), tagged with the selector; a stream without an effects
//! stage carries none. Every live frame's event carries its scene metrics.

use std::time::Duration;

use e2e::*;
use serde_json::Value;

/// Whether `outer` (`[x, y, w, h]`) contains `inner`.
fn contains(outer: &Value, inner: &Value) -> bool {
    let f = |v: &Value, i: usize| v[i].as_f64().unwrap();
    f(outer, 0) <= f(inner, 0)
        && f(outer, 1) <= f(inner, 1)
        && f(outer, 0) + f(outer, 2) >= f(inner, 0) + f(inner, 2)
        && f(outer, 1) + f(outer, 3) >= f(inner, 1) + f(inner, 3)
}

/// The tests here take turns: each analyses a live stream with the full-range face detector and
/// renders its effects rendition, which together take both cores of a 2-core machine; two at
/// once leave the rendition (at the analysis's low priority) too little to keep near live, so it
/// skips segments (as it should on a host short of CPU) and a test waiting for one times out.
static ONE_LIVE_STREAM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server analysing live, a viewer of its stream's events, and the astronaut photo published to
/// it for `seconds`.
async fn astronaut_live(seconds: u32) -> (TestServer, Viewer, tokio::process::Child) {
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let token = server.playback_token().await;
    let viewer = Viewer::connect(
        &server.http(""),
        &server.stream_id,
        &format!("token={token}"),
    )
    .await
    .unwrap();
    let publisher = publish_photo(
        &fixture_photo("astronaut"),
        &server.rtmp_url(&server.stream_key),
        seconds,
    );
    (server, viewer, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_blur_covers_every_face_on_the_frames_events() {
    let _alone = ONE_LIVE_STREAM.lock().await;
    // First without effects: events carry detections only.
    let (server, mut viewer, mut publisher) = astronaut_live(20).await;
    let seen = viewer
        .until(Duration::from_secs(30), |e| {
            e["type"] == "detections"
                && e["detections"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["label"] == "face"))
        })
        .await;
    assert!(
        seen.iter().all(|e| e.get("effects").is_none()),
        "effects without an effects stage"
    );
    // Scene metrics on every live frame: a still photo has colours, a middling brightness and,
    // after the first analysed frame, next to no motion.
    let frames: Vec<&Value> = seen.iter().filter(|e| e["type"] == "detections").collect();
    for e in &frames {
        let scene = &e["scene"];
        let brightness = scene["brightness"].as_f64().unwrap();
        assert!((0.1..0.9).contains(&brightness), "{e}");
        assert!(!scene["colours"].as_array().unwrap().is_empty(), "{e}");
    }

    set_pipeline(&server, r#"{"effects":[{"name":"privacy-blur"}]}"#).await;
    let seen = viewer
        .until(Duration::from_secs(20), |e| {
            e["type"] == "detections" && e.get("effects").is_some()
        })
        .await;
    let event = seen.last().unwrap();
    let motion = event["scene"]["motion"].as_f64().unwrap();
    assert!(motion < 0.05, "a still photo moves by {motion}");
    let faces: Vec<&Value> = event["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "face")
        .collect();
    let effects = event["effects"].as_array().unwrap();
    assert!(!faces.is_empty(), "{event}");
    assert_eq!(effects.len(), faces.len(), "{event}");
    for face in faces {
        assert!(
            effects.iter().any(|e| e["kind"] == "blur"
                && e["component"] == "privacy-blur"
                && e["params"]["radius"].as_f64().unwrap() >= 8.0
                && contains(&e["box"], &face["box"])),
            "no blur over {face} in {event}"
        );
    }
    publisher.kill().await.ok();
    server.stop().await;
}

/// Face boxes the bundled face detector finds in a video file (every 5th frame), per frame.
fn faces_in(file: &std::path::Path) -> Vec<Vec<[f64; 4]>> {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("faces.jsonl");
    let options = analysis::file::AnalyzeOptions {
        input: file.to_string_lossy().into_owned(),
        components: vec!["face-detector".into()],
        wasm: Vec::new(),
        config: Vec::new(),
        logos: None,
        every: 5,
        json: Some(json.clone()),
        components_dir: analysis::components_dir(Some(&TestServer::components_dir())),
        progress: false,
        accelerator: inference::Accelerator::Cpu,
    };
    analysis::file::analyze(&options).unwrap();
    std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| {
            let frame: Value = serde_json::from_str(l).unwrap();
            frame["detections"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["label"] == "face")
                .map(|d| {
                    let b = d["box"].as_array().unwrap();
                    [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap())
                })
                .collect()
        })
        .collect()
}

/// Intersection over union of two `[x, y, w, h]` boxes.
fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    let inter = w.max(0.0) * h.max(0.0);
    inter / (a[2] * a[3] + b[2] * b[3] - inter).max(1e-9)
}

/// The media playlist's segments: (file, EXTINF line, program date-time line).
fn listed(playlist: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = playlist.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("seg-") && i >= 2 && !lines[i - 2].starts_with("#EXT-X-GAP") {
            let pdt = lines[..i]
                .iter()
                .rev()
                .find(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
                .unwrap();
            out.push((line.to_string(), lines[i - 1].to_string(), pdt.to_string()));
        }
    }
    out
}

/// The first video frame's presentation time in a TS file.
async fn first_pts(file: &std::path::Path) -> String {
    let probed = ffprobe(file.to_str().unwrap(), "packet=pts_time", Some("v:0")).await;
    probed["packets"][0]["pts_time"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The privacy promise end to end: a live stream of a face with `privacy-blur` in its pipeline
/// gets an effects rendition whose segments are the original's (numbers, durations, program
/// date-times, first timestamps) and in whose decoded frames the face detector finds no face
/// where the original, decoded the same way, still has one. A master playlist offers both, and the
/// rendition is served like the original.
/// The first segments the stream's effects rendition lists (at least three), each checked to be
/// one of the original's, starting at the same time.
async fn effects_segments(server: &TestServer) -> Vec<(String, String, String)> {
    let dir = server.hls_dir(&server.stream_id);
    let effects = dir.join("effects");
    let started = std::time::Instant::now();
    // Every segment the original listed while we wait (its window slides on meanwhile).
    let mut original = Vec::new();
    let segments = loop {
        for segment in std::fs::read_to_string(dir.join("index.m3u8"))
            .map(|p| listed(&p))
            .unwrap_or_default()
        {
            if !original.contains(&segment) {
                original.push(segment);
            }
        }
        let made = std::fs::read_to_string(effects.join("index.m3u8"))
            .map(|p| listed(&p))
            .unwrap_or_default();
        if made.len() >= 3 {
            break made;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the effects rendition listed {} segments",
            made.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for segment in &segments {
        assert!(
            original.contains(segment),
            "{segment:?} is not the original's: {original:?}"
        );
        let (file, _, _) = segment;
        assert_eq!(
            first_pts(&effects.join(file)).await,
            first_pts(&dir.join(file)).await,
            "{file} starts at another time"
        );
    }
    segments
}

/// The faces in `segments` (but the first, which may predate the effects): found by the face
/// detector in the original, and nowhere near them in the effects rendition.
async fn no_face_airs(server: &TestServer, segments: &[(String, String, String)]) {
    let dir = server.hls_dir(&server.stream_id);
    let effects = dir.join("effects");
    for (file, _, _) in &segments[1..] {
        // MA_KEEP_SEGMENTS=DIR keeps both renditions' segments for a look at a failure.
        if let Some(keep) = std::env::var_os("MA_KEEP_SEGMENTS") {
            let keep = std::path::PathBuf::from(keep);
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::copy(dir.join(file), keep.join(format!("original-{file}"))).unwrap();
            std::fs::copy(effects.join(file), keep.join(format!("effects-{file}"))).unwrap();
        }
        // analyze blocks on its models: off the test's async workers.
        let (original, rendition) = (dir.join(file), effects.join(file));
        let (theirs, ours) =
            tokio::task::spawn_blocking(move || (faces_in(&original), faces_in(&rendition)))
                .await
                .unwrap();
        let with_face = theirs.iter().filter(|f| !f.is_empty()).count();
        assert!(
            with_face * 10 >= theirs.len() * 8,
            "{file}: the original shows a face in only {with_face} of {} frames",
            theirs.len()
        );
        let known: Vec<[f64; 4]> = theirs.iter().flatten().copied().collect();
        for (i, frame) in ours.iter().enumerate() {
            for face in frame {
                assert!(
                    known.iter().all(|k| iou(*k, *face) < 0.1),
                    "{file}, analysed frame {i}: a face at {face:?} in the effects rendition"
                );
            }
        }
    }
}

/// Sets the stream's pipeline.
async fn set_pipeline(server: &TestServer, pipeline: &str) {
    let (status, text) = http_send(
        "PUT",
        &server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id)),
        Some(&server.api_key),
        pipeline,
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_effects_rendition_has_no_face_where_the_original_has_one() {
    let _alone = ONE_LIVE_STREAM.lock().await;
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    set_pipeline(&server, r#"{"effects":[{"name":"privacy-blur"}]}"#).await;
    let mut publisher = publish_photo(
        &fixture_photo("astronaut"),
        &server.rtmp_url(&server.stream_key),
        40,
    );
    let segments = effects_segments(&server).await;
    let master =
        std::fs::read_to_string(server.hls_dir(&server.stream_id).join("master.m3u8")).unwrap();
    assert!(
        master.contains("\nindex.m3u8\n") && master.contains("\neffects/index.m3u8\n"),
        "{master}"
    );
    no_face_airs(&server, &segments).await;

    // Served like the original, with the stream's playback token.
    let token = server.playback_token().await;
    let (status, body) = http_get(
        &server.http(&format!(
            "/hls/{}/effects/index.m3u8?token={token}",
            server.stream_id
        )),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("seg-") && body.contains("?token="), "{body}");
    let metrics = server.get("/metrics").await.1;
    assert!(
        metrics.contains("media_analyzer_effects_rendition_lag_seconds{stream="),
        "no lag metric"
    );
    publisher.kill().await.ok();
    server.stop().await;
}

/// Manual control: forcing blur on runs the bundled privacy-blur on a stream whose pipeline has no
/// effects stage (its events carry the blurs, and its effects rendition starts); its settings
/// (pixelate) reach the running selector from a later frame; forcing it off
/// drops every blur even though the pipeline then names privacy-blur.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_forced_on_and_off_through_the_api() {
    let _alone = ONE_LIVE_STREAM.lock().await;
    // Long enough for both switches with the full-range face detector on a busy debug build.
    let (server, mut viewer, mut publisher) = astronaut_live(90).await;
    let key = server.api_key.clone();
    let effects_url = server.http(&format!("/api/v1/streams/{}/effects", server.stream_id));
    let (status, text) = http_send("PUT", &effects_url, Some(&key), r#"{"blur":"on"}"#).await;
    assert_eq!(status, 200, "{text}");
    let blurs = |e: &Value| {
        e["effects"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x["kind"] == "blur").count())
    };
    let seen = viewer
        .until(Duration::from_secs(40), |e| {
            e["type"] == "detections" && blurs(e) > 0
        })
        .await;
    let event = seen.last().unwrap();
    assert!(blurs(event) > 0, "forced on, no blur: {event}");
    assert!(
        event["effects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["component"] == "privacy-blur"),
        "{event}"
    );
    let playlist = server
        .hls_dir(&server.stream_id)
        .join("effects")
        .join("index.m3u8");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&playlist).map_or(true, |p| listed(&p).is_empty()) {
        if started.elapsed() > Duration::from_secs(40) {
            panic!(
                "forced on, no effects rendition after 40 s:\n{}",
                metrics_named(&server, "effects_rendition").await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Settings reach the running selector: pixelated blocks instead of a Gaussian.
    let pixelated = |e: &Value| {
        e["effects"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["kind"] == "blur" && x["params"]["pixelate"].as_f64() > Some(0.0))
        })
    };
    assert!(!pixelated(event), "gaussian by default: {event}");
    let (status, text) = http_send(
        "PUT",
        &effects_url,
        Some(&key),
        r#"{"settings":{"blur":{"style":"pixelate"}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    viewer
        .until(Duration::from_secs(20), |e| {
            e["type"] == "detections" && pixelated(e)
        })
        .await;

    // Off wins over the pipeline's own privacy-blur.
    set_pipeline(&server, r#"{"effects":[{"name":"privacy-blur"}]}"#).await;
    let (status, text) = http_send("PUT", &effects_url, Some(&key), r#"{"blur":"off"}"#).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""blur":"off""#), "{text}");
    viewer
        .until(Duration::from_secs(20), |e| {
            e["type"] == "detections" && blurs(e) == 0
        })
        .await;
    for _ in 0..5 {
        let e = viewer
            .until(Duration::from_secs(10), |e| e["type"] == "detections")
            .await;
        let e = e.last().unwrap();
        assert_eq!(blurs(e), 0, "forced off, still a blur: {e}");
    }
    let (status, text) = http_request("GET", &effects_url, Some(&key)).await;
    assert_eq!(status, 200);
    assert!(text.contains(r#""blur":"off""#), "{text}");
    publisher.kill().await.ok();
    server.stop().await;
}

/// A privacy selector that fails on every frame (here `privacy-blur` with a value it refuses in
/// the pipeline's config; a trap or a deadline goes the same way) must not air the faces it
/// would have blurred: each frame's event names the failed selector and carries no blur, and the
/// effects rendition, finding no complete frame to cover them, fails closed and blurs the whole
/// picture, while a working selector beside it (`scene-grade`) still chooses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_privacy_selector_airs_no_face() {
    let _alone = ONE_LIVE_STREAM.lock().await;
    let (server, mut viewer, mut publisher) = astronaut_live(40).await;
    set_pipeline(
        &server,
        r#"{"effects":[{"name":"privacy-blur","config":{"grow":"wide"}},{"name":"scene-grade","config":{"look":"warm"}}]}"#,
    )
    .await;
    let seen = viewer
        .until(Duration::from_secs(30), |e| {
            e["type"] == "detections" && e.get("effects_failed").is_some()
        })
        .await;
    let event = seen.last().unwrap();
    // (A detector that ran past its deadline on a busy machine is named beside it.)
    assert!(
        event["effects_failed"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("privacy-blur"))),
        "{event}"
    );
    let effects = event["effects"].as_array().unwrap();
    assert!(
        !effects.is_empty() && effects.iter().all(|e| e["component"] == "scene-grade"),
        "{event}"
    );
    assert!(
        event["detections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == "face"),
        "{event}"
    );

    let segments = effects_segments(&server).await;
    no_face_airs(&server, &segments).await;
    let metrics = server.get("/metrics").await.1;
    let stalled = metric(
        &metrics,
        "media_analyzer_effects_rendition_frames_stalled_total",
    );
    assert!(stalled > 0, "no stalled frames counted:\n{metrics}");
    publisher.kill().await.ok();
    server.stop().await;
}

/// A detector that fails on a frame (here an upload that traps on every call) leaves the frame's
/// effects incomplete: the selectors chose without what it would have found. The event names it
/// beside any failed selector, the faces the working face detector found are blurred all the
/// same, and since every frame is incomplete the privacy stream's effects rendition stalls and
/// is covered whole instead of airing what the failed detector might have found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_detector_leaves_the_frames_effects_incomplete() {
    let _alone = ONE_LIVE_STREAM.lock().await;
    let (server, mut viewer, mut publisher) = astronaut_live(30).await;
    let push = media_analyzer::component::Push {
        file: std::path::Path::new("trap.wasm"),
        name: "trap",
        world: "detector",
    };
    let wasm = std::fs::read(TestServer::components_dir().join("trap.wasm")).unwrap();
    let (content_type, body) = media_analyzer::component::multipart_form(&push, &wasm);
    let (status, text) = http_send_bytes(
        "POST",
        &server.http("/api/v1/components"),
        Some(&server.api_key),
        Some(&content_type),
        &body,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    set_pipeline(
        &server,
        r#"{"detector":[{"name":"face-detector"},{"name":"trap"}],"effects":[{"name":"privacy-blur"}]}"#,
    )
    .await;
    let seen = viewer
        .until(Duration::from_secs(30), |e| {
            e["type"] == "detections"
                && e["effects_failed"]
                    .as_array()
                    .is_some_and(|f| f.contains(&Value::from("trap@1")))
                && e["detections"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["label"] == "face"))
        })
        .await;
    let event = seen.last().unwrap();
    assert!(
        event["effects"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "blur")),
        "the face detector's face has no blur: {event}"
    );
    let started = std::time::Instant::now();
    loop {
        let metrics = server.get("/metrics").await.1;
        if metric(
            &metrics,
            "media_analyzer_effects_rendition_frames_stalled_total",
        ) > 0
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no stalled frames counted:\n{}",
            metrics_named(&server, "effects_rendition").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    publisher.kill().await.ok();
    server.stop().await;
}
