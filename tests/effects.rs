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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_blur_covers_every_face_on_the_frames_events() {
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let key = server.api_key.clone();
    let token = server.playback_token().await;

    // First without effects: events carry detections only.
    let mut viewer = Viewer::connect(
        &server.http(""),
        &server.stream_id,
        &format!("token={token}"),
    )
    .await
    .unwrap();
    let mut publisher = publish_photo(
        &fixture_photo("astronaut"),
        &server.rtmp_url(&server.stream_key),
        20,
    );
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

    let (status, text) = http_send(
        "PUT",
        &server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id)),
        Some(&key),
        r#"{"effects":[{"name":"privacy-blur"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
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
