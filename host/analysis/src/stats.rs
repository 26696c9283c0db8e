//! Analysis metrics: counters summed over streams and the live stages' latency histograms.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

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
    /// Live streams that went on to a new pipeline (the first frame it ran).
    pub pipeline_swaps: AtomicU64,
    /// Frames whose results could not be stored after the retries: not published either (a
    /// viewer never sees results that `?since=` replay or the REST API would not have).
    pub frames_lost: AtomicU64,
    /// Alerts that triggers raised and that were stored (then published).
    pub alerts_raised: AtomicU64,
    /// Alerts that could not be stored after the retries (not published either).
    pub alerts_lost: AtomicU64,
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
    /// Batch jobs queued in the store that could not be pushed to the work queue engine (pushed
    /// again when an ingest host starts).
    pub batch_unpushed: AtomicU64,
    /// The work queue engine's depth, as last sampled ([`crate::sample_queue_depth`]).
    pub queue: QueueGauges,
    /// Panics caught in analysers and the batch worker (the frame or the attempt was lost; the
    /// thread went on).
    pub panics: AtomicU64,
    /// Where a live frame's time goes, stage by stage (see [`Stage`]).
    pub stages: [Histogram; Stage::ALL.len()],
}

/// The work queue engine's depth for `/metrics`: set by the sampler, shown once it has a sample.
#[derive(Debug, Default)]
pub struct QueueGauges {
    pub sampled: std::sync::atomic::AtomicBool,
    pub waiting: AtomicU64,
    pub in_flight: AtomicU64,
    pub oldest_age_ms: AtomicU64,
}

impl QueueGauges {
    pub fn set(&self, depth: &bus::QueueDepth) {
        self.waiting.store(depth.waiting, Ordering::Relaxed);
        self.in_flight.store(depth.in_flight, Ordering::Relaxed);
        self.oldest_age_ms
            .store(depth.oldest_age.as_millis() as u64, Ordering::Relaxed);
        self.sampled.store(true, Ordering::Relaxed);
    }
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

    /// Writes the histogram's series for one label set.
    fn encode(&self, encoder: &mut MetricEncoder, stage: Stage) -> std::fmt::Result {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                let le = BUCKETS_MS.get(i).map_or(f64::MAX, |ms| *ms as f64 / 1000.0);
                (le, count.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        encoder
            .encode_family(&[("stage", stage.name())])?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

impl AnalysisStats {
    pub(crate) fn stage(&self, stage: Stage) -> &Histogram {
        &self.stages[stage as usize]
    }

    /// The counters and histograms for `/metrics`.
    pub fn collector(self: Arc<Self>) -> Box<dyn Collector> {
        Box::new(AnalysisMetrics(self))
    }
}

#[derive(Debug)]
struct AnalysisMetrics(Arc<AnalysisStats>);

impl Collector for AnalysisMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "frames_decoded",
                "frames decoded for analysis",
                c(&s.frames_decoded),
            ),
            ("frames_analysed", "frames analysed", c(&s.frames_analysed)),
            (
                "frames_skipped",
                "frames replaced by a newer one before analysis",
                c(&s.frames_skipped),
            ),
            (
                "packets_lost",
                "packets dropped before the decoder",
                c(&s.packets_lost),
            ),
            (
                "component_failures",
                "component calls that failed",
                c(&s.component_failures),
            ),
            ("detections", "detections stored", c(&s.detections_stored)),
            (
                "frames_stored",
                "frames whose results were stored",
                c(&s.frames_stored),
            ),
            (
                "store_retries",
                "store writes of results that failed and were tried again",
                c(&s.store_retries),
            ),
            (
                "mode_changes",
                "live decoders that switched between realtime and batch analysis",
                c(&s.mode_changes),
            ),
            (
                "pipeline_swaps",
                "live streams that went on to a new pipeline, counted at its first frame",
                c(&s.pipeline_swaps),
            ),
            (
                "frames_lost",
                "frames whose results could not be stored after retries (not published either)",
                c(&s.frames_lost),
            ),
            (
                "alerts_raised",
                "alerts raised by triggers and stored",
                c(&s.alerts_raised),
            ),
            (
                "alerts_lost",
                "alerts that could not be stored after retries (not published either)",
                c(&s.alerts_lost),
            ),
            (
                "batch_jobs_released",
                "batch jobs handed back to the queue unfinished (shutdown, store failure, lease lost)",
                c(&s.batch_released),
            ),
            (
                "inference_microseconds",
                "time spent in model runs",
                c(&s.inference_us),
            ),
            (
                "batch_segments_queued",
                "closed segments queued for batch analysis",
                c(&s.batch_queued),
            ),
            (
                "batch_segments_refused",
                "closed segments not queued: the stream's batch queue was full",
                c(&s.batch_refused),
            ),
            (
                "batch_segments_done",
                "segments analysed in batch mode",
                c(&s.batch_done),
            ),
            (
                "batch_segments_failed",
                "batch jobs that failed",
                c(&s.batch_failed),
            ),
            (
                "batch_segments_unpushed",
                "batch jobs that could not be pushed to the work queue engine (pushed again when an ingest host starts)",
                c(&s.batch_unpushed),
            ),
            (
                "panics",
                "panics caught in analysers and the batch worker",
                c(&s.panics),
            ),
        ] {
            let name = format!("media_analyzer_analysis_{name}");
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                &name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let waiting = c(&s.batch_queued).saturating_sub(c(&s.batch_done) + c(&s.batch_failed));
        let depth = ConstGauge::new(waiting as i64);
        depth.encode(encoder.encode_descriptor(
            "media_analyzer_analysis_batch_queue_depth",
            "segments waiting for batch analysis (queued by this process)",
            None,
            depth.metric_type(),
        )?)?;
        if s.queue.sampled.load(Ordering::Relaxed) {
            for (name, help, value) in [
                (
                    "media_analyzer_batch_queue_waiting",
                    "jobs in the work queue engine not yet delivered to a worker",
                    c(&s.queue.waiting) as f64,
                ),
                (
                    "media_analyzer_batch_queue_in_flight",
                    "jobs delivered to a worker and not yet acknowledged",
                    c(&s.queue.in_flight) as f64,
                ),
                (
                    "media_analyzer_batch_queue_oldest_age_seconds",
                    "age of the oldest job in the work queue engine",
                    c(&s.queue.oldest_age_ms) as f64 / 1000.0,
                ),
            ] {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        let mut stages = encoder.encode_descriptor(
            "media_analyzer_analysis_stage_seconds",
            "time live frames spend in each stage, from the video reaching the host to the results going to the bus",
            None,
            MetricType::Histogram,
        )?;
        for stage in Stage::ALL {
            s.stage(stage).encode(&mut stages, stage)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guarded;

    /// What `/metrics` shows of `stats`.
    fn exposition(stats: &Arc<AnalysisStats>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(stats.clone().collector());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_panic_in_guarded_work_is_caught_and_counted() {
        let stats = Arc::new(AnalysisStats::default());
        assert_eq!(guarded(&stats, "str_a", || 7), Some(7));
        let caught: Option<()> = guarded(&stats, "str_a", || panic!("poison frame"));
        assert_eq!(caught, None);
        assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
        assert!(exposition(&stats).contains("media_analyzer_analysis_panics_total 1\n"));
    }

    #[test]
    fn stage_histograms_render_cumulative_prometheus_buckets() {
        let stats = Arc::new(AnalysisStats::default());
        for ms in [0, 3, 3, 40, 900] {
            stats.stage(Stage::Queue).observe_ms(ms);
        }
        stats.stage(Stage::Decode).observe_ms(-5);
        let text = exposition(&stats);
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        let m = "media_analyzer_analysis_stage_seconds";
        assert_eq!(
            line(&format!("{m}_bucket{{le=\"0.001\",stage=\"queue\"}}")),
            1.0
        );
        assert_eq!(
            line(&format!("{m}_bucket{{le=\"0.005\",stage=\"queue\"}}")),
            3.0
        );
        assert_eq!(
            line(&format!("{m}_bucket{{le=\"0.05\",stage=\"queue\"}}")),
            4.0
        );
        assert_eq!(
            line(&format!("{m}_bucket{{le=\"0.5\",stage=\"queue\"}}")),
            4.0
        );
        assert_eq!(
            line(&format!("{m}_bucket{{le=\"+Inf\",stage=\"queue\"}}")),
            5.0
        );
        assert_eq!(line(&format!("{m}_count{{stage=\"queue\"}}")), 5.0);
        assert_eq!(line(&format!("{m}_sum{{stage=\"queue\"}}")), 0.946);
        // A clock step backwards counts as 0, not as a huge unsigned value.
        assert_eq!(line(&format!("{m}_sum{{stage=\"decode\"}}")), 0.0);
        assert_eq!(line(&format!("{m}_count{{stage=\"analysis\"}}")), 0.0);
    }
}
