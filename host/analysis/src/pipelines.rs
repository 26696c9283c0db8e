//! What runs on each stream live on this host: its detectors, loaded from what the tenant stored
//! (the stream's own pipeline, else the tenant's default, else the bundled components), swapped
//! in when a pipeline signal arrives.
//!
//! A stream's pipeline is loaded before its first frame is analysed, and again on each signal for
//! it (or for its tenant's default). Loading (a store read, the component file, a compile that the
//! upload check has usually cached already) happens beside the analysers; the swap itself is one
//! pointer in the [`DetectorRegistry`], so the next frame runs the new versions and frames in
//! flight finish on the old ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use runtime::{ActiveDetector, DetectorRegistry, Pipeline, Runtime, World};
use store::{ComponentFiles, StageComponent, Store};
use tokio::runtime::Handle;
use tracing::{info, warn};

use crate::lock;
use crate::tenant_models::TenantModels;

/// The pipelines of the streams live on this host.
pub struct StreamPipelines {
    runtime: Arc<Runtime>,
    /// Per live stream, its detectors (the bundled ones until its pipeline is loaded).
    registry: DetectorRegistry,
    store: Store,
    files: ComponentFiles,
    /// Tenants' own models, put in reach of their components.
    models: TenantModels,
    /// Per live stream: its tenant and publish session.
    live: Mutex<HashMap<String, (String, u64)>>,
    sessions: AtomicU64,
    /// One load at a time, so that a slower, older load never replaces a newer one.
    loading: Mutex<()>,
    /// Pipelines that could not be loaded (the stream kept what it ran).
    pub load_failures: AtomicU64,
}

/// A live stream's hold on its pipeline: it ends (and the stream's entry goes) when dropped, if
/// no newer session of the same stream took over.
pub struct PipelineSession {
    pipelines: Arc<StreamPipelines>,
    tenant: String,
    stream: String,
    session: u64,
}

impl PipelineSession {
    /// Loads the stream's stored pipeline (blocking).
    pub fn load(&self, handle: &Handle) {
        self.pipelines.reload(handle, &self.tenant, &self.stream);
    }
}

impl Drop for PipelineSession {
    fn drop(&mut self) {
        let mut live = lock(&self.pipelines.live);
        if live
            .get(&self.stream)
            .is_some_and(|(_, s)| *s == self.session)
        {
            live.remove(&self.stream);
            self.pipelines.registry.remove(&self.stream);
        }
    }
}

/// Why a stored pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading the pipeline: {0}")]
    Store(#[from] store::StoreError),
    #[error("{name} version {version} is not among the tenant's components")]
    Missing { name: String, version: u32 },
    #[error("loading the tenant's models: {0}")]
    Models(String),
    #[error("no bundled component '{0}' runs on this host")]
    NotBundled(String),
    #[error("{name}@{version}: {reason}")]
    Load {
        name: String,
        version: u32,
        reason: String,
    },
}

impl StreamPipelines {
    /// `bundled`: the detectors streams run when their tenant chose none.
    pub fn new(
        runtime: Arc<Runtime>,
        bundled: Vec<ActiveDetector>,
        store: Store,
        files: ComponentFiles,
        models: TenantModels,
    ) -> Self {
        Self {
            runtime,
            registry: DetectorRegistry::new(Pipeline::new([(World::Detector, bundled)])),
            store,
            files,
            models,
            live: Mutex::default(),
            sessions: AtomicU64::new(1),
            loading: Mutex::new(()),
            load_failures: AtomicU64::new(0),
        }
    }

    /// The bundled detectors.
    pub fn bundled(&self) -> &[ActiveDetector] {
        self.registry.defaults(World::Detector)
    }

    /// The stream's pipeline now (one snapshot per frame).
    pub fn pipeline(&self, stream: &str) -> Arc<Pipeline<runtime::DetectorComponent>> {
        self.registry.pipeline(stream)
    }

    /// A publish session of `stream` starts: signals for it are followed from now on, until the
    /// returned session is dropped (by the last of the stream's threads). Call
    /// [`PipelineSession::load`] before its first frame.
    pub fn start(self: &Arc<Self>, tenant: &str, stream: &str) -> PipelineSession {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(stream.to_string(), (tenant.to_string(), session));
        PipelineSession {
            pipelines: self.clone(),
            tenant: tenant.to_string(),
            stream: stream.to_string(),
            session,
        }
    }

    /// A pipeline of `tenant` changed: of one stream, or (`None`) its default, which reaches all
    /// its live streams here (those with their own pipeline load the same one again, and keep
    /// running it). Blocking.
    pub fn changed(&self, handle: &Handle, tenant: &str, stream: Option<&str>) {
        let streams: Vec<String> = lock(&self.live)
            .iter()
            .filter(|(id, (owner, _))| owner == tenant && stream.is_none_or(|s| s == id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for stream in streams {
            self.reload(handle, tenant, &stream);
        }
    }

    /// Loads the stream's stored pipeline and swaps it in; on failure the stream keeps what it
    /// runs (logged and counted).
    fn reload(&self, handle: &Handle, tenant: &str, stream: &str) {
        let _one_at_a_time = lock(&self.loading);
        if !lock(&self.live).contains_key(stream) {
            return; // ended meanwhile
        }
        match self.resolve(handle, tenant, Some(stream)) {
            Ok((detectors, change)) => {
                let labels: Vec<String> = detectors.iter().map(ActiveDetector::label).collect();
                if self.registry.pipeline(stream).change != change {
                    info!(%stream, ?change, detectors = ?labels, "pipeline loaded");
                }
                self.registry
                    .swap(stream, World::Detector, detectors, change);
            }
            Err(e) => {
                self.load_failures.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, "cannot load the stream's pipeline, keeping what runs: {e}");
            }
        }
    }

    /// The detectors stored for the tenant's stream (its own stage, else the tenant's default),
    /// compiled, and the change that set them; the bundled ones (`None`) when nothing is stored.
    /// Blocking: it reads the store through `handle`.
    pub fn resolve(
        &self,
        handle: &Handle,
        tenant: &str,
        stream: Option<&str>,
    ) -> Result<(Vec<ActiveDetector>, Option<String>), PipelineError> {
        let stages = handle.block_on(self.store.pipeline_stages(tenant))?;
        let stage = |scope: Option<&str>| {
            stages
                .iter()
                .find(|s| s.world == World::Detector.as_str() && s.stream_id.as_deref() == scope)
        };
        let Some(stage) = stream.and_then(|s| stage(Some(s))).or_else(|| stage(None)) else {
            return Ok((self.bundled().to_vec(), None));
        };
        // The tenant's own models are in reach of every component its pipeline runs (a bundled
        // detector may be pointed at the tenant's weights by a setting).
        let models = self
            .models
            .for_tenant(handle, &self.store, tenant)
            .map_err(PipelineError::Models)?;
        let detectors = stage
            .components
            .iter()
            .map(|c| self.load(handle, tenant, c, &models))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((detectors, Some(stage.change.clone())))
    }

    fn load(
        &self,
        handle: &Handle,
        tenant: &str,
        wanted: &StageComponent,
        models: &Arc<runtime::ModelRegistry>,
    ) -> Result<ActiveDetector, PipelineError> {
        let config: Vec<(String, String)> = wanted
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if wanted.version == 0 {
            let bundled = self
                .bundled()
                .iter()
                .find(|b| b.name == wanted.name)
                .ok_or_else(|| PipelineError::NotBundled(wanted.name.clone()))?;
            return Ok(ActiveDetector {
                config,
                component: bundled.component.with_tenant_models(models.clone()),
                ..bundled.clone()
            });
        }
        let missing = || PipelineError::Missing {
            name: wanted.name.clone(),
            version: wanted.version,
        };
        let version = handle
            .block_on(
                self.store
                    .component_version(tenant, &wanted.name, Some(wanted.version)),
            )?
            .filter(|v| v.world == World::Detector.as_str())
            .ok_or_else(missing)?;
        let failed = |reason: String| PipelineError::Load {
            name: wanted.name.clone(),
            version: wanted.version,
            reason,
        };
        let bytes = self
            .files
            .read(
                &version.sha256,
                self.runtime.config().max_component_bytes as u64,
            )
            .map_err(|e| failed(format!("its file: {e}")))?;
        let component = self
            .runtime
            .load_detector(&bytes)
            .map_err(|e| failed(e.to_string()))?
            .with_tenant_models(models.clone());
        Ok(ActiveDetector {
            name: wanted.name.clone(),
            version: wanted.version,
            config,
            component,
        })
    }

    /// The pipeline a batch segment of the stream runs: the live one when the stream is live here,
    /// else what the store says (blocking).
    pub fn for_batch(
        &self,
        handle: &Handle,
        tenant: &str,
        stream: &str,
    ) -> Result<Arc<Pipeline<runtime::DetectorComponent>>, PipelineError> {
        if lock(&self.live).contains_key(stream) {
            return Ok(self.registry.pipeline(stream));
        }
        let (detectors, change) = self.resolve(handle, tenant, Some(stream))?;
        let mut pipeline = Pipeline::new([(World::Detector, detectors)]);
        pipeline.change = change;
        Ok(Arc::new(pipeline))
    }

    /// Carries the bus's pipeline and model signals (sent by any API host) to the streams live
    /// here, until the subscription ends. Loading runs on a blocking thread, one signal after the
    /// other.
    pub async fn follow_signals(
        self: Arc<Self>,
        mut deliveries: tokio::sync::mpsc::Receiver<bus::Delivery>,
    ) {
        while let Some(delivery) = deliveries.recv().await {
            let bus::Delivery::Message(envelope) = delivery else {
                continue;
            };
            let stream = match &envelope.event {
                bus::Event::Control(bus::Control::Pipeline { stream, .. }) => stream.clone(),
                bus::Event::Control(bus::Control::Models { .. }) => None,
                _ => continue,
            };
            let (pipelines, handle) = (self.clone(), Handle::current());
            let tenant = envelope.tenant.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                pipelines.changed(&handle, &tenant, stream.as_deref())
            })
            .await;
            if let Err(e) = loaded {
                warn!("loading a pipeline failed: {e}");
            }
        }
    }
}
