//! One frame through the components: the one place a detection is produced, for live streams,
//! batch segments, files and the benchmarks alike.

use std::sync::atomic::Ordering;
use std::time::Duration;

use runtime::{ActiveDetector, Runtime};
use tracing::warn;

use crate::AnalysisStats;

/// What the components found in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameAnalysis {
    /// In the order the components ran; each names the component that found it.
    pub detections: Vec<bus::Detection>,
    /// The components that analysed it (not those whose call failed).
    pub ran: Vec<String>,
    /// When it was analysed (Unix ms).
    pub wallclock: i64,
    /// Model time, all components together.
    pub inference: Duration,
    /// Live frames: where their time went.
    pub timing: Option<bus::FrameTiming>,
    /// Each component's call, in order: how long, whether it failed, what it logged.
    pub calls: Vec<ComponentCall>,
}

/// One component's call on a frame, for its tenant's view of the component (its counters and log).
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentCall {
    /// As its detections name it: `name`, or `name@version` for an upload.
    pub component: String,
    pub elapsed: Duration,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
    /// It failed by running past its deadline.
    pub deadline: bool,
    /// What it logged (`Level: message`, or `stdout: line`).
    pub log: Vec<String>,
}

impl ComponentCall {
    /// A call of `component` that took `elapsed`, ended with `result` and logged `log`.
    pub fn new<T>(
        component: String,
        elapsed: Duration,
        result: &Result<T, runtime::CallError>,
        log: Vec<String>,
    ) -> Self {
        ComponentCall {
            component,
            elapsed,
            error: result.as_ref().err().map(ToString::to_string),
            deadline: matches!(result, Err(runtime::CallError::Deadline(_))),
            log,
        }
    }
}

/// A decoded frame as the components' host resource, named for `source` (its pixels shared,
/// not copied).
pub(crate) fn host_frame(source: &str, frame: &decode::Frame) -> runtime_wit::Frame {
    runtime_wit::Frame {
        stream: source.to_string(),
        seq: frame.seq,
        pts_ms: frame.pts_ms,
        width: frame.width,
        height: frame.height,
        rgb: frame.rgb.clone(),
    }
}

/// Runs every component on one frame. A component whose call fails (a trap, its deadline, a
/// model error) is logged and counted in `stats.component_failures`; the others' detections
/// stand. `source` names the frame's stream (or file) for the components and the log.
pub fn analyse_frame(
    source: &str,
    frame: &decode::Frame,
    runtime: &Runtime,
    components: &[ActiveDetector],
    stats: &AnalysisStats,
) -> FrameAnalysis {
    stats.frames_analysed.fetch_add(1, Ordering::Relaxed);
    let wallclock = store::now_ms();
    let host_frame = host_frame(source, frame);
    let mut detections = Vec::new();
    let mut ran = Vec::new();
    let mut inference = Duration::ZERO;
    let mut calls = Vec::with_capacity(components.len());
    for active in components {
        let name = active.label();
        let call = runtime.detect_logged(&active.component, host_frame.clone(), &active.config);
        let (result, log) = match call.result {
            Ok(mut outcome) => {
                let log = std::mem::take(&mut outcome.log);
                (Ok(outcome), log)
            }
            Err(e) => (Err(e), call.failed_log),
        };
        calls.push(ComponentCall::new(name.clone(), call.elapsed, &result, log));
        match result {
            Ok(outcome) => {
                inference += outcome.inference;
                ran.push(name.clone());
                stats
                    .inference_us
                    .fetch_add(outcome.inference.as_micros() as u64, Ordering::Relaxed);
                detections.extend(outcome.detections.into_iter().map(|d| bus::Detection {
                    label: d.label,
                    score: d.score,
                    bbox: [d.box_.x, d.box_.y, d.box_.w, d.box_.h],
                    component: name.clone(),
                }))
            }
            Err(e) => {
                stats.component_failures.fetch_add(1, Ordering::Relaxed);
                warn!(%source, component = %name, frame = frame.seq, "component call failed: {e}")
            }
        }
    }
    FrameAnalysis {
        detections,
        ran,
        wallclock,
        inference,
        timing: None,
        calls,
    }
}

impl FrameAnalysis {
    /// The `detections` event of the analysed frame, as viewers receive it.
    pub fn event(&self, stream: &str, frame: &decode::Frame) -> bus::Event {
        bus::Event::Detections(bus::FrameDetections {
            effects: Vec::new(),
            effects_failed: Vec::new(),
            scene: None,
            stream: stream.to_string(),
            seq: frame.seq,
            pts_ms: frame.pts_ms,
            wallclock: bus::rfc3339_ms(self.wallclock),
            ingested: (frame.received_ms > 0).then(|| bus::rfc3339_ms(frame.received_ms)),
            timing: self.timing,
            width: frame.width,
            height: frame.height,
            detections: self.detections.clone(),
        })
    }
}
