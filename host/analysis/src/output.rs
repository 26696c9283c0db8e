//! Where a frame's results go: through the stream's effect selectors (their effects travel on
//! the frame's event), the store, then the bus; then through the stream's triggers, whose alerts
//! go the same way.

use std::sync::atomic::Ordering;

use store::Store;
use tokio::runtime::Handle;
use tracing::warn;

use crate::activity::ComponentActivity;
use crate::frame::ComponentCall;
use crate::{AnalysisStats, FrameAnalysis};

pub(crate) struct Output<'a> {
    /// Where the triggers run.
    pub runtime: &'a runtime::Runtime,
    pub store: &'a Store,
    pub publisher: &'a bus::Publisher,
    pub handle: &'a Handle,
    pub stats: &'a AnalysisStats,
    /// What the components did, for their tenant's view.
    pub activity: &'a ComponentActivity,
    /// Who the stream belongs to: its results are published to this tenant.
    pub tenant: &'a str,
    /// When the frames' publish session began (Unix ms): with the frame number, it names a
    /// frame in the store.
    pub session: i64,
    /// The stream's scene metrics (live analysis: frames come in order).
    pub scene: Option<&'a crate::scene::SceneTracker>,
    /// Where the frames' effects are rendered (live analysis with the effects rendition on).
    pub rendition: Option<&'a std::sync::Mutex<rendition::StreamEffects>>,
}

impl Output<'_> {
    /// Stores a frame's results, then publishes them (also when there are none, so overlays
    /// clear). A failed write is tried again ([`store::RetryPolicy::default`]: 5 attempts over
    /// about 1.5 s); results that still could not be stored are counted as lost and not
    /// published, so what viewers see live is what the store has. Returns whether they were
    /// stored. Stored results then go through `triggers` (called in frame order, as this is);
    /// see [`Self::raise_alerts`].
    pub fn send(
        &self,
        stream: &str,
        frame: &decode::Frame,
        analysed: &FrameAnalysis,
        triggers: &[runtime::ActiveTrigger],
        selectors: &[runtime::ActiveSelector],
        effects_off: &[&str],
    ) -> bool {
        self.activity
            .record(self.tenant, stream, frame.seq, &analysed.calls);
        let results = store::FrameResults {
            stream_id: stream.to_string(),
            session: self.session,
            seq: frame.seq as i64,
            pts_ms: frame.pts_ms,
            wallclock: analysed.wallclock,
            components: analysed.ran.clone(),
            detections: analysed.detections.clone(),
        };
        // Each attempt writes at most once per (session, frame, component): an attempt after a
        // commit whose reply was lost adds nothing.
        let write = store::RetryPolicy::default().run(
            || self.store.store_frame_results(&results),
            |attempt, e| {
                self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, frame = frame.seq, attempt, "storing the frame's results failed, trying again: {e}");
            },
        );
        match self.handle.block_on(write) {
            Ok(stored) => {
                self.stats
                    .detections_stored
                    .fetch_add(stored.detections, Ordering::Relaxed);
                self.stats.frames_stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.frames_lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%stream, frame = frame.seq, "could not store the frame's {} detections: lost, and not published: {e}", results.detections.len());
                return false;
            }
        }
        // The frame as the selectors and triggers see it, made once for both.
        let seen = (!selectors.is_empty() || !triggers.is_empty()).then(|| SeenFrame {
            info: runtime_wit::FrameInfo {
                stream: stream.to_string(),
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                width: frame.width,
                height: frame.height,
            },
            detections: analysed.detections.iter().map(to_wit).collect(),
        });
        let mut event = analysed.event(stream, frame);
        if let bus::Event::Detections(d) = &mut event {
            if let Some(scene) = self.scene {
                d.scene = scene.measure(frame.pts_ms, frame.width, frame.height, &frame.rgb);
            }
            if let Some(seen) = seen.as_ref().filter(|_| !selectors.is_empty()) {
                (d.effects, d.effects_failed) = self.select_effects(stream, seen, selectors);
                // The selectors chose from what the detectors found: where one of them may blur
                // (and blurs are not forced off), a detector that failed on the frame leaves its
                // effects incomplete too (a face it would have found has no blur), and is named
                // with the selectors.
                if !effects_off.contains(&"blur")
                    && selectors
                        .iter()
                        .any(|s| crate::pipelines::may_blur(&s.label()))
                {
                    d.effects_failed.extend(
                        analysed
                            .calls
                            .iter()
                            .filter(|c| c.error.is_some())
                            .map(|c| c.component.clone()),
                    );
                }
                // The stream's control forces these kinds off: never rendered, never shown.
                d.effects
                    .retain(|e| !effects_off.contains(&e.kind.as_str()));
            }
            if let Some(rendition) = self.rendition {
                let every_kind_off = effects_off.len() >= crate::pipelines::FORCED_SELECTORS.len();
                crate::lock(rendition).frame(
                    !selectors.is_empty() && !every_kind_off,
                    rendition::AnalysedEffects {
                        pts_ms: frame.pts_ms,
                        width: frame.width,
                        height: frame.height,
                        effects: d.effects.clone(),
                        // A failed selector that may blur, or a detector it chose from, leaves
                        // faces uncovered, unless the control forces blurs off anyway.
                        complete: effects_off.contains(&"blur")
                            || !d
                                .effects_failed
                                .iter()
                                .any(|label| crate::pipelines::may_blur(label)),
                        privacy: !effects_off.contains(&"blur")
                            && selectors.iter().any(|s| {
                                s.version == 0 && s.name == crate::pipelines::PRIVACY_SELECTOR
                            }),
                    },
                );
            }
        }
        self.publisher.send(bus::Envelope::new(self.tenant, event));
        if let Some(seen) = seen.as_ref().filter(|_| !triggers.is_empty()) {
            self.raise_alerts(stream, frame, analysed, seen, triggers);
        }
        true
    }

    /// Runs each effect selector's `select` on the frame's detections and returns what they
    /// chose, and which of them failed (error, trap, deadline): a failed call chooses nothing
    /// and is counted, like a trigger's, and the frame's effects are incomplete.
    fn select_effects(
        &self,
        stream: &str,
        seen: &SeenFrame,
        selectors: &[runtime::ActiveSelector],
    ) -> (Vec<bus::Effect>, Vec<String>) {
        let mut chosen = Vec::new();
        let mut failed = Vec::new();
        let mut calls = Vec::with_capacity(selectors.len());
        for selector in selectors {
            let label = selector.label();
            let call = self.runtime.run_selector(
                &selector.component,
                &seen.info,
                &seen.detections,
                &selector.config,
            );
            calls.push(ComponentCall::new(
                label.clone(),
                call.elapsed,
                &call.result,
                call.log,
            ));
            match call.result {
                Ok(effects) => {
                    chosen.extend(effects.into_iter().map(|e| effect_from_wit(e, &label)))
                }
                Err(e) => {
                    self.stats
                        .component_failures
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(%stream, component = %label, frame = seen.info.seq, "effect selector call failed: {e}");
                    failed.push(label);
                }
            }
        }
        self.activity
            .record(self.tenant, stream, seen.info.seq, &calls);
        (chosen, failed)
    }

    /// Runs each trigger's `on-detections` on the frame's detections; the alerts they raise are
    /// stored (retried like results; a retried write adds nothing), then published. A trigger
    /// whose call fails raises nothing and is counted, like a detector; its call is in its
    /// tenant's component activity either way.
    fn raise_alerts(
        &self,
        stream: &str,
        frame: &decode::Frame,
        analysed: &FrameAnalysis,
        seen: &SeenFrame,
        triggers: &[runtime::ActiveTrigger],
    ) {
        let mut raised = Vec::new();
        let mut calls = Vec::with_capacity(triggers.len());
        for trigger in triggers {
            let label = trigger.label();
            let call = self.runtime.run_rules(
                &trigger.component.component,
                &trigger.component.state,
                &seen.info,
                &seen.detections,
                &trigger.config,
            );
            calls.push(ComponentCall::new(
                label.clone(),
                call.elapsed,
                &call.result,
                call.log,
            ));
            match call.result {
                Ok(alerts) if !alerts.is_empty() => {
                    let alerts = alerts
                        .into_iter()
                        .map(|a| from_wit(a, &analysed.detections))
                        .collect();
                    raised.push((label, alerts));
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats
                        .component_failures
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(%stream, component = %label, frame = frame.seq, "trigger call failed: {e}");
                }
            }
        }
        self.activity.record(self.tenant, stream, frame.seq, &calls);
        if raised.is_empty() {
            return;
        }
        let alerts = store::FrameAlerts {
            tenant_id: self.tenant,
            stream_id: stream,
            session: self.session,
            seq: frame.seq as i64,
            pts_ms: frame.pts_ms,
            wallclock: analysed.wallclock,
            raised: &raised,
        };
        let write = store::RetryPolicy::default().run(
            || self.store.store_alerts(&alerts),
            |attempt, e| {
                self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, frame = frame.seq, attempt, "storing the frame's alerts failed, trying again: {e}");
            },
        );
        let stored = match self.handle.block_on(write) {
            Ok(stored) => stored,
            Err(e) => {
                let count: usize = raised.iter().map(|(_, a)| a.len()).sum();
                self.stats
                    .alerts_lost
                    .fetch_add(count as u64, Ordering::Relaxed);
                tracing::error!(%stream, frame = frame.seq, "could not store the frame's {count} alerts: lost, and not published: {e}");
                return;
            }
        };
        self.stats
            .alerts_raised
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        for alert in stored {
            self.publisher.send(bus::Envelope::new(
                self.tenant,
                bus::Event::Alert(bus::Alert {
                    id: alert.id,
                    stream: alert.stream_id,
                    seq: alert.seq.max(0) as u64,
                    pts_ms: alert.pts_ms,
                    wallclock: bus::rfc3339_ms(alert.wallclock),
                    component: alert.component,
                    rule: alert.rule,
                    severity: alert.severity,
                    message: alert.message,
                    detections: alert.detections,
                }),
            ));
        }
    }
}

/// An analysed frame as the components' interface carries it.
struct SeenFrame {
    info: runtime_wit::FrameInfo,
    detections: Vec<runtime_wit::Detection>,
}

/// An effect as events carry it (non-finite numbers dropped: JSON has none).
fn effect_from_wit(e: runtime_wit::Effect, component: &str) -> bus::Effect {
    bus::Effect {
        kind: match e.kind {
            runtime_wit::EffectKind::Blur => "blur",
            runtime_wit::EffectKind::Highlight => "highlight",
            runtime_wit::EffectKind::ColourGrade => "colour-grade",
        }
        .to_string(),
        bbox: e
            .region
            .map(|b| [b.x, b.y, b.w, b.h])
            .filter(|b| b.iter().all(|v| v.is_finite())),
        params: e
            .params
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .collect(),
        component: component.to_string(),
    }
}

/// A detection as the components' interface carries it.
fn to_wit(d: &bus::Detection) -> runtime_wit::Detection {
    runtime_wit::Detection {
        label: d.label.clone(),
        score: d.score,
        box_: runtime_wit::Bbox {
            x: d.bbox[0],
            y: d.bbox[1],
            w: d.bbox[2],
            h: d.bbox[3],
        },
        attributes: Vec::new(),
    }
}

/// An alert as a trigger raised it, to store. Its detections name the component that found them
/// where they are among the frame's (a trigger may also make its own: those name none).
fn from_wit(alert: runtime_wit::Alert, found: &[bus::Detection]) -> store::NewAlert {
    use runtime_wit::Severity;
    store::NewAlert {
        rule: alert.rule,
        severity: match alert.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
        .to_string(),
        message: alert.message,
        detections: alert
            .detections
            .into_iter()
            .map(|d| {
                let bbox = [d.box_.x, d.box_.y, d.box_.w, d.box_.h];
                let component = found
                    .iter()
                    .find(|f| f.label == d.label && f.bbox == bbox)
                    .map(|f| f.component.clone())
                    .unwrap_or_default();
                bus::Detection {
                    label: d.label,
                    score: d.score,
                    bbox,
                    component,
                }
            })
            .collect(),
    }
}

impl Output<'_> {
    /// Marks on the stream's events that the pipeline of the stored `change` applies from
    /// `frame` on (before the frame's results, which the publisher keeps in order); `detectors`
    /// are what the frame runs.
    pub fn pipeline_applied(
        &self,
        stream: &str,
        frame: &decode::Frame,
        change: Option<String>,
        detectors: &runtime::Pipeline<runtime::DetectorComponent>,
    ) {
        let Some(change) = change else {
            return; // the bundled defaults: no stored change to report
        };
        self.stats.pipeline_swaps.fetch_add(1, Ordering::Relaxed);
        self.publisher.send(bus::Envelope::new(
            self.tenant,
            bus::Event::Pipeline(bus::PipelineApplied {
                stream: stream.to_string(),
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                change,
                detector: detectors
                    .stage(runtime::World::Detector)
                    .iter()
                    .map(runtime::ActiveDetector::label)
                    .collect(),
                at: bus::rfc3339_ms(store::now_ms()),
            }),
        ));
    }
}
