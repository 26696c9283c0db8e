//! Live analysis: every stream that starts in the hub is decoded on its own thread (subscribed
//! with `DropOldest`, so the video path never waits); analysers — as many per stream as the
//! models have sessions — each take the newest decoded frame when they are free, and the results
//! leave in frame order. In batch mode the live decoder idles ([`crate::batch`] analyses the
//! closed segments instead); a mode change arrives as a signal ([`StreamModes`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use decode::{DecodeEffort, LatestFrame, VideoDecoder};
use media::{HubEvent, Overflow, StreamHub, Subscription};
use runtime::{ActiveDetector, Runtime, World};
use store::{AnalysisMode, ComponentFiles, Store};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::activity::ComponentActivity;
use crate::batch::{BatchQueue, BatchWake};
use crate::bundle::{
    Bundle, DEFAULT_COMPONENTS, ModelSettings, PICKABLE_COMPONENTS, bundled, load_bundle,
    load_bundled_selectors, load_bundled_triggers,
};
use crate::output::Output;
use crate::pipelines::StreamPipelines;
use crate::{ANALYSIS_NICE, AnalysisStats, Stage, analyse_frame, guarded, lock};

/// Slice threads per live decoder: a frame cut into slices (OBS's low-latency x264 settings) is
/// decoded on two cores at once, which halves a large keyframe's delay.
const DECODER_THREADS: usize = 2;
/// Packets queued between the hub and a stream's decoder before the oldest are dropped.
const DECODER_QUEUE: usize = 600;
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
    /// Hands the bus's mode signals (sent by any API host) to this host's live decoders, until
    /// the subscription ends.
    pub async fn follow_signals(self, mut deliveries: tokio::sync::mpsc::Receiver<bus::Delivery>) {
        while let Some(delivery) = deliveries.recv().await {
            let bus::Delivery::Message(envelope) = delivery else {
                continue;
            };
            if let bus::Event::Control(bus::Control::Mode { stream, mode, .. }) = &envelope.event {
                match mode.parse::<AnalysisMode>() {
                    Ok(mode) => self.set(stream, mode),
                    Err(e) => warn!(%stream, "ignoring a mode signal: {e}"),
                }
            }
        }
    }

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

/// The detector components and models for live streams.
pub struct LiveAnalysis {
    runtime: Arc<Runtime>,
    /// Per live stream, the detectors to run: what its tenant chose, the bundled ones by default.
    pipelines: Arc<StreamPipelines>,
    /// What the components did, for their tenants' view ([`ComponentActivity::run`] stores it).
    activity: Arc<ComponentActivity>,
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
    /// Wakes the batch worker when a segment is queued.
    batch_wake: BatchWake,
    /// The engine's work queue, when the bus has one: batch jobs come from it.
    jobs: Option<crate::SharedQueue>,
    /// Where the analysed frames' effects go to be rendered (the effects rendition), if on.
    renditions: Option<rendition::Renditions>,
}

impl LiveAnalysis {
    /// Where mode changes for this host's live streams are signalled.
    pub fn modes(&self) -> StreamModes {
        self.modes.clone()
    }

    /// The sandbox the live streams' components run in (uploads are checked in it too, so an
    /// activated upload is compiled already).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.clone()
    }

    /// The pipelines of the streams live here (pipeline signals go to it).
    pub fn pipelines(&self) -> Arc<StreamPipelines> {
        self.pipelines.clone()
    }

    /// What the components did on this host's streams (to be stored by [`ComponentActivity::run`]).
    pub fn activity(&self) -> Arc<ComponentActivity> {
        self.activity.clone()
    }

    /// Takes batch jobs from the work queue engine instead of claiming them from the store.
    pub fn take_jobs_from(&mut self, jobs: crate::SharedQueue) {
        self.jobs = Some(jobs);
    }

    /// Hands each analysed frame's effects to `renditions`: a stream whose pipeline has an
    /// effects stage gets an effects rendition.
    pub fn render_effects(&mut self, renditions: rendition::Renditions) {
        self.renditions = Some(renditions);
    }

    /// What wakes the batch worker ([`crate::queue_for_batch`] takes it).
    pub fn batch_wake(&self) -> BatchWake {
        self.batch_wake.clone()
    }

    /// Loads the bundled components and their models; `Ok(None)` (with a warning) when the models
    /// or components are not installed, so `serve` still ingests and packages video. Tenants'
    /// uploaded components are read from `files` when a pipeline names them, and their models
    /// from `model_files`.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        components_dir: &Path,
        files: ComponentFiles,
        model_files: ComponentFiles,
        logo_files: ComponentFiles,
        models: ModelSettings,
        hls_root: PathBuf,
        store: Store,
        stats: Arc<AnalysisStats>,
        publisher: bus::Publisher,
        host: String,
    ) -> Option<Self> {
        let loaded = bundled(&PICKABLE_COMPONENTS)
            .and_then(|wanted| {
                load_bundle(
                    &wanted,
                    components_dir,
                    models,
                    runtime::ModelRegistry::new(),
                )
            })
            .and_then(|bundle| {
                let triggers = load_bundled_triggers(&bundle.runtime, components_dir)?;
                let selectors = load_bundled_selectors(&bundle.runtime, components_dir)?;
                Ok((bundle, (triggers, selectors)))
            });
        match loaded {
            Ok((
                Bundle {
                    runtime,
                    components,
                },
                (triggers, selectors),
            )) => {
                info!(
                    components = components.len(),
                    analysers_per_stream = models.sessions,
                    "live analysis ready"
                );
                let runtime = Arc::new(runtime);
                Some(Self {
                    pipelines: Arc::new(StreamPipelines::new(
                        runtime.clone(),
                        components,
                        &DEFAULT_COMPONENTS,
                        crate::pipelines::BundledStages {
                            triggers,
                            selectors,
                        },
                        store.clone(),
                        files,
                        crate::TenantModels::new(
                            model_files,
                            logo_files,
                            inference::SessionOptions {
                                accelerator: models.accelerator,
                                nice: models.nice,
                                queue: 16,
                                ..Default::default()
                            },
                        ),
                    )),
                    runtime,
                    activity: Arc::default(),
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
                    batch_wake: BatchWake::default(),
                    jobs: None,
                    renditions: None,
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
                let (runtime, pipelines, store, stats, root, handle, stop, publisher) = (
                    self.runtime.clone(),
                    self.pipelines.clone(),
                    self.store.clone(),
                    self.stats.clone(),
                    self.hls_root.clone(),
                    Handle::current(),
                    shutdown.clone(),
                    self.publisher.clone(),
                );
                let (host, wake, activity, jobs) = (
                    self.host.clone(),
                    self.batch_wake.clone(),
                    self.activity.clone(),
                    self.jobs.clone(),
                );
                move || {
                    inference::set_thread_nice(ANALYSIS_NICE);
                    let queue = BatchQueue {
                        runtime: &runtime,
                        pipelines: &pipelines,
                        activity: &activity,
                        store: &store,
                        stats: &stats,
                        hls_root: &root,
                        handle: &handle,
                        publisher: &publisher,
                        wake: &wake,
                        host: &host,
                        jobs: jobs.as_ref(),
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
                _ = shutdown.cancelled() => {
                    self.batch_wake.wake(); // the batch worker sees the shutdown at once
                    break;
                }
                event = events.recv() => match event {
                    Ok(HubEvent::Started { stream, owner }) => {
                        if let Some(subscription) = hub.subscribe(&stream, Overflow::DropOldest, DECODER_QUEUE) {
                            workers.retain(|w| !w.is_finished());
                            workers.extend(self.start(stream, owner, subscription));
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

    /// Starts a stream's decoder and analysers; `tenant` owns the stream (from its publish grant).
    fn start(
        &self,
        stream: String,
        tenant: String,
        subscription: Subscription,
    ) -> Vec<JoinHandle<()>> {
        let slot = Arc::new(LatestFrame::new());
        let order = Arc::new(FrameOrder::default());
        let scene = Arc::new(crate::scene::SceneTracker::default());
        // Shared by the stream's analysers (they hand frames over in frame order).
        let rendition = self
            .renditions
            .as_ref()
            .map(|r| Arc::new(Mutex::new(r.stream(&stream))));
        let handle = Handle::current();
        // Frame numbers start again in each publish session: its start tells the sessions apart
        // in the store.
        let session = store::now_ms();
        // Held by the decoder and the analysers: the stream's pipeline is followed until the
        // last of them ends.
        let pipeline = Arc::new(self.pipelines.start(&tenant, &stream));
        let mut threads = vec![
            std::thread::Builder::new()
                .name(format!("decode-{stream}"))
                .spawn({
                    let (slot, handle, stream, stats, store, modes, pipeline) = (
                        slot.clone(),
                        handle.clone(),
                        stream.clone(),
                        self.stats.clone(),
                        self.store.clone(),
                        self.modes.clone(),
                        pipeline.clone(),
                    );
                    let (mode_session, mode) = modes.follow(&stream);
                    move || {
                        // Before the first frame: what the tenant chose runs from frame 0.
                        pipeline.load(&handle);
                        drop(pipeline);
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
                        let (runtime, pipelines, session_hold, store, stats, publisher) = (
                            self.runtime.clone(),
                            self.pipelines.clone(),
                            pipeline.clone(),
                            self.store.clone(),
                            self.stats.clone(),
                            self.publisher.clone(),
                        );
                        let (stream, tenant, slot, order, handle, fair) = (
                            stream.clone(),
                            tenant.clone(),
                            slot.clone(),
                            order.clone(),
                            handle.clone(),
                            self.fair.clone(),
                        );
                        let (activity, scene, rendition) =
                            (self.activity.clone(), scene.clone(), rendition.clone());
                        move || {
                            inference::set_thread_nice(ANALYSIS_NICE);
                            let out = Output {
                                runtime: &runtime,
                                store: &store,
                                publisher: &publisher,
                                handle: &handle,
                                stats: &stats,
                                activity: &activity,
                                tenant: &tenant,
                                session,
                                scene: Some(&scene),
                                rendition: rendition.as_deref(),
                            };
                            analyse_stream(
                                &stream, &slot, &order, &fair, &runtime, &pipelines, &out,
                            );
                            drop(session_hold);
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

/// Hands out turns so that a stream's results leave in the order its frames were taken, whichever
/// analyser finishes first: the viewers' `?since=` resume and the overlay rely on frame order.
/// The pipeline a frame runs is chosen with its turn, so pipelines change in frame order too.
#[derive(Default)]
struct FrameOrder {
    /// The next turn to hand out, and the changes of the pipeline the last frame taken runs
    /// (`None` before the first frame); held while taking a frame, so turns follow frame order.
    taking: Mutex<(u64, Option<Changes>)>,
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

/// The stored changes a frame's pipeline comes from, per world (detector, trigger, effects);
/// `None`: that world runs what is bundled.
type Changes = [Option<String>; 3];

/// A frame taken for analysis: its turn, the pipeline it runs to the end, and, when that
/// pipeline differs from the previous frame's, the change to report (the detectors' where they
/// changed, else the triggers'; `None` for a return to the bundled ones).
struct Taken<'a, P> {
    frame: decode::Frame,
    turn: Turn<'a>,
    pipeline: Arc<P>,
    applied: Option<Option<String>>,
}

impl FrameOrder {
    /// Takes the newest frame, if one waits, with the next turn and the stream's `pipeline` now.
    fn try_take<P>(
        &self,
        slot: &LatestFrame,
        pipeline: impl FnOnce() -> (Arc<P>, Changes),
    ) -> Option<Taken<'_, P>> {
        let mut taking = self.taking.lock().unwrap_or_else(|e| e.into_inner());
        let frame = slot.try_take()?;
        let (pipeline, changes) = pipeline();
        let number = taking.0;
        taking.0 += 1;
        let applied = match &taking.1 {
            None => changes.iter().find(|c| c.is_some()).cloned(),
            Some(previous) => previous
                .iter()
                .zip(&changes)
                .find(|(before, now)| before != now)
                .map(|(_, now)| now.clone()),
        };
        taking.1 = Some(changes);
        Some(Taken {
            frame,
            turn: Turn {
                order: self,
                number,
            },
            pipeline,
            applied,
        })
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
    pipelines: &StreamPipelines,
    out: &Output,
) {
    // Wait for a frame, then for this stream's turn on the models (round-robin over streams),
    // then take the newest frame: what is analysed is as fresh as it can be when the turn comes.
    while out.handle.block_on(slot.ready()) {
        let Some(share) = fair.turn(stream, TURN_WAIT) else {
            continue;
        };
        // One pipeline per frame, chosen in frame order: a swap applies from the next frame.
        let Some(Taken {
            frame,
            turn,
            pipeline,
            applied,
        }) = order.try_take(slot, || {
            let p = pipelines.for_frame(stream);
            let changes = [
                p.detectors.change.clone(),
                p.triggers.change.clone(),
                p.selectors.change.clone(),
            ];
            (Arc::new(p), changes)
        })
        else {
            continue; // this stream's other analyser took it
        };
        // A panic loses this frame, not the analyser; the turn still passes on when dropped.
        let sent = guarded(out.stats, stream, || {
            let taken = store::now_ms();
            out.stats
                .stage(Stage::Queue)
                .observe_ms(taken - frame.decoded_ms);
            let detectors: &[ActiveDetector] = pipeline.detectors.stage(World::Detector);
            let mut analysed = analyse_frame(stream, &frame, runtime, detectors, out.stats);
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
            if let Some(change) = applied {
                out.pipeline_applied(stream, &frame, change, &pipeline.detectors);
            }
            let triggers = pipeline.triggers.stage(World::Trigger);
            let selectors = pipeline.selectors.stage(World::Effects);
            let off = &pipeline.effects_off;
            out.send(stream, &frame, &analysed, triggers, selectors, off);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> decode::Frame {
        decode::Frame::new(seq, seq as i64 * 33, 1, 1, vec![0; 3])
    }

    fn take<'a>(
        order: &'a FrameOrder,
        slot: &LatestFrame,
        change: Option<&str>,
    ) -> Option<(decode::Frame, Turn<'a>, bool)> {
        let change = change.map(str::to_string);
        order
            .try_take(slot, || (Arc::new(()), [change, None, None]))
            .map(|t| (t.frame, t.turn, t.applied.is_some()))
    }

    /// Two analysers: the one with the later frame finishes first, yet its results wait until the
    /// earlier frame's have left; and a turn given up without sending (a failed analyser) still
    /// lets the next frame go.
    #[test]
    fn results_leave_in_frame_order_whoever_finishes_first() {
        let (slot, order) = (LatestFrame::new(), FrameOrder::default());
        let left = Mutex::new(Vec::new());
        slot.offer(frame(10));
        let (first, first_turn, _) = take(&order, &slot, None).unwrap();
        slot.offer(frame(11));
        let (second, second_turn, _) = take(&order, &slot, None).unwrap();
        slot.offer(frame(12));
        let (_, third_turn, _) = take(&order, &slot, None).unwrap();
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
        assert!(take(&order, &slot, None).is_none());
    }

    /// A frame is marked as the first of a new pipeline exactly when its pipeline's change differs
    /// from the frame before it (the first frame: when it runs a stored pipeline at all).
    #[test]
    fn the_first_frame_of_each_pipeline_is_marked_once() {
        let (slot, order) = (LatestFrame::new(), FrameOrder::default());
        let changes = [
            None,
            None,
            Some("chg_a"),
            Some("chg_a"),
            Some("chg_b"),
            None,
            None,
        ];
        let mut marked = Vec::new();
        for (seq, change) in changes.iter().enumerate() {
            slot.offer(frame(seq as u64));
            let (frame, turn, swapped) = take(&order, &slot, *change).unwrap();
            if swapped {
                marked.push(frame.seq);
            }
            drop(turn);
        }
        assert_eq!(marked, [2, 4, 5]);
        let (slot, order) = (LatestFrame::new(), FrameOrder::default());
        slot.offer(frame(0));
        assert!(take(&order, &slot, Some("chg_a")).unwrap().2);
    }
}
