//! `compare vision`: frames sampled from a recording, analysed by our components and sent to Cloud
//! Vision's `images:annotate`. Cloud Vision cannot be reached from here, so the requests go to a
//! local server that speaks its wire format (`--vision-endpoint`) and checks what it is sent:
//! batches of at most 16 base64 JPEG frames of the video's size, with both features. Its answers
//! name a cup where our detector finds it, a person we do not see and a logo, and the report must
//! count exactly that. Without credentials the command stops before any work and says what it
//! needs.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use e2e::*;
use serde_json::{Value, json};

/// The width and height in a baseline or progressive JPEG's SOF marker.
fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 9 < data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        let length = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if matches!(marker, 0xC0..=0xC2) {
            let h = u16::from_be_bytes([data[i + 5], data[i + 6]]) as u32;
            let w = u16::from_be_bytes([data[i + 7], data[i + 8]]) as u32;
            return Some((w, h));
        }
        i += 2 + length;
    }
    None
}

#[derive(Clone, Default)]
struct Seen {
    /// Images per request.
    batches: Arc<Mutex<Vec<usize>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

/// The stand-in for `POST /v1/images:annotate`: checks the request as Vision would, then answers
/// each image with a "Coffee cup" at `cup` (the box our detector reports), a "Person" and a
/// "Starbucks" logo.
async fn annotate(
    State((seen, cup)): State<(Seen, [f64; 4])>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let requests = body["requests"].as_array().cloned().unwrap_or_default();
    seen.batches.lock().unwrap().push(requests.len());
    let mut responses = Vec::new();
    for r in &requests {
        let content = r["image"]["content"].as_str().unwrap_or_default();
        match base64::engine::general_purpose::STANDARD.decode(content) {
            Ok(jpeg) if jpeg_size(&jpeg) == Some((640, 360)) => {}
            Ok(jpeg) => seen
                .problems
                .lock()
                .unwrap()
                .push(format!("not a 640x360 JPEG: {:?}", jpeg_size(&jpeg))),
            Err(e) => seen
                .problems
                .lock()
                .unwrap()
                .push(format!("not base64: {e}")),
        }
        let features: Vec<&str> = r["features"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x["type"].as_str()).collect())
            .unwrap_or_default();
        if features != ["OBJECT_LOCALIZATION", "LOGO_DETECTION"] {
            seen.problems
                .lock()
                .unwrap()
                .push(format!("features {features:?}"));
        }
        let [x, y, w, h] = cup;
        let (x, y) = (x + w * 0.03, y + h * 0.03);
        let poly = |x0: f64, y0: f64, x1: f64, y1: f64| json!({"normalizedVertices": [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}]});
        responses.push(json!({
            "localizedObjectAnnotations": [
                {"mid": "/m/02jvh9", "name": "Coffee cup", "score": 0.91, "boundingPoly": poly(x, y, x + w, y + h)},
                {"mid": "/m/01g317", "name": "Person", "score": 0.77, "boundingPoly": poly(0.0, 0.0, 0.1, 0.3)}
            ],
            "logoAnnotations": [
                {"mid": "/m/018c_r", "description": "Starbucks", "score": 0.8,
                 "boundingPoly": {"vertices": [{"x": 1, "y": 1}, {"x": 30, "y": 30}]}}
            ]
        }));
    }
    Json(json!({ "responses": responses }))
}

/// A 4 s 640×360 clip of the coffee photo.
fn clip(dir: &std::path::Path) -> String {
    let path = dir.join("coffee.mp4");
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-loop",
            "1",
            "-i",
        ])
        .arg(fixture_photo("coffee"))
        .args(["-t", "4", "-vf", "scale=640:360,format=yuv420p", "-r", "25"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "25"])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    path.display().to_string()
}

fn options(input: String, endpoint: Option<String>) -> analysis::vision::CompareOptions {
    analysis::vision::CompareOptions {
        analyze: analysis::file::AnalyzeOptions {
            input,
            components: vec!["object-detector".into()],
            wasm: Vec::new(),
            config: Vec::new(),
            logos: None,
            every: 1,
            json: None,
            components_dir: TestServer::components_dir(),
            accelerator: inference::Accelerator::Cpu,
            progress: false,
        },
        every_seconds: 1.0,
        max_frames: 100,
        endpoint,
        vision_prices: (2.25, 1.5),
        cpu_hour_price: 0.0335,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_detections_and_visions_answers_are_compared_frame_by_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path());
    // Where our detector puts the cup on this clip, as `analyze` reports it.
    let json_path = dir.path().join("ours.jsonl");
    let mut analyze = options(input.clone(), None).analyze;
    analyze.json = Some(json_path.clone());
    analyze.every = 25;
    tokio::task::spawn_blocking(move || analysis::file::analyze(&analyze))
        .await
        .unwrap()
        .unwrap();
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&json_path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let cup = first["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == "cup")
        .expect("our detector finds the cup");
    let b: Vec<f64> = cup["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();

    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/images:annotate", axum::routing::post(annotate))
        .with_state((seen.clone(), [b[0], b[1], b[2], b[3]]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut opts = options(input, Some(endpoint));
    opts.max_frames = 3;
    let report = analysis::vision::compare(opts).await.unwrap();
    assert!(
        seen.problems.lock().unwrap().is_empty(),
        "{:?}",
        seen.problems.lock().unwrap()
    );
    assert_eq!(
        *seen.batches.lock().unwrap(),
        [3],
        "one request of 3 images"
    );
    assert_eq!(report.frames, 3, "frames at 0, 1 and 2 s (at most 3)");
    let cups = &report.objects["cup"];
    assert_eq!((cups.vision, cups.both), (3, 3), "{cups:?}");
    assert!(cups.ours >= 3);
    let people = &report.objects["person"];
    assert_eq!((people.vision, people.both), (3, 0), "{people:?}");
    let brands = &report.brands["starbucks"];
    assert_eq!((brands.vision, brands.ours, brands.both), (3, 0, 0));
    assert!((report.vision_usd_per_1000 - 3.75).abs() < 1e-9);
    assert!(report.ours_ms_per_frame > 0.0 && report.ours_usd_per_1000 > 0.0);
    let table = report.table();
    assert!(table.contains("| cup | 3 |"), "{table}");
    assert!(table.contains("$3.75"), "{table}");
}

/// Not a test by itself: [`without_credentials_it_says_what_it_needs`] runs it in a child process
/// whose environment points Application Default Credentials at a file that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by without_credentials_it_says_what_it_needs"]
async fn child_compare_without_credentials() {
    if std::env::var("E2E_VISION_CHILD").is_err() {
        return;
    }
    let e = analysis::vision::compare(options("no-such-file.mp4".into(), None))
        .await
        .unwrap_err();
    println!("ERROR: {e:#}");
}

#[test]
fn without_credentials_it_says_what_it_needs() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_compare_without_credentials",
            "--ignored",
            "--nocapture",
        ])
        .env("E2E_VISION_CHILD", "1")
        .env("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let error = text
        .lines()
        .skip_while(|l| !l.starts_with("ERROR: "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!error.is_empty(), "{text}");
    // It stopped at the credentials, before opening the (missing) input.
    assert!(!error.contains("no-such-file"), "{error}");
    for needed in [
        "gcloud services enable vision.googleapis.com",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "application-default login",
    ] {
        assert!(error.contains(needed), "{needed} missing from: {error}");
    }
}
