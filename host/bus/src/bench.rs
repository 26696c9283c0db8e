//! `media-analyzer bench bus`: messages/s through each backend, end to end (publish → subscriber).

use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::warn;

use crate::{Bus, Delivery, Result};

/// A detections event like a busy live frame's (two boxes, 1080p), for benchmarks.
pub fn sample_detections(tenant: &str, stream: &str, seq: u64) -> crate::Envelope {
    crate::Envelope::new(
        tenant,
        crate::Event::Detections(crate::FrameDetections {
            effects: Vec::new(),
            effects_failed: Vec::new(),
            scene: None,
            stream: stream.into(),
            seq,
            pts_ms: seq as i64 * 33,
            wallclock: "2026-11-25T00:00:00.000Z".into(),
            ingested: None,
            timing: None,
            width: 1920,
            height: 1080,
            detections: vec![
                crate::Detection {
                    label: "cup".into(),
                    score: 0.8,
                    bbox: [0.3, 0.2, 0.4, 0.5],
                    component: "object-detector".into(),
                },
                crate::Detection {
                    label: "person".into(),
                    score: 0.7,
                    bbox: [0.1, 0.1, 0.2, 0.6],
                    component: "object-detector".into(),
                },
            ],
        }),
    )
}

/// Messages/s through `publish` (64 in flight) for each reachable backend.
pub async fn throughput(messages: usize, backends: &[String]) -> Result<()> {
    println!("\n| backend | messages | seconds | messages/s |");
    println!("|---|---|---|---|");
    for url in backends {
        let bus = match Bus::connect(&url.parse()?).await {
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
                    async move {
                        bus.publish(&sample_detections("ten_bench", &stream, seq as u64))
                            .await
                    }
                })
                .buffer_unordered(64)
                .for_each(|r| async move {
                    if let Err(e) = r {
                        warn!("publish failed: {e}");
                    }
                })
                .await;
            let want = received + batch.len();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while received < want {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Delivery::Message(m))) if m.event.stream() == stream => received += 1,
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
