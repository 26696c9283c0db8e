//! Analysis of live streams, in one of two modes per stream (`PUT /api/v1/streams/{id}/mode`):
//!
//! - **realtime**: every stream that starts in the hub is decoded on its own thread (subscribed
//!   with `DropOldest`, so the video path never waits). Analysers — as many per stream as the
//!   models have sessions, so several frames can be in the models at once — each take the newest
//!   decoded frame when they are free, and the results leave in frame order; frames no analyser
//!   could take are counted as skipped.
//! - **batch**: the live decoder idles; each closed HLS segment is queued in the store (durable,
//!   bounded per stream; `serve` queues them) and one worker decodes queued segments from disk and
//!   analyses every Nth frame of each — slower than live, but nothing is skipped, and a restart
//!   picks up where it stopped.
//!
//! Detections go to the store either way, and every analysed frame (with or without detections)
//! is published on the bus for live viewers; a bus outage never holds analysis up.
//!
//! Where the work is: [`frame::analyse_frame`] runs a frame through the components (live, batch,
//! `analyze` and the benchmarks all call it); [`live::LiveAnalysis`] decodes and analyses the
//! streams live in the hub; [`batch::BatchQueue`] analyses queued segments from disk;
//! [`file::analyze`] analyses a file; [`pipelines::StreamPipelines`] holds what each live stream
//! runs and swaps it on a pipeline signal; [`bundle::load_bundle`] loads components and models.

pub mod activity;
pub mod batch;
pub mod bench;
pub mod bench_faces;
pub mod bench_logos;
pub mod bench_tenants;
pub mod bundle;
pub mod file;
pub mod frame;
pub mod live;
mod output;
pub mod pipelines;
pub mod scene;
pub mod segment_store;
pub mod stats;
pub mod tenant_models;
pub mod vision;

pub use activity::ComponentActivity;
pub use batch::{
    BATCH_ATTEMPTS, BATCH_LEASE, BATCH_QUEUE_LIMIT, BatchWake, SharedQueue, push_unpushed_jobs,
    queue_for_batch, sample_queue_depth,
};
pub use bundle::{Bundle, ModelSettings, components_dir, default_components_dir, load_bundle};
pub use frame::{ComponentCall, FrameAnalysis, analyse_frame};
pub use live::{LiveAnalysis, StreamModes};
pub use pipelines::{PipelineError, StreamPipelines};
pub use segment_store::{CloudStorage, MAX_SEGMENT_BYTES, SegmentFile, SegmentStore};
pub use stats::{AnalysisStats, Stage};
pub use tenant_models::TenantModels;

/// Niceness of analysis threads (analysers, model sessions, the batch worker): when the CPU is
/// short, the video path (RTMP, HLS) and the decoders get it first, and analysis skips frames.
pub const ANALYSIS_NICE: i32 = 19;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work`, catching a panic in it: counted in `stats.panics` and logged, `None` returned.
pub(crate) fn guarded<T>(
    stats: &AnalysisStats,
    stream: &str,
    work: impl FnOnce() -> T,
) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(value) => Some(value),
        Err(panic) => {
            stats
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!(%stream, "analysis panicked (caught, going on): {message}");
            None
        }
    }
}
