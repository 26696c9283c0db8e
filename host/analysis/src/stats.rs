//! Analysis metrics: counters summed over streams and the live stages' latency histograms.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for `/metrics`, summed over streams.
#[derive(Debug, Default)]
pub struct AnalysisStats {
    pub frames_decoded: AtomicU64,
    pub frames_analysed: AtomicU64,
    /// Replaced by a newer frame before the analyser took them (by design, not an error).
    pub frames_skipped: AtomicU64,
    /// Packets the decoder's `DropOldest` queue dropped (it then waits for a keyframe).
    pub packets_lost: AtomicU64,
    pub component_failures: AtomicU64,
    pub detections_stored: AtomicU64,
    /// Frames whose results are in the store (once each, also those without detections).
    pub frames_stored: AtomicU64,
    /// Store writes that failed and were tried again.
    pub store_retries: AtomicU64,
    /// Live decoders that switched between realtime and batch.
    pub mode_changes: AtomicU64,
    /// Frames whose results could not be stored after the retries: not published either (a
    /// viewer never sees results that `?since=` replay or the REST API would not have).
    pub frames_lost: AtomicU64,
    /// Batch jobs handed back to the queue (a shutdown, results that could not be stored, a
    /// lease that ran out and went to another worker).
    pub batch_released: AtomicU64,
    /// Time spent in model runs, microseconds.
    pub inference_us: AtomicU64,
    /// Closed segments queued for batch analysis, and refused because the stream's queue was full.
    pub batch_queued: AtomicU64,
    pub batch_refused: AtomicU64,
    /// Batch jobs finished, and failed (e.g. the segment was removed before its turn).
    pub batch_done: AtomicU64,
    pub batch_failed: AtomicU64,
    /// Panics caught in analysers and the batch worker (the frame or the attempt was lost; the
    /// thread went on).
    pub panics: AtomicU64,
    /// Where a live frame's time goes, stage by stage (see [`Stage`]).
    pub stages: [Histogram; Stage::ALL.len()],
}

/// The stages of a live frame, from its video reaching the host to its results being handed to
/// the bus.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// The frame's packet arrived → the packet that let it out of the decoder arrived: the codec's
    /// display-order delay, 0 without B-frames (a frame leaves the decoder in display order, after
    /// the frames shown before it, which a stream with B-frames sends after it).
    Reorder,
    /// That packet arrived → the frame decoded and converted to RGB.
    Decode,
    /// Decoded → taken by a free analyser.
    Queue,
    /// The components' calls, model time included.
    Analysis,
    /// Waiting for the previous frame's results to leave first, then the store write and the bus.
    Output,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Reorder,
        Stage::Decode,
        Stage::Queue,
        Stage::Analysis,
        Stage::Output,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Reorder => "reorder",
            Stage::Decode => "decode",
            Stage::Queue => "queue",
            Stage::Analysis => "analysis",
            Stage::Output => "output",
        }
    }
}

/// Upper bounds of the latency histogram's buckets, milliseconds.
const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500];

/// A Prometheus-style latency histogram (fixed buckets, lock-free).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl Histogram {
    pub fn observe_ms(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        let bucket = BUCKETS_MS
            .iter()
            .position(|&le| ms <= le)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BUCKETS_MS
                .get(i)
                .map(|ms| format!("{}", *ms as f64 / 1000.0))
                .unwrap_or_else(|| "+Inf".into());
            out.push_str(&format!(
                "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}\n"
            ));
        }
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        out.push_str(&format!("{name}_sum{{{labels}}} {sum}\n"));
        out.push_str(&format!("{name}_count{{{labels}}} {cumulative}\n"));
    }
}

impl AnalysisStats {
    pub(crate) fn stage(&self, stage: Stage) -> &Histogram {
        &self.stages[stage as usize]
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, help, value) in [
            (
                "frames_decoded_total",
                "frames decoded for analysis",
                c(&self.frames_decoded),
            ),
            (
                "frames_analysed_total",
                "frames analysed",
                c(&self.frames_analysed),
            ),
            (
                "frames_skipped_total",
                "frames replaced by a newer one before analysis",
                c(&self.frames_skipped),
            ),
            (
                "packets_lost_total",
                "packets dropped before the decoder",
                c(&self.packets_lost),
            ),
            (
                "component_failures_total",
                "component calls that failed",
                c(&self.component_failures),
            ),
            (
                "detections_total",
                "detections stored",
                c(&self.detections_stored),
            ),
            (
                "frames_stored_total",
                "frames whose results were stored",
                c(&self.frames_stored),
            ),
            (
                "store_retries_total",
                "store writes of results that failed and were tried again",
                c(&self.store_retries),
            ),
            (
                "mode_changes_total",
                "live decoders that switched between realtime and batch analysis",
                c(&self.mode_changes),
            ),
            (
                "frames_lost_total",
                "frames whose results could not be stored after retries (not published either)",
                c(&self.frames_lost),
            ),
            (
                "batch_jobs_released_total",
                "batch jobs handed back to the queue unfinished (shutdown, store failure, lease lost)",
                c(&self.batch_released),
            ),
            (
                "inference_microseconds_total",
                "time spent in model runs",
                c(&self.inference_us),
            ),
            (
                "batch_segments_queued_total",
                "closed segments queued for batch analysis",
                c(&self.batch_queued),
            ),
            (
                "batch_segments_refused_total",
                "closed segments not queued: the stream's batch queue was full",
                c(&self.batch_refused),
            ),
            (
                "batch_segments_done_total",
                "segments analysed in batch mode",
                c(&self.batch_done),
            ),
            (
                "batch_segments_failed_total",
                "batch jobs that failed",
                c(&self.batch_failed),
            ),
            (
                "panics_total",
                "panics caught in analysers and the batch worker",
                c(&self.panics),
            ),
        ] {
            out.push_str(&format!(
                "# HELP media_analyzer_analysis_{name} {help}\n# TYPE media_analyzer_analysis_{name} counter\nmedia_analyzer_analysis_{name} {value}\n"
            ));
        }
        let waiting =
            c(&self.batch_queued).saturating_sub(c(&self.batch_done) + c(&self.batch_failed));
        out.push_str(&format!(
            "# HELP media_analyzer_analysis_batch_queue_depth segments waiting for batch analysis (queued by this process)\n# TYPE media_analyzer_analysis_batch_queue_depth gauge\nmedia_analyzer_analysis_batch_queue_depth {waiting}\n"
        ));
        let name = "media_analyzer_analysis_stage_seconds";
        out.push_str(&format!("# HELP {name} time live frames spend in each stage, from the video reaching the host to the results going to the bus\n# TYPE {name} histogram\n"));
        for stage in Stage::ALL {
            self.stage(stage)
                .render(name, &format!("stage=\"{}\"", stage.name()), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guarded;

    #[test]
    fn a_panic_in_guarded_work_is_caught_and_counted() {
        let stats = AnalysisStats::default();
        assert_eq!(guarded(&stats, "str_a", || 7), Some(7));
        let caught: Option<()> = guarded(&stats, "str_a", || panic!("poison frame"));
        assert_eq!(caught, None);
        assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
        assert!(
            stats
                .render()
                .contains("media_analyzer_analysis_panics_total 1")
        );
    }

    #[test]
    fn stage_histograms_render_cumulative_prometheus_buckets() {
        let stats = AnalysisStats::default();
        for ms in [0, 3, 3, 40, 900] {
            stats.stage(Stage::Queue).observe_ms(ms);
        }
        stats.stage(Stage::Decode).observe_ms(-5);
        let text = stats.render();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let m = "media_analyzer_analysis_stage_seconds";
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.001\"}}")),
            "1"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.005\"}}")),
            "3"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.05\"}}")),
            "4"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"0.5\"}}")),
            "4"
        );
        assert_eq!(
            line(&format!("{m}_bucket{{stage=\"queue\",le=\"+Inf\"}}")),
            "5"
        );
        assert_eq!(line(&format!("{m}_count{{stage=\"queue\"}}")), "5");
        assert_eq!(line(&format!("{m}_sum{{stage=\"queue\"}}")), "0.946");
        // A clock step backwards counts as 0, not as a huge unsigned value.
        assert_eq!(line(&format!("{m}_sum{{stage=\"decode\"}}")), "0");
        assert_eq!(line(&format!("{m}_count{{stage=\"analysis\"}}")), "0");
    }
}
