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
    fixture_with(HttpLimits::default(), None).await
}

pub(crate) fn state_for(
    store: &store::Store,
    hls_root: PathBuf,
    limits: HttpLimits,
    dashboard: Option<PathBuf>,
) -> AppState {
    AppState {
        store: store.clone(),
        hls_root,
        dashboard,
        token_key: TokenKey::new(b"test-secret"),
        rtmp_url: "rtmp://127.0.0.1:1935/live".into(),
        metrics: {
            let viewers = events::Viewers::default();
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(viewers.collector());
            Arc::new(registry)
        },
        viewers: events::Viewers::default(),
        signals: Signals::default(),
        limits: Limits::new(limits),
        playback_token_ttl: crate::streams::PLAYBACK_TOKEN_TTL,
        components: None,
        models: None,
        logo_files: Some(store::ComponentFiles::for_logos(
            std::env::temp_dir().join("media-analyzer-test-logos"),
        )),
        webhook_policy: Default::default(),
    }
}

async fn fixture_with(limits: HttpLimits, dashboard: Option<PathBuf>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
    let hls_root = dir.path().join("hls");
    let state = state_for(&store, hls_root.clone(), limits, dashboard);
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
            .contains("media_analyzer_ws_viewers 0\n")
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
            detection: bus::Detection {
                label: "cup".into(),
                score: 0.8,
                bbox: [0.1, 0.2, 0.3, 0.4],
                component: "object-detector".into(),
            },
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
    assert_eq!(
        page["detections"][0]["wallclock"],
        "2023-11-14T22:13:20.000Z"
    );
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

// ---- hostile input: every error is the documented JSON, without the request's input ----

/// Sends `req` through the router; status, headers and body.
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}

/// The documented error: JSON content type, `{"error":{"code","message"}}` with this code.
#[track_caller]
fn assert_error(status: StatusCode, headers: &axum::http::HeaderMap, body: &[u8], code: &str) {
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    let v = json(body);
    assert_eq!(v["error"]["code"], code, "{status}: {v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

async fn tenant_with_key(store: &store::Store, name: &str) -> (store::Tenant, store::IssuedKey) {
    let t = store.create_tenant(name).await.unwrap();
    let key = store.create_api_key(&t.id, "t").await.unwrap();
    (t, key)
}

fn get(uri: &str, key: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().uri(uri);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn query_errors_405_and_websocket_misuse_are_json() {
    let f = fixture().await;
    let (t, key) = tenant_with_key(&f.store, "a").await;
    let (s, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let k = Some(key.secret.as_str());
    let marker = "ZZMARKERZZ".repeat(10);
    for (uri, code) in [
        (
            format!("/api/v1/streams/{}/detections?limit=abc", s.id),
            "bad_request",
        ),
        (
            format!("/api/v1/streams/{}/detections?limit=-1", s.id),
            "bad_request",
        ),
        (
            format!("/api/v1/streams/{}/detections?limit=0", s.id),
            "bad_request",
        ),
        (
            format!("/api/v1/streams/{}/detections?{marker}=1", s.id),
            "bad_request",
        ),
        (
            format!("/api/v1/streams/{}/detections?from={marker}", s.id),
            "bad_request",
        ),
        (
            format!("/api/v1/streams/{}/events?since=abc", s.id),
            "bad_request",
        ),
        // u64::MAX used to wrap to -1 and replay the stream's whole history.
        (
            format!("/api/v1/streams/{}/events?since=18446744073709551615", s.id),
            "bad_request",
        ),
        (
            format!("/api/v1/streams/{}/events?since=-5", s.id),
            "bad_request",
        ),
        // A plain GET of the WebSocket endpoint.
        (format!("/api/v1/streams/{}/events", s.id), "bad_request"),
        (
            format!("/hls/{}/index.m3u8?token=a&token=b", s.id),
            "bad_request",
        ),
        ("/api/v1/streams/%FF%FE".to_string(), "bad_request"),
    ] {
        let (status, headers, body) = send(&f.app, get(&uri, k)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_error(status, &headers, &body, code);
        assert!(
            !String::from_utf8_lossy(&body).contains(&marker),
            "{uri} echoes its input: {}",
            String::from_utf8_lossy(&body)
        );
    }
    for (method, uri) in [
        ("DELETE", "/api/v1/streams".to_string()),
        ("PATCH", format!("/api/v1/streams/{}", s.id)),
        ("POST", "/healthz".to_string()),
        ("PUT", "/api/v1/openapi.json".to_string()),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", key.secret))
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&f.app, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_error(status, &headers, &body, "method_not_allowed");
        assert!(headers.contains_key("allow"), "{method} {uri} keeps Allow");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_and_invalid_names_are_not_echoed() {
    let f = fixture().await;
    let (t, key) = tenant_with_key(&f.store, "a").await;
    let (s, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let post = |uri: &str, body: Vec<u8>, chunked: bool| {
        let mut req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", format!("Bearer {}", key.secret))
            .header("content-type", "application/json");
        let body = if chunked {
            // No Content-Length: the limit applies while reading.
            Body::from_stream(futures::stream::iter(
                body.chunks(64 * 1024)
                    .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                    .collect::<Vec<_>>(),
            ))
        } else {
            req = req.header("content-length", body.len());
            Body::from(body)
        };
        req.body(body).unwrap()
    };
    let name = "A".repeat(2 << 20);
    let ten_mb = format!(r#"{{"name":"{}"}}"#, "x".repeat(10 << 20)).into_bytes();
    for chunked in [false, true] {
        for uri in ["/api/v1/streams", "/healthz"] {
            if chunked && uri == "/healthz" {
                continue; // a route that reads no body never sees it
            }
            let (status, headers, body) = send(&f.app, post(uri, ten_mb.clone(), chunked)).await;
            assert_eq!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "{uri} chunked={chunked}"
            );
            assert_error(status, &headers, &body, "payload_too_large");
            assert!(body.len() < 300);
        }
        let req = post(
            "/api/v1/streams",
            format!(r#"{{"name":"{name}"}}"#).into_bytes(),
            chunked,
        );
        let (status, headers, body) = send(&f.app, req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_error(status, &headers, &body, "payload_too_large");
    }
    // Under the limit but invalid: a short message without the name.
    let name = "A".repeat(900 * 1024);
    for body in [
        format!(r#"{{"name":"{name}"}}"#),
        format!(r#"{{"name":"ok","{name}":1}}"#),
        format!(r#"{{"name":1{name}"#),
    ] {
        let (status, headers, bytes) =
            send(&f.app, post("/api/v1/streams", body.into_bytes(), false)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_error(status, &headers, &bytes, "bad_request");
        assert!(bytes.len() < 400, "{}", String::from_utf8_lossy(&bytes));
    }
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/api/v1/streams/{}/mode", s.id))
        .header("authorization", format!("Bearer {}", key.secret))
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"mode":"{}"}}"#,
            "b".repeat(500_000)
        )))
        .unwrap();
    let (status, headers, bytes) = send(&f.app, req).await;
    assert_error(status, &headers, &bytes, "bad_request");
    assert!(bytes.len() < 400, "{}", String::from_utf8_lossy(&bytes));
}

#[tokio::test]
async fn long_uris_are_414_json() {
    let f = fixture().await;
    let uri = format!("/api/v1/streams?pad={}", "p".repeat(9000));
    let (status, headers, body) = send(&f.app, get(&uri, None)).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_error(status, &headers, &body, "uri_too_long");
    assert!(!String::from_utf8_lossy(&body).contains("ppp"));
}

/// A dashboard folder with an index page and one asset.
fn dashboard_dir(root: &std::path::Path) -> PathBuf {
    let dir = root.join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><app-root></app-root>",
    )
    .unwrap();
    std::fs::write(dir.join("main.js"), "console.log(1)").unwrap();
    dir
}

#[tokio::test]
async fn unknown_paths_are_json_404_not_the_dashboard() {
    let root = tempfile::tempdir().unwrap();
    let f = fixture_with(HttpLimits::default(), Some(dashboard_dir(root.path()))).await;
    let page = |uri: &str| {
        Request::builder()
            .uri(uri)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Body::empty())
            .unwrap()
    };
    // The dashboard, its files and its own routes (for a browser).
    for uri in ["/", "/streams/str_1", "/sign-in"] {
        let (status, headers, body) = send(&f.app, page(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(String::from_utf8_lossy(&body).contains("app-root"), "{uri}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    let (status, _, body) = send(&f.app, get("/main.js", None)).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"console.log(1)"[..])
    );
    // Not pages: the server's own prefixes, files that do not exist, non-browser clients.
    for req in [
        page("/hls/x"),
        page("/hls"),
        page("/hls/str_1/seg-1.ts/more"),
        page("/api/v1"),
        page("/metrics/x"),
        page("/missing.js"),
        get("/nothing-here", None),
        get("/hls/x", None),
    ] {
        let uri = req.uri().to_string();
        let (status, headers, body) = send(&f.app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_error(status, &headers, &body, "not_found");
    }
}

#[tokio::test]
async fn security_headers_are_on_the_dashboard_and_the_api() {
    let root = tempfile::tempdir().unwrap();
    let f = fixture_with(HttpLimits::default(), Some(dashboard_dir(root.path()))).await;
    for uri in ["/", "/main.js", "/api/v1/streams", "/nothing"] {
        let (_, headers, _) = send(&f.app, get(uri, None)).await;
        assert_eq!(headers["x-content-type-options"], "nosniff", "{uri}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{uri}");
        assert_eq!(headers["x-frame-options"], "DENY", "{uri}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("object-src 'none'"), "{csp}");
    }
}

#[tokio::test]
async fn readyz_does_not_tell_internals() {
    let f = fixture().await;
    f.store.close().await;
    let (status, headers, body) = send(&f.app, get("/readyz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(status, &headers, &body, "unavailable");
    let message = json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(message, "service unavailable: the store does not answer");
}

#[tokio::test]
async fn keys_are_listed_by_prefix_and_revoked_within_the_tenant() {
    let f = fixture().await;
    let (a, key_a) = tenant_with_key(&f.store, "a").await;
    let spare = f.store.create_api_key(&a.id, "spare").await.unwrap();
    let (b, key_b) = tenant_with_key(&f.store, "b").await;
    let (stream, sk) = f.store.create_stream(&a.id, "main").await.unwrap();
    let (_, sk_b) = f.store.create_stream(&b.id, "main").await.unwrap();

    let (status, _, body) = send(&f.app, get("/api/v1/keys", Some(&key_a.secret))).await;
    assert_eq!(status, StatusCode::OK);
    let keys = json(&body)["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let text = serde_json::to_string(&keys).unwrap();
    for secret in [&key_a.secret, &spare.secret, &sk.secret] {
        assert!(!text.contains(secret.as_str()), "secrets are never listed");
    }
    assert!(
        !text.contains(&key_b.id) && !text.contains(&sk_b.id),
        "b's keys stay b's"
    );
    let sk_view = keys.iter().find(|k| k["id"] == sk.id.as_str()).unwrap();
    assert_eq!(sk_view["kind"], "stream");
    assert_eq!(sk_view["stream"], stream.id.as_str());
    assert!(sk_view["revoked_at"].is_null());

    let uri = format!("/api/v1/keys?prefix={}", &spare.secret[..12]);
    let (_, _, body) = send(&f.app, get(&uri, Some(&key_a.secret))).await;
    let found = json(&body)["keys"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], spare.id.as_str());
    assert_eq!(found[0]["label"], "spare");
    for bad in ["%25", "a-b", &"a".repeat(40)] {
        let uri = format!("/api/v1/keys?prefix={bad}");
        let (status, headers, body) = send(&f.app, get(&uri, Some(&key_a.secret))).await;
        assert_error(status, &headers, &body, "bad_request");
    }

    let delete = |id: &str, key: &str| {
        Request::builder()
            .method("DELETE")
            .uri(format!("/api/v1/keys/{id}"))
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    // Another tenant's keys are not found; a key cannot revoke itself.
    for id in [
        &key_b.id,
        &sk_b.id,
        &"key_nope".to_string(),
        &"x".repeat(100),
    ] {
        let (status, headers, body) = send(&f.app, delete(id, &key_a.secret)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_error(status, &headers, &body, "not_found");
    }
    assert!(
        f.store
            .authenticate_api_key(&key_b.secret)
            .await
            .unwrap()
            .is_some()
    );
    let (status, headers, body) = send(&f.app, delete(&key_a.id, &key_a.secret)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(status, &headers, &body, "conflict");

    // Revoking: 204, then the key is refused everywhere; again is still 204.
    for _ in 0..2 {
        let (status, _, _) = send(&f.app, delete(&spare.id, &key_a.secret)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, _, _) = send(&f.app, get("/api/v1/me", Some(&spare.secret))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &f.app,
        get(
            &format!("/hls/{}/index.m3u8", stream.id),
            Some(&spare.secret),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&f.app, delete(&sk.id, &key_a.secret)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(f.store.stream_for_key(&sk.secret).await.unwrap().is_none());
    let (_, _, body) = send(&f.app, get("/api/v1/keys", Some(&key_a.secret))).await;
    let revoked = json(&body)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["revoked_at"].is_string())
        .count();
    assert_eq!(revoked, 2);
    // The OpenAPI document describes both endpoints.
    let (_, _, body) = send(&f.app, get("/api/v1/openapi.json", None)).await;
    let doc = json(&body);
    assert!(doc["paths"]["/api/v1/keys"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/keys/{id}"]["delete"]["responses"]["409"].is_object());
}

fn from_address(mut req: Request<Body>, ip: [u8; 4]) -> Request<Body> {
    let addr = std::net::SocketAddr::from((ip, 40000));
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test]
async fn api_keys_are_rate_limited() {
    let limits = HttpLimits {
        api_key_requests_per_minute: 3,
        ..HttpLimits::default()
    };
    let f = fixture_with(limits, None).await;
    let (_, key) = tenant_with_key(&f.store, "a").await;
    let (_, other) = tenant_with_key(&f.store, "b").await;
    for _ in 0..3 {
        let (status, _, _) = send(&f.app, get("/api/v1/me", Some(&key.secret))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, body) = send(&f.app, get("/api/v1/streams", Some(&key.secret))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(status, &headers, &body, "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let (status, _, _) = send(&f.app, get("/api/v1/me", Some(&other.secret))).await;
    assert_eq!(status, StatusCode::OK, "another key has its own budget");
}

#[tokio::test]
async fn failed_authentications_are_rate_limited_per_address() {
    let f = fixture().await;
    let (t, key) = tenant_with_key(&f.store, "a").await;
    let (s, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let attacker = [203, 0, 113, 7];
    for i in 0..10 {
        let uri = if i % 2 == 0 {
            "/api/v1/me".to_string()
        } else {
            format!("/hls/{}/index.m3u8?token=forged.1.AAAA", s.id)
        };
        let req = from_address(get(&uri, Some("mak_guess")), attacker);
        let (status, _, _) = send(&f.app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // Now even a right key from that address waits, so guesses learn nothing.
    let req = from_address(get("/api/v1/me", Some(&key.secret)), attacker);
    let (status, headers, body) = send(&f.app, req).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(status, &headers, &body, "rate_limited");
    assert!(headers.contains_key("retry-after"));
    let req = from_address(get("/api/v1/me", Some("mak_guess")), attacker);
    assert_eq!(send(&f.app, req).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Other addresses are not affected; requests without credentials are not counted.
    let req = from_address(get("/api/v1/me", Some(&key.secret)), [198, 51, 100, 1]);
    assert_eq!(send(&f.app, req).await.0, StatusCode::OK);
    for _ in 0..20 {
        let req = from_address(get("/api/v1/me", None), [198, 51, 100, 2]);
        assert_eq!(send(&f.app, req).await.0, StatusCode::UNAUTHORIZED);
    }
    let req = from_address(get("/api/v1/me", Some(&key.secret)), [198, 51, 100, 2]);
    assert_eq!(send(&f.app, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_effects_rendition_and_master_playlist_are_served_with_the_token() {
    let f = fixture().await;
    let (t, key) = tenant_with_key(&f.store, "a").await;
    let (s, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let (other_tenant, other_key) = tenant_with_key(&f.store, "b").await;
    let _ = other_tenant;
    let dir = f.hls_root.join(&s.id);
    std::fs::create_dir_all(dir.join("effects")).unwrap();
    let base = format!("/hls/{}", s.id);
    // Before the rendition exists: a clear 404.
    let (status, body, _) = call(
        &f.app,
        "GET",
        &format!("{base}/master.m3u8"),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("no effects rendition"));
    std::fs::write(
        dir.join("master.m3u8"),
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nindex.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\neffects/index.m3u8\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("effects").join("index.m3u8"),
        "#EXTM3U\n#EXTINF:2.000,\nseg-3.ts\n",
    )
    .unwrap();
    std::fs::write(dir.join("effects").join("seg-3.ts"), [0x47u8; 376]).unwrap();

    let (status, body, _) = call(
        &f.app,
        "POST",
        &format!("/api/v1/streams/{}/playback-token", s.id),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = json(&body)["token"].as_str().unwrap().to_string();
    let (status, body, headers) = call(
        &f.app,
        "GET",
        &format!("{base}/master.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    let master = String::from_utf8(body).unwrap();
    assert!(
        master.contains(&format!("\neffects/index.m3u8?token={token}\n")),
        "{master}"
    );
    let (status, body, _) = call(
        &f.app,
        "GET",
        &format!("{base}/effects/index.m3u8?token={token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let playlist = String::from_utf8(body).unwrap();
    let segment = playlist
        .lines()
        .find(|l| l.starts_with("seg-3.ts?token="))
        .expect("token on segments");
    let (status, body, headers) =
        call(&f.app, "GET", &format!("{base}/effects/{segment}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/mp2t");
    assert_eq!(body.len(), 376);
    // Bearer keys work too; another tenant's key does not; no token at all is refused.
    let (status, _, _) = call(
        &f.app,
        "GET",
        &format!("{base}/effects/seg-3.ts"),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        &f.app,
        "GET",
        &format!("{base}/effects/seg-3.ts"),
        Some(&other_key.secret),
    )
    .await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    let (status, _, _) = call(&f.app, "GET", &format!("{base}/effects/index.m3u8"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Only known renditions, only playlist and segment names, no master inside a rendition.
    for bad in [
        "other/index.m3u8",
        "effects/master.m3u8",
        "effects/seg-3.ts.tmp",
        "..%2Fx/index.m3u8",
    ] {
        let (status, _, _) = call(&f.app, "GET", &format!("{base}/{bad}"), Some(&key.secret)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    let (status, body, _) = call(
        &f.app,
        "GET",
        &format!("{base}/effects/seg-9.ts"),
        Some(&key.secret),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("segment"));
}

/// Effects control: `auto` until set; a partial PUT changes only what it names and signals the
/// stream's analysis; viewers may read but not set it; another tenant's stream is not found; bad
/// values are refused.
#[tokio::test]
async fn effects_control_is_stored_signalled_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
    let bus = bus::Bus::connect(&bus::BusConfig::InProcess).await.unwrap();
    let mut state = state_for(&store, dir.path().join("hls"), HttpLimits::default(), None);
    state.signals = Signals::over(bus.publisher(64));
    let mut signals = bus.subscribe().await.unwrap();
    let app = router(state);
    let t = store.create_tenant("brand").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    let editor = store
        .create_api_key_with_role(&t.id, "ed", store::Role::Editor)
        .await
        .unwrap()
        .secret;
    let viewer = store
        .create_api_key_with_role(&t.id, "view", store::Role::Viewer)
        .await
        .unwrap()
        .secret;
    let stranger = store.create_api_key(&other.id, "k").await.unwrap().secret;
    let (stream, _) = store.create_stream(&t.id, "main").await.unwrap();
    let uri = format!("/api/v1/streams/{}/effects", stream.id);

    let (status, body, _) = call(&app, "GET", &uri, Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body),
        serde_json::json!({"blur": "auto", "highlight": "auto", "colour-grade": "auto",
            "settings": {"blur": {}, "highlight": {}, "colour-grade": {}}})
    );
    let (status, body) = send_json(
        &app,
        "PUT",
        &uri,
        &editor,
        r#"{"blur":"on","colour-grade":"off"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"blur": "on", "highlight": "auto", "colour-grade": "off",
            "settings": {"blur": {}, "highlight": {}, "colour-grade": {}}})
    );
    let signal = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Some(bus::Delivery::Message(e)) = signals.recv().await
                && let bus::Event::Control(bus::Control::Pipeline {
                    stream: Some(s), ..
                }) = &e.event
            {
                return (e.tenant.clone(), s.clone());
            }
        }
    })
    .await
    .expect("a pipeline signal");
    assert_eq!(signal, (t.id.clone(), stream.id.clone()));
    // Partial: only highlight changes.
    let (_, body) = send_json(&app, "PUT", &uri, &editor, r#"{"highlight":"on"}"#).await;
    assert_eq!(
        body,
        serde_json::json!({"blur": "on", "highlight": "on", "colour-grade": "off",
            "settings": {"blur": {}, "highlight": {}, "colour-grade": {}}})
    );
    assert_eq!(
        store.effects_control(&stream.id).await.unwrap().highlight,
        store::Forced::On
    );

    let (status, _) = send_json(&app, "PUT", &uri, &viewer, r#"{"blur":"off"}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send_json(&app, "PUT", &uri, &stranger, r#"{"blur":"off"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&app, "GET", &uri, Some(&stranger)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Settings: a kind given replaces its own, the others stay.
    let (status, body) = send_json(
        &app,
        "PUT",
        &uri,
        &editor,
        r##"{"settings":{"blur":{"style":"pixelate","grow":"0.5"},"highlight":{"colour":"#00C8ff","dim":"0.25"},"colour-grade":{"look":"warm","looks":"stadium=punchy, night=cool"}}}"##,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["blur"], "on", "the control stays: {body}");
    assert_eq!(
        body["settings"]["blur"],
        serde_json::json!({"style": "pixelate", "grow": "0.5"})
    );
    let (_, body) = send_json(
        &app,
        "PUT",
        &uri,
        &editor,
        r#"{"settings":{"blur":{"grow":"0.2\n","style":null}}}"#,
    )
    .await;
    // A pattern's `$` matches before a final newline (as JSON Schema validators in Python
    // match): accepted, and kept without it; null is left out.
    assert_eq!(body["settings"]["blur"], serde_json::json!({"grow": "0.2"}));
    assert_eq!(body["settings"]["colour-grade"]["look"], "warm", "{body}");
    let stored = store.effects_control(&stream.id).await.unwrap();
    assert_eq!(stored.settings.highlight["colour"], "#00C8ff");
    let (_, body, _) = call(&app, "GET", &uri, Some(&viewer)).await;
    assert_eq!(json(&body)["settings"]["highlight"]["dim"], "0.25");

    let long_names =
        serde_json::json!({"settings": {"highlight": {"brands": "a".repeat(257)}}}).to_string();
    let long_labels =
        serde_json::json!({"settings": {"blur": {"labels": "face,".repeat(300)}}}).to_string();
    for (bad, says) in [
        (r#"{"blur":"maybe"}"#, ""),
        (r#"{"sparkle":"on"}"#, ""),
        (r#"{"blur":1}"#, ""),
        ("[]", ""),
        ("{", ""),
        (r#"{"settings":{"sparkle":{}}}"#, ""),
        (
            r#"{"settings":{"blur":{"style":"swirl"}}}"#,
            "style must be gaussian or pixelate",
        ),
        (
            r#"{"settings":{"blur":{"grow":"2"}}}"#,
            "grow must be a number from 0 to 1",
        ),
        (
            r#"{"settings":{"blur":{"grow":"NaN"}}}"#,
            "grow must be a number",
        ),
        (
            r#"{"settings":{"blur":{"labels":" , "}}}"#,
            "labels must be comma-separated names",
        ),
        (
            r#"{"settings":{"blur":{"radius":"8"}}}"#,
            "unknown field `radius`",
        ),
        (
            r#"{"settings":{"highlight":{"colour":"amber"}}}"#,
            "colour must be a colour as #rrggbb",
        ),
        (
            r##"{"settings":{"highlight":{"colour":"#ffc80g"}}}"##,
            "#rrggbb",
        ),
        (
            r#"{"settings":{"highlight":{"outline":"65"}}}"#,
            "outline must be a number of pixels from 0 to 64",
        ),
        (
            r#"{"settings":{"colour-grade":{"look":"sepia"}}}"#,
            "one of neutral, warm",
        ),
        (
            r#"{"settings":{"colour-grade":{"looks":"stadium"}}}"#,
            "looks must be scene=look pairs",
        ),
        (
            r#"{"settings":{"colour-grade":{"looks":"stadium=sepia"}}}"#,
            "scene=look pairs",
        ),
        (r#"{"settings":{"blur":{"style":1}}}"#, ""),
        (
            r#"{"settings":{"colour-grade":[null,null]}}"#,
            "expected an object",
        ),
        (r#"{"settings":[null,null,null]}"#, "expected an object"),
        ("[null,null,null,null]", "the body must be a JSON object"),
        (
            &long_names,
            "brands must be comma-separated names (at most 256 characters)",
        ),
        (&long_labels, "over 1024 bytes"),
    ] {
        let (status, body) = send_json(&app, "PUT", &uri, &editor, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{bad}: {message}");
    }
    let stored_after = store.effects_control(&stream.id).await.unwrap();
    assert_eq!(
        stored_after.blur,
        store::Forced::On,
        "nothing lost on bad input"
    );
    assert_eq!(
        stored_after.settings, stored.settings,
        "nothing lost on bad input"
    );
}

#[tokio::test]
async fn hls_segments_stream_from_disk() {
    let f = fixture().await;
    let (t, key) = tenant_with_key(&f.store, "a").await;
    let (s, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let dir = f.hls_root.join(&s.id);
    std::fs::create_dir_all(&dir).unwrap();
    let segment: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("seg-7.ts"), &segment).unwrap();
    let response = f
        .app
        .clone()
        .oneshot(get(&format!("/hls/{}/seg-7.ts", s.id), Some(&key.secret)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        segment.len().to_string().as_str()
    );
    // Read in bounded pieces, not as one buffer of the whole file.
    let mut body = response.into_body();
    let (mut frames, mut got, mut largest) = (0, Vec::new(), 0);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        largest = largest.max(data.len());
        got.extend_from_slice(&data);
        frames += 1;
    }
    assert!(
        frames >= 3 && largest <= 64 * 1024,
        "{frames} frames, largest {largest}"
    );
    assert!(got == segment, "the segment arrives intact");

    // A playlist larger than the cap is refused, not read whole.
    let mut big = String::from("#EXTM3U\n");
    while big.len() <= hls::MAX_PLAYLIST_BYTES as usize {
        big.push_str("#EXTINF:2.000,\nseg-1.ts\n");
    }
    std::fs::write(dir.join("index.m3u8"), big).unwrap();
    let (status, headers, body) = send(
        &f.app,
        get(&format!("/hls/{}/index.m3u8", s.id), Some(&key.secret)),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_error(status, &headers, &body, "internal");
    assert!(
        !String::from_utf8_lossy(&body).contains(&s.id),
        "no paths in errors"
    );
}

#[tokio::test]
async fn tenants_are_isolated_on_every_stream_route() {
    let f = fixture().await;
    let (a, _) = tenant_with_key(&f.store, "a").await;
    let (_, key_b) = tenant_with_key(&f.store, "b").await;
    let (s, _) = f.store.create_stream(&a.id, "main").await.unwrap();
    for (method, uri) in [
        ("GET", format!("/api/v1/streams/{}", s.id)),
        ("GET", format!("/api/v1/streams/{}/detections", s.id)),
        ("GET", format!("/api/v1/streams/{}/events", s.id)),
        ("POST", format!("/api/v1/streams/{}/playback-token", s.id)),
        ("GET", format!("/hls/{}/index.m3u8", s.id)),
        ("GET", format!("/hls/{}/seg-1.ts", s.id)),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", key_b.secret))
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&f.app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_error(status, &headers, &body, "not_found");
    }
    // A playback token for a stream opens no other.
    let token = TokenKey::new(b"test-secret").issue(&s.id, store::now_ms() / 1000 + 60);
    let (other, _) = f.store.create_stream(&a.id, "other").await.unwrap();
    let uri = format!("/api/v1/streams/{}/events?token={token}", other.id);
    assert_eq!(
        send(&f.app, get(&uri, None)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_openapi_document_states_the_constraints() {
    let f = fixture().await;
    let (_, _, body) = send(&f.app, get("/api/v1/openapi.json", None)).await;
    let doc = json(&body);
    let schemas = &doc["components"]["schemas"];
    let name = &schemas["CreateStream"]["properties"]["name"];
    assert_eq!(
        (name["minLength"].as_u64(), name["maxLength"].as_u64()),
        (Some(1), Some(64))
    );
    assert!(name["pattern"].is_string());
    let every = &schemas["AnalysisView"]["properties"]["every"];
    assert_eq!(
        (every["minimum"].as_u64(), every["maximum"].as_u64()),
        (Some(1), Some(1000))
    );
    assert_eq!(
        schemas["AnalysisMode"]["enum"],
        serde_json::json!(["realtime", "batch"])
    );
    let detections = &doc["paths"]["/api/v1/streams/{id}/detections"]["get"];
    let limit = detections["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"].as_u64(), Some(1000));
    let events = &doc["paths"]["/api/v1/streams/{id}/events"]["get"];
    let since = events["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "since")
        .unwrap();
    assert_eq!(since["schema"]["minimum"].as_u64(), Some(0));
    // Every operation that takes a key documents 401 and 429; bodies document 413.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if path.ends_with("openapi.json") {
                continue;
            }
            for status in ["401", "429"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path}: {status}"
                );
            }
            if op.get("requestBody").is_some() {
                assert!(op["responses"]["413"].is_object(), "{method} {path}: 413");
            }
        }
    }
}

/// Roles: a viewer key reads and watches, an editor also changes streams, an admin also manages
/// keys and components; anything more is 403 with the JSON error naming the role needed, and
/// another tenant's objects stay 404 whatever the role.
#[tokio::test]
async fn each_role_may_do_what_it_allows_and_no_more() {
    let f = fixture().await;
    let t = f.store.create_tenant("roles").await.unwrap();
    let other = f.store.create_tenant("other").await.unwrap();
    let (stream, _) = f.store.create_stream(&t.id, "main").await.unwrap();
    let (foreign, _) = f.store.create_stream(&other.id, "theirs").await.unwrap();
    let key = |role| {
        let (store, tenant) = (f.store.clone(), t.id.clone());
        async move {
            store
                .create_api_key_with_role(&tenant, "role test", role)
                .await
                .unwrap()
                .secret
        }
    };
    let viewer = key(store::Role::Viewer).await;
    let editor = key(store::Role::Editor).await;
    let admin = key(store::Role::Admin).await;
    let send = |method: &'static str, uri: String, key: String, body: String| {
        let app = f.app.clone();
        async move {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = app.oneshot(req).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body.to_vec())
        }
    };
    let mode = format!("/api/v1/streams/{}/mode", stream.id);
    let batch = r#"{"mode":"batch","every":5}"#;
    for (who, key, reads, edits, administers) in [
        ("viewer", &viewer, true, false, false),
        ("editor", &editor, true, true, false),
        ("admin", &admin, true, true, true),
    ] {
        let (status, _) = send(
            "GET",
            format!("/api/v1/streams/{}", stream.id),
            key.clone(),
            String::new(),
        )
        .await;
        assert_eq!(
            status == StatusCode::OK,
            reads,
            "{who} reads a stream: {status}"
        );
        let (status, body) = send("PUT", mode.clone(), key.clone(), batch.into()).await;
        if edits {
            assert_eq!(status, StatusCode::OK, "{who} sets a mode");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{who} sets a mode");
            let error = &json(&body)["error"];
            assert_eq!(error["code"], "forbidden");
            assert!(
                error["message"].as_str().unwrap().contains("needs editor"),
                "{error}"
            );
        }
        let create = format!(r#"{{"name":"made-by-{who}"}}"#);
        let (status, _) = send("POST", "/api/v1/streams".into(), key.clone(), create).await;
        assert_eq!(
            status,
            if edits {
                StatusCode::CREATED
            } else {
                StatusCode::FORBIDDEN
            },
            "{who} creates a stream"
        );
        let (status, body) = send("GET", "/api/v1/keys".into(), key.clone(), String::new()).await;
        if administers {
            assert_eq!(status, StatusCode::OK, "{who} lists keys");
            let keys = json(&body)["keys"].as_array().unwrap().clone();
            let roles: Vec<&str> = keys.iter().filter_map(|k| k["role"].as_str()).collect();
            assert!(
                roles.contains(&"viewer") && roles.contains(&"editor"),
                "{roles:?}"
            );
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{who} lists keys");
            assert!(
                json(&body)["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("needs admin")
            );
        }
        // Component uploads need admin; this host takes none, so an admin gets 503.
        let (status, _) = send(
            "POST",
            "/api/v1/components".into(),
            key.clone(),
            String::new(),
        )
        .await;
        assert_eq!(
            status,
            if administers {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::FORBIDDEN
            },
            "{who} uploads"
        );
        // Another tenant's stream: 404 for every role, also where the role would not allow it.
        for (method, uri, body) in [
            ("GET", format!("/api/v1/streams/{}", foreign.id), ""),
            ("PUT", format!("/api/v1/streams/{}/mode", foreign.id), batch),
        ] {
            let (status, _) = send(method, uri, key.clone(), body.into()).await;
            assert!(
                status == StatusCode::NOT_FOUND || (status == StatusCode::FORBIDDEN && !edits),
                "{who} {method} another tenant's stream: {status}"
            );
        }
    }
}

/// Takes every upload (the sandbox's check is tested in the runtime and end to end).
struct AcceptEveryUpload;

impl components::ComponentCheck for AcceptEveryUpload {
    fn check(&self, _world: &str, _bytes: &[u8]) -> Result<Vec<String>, components::Refusal> {
        Ok(Vec::new())
    }
}

/// Pipelines: names resolve in the caller's namespace (or the bundled components), versions are
/// fixed when set, what a stream runs says where it comes from, each change is stored and
/// signalled, and a `PUT` on a live stream answers with the frame its pipeline applies from —
/// here told by a stand-in for the analysis host, which answers each signal with the event.
#[tokio::test]
async fn pipelines_resolve_in_the_tenants_namespace_and_answer_where_they_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
    let bus = bus::Bus::connect(&bus::BusConfig::InProcess).await.unwrap();
    let mut state = state_for(&store, dir.path().join("hls"), HttpLimits::default(), None);
    state.signals = Signals::over(bus.publisher(64));
    state.components = Some(components::ComponentUploads {
        check: Arc::new(AcceptEveryUpload),
        files: store::ComponentFiles::new(dir.path().join("components")),
        max_bytes: 1 << 20,
        bundled: [
            ("object-detector", "detector", true),
            ("face-detector", "detector", true),
            ("brand-rules", "trigger", false),
        ]
        .map(|(name, world, by_default)| components::BundledComponent {
            name: name.into(),
            world: world.into(),
            by_default,
        })
        .into(),
        checking: Default::default(),
    });
    tokio::spawn(state.viewers.clone().run(bus.subscribe().await.unwrap()));
    // The analysis host: each pipeline signal for a stream is answered by its first frame.
    let mut signals = bus.subscribe().await.unwrap();
    let publisher = bus.publisher(64);
    tokio::spawn(async move {
        let mut seq = 100;
        while let Some(bus::Delivery::Message(envelope)) = signals.recv().await {
            if let bus::Event::Control(bus::Control::Pipeline {
                stream: Some(stream),
                change,
            }) = &envelope.event
            {
                seq += 1;
                publisher.send(bus::Envelope::new(
                    envelope.tenant.clone(),
                    bus::Event::Pipeline(bus::PipelineApplied {
                        stream: stream.clone(),
                        seq,
                        pts_ms: seq as i64 * 33,
                        change: change.clone(),
                        detector: Vec::new(),
                        at: bus::rfc3339_ms(store::now_ms()),
                    }),
                ));
            }
        }
    });
    let app = router(state);
    let t = store.create_tenant("brand").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    let editor = store
        .create_api_key_with_role(&t.id, "ed", store::Role::Editor)
        .await
        .unwrap()
        .secret;
    let viewer = store
        .create_api_key_with_role(&t.id, "view", store::Role::Viewer)
        .await
        .unwrap()
        .secret;
    let (stream, _) = store.create_stream(&t.id, "main").await.unwrap();
    let (foreign, _) = store.create_stream(&other.id, "theirs").await.unwrap();
    let upload = |tenant: &str, name: &'static str, world: &'static str, byte: u8| {
        let (store, tenant) = (store.clone(), tenant.to_string());
        let files = store::ComponentFiles::new(dir.path().join("components"));
        async move {
            let sha = files.put(&[byte; 64]).unwrap();
            store
                .add_component_version(store::NewComponent {
                    tenant_id: &tenant,
                    name,
                    world,
                    sha256: &sha,
                    size: 64,
                    created_by: "test",
                })
                .await
                .unwrap()
        }
    };
    upload(&t.id, "cups", "detector", 1).await;
    upload(&t.id, "cups", "detector", 2).await;
    upload(&t.id, "rules", "trigger", 3).await;
    upload(&other.id, "secret", "detector", 4).await;
    let put = |uri: String, key: &str, body: &str| {
        let (app, key, body) = (app.clone(), key.to_string(), body.to_string());
        async move { send_json(&app, "PUT", &uri, &key, &body).await }
    };
    let on_stream = format!("/api/v1/streams/{}/pipeline", stream.id);
    // Nothing chosen: the bundled detectors.
    let (status, body, _) = call(&app, "GET", &on_stream, Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let now = json(&body);
    assert_eq!(now["detector"]["source"], "bundled");
    assert_eq!(now["detector"]["components"][1]["name"], "face-detector");
    // A viewer may not change it; names of another tenant, unknown versions and a component of
    // another world are refused, and nothing is stored.
    let cups = r#"{"detector":[{"name":"cups"}]}"#;
    assert_eq!(
        put(on_stream.clone(), &viewer, cups).await.0,
        StatusCode::FORBIDDEN
    );
    for (body, status, says) in [
        (
            r#"{"detector":[{"name":"secret"}]}"#,
            StatusCode::NOT_FOUND,
            "component version",
        ),
        (
            r#"{"detector":[{"name":"cups","version":3}]}"#,
            StatusCode::NOT_FOUND,
            "component version",
        ),
        (
            r#"{"detector":[{"name":"rules"}]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "trigger component",
        ),
        (
            r#"{"trigger":[{"name":"cups"}]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "detector component",
        ),
        (
            r#"{"effects":[{"name":"rules"}]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "trigger component",
        ),
        (
            r#"{"trigger":[{"name":"brand-rules","version":2}]}"#,
            StatusCode::NOT_FOUND,
            "component version",
        ),
        (
            r#"{"detector":[{"name":"cups"},{"name":"cups","version":1}]}"#,
            StatusCode::BAD_REQUEST,
            "twice",
        ),
        (
            r#"{"detector":[{"name":"cups","config":{"":"x"}}]}"#,
            StatusCode::BAD_REQUEST,
            "setting names",
        ),
        (
            r#"{"detector":[{"name":"cups"}],"brands":[]}"#,
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ] {
        let (got, answer) = put(on_stream.clone(), &editor, body).await;
        assert_eq!(got, status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (got, _) = put(
        format!("/api/v1/streams/{}/pipeline", foreign.id),
        &editor,
        cups,
    )
    .await;
    assert_eq!(got, StatusCode::NOT_FOUND, "another tenant's stream");
    assert!(store.pipeline_changes(&t.id, 10).await.unwrap().is_empty());

    // Offline: stored, no frame to apply from yet. No version: the latest, fixed now.
    let (status, set) = put(on_stream.clone(), &editor, cups).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["detector"]["source"], "stream");
    assert_eq!(set["detector"]["components"][0]["version"], 2);
    assert!(set["change"].as_str().unwrap().starts_with("chg_"));
    assert!(set.get("applies_from_seq").is_none(), "{set}");
    // Live: the answer waits for the first frame of the new pipeline.
    store
        .mark_stream_live(&stream.id, store::now_ms())
        .await
        .unwrap();
    let rollback = r#"{"detector":[{"name":"cups","version":1,"config":{"min-score":"0.4"}},{"name":"object-detector"}]}"#;
    let (status, set) = put(on_stream.clone(), &editor, rollback).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["applies_from_seq"], 102, "{set}");
    assert_eq!(
        set["detector"]["components"][0]["config"]["min-score"],
        "0.4"
    );
    assert_eq!(set["detector"]["components"][1]["version"], 0);
    // `{}` changes nothing.
    let (status, same) = put(on_stream.clone(), &editor, "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert!(same.get("change").is_none());
    assert_eq!(same["detector"]["change"], set["change"]);
    assert_eq!(same["trigger"]["source"], "bundled");
    assert_eq!(
        same["trigger"]["components"],
        serde_json::json!([]),
        "no trigger runs unless chosen"
    );
    // Triggers: the bundled brand-rules and the tenant's own, beside the detectors it keeps.
    let (status, rules) = put(
        on_stream.clone(),
        &editor,
        r#"{"trigger":[{"name":"brand-rules","config":{"min-seconds":"2"}},{"name":"rules"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rules}");
    assert_eq!(rules["trigger"]["source"], "stream");
    assert_eq!(rules["trigger"]["components"][0]["version"], 0);
    assert_eq!(
        rules["trigger"]["components"][0]["config"]["min-seconds"],
        "2"
    );
    assert_eq!(rules["trigger"]["components"][1]["name"], "rules");
    assert_eq!(rules["trigger"]["components"][1]["version"], 1);
    assert_eq!(rules["detector"]["change"], set["change"]);

    // The tenant's default reaches streams without their own; the stream keeps its own.
    let (status, default) = put(
        "/api/v1/pipeline".into(),
        &editor,
        r#"{"detector":[{"name":"face-detector"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{default}");
    assert_eq!(default["detector"]["source"], "tenant");
    let (second, _) = store.create_stream(&t.id, "second").await.unwrap();
    let (_, body, _) = call(
        &app,
        "GET",
        &format!("/api/v1/streams/{}/pipeline", second.id),
        Some(&viewer),
    )
    .await;
    assert_eq!(json(&body)["detector"]["source"], "tenant");
    assert_eq!(
        json(&body)["detector"]["components"][0]["name"],
        "face-detector"
    );
    let (_, body, _) = call(&app, "GET", &on_stream, Some(&viewer)).await;
    assert_eq!(json(&body)["detector"]["source"], "stream");

    // Every change is kept, with who made it.
    let changes = store.pipeline_changes(&t.id, 10).await.unwrap();
    assert_eq!(changes.len(), 4);
    assert!(
        changes.iter().all(|c| c.by.starts_with("key_")),
        "{changes:?}"
    );
    // A version in use is not deleted.
    assert!(matches!(
        store.delete_component_version(&t.id, "cups", 1).await,
        Err(store::StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn alerts_are_listed_to_their_tenant_only() {
    let f = fixture().await;
    let (a, b) = (
        f.store.create_tenant("acme").await.unwrap(),
        f.store.create_tenant("globex").await.unwrap(),
    );
    let (key_a, key_b) = (
        f.store.create_api_key(&a.id, "a").await.unwrap().secret,
        f.store.create_api_key(&b.id, "b").await.unwrap().secret,
    );
    let (stream, _) = f.store.create_stream(&a.id, "main").await.unwrap();
    let raised = vec![(
        "brand-rules".to_string(),
        vec![store::NewAlert {
            rule: "on-screen".into(),
            severity: "info".into(),
            message: "Acme on screen for 3.0 s".into(),
            detections: vec![bus::Detection {
                label: "brand:Acme".into(),
                score: 0.9,
                bbox: [0.1, 0.1, 0.2, 0.1],
                component: "logo-matcher".into(),
            }],
        }],
    )];
    f.store
        .store_alerts(&store::FrameAlerts {
            tenant_id: &a.id,
            stream_id: &stream.id,
            session: 1,
            seq: 30,
            pts_ms: 3000,
            wallclock: 1_764_000_000_000,
            raised: &raised,
        })
        .await
        .unwrap();
    let list = |uri: String, key: String| {
        let app = f.app.clone();
        async move {
            let (status, body, _) = call(&app, "GET", &uri, Some(&key)).await;
            (status, json(&body))
        }
    };
    let (status, page) = list(
        format!("/api/v1/alerts?stream={}", stream.id),
        key_a.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let alert = &page["alerts"][0];
    assert_eq!(
        (&alert["rule"], &alert["message"], &alert["seq"]),
        (
            &serde_json::json!("on-screen"),
            &serde_json::json!("Acme on screen for 3.0 s"),
            &serde_json::json!(30)
        )
    );
    let width = alert["detections"][0]["box"][2].as_f64().unwrap();
    assert!((width - 0.2).abs() < 1e-6, "{alert}");
    // The range and the other tenant: an empty range is empty; B sees none of A's and gets
    // a 404 for A's stream.
    let (_, empty) = list(
        "/api/v1/alerts?from=2025-11-24T16:00:00Z&to=2025-11-24T16:00:00Z".into(),
        key_a.clone(),
    )
    .await;
    assert_eq!(empty["alerts"], serde_json::json!([]));
    let (status, theirs) = list("/api/v1/alerts".into(), key_b.clone()).await;
    assert_eq!(
        (status, &theirs["alerts"]),
        (StatusCode::OK, &serde_json::json!([]))
    );
    let (status, _) = list(format!("/api/v1/alerts?stream={}", stream.id), key_b).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = list("/api/v1/alerts?limit=0".into(), key_a).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A logo upload: the multipart form `component push` also sends, with one field `file`.
async fn upload_logo(app: &Router, uri: &str, key: &str, bytes: &[u8]) -> (StatusCode, Vec<u8>) {
    let boundary = "logo-boundary-7c1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"logo\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

/// The brand catalogue: brands by folded name, logos checked before they are kept and served
/// back inert, editors only, and another tenant's brands and logos 404.
#[tokio::test]
async fn brands_and_their_logos_are_checked_kept_and_kept_apart() {
    let f = fixture().await;
    let t = f.store.create_tenant("brands").await.unwrap();
    let other = f.store.create_tenant("other").await.unwrap();
    let editor = f.store.create_api_key(&t.id, "ed").await.unwrap().secret;
    let viewer = f
        .store
        .create_api_key_with_role(&t.id, "view", store::Role::Viewer)
        .await
        .unwrap()
        .secret;
    let theirs = f.store.create_api_key(&other.id, "x").await.unwrap().secret;

    let body =
        r#"{"name":"Coca-Cola","aliases":["Coke","Coke"],"prompts":["a red Coca-Cola can"]}"#;
    assert_eq!(
        send_json(&f.app, "POST", "/api/v1/brands", &viewer, body)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, brand) = send_json(&f.app, "POST", "/api/v1/brands", &editor, body).await;
    assert_eq!(status, StatusCode::CREATED, "{brand}");
    assert_eq!(brand["label"], "brand:cocacola");
    assert_eq!(brand["aliases"], serde_json::json!(["Coke"]));
    for (body, status) in [
        (r#"{"name":"COCA cola"}"#, StatusCode::CONFLICT),
        (r#"{"name":"--"}"#, StatusCode::BAD_REQUEST),
        (r#"{"name":"x","prompts":[""]}"#, StatusCode::BAD_REQUEST),
        (r#"{"name":"x","colour":"red"}"#, StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = send_json(&f.app, "POST", "/api/v1/brands", &editor, body).await;
        assert_eq!(got, status, "{body}: {answer}");
    }

    let logos = "/api/v1/brands/coca-cola/logos";
    let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M2 2h9v9H2zM13 13h9v9h-9zM13 2l9 9h-9zM2 22l9-9v9z" fill="#d00013"/></svg>"##;
    let (status, logo) = upload_logo(&f.app, logos, &editor, svg).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&logo)
    );
    let logo = json(&logo);
    assert_eq!(logo["format"], "svg");
    // Hostile or useless files are refused and nothing is kept.
    for (bytes, status) in [
        (&b"GIF89a not a logo"[..], StatusCode::UNPROCESSABLE_ENTITY),
        (
            &b"\x89PNG\r\n\x1a\ntruncated"[..],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &br#"<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>"#[..],
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        assert_eq!(upload_logo(&f.app, logos, &editor, bytes).await.0, status);
    }
    assert_eq!(
        upload_logo(&f.app, "/api/v1/brands/pepsi/logos", &editor, svg)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        upload_logo(&f.app, logos, &viewer, svg).await.0,
        StatusCode::FORBIDDEN
    );

    let (status, listed, _) = call(&f.app, "GET", "/api/v1/brands", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let listed = json(&listed);
    assert_eq!(listed["brands"][0]["logos"][0]["id"], logo["id"]);
    assert_eq!(listed["brands"][0]["logos"].as_array().unwrap().len(), 1);
    let url = logo["url"].as_str().unwrap().to_string();
    let (status, image, headers) = call(&f.app, "GET", &url, Some(&viewer)).await;
    assert_eq!((status, image.as_slice()), (StatusCode::OK, &svg[..]));
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );

    // Another tenant: none of it exists.
    for uri in ["/api/v1/brands/cocacola", logos, url.as_str()] {
        assert_eq!(
            call(&f.app, "GET", uri, Some(&theirs)).await.0,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    for uri in ["/api/v1/brands/cocacola", url.as_str()] {
        assert_eq!(
            call(&f.app, "DELETE", uri, Some(&theirs)).await.0,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    assert_eq!(
        upload_logo(&f.app, logos, &theirs, svg).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, none, _) = call(&f.app, "GET", "/api/v1/brands", Some(&theirs)).await;
    assert_eq!(json(&none)["brands"], serde_json::json!([]));

    assert_eq!(
        call(&f.app, "DELETE", &url, Some(&editor)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&f.app, "GET", &url, Some(&editor)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&f.app, "DELETE", "/api/v1/brands/Coca-Cola", Some(&editor))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(f.store.brands(&t.id).await.unwrap().is_empty());
}

#[test]
fn a_requests_trace_id_comes_from_googles_or_the_w3c_header_and_is_checked() {
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut h = axum::http::HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    };
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let cloud = format!("{id}/1;o=1");
    let w3c = format!("00-{id}-00f067aa0ba902b7-01");
    assert_eq!(
        crate::trace_id(&headers(&[("x-cloud-trace-context", &cloud)])),
        Some(id)
    );
    assert_eq!(
        crate::trace_id(&headers(&[("traceparent", &w3c)])),
        Some(id)
    );
    for bad in [
        "",
        "short/1",
        "4bf92f3577b34da6a3ce929d0e0e473z/1",
        "../../x",
    ] {
        assert_eq!(
            crate::trace_id(&headers(&[("x-cloud-trace-context", bad)])),
            None,
            "{bad}"
        );
    }
    assert_eq!(crate::trace_id(&headers(&[])), None);
}
