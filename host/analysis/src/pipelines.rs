//! What runs on each stream live on this host: its detectors and triggers, loaded from what the
//! tenant stored (per world, the stream's own stage, else the tenant's default, else the bundled
//! detectors and no triggers), swapped in when a pipeline signal arrives.
//!
//! A stream's pipeline is loaded before its first frame is analysed, and again on each signal for
//! it (or for its tenant's default). Loading (a store read, the component file, a compile that the
//! upload check has usually cached already) happens beside the analysers; the swap itself is one
//! pointer in the [`DetectorRegistry`], so the next frame runs the new versions and frames in
//! flight finish on the old ones. Triggers are swapped likewise in their own [`TriggerRegistry`]:
//! they run on each frame's results as the results leave, in frame order.
//!
//! A trigger's state ([`RuleState`]) is kept per tenant and component name on this host, so a new
//! version, a restarted stream or a second stream of the tenant sees what the last call kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use runtime::{
    Active, ActiveDetector, ActiveSelector, ActiveTrigger, DetectorRegistry, Pipeline, RuleState,
    Runtime, SelectorComponent, SelectorRegistry, TenantTrigger, TriggerComponent, TriggerRegistry,
    World,
};
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
    /// Per live stream, its triggers (none until its pipeline is loaded).
    triggers: TriggerRegistry,
    /// The bundled detectors a pipeline may name (version 0): the defaults and those that run only
    /// where named.
    bundled_detectors: Vec<ActiveDetector>,
    /// The bundled triggers a pipeline may name (version 0).
    bundled_triggers: Vec<Active<TriggerComponent>>,
    /// Per live stream, its effect selectors (none until its pipeline is loaded).
    selectors: SelectorRegistry,
    /// The bundled effect selectors a pipeline may name (version 0).
    bundled_selectors: Vec<ActiveSelector>,
    /// Per tenant and trigger name, what its calls keep.
    rule_states: Mutex<HashMap<(String, String), Arc<RuleState>>>,
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
    /// Per live stream, the effect kinds its control forces off.
    effects_off: Mutex<HashMap<String, EffectsOff>>,
}

/// Effect kinds a stream's control forces off (never rendered, whatever a selector chooses).
pub type EffectsOff = Arc<Vec<&'static str>>;

/// The bundled selector that blurs faces: a stream it runs on fails closed when its analysis
/// stalls ([`rendition::OnStall::Auto`]).
pub const PRIVACY_SELECTOR: &str = "privacy-blur";

/// The bundled selector that a stream's control forcing each effect kind on runs.
pub const FORCED_SELECTORS: [(&str, &str); 3] = [
    ("blur", PRIVACY_SELECTOR),
    ("highlight", "brand-spotlight"),
    ("colour-grade", "scene-grade"),
];

/// Whether the component with this label (as events name it) may leave a blur out when it
/// fails: any detector (the selectors choose from what it finds) or selector but the bundled
/// selectors of the other kinds (`brand-spotlight` highlights, `scene-grade` grades). A frame on
/// which one of these failed has incomplete effects: a face may lack its blur.
pub fn may_blur(label: &str) -> bool {
    FORCED_SELECTORS
        .iter()
        .all(|(kind, name)| *kind == "blur" || label != *name)
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
            self.pipelines.triggers.remove(&self.stream);
            self.pipelines.selectors.remove(&self.stream);
            lock(&self.pipelines.effects_off).remove(&self.stream);
        }
    }
}

/// A stream's pipeline as stored, compiled: per world, its components and the change that set
/// them (`None`: nothing stored, so the bundled detectors and no triggers).
pub struct Resolved {
    pub detectors: Vec<ActiveDetector>,
    pub detector_change: Option<String>,
    pub triggers: Vec<ActiveTrigger>,
    pub trigger_change: Option<String>,
    pub selectors: Vec<ActiveSelector>,
    pub selector_change: Option<String>,
    /// Effect kinds the stream's control forces off.
    pub effects_off: EffectsOff,
}

/// What a frame or a batch segment runs: a snapshot of each registry.
pub struct StreamPipeline {
    pub detectors: Arc<Pipeline<runtime::DetectorComponent>>,
    pub triggers: Arc<Pipeline<TenantTrigger>>,
    pub selectors: Arc<Pipeline<SelectorComponent>>,
    /// Effect kinds the stream's control forces off: dropped from what the selectors choose.
    pub effects_off: EffectsOff,
}

/// The bundled triggers and effect selectors a pipeline may name (none runs unless named).
pub struct BundledStages {
    pub triggers: Vec<Active<TriggerComponent>>,
    pub selectors: Vec<ActiveSelector>,
}

/// A stage component's settings, as the component reads them.
/// The stage's selectors under the stream's effects control: the bundled selector of each
/// kind forced on added (once), the kind's settings over the config of its bundled selector
/// wherever it runs, the kinds forced off listed; the change names the control, so a new
/// control swaps the selectors in even when the stage stayed the same.
fn controlled<C: Clone>(
    bundled_selectors: &[Active<C>],
    mut selectors: Vec<Active<C>>,
    change: Option<String>,
    control: &store::EffectsControl,
) -> (Vec<Active<C>>, Option<String>, EffectsOff) {
    if control.is_auto() {
        return (selectors, change, EffectsOff::default());
    }
    let mut off = Vec::new();
    let mut tag = Vec::new();
    let kinds = control.kinds().into_iter().zip(control.settings.kinds());
    for (((kind, forced), (_, settings)), (_, name)) in kinds.zip(FORCED_SELECTORS) {
        let bundled = |s: &Active<C>| s.name == name && s.version == 0;
        match forced {
            store::Forced::Auto => {}
            store::Forced::Off => off.push(kind),
            store::Forced::On => {
                if !selectors.iter().any(bundled)
                    && let Some(b) = bundled_selectors.iter().find(|s| s.name == name)
                {
                    selectors.push(b.clone());
                }
            }
        }
        for selector in selectors.iter_mut().filter(|s| bundled(s)) {
            for (key, value) in settings {
                selector.config.retain(|(k, _)| k != key);
                selector.config.push((key.clone(), value.clone()));
            }
        }
        if forced != store::Forced::Auto || !settings.is_empty() {
            let forced = format!("{forced:?}").to_lowercase();
            tag.push(format!("{kind}={forced}{settings:?}"));
        }
    }
    let change = format!(
        "{}+{}",
        change.as_deref().unwrap_or("bundled"),
        tag.join(",")
    );
    (selectors, Some(change), Arc::new(off))
}

fn settings(wanted: &StageComponent) -> Vec<(String, String)> {
    wanted
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn load_failed(wanted: &StageComponent, reason: String) -> PipelineError {
    PipelineError::Load {
        name: wanted.name.clone(),
        version: wanted.version,
        reason,
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
    /// `bundled`: the detectors a tenant may name without uploading, of which `defaults` (by
    /// name) run when it chose none; `stages`: the bundled triggers and effect selectors (none
    /// runs unless chosen).
    pub fn new(
        runtime: Arc<Runtime>,
        bundled: Vec<ActiveDetector>,
        defaults: &[&str],
        stages: BundledStages,
        store: Store,
        files: ComponentFiles,
        models: TenantModels,
    ) -> Self {
        Self {
            runtime,
            registry: DetectorRegistry::new(Pipeline::new([(
                World::Detector,
                bundled
                    .iter()
                    .filter(|b| defaults.contains(&b.name.as_str()))
                    .cloned()
                    .collect(),
            )])),
            bundled_detectors: bundled,
            triggers: TriggerRegistry::new(Pipeline::new([])),
            bundled_triggers: stages.triggers,
            selectors: SelectorRegistry::new(Pipeline::new([])),
            bundled_selectors: stages.selectors,
            rule_states: Mutex::default(),
            store,
            files,
            models,
            live: Mutex::default(),
            sessions: AtomicU64::new(1),
            loading: Mutex::new(()),
            load_failures: AtomicU64::new(0),
            effects_off: Mutex::default(),
        }
    }

    /// The bundled detectors a pipeline may name.
    pub fn bundled(&self) -> &[ActiveDetector] {
        &self.bundled_detectors
    }

    /// The detectors streams run when their tenant chose none.
    pub fn defaults(&self) -> &[ActiveDetector] {
        self.registry.defaults(World::Detector)
    }

    /// The stream's detectors and triggers now (one snapshot per frame).
    pub fn for_frame(&self, stream: &str) -> StreamPipeline {
        StreamPipeline {
            detectors: self.registry.pipeline(stream),
            triggers: self.triggers.pipeline(stream),
            selectors: self.selectors.pipeline(stream),
            effects_off: lock(&self.effects_off)
                .get(stream)
                .cloned()
                .unwrap_or_default(),
        }
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
            Ok(resolved) => self.swap_in(stream, resolved),
            Err(e) => {
                self.load_failures.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, "cannot load the stream's pipeline, keeping what runs: {e}");
            }
        }
    }

    /// Swaps a resolved pipeline in for the stream, each world in one step.
    fn swap_in(&self, stream: &str, resolved: Resolved) {
        let Resolved {
            detectors,
            detector_change,
            triggers,
            trigger_change,
            selectors,
            selector_change,
            effects_off,
        } = resolved;
        if self.registry.pipeline(stream).change != detector_change {
            let labels: Vec<String> = detectors.iter().map(ActiveDetector::label).collect();
            info!(%stream, change = ?detector_change, detectors = ?labels, "pipeline loaded");
        }
        if self.triggers.pipeline(stream).change != trigger_change {
            let labels: Vec<String> = triggers.iter().map(ActiveTrigger::label).collect();
            info!(%stream, change = ?trigger_change, triggers = ?labels, "triggers loaded");
        }
        self.registry
            .swap(stream, World::Detector, detectors, detector_change);
        self.triggers
            .swap(stream, World::Trigger, triggers, trigger_change);
        if self.selectors.pipeline(stream).change != selector_change {
            let labels: Vec<String> = selectors.iter().map(ActiveSelector::label).collect();
            info!(%stream, change = ?selector_change, effects = ?labels, "effect selectors loaded");
        }
        self.selectors
            .swap(stream, World::Effects, selectors, selector_change);
        lock(&self.effects_off).insert(stream.to_string(), effects_off);
    }

    /// What is stored for the tenant's stream, per world (its own stage, else the tenant's
    /// default), compiled, with the change that set each; where nothing is stored, the bundled
    /// detectors and no triggers. Blocking: it reads the store through `handle`.
    pub fn resolve(
        &self,
        handle: &Handle,
        tenant: &str,
        stream: Option<&str>,
    ) -> Result<Resolved, PipelineError> {
        let stages = handle.block_on(self.store.pipeline_stages(tenant))?;
        let stage = |world: World| {
            let find = |scope: Option<&str>| {
                stages
                    .iter()
                    .find(|s| s.world == world.as_str() && s.stream_id.as_deref() == scope)
            };
            stream.and_then(|s| find(Some(s))).or_else(|| find(None))
        };
        let (detector_stage, trigger_stage) = (stage(World::Detector), stage(World::Trigger));
        let (detectors, detector_change) = match detector_stage {
            None => (self.defaults().to_vec(), None),
            Some(stage) => {
                // The tenant's own models are in reach of every component its pipeline runs (a
                // bundled detector may be pointed at the tenant's weights by a setting).
                let models = self
                    .models
                    .for_tenant(handle, &self.store, tenant)
                    .map_err(PipelineError::Models)?;
                let detectors = stage
                    .components
                    .iter()
                    .map(|c| self.load(handle, tenant, c, &models))
                    .collect::<Result<Vec<_>, _>>()?;
                (detectors, Some(stage.change.clone()))
            }
        };
        let (triggers, trigger_change) = match trigger_stage {
            None => (Vec::new(), None),
            Some(stage) => (
                stage
                    .components
                    .iter()
                    .map(|c| self.load_trigger(handle, tenant, c))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(stage.change.clone()),
            ),
        };
        let (selectors, selector_change) = match stage(World::Effects) {
            None => (Vec::new(), None),
            Some(stage) => (
                stage
                    .components
                    .iter()
                    .map(|c| self.load_selector(handle, tenant, c))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(stage.change.clone()),
            ),
        };
        let control = match stream {
            Some(stream) => handle.block_on(self.store.effects_control(stream))?,
            None => store::EffectsControl::default(),
        };
        let (selectors, selector_change, effects_off) = controlled(
            &self.bundled_selectors,
            selectors,
            selector_change,
            &control,
        );
        Ok(Resolved {
            detectors,
            detector_change,
            triggers,
            trigger_change,
            selectors,
            selector_change,
            effects_off,
        })
    }

    /// The state `tenant`'s trigger `name` keeps on this host.
    fn rule_state(&self, tenant: &str, name: &str) -> Arc<RuleState> {
        lock(&self.rule_states)
            .entry((tenant.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    /// The component `wanted` names: a bundled one (version 0) from `bundled`, else the
    /// tenant's upload of `world`, compiled by `load`.
    fn component<C: Clone>(
        &self,
        handle: &Handle,
        tenant: &str,
        wanted: &StageComponent,
        world: World,
        bundled: &[Active<C>],
        load: impl FnOnce(&Runtime, &[u8]) -> Result<C, runtime::LoadError>,
    ) -> Result<C, PipelineError> {
        if wanted.version == 0 {
            return Ok(bundled
                .iter()
                .find(|b| b.name == wanted.name)
                .ok_or_else(|| PipelineError::NotBundled(wanted.name.clone()))?
                .component
                .clone());
        }
        let bytes = self.uploaded_file(handle, tenant, wanted, world)?;
        load(&self.runtime, &bytes).map_err(|e| load_failed(wanted, e.to_string()))
    }

    fn load_trigger(
        &self,
        handle: &Handle,
        tenant: &str,
        wanted: &StageComponent,
    ) -> Result<ActiveTrigger, PipelineError> {
        let component = self.component(
            handle,
            tenant,
            wanted,
            World::Trigger,
            &self.bundled_triggers,
            Runtime::load_trigger,
        )?;
        Ok(Active {
            name: wanted.name.clone(),
            version: wanted.version,
            config: settings(wanted),
            component: TenantTrigger {
                component,
                state: self.rule_state(tenant, &wanted.name),
            },
        })
    }

    fn load_selector(
        &self,
        handle: &Handle,
        tenant: &str,
        wanted: &StageComponent,
    ) -> Result<ActiveSelector, PipelineError> {
        let component = self.component(
            handle,
            tenant,
            wanted,
            World::Effects,
            &self.bundled_selectors,
            Runtime::load_selector,
        )?;
        Ok(Active {
            name: wanted.name.clone(),
            version: wanted.version,
            config: settings(wanted),
            component,
        })
    }

    /// The file of the tenant's upload `wanted`, which must be of `world`.
    fn uploaded_file(
        &self,
        handle: &Handle,
        tenant: &str,
        wanted: &StageComponent,
        world: World,
    ) -> Result<Vec<u8>, PipelineError> {
        let version = handle
            .block_on(
                self.store
                    .component_version(tenant, &wanted.name, Some(wanted.version)),
            )?
            .filter(|v| v.world == world.as_str())
            .ok_or_else(|| PipelineError::Missing {
                name: wanted.name.clone(),
                version: wanted.version,
            })?;
        self.files
            .read(
                &version.sha256,
                self.runtime.config().max_component_bytes as u64,
            )
            .map_err(|e| load_failed(wanted, format!("its file: {e}")))
    }

    fn load(
        &self,
        handle: &Handle,
        tenant: &str,
        wanted: &StageComponent,
        models: &Arc<runtime::ModelRegistry>,
    ) -> Result<ActiveDetector, PipelineError> {
        if wanted.version == 0 {
            let bundled = self
                .bundled()
                .iter()
                .find(|b| b.name == wanted.name)
                .ok_or_else(|| PipelineError::NotBundled(wanted.name.clone()))?;
            return Ok(ActiveDetector {
                config: settings(wanted),
                component: bundled.component.with_tenant_models(models.clone()),
                ..bundled.clone()
            });
        }
        let bytes = self.uploaded_file(handle, tenant, wanted, World::Detector)?;
        let component = self
            .runtime
            .load_detector(&bytes)
            .map_err(|e| load_failed(wanted, e.to_string()))?
            .with_tenant_models(models.clone());
        Ok(ActiveDetector {
            name: wanted.name.clone(),
            version: wanted.version,
            config: settings(wanted),
            component,
        })
    }

    /// The pipeline a batch segment of the stream runs (detectors and triggers): the live one
    /// when the stream is live here, else what the store says (blocking).
    pub fn for_batch(
        &self,
        handle: &Handle,
        tenant: &str,
        stream: &str,
    ) -> Result<StreamPipeline, PipelineError> {
        if lock(&self.live).contains_key(stream) {
            return Ok(self.for_frame(stream));
        }
        let resolved = self.resolve(handle, tenant, Some(stream))?;
        let mut detectors = Pipeline::new([(World::Detector, resolved.detectors)]);
        detectors.change = resolved.detector_change;
        let mut triggers = Pipeline::new([(World::Trigger, resolved.triggers)]);
        triggers.change = resolved.trigger_change;
        let mut selectors = Pipeline::new([(World::Effects, resolved.selectors)]);
        selectors.change = resolved.selector_change;
        Ok(StreamPipeline {
            detectors: Arc::new(detectors),
            triggers: Arc::new(triggers),
            selectors: Arc::new(selectors),
            effects_off: resolved.effects_off,
        })
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
                bus::Event::Control(bus::Control::Models { .. } | bus::Control::Brands {}) => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use store::{EffectsControl, Forced};

    fn selector(name: &str, version: u32, config: &[(&str, &str)]) -> Active<()> {
        Active {
            name: name.into(),
            version,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            component: (),
        }
    }

    fn bundled() -> Vec<Active<()>> {
        FORCED_SELECTORS
            .iter()
            .map(|(_, name)| selector(name, 0, &[]))
            .collect()
    }

    #[test]
    fn only_the_bundled_highlight_and_grade_never_blur() {
        assert!(may_blur("privacy-blur"));
        assert!(!may_blur("brand-spotlight"));
        assert!(!may_blur("scene-grade"));
        // A tenant's upload of the same name is its own code.
        assert!(may_blur("scene-grade@2"));
        assert!(may_blur("my-selector@1"));
    }

    #[test]
    fn auto_leaves_the_stage_as_it_is() {
        let stage = vec![selector("privacy-blur", 0, &[("grow", "0.2")])];
        let (selectors, change, off) = controlled(
            &bundled(),
            stage.clone(),
            Some("chg_1".into()),
            &EffectsControl::default(),
        );
        assert_eq!(selectors, stage);
        assert_eq!(change.as_deref(), Some("chg_1"));
        assert!(off.is_empty());
    }

    #[test]
    fn forced_kinds_run_their_bundled_selector_with_the_control_settings() {
        let mut control = EffectsControl {
            blur: Forced::On,
            highlight: Forced::Off,
            ..EffectsControl::default()
        };
        control
            .settings
            .blur
            .insert("style".into(), "pixelate".into());
        // The pipeline runs privacy-blur with its own settings and a tenant's selector.
        let stage = vec![
            selector("privacy-blur", 0, &[("grow", "0.2"), ("style", "gaussian")]),
            selector("my-blur", 3, &[("style", "gaussian")]),
        ];
        let (selectors, change, off) =
            controlled(&bundled(), stage, Some("chg_1".into()), &control);
        assert_eq!(
            selectors,
            vec![
                selector("privacy-blur", 0, &[("grow", "0.2"), ("style", "pixelate")]),
                selector("my-blur", 3, &[("style", "gaussian")]),
            ],
            "the control's settings over the pipeline's, once; a tenant's selector untouched"
        );
        assert_eq!(*off, vec!["highlight"]);
        let change = change.unwrap();
        // Forced on without the pipeline naming it: the bundled one, with the settings.
        let (selectors, _, _) = controlled(&bundled(), Vec::new(), None, &control);
        assert_eq!(
            selectors,
            vec![selector("privacy-blur", 0, &[("style", "pixelate")])]
        );
        // Another setting (even one differing only in case) is another change: the stream swaps.
        control.settings.blur.insert("labels".into(), "Face".into());
        let (_, again, _) = controlled(&bundled(), Vec::new(), Some("chg_1".into()), &control);
        control.settings.blur.insert("labels".into(), "face".into());
        let (_, lower, _) = controlled(&bundled(), Vec::new(), Some("chg_1".into()), &control);
        assert_ne!(again.as_deref(), Some(change.as_str()));
        assert_ne!(again, lower);
    }

    #[test]
    fn settings_alone_apply_to_the_bundled_selector_the_pipeline_runs() {
        let mut control = EffectsControl::default();
        control
            .settings
            .colour_grade
            .insert("look".into(), "warm".into());
        let (selectors, change, off) = controlled(
            &bundled(),
            vec![selector("scene-grade", 0, &[])],
            Some("chg_2".into()),
            &control,
        );
        assert_eq!(
            selectors,
            vec![selector("scene-grade", 0, &[("look", "warm")])]
        );
        assert!(off.is_empty());
        assert_ne!(change.as_deref(), Some("chg_2"));
        // Nothing forced on: settings do not start a selector the pipeline does not run.
        let (selectors, _, _) = controlled(&bundled(), Vec::new(), None, &control);
        assert!(selectors.is_empty());
    }
}
