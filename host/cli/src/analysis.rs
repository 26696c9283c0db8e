//! Analysis of live streams, in one of two modes per stream (`PUT /api/v1/streams/{id}/mode`):
//!
//! - **realtime**: every stream that starts in the hub is decoded on its own thread (subscribed
//!   with `DropOldest`, so the video path never waits). Analysers — as many per stream as the
//!   models have sessions, so several frames can be in the models at once — each take the newest
//!   decoded frame when they are free, and the results leave in frame order; frames no analyser
//!   could take are counted as skipped.
//! - **batch**: the live decoder idles; each closed HLS segment is queued in the store (durable,
//!   bounded per stream; `serve` queues them) and one worker decodes queued segments from disk and
//!   analyses every Nth frame of each — slower than live, but nothing is skipped, and a restart
//!   picks up where it stopped.
//!
//! Detections go to the store either way, and every analysed frame (with or without detections)
//! is published on the bus for live viewers; a bus outage never holds analysis up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use decode::{LatestFrame, VideoDecoder};
use media::{HubEvent, Overflow, StreamHub, Subscription};
use runtime::{DetectorComponent, Runtime};
use store::{AnalysisMode, BatchJob, DetectionRecord, Store};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::analyze::{Bundle, DEFAULT_COMPONENTS, bundled, load_bundle};

/// Slice threads per live decoder: a frame cut into slices (OBS's low-latency x264 settings) is
/// decoded on two cores at once, which halves a large keyframe's delay.
const DECODER_THREADS: usize = 2;
/// Packets queued between the hub and a stream's decoder before the oldest are dropped.
const DECODER_QUEUE: usize = 600;
/// Segments of one stream that may wait for batch analysis (30 min of 2 s segments); more are
/// refused and counted, so a stream analysis can't keep up with can't fill the disk's database.
pub const BATCH_QUEUE_LIMIT: i64 = 900;
/// How often a live decoder re-reads its stream's mode.
const MODE_POLL: Duration = Duration::from_secs(2);
/// Niceness of analysis threads (analysers, model sessions, the batch worker): when the CPU is
/// short, the video path (RTMP, HLS) and the decoders get it first, and analysis skips frames.
pub const ANALYSIS_NICE: i32 = 19;
/// How long the batch worker sleeps when the queue is empty.
const BATCH_IDLE: Duration = Duration::from_millis(500);

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
    /// Closed segments queued for batch analysis, and refused because the stream's queue was full.
    pub batch_queued: AtomicU64,
    pub batch_refused: AtomicU64,
    /// Batch jobs finished, and failed (e.g. the segment was removed before its turn).
    pub batch_done: AtomicU64,
    pub batch_failed: AtomicU64,
    /// Where a live frame's time goes, stage by stage (see [`Stage`]).
    pub stages: [Histogram; Stage::ALL.len()],
}

/// The stages of a live frame, from its video reaching the host to its results being handed to
/// the bus.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// The frame's packet arrived → the packet that let it out of the decoder arrived: the codec's
    /// display-order delay, 0 without B-frames (a frame leaves the decoder in display order, after
    /// the frames shown before it, which a stream with B-frames sends after it).
    Reorder,
    /// That packet arrived → the frame decoded and converted to RGB.
    Decode,
    /// Decoded → taken by a free analyser.
    Queue,
    /// The components' calls, model time included.
    Analysis,
    /// Waiting for the previous frame's results to leave first, then the store write and the bus.
    Output,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Reorder,
        Stage::Decode,
        Stage::Queue,
        Stage::Analysis,
        Stage::Output,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Reorder => "reorder",
            Stage::Decode => "decode",
            Stage::Queue => "queue",
            Stage::Analysis => "analysis",
            Stage::Output => "output",
        }
    }
}

/// Upper bounds of the latency histogram's buckets, milliseconds.
const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500];

/// A Prometheus-style latency histogram (fixed buckets, lock-free).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl Histogram {
    pub fn observe_ms(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        let bucket = BUCKETS_MS
            .iter()
            .position(|&le| ms <= le)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BUCKETS_MS
                .get(i)
                .map(|ms| format!("{}", *ms as f64 / 1000.0))
                .unwrap_or_else(|| "+Inf".into());
            out.push_str(&format!(
                "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}\n"
            ));
        }
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        out.push_str(&format!("{name}_sum{{{labels}}} {sum}\n"));
        out.push_str(&format!("{name}_count{{{labels}}} {cumulative}\n"));
    }
}

impl AnalysisStats {
    fn stage(&self, stage: Stage) -> &Histogram {
        &self.stages[stage as usize]
    }

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
            (
                "batch_segments_queued_total",
                "closed segments queued for batch analysis",
                c(&self.batch_queued),
            ),
            (
                "batch_segments_refused_total",
                "closed segments not queued: the stream's batch queue was full",
                c(&self.batch_refused),
            ),
            (
                "batch_segments_done_total",
                "segments analysed in batch mode",
                c(&self.batch_done),
            ),
            (
                "batch_segments_failed_total",
                "batch jobs that failed",
                c(&self.batch_failed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP media_analyzer_analysis_{name} {help}\n# TYPE media_analyzer_analysis_{name} counter\nmedia_analyzer_analysis_{name} {value}\n"
            ));
        }
        let waiting =
            c(&self.batch_queued).saturating_sub(c(&self.batch_done) + c(&self.batch_failed));
        out.push_str(&format!(
            "# HELP media_analyzer_analysis_batch_queue_depth segments waiting for batch analysis (queued by this process)\n# TYPE media_analyzer_analysis_batch_queue_depth gauge\nmedia_analyzer_analysis_batch_queue_depth {waiting}\n"
        ));
        let name = "media_analyzer_analysis_stage_seconds";
        out.push_str(&format!("# HELP {name} time live frames spend in each stage, from the video reaching the host to the results going to the bus\n# TYPE {name} histogram\n"));
        for stage in Stage::ALL {
            self.stage(stage)
                .render(name, &format!("stage=\"{}\"", stage.name()), &mut out);
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
    hls_root: PathBuf,
    publisher: bus::Publisher,
    /// Analysers per stream: frames of one stream that may be in analysis at once.
    analysers: usize,
}

impl LiveAnalysis {
    /// Loads the bundled components and their models; `Ok(None)` (with a warning) when the models
    /// or components are not installed, so `serve` still ingests and packages video.
    pub fn load(
        components_dir: &Path,
        models: crate::analyze::ModelSettings,
        hls_root: PathBuf,
        store: Store,
        stats: Arc<AnalysisStats>,
        publisher: bus::Publisher,
    ) -> Option<Self> {
        match bundled(&DEFAULT_COMPONENTS)
            .and_then(|wanted| load_bundle(&wanted, components_dir, models))
        {
            Ok(Bundle {
                runtime,
                components,
            }) => {
                info!(
                    components = components.len(),
                    analysers_per_stream = models.sessions,
                    "live analysis ready"
                );
                Some(Self {
                    runtime: Arc::new(runtime),
                    components: Arc::new(components),
                    store,
                    stats,
                    hls_root,
                    publisher,
                    analysers: models.sessions.max(1),
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
        let batch = std::thread::Builder::new()
            .name("analyse-batch".into())
            .spawn({
                let (runtime, components, store, stats, root, handle, stop, publisher) = (
                    self.runtime.clone(),
                    self.components.clone(),
                    self.store.clone(),
                    self.stats.clone(),
                    self.hls_root.clone(),
                    Handle::current(),
                    shutdown.clone(),
                    self.publisher.clone(),
                );
                move || {
                    inference::set_thread_nice(ANALYSIS_NICE);
                    let queue = BatchQueue {
                        runtime: &runtime,
                        components: &components,
                        store: &store,
                        stats: &stats,
                        hls_root: &root,
                        handle: &handle,
                        publisher: &publisher,
                    };
                    queue.run(&stop)
                }
            });
        match batch {
            Ok(t) => workers.push(t),
            Err(e) => warn!("cannot start the batch analysis thread: {e}"),
        }
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
        let order = Arc::new(FrameOrder::default());
        let handle = Handle::current();
        let mut threads = vec![
            std::thread::Builder::new()
                .name(format!("decode-{stream}"))
                .spawn({
                    let (slot, handle, stream, stats, store) = (
                        slot.clone(),
                        handle.clone(),
                        stream.clone(),
                        self.stats.clone(),
                        self.store.clone(),
                    );
                    move || decode_stream(&stream, subscription, &slot, &handle, &stats, &store)
                }),
        ];
        for i in 0..self.analysers {
            threads.push(
                std::thread::Builder::new()
                    .name(format!("analyse-{stream}-{i}"))
                    .spawn({
                        let (runtime, components, store, stats, publisher) = (
                            self.runtime.clone(),
                            self.components.clone(),
                            self.store.clone(),
                            self.stats.clone(),
                            self.publisher.clone(),
                        );
                        let (stream, slot, order, handle) =
                            (stream.clone(), slot.clone(), order.clone(), handle.clone());
                        move || {
                            inference::set_thread_nice(ANALYSIS_NICE);
                            let out = Output {
                                store: &store,
                                publisher: &publisher,
                                handle: &handle,
                                stats: &stats,
                            };
                            analyse_stream(&stream, &slot, &order, &runtime, &components, &out)
                        }
                    }),
            );
        }
        threads
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
    store: &Store,
) {
    let mut decoder = match VideoDecoder::live_h264(DECODER_THREADS) {
        Ok(d) => d,
        Err(e) => {
            warn!(%stream, "no decoder, analysis off for this stream: {e}");
            slot.close();
            return;
        }
    };
    let mut frames = Vec::new();
    let mut lost = 0u64;
    // When recent video packets arrived, by presentation time: each decoded frame gets its own.
    let mut arrivals: std::collections::VecDeque<(i64, i64)> = std::collections::VecDeque::new();
    let mut realtime = true;
    let mut mode_checked: Option<Instant> = None;
    while let Some(packet) = handle.block_on(subscription.recv()) {
        if mode_checked.is_none_or(|t| t.elapsed() >= MODE_POLL) {
            mode_checked = Some(Instant::now());
            match handle.block_on(store.analysis(stream)) {
                Ok(Some(settings)) => {
                    let now_realtime = settings.mode == AnalysisMode::Realtime;
                    if now_realtime != realtime {
                        info!(%stream, mode = settings.mode.as_str(), "analysis mode changed");
                        // Back to live decoding: start again at the next keyframe.
                        decoder.resync();
                    }
                    realtime = now_realtime;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(%stream, "cannot read the analysis mode, keeping {}: {e}", if realtime { "realtime" } else { "batch" })
                }
            }
        }
        let dropped = subscription.take_dropped();
        if dropped > 0 {
            lost += dropped;
            stats.packets_lost.fetch_add(dropped, Ordering::Relaxed);
            decoder.resync();
        }
        if !realtime {
            continue; // batch mode: closed segments are analysed from disk
        }
        let pushed_at = store::now_ms();
        if packet.kind == media::MediaKind::Video && !packet.is_config {
            arrivals.push_back((packet.pts_ms, pushed_at));
            if arrivals.len() > 64 {
                arrivals.pop_front();
            }
        }
        if let Err(e) = decoder.push(&packet, &mut frames) {
            warn!(%stream, "skipping undecodable video: {e}");
            decoder.resync();
        }
        for mut f in frames.drain(..) {
            stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            f.released_ms = pushed_at;
            if let Some(&(_, at)) = arrivals.iter().find(|(pts, _)| *pts == f.pts_ms) {
                f.received_ms = at;
                stats.stage(Stage::Reorder).observe_ms(pushed_at - at);
            }
            stats
                .stage(Stage::Decode)
                .observe_ms(f.decoded_ms - pushed_at);
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

/// Where a frame's results go: the store, then the bus.
struct Output<'a> {
    store: &'a Store,
    publisher: &'a bus::Publisher,
    handle: &'a Handle,
    stats: &'a AnalysisStats,
}

/// Hands out turns so that a stream's results leave in the order its frames were taken, whichever
/// analyser finishes first: the viewers' `?since=` resume and the overlay rely on frame order.
#[derive(Default)]
struct FrameOrder {
    /// The next turn to hand out; held while waiting for a frame, so turns follow frame order.
    taking: Mutex<u64>,
    /// The turn whose results may leave now.
    leaving: Mutex<u64>,
    left: Condvar,
}

/// One frame's place in [`FrameOrder`]; gives the turn to the next frame when dropped, also if
/// the analyser failed on its way.
struct Turn<'a> {
    order: &'a FrameOrder,
    number: u64,
}

impl FrameOrder {
    /// Waits for the newest frame and takes the next turn with it; `None` when the stream ended.
    fn take(&self, slot: &LatestFrame, handle: &Handle) -> Option<(decode::Frame, Turn<'_>)> {
        let mut taking = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        let frame = handle.block_on(slot.take())?;
        let number = *taking;
        *taking += 1;
        Some((
            frame,
            Turn {
                order: self,
                number,
            },
        ))
    }
}

impl Turn<'_> {
    /// Waits until every earlier frame's results have left.
    fn wait(&self) {
        let leaving = self.order.leaving.lock().unwrap_or_else(|e| e.into_inner());
        let _now = self
            .order
            .left
            .wait_while(leaving, |next| *next < self.number)
            .unwrap_or_else(|e| e.into_inner());
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let leaving = self.order.leaving.lock().unwrap_or_else(|e| e.into_inner());
        let mut leaving = self
            .order
            .left
            .wait_while(leaving, |next| *next < self.number)
            .unwrap_or_else(|e| e.into_inner());
        *leaving = self.number + 1;
        self.order.left.notify_all();
    }
}

fn analyse_stream(
    stream: &str,
    slot: &LatestFrame,
    order: &FrameOrder,
    runtime: &Runtime,
    components: &[(String, DetectorComponent)],
    out: &Output,
) {
    let tenant = match out.handle.block_on(out.store.stream_tenant(stream)) {
        Ok(Some(t)) => t,
        Ok(None) => {
            warn!(%stream, "the stream has no tenant; not analysing it");
            return;
        }
        Err(e) => {
            warn!(%stream, "cannot look up the stream's tenant; not analysing it: {e}");
            return;
        }
    };
    while let Some((frame, turn)) = order.take(slot, out.handle) {
        let taken = store::now_ms();
        out.stats
            .stage(Stage::Queue)
            .observe_ms(taken - frame.decoded_ms);
        let mut analysed = analyse_frame(stream, &frame, runtime, components, out.stats);
        let done = store::now_ms();
        out.stats.stage(Stage::Analysis).observe_ms(done - taken);
        if frame.received_ms > 0 {
            let ms = |from: i64, to: i64| (to - from).clamp(0, u32::MAX as i64) as u32;
            analysed.timing = Some(bus::FrameTiming {
                reorder_ms: ms(frame.received_ms, frame.released_ms),
                decode_ms: ms(frame.released_ms, frame.decoded_ms),
                queue_ms: ms(frame.decoded_ms, taken),
                analysis_ms: ms(taken, done),
                inference_ms: analysed.inference.as_secs_f32() * 1000.0,
            });
        }
        turn.wait();
        out.send(stream, &tenant, &frame, analysed);
        drop(turn);
        out.stats
            .stage(Stage::Output)
            .observe_ms(store::now_ms() - done);
    }
}

/// What the components found in one frame.
struct Analysed {
    records: Vec<DetectionRecord>,
    wallclock: i64,
    inference: Duration,
    /// Live frames: where their time went.
    timing: Option<bus::FrameTiming>,
}

/// Runs every component on one frame.
fn analyse_frame(
    stream: &str,
    frame: &decode::Frame,
    runtime: &Runtime,
    components: &[(String, DetectorComponent)],
    stats: &AnalysisStats,
) -> Analysed {
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
    let mut inference = Duration::ZERO;
    for (name, component) in components {
        match runtime.detect(component, host_frame.clone(), &[]) {
            Ok(outcome) => {
                inference += outcome.inference;
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
    Analysed {
        records,
        wallclock,
        inference,
        timing: None,
    }
}

impl Output<'_> {
    /// Stores a frame's detections, then publishes them (also when there are none, so overlays
    /// clear).
    fn send(&self, stream: &str, tenant: &str, frame: &decode::Frame, mut analysed: Analysed) {
        let records = &mut analysed.records;
        match self.handle.block_on(self.store.add_detections(records)) {
            Ok(()) => {
                self.stats
                    .detections_stored
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(e) => warn!(%stream, "could not store {} detections: {e}", records.len()),
        }
        let meta = api::events::AnalysedFrame {
            seq: frame.seq,
            pts_ms: frame.pts_ms,
            wallclock_ms: analysed.wallclock,
            ingested_ms: (frame.received_ms > 0).then_some(frame.received_ms),
            timing: analysed.timing,
        };
        let size = (frame.width, frame.height);
        self.publisher.send(bus::Envelope::new(
            tenant,
            api::events::detections_event(stream, meta, size, records),
        ));
    }
}

/// The batch worker: takes queued segments oldest first, decodes each from disk and analyses every
/// Nth frame, and records the outcome in the store.
struct BatchQueue<'a> {
    runtime: &'a Runtime,
    components: &'a [(String, DetectorComponent)],
    store: &'a Store,
    stats: &'a AnalysisStats,
    hls_root: &'a Path,
    handle: &'a Handle,
    publisher: &'a bus::Publisher,
}

impl BatchQueue<'_> {
    fn run(&self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            let jobs = match self.handle.block_on(self.store.queued_batch_jobs(16)) {
                Ok(jobs) => jobs,
                Err(e) => {
                    warn!("cannot read the batch queue: {e}");
                    std::thread::sleep(BATCH_IDLE * 4);
                    continue;
                }
            };
            if jobs.is_empty() {
                std::thread::sleep(BATCH_IDLE);
                continue;
            }
            for job in jobs {
                if shutdown.is_cancelled() {
                    return; // the job stays queued for the next start
                }
                let outcome = match self.analyse_segment(&job, shutdown) {
                    Ok(None) => return, // stopped mid-segment: it stays queued
                    Ok(Some(frames)) => Ok(frames),
                    Err(e) => Err(e),
                };
                match &outcome {
                    Ok(frames) => {
                        self.stats.batch_done.fetch_add(1, Ordering::Relaxed);
                        info!(stream = %job.stream_id, segment = job.segment_seq, frames, "batch segment analysed");
                    }
                    Err(e) => {
                        self.stats.batch_failed.fetch_add(1, Ordering::Relaxed);
                        warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment failed: {e}");
                    }
                }
                if let Err(e) = self.handle.block_on(self.store.finish_batch_job(
                    &job,
                    outcome,
                    store::now_ms(),
                )) {
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot record the batch outcome: {e}");
                }
            }
        }
    }

    /// Frames analysed (`None`: shutdown interrupted it), or why the segment can't be analysed.
    fn analyse_segment(
        &self,
        job: &BatchJob,
        shutdown: &CancellationToken,
    ) -> Result<Option<u64>, String> {
        let stream = self
            .handle
            .block_on(self.store.stream_by_id(&job.stream_id))
            .map_err(|e| format!("store: {e}"))?
            .ok_or_else(|| "the stream no longer exists".to_string())?;
        let out = Output {
            store: self.store,
            publisher: self.publisher,
            handle: self.handle,
            stats: self.stats,
        };
        let file = hls::segment_file_name(job.segment_seq.max(0) as u64);
        let path = self.hls_root.join(&job.stream_id).join(&file);
        if !path.is_file() {
            return Err(format!(
                "{file} is no longer on disk (retention removed it before its turn)"
            ));
        }
        // Frame numbers from presentation time, so they agree with the live path's decode count
        // for constant-rate video (RTMP timestamps start at 0).
        let fps = stream
            .video
            .as_ref()
            .map(|v| v.fps)
            .filter(|f| *f > 0.0)
            .unwrap_or(30.0);
        let every = job.every.max(1) as u64;
        let location = path.to_string_lossy();
        let mut source = decode::FileSource::open(&location, 1).map_err(|e| e.to_string())?;
        let mut frames = Vec::new();
        let mut analysed = 0u64;
        while source
            .next_frames(&mut frames)
            .map_err(|e| format!("{file}: {e}"))?
        {
            for mut frame in frames.drain(..) {
                frame.pts_ms -= hls::ts::TS_OFFSET_MS;
                frame.seq = (frame.pts_ms.max(0) as f64 * fps / 1000.0).round() as u64;
                self.stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
                if frame.seq % every != 0 {
                    continue;
                }
                if shutdown.is_cancelled() {
                    return Ok(None);
                }
                let found = analyse_frame(
                    &job.stream_id,
                    &frame,
                    self.runtime,
                    self.components,
                    self.stats,
                );
                out.send(&job.stream_id, &stream.tenant_id, &frame, found);
                analysed += 1;
            }
        }
        Ok(Some(analysed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> decode::Frame {
        decode::Frame::new(seq, seq as i64 * 33, 1, 1, vec![0; 3])
    }

    /// Two analysers: the one with the later frame finishes first, yet its results wait until the
    /// earlier frame's have left; and a turn given up without sending (a failed analyser) still
    /// lets the next frame go.
    #[test]
    fn results_leave_in_frame_order_whoever_finishes_first() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let handle = runtime.handle().clone();
        let (slot, order) = (LatestFrame::new(), FrameOrder::default());
        let left = Mutex::new(Vec::new());
        slot.offer(frame(10));
        let (first, first_turn) = order.take(&slot, &handle).unwrap();
        slot.offer(frame(11));
        let (second, second_turn) = order.take(&slot, &handle).unwrap();
        slot.offer(frame(12));
        let (_, third_turn) = order.take(&slot, &handle).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                second_turn.wait();
                left.lock().unwrap().push(second.seq);
                drop(second_turn);
            });
            s.spawn(|| {
                third_turn.wait();
                left.lock().unwrap().push(12);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                left.lock().unwrap().is_empty(),
                "{:?} left before frame 10",
                left.lock().unwrap()
            );
            first_turn.wait();
            left.lock().unwrap().push(first.seq);
            drop(first_turn);
        });
        assert_eq!(*left.lock().unwrap(), [10, 11, 12]);
        slot.close();
        assert!(order.take(&slot, &handle).is_none());
    }

    #[test]
    fn stage_histograms_render_cumulative_prometheus_buckets() {
        let stats = AnalysisStats::default();
        for ms in [0, 3, 3, 40, 900] {
            stats.stage(Stage::Queue).observe_ms(ms);
        }
        stats.stage(Stage::Decode).observe_ms(-5);
        let text = stats.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let m = "media_analyzer_analysis_stage_seconds";
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.001\"}}")),
            "1"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.005\"}}")),
            "3"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.05\"}}")),
            "4"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.5\"}}")),
            "4"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"+Inf\"}}")),
            "5"
        );
        assert_eq!(line(&format!("{m}_count{{stage=\"queue\"}}")), "5");
        assert_eq!(line(&format!("{m}_sum{{stage=\"queue\"}}")), "0.946");
        // A clock step backwards counts as 0, not as a huge unsigned value.
        assert_eq!(line(&format!("{m}_sum{{stage=\"decode\"}}")), "0");
        assert_eq!(line(&format!("{m}_count{{stage=\"analysis\"}}")), "0");
    }
}
