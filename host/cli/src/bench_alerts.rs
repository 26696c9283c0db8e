//! `media-analyzer bench alerts`: how long after a brand's logo comes on screen its alert reaches
//! a webhook. A `serve` child process analyses a live RTMP stream (ffmpeg, real time) of a photo
//! on which the Coca-Cola mark appears for 2 s of every 4 s; the catalogue holds the plain mark,
//! the pipeline runs `logo-matcher` and `brand-rules` (alert on the first sighting), and a local
//! webhook receiver notes when each alert arrives. Latency = arrival − the moment the publisher
//! sent the appearance's first frame (its media time after the publisher started; ffmpeg's own
//! start-up counts against us). Beside it, the same run's mean time per frame in the analysis
//! stage (the matcher through its component, from `/metrics`): the floor a frame's results cannot
//! beat.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench_host::ServeChild;
use crate::component::{Push, multipart_form};

/// The mark is on screen while `mod(t, PERIOD) >= PERIOD / 2`.
const PERIOD_S: u64 = 4;

/// A webhook receiver on 127.0.0.1: each alert's arrival time and media time (`pts_ms`).
async fn receiver() -> anyhow::Result<(String, Arc<Mutex<Vec<(Instant, i64)>>>)> {
    let arrivals: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let kept = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let at = Instant::now();
            let kept = kept.clone();
            async move {
                if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body)
                    && event["type"] == "alert"
                    && let Some(pts) = event["pts_ms"].as_i64()
                    && let Ok(mut arrivals) = kept.lock()
                {
                    arrivals.push((at, pts));
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, arrivals))
}

async fn call(
    client: &reqwest::Client,
    host: &ServeChild,
    method: reqwest::Method,
    path: &str,
    body: Option<(String, Vec<u8>)>,
) -> anyhow::Result<serde_json::Value> {
    let mut request = client
        .request(method.clone(), format!("{}/api/v1{path}", host.http))
        .bearer_auth(&host.api_key);
    if let Some((content_type, bytes)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{method} {path}: {status} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

fn json(value: serde_json::Value) -> Option<(String, Vec<u8>)> {
    Some(("application/json".into(), value.to_string().into_bytes()))
}

/// The mean of a histogram in `/metrics` text (`{name}_sum` / `{name}_count` with `labels`).
fn histogram_mean(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let value = |suffix: &str| {
        let prefix = format!("{name}_{suffix}{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (sum, count) = (value("sum")?, value("count")?);
    (count > 0.0).then(|| sum / count)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

pub async fn alerts(seconds: u64, components: &std::path::Path) -> anyhow::Result<()> {
    if seconds < 2 * PERIOD_S {
        bail!("--seconds must be at least {}", 2 * PERIOD_S);
    }
    let catalog = inference::Catalog::load(&inference::Catalog::default_path())?;
    let fixtures = catalog
        .fixture_path("astronaut")
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .context("the fixtures are missing: run scripts/fetch-models")?;
    let (photo, logo) = (
        fixtures.join("astronaut.png"),
        fixtures.join("logos/cocacola.svg"),
    );
    let work = tempfile::tempdir()?;
    let mark = work.path().join("mark.png");
    let drawn = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-width", "80", "-height", "80", "-i"])
        .arg(&logo)
        .args(["-vf", "lutrgb=r=244:g=0:b=0"])
        .arg(&mark)
        .status()
        .context("ffmpeg (Debian's ffmpeg, with its SVG decoder)")?;
    if !drawn.success() {
        bail!("ffmpeg could not draw {}", logo.display());
    }

    let components = components.as_os_str();
    let host = ServeChild::start([
        OsStr::new("--allow-private-webhooks"),
        OsStr::new("--components"),
        components,
    ])?;
    let client = reqwest::Client::new();
    let (hook, arrivals) = receiver().await?;
    call(
        &client,
        &host,
        reqwest::Method::POST,
        "/webhooks",
        json(serde_json::json!({"url": hook, "events": ["alert"]})),
    )
    .await?;
    call(
        &client,
        &host,
        reqwest::Method::POST,
        "/brands",
        json(serde_json::json!({"name": "Coca-Cola"})),
    )
    .await?;
    let push = Push {
        file: &logo,
        name: "",
        world: "",
    };
    call(
        &client,
        &host,
        reqwest::Method::POST,
        "/brands/cocacola/logos",
        Some(multipart_form(&push, &std::fs::read(&logo)?)),
    )
    .await?;
    let streams = call(&client, &host, reqwest::Method::GET, "/streams", None).await?;
    let stream = streams["streams"][0]["id"]
        .as_str()
        .context("stream id")?
        .to_string();
    call(
        &client,
        &host,
        reqwest::Method::PUT,
        &format!("/streams/{stream}/pipeline"),
        json(serde_json::json!({
            "detector": [{"name": "logo-matcher"}],
            "trigger": [{"name": "brand-rules",
                         "config": {"min-seconds": "0", "cooldown-seconds": "0"}}],
        })),
    )
    .await?;

    println!(
        "publishing {seconds} s of 640×360 30 fps; the mark is on screen 2 s of every {PERIOD_S} s"
    );
    let filter = format!(
        "[0]scale=640:360,setsar=1[bg];[bg][1]overlay=x=400:y=20:enable='gte(mod(t,{PERIOD_S}),{})',format=yuv420p",
        PERIOD_S / 2
    );
    let started = Instant::now();
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-framerate", "30", "-loop", "1", "-i"])
        .arg(&photo)
        .args(["-framerate", "30", "-loop", "1", "-i"])
        .arg(&mark)
        .args(["-t", &seconds.to_string(), "-filter_complex", &filter])
        .args(["-r", "30", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-tune", "zerolatency", "-g", "30", "-f", "flv"])
        .arg(format!("{}/{}", host.rtmp, host.stream_key))
        .stdout(Stdio::null())
        .spawn()
        .context("ffmpeg")?;
    let published = tokio::task::spawn_blocking(move || publisher.wait()).await??;
    if !published.success() {
        bail!("ffmpeg could not publish to {}", host.rtmp);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let metrics = client
        .get(format!("{}/metrics", host.http))
        .send()
        .await?
        .text()
        .await?;
    let analysis_ms = histogram_mean(
        &metrics,
        "media_analyzer_analysis_stage_seconds",
        "stage=\"analysis\"",
    )
    .map_or(f64::NAN, |s| s * 1000.0);
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    // The appearance an alert belongs to, from its frame's media time (the publisher's clock
    // starts at 0): appearance k starts at k × PERIOD + PERIOD / 2.
    let (period, half) = (PERIOD_S as f64, PERIOD_S as f64 / 2.0);
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .map(|(at, pts)| {
            let media = *pts as f64 / 1000.0;
            let appeared = ((media - half) / period).floor().max(0.0) * period + half;
            (at.duration_since(started).as_secs_f64() - appeared) * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let appearances = (seconds / PERIOD_S) as usize;
    println!(
        "alerts: {} received of {appearances} appearances",
        latencies.len()
    );
    if latencies.is_empty() {
        bail!("no alert reached the webhook");
    }
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "logo on screen → webhook received: p50 {p50:.0} ms, p99 {p99:.0} ms (max {:.0} ms)",
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "analysis stage (logo-matcher through its component) per frame: mean {analysis_ms:.1} ms → p50 latency = {:.1}× one frame's analysis",
        p50 / analysis_ms
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_of_a_histogram_is_read_from_metrics_text() {
        let text = "x_sum{stage=\"analysis\"} 1.5\nx_count{stage=\"analysis\"} 30\nx_count{stage=\"queue\"} 0\n";
        assert_eq!(histogram_mean(text, "x", "stage=\"analysis\""), Some(0.05));
        assert_eq!(histogram_mean(text, "x", "stage=\"queue\""), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }
}
