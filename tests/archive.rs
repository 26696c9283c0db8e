//! The archive (`serve --archive gs://BUCKET/PREFIX`) against the Cloud Storage emulator: a
//! stream published over RTMP while the archive is down is held and queued, and once the
//! archive answers, every one of its segments (byte for byte), the run's playlist (which plays,
//! downloaded as it is) and its brand report (the API's report over the run) are stored under
//! the tenant's name.

use std::time::{Duration, Instant};

use e2e::*;

async fn metrics(server: &TestServer) -> String {
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `/metrics` satisfies `done`, for at most `limit`.
async fn wait_for_metrics(
    server: &TestServer,
    what: &str,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) {
    let started = Instant::now();
    loop {
        let text = metrics(server).await;
        if done(&text) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}: {}",
            text.lines()
                .filter(|l| l.starts_with("media_analyzer_archive"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_and_the_brand_report_reach_cloud_storage_after_an_outage() {
    let bucket = "ma-archive";
    // The archive is down: nothing listens where the server sends until the emulator starts.
    let port = free_port();
    let server = TestServer::start_with(|c| {
        c.archive = Some(format!("gs://{bucket}/archive"));
        c.storage_emulator = Some(format!("http://127.0.0.1:{port}"));
        c.analysis = true;
        c.components = TestServer::components_dir();
    })
    .await;
    let store = server.store();
    let tenant = store
        .stream_tenant(&server.stream_id)
        .await
        .unwrap()
        .unwrap();

    let photo = fixture_photo("coffee");
    let publisher = publish_photo(&photo, &server.rtmp_url(&server.stream_key), 6);
    let (ok, stderr) = finish(publisher, Duration::from_secs(40)).await;
    assert!(ok, "{stderr}");
    let started = Instant::now();
    while server.stream_json().await["state"] != "offline" {
        assert!(started.elapsed() < Duration::from_secs(20), "still live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hls = server.hls_dir(&server.stream_id);
    wait_for_metrics(
        &server,
        "failed uploads and the whole run queued",
        Duration::from_secs(60),
        |m| {
            metric(m, "media_analyzer_archive_failures_total") > 0
                && metric(m, "media_analyzer_archive_pending")
                    == segment_files(&hls).len() as u64 + 2
        },
    )
    .await;
    let segments = segment_files(&hls);
    assert!(segments.len() >= 2, "{segments:?}");
    assert_eq!(
        segment_files(&hls),
        segments,
        "queued segments stay on disk"
    );

    // The archive comes back: the queue drains, with backoff of at most a minute.
    let gcs = StorageEmulator::start_on(bucket, port);
    wait_for_metrics(
        &server,
        "the queue to drain",
        Duration::from_secs(120),
        |m| metric(m, "media_analyzer_archive_pending") == 0,
    )
    .await;
    let m = metrics(&server).await;
    assert_eq!(
        metric(&m, "media_analyzer_archive_segments_total"),
        segments.len() as u64
    );
    assert_eq!(metric(&m, "media_analyzer_archive_reports_total"), 1);
    assert_eq!(metric(&m, "media_analyzer_archive_playlists_total"), 1);
    assert_eq!(metric(&m, "media_analyzer_archive_lost_total"), 0);

    let folder = format!("archive/{tenant}/{}", server.stream_id);
    let mut objects = gcs.objects(bucket).await;
    objects.sort();
    let reports: Vec<&String> = objects
        .iter()
        .filter(|o| o.starts_with(&format!("{folder}/brand-report-")) && o.ends_with(".json"))
        .collect();
    assert_eq!(reports.len(), 1, "{objects:?}");
    for name in &segments {
        let object = format!("{folder}/{name}");
        assert!(objects.contains(&object), "{object} not in {objects:?}");
        assert_eq!(
            gcs.object(bucket, &object).await,
            std::fs::read(hls.join(name)).unwrap(),
            "{object}"
        );
    }
    assert_eq!(objects.len(), segments.len() + 2, "{objects:?}");

    // The run's playlist lists its segments and plays from a copy of the folder.
    let copy = tempfile::tempdir().unwrap();
    for object in &objects {
        let name = object.rsplit('/').next().unwrap();
        std::fs::write(copy.path().join(name), gcs.object(bucket, object).await).unwrap();
    }
    let playlist = objects
        .iter()
        .find(|o| o.starts_with(&format!("{folder}/run-")) && o.ends_with(".m3u8"))
        .unwrap_or_else(|| panic!("no playlist in {objects:?}"));
    let playlist = copy.path().join(playlist.rsplit('/').next().unwrap());
    let text = std::fs::read_to_string(&playlist).unwrap();
    let mut listed: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
    listed.sort(); // as segment_files lists them
    assert_eq!(listed, segments, "{text}");
    let probed = ffprobe(playlist.to_str().unwrap(), "format=duration", None).await;
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (5.0..=7.5).contains(&duration),
        "{duration} s of 6 s published"
    );

    // The archived report is the API's report over the run.
    let report: serde_json::Value =
        serde_json::from_slice(&gcs.object(bucket, reports[0]).await).unwrap();
    assert_eq!(report["tenant"], tenant.as_str());
    assert_eq!(report["stream"], server.stream_id.as_str());
    let (from, to) = (
        report["from"].as_str().unwrap(),
        report["to"].as_str().unwrap(),
    );
    let (status, body) = server
        .get(&format!(
            "/api/v1/streams/{}/brands?from={from}&to={to}",
            server.stream_id
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(api["frames"].as_u64().unwrap() > 0, "frames were analysed");
    for field in ["frames", "analysed_s", "brands"] {
        assert_eq!(report[field], api[field], "{field}");
    }
    server.stop().await;
}
