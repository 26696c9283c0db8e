//! Where a frame's results go: the store, then the bus.

use std::sync::atomic::Ordering;

use store::Store;
use tokio::runtime::Handle;
use tracing::warn;

use crate::activity::ComponentActivity;
use crate::{AnalysisStats, FrameAnalysis};

pub(crate) struct Output<'a> {
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
}

impl Output<'_> {
    /// Stores a frame's results, then publishes them (also when there are none, so overlays
    /// clear). A failed write is tried again ([`store::RetryPolicy::default`]: 5 attempts over
    /// about 1.5 s); results that still could not be stored are counted as lost and not
    /// published, so what viewers see live is what the store has. Returns whether they were
    /// stored.
    pub fn send(&self, stream: &str, frame: &decode::Frame, analysed: &FrameAnalysis) -> bool {
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
        self.publisher.send(bus::Envelope::new(
            self.tenant,
            analysed.event(stream, frame),
        ));
        true
    }
}

impl Output<'_> {
    /// Marks on the stream's events that `pipeline` applies from `frame` on (before the frame's
    /// results, which the publisher keeps in order).
    pub fn pipeline_applied(
        &self,
        stream: &str,
        frame: &decode::Frame,
        pipeline: &runtime::Pipeline<runtime::DetectorComponent>,
    ) {
        let Some(change) = &pipeline.change else {
            return; // the bundled defaults: no stored change to report
        };
        self.stats.pipeline_swaps.fetch_add(1, Ordering::Relaxed);
        self.publisher.send(bus::Envelope::new(
            self.tenant,
            bus::Event::Pipeline(bus::PipelineApplied {
                stream: stream.to_string(),
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                change: change.clone(),
                detector: pipeline
                    .stage(runtime::World::Detector)
                    .iter()
                    .map(runtime::ActiveDetector::label)
                    .collect(),
                at: bus::rfc3339_ms(store::now_ms()),
            }),
        ));
    }
}
