//! Engine hardening in one place: what every tenant component runs under.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits for untrusted components.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call (detect, on-detections, select).
    pub deadline: Duration,
    /// Instances that may exist at once (the pooling allocator reserves slots for them).
    pub max_instances: u32,
    /// Bytes of stdout/stderr kept per call as the component's log.
    pub log_bytes: usize,
    /// Detections one call may return; more is an error.
    pub max_detections: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline: Duration::from_millis(1000),
            max_instances: 64,
            log_bytes: 64 << 10,
            max_detections: 1000,
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
        // Keeping the first pages of a slot resident saves page faults on every new instance.
        .linear_memory_keep_resident(1 << 20)
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
