//! Tenant components through the real server: uploads checked in the sandbox and stored as
//! versions, hostile uploads refused with nothing stored, tenants and roles kept apart, deletes,
//! and `component push`.

use std::path::Path;

use e2e::{TestServer, http_request, http_send_bytes};
use media_analyzer::component::{Push, multipart_form, push_to_server};
use serde_json::Value;

/// The tests here that analyse a live stream take turns: the SDK example's test runs a component
/// that spins until its deadline, which would starve the hot-swap test's frame timing on 2 cores.
static LIVE_ANALYSIS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn component(name: &str) -> Vec<u8> {
    let path = TestServer::components_dir().join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn upload(
    server: &TestServer,
    key: &str,
    name: &str,
    world: &str,
    bytes: &[u8],
) -> (u16, Value) {
    let push = Push {
        file: Path::new("upload.wasm"),
        name,
        world,
    };
    post_form(server, key, "/api/v1/components", &push, bytes).await
}

/// Posts an upload form (`multipart_form`, as `component push` sends it) to `path`.
async fn post_form(
    server: &TestServer,
    key: &str,
    path: &str,
    push: &Push<'_>,
    bytes: &[u8],
) -> (u16, Value) {
    let (content_type, body) = multipart_form(push, bytes);
    let (status, text) = http_send_bytes(
        "POST",
        &server.http(path),
        Some(key),
        Some(&content_type),
        &body,
    )
    .await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {e}: {text}"));
    (status, json)
}

/// A second tenant, "other", and an API key of it (for checks that one tenant never reaches
/// another's).
async fn other_tenant(store: &store::Store) -> (store::Tenant, String) {
    let other = store.create_tenant("other").await.unwrap();
    let key = store
        .create_api_key(&other.id, "other")
        .await
        .unwrap()
        .secret;
    (other, key)
}

/// A component's activity as its tenant sees it (`key`).
async fn activity(server: &TestServer, key: &str, name: &str) -> Value {
    let url = server.http(&format!("/api/v1/components/{name}/activity"));
    let (status, text) = http_request("GET", &url, Some(key)).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The activity of two components, once `ready` holds for both (polled every 0.5 s; counters
/// are written every 2 s), within `limit`.
async fn activity_when(
    server: &TestServer,
    key: &str,
    names: [&str; 2],
    ready: impl Fn(&Value, &Value) -> bool,
    limit: std::time::Duration,
) -> (Value, Value) {
    let started = std::time::Instant::now();
    loop {
        let (a, b) = (
            activity(server, key, names[0]).await,
            activity(server, key, names[1]).await,
        );
        if ready(&a, &b) {
            return (a, b);
        }
        assert!(
            started.elapsed() < limit,
            "no activity within {limit:?}: {a} {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn listed(server: &TestServer, key: &str) -> Value {
    let (status, text) = http_request("GET", &server.http("/api/v1/components"), Some(key)).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Versions of `name` in a component listing.
fn versions(list: &Value, name: &str) -> Vec<u64> {
    list["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .flat_map(|c| c["versions"].as_array().unwrap().iter())
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

fn stored_files(server: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.data.path().join("components"))
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn uploads_become_versions_and_hostile_ones_store_nothing() {
    let server = TestServer::start().await;
    let key = server.api_key.clone();
    let detector = component("object-detector");

    let (status, first) = upload(&server, &key, "cups", "detector", &detector).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (
            &first["name"],
            &first["version"],
            &first["world"],
            &first["size"]
        ),
        (
            &Value::from("cups"),
            &Value::from(1),
            &Value::from("detector"),
            &Value::from(detector.len())
        )
    );
    let (status, second) = upload(&server, &key, "cups", "detector", &detector).await;
    assert_eq!((status, &second["version"]), (201, &Value::from(2)));
    // Same bytes, one file, named by their hash.
    let sha = first["sha256"].as_str().unwrap();
    assert_eq!(stored_files(&server), [format!("{sha}.wasm")]);
    let list = listed(&server, &key).await;
    assert_eq!(versions(&list, "cups"), [1, 2]);
    // Bundled components are listed like uploaded ones, as version 0.
    assert_eq!(versions(&list, "object-detector"), [0]);

    let mut truncated = detector.clone();
    truncated.truncate(detector.len() / 2);
    let hostile: [(&str, &str, Vec<u8>, u16, &str); 7] = [
        (
            "not wasm",
            "detector",
            b"MZ\x90\0 definitely not wasm".to_vec(),
            422,
            "not a WebAssembly component",
        ),
        (
            "truncated",
            "detector",
            truncated,
            422,
            "not a WebAssembly component",
        ),
        (
            "core module",
            "detector",
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "not a WebAssembly component",
        ),
        (
            "filesystem and sockets",
            "detector",
            component("escape-attempt"),
            422,
            "does not allow",
        ),
        (
            "an effect selector as a detector",
            "detector",
            component("wrong-world"),
            422,
            "does not fit the detector world",
        ),
        (
            "a detector as a trigger",
            "trigger",
            component("object-detector"),
            422,
            "does not allow",
        ),
        (
            "unknown world",
            "renderer",
            component("object-detector"),
            400,
            "world must be",
        ),
    ];
    for (what, world, bytes, expected, reason) in hostile {
        let (status, body) = upload(&server, &key, "hostile", world, &bytes).await;
        assert_eq!(status, expected, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message}");
    }
    // Over the size limit (32 MiB): refused from its Content-Length, before it is read.
    let (status, body) = upload(&server, &key, "hostile", "detector", &vec![0; 33 << 20]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &Value::from("payload_too_large"))
    );
    // Forms that are not an upload.
    for (what, content_type, body) in [
        ("JSON", "application/json", b"{\"name\":\"x\"}".to_vec()),
        (
            "no file",
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--b--\r\n".to_vec(),
        ),
        (
            "unknown field",
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"owner\"\r\n\r\nx\r\n--b--\r\n".to_vec(),
        ),
        (
            "cut short",
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nxxxx".to_vec(),
        ),
    ] {
        let (status, text) = http_send_bytes(
            "POST",
            &server.http("/api/v1/components"),
            Some(&key),
            Some(content_type),
            &body,
        )
        .await;
        assert_eq!(status, 400, "{what}: {text}");
    }
    let (status, body) = upload(&server, &key, "Not A Name", "detector", &detector).await;
    assert_eq!(status, 400, "{body}");
    // Nothing of any of them was kept.
    assert!(versions(&listed(&server, &key).await, "hostile").is_empty());
    assert_eq!(stored_files(&server), [format!("{sha}.wasm")]);

    // Deleting: the file stays while another version has the same bytes.
    let delete = |version: u32| {
        let (url, key) = (
            server.http(&format!("/api/v1/components/cups/versions/{version}")),
            key.clone(),
        );
        async move { http_request("DELETE", &url, Some(&key)).await }
    };
    assert_eq!(delete(1).await.0, 204);
    assert_eq!(delete(1).await.0, 404);
    assert_eq!(stored_files(&server).len(), 1);
    assert_eq!(delete(2).await.0, 204);
    assert!(stored_files(&server).is_empty());
    // A deleted number is not given out again.
    let (status, third) = upload(&server, &key, "cups", "detector", &detector).await;
    assert_eq!((status, &third["version"]), (201, &Value::from(3)));
    server.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_components_and_roles_are_enforced() {
    let server = TestServer::start().await;
    let store = server.store();
    let (other, other_key) = other_tenant(&store).await;
    let demo = store.tenant_by_name("demo").await.unwrap().unwrap();
    let viewer = store
        .create_api_key_with_role(&demo.id, "viewer", store::Role::Viewer)
        .await
        .unwrap()
        .secret;
    let editor = store
        .create_api_key_with_role(&demo.id, "editor", store::Role::Editor)
        .await
        .unwrap()
        .secret;
    let detector = component("object-detector");
    let (status, _) = upload(&server, &server.api_key, "cups", "detector", &detector).await;
    assert_eq!(status, 201);

    // The other tenant: not listed, not deletable (404, as if it did not exist), and its own
    // namespace starts at version 1.
    assert!(versions(&listed(&server, &other_key).await, "cups").is_empty());
    let url = server.http("/api/v1/components/cups/versions/1");
    assert_eq!(http_request("DELETE", &url, Some(&other_key)).await.0, 404);
    let (status, theirs) = upload(&server, &other_key, "cups", "detector", &detector).await;
    assert_eq!((status, &theirs["version"]), (201, &Value::from(1)));
    // Nor can it read a component's activity, run it, or set the pipeline of the demo's stream.
    let (status, _) = upload(&server, &server.api_key, "demo-only", "detector", &detector).await;
    assert_eq!(status, 201);
    let activity = server.http("/api/v1/components/demo-only/activity");
    assert_eq!(
        http_request("GET", &activity, Some(&other_key)).await.0,
        404
    );
    assert_eq!(http_request("GET", &activity, Some(&viewer)).await.0, 200);
    let (theirs, _) = store.create_stream(&other.id, "theirs").await.unwrap();
    let run_it = r#"{"detector":[{"name":"demo-only"}]}"#;
    for (stream, key) in [(&theirs.id, &other_key), (&server.stream_id, &other_key)] {
        let url = server.http(&format!("/api/v1/streams/{stream}/pipeline"));
        let (status, text) = e2e::http_send("PUT", &url, Some(key), run_it).await;
        assert_eq!(status, 404, "{text}");
    }
    let default_pipeline = server.http("/api/v1/pipeline");
    assert_eq!(
        e2e::http_send("PUT", &default_pipeline, Some(&other_key), run_it)
            .await
            .0,
        404
    );
    assert_eq!(
        versions(&listed(&server, &server.api_key).await, "cups"),
        [1]
    );

    // Viewers and editors read the list; only admins upload and delete (403, JSON).
    for key in [&viewer, &editor] {
        assert_eq!(versions(&listed(&server, key).await, "cups"), [1]);
        let (status, body) = upload(&server, key, "mine", "detector", &detector).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &Value::from("forbidden")),
            "{body}"
        );
        let (status, text) = http_request("DELETE", &url, Some(key)).await;
        assert_eq!(status, 403, "{text}");
    }
    assert_eq!(
        versions(&listed(&server, &server.api_key).await, "cups"),
        [1]
    );
    server.stop().await;
}

#[tokio::test]
async fn component_push_uploads_a_file_and_reports_refusals() {
    let server = TestServer::start().await;
    let dir = TestServer::components_dir();
    let api = server.http("");
    let push = |file: &'static str| Push {
        file: Box::leak(dir.join(file).into_boxed_path()),
        name: "pushed",
        world: "detector",
    };
    push_to_server(&push("face_detector.wasm"), &api, &server.api_key)
        .await
        .unwrap();
    assert_eq!(
        versions(&listed(&server, &server.api_key).await, "pushed"),
        [1]
    );
    let err = push_to_server(&push("escape_attempt.wasm"), &api, &server.api_key)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("422"), "{err}");
    assert!(err.to_string().contains("wasi:"), "{err}");
    let err = push_to_server(&push("face_detector.wasm"), &api, "mak_wrong")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    server.stop().await;
}

/// `component push --tenant` without a server: checked and stored in the data directory the way
/// an upload is, so a server started on it lists the version.
#[tokio::test]
async fn component_push_into_a_local_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let store = store::Store::open(&format!(
        "sqlite://{}",
        data.path().join("media-analyzer.db").display()
    ))
    .await
    .unwrap();
    let tenant = store.create_tenant("local").await.unwrap();
    let file = TestServer::components_dir().join("face_detector.wasm");
    let push = Push {
        file: &file,
        name: "faces",
        world: "detector",
    };
    media_analyzer::component::push_local(&push, &store, data.path(), "local")
        .await
        .unwrap();
    let versions = store.component_versions(&tenant.id).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (
            versions[0].name.as_str(),
            versions[0].version,
            versions[0].created_by.as_str()
        ),
        ("faces", 1, "cli")
    );
    let kept = data
        .path()
        .join("components")
        .join(format!("{}.wasm", versions[0].sha256));
    assert_eq!(std::fs::read(kept).unwrap(), std::fs::read(&file).unwrap());
    // A refused one leaves nothing, and an unknown tenant is named.
    let escape = TestServer::components_dir().join("escape_attempt.wasm");
    let refused = Push {
        file: &escape,
        ..push.clone()
    };
    let err = media_analyzer::component::push_local(&refused, &store, data.path(), "local")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not allow"), "{err}");
    assert_eq!(store.component_versions(&tenant.id).await.unwrap().len(), 1);
    let err = media_analyzer::component::push_local(&push, &store, data.path(), "nobody")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no tenant named 'nobody'"),
        "{err}"
    );
}

/// Ten swaps between two versions of a detector on a live RTMP stream: each `PUT` answers with
/// the frame its pipeline applies from, and the stream's `pipeline` events say the same; every
/// analysed frame's detections (live and stored) come from one version — the one in force at that
/// frame —, no frame is analysed twice, and a swap skips no more frames than analysis skips
/// anyway. Every swap is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_on_a_live_stream_lose_and_mix_no_frames() {
    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;

    let _alone = LIVE_ANALYSIS.lock().await;
    let photo = e2e::fixture_photo("coffee");
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let key = server.api_key.clone();
    let detector = component("object-detector");
    for version in [1, 2] {
        let (status, body) = upload(&server, &key, "cups", "detector", &detector).await;
        assert_eq!((status, &body["version"]), (201, &Value::from(version)));
    }
    let token = server.playback_token().await;
    let mut viewer = e2e::Viewer::connect(
        &server.http(""),
        &server.stream_id,
        &format!("token={token}"),
    )
    .await
    .unwrap();
    let publisher = e2e::publish_photo(&photo, &server.rtmp_url(&server.stream_key), 16);
    // Analysis is under way before the first swap.
    let mut events = viewer
        .until(Duration::from_secs(30), |e| e["type"] == "detections")
        .await;

    let pipeline = server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id));
    let mut answers = Vec::new();
    for swap in 0..10 {
        let version = 1 + swap % 2;
        let body = format!(r#"{{"detector":[{{"name":"cups","version":{version}}}]}}"#);
        let (status, text) = e2e::http_send("PUT", &pipeline, Some(&key), &body).await;
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        let seq = answer["applies_from_seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("swap {swap} did not apply within 5 s: {answer}"));
        answers.push((answer["change"].as_str().unwrap().to_string(), seq, version));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (ok, stderr) = e2e::finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    events.extend(
        viewer
            .until(Duration::from_secs(30), |e| {
                e["type"] == "stream" && e["state"] == "offline"
            })
            .await,
    );

    // The pipeline events are the answers, in order.
    let applied: Vec<(String, u64)> = events
        .iter()
        .filter(|e| e["type"] == "pipeline")
        .map(|e| {
            (
                e["change"].as_str().unwrap().to_string(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let asked: Vec<(String, u64)> = answers.iter().map(|(c, s, _)| (c.clone(), *s)).collect();
    assert_eq!(applied, asked);
    assert!(events.iter().all(|e| e["type"] != "lagged"));
    // The version in force at a frame: the last swap that applied at or before it.
    let in_force = |seq: u64| {
        answers
            .iter()
            .rev()
            .find(|(_, from, _)| *from <= seq)
            .map(|(_, _, v)| format!("cups@{v}"))
    };
    let frames: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "detections")
        .collect();
    let mut seen = HashSet::new();
    let mut analysed = Vec::new();
    for frame in &frames {
        let seq = frame["seq"].as_u64().unwrap();
        assert!(seen.insert(seq), "frame {seq} analysed twice");
        analysed.push(seq);
        let components: HashSet<&str> = frame["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["component"].as_str().unwrap())
            .collect();
        if let Some(version) = in_force(seq) {
            assert!(
                components.iter().all(|c| *c == version),
                "frame {seq}: {components:?}, expected only {version}"
            );
        }
    }
    assert!(
        analysed.windows(2).all(|w| w[0] < w[1]),
        "frames out of order"
    );
    // Each swap's first frame was analysed, and the gaps before swap frames are like the others:
    // a swap that cost frames would widen them all (their median), while a stall of the machine
    // widens one gap anywhere — so the median is held to the median, and any one gap only to a
    // generous bound (a swap that blocked analysis for a second would skip 30 frames).
    let starts: HashSet<u64> = answers.iter().map(|(_, s, _)| *s).collect();
    assert!(starts.iter().all(|s| seen.contains(s)));
    let gaps = analysed.windows(2).map(|w| (w[1], w[1] - w[0]));
    let (at_swaps, elsewhere): (Vec<_>, Vec<_>) = gaps.partition(|(seq, _)| starts.contains(seq));
    let median = |gaps: &[(u64, u64)]| {
        let mut g: Vec<u64> = gaps.iter().map(|(_, g)| *g).collect();
        g.sort_unstable();
        g.get(g.len() / 2).copied().unwrap_or(1)
    };
    let (swap_median, usual) = (median(&at_swaps), median(&elsewhere));
    let widest = elsewhere.iter().map(|(_, g)| *g).max().unwrap_or(1);
    assert!(
        swap_median <= 2 * usual + 1,
        "gaps before swap frames {at_swaps:?} (median {swap_median}) against a median of {usual} elsewhere"
    );
    for (seq, gap) in &at_swaps {
        assert!(
            *gap <= 3 * widest + 3,
            "{gap} frames skipped before swap frame {seq} (elsewhere at most {widest})"
        );
    }
    // The store has what viewers saw: per frame, detections of one version only.
    let (status, text) = http_request(
        "GET",
        &server.http(&format!(
            "/api/v1/streams/{}/detections?limit=1000",
            server.stream_id
        )),
        Some(&key),
    )
    .await;
    assert_eq!(status, 200);
    let stored: Value = serde_json::from_str(&text).unwrap();
    let mut by_frame: BTreeMap<u64, HashSet<String>> = BTreeMap::new();
    for d in stored["detections"].as_array().unwrap() {
        by_frame
            .entry(d["seq"].as_u64().unwrap())
            .or_default()
            .insert(d["component"].as_str().unwrap().to_string());
    }
    for (seq, components) in &by_frame {
        if let Some(version) = in_force(*seq) {
            assert_eq!(components.len(), 1, "frame {seq}: {components:?}");
            assert!(components.contains(&version), "frame {seq}: {components:?}");
        }
    }
    // Every swap is on record, with the key that made it.
    let tenant = server
        .store()
        .stream_by_id(&server.stream_id)
        .await
        .unwrap()
        .unwrap()
        .tenant_id;
    let changes = server.store().pipeline_changes(&tenant, 50).await.unwrap();
    assert_eq!(changes.len(), 10);
    assert!(changes.iter().all(|c| c.by.starts_with("key_")));
    println!(
        "{} frames analysed; swaps applied at {:?}",
        analysed.len(),
        answers.iter().map(|(_, s, _)| s).collect::<Vec<_>>()
    );
    server.stop().await;
}

/// The SDK example (components/examples/brand-colour, under 50 lines) is built, uploaded, set as
/// a stream's pipeline before the stream starts — so it runs from the first frame — and finds
/// the brand-red half of a published picture, with its settings from the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_example_is_uploaded_and_runs_on_a_stream_from_its_first_frame() {
    use std::time::{Duration, Instant};

    let _alone = LIVE_ANALYSIS.lock().await;
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../components/examples/brand-colour/src/lib.rs"),
    )
    .unwrap();
    assert!(
        source.lines().count() < 50,
        "the example grew past 50 lines"
    );
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let key = server.api_key.clone();
    let (status, uploaded) = upload(
        &server,
        &key,
        "brand-colour",
        "detector",
        &component("brand-colour"),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    // Beside it, a component that never returns: it fails at its deadline on every frame, and
    // the example's results stand.
    let (status, looper) = upload(
        &server,
        &key,
        "looper",
        "detector",
        &component("loop-forever"),
    )
    .await;
    assert_eq!(status, 201, "{looper}");
    let (status, text) = e2e::http_send(
        "PUT",
        &server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id)),
        Some(&key),
        r##"{"detector":[{"name":"brand-colour","config":{"colour":"#E41E2B","min-share":"0.2"}},{"name":"looper"}]}"##,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let mut publisher = publish_brand_red(&server.rtmp_url(&server.stream_key), 5);
    let path = format!("/api/v1/streams/{}/detections?limit=1000", server.stream_id);
    let started = Instant::now();
    let found = loop {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let found = page["detections"].as_array().unwrap().clone();
        if !found.is_empty() {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing found within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = publisher.wait().await;
    for d in &found {
        assert_eq!(
            (&d["label"], &d["component"]),
            (
                &Value::from("colour:e41e2b"),
                &Value::from("brand-colour@1")
            ),
            "only the stream's pipeline ran: {d}"
        );
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            b[0] < 0.02 && (b[2] - 0.5).abs() < 0.03 && b[3] > 0.97,
            "{b:?}"
        );
        assert!(d["score"].as_f64().unwrap() > 0.9, "{d}");
    }
    // Each component's counters and log, as its tenant sees them (written every 2 s).
    let (example, looping) = activity_when(
        &server,
        &key,
        ["brand-colour", "looper"],
        |example, looping| {
            example["versions"][0]["calls"].as_i64() > Some(0)
                && looping["versions"][0]["deadlines"].as_i64() > Some(0)
        },
        Duration::from_secs(15),
    )
    .await;
    let ran = &example["versions"][0];
    assert_eq!(
        (&ran["component"], &ran["failures"]),
        (&Value::from("brand-colour@1"), &Value::from(0))
    );
    let stuck = &looping["versions"][0];
    assert_eq!(stuck["failures"], stuck["calls"], "{looping}");
    assert!(
        stuck["last_error"].as_str().unwrap().contains("deadline"),
        "{looping}"
    );
    assert!(
        stuck["mean_call_ms"].as_f64().unwrap() >= 900.0,
        "{looping}"
    );
    let line = &looping["log"][0];
    assert_eq!(
        (&line["level"], &line["component"]),
        (&Value::from("error"), &Value::from("looper@1"))
    );
    assert_eq!(line["stream"], Value::from(server.stream_id.clone()));
    server.stop().await;
}

/// Publishes `seconds` of a 640×360 picture whose left half is brand red (#E41E2B), the right
/// half white.
fn publish_brand_red(url: &str, seconds: u32) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("color=c=white:s=640x360:r=30,drawbox=x=0:y=0:w=320:h=360:color=0xE41E2B@1:t=fill")
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-f", "flv"])
        .arg(url)
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg")
}

async fn upload_model(server: &TestServer, key: &str, name: &str, bytes: &[u8]) -> (u16, Value) {
    let push = Push {
        file: Path::new("model.onnx"),
        name,
        world: "",
    };
    post_form(server, key, "/api/v1/models", &push, bytes).await
}

/// A model whose one initializer keeps its weights in an external file (`location` names a
/// file of the host): protobuf written out by hand.
fn model_with_external_data() -> Vec<u8> {
    fn field(number: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push((number << 3) | 2);
        out.push(body.len() as u8);
        out.extend_from_slice(body);
    }
    let mut entry = Vec::new();
    field(1, b"location", &mut entry);
    field(2, b"/etc/passwd", &mut entry);
    let mut tensor = Vec::new();
    field(8, b"weights", &mut tensor);
    field(13, &entry, &mut tensor);
    let mut graph = Vec::new();
    field(5, &tensor, &mut graph);
    let mut model = vec![0x08, 0x08]; // ir_version 8
    field(7, &graph, &mut model);
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_models_are_checked_and_only_their_tenants_components_load_them() {
    use std::time::Duration;

    let _alone = LIVE_ANALYSIS.lock().await;
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let store = server.store();
    let (_, other_key) = other_tenant(&store).await;
    let demo = store.tenant_by_name("demo").await.unwrap().unwrap();
    let viewer = store
        .create_api_key_with_role(&demo.id, "viewer", store::Role::Viewer)
        .await
        .unwrap()
        .secret;
    let key = server.api_key.clone();
    let catalog = inference::Catalog::load(&inference::Catalog::default_path()).unwrap();
    let weights = std::fs::read(catalog.model_path("blazeface").unwrap()).unwrap();

    // The other tenant's model: checked by ONNX Runtime, its signature answered.
    let (status, theirs) = upload_model(&server, &other_key, "their-faces", &weights).await;
    assert_eq!(status, 201, "{theirs}");
    assert_eq!(theirs["version"], 1);
    assert_eq!(
        theirs["inputs"][0]["shape"],
        serde_json::json!([1, 128, 128, 3])
    );
    // Not the demo tenant's to see or delete.
    let (status, text) = http_request("GET", &server.http("/api/v1/models"), Some(&key)).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("their-faces"), "{text}");
    let theirs_url = server.http("/api/v1/models/their-faces/versions/1");
    assert_eq!(http_request("DELETE", &theirs_url, Some(&key)).await.0, 404);

    // Hostile and refused uploads: a clear error, and nothing stored.
    let refused: [(&str, &str, Vec<u8>, u16, &str); 5] = [
        (
            "junk",
            &key,
            b"not an onnx model".to_vec(),
            422,
            "not an ONNX model",
        ),
        (
            "outside",
            &key,
            model_with_external_data(),
            422,
            "external file",
        ),
        (
            "truncated",
            &key,
            weights[..weights.len() / 2].to_vec(),
            422,
            "",
        ),
        ("blazeface", &key, weights.clone(), 409, "bundled model"),
        ("mine", &viewer, weights.clone(), 403, ""),
    ];
    for (name, who, bytes, code, reason) in refused {
        let (status, body) = upload_model(&server, who, name, &bytes).await;
        assert_eq!(status, code, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {body}");
    }
    let models_dir = server.data.path().join("models");
    assert_eq!(std::fs::read_dir(&models_dir).unwrap().count(), 1);

    // The demo tenant's own copy (the same bytes: one file), and two copies of the face detector
    // (a tenant component): one pointed at the other tenant's model, one at its own.
    let (status, mine) = upload_model(&server, &key, "my-faces", &weights).await;
    assert_eq!((status, &mine["version"]), (201, &Value::from(1)), "{mine}");
    assert_eq!(std::fs::read_dir(&models_dir).unwrap().count(), 1);
    let (status, text) = http_request("GET", &server.http("/api/v1/models"), Some(&viewer)).await;
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{text}");
    let own: Vec<&Value> = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["bundled"] == false)
        .collect();
    assert_eq!(own.len(), 1, "{listed}");
    assert_eq!(
        (&own[0]["name"], &own[0]["versions"][0]["current"]),
        (&Value::from("my-faces"), &Value::from(true))
    );
    let faces = component("face-detector");
    for name in ["faces-theirs", "faces-mine"] {
        let (status, body) = upload(&server, &key, name, "detector", &faces).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, text) = e2e::http_send(
        "PUT",
        &server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id)),
        Some(&key),
        r#"{"detector":[{"name":"faces-theirs","config":{"model":"their-faces"}},{"name":"faces-mine","config":{"model":"my-faces"}}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let mut publisher = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=640x360:r=30", "-t", "5"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-f", "flv"])
        .arg(server.rtmp_url(&server.stream_key))
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg");
    let (theirs, mine) = activity_when(
        &server,
        &key,
        ["faces-theirs", "faces-mine"],
        |theirs, mine| {
            theirs["versions"][0]["calls"].as_i64() > Some(2)
                && mine["versions"][0]["calls"].as_i64() > Some(2)
        },
        Duration::from_secs(30),
    )
    .await;
    let _ = publisher.wait().await;
    // The other tenant's model is not there for the demo's component; its own is, and runs.
    let failed = &theirs["versions"][0];
    assert_eq!(failed["failures"], failed["calls"], "{theirs}");
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains("no model 'their-faces'") && !error.contains("their-faces,"),
        "{theirs}"
    );
    assert_eq!(mine["versions"][0]["failures"], 0, "{mine}");
    server.stop().await;
}

/// What a webhook receiver got: per request, its headers and body.
type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1 that takes every delivery (204).
async fn webhook_receiver() -> (String, Deliveries) {
    let got = Deliveries::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(got): axum::extract::State<Deliveries>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    got.lock().unwrap().push((headers, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// An endpoint on 127.0.0.1 that takes connections and never answers.
async fn hanging_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// Whether `signature` is `sha256=<hex HMAC-SHA256 of body under secret>`.
fn signed_with(secret: &str, body: &[u8], signature: &str) -> bool {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .is_some_and(|expected| mac.verify_slice(&expected).is_ok())
}

/// Alerts end to end on a live RTMP stream: the brand on screen for 2 s raises one alert from
/// the bundled brand-rules trigger — on the stream's WebSocket, stored, and delivered signed to
/// the tenant's webhook — while a webhook that never answers slows neither the other webhook nor
/// the analysis. Another tenant sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_on_screen_raises_one_alert_on_the_socket_in_the_store_and_at_the_webhook() {
    use std::time::{Duration, Instant};

    let _alone = LIVE_ANALYSIS.lock().await;
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
        c.webhook_policy.allow_private = true;
    })
    .await;
    let key = server.api_key.clone();
    let store = server.store();
    let (_, other_key) = other_tenant(&store).await;

    // Webhooks: the receiver, and one that never answers.
    let (receiver, delivered) = webhook_receiver().await;
    let hooks = server.http("/api/v1/webhooks");
    let body = format!(r#"{{"url":"{receiver}","events":["alert","stream"]}}"#);
    let (status, created) = e2e::http_send("POST", &hooks, Some(&key), &body).await;
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    let body = format!(
        r#"{{"url":"{}","events":["alert"]}}"#,
        hanging_receiver().await
    );
    let (status, hanging) = e2e::http_send("POST", &hooks, Some(&key), &body).await;
    assert_eq!(status, 201, "{hanging}");
    // Hostile or wrong webhooks are refused; the other tenant sees none of ours.
    for body in [
        r#"{"url":"http://169.254.169.254/latest","events":["alert"]}"#,
        r#"{"url":"file:///etc/passwd","events":["alert"]}"#,
        r#"{"url":"https://example.com/","events":["detections"]}"#,
    ] {
        assert_eq!(
            e2e::http_send("POST", &hooks, Some(&key), body).await.0,
            400,
            "{body}"
        );
    }
    let (_, theirs) = http_request("GET", &hooks, Some(&other_key)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&theirs).unwrap()["webhooks"],
        serde_json::json!([])
    );
    let ours = server.http(&format!(
        "/api/v1/webhooks/{}",
        created["id"].as_str().unwrap()
    ));
    assert_eq!(http_request("DELETE", &ours, Some(&other_key)).await.0, 404);
    let (_, listed) = http_request("GET", &hooks, Some(&key)).await;
    assert!(!listed.contains(&secret), "the secret is shown once");

    // The pipeline: the SDK example labels the brand's colour as a brand; brand-rules alerts
    // after 2 s on screen.
    let (status, uploaded) = upload(
        &server,
        &key,
        "brand-colour",
        "detector",
        &component("brand-colour"),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let pipeline = r##"{"detector":[{"name":"brand-colour","config":{"colour":"#E41E2B","min-share":"0.2","label":"brand:acme"}}],
        "trigger":[{"name":"brand-rules","config":{"min-seconds":"2","cooldown-seconds":"600"}}]}"##;
    let (status, text) = e2e::http_send(
        "PUT",
        &server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id)),
        Some(&key),
        pipeline,
    )
    .await;
    assert_eq!(status, 200, "{text}");

    let token = server.playback_token().await;
    let mut viewer = e2e::Viewer::connect(
        &server.http(""),
        &server.stream_id,
        &format!("token={token}"),
    )
    .await
    .unwrap();
    let mut publisher = publish_brand_red(&server.rtmp_url(&server.stream_key), 6);
    let seen = viewer
        .until(Duration::from_secs(25), |e| e["type"] == "alert")
        .await;
    let alert = seen.last().unwrap().clone();
    let alerted = Instant::now();
    let first = seen
        .iter()
        .find(|e| e["type"] == "detections" && !e["detections"].as_array().unwrap().is_empty())
        .expect("detections before the alert");
    assert_eq!(
        (&alert["rule"], &alert["component"], &alert["stream"]),
        (
            &Value::from("on-screen"),
            &Value::from("brand-rules"),
            &Value::from(server.stream_id.clone())
        )
    );
    assert!(
        alert["message"].as_str().unwrap().contains("acme"),
        "{alert}"
    );
    let on_screen_ms = alert["pts_ms"].as_i64().unwrap() - first["pts_ms"].as_i64().unwrap();
    assert!(
        (2000..3000).contains(&on_screen_ms),
        "alerted after {on_screen_ms} ms on screen"
    );
    assert_eq!(alert["detections"][0]["label"], "brand:acme", "{alert}");
    assert_eq!(
        alert["detections"][0]["component"], "brand-colour@1",
        "{alert}"
    );
    // Analysis goes on while the hanging webhook holds its delivery: frames keep coming, at
    // the stream's pace.
    let after = viewer
        .until(Duration::from_secs(5), |e| {
            e["type"] == "detections" && e["seq"].as_u64() >= alert["seq"].as_u64().map(|s| s + 30)
        })
        .await;
    assert!(
        alerted.elapsed() < Duration::from_millis(1500),
        "30 frames took {:?}",
        alerted.elapsed()
    );
    assert!(
        after.iter().all(|e| e["type"] != "alert"),
        "one alert per appearance: {after:?}"
    );

    // The receiver got it within a second, signed, with the alert's id.
    let started = Instant::now();
    let alert_delivery = loop {
        let found = delivered
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| h["x-mediaanalyzer-event"] == "alert")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (headers, body) = alert_delivery;
    let signature = headers["x-mediaanalyzer-signature"].to_str().unwrap();
    assert!(signed_with(&secret, &body, signature), "{signature}");
    assert!(!signed_with("whsec_other", &body, signature));
    assert_eq!(
        headers["x-mediaanalyzer-delivery"],
        alert["id"].as_str().unwrap()
    );
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent, alert, "the webhook gets what the socket got");

    let _ = publisher.wait().await;
    // Stored: exactly this one alert, for its tenant only.
    let alerts = server.http(&format!("/api/v1/alerts?stream={}", server.stream_id));
    let (status, text) = http_request("GET", &alerts, Some(&key)).await;
    assert_eq!(status, 200, "{text}");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["alerts"].as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored["alerts"][0]["id"], alert["id"]);
    assert_eq!(http_request("GET", &alerts, Some(&other_key)).await.0, 404);
    // Stream events reached the receiver too (live, then offline when the publisher stopped).
    let started = Instant::now();
    loop {
        let states: Vec<String> = delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| h["x-mediaanalyzer-event"] == "stream")
            .map(|(_, b)| {
                serde_json::from_slice::<Value>(b).unwrap()["state"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if states == ["live", "offline"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stream events: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, listed) = http_request("GET", &hooks, Some(&key)).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["webhooks"][0]["deliveries"]["delivered"], 3,
        "{listed}"
    );
    assert_eq!(
        listed["webhooks"][1]["deliveries"]["delivered"], 0,
        "{listed}"
    );
    server.stop().await;
}

/// A mark on screen: its PNG, where (pixels on the 640×360 picture) and when (seconds,
/// inclusive).
struct OnScreen<'a> {
    png: &'a Path,
    at: (u32, u32),
    during: (f64, f64),
}

/// Publishes the astronaut photo (640×360, 30 fps, real time) for `seconds` with `marks` drawn
/// on it while they are on screen.
fn publish_marks(url: &str, seconds: u32, marks: &[OnScreen]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-loop", "1", "-framerate", "30", "-i"])
        .arg(e2e::fixture_photo("astronaut"));
    let mut graph = String::from("[0]scale=640:360,setsar=1[v0]");
    for (i, mark) in marks.iter().enumerate() {
        command
            .args(["-loop", "1", "-framerate", "30", "-i"])
            .arg(mark.png);
        graph.push_str(&format!(
            ";[v{i}][{}]overlay=x={}:y={}:enable='between(t,{},{})'[v{}]",
            i + 1,
            mark.at.0,
            mark.at.1,
            mark.during.0,
            mark.during.1,
            i + 1
        ));
    }
    command
        .args([
            "-filter_complex",
            &graph,
            "-map",
            &format!("[v{}]", marks.len()),
        ])
        .args(["-t", &seconds.to_string(), "-r", "30"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-f", "flv"])
        .arg(url)
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg")
}

/// The brand report once the stream is offline and its results have all been stored (two reads
/// a second apart agree).
async fn settled_report(server: &TestServer, key: &str) -> Value {
    let url = server.http(&format!("/api/v1/streams/{}/brands", server.stream_id));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = Value::Null;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let offline = server.stream_json().await["state"] == "offline";
        let (status, text) = http_request("GET", &url, Some(key)).await;
        assert_eq!(status, 200, "{text}");
        let report: Value = serde_json::from_str(&text).unwrap();
        if offline && report == last {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the report did not settle: {report}"
        );
        last = report;
    }
}

/// The brand report of a live stream in which two real marks are on screen for known intervals
/// (overlapping, drawn in colour on a photo; the catalogue holds the plain black marks): each
/// brand's screen time within 10 % of the truth, one appearance each; a restarted stream, whose
/// pipeline changes while it runs, adds its own; CSV the same; another tenant gets 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brand_report_of_a_stream_is_within_ten_percent_of_the_true_screen_time() {
    let _alone = LIVE_ANALYSIS.lock().await;
    let server = TestServer::start_with(|c| {
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let key = server.api_key.clone();
    let dir = tempfile::tempdir().unwrap();
    let marks = [
        ("Coca-Cola", "cocacola", [244, 0, 0], (400, 20), (2.0, 7.0)),
        ("Starbucks", "starbucks", [0, 98, 65], (40, 20), (5.0, 10.0)),
    ];
    for (name, slug, rgb, _, _) in &marks {
        let body = format!(r#"{{"name":"{name}"}}"#);
        let (status, text) =
            e2e::http_send("POST", &server.http("/api/v1/brands"), Some(&key), &body).await;
        assert_eq!(status, 201, "{text}");
        let svg = dir.path().join(format!("{slug}.svg"));
        std::fs::copy(e2e::logo_fixture(slug), &svg).unwrap();
        let push = Push {
            file: &svg,
            name: "",
            world: "",
        };
        let path = format!("/api/v1/brands/{name}/logos");
        let (status, logo) =
            post_form(&server, &key, &path, &push, &std::fs::read(&svg).unwrap()).await;
        assert_eq!(status, 201, "{logo}");
        e2e::draw_mark(slug, 90, *rgb, &dir.path().join(format!("{slug}.png")));
    }
    let pngs: Vec<_> = marks
        .iter()
        .map(|m| dir.path().join(format!("{}.png", m.1)))
        .collect();
    let on_screen: Vec<OnScreen> = marks
        .iter()
        .zip(&pngs)
        .map(|(m, png)| OnScreen {
            png,
            at: m.3,
            during: m.4,
        })
        .collect();
    let pipeline = server.http(&format!("/api/v1/streams/{}/pipeline", server.stream_id));
    let (status, text) = e2e::http_send(
        "PUT",
        &pipeline,
        Some(&key),
        r#"{"detector":[{"name":"logo-matcher"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");

    let check = |report: &Value, sessions: f64| {
        assert!(report["frames"].as_u64().unwrap() > 12 * 5, "{report}");
        for (name, _, _, _, (from, to)) in &marks {
            let folded: String = name
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect();
            let brand = report["brands"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["brand"] == folded.as_str())
                .unwrap_or_else(|| panic!("{name} is not in the report: {report}"));
            let truth = (to - from) * sessions;
            let measured = brand["screen_time_s"].as_f64().unwrap();
            assert!(
                (measured - truth).abs() <= 0.1 * truth,
                "{name}: {measured} s on screen, truly {truth} s: {report}"
            );
            assert_eq!(brand["appearances"], sessions as u64, "{report}");
            assert_eq!(brand["name"], *name);
            assert_eq!(brand["components"], serde_json::json!(["logo-matcher"]));
            let area = brand["share_of_area"].as_f64().unwrap();
            assert!((0.005..0.05).contains(&area), "{name}: area {area}");
        }
        assert_eq!(report["brands"].as_array().unwrap().len(), 2, "{report}");
    };

    let mut publisher = publish_marks(&server.rtmp_url(&server.stream_key), 12, &on_screen);
    assert!(publisher.wait().await.unwrap().success());
    let report = settled_report(&server, &key).await;
    eprintln!("brand report after one session: {report}");
    check(&report, 1.0);

    // The stream restarts; its pipeline changes while it runs (a detector is added).
    let mut publisher = publish_marks(&server.rtmp_url(&server.stream_key), 12, &on_screen);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (status, text) = e2e::http_send(
        "PUT",
        &pipeline,
        Some(&key),
        r#"{"detector":[{"name":"logo-matcher"},{"name":"object-detector"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(publisher.wait().await.unwrap().success());
    let report = settled_report(&server, &key).await;
    eprintln!("brand report after two sessions: {report}");
    check(&report, 2.0);

    // CSV: the same brands and times.
    let report_url = server.http(&format!(
        "/api/v1/streams/{}/brands?format=csv",
        server.stream_id
    ));
    let (status, csv) = http_request("GET", &report_url, Some(&key)).await;
    assert_eq!(status, 200, "{csv}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("brand,name,in_catalogue,screen_time_s,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    for brand in report["brands"].as_array().unwrap() {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{},", brand["brand"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{brand} not in {csv}"));
        let seconds: f64 = line.split(',').nth(3).unwrap().parse().unwrap();
        assert!((seconds - brand["screen_time_s"].as_f64().unwrap()).abs() < 0.001);
    }
    let (status, text) = http_request(
        "GET",
        &server.http(&format!(
            "/api/v1/streams/{}/brands?format=xml",
            server.stream_id
        )),
        Some(&key),
    )
    .await;
    assert_eq!(status, 400, "{text}");

    // Another tenant: 404.
    let store = server.store();
    let (_, other_key) = other_tenant(&store).await;
    assert_eq!(
        http_request("GET", &report_url, Some(&other_key)).await.0,
        404
    );
    server.stop().await;
}
