//! The model manifest written by `scripts/fetch-models` (`$CACHE/models/manifest.json`): where the
//! ONNX Runtime library and each model file are, their labels, and the test fixtures.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::InferenceError;

#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    pub onnxruntime: LibraryEntry,
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub fixtures: Vec<FixtureEntry>,
    /// Tokenizer files by name (`clip-bpe`: CLIP's BPE vocabulary).
    #[serde(default)]
    pub tokenizers: std::collections::BTreeMap<String, FileRef>,
    /// The manifest's own folder (filled in by `load`).
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LibraryEntry {
    pub file: PathBuf,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
    #[serde(default)]
    pub labels: Option<FileRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileRef {
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FixtureEntry {
    pub name: String,
    pub file: PathBuf,
    #[serde(default)]
    pub expect: serde_json::Map<String, serde_json::Value>,
}

impl Catalog {
    /// The manifest to use: `MEDIA_ANALYZER_MODELS` (a manifest path), else
    /// `$MEDIA_ANALYZER_CACHE/models/manifest.json`, else `~/.cache/media-analyzer/models/manifest.json`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("MEDIA_ANALYZER_MODELS") {
            return PathBuf::from(p);
        }
        let cache = std::env::var_os("MEDIA_ANALYZER_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/media-analyzer")
            });
        cache.join("models/manifest.json")
    }

    pub fn load(path: &Path) -> Result<Self, InferenceError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InferenceError::Runtime(format!(
                "cannot read the model manifest {} ({e}); run scripts/fetch-models",
                path.display()
            ))
        })?;
        let mut catalog: Catalog = serde_json::from_str(&text).map_err(|e| {
            InferenceError::Runtime(format!("model manifest {}: {e}", path.display()))
        })?;
        catalog.dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(catalog)
    }

    fn resolve(&self, file: &Path) -> PathBuf {
        self.dir.join(file)
    }

    /// The ONNX Runtime library: `ORT_DYLIB_PATH` when set, else the one the manifest names.
    pub fn onnxruntime_library(&self) -> PathBuf {
        std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.resolve(&self.onnxruntime.file))
    }

    pub fn model(&self, name: &str) -> Result<&ModelEntry, InferenceError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| InferenceError::UnknownModel(name.to_string()))
    }

    pub fn model_path(&self, name: &str) -> Result<PathBuf, InferenceError> {
        Ok(self.resolve(&self.model(name)?.file))
    }

    /// The model's class names (one per line), if it has any.
    pub fn labels(&self, name: &str) -> Result<Vec<String>, InferenceError> {
        let Some(labels) = &self.model(name)?.labels else {
            return Ok(Vec::new());
        };
        let path = self.resolve(&labels.file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| InferenceError::Runtime(format!("labels {}: {e}", path.display())))?;
        Ok(text.lines().map(str::to_string).collect())
    }

    pub fn tokenizer_path(&self, name: &str) -> Option<PathBuf> {
        self.tokenizers.get(name).map(|t| self.resolve(&t.file))
    }

    pub fn fixture_path(&self, name: &str) -> Option<PathBuf> {
        self.fixtures
            .iter()
            .find(|f| f.name == name)
            .map(|f| self.resolve(&f.file))
    }
}
