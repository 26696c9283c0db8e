//! The sandbox for tenant components (wasmtime, component model).
//!
//! - [`engine`]: hardening in one function — pooling allocator, epoch deadlines, memory limits.
//! - [`host`]: the host side of the detector world (frames, wasi-nn over the host's models, log).
//! - [`Runtime`]: validates and compiles components (cached by content hash), keeps one
//!   `InstancePre` per component version, and runs each call in a fresh store with a deadline,
//!   so a trap, a loop or a memory bomb in one call never affects another.

pub mod engine;
pub mod host;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_wit::detector::{Detector, DetectorPre};
use runtime_wit::{Detection, Frame};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

pub use engine::{EpochTicker, SandboxConfig};
pub use host::{CallState, ModelRegistry};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component does not fit the {world} world: {reason}")]
    WrongWorld { world: &'static str, reason: String },
    #[error("component of {0} bytes is larger than the {1}-byte limit")]
    TooLarge(usize, usize),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the component ran past its {0:?} deadline and was stopped")]
    Deadline(Duration),
    #[error("the component hit its memory limit")]
    OutOfMemory,
    #[error("the component trapped: {0}")]
    Trap(String),
    #[error("the component returned an error: {0}")]
    Component(String),
    #[error("the component returned {0} detections, more than the limit of {1}")]
    TooMuchOutput(usize, usize),
    #[error("could not start the component: {0}")]
    Instantiate(String),
}

/// The largest component accepted.
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;

/// A compiled detector, ready to instantiate.
#[derive(Clone)]
pub struct DetectorComponent {
    /// SHA-256 of the component bytes (the compile cache key).
    pub hash: String,
    pre: DetectorPre<CallState>,
}

impl std::fmt::Debug for DetectorComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorComponent")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// What one `detect` call produced.
#[derive(Debug)]
pub struct DetectOutcome {
    pub detections: Vec<Detection>,
    pub log: Vec<String>,
    /// Wall time of the whole call (instantiate + run).
    pub elapsed: Duration,
    /// Time spent in model runs inside the call.
    pub inference: Duration,
}

pub struct Runtime {
    engine: Engine,
    detector_linker: Linker<CallState>,
    models: Arc<ModelRegistry>,
    config: SandboxConfig,
    compiled: Mutex<HashMap<String, Component>>,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: SandboxConfig, models: ModelRegistry) -> wasmtime::Result<Self> {
        let engine = engine::engine(&config)?;
        let mut detector_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut detector_linker)?;
        Detector::add_to_linker::<CallState, HasSelf<CallState>>(&mut detector_linker, |s| s)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            engine,
            detector_linker,
            models: Arc::new(models),
            config,
            compiled: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    fn compile(&self, bytes: &[u8]) -> Result<(String, Component), LoadError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge(bytes.len(), MAX_COMPONENT_BYTES));
        }
        let hash = sha256_hex(bytes);
        if let Some(c) = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            return Ok((hash, c.clone()));
        }
        if !wasmparser_is_component(bytes) {
            return Err(LoadError::NotAComponent(
                "expected a component (build with --target wasm32-wasip2 or `wasm-tools component new`)".into(),
            ));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash.clone(), component.clone());
        Ok((hash, component))
    }

    /// Validates, compiles and links a detector component.
    pub fn load_detector(&self, bytes: &[u8]) -> Result<DetectorComponent, LoadError> {
        let (hash, component) = self.compile(bytes)?;
        let instance_pre = self
            .detector_linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld {
                world: "detector",
                reason: format!("{e:#}"),
            })?;
        let pre = DetectorPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            world: "detector",
            reason: format!("{e:#}"),
        })?;
        Ok(DetectorComponent { hash, pre })
    }

    /// Runs `detect` on one frame in a fresh instance, under the sandbox limits. Blocking: call
    /// it from a blocking thread.
    pub fn detect(
        &self,
        component: &DetectorComponent,
        frame: Frame,
        config: &[(String, String)],
    ) -> Result<DetectOutcome, CallError> {
        let started = Instant::now();
        let mut store = self.new_store();
        let result = (|| {
            let detector = component.pre.instantiate(&mut store)?;
            let frame = store.data_mut().table.push(frame)?;
            let borrowed = wasmtime::component::Resource::<Frame>::new_borrow(frame.rep());
            detector
                .media_analyzer_pipeline_detect()
                .call_detect(&mut store, borrowed, config)
        })();
        let log = store.data_mut().take_log();
        let inference = store.data().inference;
        let detections = match result {
            Ok(Ok(d)) => d,
            Ok(Err(message)) => return Err(CallError::Component(message)),
            Err(e) => return Err(self.classify(e)),
        };
        if detections.len() > self.config.max_detections {
            return Err(CallError::TooMuchOutput(
                detections.len(),
                self.config.max_detections,
            ));
        }
        Ok(DetectOutcome {
            detections,
            log,
            elapsed: started.elapsed(),
            inference,
        })
    }

    /// A fresh store for one call, under the sandbox limits: memory, deadline (a trap when passed).
    fn new_store(&self) -> Store<CallState> {
        let state = CallState::new(
            self.models.clone(),
            self.config.memory_bytes,
            self.config.log_bytes,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.config.deadline_ticks());
        store.epoch_deadline_trap();
        store
    }

    /// Creates (and drops) one instance without calling it: the per-call instantiation cost.
    pub fn instantiate_detector(
        &self,
        component: &DetectorComponent,
    ) -> Result<Duration, CallError> {
        let started = Instant::now();
        let mut store = self.new_store();
        component
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        drop(store);
        Ok(started.elapsed())
    }

    fn classify(&self, e: wasmtime::Error) -> CallError {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Deadline(self.config.deadline),
            Some(Trap::MemoryOutOfBounds) | Some(Trap::HeapMisaligned) => {
                CallError::Trap(format!("{e:#}"))
            }
            Some(_) => {
                let text = format!("{e:#}");
                if text.contains("memory") && text.contains("grow") {
                    CallError::OutOfMemory
                } else {
                    CallError::Trap(text)
                }
            }
            None => {
                let text = format!("{e:#}");
                if text.contains("forcing trap when growing memory")
                    || text.contains("memory minimum size")
                {
                    CallError::OutOfMemory
                } else {
                    CallError::Instantiate(text)
                }
            }
        }
    }
}

/// Components start with the preamble `\0asm` + layer 1 (core modules have layer 0).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
