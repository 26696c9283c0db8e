//! Live analysis: every stream that starts in the hub is decoded on its own thread (subscribed
//! with `DropOldest`, so the video path never waits) and the newest decoded frame is analysed by
//! the detector components on a second thread; frames analysis could not take are counted as
//! skipped. Detections go to the store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use decode::{LatestFrame, VideoDecoder};
use media::{HubEvent, Overflow, StreamHub, Subscription};
use runtime::{DetectorComponent, Runtime};
use store::{DetectionRecord, Store};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::analyze::{Bundle, DEFAULT_COMPONENTS, bundled, load_bundle};

/// Packets queued between the hub and a stream's decoder before the oldest are dropped.
const DECODER_QUEUE: usize = 600;

/// Counters for `/metrics`, summed over streams.
#[derive(Debug, Default)]
pub struct AnalysisStats {
    pub frames_decoded: AtomicU64,
    pub frames_analysed: AtomicU64,
    /// Replaced by a newer frame before the analyser took them (by design, not an error).
    pub frames_skipped: AtomicU64,
    /// Packets the decoder's `DropOldest` queue dropped (it then waits for a keyframe).
    pub packets_lost: AtomicU64,
    pub component_failures: AtomicU64,
    pub detections_stored: AtomicU64,
    /// Time spent in model runs, microseconds.
    pub inference_us: AtomicU64,
}

impl AnalysisStats {
    /// Prometheus text.
    pub fn render(&self) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, help, value) in [
            (
                "frames_decoded_total",
                "frames decoded for analysis",
                c(&self.frames_decoded),
            ),
            (
                "frames_analysed_total",
                "frames analysed",
                c(&self.frames_analysed),
            ),
            (
                "frames_skipped_total",
                "frames replaced by a newer one before analysis",
                c(&self.frames_skipped),
            ),
            (
                "packets_lost_total",
                "packets dropped before the decoder",
                c(&self.packets_lost),
            ),
            (
                "component_failures_total",
                "component calls that failed",
                c(&self.component_failures),
            ),
            (
                "detections_total",
                "detections stored",
                c(&self.detections_stored),
            ),
            (
                "inference_microseconds_total",
                "time spent in model runs",
                c(&self.inference_us),
            ),
        ] {
            out.push_str(&format!(
                "# HELP media_analyzer_analysis_{name} {help}\n# TYPE media_analyzer_analysis_{name} counter\nmedia_analyzer_analysis_{name} {value}\n"
            ));
        }
        out
    }
}

/// The detector components and models for live streams.
pub struct LiveAnalysis {
    runtime: Arc<Runtime>,
    components: Arc<Vec<(String, DetectorComponent)>>,
    store: Store,
    stats: Arc<AnalysisStats>,
}

impl LiveAnalysis {
    /// Loads the bundled components and their models; `Ok(None)` (with a warning) when the models
    /// or components are not installed, so `serve` still ingests and packages video.
    pub fn load(components_dir: &Path, store: Store, stats: Arc<AnalysisStats>) -> Option<Self> {
        match bundled(&DEFAULT_COMPONENTS).and_then(|wanted| load_bundle(&wanted, components_dir)) {
            Ok(Bundle {
                runtime,
                components,
            }) => {
                info!(components = components.len(), "live analysis ready");
                Some(Self {
                    runtime: Arc::new(runtime),
                    components: Arc::new(components),
                    store,
                    stats,
                })
            }
            Err(e) => {
                warn!("live analysis is off: {e:#}");
                None
            }
        }
    }

    /// Analyses every stream that starts until `shutdown`, then waits for the streams in
    /// progress to end.
    pub async fn run(self, hub: StreamHub, shutdown: CancellationToken) {
        let mut events = hub.events();
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Ok(HubEvent::Started { stream }) => {
                        if let Some(subscription) = hub.subscribe(&stream, Overflow::DropOldest, DECODER_QUEUE) {
                            workers.retain(|w| !w.is_finished());
                            workers.extend(self.start(stream, subscription));
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => warn!("analysis missed {n} stream events"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }

    fn start(&self, stream: String, subscription: Subscription) -> Vec<JoinHandle<()>> {
        let slot = Arc::new(LatestFrame::new());
        let handle = Handle::current();
        let decoder = std::thread::Builder::new()
            .name(format!("decode-{stream}"))
            .spawn({
                let (slot, handle, stream, stats) = (
                    slot.clone(),
                    handle.clone(),
                    stream.clone(),
                    self.stats.clone(),
                );
                move || decode_stream(&stream, subscription, &slot, &handle, &stats)
            });
        let analyser = std::thread::Builder::new()
            .name(format!("analyse-{stream}"))
            .spawn({
                let (runtime, components, store, stats) = (
                    self.runtime.clone(),
                    self.components.clone(),
                    self.store.clone(),
                    self.stats.clone(),
                );
                move || {
                    analyse_stream(
                        &stream,
                        &slot,
                        &runtime,
                        &components,
                        &store,
                        &handle,
                        &stats,
                    )
                }
            });
        [decoder, analyser]
            .into_iter()
            .filter_map(|t| {
                t.map_err(|e| warn!("cannot start an analysis thread: {e}"))
                    .ok()
            })
            .collect()
    }
}

fn decode_stream(
    stream: &str,
    mut subscription: Subscription,
    slot: &LatestFrame,
    handle: &Handle,
    stats: &AnalysisStats,
) {
    let mut decoder = match VideoDecoder::live_h264(1) {
        Ok(d) => d,
        Err(e) => {
            warn!(%stream, "no decoder, analysis off for this stream: {e}");
            slot.close();
            return;
        }
    };
    let mut frames = Vec::new();
    let mut lost = 0u64;
    while let Some(packet) = handle.block_on(subscription.recv()) {
        let dropped = subscription.take_dropped();
        if dropped > 0 {
            lost += dropped;
            stats.packets_lost.fetch_add(dropped, Ordering::Relaxed);
            decoder.resync();
        }
        if let Err(e) = decoder.push(&packet, &mut frames) {
            warn!(%stream, "skipping undecodable video: {e}");
            decoder.resync();
        }
        for f in frames.drain(..) {
            stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            slot.offer(f);
        }
    }
    let _ = decoder.finish(&mut frames);
    for f in frames.drain(..) {
        slot.offer(f);
    }
    slot.close();
    let sampled = slot.stats();
    stats
        .frames_skipped
        .fetch_add(sampled.skipped, Ordering::Relaxed);
    info!(%stream, decoded = sampled.offered, analysed = sampled.taken, skipped = sampled.skipped, packets_lost = lost, "stream analysis ended");
}

fn analyse_stream(
    stream: &str,
    slot: &LatestFrame,
    runtime: &Runtime,
    components: &[(String, DetectorComponent)],
    store: &Store,
    handle: &Handle,
    stats: &AnalysisStats,
) {
    while let Some(frame) = handle.block_on(slot.take()) {
        stats.frames_analysed.fetch_add(1, Ordering::Relaxed);
        let wallclock = store::now_ms();
        let host_frame = runtime_wit::Frame {
            stream: stream.to_string(),
            seq: frame.seq,
            pts_ms: frame.pts_ms,
            width: frame.width,
            height: frame.height,
            rgb: frame.rgb.clone(),
        };
        let mut records = Vec::new();
        for (name, component) in components {
            match runtime.detect(component, host_frame.clone(), &[]) {
                Ok(outcome) => {
                    stats
                        .inference_us
                        .fetch_add(outcome.inference.as_micros() as u64, Ordering::Relaxed);
                    records.extend(outcome.detections.into_iter().map(|d| DetectionRecord {
                        id: String::new(),
                        stream_id: stream.to_string(),
                        seq: frame.seq as i64,
                        pts_ms: frame.pts_ms,
                        wallclock,
                        label: d.label,
                        score: d.score as f64,
                        bbox: [
                            d.box_.x as f64,
                            d.box_.y as f64,
                            d.box_.w as f64,
                            d.box_.h as f64,
                        ],
                        component: name.clone(),
                    }))
                }
                Err(e) => {
                    stats.component_failures.fetch_add(1, Ordering::Relaxed);
                    warn!(%stream, component = %name, frame = frame.seq, "component call failed: {e}")
                }
            }
        }
        match handle.block_on(store.add_detections(&mut records)) {
            Ok(()) => {
                stats
                    .detections_stored
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(e) => warn!(%stream, "could not store {} detections: {e}", records.len()),
        }
    }
}
