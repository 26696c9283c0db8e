//! `serve`: RTMP ingest → stream hub → HLS packager, the bookkeeping that records streams and
//! segments in the store, and the HTTP API — started together, stopped in order.
//!
//! Shutdown order: stop accepting RTMP and close publishers (each stream's playlist gets its
//! last segment and `EXT-X-ENDLIST`), let the packager finish, drain bookkeeping into the store,
//! stop HTTP, close the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
                Ok(Some(stream)) => Ok(PublishGrant { stream: stream.id }),
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
    if config.role.serves_api() {
        let deliveries = bus
            .subscribe()
            .await
            .context("subscribing to the event bus")?;
        tokio::spawn(viewers.clone().run(deliveries));
    }
    let publisher = bus.publisher(1024);

    let hub = StreamHub::new();
    let stats = Arc::new(ServerStats::default());
    let analysis_stats = Arc::new(crate::analysis::AnalysisStats::default());
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
        viewers,
    };
    let router = if config.role.serves_api() {
        api::router(state)
    } else {
        api::ops_router(state)
    };

    // Models and components load before the first publisher can be accepted, so no stream
    // starts unanalysed.
    let analysis_stop = CancellationToken::new();
    let analysis = if config.analysis && config.role.ingests() {
        let (dir, store, stats) = (
            config.components.clone(),
            store.clone(),
            analysis_stats.clone(),
        );
        let hls_root = config.hls.root.clone();
        let models = crate::analyze::ModelSettings {
            accelerator: config.accelerator,
            sessions: config.inference_sessions,
            nice: crate::analysis::ANALYSIS_NICE,
        };
        let publisher = publisher.clone();
        tokio::task::spawn_blocking(move || {
            crate::analysis::LiveAnalysis::load(&dir, models, hls_root, store, stats, publisher)
        })
        .await?
    } else {
        None
    };
    let rtmp_stop = CancellationToken::new();
    let hls_stop = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let rtmp_task = match rtmp_listener {
        Some(listener) => tokio::spawn(rtmp::run(
            listener,
            config.ingest.clone(),
            Arc::new(StoreAuthorizer {
                store: store.clone(),
            }),
            hub.clone(),
            stats,
            rtmp_stop.clone(),
        )),
        // An API host: nothing to ingest; the task waits for shutdown like the RTMP server would.
        None => tokio::spawn({
            let stop = rtmp_stop.clone();
            async move { stop.cancelled().await }
        }),
    };
    let hls_task = tokio::spawn(packager.run(hub.clone(), hls_stop.clone()));
    let analysis_task = analysis.map(|a| tokio::spawn(a.run(hub.clone(), analysis_stop.clone())));
    let retention_task = tokio::spawn(expire_detections(
        store.clone(),
        config.detections_retention,
        http_stop.clone(),
    ));
    let books_task = tokio::spawn(keep_books(
        store.clone(),
        hub.events(),
        hls_events_rx,
        analysis_stats.clone(),
        publisher,
    ));
    let http_task = tokio::spawn(api::serve(
        http_listener,
        router,
        http_stop.clone().cancelled_owned(),
    ));

    info!(role = ?config.role, rtmp = ?rtmp_addr, http = %http_addr, bus = bus.backend_name(), data = %config.data.display(), "media-analyzer started");
    let supervisor_shutdown = shutdown.clone();
    let supervisor_store = store.clone();
    let supervisor_hub = hub.clone();
    let task = tokio::spawn(async move {
        let mut http_task = http_task;
        let mut rtmp_task = rtmp_task;
        // Run until asked to stop, or until a service ends by itself (which is a failure).
        let early = tokio::select! {
            _ = supervisor_shutdown.cancelled() => None,
            r = &mut http_task => Some(("HTTP", r.map(|r| r.map_err(anyhow::Error::from)))),
            r = &mut rtmp_task => Some(("RTMP", r.map(|_| Ok(())))),
        };
        if let Some((what, result)) = &early {
            warn!("{what} service stopped unexpectedly: {result:?}; shutting down");
        }
        info!("shutting down: closing RTMP publishers");
        rtmp_stop.cancel();
        if early.as_ref().map(|(w, _)| *w) != Some("RTMP") {
            let _ = rtmp_task.await;
        }
        hls_stop.cancel();
        let _ = hls_task.await;
        analysis_stop.cancel();
        if let Some(task) = analysis_task {
            let _ = task.await;
        }
        // The hub and packager are done: the bookkeeping channels close and it drains.
        drop(supervisor_hub);
        let _ = books_task.await;
        http_stop.cancel();
        let _ = retention_task.await;
        if early.as_ref().map(|(w, _)| *w) != Some("HTTP") {
            let _ = http_task.await;
        }
        supervisor_store.close().await;
        info!("stopped");
        match early {
            Some((what, _)) => anyhow::bail!("{what} service stopped unexpectedly"),
            None => Ok(()),
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

/// Records what the hub and the packager report: stream state and codecs, segments.
async fn keep_books(
    store: Store,
    mut hub_events: tokio::sync::broadcast::Receiver<HubEvent>,
    mut hls_events: mpsc::Receiver<hls::HlsEvent>,
    analysis: Arc<crate::analysis::AnalysisStats>,
    publisher: bus::Publisher,
) {
    let mut hub_open = true;
    loop {
        tokio::select! {
            event = hub_events.recv(), if hub_open => match event {
                Ok(event) => {
                    announce_stream_change(&store, &publisher, &event).await;
                    record_hub_event(&store, event).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!("bookkeeping missed {n} stream events; stream states may be stale until the next change");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => hub_open = false,
            },
            event = hls_events.recv() => match event {
                Some(event) => record_hls_event(&store, &analysis, event).await,
                None => break,
            },
        }
    }
    // Drain stream ends that raced with the packager's last events.
    while let Ok(event) = hub_events.try_recv() {
        announce_stream_change(&store, &publisher, &event).await;
        record_hub_event(&store, event).await;
    }
}

/// Tells viewers (through the bus) that a stream went live or offline.
async fn announce_stream_change(store: &Store, publisher: &bus::Publisher, event: &HubEvent) {
    let (stream, state) = match event {
        HubEvent::Started { stream } => (stream, "live"),
        HubEvent::Ended { stream, .. } => (stream, "offline"),
        _ => return,
    };
    match store.stream_tenant(stream).await {
        Ok(Some(tenant)) => publisher.send(bus::Envelope::new(
            tenant,
            bus::Event::Stream(bus::StreamChange {
                stream: stream.clone(),
                state: state.into(),
                at: api::streams::rfc3339_ms(store::now_ms()),
            }),
        )),
        Ok(None) => {}
        Err(e) => warn!(%stream, "cannot announce the stream change: {e}"),
    }
}

async fn record_hub_event(store: &Store, event: HubEvent) {
    let result = match &event {
        HubEvent::Started { stream } => store.mark_stream_live(stream, store::now_ms()).await,
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
        HubEvent::Ended { stream, stats } => {
            info!(%stream, video = stats.video_packets, audio = stats.audio_packets, bytes = stats.bytes, dropped = stats.dropped, "stream ended");
            store.mark_stream_offline(stream, store::now_ms()).await
        }
    };
    if let Err(e) = result {
        warn!("could not record stream event {event:?}: {e}");
    }
}

async fn record_hls_event(
    store: &Store,
    analysis: &crate::analysis::AnalysisStats,
    event: hls::HlsEvent,
) {
    let result = match &event {
        hls::HlsEvent::SegmentClosed { stream, segment } => {
            let added = store
                .add_segment(
                    stream,
                    &SegmentRecord {
                        seq: segment.seq as i64,
                        duration_ms: segment.duration_ms as i64,
                        program_date_time: segment.program_date_time_ms,
                        bytes: segment.bytes as i64,
                        discontinuity: segment.discontinuity,
                    },
                )
                .await;
            if added.is_ok() {
                queue_for_batch(store, analysis, stream, segment.seq as i64).await;
            }
            added
        }
        hls::HlsEvent::SegmentsRemoved { stream, seqs } => {
            store
                .mark_segments_removed(stream, seqs, store::now_ms())
                .await
        }
        hls::HlsEvent::PlaylistEnded { .. } => Ok(()),
    };
    if let Err(e) = result {
        warn!("could not record {event:?}: {e}");
    }
}

/// Queues a closed segment for batch analysis when its stream is in batch mode.
async fn queue_for_batch(
    store: &Store,
    analysis: &crate::analysis::AnalysisStats,
    stream: &str,
    seq: i64,
) {
    use std::sync::atomic::Ordering;
    let limit = crate::analysis::BATCH_QUEUE_LIMIT;
    match store
        .queue_batch_segment(stream, seq, limit, store::now_ms())
        .await
    {
        Ok(true) => {
            analysis.batch_queued.fetch_add(1, Ordering::Relaxed);
        }
        Ok(false) => {
            if let Ok(Some(a)) = store.analysis(stream).await
                && a.mode == store::AnalysisMode::Batch
            {
                analysis.batch_refused.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, segment = seq, "batch queue full ({limit} segments waiting): segment not queued for analysis");
            }
        }
        Err(e) => {
            warn!(%stream, segment = seq, "could not queue the segment for batch analysis: {e}")
        }
    }
}

fn metrics_renderer(
    stats: Arc<ServerStats>,
    hub: StreamHub,
    analysis: Arc<crate::analysis::AnalysisStats>,
    bus: bus::Bus,
    viewers: api::events::Viewers,
) -> api::MetricsRenderer {
    Arc::new(move || {
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let ingest = format!(
            "# TYPE media_analyzer_rtmp_connections_total counter\nmedia_analyzer_rtmp_connections_total {}\n\
             # TYPE media_analyzer_rtmp_evicted_total counter\nmedia_analyzer_rtmp_evicted_total {}\n\
             # TYPE media_analyzer_rtmp_publish_refused_total counter\nmedia_analyzer_rtmp_publish_refused_total {}\n\
             # TYPE media_analyzer_rtmp_failed_total counter\nmedia_analyzer_rtmp_failed_total {}\n\
             # TYPE media_analyzer_rtmp_publishers gauge\nmedia_analyzer_rtmp_publishers {}\n\
             # TYPE media_analyzer_live_streams gauge\nmedia_analyzer_live_streams {}\n",
            c(&stats.accepted),
            c(&stats.evicted),
            c(&stats.refused),
            c(&stats.failed),
            c(&stats.publishing),
            hub.live_streams().len(),
        );
        ingest
            + &analysis.render()
            + &bus.stats().render(bus.backend_name())
            + &viewers.render_metrics()
    })
}
