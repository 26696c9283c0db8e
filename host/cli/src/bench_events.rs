//! `media-analyzer bench fanout` and `bench bus`: the results path after analysis.
//!
//! - fan-out: a `serve --role api` child process (so its memory is its own) fed through a real bus;
//!   N WebSocket viewers of one stream; detection events published at 30/s; delivery delay from
//!   publish to arrival at each viewer (p50/p99) and the server's memory per viewer.
//! - bus: messages/s through each backend's `publish` (64 in flight), and the same for the raw
//!   backend where there is one to compare against.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn event(tenant: &str, stream: &str, seq: u64) -> bus::Envelope {
    bus::Envelope::new(
        tenant,
        bus::Event::Detections(bus::FrameDetections {
            stream: stream.into(),
            seq,
            pts_ms: seq as i64 * 33,
            wallclock: "2026-11-25T00:00:00Z".into(),
            ingested: None,
            timing: None,
            width: 1920,
            height: 1080,
            detections: vec![
                bus::Detection {
                    label: "cup".into(),
                    score: 0.8,
                    bbox: [0.3, 0.2, 0.4, 0.5],
                    component: "object-detector".into(),
                },
                bus::Detection {
                    label: "person".into(),
                    score: 0.7,
                    bbox: [0.1, 0.1, 0.2, 0.6],
                    component: "object-detector".into(),
                },
            ],
        }),
    )
}

struct Child {
    process: std::process::Child,
    http: String,
    api_key: String,
    _data: tempfile::TempDir,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `serve --role api` in a child process on free ports; returns once it answers.
fn start_api_host(bus_url: &str) -> anyhow::Result<Child> {
    let data = tempfile::tempdir()?;
    let mut process = Command::new(std::env::current_exe()?)
        .args([
            "serve",
            "--role",
            "api",
            "--analysis",
            "off",
            "--bus",
            bus_url,
        ])
        .args(["--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = process.stdout.take().context("child stdout")?;
    let (mut http, mut api_key) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(url) = line.strip_prefix("HTTP listening on ") {
            http = Some(url.trim().to_string());
        }
        if let Some(key) = line.strip_prefix("API key: ") {
            api_key = Some(key.trim().to_string());
        }
        if http.is_some() && api_key.is_some() {
            break;
        }
    }
    match (http, api_key) {
        (Some(http), Some(api_key)) => Ok(Child {
            process,
            http,
            api_key,
            _data: data,
        }),
        _ => bail!("the API host did not start (no banner)"),
    }
}

async fn get_json(url: &str, key: &str, method: &str) -> anyhow::Result<serde_json::Value> {
    // A tiny HTTP/1.1 client: enough for two loopback calls.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_once('/').context("path")?;
    let mut socket = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    socket.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(serde_json::from_str(body)?)
}

pub async fn fanout(viewers: usize, seconds: u64, bus_url: &str) -> anyhow::Result<()> {
    let host = start_api_host(bus_url)?;
    let streams = get_json(
        &format!("{}/api/v1/streams", host.http),
        &host.api_key,
        "GET",
    )
    .await?;
    let stream = streams["streams"][0]["id"]
        .as_str()
        .context("stream id")?
        .to_string();
    let me = get_json(&format!("{}/api/v1/me", host.http), &host.api_key, "GET").await?;
    let tenant = me["tenant"]["id"]
        .as_str()
        .context("tenant id")?
        .to_string();
    let token = get_json(
        &format!("{}/api/v1/streams/{stream}/playback-token", host.http),
        &host.api_key,
        "POST",
    )
    .await?["token"]
        .as_str()
        .context("token")?
        .to_string();
    let pid = host.process.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;

    let url = format!(
        "{}/api/v1/streams/{stream}/events?token={token}",
        host.http.replacen("http://", "ws://", 1)
    );
    let mut sockets = Vec::with_capacity(viewers);
    for chunk in (0..viewers).collect::<Vec<_>>().chunks(50) {
        let connects = chunk
            .iter()
            .map(|_| tokio_tungstenite::connect_async(url.clone()));
        for result in futures::future::join_all(connects).await {
            sockets.push(result.context("connecting a viewer")?.0);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = rss_kib(pid)?;

    // Send times by seq, shared with the viewer tasks.
    let frames = (seconds * 30) as usize;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; frames]));
    let mut tasks = Vec::with_capacity(viewers);
    for mut socket in sockets {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut delays = Vec::with_capacity(frames);
            let mut lagged = 0u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds + 10);
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, socket.next()).await {
                let arrived = Instant::now();
                let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if v["type"] == "lagged" {
                    lagged += 1;
                    continue;
                }
                let Some(seq) = v["seq"].as_u64() else {
                    continue;
                };
                if let Some(Some(at)) = sent.lock().unwrap().get(seq as usize).copied() {
                    delays.push(arrived.duration_since(at).as_secs_f64() * 1000.0);
                }
                if seq as usize + 1 == frames {
                    break;
                }
            }
            (delays, lagged)
        }));
    }

    let bus = bus::Bus::connect(&bus_url.parse()?).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    for seq in 0..frames {
        tick.tick().await;
        sent.lock().unwrap()[seq] = Some(Instant::now());
        bus.publish(&event(&tenant, &stream, seq as u64)).await?;
    }
    let peak = rss_kib(pid)?;
    let mut all = Vec::new();
    let mut lagged = 0;
    let mut complete = 0;
    for t in tasks {
        let (delays, l) = t.await?;
        if delays.len() == frames {
            complete += 1;
        }
        all.extend(delays);
        lagged += l;
    }
    all.sort_by(f64::total_cmp);
    println!(
        "\nfan-out through {} to {viewers} WebSocket viewers of one stream, {frames} events at 30/s (2 detections each)\n",
        bus.backend_name()
    );
    println!(
        "| deliveries | p50 delay | p99 delay | max | viewers that got every event | lagged notices |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {complete}/{viewers} | {lagged} |",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "server memory: {} KiB idle, {} KiB with {viewers} viewers ({:.1} KiB per viewer), {} KiB at the end of the run ({:.1} KiB per viewer)",
        before,
        connected,
        (connected.saturating_sub(before)) as f64 / viewers as f64,
        peak,
        (peak.saturating_sub(before)) as f64 / viewers as f64
    );
    Ok(())
}

/// Messages/s through `publish` (64 in flight) for each reachable backend.
pub async fn bus_throughput(messages: usize, backends: &[String]) -> anyhow::Result<()> {
    println!("\n| backend | messages | seconds | messages/s |");
    println!("|---|---|---|---|");
    for url in backends {
        let bus = match bus::Bus::connect(&url.parse()?).await {
            Ok(b) => b,
            Err(e) => {
                println!("| {url} | — | — | unreachable: {e} |");
                continue;
            }
        };
        let mut rx = bus.subscribe().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let stream = format!("str_bench{:x}", rand::random::<u32>());
        // Batches of 1024 (64 in flight), each received before the next is sent: sustained
        // end-to-end throughput, not how fast a burst can be dropped.
        let mut received = 0;
        for batch in (0..messages).collect::<Vec<_>>().chunks(1024) {
            futures::stream::iter(batch.iter().copied())
                .map(|seq| {
                    let bus = bus.clone();
                    let stream = stream.clone();
                    async move { bus.publish(&event("ten_bench", &stream, seq as u64)).await }
                })
                .buffer_unordered(64)
                .for_each(|r| async move {
                    if let Err(e) = r {
                        tracing::warn!("publish failed: {e}");
                    }
                })
                .await;
            let want = received + batch.len();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while received < want {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(bus::Delivery::Message(m))) if m.event.stream() == stream => {
                        received += 1
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {} | {received}/{messages} received | {secs:.2} | {:.0} |",
            bus.backend_name(),
            received as f64 / secs
        );
    }
    Ok(())
}
