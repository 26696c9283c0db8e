//! The container image end to end (`scripts/image`, then this test; `scripts/test` runs both):
//! `docker run` of the image with only its ports published, the way a user starts it. The keys
//! come from its first-start lines, RTMP goes in through the published port, and HLS and
//! detections come out of the published HTTP port. The image's health check turns healthy, it
//! runs as its non-root user, its data volume keeps keys and results over a restart, and a
//! `docker stop` ends it cleanly.
//!
//! Ignored in a plain `cargo test`, which has neither Docker nor the image:
//! `MEDIA_ANALYZER_TEST_IMAGE=media-analyzer:dev cargo test -p e2e --test container_image -- --ignored`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A container that is removed, with its volume, however the test ends.
struct Container {
    name: String,
}

impl Container {
    async fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name]).await
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `docker ARGS` and returns its standard output, trimmed; panics with its error otherwise.
async fn docker(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new("docker").args(args).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("docker {args:?} took over 120 s"))
    .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Follows the container's log (stdout and stderr) until the `API key:` and `Stream key:` lines.
async fn first_start_keys(name: &str, within: Duration) -> (String, String) {
    let mut logs = Command::new("docker")
        .args(["logs", "--follow", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker logs");
    let mut lines = BufReader::new(logs.stdout.take().unwrap()).lines();
    let (mut api, mut stream) = (None, None);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while api.is_none() || stream.is_none() {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no keys printed within {within:?}: {seen:#?}"))
            .expect("reading the log");
        let Some(line) = line else {
            panic!("the container stopped before printing its keys: {seen:#?}")
        };
        if let Some(key) = line.strip_prefix("API key: ") {
            api = Some(key.trim().to_string());
        }
        if let Some(key) = line.strip_prefix("Stream key: ") {
            stream = Some(key.trim().to_string());
        }
        seen.push(line);
    }
    (api.unwrap(), stream.unwrap())
}

async fn wait_until_healthy(container: &Container, within: Duration) {
    let started = Instant::now();
    loop {
        let health = container.inspect("{{.State.Health.Status}}").await;
        if health == "healthy" {
            return;
        }
        assert!(
            started.elapsed() < within,
            "not healthy within {within:?} ({health}): {}",
            container.inspect("{{json .State.Health}}").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The detections of `stream` with `label`, polled until there is one or `within` passes.
async fn wait_for_label(http: &str, key: &str, stream: &str, label: &str, within: Duration) {
    let started = Instant::now();
    let url = format!("{http}/api/v1/streams/{stream}/detections?limit=1000");
    loop {
        let (status, body) = http_get(&url, Some(key)).await;
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        if page["detections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["label"] == label)
        {
            return;
        }
        assert!(
            started.elapsed() < within,
            "no {label} detected within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the image built by scripts/image; scripts/test runs it"]
async fn the_image_serves_rtmp_in_hls_and_detections_out() {
    let image =
        std::env::var("MEDIA_ANALYZER_TEST_IMAGE").unwrap_or_else(|_| "media-analyzer:dev".into());
    require_tool("docker");
    let (rtmp_port, http_port) = (free_port(), free_port());
    let container = Container {
        name: format!("media-analyzer-test-{}", std::process::id()),
    };
    // The user's command, with the ports on loopback only and a memory limit for the test.
    docker(&[
        "run",
        "--detach",
        "--name",
        &container.name,
        "--memory",
        "4g",
        "--publish",
        &format!("127.0.0.1:{rtmp_port}:1935"),
        "--publish",
        &format!("127.0.0.1:{http_port}:8080"),
        &image,
    ])
    .await;
    let (api_key, stream_key) = first_start_keys(&container.name, Duration::from_secs(120)).await;
    assert!(api_key.starts_with("mak_"), "{api_key}");
    wait_until_healthy(&container, Duration::from_secs(90)).await;
    assert_eq!(
        docker(&["exec", &container.name, "id", "-u"]).await,
        "10001",
        "the server runs as the image's user"
    );

    let http = format!("http://127.0.0.1:{http_port}");
    let (status, body) = http_get(&format!("{http}/api/v1/streams"), Some(&api_key)).await;
    assert_eq!(status, 200, "{body}");
    let streams: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stream = streams["streams"][0]["id"].as_str().unwrap().to_string();
    // The dashboard is in the image too.
    let (status, page) = http_get(&format!("{http}/"), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<app-root"), "{page}");

    let publisher = publish_photo(
        &fixture_photo("coffee"),
        &format!("rtmp://127.0.0.1:{rtmp_port}/live/{stream_key}"),
        8,
    );
    wait_for_label(&http, &api_key, &stream, "cup", Duration::from_secs(60)).await;
    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "{stderr}");

    // HLS through the published port, with a playback token, as a player gets it.
    let (status, body) = http_request(
        "POST",
        &format!("{http}/api/v1/streams/{stream}/playback-token"),
        Some(&api_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let playlist = format!("{http}{}", token["hls_url"].as_str().unwrap());
    let started = Instant::now();
    loop {
        let (status, body) = http_get(&playlist, None).await;
        if status == 200 && body.contains("#EXT-X-ENDLIST") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the playlist did not end: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let probed = ffprobe(&playlist, "format=duration:stream=codec_name", None).await;
    assert_eq!(probed["streams"][0]["codec_name"], "h264", "{probed}");
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 8.0).abs() < 1.5, "{duration} s of 8 s");

    // The data volume outlives a restart: the same keys work, the results are still there, and
    // no new first-start keys are made.
    docker(&["restart", "--time", "30", &container.name]).await;
    wait_until_healthy(&container, Duration::from_secs(90)).await;
    wait_for_label(&http, &api_key, &stream, "cup", Duration::from_secs(5)).await;
    let log = docker(&["logs", &container.name]).await;
    assert_eq!(log.matches("API key: ").count(), 1, "{log}");

    // SIGTERM ends the server cleanly, well within Docker's grace period.
    let stopping = Instant::now();
    docker(&["stop", "--time", "30", &container.name]).await;
    assert!(stopping.elapsed() < Duration::from_secs(25));
    assert_eq!(container.inspect("{{.State.ExitCode}}").await, "0");
}
