//! `serve`: wires RTMP ingest → stream hub → HLS packager, live and batch analysis, the
//! bookkeeping that records streams and segments in the store (`catalog`), retention, the bus and
//! the HTTP API — started together under one supervisor, stopped in order.
//!
//! Shutdown order: stop accepting RTMP and close publishers (each stream's playlist gets its
//! last segment and `EXT-X-ENDLIST`), let the packager finish, drain bookkeeping into the store,
//! stop HTTP, close the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use media::StreamHub;
use rand::RngCore;
use rtmp::ServerStats;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, Role};
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
            None => format!("(no RTMP on this host: its role does not ingest)/{app}"),
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

/// Opens the store, creates the demo tenant on first start, binds both listeners and starts
/// every service. Returns once the server accepts connections.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating data directory {}", config.data.display()))?;
    let store = Store::open(&config.store)
        .await
        .with_context(|| format!("opening store {}", config.store))?;
    // Only a host that ingests can have left streams live; an API or analysis host starting
    // must not end the streams that ingest hosts are serving.
    let stale = match config.role.ingests() {
        true => store.reset_live_streams(store::now_ms()).await?,
        false => 0,
    };
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
    let host = match &config.host_id {
        Some(id) => id.clone(),
        None => host_id(&config.data)?,
    };
    match store.release_batch_leases(&host).await {
        Ok(0) => {}
        Ok(n) => info!(
            jobs = n,
            "batch jobs left unfinished by an earlier run are queued again"
        ),
        Err(e) => warn!("cannot free this host's batch leases: {e}"),
    }
    // The archive, on ingest hosts: what an earlier run queued and did not store yet is held
    // against retention before the sweep below.
    let archive = match (&config.archive, config.role.ingests()) {
        (Some(url), true) => {
            let target = catalog::ArchiveTarget::open(url, config.storage_emulator.as_deref())
                .map_err(anyhow::Error::msg)?;
            let archive = catalog::Archive::new(
                host.clone(),
                store.clone(),
                config.archive_policy,
                config.hls.holds.clone(),
            );
            match archive.hold_queued().await {
                Ok(0) => {}
                Ok(n) => info!(
                    segments = n,
                    "segments queued for the archive by an earlier run are kept until stored"
                ),
                Err(e) => warn!("cannot read the archive queue: {e}"),
            }
            Some((archive, target))
        }
        (Some(_), false) => {
            info!("--archive is used by ingest hosts (they hold the segments), not by this one");
            None
        }
        (None, _) => None,
    };
    // Segments and leftovers of earlier runs: retention also covers them, before anything is
    // written (every `.tmp` file now is a leftover).
    if config.role.ingests() {
        catalog::retention::sweep_at_start(&store, &config.hls).await;
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
    let shared = shared_queue(&config, &host).await?;
    let viewers = api::events::Viewers::default();
    // Alerts and stream changes go to the tenants' webhooks from the host that produced them.
    let webhooks = webhooks::Webhooks::start(
        store.clone(),
        webhooks::WebhookConfig {
            policy: config.webhook_policy,
            ..Default::default()
        },
    )
    .map_err(anyhow::Error::msg)?;
    let publisher = bus.publisher(1024).observed_by(webhooks.observer());

    let hub = StreamHub::new();
    let stats = Arc::new(ServerStats::default());
    let analysis_stats = Arc::new(analysis::AnalysisStats::default());
    let shutdown = CancellationToken::new();
    let (hls_events_tx, hls_events_rx) = mpsc::channel(1024);
    let packager = hls::Packager::new(config.hls.clone(), hls_events_tx);
    // The effects rendition reads the packager's taps; live analysis hands it the effects.
    let renditions = config
        .effects_rendition
        .clone()
        .map(|c| rendition::Renditions::new(c, config.hls.taps.clone()));

    let mut state = api::AppState {
        store: store.clone(),
        hls_root: config.hls.root.clone(),
        dashboard: config.dashboard.clone(),
        token_key: api::TokenKey::new(token_secret.as_bytes()),
        rtmp_url: format!(
            "rtmp://{}/{}",
            display_addr(rtmp_addr.unwrap_or(config.rtmp)),
            config.ingest.app
        ),
        metrics: metrics_registry(
            stats.clone(),
            &hub,
            analysis_stats.clone(),
            &bus,
            &viewers,
            &webhooks,
            // The services that run only when configured.
            archive
                .as_ref()
                .map(|(archive, _)| archive.collector())
                .into_iter()
                .chain(renditions.as_ref().map(|r| r.stats().collector()))
                .collect(),
        ),
        viewers: viewers.clone(),
        signals: api::Signals::over(bus.publisher(64)),
        limits: api::Limits::new(config.http_limits.clone()),
        playback_token_ttl: config.playback_token_ttl,
        components: None,
        models: None,
        logo_files: Some(logo_files(&config.data)),
        webhook_policy: config.webhook_policy,
    };

    // Models and components load before the first publisher can be accepted, so no stream
    // starts unanalysed.
    let mut analysis = if config.analysis && config.role.analyses() {
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
        let (files, model_files, logo_files) = (
            component_files(&config.data),
            model_files(&config.data),
            logo_files(&config.data),
        );
        tokio::task::spawn_blocking(move || {
            analysis::LiveAnalysis::load(
                &dir,
                files,
                model_files,
                logo_files,
                models,
                hls_root,
                store,
                stats,
                publisher,
                host,
            )
        })
        .await?
    } else {
        None
    };
    if config.role == Role::Analyze && analysis.is_none() {
        anyhow::bail!(
            "--role analyze runs batch analysis, but analysis is off here (see the warning above; --analysis on, and the components and models installed by scripts/setup)"
        );
    }
    if let (Some(analysis), Some(shared)) = (analysis.as_mut(), &shared) {
        analysis.take_jobs_from(shared.clone());
    }
    if let (Some(analysis), Some(renditions)) = (analysis.as_mut(), &renditions) {
        analysis.render_effects(renditions.clone());
    }
    let batch_wake = analysis
        .as_ref()
        .map(|a| a.batch_wake())
        .unwrap_or_default();
    if config.role.serves_api() {
        let sandbox = match &analysis {
            Some(analysis) => analysis.runtime(),
            // No models here: uploads are still checked in a sandbox of their own.
            None => Arc::new(
                runtime::Runtime::new(
                    runtime::SandboxConfig::default(),
                    runtime::ModelRegistry::new(),
                )
                .map_err(|e| anyhow::anyhow!("starting the component sandbox: {e:#}"))?,
            ),
        };
        state.components = Some(component_uploads(sandbox, &config.data));
        state.models = model_uploads(&config.data, analysis.is_some());
    }

    // Every long-running service, in stop order: stop accepting RTMP and close publishers (each
    // stream's playlist gets its last segment and `EXT-X-ENDLIST`), let the packager finish,
    // stop analysis, drain bookkeeping into the store, stop following the bus, stop HTTP.
    // Subscribed before anything can publish, so no event is missed.
    let control_deliveries = match &analysis {
        // Mode and pipeline changes made on any API host reach the streams live here.
        Some(_) => Some((
            bus.subscribe()
                .await
                .context("subscribing to the event bus for control signals")?,
            bus.subscribe()
                .await
                .context("subscribing to the event bus for control signals")?,
        )),
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
    let router = if config.role.serves_api() {
        api::router(state)
    } else {
        api::ops_router(state)
    };
    let mut services = Services::default();
    if let Some(listener) = rtmp_listener {
        let (stop, authorize) = (
            CancellationToken::new(),
            Arc::new(catalog::StreamKeys::new(&store)),
        );
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
    if let (Some(analysis), Some((mode_deliveries, pipeline_deliveries))) =
        (analysis, control_deliveries)
    {
        let (stop, modes, pipelines, activity) = (
            CancellationToken::new(),
            analysis.modes(),
            analysis.pipelines(),
            analysis.activity(),
        );
        services.spawn(
            "analysis",
            stop.clone(),
            until_stopped(analysis.run(hub.clone(), stop)),
        );
        let stop = CancellationToken::new();
        let signals = modes.follow_signals(mode_deliveries);
        services.spawn(
            "mode signals",
            stop.clone(),
            until_closed(signals, stop, "the bus subscription"),
        );
        let stop = CancellationToken::new();
        let signals = pipelines.follow_signals(pipeline_deliveries);
        services.spawn(
            "pipeline signals",
            stop.clone(),
            until_closed(signals, stop, "the bus subscription"),
        );
        // After analysis in the stop order: its last calls are stored too.
        let (stop, store) = (CancellationToken::new(), store.clone());
        services.spawn(
            "component activity",
            stop.clone(),
            until_stopped(async move { activity.run(store, stop).await }),
        );
    }
    // Ends when the packager has sent its last event (the hub's and the packager's channels close).
    if let Some(shared) = shared.as_ref().filter(|_| config.role.ingests()) {
        // Jobs queued in the store that never reached the engine (it was down, or a host
        // stopped in between).
        let (store, stats, shared) = (store.clone(), analysis_stats.clone(), shared.clone());
        tokio::spawn(async move {
            let pushed = analysis::push_unpushed_jobs(&store, &stats, &shared).await;
            if pushed > 0 {
                info!(
                    jobs = pushed,
                    "batch jobs queued earlier were pushed to the work queue"
                );
            }
        });
    }
    if let Some(shared) = shared.as_ref().filter(|_| config.role.analyses()) {
        let stop = CancellationToken::new();
        let sampler =
            analysis::sample_queue_depth(shared.jobs.clone(), analysis_stats.clone(), stop.clone());
        services.spawn("work queue depth", stop, until_stopped(sampler));
    }
    let books = catalog::Bookkeeping {
        host: host.clone(),
        store: store.clone(),
        stats: analysis_stats.clone(),
        batch_wake,
        jobs: shared.clone(),
        publisher,
        archive: archive.as_ref().map(|(archive, _)| archive.clone()),
    }
    .run(hub.events(), hls_events_rx);
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
    let retention = catalog::retention::expire_detections(
        store.clone(),
        config.detections_retention,
        stop.clone(),
    );
    services.spawn("detection retention", stop, until_stopped(retention));
    let stop = CancellationToken::new();
    let sweep = catalog::retention::expire_segments(
        store.clone(),
        config.hls.clone(),
        hub.clone(),
        stop.clone(),
    );
    services.spawn("HLS retention", stop, until_stopped(sweep));
    if let Some((archive, target)) = archive {
        let stop = CancellationToken::new();
        let uploads = archive.run(target, config.hls.root.clone(), stop.clone());
        services.spawn("archive", stop, until_stopped(uploads));
    }
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

/// The work queue shared with other hosts, on a Redis or Pub/Sub bus (`None` on the in-process
/// bus: this host runs its own jobs). `--role analyze` needs one.
async fn shared_queue(
    config: &Config,
    host: &str,
) -> anyhow::Result<Option<analysis::SharedQueue>> {
    let segments = analysis::SegmentStore::open(
        config.segments.as_deref(),
        config.storage_emulator.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let jobs = bus::SegmentQueue::connect(&config.bus, host, analysis::BATCH_LEASE)
        .await
        .context("connecting the batch work queue (--bus)")?;
    let Some(jobs) = jobs else {
        if config.role == Role::Analyze {
            anyhow::bail!(
                "--role analyze takes batch jobs from a work queue: run it with --bus redis://HOST:PORT or --bus pubsub://PROJECT, as the ingest hosts"
            );
        }
        if config.segments.is_some() {
            warn!(
                "--segments is used only with a Redis or Pub/Sub bus (this host runs its own batch jobs)"
            );
        }
        return Ok(None);
    };
    info!(engine = jobs.engine_name(), segments = %segments.url(), "batch work queue connected");
    Ok(Some(analysis::SharedQueue {
        jobs,
        segments,
        hls_root: config.hls.root.clone(),
        scratch: config.data.join("scratch"),
    }))
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

/// `/metrics`: every subsystem's collector in one registry.
fn metrics_registry(
    stats: Arc<ServerStats>,
    hub: &StreamHub,
    analysis: Arc<analysis::AnalysisStats>,
    bus: &bus::Bus,
    viewers: &api::events::Viewers,
    webhooks: &webhooks::Webhooks,
    optional: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> api::Metrics {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(stats.collector());
    registry.register_collector(hub.collector());
    registry.register_collector(analysis.collector());
    registry.register_collector(bus.collector());
    registry.register_collector(viewers.collector());
    registry.register_collector(webhooks.collector());
    for collector in optional {
        registry.register_collector(collector);
    }
    Arc::new(registry)
}

/// Where uploaded components are kept: `{data}/components`.
pub fn component_files(data: &Path) -> store::ComponentFiles {
    store::ComponentFiles::new(data.join("components"))
}

/// Uploads are checked in the sandbox (`runtime::Runtime::check_upload`) and kept in
/// [`component_files`]. The bundled components listed are those live analysis loads: the
/// detectors it runs when a tenant chose nothing, and the triggers and effect selectors a
/// pipeline may name.
pub fn component_uploads(
    sandbox: Arc<runtime::Runtime>,
    data: &Path,
) -> api::components::ComponentUploads {
    api::components::ComponentUploads {
        max_bytes: sandbox.config().max_component_bytes,
        check: Arc::new(SandboxCheck(sandbox)),
        files: component_files(data),
        bundled: analysis::bundle::PICKABLE_COMPONENTS
            .iter()
            .map(|name| {
                let by_default = analysis::bundle::DEFAULT_COMPONENTS.contains(name);
                (name, "detector", by_default)
            })
            .chain(
                analysis::bundle::BUNDLED_TRIGGERS
                    .iter()
                    .map(|name| (name, "trigger", false)),
            )
            .chain(
                analysis::bundle::BUNDLED_SELECTORS
                    .iter()
                    .map(|name| (name, "effects", false)),
            )
            .map(
                |(name, world, by_default)| api::components::BundledComponent {
                    name: name.to_string(),
                    world: world.into(),
                    by_default,
                },
            )
            .collect(),
        checking: Default::default(),
    }
}

/// Where reference logos are kept: `{data}/logos`.
pub fn logo_files(data: &Path) -> store::ComponentFiles {
    store::ComponentFiles::for_logos(data.join("logos"))
}

/// Where uploaded models are kept: `{data}/models`.
pub fn model_files(data: &Path) -> store::ComponentFiles {
    store::ComponentFiles::for_models(data.join("models"))
}

/// The largest model upload taken.
pub const MAX_MODEL_UPLOAD_BYTES: usize = 128 << 20;

/// Model uploads are checked by loading them in ONNX Runtime (which live analysis has loaded,
/// else it is loaded here from the model manifest) and kept in [`model_files`]; `None` (uploads
/// answer 503) when ONNX Runtime is not installed.
pub fn model_uploads(data: &Path, runtime_loaded: bool) -> Option<api::models::ModelUploads> {
    if !runtime_loaded {
        let loaded = inference::Catalog::load(&inference::Catalog::default_path())
            .map_err(|e| e.to_string())
            .and_then(|c| {
                inference::init_onnxruntime(&c.onnxruntime_library()).map_err(|e| e.to_string())
            });
        if let Err(e) = loaded {
            tracing::warn!("model uploads are off: ONNX Runtime is not available: {e}");
            return None;
        }
    }
    let mut bundled: Vec<String> = analysis::bundle::BUNDLED
        .iter()
        .flat_map(|(_, models)| models.iter().map(|m| m.to_string()))
        .collect();
    bundled.sort();
    bundled.dedup();
    Some(api::models::ModelUploads {
        check: Arc::new(OnnxCheck(analysis::tenant_models::ModelUploadCheck::new(
            std::time::Duration::from_secs(30),
        ))),
        files: model_files(data),
        max_bytes: MAX_MODEL_UPLOAD_BYTES,
        quota: store::ModelQuota::default(),
        bundled,
    })
}

struct OnnxCheck(analysis::tenant_models::ModelUploadCheck);

impl api::models::ModelCheck for OnnxCheck {
    fn check(&self, bytes: &[u8]) -> Result<api::models::ModelSignature, api::components::Refusal> {
        use analysis::tenant_models::ModelRefusal;
        use api::components::Refusal;
        let signature = |tensors: Vec<inference::TensorInfo>| {
            tensors
                .into_iter()
                .map(|t| api::models::TensorSignature {
                    name: t.name,
                    element_type: format!("{:?}", t.element_type).to_lowercase(),
                    shape: t.shape,
                })
                .collect()
        };
        match self.0.check(bytes) {
            Ok((inputs, outputs)) => Ok(api::models::ModelSignature {
                inputs: signature(inputs),
                outputs: signature(outputs),
            }),
            Err(ModelRefusal::Busy) => Err(Refusal::Busy("another model is being checked".into())),
            Err(ModelRefusal::Invalid(reason)) => Err(Refusal::Invalid(reason)),
        }
    }
}

struct SandboxCheck(Arc<runtime::Runtime>);

impl api::components::ComponentCheck for SandboxCheck {
    fn check(&self, world: &str, bytes: &[u8]) -> Result<Vec<String>, api::components::Refusal> {
        use api::components::Refusal;
        let world: runtime::World = world.parse().map_err(Refusal::Invalid)?;
        match self.0.check_upload(world, bytes) {
            Ok(checked) => Ok(checked.imports),
            Err(busy @ runtime::LoadError::CompileBusy(_)) => Err(Refusal::Busy(busy.to_string())),
            Err(e) => Err(Refusal::Invalid(e.to_string())),
        }
    }
}
