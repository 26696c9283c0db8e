//! `media-analyzer bench fanout`: the results path after analysis, to WebSocket viewers. A
//! `serve --role api` child process (so its memory is its own) fed through a real bus; N WebSocket
//! viewers of one stream; detection events published at 30/s; delivery delay from publish to
//! arrival at each viewer (p50/p99) and the server's memory per viewer. (`bench bus` is
//! `bus::bench::throughput`.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::bench_host::ServeChild;

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
    let host = ServeChild::start(["--role", "api", "--analysis", "off", "--bus", bus_url])?;
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
        bus.publish(&bus::bench::sample_detections(&tenant, &stream, seq as u64))
            .await?;
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
