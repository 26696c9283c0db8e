//! The sandbox for tenant components (wasmtime, component model).
//!
//! - [`engine`]: hardening in one function — pooling allocator, epoch deadlines, memory limits.
//! - [`host`]: the host side of the detector world (frames, wasi-nn over the host's models, log).
//! - [`args`]: the host calls' argument checks as plain functions (what the fuzz target drives).
//! - [`registry`]: per tenant and world, the active component versions, swapped atomically.
//! - [`upload`]: what an uploaded component must be before it is stored.
//! - [`Runtime`]: validates and compiles components (on a compile thread, cached by content
//!   hash, LRU by bytes), keeps one `InstancePre` per component version, and runs each call in a
//!   fresh store with a deadline (also inside host calls that wait), a host memory budget and
//!   output limits checked while copying, so a trap, a loop, a sleep, a memory bomb or a host
//!   panic in one call never affects another.

pub mod args;
pub mod engine;
pub mod host;
mod poll;
pub mod registry;
pub mod selector;
pub mod spin;
pub mod spin_app;
pub mod trigger;
pub mod upload;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_wit::detector::{Detector, DetectorPre};
use runtime_wit::effect_selector::{EffectSelector, EffectSelectorPre};
use runtime_wit::trigger::{Trigger, TriggerPre};
use runtime_wit::{Alert, Detection, Effect, Frame, FrameInfo};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, Resource};
use wasmtime::{Engine, Store, Trap};

pub use args::{ArgError, HostLimit, OutputLimit};
pub use engine::{EpochTicker, SandboxConfig};
pub use host::{CallState, ModelRegistry, ModelScope};
pub use registry::{Active, Pipeline, Registry, World};
pub use trigger::RuleState;
pub use upload::Checked;

/// The detector components active per tenant.
pub type DetectorRegistry = Registry<DetectorComponent>;
/// One detector component version in a pipeline.
pub type ActiveDetector = Active<DetectorComponent>;
/// The trigger components active per stream.
pub type TriggerRegistry = Registry<TenantTrigger>;
/// One trigger component version in a pipeline.
pub type ActiveTrigger = Active<TenantTrigger>;
/// The effect-selector components active per stream.
pub type SelectorRegistry = Registry<SelectorComponent>;
/// One effect-selector component version in a pipeline.
pub type ActiveSelector = Active<SelectorComponent>;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component does not fit the {world} world: {reason}")]
    WrongWorld { world: &'static str, reason: String },
    #[error(
        "the component imports {import}, which the {world} world does not allow (components get no filesystem, network or HTTP)"
    )]
    ForbiddenImport { world: &'static str, import: String },
    #[error("component of {0} bytes is larger than the {1}-byte limit (max_component_bytes)")]
    TooLarge(usize, usize),
    #[error("compiling the component took longer than {0:?} (compile_timeout)")]
    CompileTimeout(Duration),
    #[error("{0} components are already waiting to be compiled (compile_queue); try again later")]
    CompileBusy(usize),
    #[error("the compiler failed: {0}")]
    Compiler(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the component ran past its {0:?} deadline and was stopped")]
    Deadline(Duration),
    #[error("the component hit its memory limit")]
    OutOfMemory,
    #[error(
        "the component's host memory (tensors, crops, model outputs) passed the per-call budget of {limit} bytes (host_memory_bytes)"
    )]
    HostMemory { limit: usize },
    #[error("the component passed a bad argument to a host call: {0}")]
    BadArgument(ArgError),
    #[error("the component trapped: {0}")]
    Trap(String),
    #[error("the component returned an error: {0}")]
    Component(String),
    #[error("the component returned {0} detections, more than the limit of {1}")]
    TooMuchOutput(usize, usize),
    #[error("the component's output is too large: {0}")]
    OutputLimit(OutputLimit),
    #[error(
        "the component tried to copy more than {limit} bytes into the host in one go (max_transfer_bytes)"
    )]
    TooMuchData { limit: usize },
    #[error("a host call panicked while serving the component (caught and counted): {0}")]
    HostPanic(String),
    #[error("could not start the component: {0}")]
    Instantiate(String),
    #[error("the input is {bytes} bytes, more than the limit of {limit}")]
    InputTooLarge { bytes: usize, limit: usize },
}

/// A compiled detector, ready to instantiate.
#[derive(Clone)]
pub struct DetectorComponent {
    /// SHA-256 of the component bytes (the compile cache key).
    pub hash: String,
    pre: DetectorPre<CallState>,
    /// Its tenant's own models, in reach of `load-by-name` beside the bundled ones (none for a
    /// bundled component).
    tenant_models: Arc<ModelRegistry>,
}

impl DetectorComponent {
    /// The same component with `models` (its tenant's) in reach of `load-by-name`.
    pub fn with_tenant_models(&self, models: Arc<ModelRegistry>) -> Self {
        Self {
            tenant_models: models,
            ..self.clone()
        }
    }

    /// Its tenant's models (the bundled ones are the runtime's).
    fn models(&self) -> ModelScope {
        ModelScope {
            bundled: Arc::default(),
            tenant: self.tenant_models.clone(),
        }
    }
}

impl std::fmt::Debug for DetectorComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorComponent")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A compiled trigger, ready to instantiate.
#[derive(Clone)]
pub struct TriggerComponent {
    /// SHA-256 of the component bytes (the compile cache key).
    pub hash: String,
    pre: TriggerPre<CallState>,
}

impl std::fmt::Debug for TriggerComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerComponent")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A trigger as a tenant runs it: the compiled component and the state its calls share (one
/// [`RuleState`] per tenant and component name, so a new version keeps what the last one kept).
#[derive(Debug, Clone)]
pub struct TenantTrigger {
    pub component: TriggerComponent,
    pub state: Arc<RuleState>,
}

/// One `on-detections` call: the alerts it raised, what it logged, and its time.
#[derive(Debug)]
pub struct RulesCall {
    pub result: Result<Vec<Alert>, CallError>,
    pub log: Vec<String>,
    pub elapsed: Duration,
}

/// A compiled effect selector, ready to instantiate.
#[derive(Clone)]
pub struct SelectorComponent {
    /// SHA-256 of the component bytes (the compile cache key).
    pub hash: String,
    pre: EffectSelectorPre<CallState>,
}

impl std::fmt::Debug for SelectorComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectorComponent")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// One `select` call: the effects it chose, what it logged, and its time.
#[derive(Debug)]
pub struct SelectCall {
    pub result: Result<Vec<Effect>, CallError>,
    pub log: Vec<String>,
    pub elapsed: Duration,
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

/// One `detect` call: its outcome, and what the component logged when it failed (a successful
/// call's log is in its [`DetectOutcome`]).
#[derive(Debug)]
pub struct LoggedCall {
    pub result: Result<DetectOutcome, CallError>,
    pub failed_log: Vec<String>,
    /// Wall time of the whole call.
    pub elapsed: Duration,
}

/// The compile cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    /// Compiled code held, bytes.
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

pub struct Runtime {
    detector_linker: Linker<CallState>,
    trigger_linker: Linker<CallState>,
    selector_linker: Linker<CallState>,
    models: Arc<ModelRegistry>,
    config: SandboxConfig,
    compiled: Mutex<CompileCache>,
    compiler: Compiler,
    /// Host calls that panicked (caught: the call failed, the runtime went on).
    host_panics: AtomicU64,
    engine: Engine,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: SandboxConfig, models: ModelRegistry) -> wasmtime::Result<Self> {
        let engine = engine::engine(&config)?;
        let mut detector_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut detector_linker)?;
        poll::add_to_linker(&mut detector_linker)?;
        Detector::add_to_linker::<CallState, HasSelf<CallState>>(&mut detector_linker, |s| s)?;
        let mut trigger_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut trigger_linker)?;
        poll::add_to_linker(&mut trigger_linker)?;
        Trigger::add_to_linker::<CallState, HasSelf<CallState>>(&mut trigger_linker, |s| s)?;
        let mut selector_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut selector_linker)?;
        poll::add_to_linker(&mut selector_linker)?;
        EffectSelector::add_to_linker::<CallState, HasSelf<CallState>>(
            &mut selector_linker,
            |s| s,
        )?;
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            detector_linker,
            trigger_linker,
            selector_linker,
            models: Arc::new(models),
            compiled: Mutex::new(CompileCache::new(config.compile_cache_bytes)),
            compiler: Compiler::start(&engine, config.compile_queue)?,
            config,
            host_panics: AtomicU64::new(0),
            engine,
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Host calls that panicked since start (each failed its call with [`CallError::HostPanic`]).
    pub fn host_panics(&self) -> u64 {
        self.host_panics.load(Ordering::Relaxed) + self.compiler.panics.load(Ordering::Relaxed)
    }

    pub fn compile_cache(&self) -> CacheStats {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats()
    }

    fn compile(&self, bytes: &[u8]) -> Result<(String, Component), LoadError> {
        if bytes.len() > self.config.max_component_bytes {
            return Err(LoadError::TooLarge(
                bytes.len(),
                self.config.max_component_bytes,
            ));
        }
        let hash = sha256_hex(bytes);
        if let Some(c) = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            return Ok((hash, c));
        }
        if !wasmparser_is_component(bytes) {
            return Err(LoadError::NotAComponent(
                "expected a component (build with --target wasm32-wasip2 or `wasm-tools component new`)".into(),
            ));
        }
        let component = self
            .compiler
            .compile(bytes.to_vec(), self.config.compile_timeout)?;
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash.clone(), component.clone());
        Ok((hash, component))
    }

    /// Compiles `bytes` and links it with `linker` as a component of `world`, through its
    /// bindings' `InstancePre`.
    fn link<P>(
        &self,
        bytes: &[u8],
        linker: &Linker<CallState>,
        world: &'static str,
        pre: impl FnOnce(InstancePre<CallState>) -> wasmtime::Result<P>,
    ) -> Result<(String, P), LoadError> {
        let (hash, component) = self.compile(bytes)?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            world,
            reason: format!("{e:#}"),
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        Ok((hash, pre(instance_pre).map_err(wrong_world)?))
    }

    /// Validates, compiles and links a detector component.
    pub fn load_detector(&self, bytes: &[u8]) -> Result<DetectorComponent, LoadError> {
        let (hash, pre) = self.link(bytes, &self.detector_linker, "detector", DetectorPre::new)?;
        Ok(DetectorComponent {
            hash,
            pre,
            tenant_models: Arc::default(),
        })
    }

    /// Validates, compiles and links a trigger component.
    pub fn load_trigger(&self, bytes: &[u8]) -> Result<TriggerComponent, LoadError> {
        let (hash, pre) = self.link(bytes, &self.trigger_linker, "trigger", TriggerPre::new)?;
        Ok(TriggerComponent { hash, pre })
    }

    /// Runs a trigger's `on-detections` for one analysed frame in a fresh instance, under the
    /// sandbox limits, with `state` (its tenant's and component's) behind the `state` interface.
    /// Blocking. What it logged comes back whether it succeeded or not.
    pub fn run_rules(
        &self,
        trigger: &TriggerComponent,
        state: &Arc<RuleState>,
        frame: &FrameInfo,
        detections: &[Detection],
        config: &[(String, String)],
    ) -> RulesCall {
        let started = Instant::now();
        let mut store = self.new_store(ModelScope::default());
        store.data_mut().rule_state = Some(state.clone());
        let result = self.guarded(&trigger.hash, || {
            let rules = trigger
                .pre
                .instantiate(&mut store)
                .map_err(|e| self.classify(e))?;
            let alerts = rules
                .media_analyzer_pipeline_rules()
                .call_on_detections(&mut store, frame, detections, config)
                .map_err(|e| self.classify(e))?
                .map_err(|message| self.component_error(&message))?;
            let mut budget = args::OutputBudget::new(&self.config);
            trigger::check_alerts(&alerts, &mut budget).map_err(CallError::OutputLimit)?;
            Ok(alerts)
        });
        RulesCall {
            result,
            log: store.data_mut().take_log(),
            elapsed: started.elapsed(),
        }
    }

    /// Validates, compiles and links an effect-selector component.
    pub fn load_selector(&self, bytes: &[u8]) -> Result<SelectorComponent, LoadError> {
        let (hash, pre) = self.link(
            bytes,
            &self.selector_linker,
            "effect-selector",
            EffectSelectorPre::new,
        )?;
        Ok(SelectorComponent { hash, pre })
    }

    /// Runs an effect selector's `select` for one analysed frame in a fresh instance, under the
    /// sandbox limits; its effects are held to [`selector::check_effects`]. Blocking. What it
    /// logged comes back whether it succeeded or not.
    pub fn run_selector(
        &self,
        selector: &SelectorComponent,
        frame: &FrameInfo,
        detections: &[Detection],
        config: &[(String, String)],
    ) -> SelectCall {
        let started = Instant::now();
        let mut store = self.new_store(ModelScope::default());
        let result = self.guarded(&selector.hash, || {
            let instance = selector
                .pre
                .instantiate(&mut store)
                .map_err(|e| self.classify(e))?;
            let effects = instance
                .media_analyzer_pipeline_effects()
                .call_select(&mut store, frame, detections, config)
                .map_err(|e| self.classify(e))?
                .map_err(|message| self.component_error(&message))?;
            selector::check_effects(&effects).map_err(CallError::OutputLimit)?;
            Ok(effects)
        });
        SelectCall {
            result,
            log: store.data_mut().take_log(),
            elapsed: started.elapsed(),
        }
    }

    /// Runs `detect` on one frame in a fresh instance, under the sandbox limits. Blocking: call
    /// it from a blocking thread. A panic in a host call is caught here, counted, and returned as
    /// [`CallError::HostPanic`]. The log of a failed call is dropped: [`Self::detect_logged`]
    /// keeps it.
    pub fn detect(
        &self,
        component: &DetectorComponent,
        frame: Frame,
        config: &[(String, String)],
    ) -> Result<DetectOutcome, CallError> {
        self.detect_logged(component, frame, config).result
    }

    /// [`Self::detect`], with the call's log and time also when it failed (what a tenant needs to
    /// see why).
    pub fn detect_logged(
        &self,
        component: &DetectorComponent,
        frame: Frame,
        config: &[(String, String)],
    ) -> LoggedCall {
        let started = Instant::now();
        let mut store = self.new_store(component.models());
        let result = self.guarded(&component.hash, || {
            self.call_detect(&mut store, component, frame, config)
        });
        let log = store.data_mut().take_log();
        let inference = store.data().inference;
        let elapsed = started.elapsed();
        match result {
            Ok(detections) => LoggedCall {
                result: Ok(DetectOutcome {
                    detections,
                    log,
                    elapsed,
                    inference,
                }),
                failed_log: Vec::new(),
                elapsed,
            },
            Err(e) => LoggedCall {
                result: Err(e),
                failed_log: log,
                elapsed,
            },
        }
    }

    fn call_detect(
        &self,
        store: &mut Store<CallState>,
        component: &DetectorComponent,
        frame: Frame,
        config: &[(String, String)],
    ) -> Result<Vec<Detection>, CallError> {
        let detector = component
            .pre
            .instantiate(&mut *store)
            .map_err(|e| self.classify(e))?;
        let frame = store
            .data_mut()
            .table
            .push(frame)
            .map_err(|e| CallError::Instantiate(e.to_string()))?;
        let borrowed = Resource::<Frame>::new_borrow(frame.rep());
        // Lifting the result is bounded while it copies (hostcall fuel, max_transfer_bytes);
        // what it copied is then held to the output limits.
        let result = detector
            .media_analyzer_pipeline_detect()
            .call_detect(&mut *store, borrowed, config)
            .map_err(|e| self.classify(e))?;
        match result {
            Ok(detections) => {
                let mut budget = args::OutputBudget::new(&self.config);
                match budget.check(&detections) {
                    Ok(()) => Ok(detections),
                    Err(l) if l.limit == "max_detections" => {
                        Err(CallError::TooMuchOutput(l.got, l.max))
                    }
                    Err(l) => Err(CallError::OutputLimit(l)),
                }
            }
            Err(message) => Err(self.component_error(&message)),
        }
    }

    /// Runs one call, catching a panic in a host call: counted, logged with the component's
    /// hash, and returned as [`CallError::HostPanic`], so the runtime goes on.
    fn guarded<T>(
        &self,
        hash: &str,
        call: impl FnOnce() -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|panic| {
            self.host_panics.fetch_add(1, Ordering::Relaxed);
            let message = panic_message(&*panic);
            tracing::error!(component = %hash, "a host call panicked: {message}");
            Err(CallError::HostPanic(message))
        })
    }

    /// The error a component returned, cut to a log line.
    fn component_error(&self, message: &str) -> CallError {
        CallError::Component(
            args::cut_on_char_boundary(message, self.config.log_line_bytes).to_string(),
        )
    }

    /// A fresh store for one call, under the sandbox limits: memory, deadline (a trap when passed,
    /// also inside host calls that wait), host memory budget.
    fn new_store(&self, models: ModelScope) -> Store<CallState> {
        let state = CallState::new(
            ModelScope {
                bundled: self.models.clone(),
                ..models
            },
            &self.config,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_hostcall_fuel(self.config.max_transfer_bytes);
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
        let mut store = self.new_store(component.models());
        component
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        drop(store);
        Ok(started.elapsed())
    }

    fn classify(&self, e: wasmtime::Error) -> CallError {
        if let Some(limit) = e.downcast_ref::<HostLimit>() {
            return match limit {
                HostLimit::Deadline => CallError::Deadline(self.config.deadline),
                HostLimit::HostMemory { limit, .. } => CallError::HostMemory { limit: *limit },
                HostLimit::BadArgument(a) => CallError::BadArgument(a.clone()),
            };
        }
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
                // wasmtime's own words when hostcall fuel runs out (its error type is private).
                if text.contains("too much data is being copied between the host and the guest") {
                    return CallError::TooMuchData {
                        limit: self.config.max_transfer_bytes,
                    };
                }
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

/// What a panic said, as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Compiles untrusted bytes on its own thread, one at a time: a load waits at most
/// `compile_timeout` for it, and the analysis threads never compile.
struct Compiler {
    jobs: SyncSender<CompileJob>,
    queue: usize,
    panics: Arc<AtomicU64>,
}

struct CompileJob {
    bytes: Vec<u8>,
    reply: mpsc::Sender<Result<Component, LoadError>>,
}

impl Compiler {
    fn start(engine: &Engine, queue: usize) -> wasmtime::Result<Self> {
        let (jobs, waiting) = mpsc::sync_channel::<CompileJob>(queue);
        let panics = Arc::new(AtomicU64::new(0));
        let (engine, counted) = (engine.clone(), panics.clone());
        std::thread::Builder::new()
            .name("wasm-compile".into())
            .spawn(move || {
                // Ends when the runtime (the sender) is dropped.
                while let Ok(job) = waiting.recv() {
                    let compiled =
                        catch_unwind(AssertUnwindSafe(|| Component::new(&engine, &job.bytes)));
                    let result = match compiled {
                        Ok(Ok(c)) => Ok(c),
                        Ok(Err(e)) => Err(LoadError::NotAComponent(format!("{e:#}"))),
                        Err(panic) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                            Err(LoadError::Compiler(format!(
                                "the compiler panicked: {}",
                                panic_message(&*panic)
                            )))
                        }
                    };
                    // The caller may have stopped waiting (compile_timeout).
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(Self {
            jobs,
            queue,
            panics,
        })
    }

    fn compile(&self, bytes: Vec<u8>, timeout: Duration) -> Result<Component, LoadError> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .try_send(CompileJob { bytes, reply })
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => LoadError::CompileBusy(self.queue),
                mpsc::TrySendError::Disconnected(_) => {
                    LoadError::Compiler("the compile thread stopped".into())
                }
            })?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(LoadError::CompileTimeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => {
                Err(LoadError::Compiler("the compile thread stopped".into()))
            }
        }
    }
}

/// Compiled components by content hash, bounded by the bytes of their compiled code; the least
/// recently used go first.
struct CompileCache {
    entries: HashMap<String, Cached>,
    limit: usize,
    bytes: usize,
    /// Advances on every use; an entry's `used` is when it was last used.
    clock: u64,
    stats: CacheStats,
}

struct Cached {
    component: Component,
    bytes: usize,
    used: u64,
}

impl CompileCache {
    fn new(limit: usize) -> Self {
        Self {
            entries: HashMap::new(),
            limit,
            bytes: 0,
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    fn get(&mut self, hash: &str) -> Option<Component> {
        self.clock += 1;
        match self.entries.get_mut(hash) {
            Some(entry) => {
                entry.used = self.clock;
                self.stats.hits += 1;
                Some(entry.component.clone())
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, hash: String, component: Component) {
        let range = component.image_range();
        // The compiled image's size (addresses as numbers, nothing is dereferenced).
        let bytes = (range.end as usize).saturating_sub(range.start as usize);
        if bytes > self.limit || self.entries.contains_key(&hash) {
            return; // too large to keep, or already kept by a concurrent load
        }
        while self.bytes + bytes > self.limit {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(h, _)| h.clone())
            else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes -= gone.bytes;
                self.stats.evictions += 1;
            }
        }
        self.clock += 1;
        self.bytes += bytes;
        self.entries.insert(
            hash,
            Cached {
                component,
                bytes,
                used: self.clock,
            },
        );
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            bytes: self.bytes,
            ..self.stats
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `log` message on which the host panics in unit tests (components/test-programs/host-panic).
    pub(crate) const PANIC_HOOK: &str = "test hook: panic in this host call";

    fn component(name: &str) -> Vec<u8> {
        let exe = std::env::current_exe().unwrap();
        let dir = std::env::var_os("MEDIA_ANALYZER_COMPONENTS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                exe.ancestors()
                    .nth(3)
                    .unwrap()
                    .join("wasm32-wasip2/release")
            });
        let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-components", path.display()))
    }

    fn frame() -> Frame {
        Frame {
            stream: "str_test".into(),
            seq: 1,
            pts_ms: 0,
            width: 8,
            height: 8,
            rgb: Arc::new(vec![0; 8 * 8 * 3]),
        }
    }

    #[test]
    fn a_panic_in_a_host_call_fails_that_call_is_counted_and_the_runtime_goes_on() {
        let rt = Runtime::new(SandboxConfig::default(), ModelRegistry::new()).unwrap();
        let panicking = rt.load_detector(&component("host-panic")).unwrap();
        let fine = rt.load_detector(&component("escape-attempt")).unwrap();
        for round in 1..=2 {
            let err = rt.detect(&panicking, frame(), &[]).unwrap_err();
            assert!(
                matches!(&err, CallError::HostPanic(m) if m.contains("unit-test hook")),
                "{err}"
            );
            assert_eq!(rt.host_panics(), round);
            if let Err(e) = rt.detect(&fine, frame(), &[]) {
                panic!("round {round}: {e}");
            }
        }
    }
}
