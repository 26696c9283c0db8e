//! Tenants' own models on this host: the ONNX files a tenant uploaded, loaded when a pipeline of
//! its streams runs one of its components, and put in reach of that component's
//! `load-by-name` (beside the bundled models) — never of another tenant's.
//!
//! A tenant's models are loaded once and shared by its streams here; they are dropped (sessions
//! and threads freed) when no pipeline holds them any more. A model upload or delete signals the
//! tenant's streams to load their pipelines again, which loads the current versions.
//!
//! A tenant's reference logos (its brand catalogue) are one more model here: the native graph
//! `logos` ([`logos::graph`]), which the bundled `logo-matcher` runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use inference::{Model, SessionOptions};
use runtime::ModelRegistry;
use store::{ComponentFiles, Store};
use tokio::runtime::Handle;
use tracing::{info, warn};

use crate::lock;

/// The largest model file loaded (the upload limit is lower or equal).
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// The (name, sha256) of each model of a tenant, in name order, then ("logo:" brand, sha256) of
/// each reference logo: what is loaded.
type Versions = Vec<(String, String)>;

pub struct TenantModels {
    files: ComponentFiles,
    logo_files: ComponentFiles,
    options: SessionOptions,
    /// Per tenant: the versions loaded, and the models while a pipeline holds them.
    loaded: Mutex<HashMap<String, (Versions, Weak<ModelRegistry>)>>,
}

impl TenantModels {
    /// Models read from `files`, each loaded with `options` (one session is plenty: a tenant's
    /// model serves that tenant's streams only).
    pub fn new(files: ComponentFiles, logo_files: ComponentFiles, options: SessionOptions) -> Self {
        Self {
            files,
            logo_files,
            options,
            loaded: Mutex::default(),
        }
    }

    /// The tenant's current models, loaded (blocking: a store read, and the files when they
    /// changed since the last load). An empty registry when it has none.
    pub fn for_tenant(
        &self,
        handle: &Handle,
        store: &Store,
        tenant: &str,
    ) -> Result<Arc<ModelRegistry>, String> {
        let current = handle
            .block_on(store.current_models(tenant))
            .map_err(|e| format!("reading the tenant's models: {e}"))?;
        let brands = handle
            .block_on(store.brands(tenant))
            .map_err(|e| format!("reading the tenant's brands: {e}"))?;
        let logos = handle
            .block_on(store.brand_logos(tenant, None))
            .map_err(|e| format!("reading the tenant's logos: {e}"))?;
        let wanted: Versions = current
            .iter()
            .map(|m| (m.name.clone(), m.sha256.clone()))
            .chain(
                logos
                    .iter()
                    .map(|l| (format!("logo:{}", l.brand), l.sha256.clone())),
            )
            .collect();
        if wanted.is_empty() {
            return Ok(Arc::default());
        }
        if let Some((loaded, models)) = lock(&self.loaded).get(tenant)
            && *loaded == wanted
            && let Some(models) = models.upgrade()
        {
            return Ok(models);
        }
        let mut models = ModelRegistry::new();
        if !logos.is_empty() {
            let index = self.logo_index(tenant, &brands, &logos);
            let graph = logos::graph::logo_model(Arc::new(index), &self.options)
                .map_err(|e| format!("the logo matcher: {e}"))?;
            models.insert(logos::graph::GRAPH.to_string(), graph);
        }
        for (name, sha256) in current.iter().map(|m| (&m.name, &m.sha256)) {
            let bytes = self
                .files
                .read(sha256, MAX_MODEL_BYTES)
                .map_err(|e| format!("model {name}: its file: {e}"))?;
            let model = Model::load_bytes(name, &bytes, &self.options)
                .map_err(|e| format!("model {name}: {e}"))?;
            models.insert(name.clone(), model);
        }
        info!(%tenant, models = ?models.keys().collect::<Vec<_>>(), "tenant models loaded");
        let models = Arc::new(models);
        let mut loaded = lock(&self.loaded);
        loaded.retain(|_, (_, held)| held.strong_count() > 0);
        loaded.insert(tenant.to_string(), (wanted, Arc::downgrade(&models)));
        Ok(models)
    }
}

impl TenantModels {
    /// The tenant's reference logos, each under its brand's name; a logo that cannot be read
    /// is left out (logged), the others count.
    fn logo_index(
        &self,
        tenant: &str,
        brands: &[store::Brand],
        logos: &[store::BrandLogo],
    ) -> logos::LogoIndex {
        let mut index = logos::LogoIndex::new();
        for logo in logos {
            let name = brands
                .iter()
                .find(|b| b.folded == logo.brand)
                .map_or(logo.brand.as_str(), |b| b.name.as_str());
            let added = self
                .logo_files
                .read(&logo.sha256, logos::image::MAX_LOGO_BYTES as u64)
                .map_err(|e| e.to_string())
                .and_then(|bytes| index.add_file(name, &bytes).map_err(|e| e.to_string()));
            if let Err(e) = added {
                warn!(%tenant, logo = %logo.id, brand = %logo.brand, "a reference logo is left out: {e}");
            }
        }
        index
    }
}

/// Why an uploaded model was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelRefusal {
    /// Not a model the host takes (the reason says why): a 422 for the uploader.
    #[error("{0}")]
    Invalid(String),
    /// Another model is being checked (or a check that took too long has not ended yet).
    #[error("another model is being checked")]
    Busy,
}

/// The check of an uploaded model before it is stored: a bounded walk of the file
/// ([`inference::check_onnx`]: self-contained, within nesting and size limits), then ONNX Runtime
/// loading it on a thread of its own, one upload at a time, within `timeout`. A load past the
/// timeout is refused, and no other check starts until that load has ended.
pub struct ModelUploadCheck {
    timeout: std::time::Duration,
    checking: Arc<std::sync::atomic::AtomicBool>,
}

impl ModelUploadCheck {
    pub fn new(timeout: std::time::Duration) -> Self {
        Self {
            timeout,
            checking: Arc::default(),
        }
    }

    /// The model's inputs and outputs when it is taken. Blocking.
    pub fn check(
        &self,
        bytes: &[u8],
    ) -> Result<(Vec<inference::TensorInfo>, Vec<inference::TensorInfo>), ModelRefusal> {
        use std::sync::atomic::Ordering;
        inference::check_onnx(bytes).map_err(|e| ModelRefusal::Invalid(e.to_string()))?;
        if self.checking.swap(true, Ordering::AcqRel) {
            return Err(ModelRefusal::Busy);
        }
        let (done, result) = std::sync::mpsc::sync_channel(1);
        let (bytes, checking) = (bytes.to_vec(), self.checking.clone());
        let options = SessionOptions {
            queue: 1,
            accelerator: inference::Accelerator::Cpu,
            ..SessionOptions::default()
        };
        let started = std::thread::Builder::new()
            .name("model-check".into())
            .spawn(move || {
                let loaded = Model::load_bytes("upload", &bytes, &options)
                    .map(|m| (m.inputs().to_vec(), m.outputs().to_vec()));
                let _ = done.send(loaded);
                checking.store(false, Ordering::Release);
            });
        if let Err(e) = started {
            self.checking.store(false, Ordering::Release);
            return Err(ModelRefusal::Invalid(format!(
                "cannot start the model check: {e}"
            )));
        }
        match result.recv_timeout(self.timeout) {
            Ok(Ok(signature)) => Ok(signature),
            Ok(Err(e)) => Err(ModelRefusal::Invalid(match e {
                inference::InferenceError::Load { reason, .. } => {
                    format!("ONNX Runtime cannot load it: {reason}")
                }
                other => other.to_string(),
            })),
            Err(_) => Err(ModelRefusal::Invalid(format!(
                "ONNX Runtime took more than {:?} to load it",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_that_are_not_self_contained_models_are_refused_before_onnx_runtime() {
        // No ONNX Runtime is loaded in this test: these never reach it.
        let check = ModelUploadCheck::new(std::time::Duration::from_secs(5));
        for bytes in [&b"not a model"[..], b"\0asm\x01\0\0\0", &[]] {
            assert!(matches!(check.check(bytes), Err(ModelRefusal::Invalid(_))));
        }
    }
}
