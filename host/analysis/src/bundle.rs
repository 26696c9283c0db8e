//! The bundled detector components and the models they load, and where the built components are.

use std::path::{Path, PathBuf};

use anyhow::Context;
use inference::{Catalog, Model, SessionOptions};
use runtime::{
    Active, ActiveDetector, ModelRegistry, Runtime, SandboxConfig, SelectorComponent,
    TriggerComponent,
};

/// A bundled detector component and the models it loads by name.
pub type BundledComponent = (&'static str, &'static [&'static str]);

/// Every bundled detector.
pub const BUNDLED: [BundledComponent; 5] = [
    ("object-detector", &["nanodet-coco"]),
    ("face-detector", &["blazeface-back", "blazeface"]),
    // The tenant's reference logos: its graph `logos` is the tenant's (see TenantModels).
    ("logo-matcher", &[]),
    ("brand-text", &["ppocr-det", "ppocr-rec"]),
    // CLIP weights are user-supplied: `scripts/fetch-models --clip PATH`.
    ("clip-brands", &["clip"]),
];

/// Every bundled trigger: none runs unless a tenant's pipeline names it.
pub const BUNDLED_TRIGGERS: [&str; 1] = ["brand-rules"];

/// Every bundled effect selector: none runs unless a tenant's pipeline names it (or the
/// stream's effects are forced on).
pub const BUNDLED_SELECTORS: [&str; 3] = ["privacy-blur", "brand-spotlight", "scene-grade"];

/// What runs when nothing is chosen: brand-text (OCR, ~0.3 s a frame on a CPU) is opt-in.
pub const DEFAULT_COMPONENTS: [&str; 2] = ["object-detector", "face-detector"];

/// What live analysis loads, and a tenant's pipeline may name: the defaults, and `logo-matcher`
/// (which looks for the tenant's own logos, so it runs only where a pipeline names it).
pub const PICKABLE_COMPONENTS: [&str; 3] = ["object-detector", "face-detector", "logo-matcher"];

/// The bundled components with these names.
pub fn bundled(names: &[&str]) -> anyhow::Result<Vec<BundledComponent>> {
    names
        .iter()
        .map(|c| {
            BUNDLED
                .iter()
                .find(|(name, _)| name == c)
                .copied()
                .ok_or_else(|| {
                    let known: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
                    anyhow::anyhow!("unknown component '{c}' (bundled: {})", known.join(", "))
                })
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub struct ModelSettings {
    pub accelerator: inference::Accelerator,
    /// Sessions per model: runs of one model that may be in progress at once.
    pub sessions: usize,
    /// Niceness of the model threads (see [`inference::SessionOptions::nice`]).
    pub nice: i32,
}

/// The sandbox loaded with bundled detector components and the models they use.
pub struct Bundle {
    pub runtime: Runtime,
    /// In the order asked for; bundled components are version 0.
    pub components: Vec<ActiveDetector>,
}

/// Loads `wanted` components from `components_dir` and the models they use from the manifest,
/// beside `models` (graphs of the caller's own, such as a folder's logos).
pub fn load_bundle(
    wanted: &[BundledComponent],
    components_dir: &Path,
    settings: ModelSettings,
    mut models: ModelRegistry,
) -> anyhow::Result<Bundle> {
    let catalog = Catalog::load(&Catalog::default_path())?;
    inference::init_onnxruntime(&catalog.onnxruntime_library())?;
    for model in wanted.iter().flat_map(|(_, models)| models.iter()) {
        let options = SessionOptions {
            accelerator: settings.accelerator,
            sessions: settings.sessions.max(1),
            nice: settings.nice,
            ..SessionOptions::default()
        };
        let session = Model::load(model, &catalog.model_path(model)?, &options)?;
        tracing::info!(model, providers = ?session.providers(), "model loaded");
        models.insert(model.to_string(), session);
    }
    let runtime = Runtime::new(SandboxConfig::default(), models)?;
    let mut components = Vec::with_capacity(wanted.len());
    for (name, _) in wanted {
        components.push(ActiveDetector {
            name: name.to_string(),
            version: 0,
            config: Vec::new(),
            component: runtime.load_detector(&component_file(components_dir, name)?)?,
        });
    }
    Ok(Bundle {
        runtime,
        components,
    })
}

/// The bundled triggers ([`BUNDLED_TRIGGERS`]), compiled in `runtime`.
pub fn load_bundled_triggers(
    runtime: &Runtime,
    components_dir: &Path,
) -> anyhow::Result<Vec<Active<TriggerComponent>>> {
    load_bundled(
        &BUNDLED_TRIGGERS,
        runtime,
        components_dir,
        Runtime::load_trigger,
    )
}

/// The bundled effect selectors ([`BUNDLED_SELECTORS`]), compiled in `runtime`.
pub fn load_bundled_selectors(
    runtime: &Runtime,
    components_dir: &Path,
) -> anyhow::Result<Vec<Active<SelectorComponent>>> {
    load_bundled(
        &BUNDLED_SELECTORS,
        runtime,
        components_dir,
        Runtime::load_selector,
    )
}

/// The bundled components `names` (version 0), each compiled by `load`.
fn load_bundled<C>(
    names: &[&str],
    runtime: &Runtime,
    components_dir: &Path,
    load: impl Fn(&Runtime, &[u8]) -> Result<C, runtime::LoadError>,
) -> anyhow::Result<Vec<Active<C>>> {
    names
        .iter()
        .map(|name| {
            Ok(Active {
                name: name.to_string(),
                version: 0,
                config: Vec::new(),
                component: load(runtime, &component_file(components_dir, name)?)?,
            })
        })
        .collect()
}

/// The built file of the bundled component `name`.
fn component_file(components_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = components_dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).with_context(|| {
        format!(
            "{}: build the components with scripts/build-components",
            path.display()
        )
    })
}

/// Where `scripts/build-components` puts the components for this build of the binary.
pub fn default_components_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .nth(2)
                .map(|target| target.join("wasm32-wasip2/release"))
        })
        .unwrap_or_else(|| PathBuf::from("components"))
}

/// The folder given, or [`default_components_dir`].
pub fn components_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(default_components_dir)
}
