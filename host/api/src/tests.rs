use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Fixture {
    app: Router,
    store: store::Store,
    hls_root: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
    let hls_root = dir.path().join("hls");
    let state = AppState {
        store: store.clone(),
        hls_root: hls_root.clone(),
        dashboard: None,
        token_key: TokenKey::new(b"test-secret"),
        rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
        metrics: Arc::new(|| "media_analyzer_up 1\n".to_string()),
        viewers: events::Viewers::default(),
    };
    Fixture {
        app: router(state),
        store,
        hls_root,
        _dir: dir,
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body, headers)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// A request with a JSON body and a bearer key; the answer's status and JSON body.
async fn send_json(
    app: &Router,
    method: &str,
    uri: &str,
    key: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, json(&bytes))
}

#[tokio::test]
async fn unauthenticated_requests_get_401_json() {
    let f = fixture().await;
    for uri in ["/api/v1/streams", "/api/v1/me", "/hls/str_x/index.m3u8"] {
        let (status, body, headers) = call(&f.app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(json(&body)["error"]["code"], "unauthorized");
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    let (status, _, _) = call(&f.app, "GET", "/api/v1/streams", Some("mak_wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn another_tenants_stream_is_not_found() {
    let f = fixture().await;
    let a = f.store.create_tenant("a").await.unwrap();
    let b = f.store.create_tenant("b").await.unwrap();
    let key_b = f.store.create_api_key(&b.id, "t").await.unwrap();
    let (stream, _) = f.store.create_stream(&a.id, "main").await.unwrap();
    for (method, uri) in [
        ("GET", format!("/api/v1/streams/{}", stream.id)),
        (
            "POST",
            format!("/api/v1/streams/{}/playback-token", stream.id),
        ),
        ("GET", format!("/hls/{}/index.m3u8", stream.id)),
    ] {
        let (status, body, _) = call(&f.app, method, &uri, Some(&key_b.secret)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(json(&body)["error"]["code"], "not_found");
    }
    let (_, body, _) = call(&f.app, "GET", "/api/v1/streams", Some(&key_b.secret)).await;
    assert_eq!(json(&body)["streams"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn unknown_api_route_is_json_404() {
    let f = fixture().await;
    for uri in ["/api/v1/nope", "/api/v2/streams", "/nothing-here"] {
        let (status, body, _) = call(&f.app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(json(&body)["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn streams_tokens_and_hls_delivery() {
    let f = fixture().await;
    let t = f.store.create_tenant("demo").await.unwrap();
    let key = f.store.create_api_key(&t.id, "t").await.unwrap();
    let (stream, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let (status, body, _) = call(&f.app, "GET", "/api/v1/streams", Some(&key.secret)).await;
    assert_eq!(status, StatusCode::OK);
    let list = json(&body);
    assert_eq!(list["streams"][0]["id"], stream.id.as_str());
    assert_eq!(list["streams"][0]["state"], "offline");
    assert_eq!(
        list["streams"][0]["hls_path"],
        format!("/hls/{}/index.m3u8", stream.id)
    );

    // No playlist yet: a clear 404.
    let (status, body, _) = call(
        &f.app,
        "GET",
        &format!("/hls/{}/index.m3u8", stream.id),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not published")
    );

    let dir = f.hls_root.join(&stream.id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.m3u8"),
        "#EXTM3U\n#EXTINF:2.000,\nseg-0.ts\n",
    )
    .unwrap();
    std::fs::write(dir.join("seg-0.ts"), [0x47u8; 188]).unwrap();

    let (status, body, _) = call(
        &f.app,
        "POST",
        &format!("/api/v1/streams/{}/playback-token", stream.id),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = json(&body);
    let hls_url = token["hls_url"].as_str().unwrap().to_string();
    let (status, body, headers) = call(&f.app, "GET", &hls_url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(headers["cache-control"], "no-cache");
    let text = String::from_utf8(body).unwrap();
    let segment_line = text
        .lines()
        .find(|l| l.starts_with("seg-0.ts?token="))
        .expect("token on segment URIs");
    let (status, body, headers) = call(
        &f.app,
        "GET",
        &format!("/hls/{}/{segment_line}", stream.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/mp2t");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(body.len(), 188);

    // A token for one stream does not open another, and a bad token is refused.
    let (other, _) = f.store.create_stream(&t.id, "other").await.unwrap();
    let tok = token["token"].as_str().unwrap();
    let (status, _, _) = call(
        &f.app,
        "GET",
        &format!("/hls/{}/index.m3u8?token={tok}", other.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Names outside the HLS set are never read from disk.
    let (status, _, _) = call(
        &f.app,
        "GET",
        &format!("/hls/{}/index.m3u8.tmp", stream.id),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let f = fixture().await;
    assert_eq!(
        call(&f.app, "GET", "/healthz", None).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&f.app, "GET", "/readyz", None).await.0, StatusCode::OK);
    let (status, body, _) = call(&f.app, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("media_analyzer_up")
    );
    let (status, body, _) = call(&f.app, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let doc = json(&body);
    assert!(doc["paths"]["/api/v1/streams/{id}/playback-token"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Without a built dashboard, / explains how to build it.
    let (status, body, _) = call(&f.app, "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(body).unwrap().contains("scripts/setup"));
}

#[tokio::test]
async fn create_stream_returns_key_once_and_validates() {
    let f = fixture().await;
    let t = f.store.create_tenant("demo").await.unwrap();
    let key = f.store.create_api_key(&t.id, "t").await.unwrap();
    let post = |body: &'static str| send_json(&f.app, "POST", "/api/v1/streams", &key.secret, body);
    let (status, body) = post(r#"{"name":"studio-2"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let sk = body["stream_key"].as_str().unwrap();
    assert_eq!(
        f.store.stream_for_key(sk).await.unwrap().unwrap().name,
        "studio-2"
    );
    assert_eq!(post(r#"{"name":"studio-2"}"#).await.0, StatusCode::CONFLICT);
    assert_eq!(
        post(r#"{"name":"bad name"}"#).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn detections_are_paged_and_tenant_scoped() {
    let f = fixture().await;
    let a = f.store.create_tenant("a").await.unwrap();
    let b = f.store.create_tenant("b").await.unwrap();
    let key_a = f.store.create_api_key(&a.id, "t").await.unwrap();
    let key_b = f.store.create_api_key(&b.id, "t").await.unwrap();
    let (stream, _) = f.store.create_stream(&a.id, "main").await.unwrap();
    let mut batch: Vec<store::DetectionRecord> = (0..3)
        .map(|i| store::DetectionRecord {
            id: String::new(),
            stream_id: stream.id.clone(),
            seq: i,
            pts_ms: i * 33,
            wallclock: 1_700_000_000_000 + i * 1000,
            label: "cup".into(),
            score: 0.8,
            bbox: [0.1, 0.2, 0.3, 0.4],
            component: "object-detector".into(),
        })
        .collect();
    f.store.add_detections(&mut batch).await.unwrap();
    let base = format!("/api/v1/streams/{}/detections", stream.id);
    let (status, body, _) = call(
        &f.app,
        "GET",
        &format!("{base}?limit=2"),
        Some(&key_a.secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let page = json(&body);
    assert_eq!(page["detections"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["detections"][0]["box"],
        serde_json::json!([0.1, 0.2, 0.3, 0.4])
    );
    assert_eq!(page["detections"][0]["wallclock"], "2023-11-14T22:13:20Z");
    let next = page["next"].as_str().unwrap();
    let (_, body, _) = call(
        &f.app,
        "GET",
        &format!("{base}?limit=2&cursor={next}"),
        Some(&key_a.secret),
    )
    .await;
    assert_eq!(json(&body)["detections"].as_array().unwrap().len(), 1);
    assert!(json(&body)["next"].is_null());
    let (_, body, _) = call(
        &f.app,
        "GET",
        &format!("{base}?from=2023-11-14T22:13:21Z&to=1700000002000"),
        Some(&key_a.secret),
    )
    .await;
    assert_eq!(json(&body)["detections"].as_array().unwrap().len(), 1);
    let (status, _, _) = call(
        &f.app,
        "GET",
        &format!("{base}?from=yesterday"),
        Some(&key_a.secret),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(&f.app, "GET", &base, Some(&key_b.secret)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's detections are not found"
    );
}

#[tokio::test]
async fn mode_switches_between_realtime_and_batch_and_is_validated() {
    let f = fixture().await;
    let a = f.store.create_tenant("a").await.unwrap();
    let b = f.store.create_tenant("b").await.unwrap();
    let key_a = f.store.create_api_key(&a.id, "t").await.unwrap().secret;
    let key_b = f.store.create_api_key(&b.id, "t").await.unwrap().secret;
    let (s, _) = f.store.create_stream(&a.id, "main").await.unwrap();
    let uri = format!("/api/v1/streams/{}/mode", s.id);

    let (_, body, _) = call(
        &f.app,
        "GET",
        &format!("/api/v1/streams/{}", s.id),
        Some(&key_a),
    )
    .await;
    assert_eq!(
        json(&body)["analysis"],
        serde_json::json!({"mode": "realtime", "every": 1})
    );

    let (status, body) =
        send_json(&f.app, "PUT", &uri, &key_a, r#"{"mode":"batch","every":5}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["analysis"],
        serde_json::json!({"mode": "batch", "every": 5})
    );
    assert_eq!(
        f.store.analysis(&s.id).await.unwrap().unwrap().mode,
        store::AnalysisMode::Batch
    );
    let (status, body) = send_json(&f.app, "PUT", &uri, &key_a, r#"{"mode":"realtime"}"#).await;
    assert_eq!(
        (status, &body["analysis"]["every"]),
        (StatusCode::OK, &serde_json::json!(1))
    );

    // Bad bodies are JSON errors, and nothing changes.
    for bad in [
        r#"{"mode":"fast"}"#,
        r#"{"mode":"batch","every":0}"#,
        r#"{"mode":"batch","every":5000}"#,
        r#"{"mode":"batch","extra":1}"#,
        r#"not json"#,
    ] {
        let (status, body) = send_json(&f.app, "PUT", &uri, &key_a, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    assert_eq!(
        f.store.analysis(&s.id).await.unwrap().unwrap().mode,
        store::AnalysisMode::Realtime
    );
    // Another tenant can neither see nor change it.
    let (status, body) = send_json(&f.app, "PUT", &uri, &key_b, r#"{"mode":"batch"}"#).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(
        f.store.analysis(&s.id).await.unwrap().unwrap().mode,
        store::AnalysisMode::Realtime
    );
}
