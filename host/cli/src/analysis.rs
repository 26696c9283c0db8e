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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use decode::{DecodeEffort, LatestFrame, VideoDecoder};
use media::{HubEvent, Overflow, StreamHub, Subscription};
use runtime::{DetectorComponent, Runtime};
use store::{AnalysisMode, BatchJob, DetectionRecord, JobStart, Store};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::analyze::{Bundle, DEFAULT_COMPONENTS, bundled, load_bundle};

/// Slice threads per live decoder: a frame cut into slices (OBS's low-latency x264 settings) is
/// decoded on two cores at once, which halves a large keyframe's delay.
const DECODER_THREADS: usize = 2;
/// Packets queued between the hub and a stream's decoder before the oldest are dropped.
const DECODER_QUEUE: usize = 600;
/// Segments of one stream that may wait for batch analysis (30 min of 2 s segments); more are
/// refused and counted, so a stream analysis can't keep up with can't fill the disk's database.
pub const BATCH_QUEUE_LIMIT: i64 = 900;
/// How often a live decoder re-reads its stream's mode from the store: only a fallback, for a
/// mode signal lost with the bus ([`StreamModes`] carries changes at once).
const MODE_POLL: Duration = Duration::from_secs(30);
/// A decoded frame is converted for analysis when the one waiting is older than this (or the
/// slot is empty, or an analyser waits); other frames cost decoding only.
const FRAME_REFRESH_MS: i64 = 500;
/// How often a stream's decoder reconsiders its effort ([`DecodeEffort`]).
const EFFORT_WINDOW: Duration = Duration::from_secs(2);
/// How long an analyser waits for its turn on the models before looking again.
const TURN_WAIT: Duration = Duration::from_millis(500);
/// Niceness of analysis threads (analysers, model sessions, the batch worker): when the CPU is
/// short, the video path (RTMP, HLS) and the decoders get it first, and analysis skips frames.
pub const ANALYSIS_NICE: i32 = 19;
/// How long the batch worker sleeps when the queue is empty.
const BATCH_IDLE: Duration = Duration::from_millis(500);
/// Starts of one batch job without an outcome (each stopped by a panic, or by a crash of the
/// process) before it is marked failed: a poison segment never stops the worker for good.
pub const BATCH_ATTEMPTS: i64 = 3;
/// How long a claimed batch job is leased to its host; renewed every third of it while the job
/// runs. A host that crashed or hung loses its jobs to other hosts after this long (a restarted
/// host takes its own back at once).
pub const BATCH_LEASE: Duration = Duration::from_secs(30);
/// How long a job whose results could not all be stored waits before it runs again.
const BATCH_RETRY_DELAY: Duration = Duration::from_secs(10);

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
    /// Frames whose results are in the store (once each, also those without detections).
    pub frames_stored: AtomicU64,
    /// Store writes that failed and were tried again.
    pub store_retries: AtomicU64,
    /// Live decoders that switched between realtime and batch.
    pub mode_changes: AtomicU64,
    /// Frames whose results could not be stored after the retries: not published either (a
    /// viewer never sees results that `?since=` replay or the REST API would not have).
    pub frames_lost: AtomicU64,
    /// Batch jobs handed back to the queue (a shutdown, results that could not be stored, a
    /// lease that ran out and went to another worker).
    pub batch_released: AtomicU64,
    /// Time spent in model runs, microseconds.
    pub inference_us: AtomicU64,
    /// Closed segments queued for batch analysis, and refused because the stream's queue was full.
    pub batch_queued: AtomicU64,
    pub batch_refused: AtomicU64,
    /// Batch jobs finished, and failed (e.g. the segment was removed before its turn).
    pub batch_done: AtomicU64,
    pub batch_failed: AtomicU64,
    /// Panics caught in analysers and the batch worker (the frame or the attempt was lost; the
    /// thread went on).
    pub panics: AtomicU64,
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
                "frames_stored_total",
                "frames whose results were stored",
                c(&self.frames_stored),
            ),
            (
                "store_retries_total",
                "store writes of results that failed and were tried again",
                c(&self.store_retries),
            ),
            (
                "mode_changes_total",
                "live decoders that switched between realtime and batch analysis",
                c(&self.mode_changes),
            ),
            (
                "frames_lost_total",
                "frames whose results could not be stored after retries (not published either)",
                c(&self.frames_lost),
            ),
            (
                "batch_jobs_released_total",
                "batch jobs handed back to the queue unfinished (shutdown, store failure, lease lost)",
                c(&self.batch_released),
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
            (
                "panics_total",
                "panics caught in analysers and the batch worker",
                c(&self.panics),
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

/// A live stream's publish session number and the sender its decoder follows.
type ModeSender = (u64, tokio::sync::watch::Sender<AnalysisMode>);

/// The analysis mode of each stream live on this host, as signals to its decoder: a change
/// (`PUT …/mode`, carried to this host by a bus control signal) reaches the decoder at its next
/// packet instead of at its next read of the store.
#[derive(Clone, Default)]
pub struct StreamModes {
    /// Per stream: its publish session's number and the sender its decoder follows.
    senders: Arc<Mutex<std::collections::HashMap<String, ModeSender>>>,
    sessions: Arc<AtomicU64>,
}

impl StreamModes {
    /// Signals the stream's new mode to its decoder, when the stream is live on this host.
    pub fn set(&self, stream: &str, mode: AnalysisMode) {
        if let Some((_, sender)) = lock(&self.senders).get(stream) {
            sender.send_replace(mode);
        }
    }

    /// A new publish session of `stream`: its decoder's receiver (starting in realtime, until
    /// the decoder has read the store) and the session number to [`Self::forget`] it with.
    fn follow(&self, stream: &str) -> (u64, tokio::sync::watch::Receiver<AnalysisMode>) {
        let (sender, receiver) = tokio::sync::watch::channel(AnalysisMode::Realtime);
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        lock(&self.senders).insert(stream.to_string(), (session, sender));
        (session, receiver)
    }

    /// The session ended (a newer session of the same stream keeps its own sender).
    fn forget(&self, stream: &str, session: u64) {
        let mut senders = lock(&self.senders);
        if senders.get(stream).is_some_and(|(s, _)| *s == session) {
            senders.remove(stream);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Turns on the model sessions, round-robin over streams.
    fair: Arc<inference::FairShare>,
    /// This host's id: the batch jobs it claims are leased to it.
    host: String,
    /// Mode changes, signalled to the decoders of the streams live here.
    modes: StreamModes,
}

impl LiveAnalysis {
    /// Where mode changes for this host's live streams are signalled.
    pub fn modes(&self) -> StreamModes {
        self.modes.clone()
    }

    /// Loads the bundled components and their models; `Ok(None)` (with a warning) when the models
    /// or components are not installed, so `serve` still ingests and packages video.
    pub fn load(
        components_dir: &Path,
        models: crate::analyze::ModelSettings,
        hls_root: PathBuf,
        store: Store,
        stats: Arc<AnalysisStats>,
        publisher: bus::Publisher,
        host: String,
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
                    // Two turns per session: while one frame runs a model, another is being
                    // prepared or post-processed, so the sessions never idle between frames.
                    fair: Arc::new(inference::FairShare::new(2 * models.sessions.max(1))),
                    host,
                    modes: StreamModes::default(),
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
                let host = self.host.clone();
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
                        host: &host,
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
        // Frame numbers start again in each publish session: its start tells the sessions apart
        // in the store.
        let session = store::now_ms();
        let mut threads = vec![
            std::thread::Builder::new()
                .name(format!("decode-{stream}"))
                .spawn({
                    let (slot, handle, stream, stats, store, modes) = (
                        slot.clone(),
                        handle.clone(),
                        stream.clone(),
                        self.stats.clone(),
                        self.store.clone(),
                        self.modes.clone(),
                    );
                    let (mode_session, mode) = modes.follow(&stream);
                    move || {
                        let source = DecoderInput { subscription, mode };
                        decode_stream(&stream, source, &slot, &handle, &stats, &store);
                        modes.forget(&stream, mode_session);
                    }
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
                        let (stream, slot, order, handle, fair) = (
                            stream.clone(),
                            slot.clone(),
                            order.clone(),
                            handle.clone(),
                            self.fair.clone(),
                        );
                        move || {
                            inference::set_thread_nice(ANALYSIS_NICE);
                            let out = Output {
                                store: &store,
                                publisher: &publisher,
                                handle: &handle,
                                stats: &stats,
                                session,
                            };
                            analyse_stream(
                                &stream,
                                &slot,
                                &order,
                                &fair,
                                &runtime,
                                &components,
                                &out,
                            )
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

/// What a live decoder follows: the stream's packets and its analysis mode.
struct DecoderInput {
    subscription: Subscription,
    mode: tokio::sync::watch::Receiver<AnalysisMode>,
}

fn decode_stream(
    stream: &str,
    input: DecoderInput,
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
    let DecoderInput {
        mut subscription,
        mode: mut mode_signal,
    } = input;
    let mut realtime = true;
    let mut mode_checked: Option<Instant> = None;
    let mut effort = EffortControl::new(slot);
    let mut passed = 0u64;
    // What reached the decoder (for the end-of-stream line: a stream with no decoded frames says
    // whether it got no video, no sequence header or no keyframe).
    let (mut video_packets, mut configs, mut keyframes) = (0u64, 0u64, 0u64);
    while let Some(packet) = handle.block_on(subscription.recv()) {
        if packet.kind == media::MediaKind::Video {
            video_packets += 1;
            configs += packet.is_config as u64;
            keyframes += packet.keyframe as u64;
        }
        // The mode: read from the store when the stream starts (and, as a fallback, now and
        // then); changes arrive as signals at once.
        let mut mode = None;
        if mode_checked.is_none_or(|t| t.elapsed() >= MODE_POLL) {
            mode_checked = Some(Instant::now());
            match handle.block_on(store.analysis(stream)) {
                Ok(Some(settings)) => mode = Some(settings.mode),
                Ok(None) => {}
                Err(e) => {
                    warn!(%stream, "cannot read the analysis mode, keeping {}: {e}", if realtime { "realtime" } else { "batch" })
                }
            }
        }
        if mode_signal.has_changed().unwrap_or(false) {
            mode = Some(*mode_signal.borrow_and_update());
        }
        if let Some(mode) = mode {
            let now_realtime = mode == AnalysisMode::Realtime;
            if now_realtime != realtime {
                info!(%stream, mode = mode.as_str(), "analysis mode changed");
                stats.mode_changes.fetch_add(1, Ordering::Relaxed);
                // Back to live decoding: start again at the next keyframe.
                decoder.resync();
            }
            realtime = now_realtime;
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
        effort.adjust(stream, &mut decoder, slot);
        decoder.set_wanted(slot.wants_frame(pushed_at, FRAME_REFRESH_MS));
        if let Err(e) = decoder.push(&packet, &mut frames) {
            warn!(%stream, "skipping undecodable video: {e}");
            decoder.resync();
        }
        for _ in passed..decoder.passed {
            stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            slot.pass();
        }
        passed = decoder.passed;
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
    info!(%stream, decoded = sampled.offered, analysed = sampled.taken, skipped = sampled.skipped, packets_lost = lost, video_packets, configs, keyframes, realtime, "stream analysis ended");
}

/// Decides how much of a stream to decode from what its analysers take, one step at a time:
/// a step lighter (Full → [`DecodeEffort::Light`]: no deblocking, no non-reference frames →
/// [`DecodeEffort::Anchors`]: I and P frames only) when they take less than a quarter of what is
/// decoded, a step back when they take more than half. Keyframes-only is not chosen
/// automatically: on 2 cores it starved streams that could have had more (docs/benchmarks.md,
/// "Fair share of analysis").
struct EffortControl {
    since: Instant,
    decoded: u64,
    taken: u64,
}

impl EffortControl {
    fn new(slot: &LatestFrame) -> Self {
        let s = slot.stats();
        Self {
            since: Instant::now(),
            decoded: s.offered,
            taken: s.taken,
        }
    }

    fn adjust(&mut self, stream: &str, decoder: &mut VideoDecoder, slot: &LatestFrame) {
        if self.since.elapsed() < EFFORT_WINDOW {
            return;
        }
        let s = slot.stats();
        let (decoded, taken) = (s.offered - self.decoded, s.taken - self.taken);
        *self = Self::new(slot);
        let now = decoder.effort();
        let next = match now {
            DecodeEffort::Full if taken * 4 < decoded => DecodeEffort::Light,
            DecodeEffort::Light if taken * 4 < decoded => DecodeEffort::Anchors,
            DecodeEffort::Light if taken * 2 > decoded => DecodeEffort::Full,
            DecodeEffort::Anchors | DecodeEffort::KeyframesOnly if taken * 2 > decoded => {
                DecodeEffort::Light
            }
            same => same,
        };
        if next != now {
            debug!(%stream, from = ?now, to = ?next, taken, decoded, "decode effort changed");
            decoder.set_effort(next);
        }
    }
}

/// Where a frame's results go: the store, then the bus.
struct Output<'a> {
    store: &'a Store,
    publisher: &'a bus::Publisher,
    handle: &'a Handle,
    stats: &'a AnalysisStats,
    /// When the frames' publish session began (Unix ms): with the frame number, it names a
    /// frame in the store.
    session: i64,
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
    /// Takes the newest frame, if one waits, and the next turn with it.
    fn try_take(&self, slot: &LatestFrame) -> Option<(decode::Frame, Turn<'_>)> {
        let mut taking = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        let frame = slot.try_take()?;
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
    fair: &inference::FairShare,
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
    // Wait for a frame, then for this stream's turn on the models (round-robin over streams),
    // then take the newest frame: what is analysed is as fresh as it can be when the turn comes.
    while out.handle.block_on(slot.ready()) {
        let Some(share) = fair.turn(stream, TURN_WAIT) else {
            continue;
        };
        let Some((frame, turn)) = order.try_take(slot) else {
            continue; // this stream's other analyser took it
        };
        // A panic loses this frame, not the analyser; the turn still passes on when dropped.
        let sent = guarded(out.stats, stream, || {
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
            drop(share); // the models are free for the next stream while results go out
            turn.wait();
            out.send(stream, &tenant, &frame, analysed);
            done
        });
        drop(turn);
        if let Some(done) = sent {
            out.stats
                .stage(Stage::Output)
                .observe_ms(store::now_ms() - done);
        }
    }
    fair.forget(stream);
}

/// Runs `work`, catching a panic in it: counted in `stats.panics` and logged, `None` returned.
fn guarded<T>(stats: &AnalysisStats, stream: &str, work: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => Some(value),
        Err(panic) => {
            stats.panics.fetch_add(1, Ordering::Relaxed);
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!(%stream, "analysis panicked (caught, going on): {message}");
            None
        }
    }
}

/// What the components found in one frame.
struct Analysed {
    records: Vec<DetectionRecord>,
    /// The components that analysed it (not those whose call failed).
    ran: Vec<String>,
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
    let mut ran = Vec::new();
    let mut inference = Duration::ZERO;
    for (name, component) in components {
        match runtime.detect(component, host_frame.clone(), &[]) {
            Ok(outcome) => {
                inference += outcome.inference;
                ran.push(name.clone());
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
        ran,
        wallclock,
        inference,
        timing: None,
    }
}

impl Output<'_> {
    /// Stores a frame's results, then publishes them (also when there are none, so overlays
    /// clear). A failed write is tried again ([`store::RetryPolicy::default`]: 5 attempts over
    /// about 1.5 s); results that still could not be stored are counted as lost and not
    /// published, so what viewers see live is what the store has. Returns whether they were
    /// stored.
    fn send(&self, stream: &str, tenant: &str, frame: &decode::Frame, analysed: Analysed) -> bool {
        let mut results = store::FrameResults {
            stream_id: stream.to_string(),
            session: self.session,
            seq: frame.seq as i64,
            pts_ms: frame.pts_ms,
            wallclock: analysed.wallclock,
            components: analysed.ran,
            detections: analysed.records,
        };
        // Each attempt writes a fresh copy (the store fills in ids), at most once per (session,
        // frame, component): an attempt after a commit whose reply was lost adds nothing.
        let write = store::RetryPolicy::default().run(
            || {
                let (store, mut attempt) = (self.store.clone(), results.clone());
                async move {
                    let stored = store.store_frame_results(&mut attempt).await?;
                    Ok((stored, attempt.detections))
                }
            },
            |attempt, e| {
                self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, frame = frame.seq, attempt, "storing the frame's results failed, trying again: {e}");
            },
        );
        match self.handle.block_on(write) {
            Ok((stored, detections)) => {
                results.detections = detections;
                self.stats
                    .detections_stored
                    .fetch_add(stored.detections, Ordering::Relaxed);
                self.stats.frames_stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.frames_lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%stream, frame = frame.seq, "could not store the frame's {} detections: lost, and not published: {e}", results.detections.len());
                return false;
            }
        }
        let records = &results.detections;
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
        true
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
    /// This host: claimed jobs are leased to it.
    host: &'a str,
}

/// How a batch job's run ended, short of a failure of the job itself.
enum SegmentRun {
    /// Analysed: this many frames, all of their results stored.
    Done(u64),
    /// Shutdown interrupted it.
    Stopped,
    /// The lease ran out (this worker was stalled) and another worker claimed the job.
    LeaseLost,
    /// The store failed (a frame's results, or what the job needs to start): hand it back and
    /// run it again later.
    Retry(String),
}

impl BatchQueue<'_> {
    fn run(&self, shutdown: &CancellationToken) {
        let lease_ms = BATCH_LEASE.as_millis() as i64;
        while !shutdown.is_cancelled() {
            let claim =
                self.store
                    .claim_batch_job(self.host, lease_ms, BATCH_ATTEMPTS, store::now_ms());
            let (job, start) = match self.handle.block_on(claim) {
                Ok(Some(claimed)) => claimed,
                Ok(None) => {
                    std::thread::sleep(BATCH_IDLE);
                    continue;
                }
                Err(e) => {
                    warn!("cannot claim a batch job: {e}");
                    std::thread::sleep(BATCH_IDLE * 4);
                    continue;
                }
            };
            match start {
                JobStart::Run { .. } => {}
                JobStart::GaveUp => {
                    self.stats.batch_failed.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment given up after {BATCH_ATTEMPTS} attempts");
                    continue;
                }
                JobStart::NotQueued => continue,
            }
            // A panic hands the job back: it is tried again, up to BATCH_ATTEMPTS times.
            let Some(run) = guarded(self.stats, &job.stream_id, || {
                self.analyse_segment(&job, shutdown)
            }) else {
                self.release(&job, false, 0);
                continue;
            };
            let outcome = match run {
                Ok(SegmentRun::Done(frames)) => Ok(frames),
                Ok(SegmentRun::Stopped) => {
                    // Shutdown: the next start (or another host) runs it; the attempt is not
                    // counted against the job.
                    self.release(&job, true, 0);
                    return;
                }
                Ok(SegmentRun::LeaseLost) => {
                    self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "the batch job's lease ran out and another worker took it over; leaving it to that one");
                    continue;
                }
                Ok(SegmentRun::Retry(why)) => {
                    // Results already stored stay (they are stored once per frame): the next
                    // run fills in what is missing.
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment to be tried again in {} s: {why}", BATCH_RETRY_DELAY.as_secs());
                    let at = store::now_ms() + BATCH_RETRY_DELAY.as_millis() as i64;
                    self.release(&job, false, at);
                    continue;
                }
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
            let finish = store::RetryPolicy::default().run(
                || {
                    self.store
                        .finish_batch_job(&job, outcome.clone(), store::now_ms())
                },
                |_, _| {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                },
            );
            if let Err(e) = self.handle.block_on(finish) {
                // The lease runs out and the job runs again; its results are not duplicated.
                warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot record the batch outcome: {e}");
            }
        }
    }

    /// Hands a job back to the queue (see [`Store::release_batch_job`]).
    fn release(&self, job: &BatchJob, refund: bool, retry_at: i64) {
        self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
        let release = store::RetryPolicy::default().run(
            || {
                self.store
                    .release_batch_job(job, self.host, refund, retry_at)
            },
            |_, _| {},
        );
        if let Err(e) = self.handle.block_on(release) {
            warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot hand the batch job back (it is claimable again when its lease runs out): {e}");
        }
    }

    /// Analyses a claimed segment, renewing its lease as it goes; `Err`: why the segment can't
    /// be analysed.
    fn analyse_segment(
        &self,
        job: &BatchJob,
        shutdown: &CancellationToken,
    ) -> Result<SegmentRun, String> {
        let lookup = store::RetryPolicy::default().run(
            || async {
                let stream = self.store.stream_by_id(&job.stream_id).await?;
                let session = self
                    .store
                    .segment_session(&job.stream_id, job.segment_seq)
                    .await?;
                Ok((stream, session))
            },
            |_, _| {
                self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
            },
        );
        let (stream, session) = match self.handle.block_on(lookup) {
            Ok((Some(stream), session)) => (stream, session),
            Ok((None, _)) => return Err("the stream no longer exists".to_string()),
            Err(e) => return Ok(SegmentRun::Retry(format!("store: {e}"))),
        };
        let out = Output {
            store: self.store,
            publisher: self.publisher,
            handle: self.handle,
            stats: self.stats,
            session,
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
        let (mut analysed, mut lost) = (0u64, 0u64);
        let mut renewed = Instant::now();
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
                    return Ok(SegmentRun::Stopped);
                }
                if renewed.elapsed() >= BATCH_LEASE / 3 {
                    let until = store::now_ms() + BATCH_LEASE.as_millis() as i64;
                    match self
                        .handle
                        .block_on(self.store.renew_batch_lease(job, self.host, until))
                    {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => return Ok(SegmentRun::LeaseLost),
                        // Two thirds of the lease are left: the next frame tries again.
                        Err(e) => {
                            warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot renew the batch lease: {e}")
                        }
                    }
                }
                let found = analyse_frame(
                    &job.stream_id,
                    &frame,
                    self.runtime,
                    self.components,
                    self.stats,
                );
                if !out.send(&job.stream_id, &stream.tenant_id, &frame, found) {
                    lost += 1;
                }
                analysed += 1;
            }
        }
        if lost > 0 {
            return Ok(SegmentRun::Retry(format!(
                "the results of {lost} of {analysed} frames could not be stored"
            )));
        }
        Ok(SegmentRun::Done(analysed))
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
        let (slot, order) = (LatestFrame::new(), FrameOrder::default());
        let left = Mutex::new(Vec::new());
        slot.offer(frame(10));
        let (first, first_turn) = order.try_take(&slot).unwrap();
        slot.offer(frame(11));
        let (second, second_turn) = order.try_take(&slot).unwrap();
        slot.offer(frame(12));
        let (_, third_turn) = order.try_take(&slot).unwrap();
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
        assert!(order.try_take(&slot).is_none());
    }

    #[test]
    fn a_panic_in_guarded_work_is_caught_and_counted() {
        let stats = AnalysisStats::default();
        assert_eq!(guarded(&stats, "str_a", || 7), Some(7));
        let caught: Option<()> = guarded(&stats, "str_a", || panic!("poison frame"));
        assert_eq!(caught, None);
        assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
        assert!(
            stats
                .render()
                .contains("media_analyzer_analysis_panics_total 1")
        );
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
