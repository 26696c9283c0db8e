//! Segments and detections past their retention leave the disk and the store.

use std::collections::HashSet;
use std::time::Duration;

use media::StreamHub;
use store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often HLS retention looks at every stream's folder.
pub const SEGMENT_SWEEP: Duration = Duration::from_secs(60);
/// How often detections past their retention are deleted.
pub const DETECTION_SWEEP: Duration = Duration::from_secs(3600);

/// Before anything is written: segments of earlier runs past retention, and every `.tmp`
/// (a leftover now) go, and the store is told.
pub async fn sweep_at_start(store: &Store, hls: &hls::HlsConfig) {
    sweep(store, hls, HashSet::new(), true).await;
}

/// HLS retention for what the packager's own retention does not cover (earlier runs, streams
/// that went offline, leftovers), every [`SEGMENT_SWEEP`] until `stop`.
pub async fn expire_segments(
    store: Store,
    hls: hls::HlsConfig,
    hub: StreamHub,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SEGMENT_SWEEP);
    tick.tick().await; // sweep_at_start swept already
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                sweep(&store, &hls, hub.live_streams().into_iter().collect(), false).await;
            }
        }
    }
}

/// Runs [`hls::sweep::sweep`] off the async threads and tells the store which segments it
/// deleted.
async fn sweep(store: &Store, hls: &hls::HlsConfig, live: HashSet<String>, starting: bool) {
    let config = hls.clone();
    let removed = match tokio::task::spawn_blocking(move || {
        hls::sweep::sweep(&config.root, &config, &live, starting)
    })
    .await
    {
        Ok(removed) => removed,
        Err(e) => return warn!("HLS retention failed: {e}"),
    };
    for (stream, seqs) in removed {
        info!(%stream, segments = seqs.len(), "retention deleted old segments");
        if let Err(e) = store
            .mark_segments_removed(&stream, &seqs, store::now_ms())
            .await
        {
            warn!(%stream, "could not record removed segments: {e}");
        }
    }
}

/// Deletes detections older than `retention`, every [`DETECTION_SWEEP`] until `stop`.
pub async fn expire_detections(store: Store, retention: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(DETECTION_SWEEP);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let cutoff = store::now_ms() - retention.as_millis() as i64;
                match store.delete_detections_before(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => info!(deleted = n, "expired old detections"),
                    Err(e) => warn!("could not expire detections: {e}"),
                }
            }
        }
    }
}
