//! `serve`: RTMP ingest → stream hub → HLS packager, the bookkeeping that records streams and
//! segments in the store, and the HTTP API — started together, stopped in order.
//!
//! Shutdown order: stop accepting RTMP and close publishers (each stream's playlist gets its
//! last segment and `EXT-X-ENDLIST`), let the packager finish, drain bookkeeping into the store,
//! stop HTTP, close the store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use media::{HubEvent, StreamHub};
use rand::RngCore;
use rtmp::{AuthorizePublish, PublishGrant, ServerStats};
use store::{AudioRecord, SegmentRecord, Store, VideoRecord};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::services::{Services, until_closed, until_stopped};

/// Credentials created on the very first start (tenant `demo`); printed once.
#[derive(Debug, Clone)]
pub struct FirstStart {
    pub api_key: String,
    pub stream_key: String,
    pub stream_id: String,
}

/// A running server. Drop does not stop it: call [`Running::stop`].
pub struct Running {
    /// Where RTMP is accepted (`None` on an API-only host).
    pub rtmp_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    pub first_start: Option<FirstStart>,
    pub store: Store,
    pub hub: StreamHub,
    /// The event bus this host publishes to (and, on an API host, reads viewers' events from).
    pub bus: bus::Bus,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The public RTMP URL prefix for OBS's "Server" field.
    pub fn rtmp_url(&self, app: &str) -> String {
        match self.rtmp_addr {
            Some(addr) => format!("rtmp://{}/{app}", display_addr(addr)),
            None => format!("(no RTMP on this host: role api)/{app}"),
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", display_addr(self.http_addr))
    }

    /// A token that stops the server when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stops on its own (a task failed) or is shut down.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// 0.0.0.0 is where we listen, not where anyone connects: show loopback instead.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

struct StoreAuthorizer {
    store: Store,
}

impl StoreAuthorizer {
    fn new(store: &Store) -> Arc<Self> {
        Arc::new(Self {
            store: store.clone(),
        })
    }
}

impl AuthorizePublish for StoreAuthorizer {
    fn authorize_publish<'a>(
        &'a self,
        _app: &'a str,
        stream_key: &'a str,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<PublishGrant, String>> + Send + 'a>> {
        Box::pin(async move {
            // Never log a whole key: its first characters are enough to tell keys apart.
            let shown: String = stream_key.chars().take(8).collect();
            match self.store.stream_for_key(stream_key).await {
                Ok(Some(stream)) => Ok(PublishGrant {
                    stream: stream.id,
                    owner: stream.tenant_id,
                }),
                Ok(None) => {
                    warn!(%peer, key = %format!("{shown}…"), "unknown stream key");
                    Err("unknown stream key".to_string())
                }
                Err(e) => {
                    warn!(%peer, "stream key lookup failed: {e}");
                    Err("the server cannot check stream keys right now; try again".to_string())
                }
            }
        })
    }
}

/// Opens the store, creates the demo tenant on first start, binds both listeners and starts
/// every service. Returns once the server accepts connections.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating data directory {}", config.data.display()))?;
    let store = Store::open(&config.store)
        .await
        .with_context(|| format!("opening store {}", config.store))?;
    let stale = store.reset_live_streams(store::now_ms()).await?;
    if stale > 0 {
        info!(
            streams = stale,
            "marked streams left live by an earlier run as offline"
        );
    }
    let first_start = ensure_demo_tenant(&store).await?;
    // This host's id, kept in its data directory: batch jobs it claims are leased to it, and the
    // jobs it was running when it stopped without finishing them (a crash) are its to run again
    // at once rather than after their leases run out.
    let host = host_id(&config.data)?;
    match store.release_batch_leases(&host).await {
        Ok(0) => {}
        Ok(n) => info!(
            jobs = n,
            "batch jobs left unfinished by an earlier run are queued again"
        ),
        Err(e) => warn!("cannot free this host's batch leases: {e}"),
    }
    // Segments and leftovers of earlier runs: retention also covers them, before anything is
    // written (every `.tmp` file now is a leftover).
    if config.role.ingests() {
        let (root, hls) = (config.hls.root.clone(), config.hls.clone());
        let removed = tokio::task::spawn_blocking(move || {
            sweep_hls(&root, &hls, &std::collections::HashSet::new(), true)
        })
        .await?;
        record_swept(&store, removed).await;
    }
    let token_secret = store
        .setting_or_insert("playback_token_secret", &random_hex(32))
        .await?;

    let rtmp_listener = if config.role.ingests() {
        Some(TcpListener::bind(config.rtmp).await.with_context(|| {
            format!(
                "binding RTMP on {} (is another server running?)",
                config.rtmp
            )
        })?)
    } else {
        None
    };
    let http_listener = TcpListener::bind(config.http).await.with_context(|| {
        format!(
            "binding HTTP on {} (is another server running?)",
            config.http
        )
    })?;
    let rtmp_addr = rtmp_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let http_addr = http_listener.local_addr()?;
    let bus = bus::Bus::connect(&config.bus)
        .await
        .context("connecting the event bus (--bus)")?;
    let viewers = api::events::Viewers::default();
    let publisher = bus.publisher(1024);

    let hub = StreamHub::new();
    let stats = Arc::new(ServerStats::default());
    let analysis_stats = Arc::new(analysis::AnalysisStats::default());
    let shutdown = CancellationToken::new();
    let (hls_events_tx, hls_events_rx) = mpsc::channel(1024);
    let packager = hls::Packager::new(config.hls.clone(), hls_events_tx);

    let state = api::AppState {
        store: store.clone(),
        hls_root: config.hls.root.clone(),
        dashboard: config.dashboard.clone(),
        token_key: api::TokenKey::new(token_secret.as_bytes()),
        rtmp_url: format!(
            "rtmp://{}/{}",
            display_addr(rtmp_addr.unwrap_or(config.rtmp)),
            config.ingest.app
        ),
        metrics: metrics_renderer(
            stats.clone(),
            hub.clone(),
            analysis_stats.clone(),
            bus.clone(),
            viewers.clone(),
        ),
        viewers: viewers.clone(),
        signals: api::Signals::over(bus.publisher(64)),
        limits: api::Limits::new(config.http_limits.clone()),
    };
    let router = if config.role.serves_api() {
        api::router(state)
    } else {
        api::ops_router(state)
    };

    // Models and components load before the first publisher can be accepted, so no stream
    // starts unanalysed.
    let analysis = if config.analysis && config.role.ingests() {
        let (dir, store, stats) = (
            config.components.clone(),
            store.clone(),
            analysis_stats.clone(),
        );
        let hls_root = config.hls.root.clone();
        let models = analysis::ModelSettings {
            accelerator: config.accelerator,
            sessions: config.inference_sessions,
            nice: analysis::ANALYSIS_NICE,
        };
        let publisher = publisher.clone();
        let host = host.clone();
        tokio::task::spawn_blocking(move || {
            analysis::LiveAnalysis::load(&dir, models, hls_root, store, stats, publisher, host)
        })
        .await?
    } else {
        None
    };
    let batch_wake = analysis
        .as_ref()
        .map(|a| a.batch_wake())
        .unwrap_or_default();

    // Every long-running service, in stop order: stop accepting RTMP and close publishers (each
    // stream's playlist gets its last segment and `EXT-X-ENDLIST`), let the packager finish,
    // stop analysis, drain bookkeeping into the store, stop following the bus, stop HTTP.
    // Subscribed before anything can publish, so no event is missed.
    let mode_deliveries = match &analysis {
        // Mode changes made on any API host reach the decoders of the streams live here.
        Some(_) => Some(
            bus.subscribe()
                .await
                .context("subscribing to the event bus for control signals")?,
        ),
        None => None,
    };
    let viewer_deliveries = match config.role.serves_api() {
        true => Some(
            bus.subscribe()
                .await
                .context("subscribing to the event bus")?,
        ),
        false => None,
    };
    let mut services = Services::default();
    if let Some(listener) = rtmp_listener {
        let (stop, authorize) = (CancellationToken::new(), StoreAuthorizer::new(&store));
        let rtmp = rtmp::run(
            listener,
            config.ingest.clone(),
            authorize,
            hub.clone(),
            stats,
            stop.clone(),
        );
        services.spawn("RTMP", stop, until_stopped(rtmp));
    }
    let stop = CancellationToken::new();
    services.spawn(
        "HLS",
        stop.clone(),
        until_stopped(packager.run(hub.clone(), stop)),
    );
    if let (Some(analysis), Some(mode_deliveries)) = (analysis, mode_deliveries) {
        let (stop, modes) = (CancellationToken::new(), analysis.modes());
        services.spawn(
            "analysis",
            stop.clone(),
            until_stopped(analysis.run(hub.clone(), stop)),
        );
        let stop = CancellationToken::new();
        let signals = follow_mode_signals(mode_deliveries, modes);
        services.spawn(
            "mode signals",
            stop.clone(),
            until_closed(signals, stop, "the bus subscription"),
        );
    }
    // Ends when the packager has sent its last event (the hub's and the packager's channels close).
    let books = keep_books(
        host.clone(),
        store.clone(),
        hub.events(),
        hls_events_rx,
        analysis_stats.clone(),
        batch_wake,
        publisher,
    );
    services.spawn(
        "bookkeeping",
        CancellationToken::new(),
        until_stopped(books),
    );
    if let Some(deliveries) = viewer_deliveries {
        let stop = CancellationToken::new();
        let feed = viewers.clone().run(deliveries);
        services.spawn(
            "viewer feed",
            stop.clone(),
            until_closed(feed, stop, "the bus subscription"),
        );
    }
    let stop = CancellationToken::new();
    let retention = expire_detections(store.clone(), config.detections_retention, stop.clone());
    services.spawn("detection retention", stop, until_stopped(retention));
    let stop = CancellationToken::new();
    let sweep = expire_segments(store.clone(), config.hls.clone(), hub.clone(), stop.clone());
    services.spawn("HLS retention", stop, until_stopped(sweep));
    let stop = CancellationToken::new();
    let http_limits = config.http_limits.clone();
    let http_stop = stop.clone().cancelled_owned();
    services.spawn("HTTP", stop, async move {
        api::serve_with_limits(http_listener, router, &http_limits, http_stop)
            .await
            .context("HTTP server")
    });

    info!(role = ?config.role, rtmp = ?rtmp_addr, http = %http_addr, bus = bus.backend_name(), data = %config.data.display(), "media-analyzer started");
    let task = tokio::spawn({
        let (shutdown, store) = (shutdown.clone(), store.clone());
        async move {
            let result = services.run(shutdown).await;
            store.close().await;
            info!("stopped");
            result
        }
    });
    Ok(Running {
        rtmp_addr,
        http_addr,
        first_start,
        store,
        hub,
        bus,
        shutdown,
        task,
    })
}

async fn ensure_demo_tenant(store: &Store) -> anyhow::Result<Option<FirstStart>> {
    if !store.tenants().await?.is_empty() {
        return Ok(None);
    }
    let tenant = store.create_tenant("demo").await?;
    let api_key = store.create_api_key(&tenant.id, "demo").await?;
    let (stream, stream_key) = store.create_stream(&tenant.id, "main").await?;
    Ok(Some(FirstStart {
        api_key: api_key.secret,
        stream_key: stream_key.secret,
        stream_id: stream.id,
    }))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes detections past their retention, hourly, until `stop`.
async fn expire_detections(store: Store, retention: std::time::Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
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

/// This host's id, from `{data}/host-id` (created on the first start).
fn host_id(data: &std::path::Path) -> anyhow::Result<String> {
    let path = data.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = format!("host_{}", random_hex(8));
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// How often HLS retention looks at every stream's folder.
const SEGMENT_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);
/// A `.tmp` file untouched this long is a leftover (a live packager appends to its segment
/// every few seconds).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

/// HLS retention for what the packager's own (in-memory) retention does not cover: segments of
/// earlier runs, streams that went offline (no new segment ever triggers their retention), and
/// `.tmp` leftovers of a crash. Every [`SEGMENT_SWEEP`] until `stop`.
async fn expire_segments(
    store: Store,
    hls: hls::HlsConfig,
    hub: StreamHub,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SEGMENT_SWEEP);
    tick.tick().await; // start() swept already
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let live: std::collections::HashSet<String> = hub.live_streams().into_iter().collect();
                let (root, config) = (hls.root.clone(), hls.clone());
                match tokio::task::spawn_blocking(move || sweep_hls(&root, &config, &live, false)).await {
                    Ok(removed) => record_swept(&store, removed).await,
                    Err(e) => warn!("HLS retention failed: {e}"),
                }
            }
        }
    }
}

/// Tells the store which segments retention deleted.
async fn record_swept(store: &Store, removed: Vec<(String, Vec<u64>)>) {
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

/// Applies retention to every stream folder under `root`: per stream the newest
/// `retain_segments` segments stay and those older than `retain_age` go (never the newest
/// `window` of a `live` stream: its playlist lists them); `.tmp` files go when stale, or all
/// of them at start-up (`starting`). A stream that is not live and has no segment left loses
/// its playlist too. Returns the deleted segments per stream.
fn sweep_hls(
    root: &std::path::Path,
    config: &hls::HlsConfig,
    live: &std::collections::HashSet<String>,
    starting: bool,
) -> Vec<(String, Vec<u64>)> {
    let now = std::time::SystemTime::now();
    let age = |meta: &std::fs::Metadata| {
        meta.modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default()
    };
    let mut removed = Vec::new();
    let Ok(streams) = std::fs::read_dir(root) else {
        return removed;
    };
    for dir in streams.filter_map(|e| e.ok()) {
        let Ok(stream) = dir.file_name().into_string() else {
            continue;
        };
        let is_live = live.contains(&stream);
        let Ok(entries) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        let mut segments = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let (Ok(name), Ok(meta)) = (entry.file_name().into_string(), entry.metadata()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                if starting || age(&meta) >= STALE_TMP {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if let Some(seq) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".ts"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                segments.push((seq, age(&meta)));
            }
        }
        segments.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let keep_always = if is_live { config.window } else { 0 };
        let keep_at_most = config.retain_segments.max(keep_always);
        let mut gone = Vec::new();
        for (i, (seq, seg_age)) in segments.iter().enumerate() {
            if i < keep_always {
                continue;
            }
            if i >= keep_at_most || *seg_age > config.retain_age {
                match std::fs::remove_file(dir.path().join(hls::segment_file_name(*seq))) {
                    Ok(()) => gone.push(*seq),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(*seq),
                    Err(e) => {
                        warn!(%stream, segment = seq, "could not delete an expired segment: {e}")
                    }
                }
            }
        }
        if !is_live && gone.len() == segments.len() && !segments.is_empty() {
            let _ = std::fs::remove_file(dir.path().join("index.m3u8"));
        }
        if !gone.is_empty() {
            gone.sort_unstable();
            removed.push((stream, gone));
        }
    }
    removed
}

/// Hands the bus's mode signals to this host's live decoders until the subscription ends.
async fn follow_mode_signals(
    mut deliveries: mpsc::Receiver<bus::Delivery>,
    modes: analysis::StreamModes,
) {
    while let Some(delivery) = deliveries.recv().await {
        let bus::Delivery::Message(envelope) = delivery else {
            continue;
        };
        if let bus::Event::Control(bus::Control::Mode { stream, mode, .. }) = &envelope.event {
            match mode.parse::<store::AnalysisMode>() {
                Ok(mode) => modes.set(stream, mode),
                Err(e) => warn!(%stream, "ignoring a mode signal: {e}"),
            }
        }
    }
}

/// Records what the hub and the packager report: stream state and codecs, segments.
async fn keep_books(
    host: String,
    store: Store,
    mut hub_events: tokio::sync::broadcast::Receiver<HubEvent>,
    mut hls_events: mpsc::Receiver<hls::HlsEvent>,
    analysis: Arc<analysis::AnalysisStats>,
    batch_wake: analysis::BatchWake,
    publisher: bus::Publisher,
) {
    let mut hub_open = true;
    loop {
        tokio::select! {
            event = hub_events.recv(), if hub_open => match event {
                Ok(event) => {
                    announce_stream_change(&publisher, &event);
                    record_hub_event(&store, event).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!("bookkeeping missed {n} stream events; stream states may be stale until the next change");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => hub_open = false,
            },
            event = hls_events.recv() => match event {
                Some(event) => record_hls_event(&host, &store, &analysis, &batch_wake, event).await,
                None => break,
            },
        }
    }
    // Drain stream ends that raced with the packager's last events.
    while let Ok(event) = hub_events.try_recv() {
        announce_stream_change(&publisher, &event);
        record_hub_event(&store, event).await;
    }
}

/// Tells viewers (through the bus) that a stream went live or offline.
fn announce_stream_change(publisher: &bus::Publisher, event: &HubEvent) {
    let (stream, tenant, state) = match event {
        HubEvent::Started { stream, owner } => (stream, owner, "live"),
        HubEvent::Ended { stream, owner, .. } => (stream, owner, "offline"),
        HubEvent::InfoChanged { .. } => return,
    };
    publisher.send(bus::Envelope::new(
        tenant.clone(),
        bus::Event::Stream(bus::StreamChange {
            stream: stream.clone(),
            state: state.into(),
            at: bus::rfc3339_ms(store::now_ms()),
        }),
    ));
}

async fn record_hub_event(store: &Store, event: HubEvent) {
    let result = match &event {
        HubEvent::Started { stream, .. } => store.mark_stream_live(stream, store::now_ms()).await,
        HubEvent::InfoChanged { stream, info } => {
            let video = info.video.as_ref().map(|v| VideoRecord {
                codec: v.codec.clone(),
                width: v.width,
                height: v.height,
                fps: v.fps,
            });
            let audio = info.audio.as_ref().map(|a| AudioRecord {
                codec: a.codec.clone(),
                sample_rate: a.sample_rate,
                channels: a.channels,
            });
            store
                .set_stream_codecs(stream, video.as_ref(), audio.as_ref())
                .await
        }
        HubEvent::Ended { stream, stats, .. } => {
            info!(%stream, video = stats.video_packets, audio = stats.audio_packets, bytes = stats.bytes, dropped = stats.dropped, "stream ended");
            store.mark_stream_offline(stream, store::now_ms()).await
        }
    };
    if let Err(e) = result {
        warn!("could not record stream event {event:?}: {e}");
    }
}

async fn record_hls_event(
    host: &str,
    store: &Store,
    analysis: &analysis::AnalysisStats,
    batch_wake: &analysis::BatchWake,
    event: hls::HlsEvent,
) {
    // Both writes are idempotent (an upsert, a mark), so a retry after a lost reply is harmless.
    let retry = store::RetryPolicy::default();
    let on_retry = |attempt: u32, e: &store::StoreError| {
        analysis
            .store_retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        warn!(
            attempt,
            "recording a segment event failed, trying again: {e}"
        );
    };
    let result = match &event {
        hls::HlsEvent::SegmentClosed { stream, segment } => {
            let record = SegmentRecord {
                seq: segment.seq as i64,
                duration_ms: segment.duration_ms as i64,
                program_date_time: segment.program_date_time_ms,
                bytes: segment.bytes as i64,
                discontinuity: segment.discontinuity,
            };
            let added = retry
                .run(|| store.add_segment(stream, &record), on_retry)
                .await;
            if added.is_ok() {
                analysis::queue_for_batch(
                    host,
                    store,
                    analysis,
                    batch_wake,
                    stream,
                    segment.seq as i64,
                )
                .await;
            }
            added
        }
        hls::HlsEvent::SegmentsRemoved { stream, seqs } => {
            let at = store::now_ms();
            retry
                .run(|| store.mark_segments_removed(stream, seqs, at), on_retry)
                .await
        }
        hls::HlsEvent::PlaylistEnded { .. } => Ok(()),
    };
    if let Err(e) = result {
        warn!(
            "could not record {event:?} (the segment is on disk; the store does not list it): {e}"
        );
    }
}

fn metrics_renderer(
    stats: Arc<ServerStats>,
    hub: StreamHub,
    analysis: Arc<analysis::AnalysisStats>,
    bus: bus::Bus,
    viewers: api::events::Viewers,
) -> api::MetricsRenderer {
    Arc::new(move || {
        let ingest = format!(
            "{}# TYPE media_analyzer_live_streams gauge\nmedia_analyzer_live_streams {}\n",
            stats.render(),
            hub.live_streams().len(),
        );
        ingest
            + &analysis.render()
            + &bus.stats().render(bus.backend_name())
            + &viewers.render_metrics()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    /// A file `age` old.
    fn touch(path: &Path, age: Duration) {
        let file = std::fs::File::create(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn stream_dir(root: &Path, stream: &str, seqs: std::ops::Range<u64>, age: Duration) -> PathBuf {
        let dir = root.join(stream);
        std::fs::create_dir_all(&dir).unwrap();
        for seq in seqs {
            touch(&dir.join(hls::segment_file_name(seq)), age);
        }
        touch(&dir.join("index.m3u8"), Duration::ZERO);
        dir
    }

    fn segments(dir: &Path) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?.strip_suffix(".ts")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// HLS retention that does not depend on the process that wrote the files: an offline
    /// stream keeps `retain_segments` and nothing older than `retain_age` (its playlist goes with
    /// its last segment), a live stream always keeps its playlist window, a `.tmp` is removed
    /// when stale — and at start every `.tmp` is a leftover of an earlier run.
    #[test]
    fn the_hls_sweep_cleans_offline_streams_and_leftovers_and_keeps_live_windows() {
        let root = std::env::temp_dir().join(format!("ma-sweep-{}", rand::random::<u64>()));
        let config = hls::HlsConfig {
            root: root.clone(),
            window: 3,
            retain_segments: 4,
            retain_age: Duration::from_secs(3600),
            ..Default::default()
        };
        let minute = Duration::from_secs(60);
        let two_hours = Duration::from_secs(7200);
        let offline = stream_dir(&root, "str_offline", 0..6, minute);
        touch(&offline.join("seg-6.ts.tmp"), minute);
        touch(&offline.join("seg-9.ts.tmp"), 2 * STALE_TMP);
        let expired = stream_dir(&root, "str_expired", 0..2, two_hours);
        let live = stream_dir(&root, "str_live", 0..5, two_hours);
        let live_set: HashSet<String> = ["str_live".to_string()].into();

        let mut removed = sweep_hls(&root, &config, &live_set, false);
        removed.sort();
        assert_eq!(
            removed,
            vec![
                ("str_expired".to_string(), vec![0, 1]),
                ("str_live".to_string(), vec![0, 1]),
                ("str_offline".to_string(), vec![0, 1]),
            ]
        );
        assert_eq!(segments(&offline), vec![2, 3, 4, 5]);
        assert!(offline.join("index.m3u8").exists());
        assert!(
            offline.join("seg-6.ts.tmp").exists(),
            "a segment being written"
        );
        assert!(!offline.join("seg-9.ts.tmp").exists(), "a stale leftover");
        assert!(segments(&expired).is_empty());
        assert!(!expired.join("index.m3u8").exists());
        assert_eq!(segments(&live), vec![2, 3, 4], "the live window stays");

        // At start nothing is being written: every `.tmp` goes; nothing else changes.
        assert!(
            sweep_hls(&root, &config, &HashSet::new(), true)
                .iter()
                .all(|(stream, _)| stream == "str_live")
        );
        assert!(!offline.join("seg-6.ts.tmp").exists());
        assert_eq!(segments(&offline), vec![2, 3, 4, 5]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
