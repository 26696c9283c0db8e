//! Engine hardening in one place: what every tenant component runs under.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits for untrusted components: every sandbox setting, in one place.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call (detect, on-detections, select), also while the component
    /// waits inside a host call (`wasi:io/poll`, e.g. a sleep).
    pub deadline: Duration,
    /// Instances that may exist at once (the pooling allocator reserves slots for them).
    pub max_instances: u32,
    /// Bytes of stdout/stderr kept per call as the component's log.
    pub log_bytes: usize,
    /// `log` calls kept per call; later ones are dropped.
    pub log_lines: usize,
    /// Bytes kept of one `log` message (cut on a character boundary).
    pub log_line_bytes: usize,
    /// Detections one call may return; more is an error.
    pub max_detections: usize,
    /// Bytes of one detection's label.
    pub max_label_bytes: usize,
    /// Attributes of one detection.
    pub max_attributes: usize,
    /// Bytes of one attribute's name or value.
    pub max_attribute_bytes: usize,
    /// Bytes of all strings one call returns (labels, attribute names and values).
    pub max_output_bytes: usize,
    /// Bytes the host copies out of a component in one go (a host call's arguments, or a call's
    /// result), counted while copying (wasmtime's hostcall fuel), so that a result whose entries
    /// all point at one huge string cannot make the host allocate without end.
    pub max_transfer_bytes: usize,
    /// Host memory one call may hold at once: frames from `frame.crop`, tensors from
    /// `frame.tensor` and `tensor` construction, model inputs in flight and `compute` outputs.
    pub host_memory_bytes: usize,
    /// Largest dimension of a tensor a component builds or a host call prepares.
    pub max_tensor_dim: u32,
    /// Most dimensions of a tensor a component builds.
    pub max_tensor_rank: usize,
    /// Largest value a component may give a dimension that the model leaves dynamic (`-1`): the
    /// model's own memory grows with it, where the host budget cannot see it.
    pub max_dynamic_dim: u32,
    /// Largest component accepted at load.
    pub max_component_bytes: usize,
    /// How long a load waits for the compiler (which runs on its own thread, one compile at a
    /// time, off the analysis path).
    pub compile_timeout: Duration,
    /// Loads that may wait for the compile thread at once; more are refused as busy.
    pub compile_queue: usize,
    /// Bytes of compiled code the compile cache keeps; the least recently used go first.
    pub compile_cache_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline: Duration::from_millis(1000),
            max_instances: 64,
            log_bytes: 64 << 10,
            log_lines: 1000,
            log_line_bytes: 2000,
            max_detections: 1000,
            max_label_bytes: 256,
            max_attributes: 32,
            max_attribute_bytes: 4096,
            max_output_bytes: 1 << 20,
            max_transfer_bytes: 64 << 20,
            host_memory_bytes: 256 << 20,
            max_tensor_dim: 4096,
            max_tensor_rank: 8,
            max_dynamic_dim: 2048,
            max_component_bytes: 32 << 20,
            compile_timeout: Duration::from_secs(20),
            compile_queue: 8,
            compile_cache_bytes: 256 << 20,
        }
    }
}

impl SandboxConfig {
    pub fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }
}

/// The engine: component model, Cranelift optimising for speed, pooling allocator sized for
/// `max_instances` (instantiation in microseconds), epoch interruption for deadlines.
pub fn engine(config: &SandboxConfig) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(config.max_instances)
        .total_core_instances(config.max_instances * 4)
        .total_memories(config.max_instances * 2)
        .total_tables(config.max_instances * 4)
        .max_memory_size(config.memory_bytes)
        // A slot's memory is given back to the kernel when its instance ends, not kept and
        // zeroed: zeroing 1 MiB that many tenants' instances have pushed out of the caches cost
        // 140 µs per instantiation with 100 tenants (17 µs without), and the page faults it saved
        // a single component were within noise (`bench tenants`, `bench analysis`, 2026-12-03).
        .linear_memory_keep_resident(0)
        .table_keep_resident(64 << 10);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Never reserve more address space than the memory limit plus guard.
        .memory_reservation(config.memory_bytes as u64)
        .memory_guard_size(64 << 10)
        .max_wasm_stack(1 << 20);
    Engine::new(&c)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
