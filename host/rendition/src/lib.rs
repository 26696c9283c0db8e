//! The effects rendition: while a stream's pipeline has an effects stage, its video is decoded
//! again on a thread of its own, the effects its selectors chose are rendered on every frame
//! (`host/effects`: a GPU, or the CPU), and the frames are encoded to H.264 (NVENC or libx264) and
//! written as `{hls}/{stream}/effects/`, a second HLS rendition with the original's segment
//! numbers, boundaries, timestamps and program date-times, beside a master playlist offering both.
//!
//! Data flow: the packager's tap ([`hls::Taps`]) hands over each packet with its segment; the
//! analysis output hands over each analysed frame's effects ([`StreamEffects`] → [`Timeline`]).
//! A frame is rendered with the blurs of the analysed frames before and after it, waiting for the
//! one after up to [`RenditionConfig::max_wait`] (so a face is never unblurred between two
//! analyses). The rendition never holds up the original or the analysis: the tap drops packets
//! rather than wait, and when the rendition falls behind it lowers its own frame rate, then its
//! picture size ([`Level`]); its lag is a metric.

mod encode;
mod stream;
mod timeline;

pub mod bench;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tracing::{info, warn};

pub use encode::{EncodedFrame, Encoder, EncoderChoice};
pub use stream::{LEVELS, Level};
pub use timeline::{AnalysedEffects, Around, Timeline};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("encoder: {0}")]
    Encoder(String),
    #[error("decoder: {0}")]
    Decoder(String),
    #[error("writing the rendition: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings of the effects renditions.
#[derive(Debug, Clone)]
pub struct RenditionConfig {
    /// `{data}/hls` (the packager's root).
    pub root: PathBuf,
    /// Segments listed in the rendition's live playlist (as the original's).
    pub window: usize,
    pub target_duration_ms: u64,
    /// Segments kept on disk (as the original's).
    pub retain_segments: usize,
    /// Where effects are rendered.
    pub device: effects::DevicePreference,
    /// Whether a GPU device takes the decoder's YUV and hands the encoder YUV, converting on the
    /// device (`None`: as the device's [`effects::Gpu::converts_yuv`] says, on a hardware GPU).
    pub yuv_on_device: Option<bool>,
    pub encoder: EncoderChoice,
    /// How long after a frame reached the host the rendition waits for the complete analysed
    /// frame after it (a rendition running behind waits no more); past it the frame stalled.
    pub max_wait: Duration,
    /// What a frame gets when that wait ran out (analysis stalled).
    pub on_stall: OnStall,
    /// Packets queued between the packager and a rendition.
    pub queue: usize,
    /// How far behind the original a rendition may fall before it skips to the original's
    /// newest segment (`None`: the lag at which it steps down, the wait for analysis plus 2.5 s,
    /// plus two segments: 9.5 s by default).
    pub max_lag: Option<Duration>,
}

impl Default for RenditionConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("data/hls"),
            window: 6,
            target_duration_ms: 2000,
            retain_segments: 1800,
            device: effects::DevicePreference::Auto,
            yuv_on_device: None,
            encoder: EncoderChoice::Auto,
            max_wait: Duration::from_secs(3),
            on_stall: OnStall::Auto,
            queue: 4096,
            max_lag: None,
        }
    }
}

/// What the rendition renders on a frame when its analysis stalled: no complete analysed frame
/// after it (one on which every effect selector chose) within [`RenditionConfig::max_wait`]:
/// analysis fell behind or stopped, or a selector kept failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStall {
    /// `BlurFrame` on streams whose effects blur faces for privacy (the bundled `privacy-blur`
    /// runs on them), `Carry` on the others.
    #[default]
    Auto,
    /// The last analysed frame's effects carry forward (a face that moved meanwhile is uncovered).
    Carry,
    /// The whole frame is blurred, on top of the last effects, until analysis catches up: fail
    /// closed, for streams where no face may ever air unblurred.
    BlurFrame,
}

impl OnStall {
    /// Whether a stalled frame is blurred whole; `privacy`: the stream's effects blur faces.
    pub fn blurs_frame(self, privacy: bool) -> bool {
        match self {
            Self::Auto => privacy,
            Self::Carry => false,
            Self::BlurFrame => true,
        }
    }
}

impl std::str::FromStr for OnStall {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "carry" => Ok(Self::Carry),
            "blur-frame" => Ok(Self::BlurFrame),
            other => Err(format!("'{other}' is not auto, carry or blur-frame")),
        }
    }
}

/// Counters and per-stream state for `/metrics`.
#[derive(Debug, Default)]
pub struct RenditionStats {
    pub frames_rendered: AtomicU64,
    /// Frames rendered on a GPU device and handed to the encoder as YUV converted there.
    pub frames_yuv_on_device: AtomicU64,
    /// Frames decoded but left out by a lowered frame rate.
    pub frames_left_out: AtomicU64,
    pub segments: AtomicU64,
    /// Segments listed as gaps (nothing could be made of them).
    pub gaps: AtomicU64,
    /// Steps down or up between [`LEVELS`].
    pub level_changes: AtomicU64,
    /// Frames that could not be rendered or encoded.
    pub failures: AtomicU64,
    /// Frames rendered after the wait for analysis ran out (with `BlurFrame`: blurred whole).
    pub frames_stalled: AtomicU64,
    /// Times a rendition fell so far behind that it skipped to the original's newest segment.
    pub catch_ups: AtomicU64,
    /// Per stream making a rendition: its lag (ms) and level.
    live: Mutex<HashMap<String, (i64, usize)>>,
}

impl RenditionStats {
    fn set_live(&self, stream: &str, lag_ms: i64, level: usize) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream.to_string(), (lag_ms, level));
    }

    fn forget(&self, stream: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stream);
    }

    /// The stream's rendition lag (ms behind the original) and level, while it makes one.
    pub fn live(&self, stream: &str) -> Option<(i64, usize)> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .copied()
    }

    pub fn collector(self: Arc<Self>) -> Box<dyn Collector> {
        Box::new(RenditionMetrics(self))
    }
}

#[derive(Debug)]
struct RenditionMetrics(Arc<RenditionStats>);

impl Collector for RenditionMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "frames_rendered",
                "frames rendered and encoded",
                c(&s.frames_rendered),
            ),
            (
                "frames_yuv_on_device",
                "frames converted to YUV for the encoder on the GPU device",
                c(&s.frames_yuv_on_device),
            ),
            (
                "frames_left_out",
                "frames left out by a lowered frame rate",
                c(&s.frames_left_out),
            ),
            ("segments", "segments written", c(&s.segments)),
            ("gaps", "segments listed as gaps", c(&s.gaps)),
            (
                "level_changes",
                "steps of frame rate or picture size",
                c(&s.level_changes),
            ),
            (
                "failures",
                "frames that could not be rendered or encoded",
                c(&s.failures),
            ),
            (
                "frames_stalled",
                "frames rendered after the wait for their analysis ran out",
                c(&s.frames_stalled),
            ),
            (
                "catch_ups",
                "skips to the original's newest segment by a rendition too far behind",
                c(&s.catch_ups),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                &format!("media_analyzer_effects_rendition_{name}"),
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let live: Vec<(String, (i64, usize))> = s
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let streams = ConstGauge::new(live.len() as i64);
        streams.encode(encoder.encode_descriptor(
            "media_analyzer_effects_renditions",
            "streams making an effects rendition on this host",
            None,
            streams.metric_type(),
        )?)?;
        let mut lag = encoder.encode_descriptor(
            "media_analyzer_effects_rendition_lag_seconds",
            "how far each stream's effects rendition is behind its original",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (stream, (lag_ms, _)) in &live {
            ConstGauge::new(*lag_ms as f64 / 1000.0)
                .encode(lag.encode_family(&[("stream", stream.as_str())])?)?;
        }
        let mut level = encoder.encode_descriptor(
            "media_analyzer_effects_rendition_level",
            "each stream's effects rendition step (0: full frame rate and size)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (stream, (_, l)) in &live {
            ConstGauge::new(*l as i64)
                .encode(level.encode_family(&[("stream", stream.as_str())])?)?;
        }
        Ok(())
    }
}

struct Running {
    session: u64,
    timeline: Arc<Timeline>,
    /// Asks the rendition's thread to stop.
    stop: Arc<AtomicBool>,
}

/// The effects renditions of this host's streams.
#[derive(Clone)]
pub struct Renditions {
    config: Arc<RenditionConfig>,
    taps: hls::Taps,
    stats: Arc<RenditionStats>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    sessions: Arc<AtomicU64>,
}

impl Renditions {
    /// Renditions fed by the packager's `taps` (the same [`hls::Taps`] as its config's).
    pub fn new(config: RenditionConfig, taps: hls::Taps) -> Self {
        Self {
            config: Arc::new(config),
            taps,
            stats: Arc::default(),
            running: Arc::default(),
            sessions: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<RenditionStats> {
        self.stats.clone()
    }

    /// Where one stream's analysis output hands over its frames' effects.
    pub fn stream(&self, stream: &str) -> StreamEffects {
        StreamEffects {
            renditions: self.clone(),
            stream: stream.to_string(),
            running: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the stream's rendition (from its next segment); returns its timeline and session.
    fn start(&self, stream: &str) -> (Arc<Timeline>, u64) {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        let timeline = Arc::new(Timeline::default());
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(old) = self.lock().insert(
            stream.to_string(),
            Running {
                session,
                timeline: timeline.clone(),
                stop: stop.clone(),
            },
        ) {
            old.stop.store(true, Ordering::Relaxed);
            old.timeline.close();
        }
        let tap = self.taps.open(stream, self.config.queue);
        let job = stream::StreamRendition::new(
            stream,
            self.config.clone(),
            tap,
            timeline.clone(),
            stop,
            self.stats.clone(),
        );
        let name = stream.to_string();
        let renditions = self.clone();
        let spawned = std::thread::Builder::new()
            .name("effects-rendition".into())
            .spawn(move || {
                job.run();
                renditions.finished(&name, session);
            });
        if let Err(e) = spawned {
            warn!(%stream, "could not start the effects rendition: {e}");
            self.taps.close(stream);
            self.lock().remove(stream);
        } else {
            info!(%stream, "effects rendition started");
        }
        (timeline, session)
    }

    /// Stops the stream's rendition of `session` (the tap closes; what was made stays listed,
    /// and the playlist ends). It counts as running until its thread has finished.
    fn stop(&self, stream: &str, session: u64) {
        let running = self.lock();
        if let Some(r) = running.get(stream).filter(|r| r.session == session) {
            r.stop.store(true, Ordering::Relaxed);
            r.timeline.close();
            self.taps.close(stream);
        }
    }

    fn finished(&self, stream: &str, session: u64) {
        let mut running = self.lock();
        if running.get(stream).is_some_and(|r| r.session == session) {
            running.remove(stream);
            self.taps.close(stream);
        }
    }

    /// Whether `stream` has a rendition being made (or finishing after a stop).
    pub fn is_running(&self, stream: &str) -> bool {
        self.lock().contains_key(stream)
    }
}

/// One stream's analysis output's end of the renditions: the effects of each analysed frame, in
/// frame order. The rendition starts with the first frame whose pipeline has an effects stage, and
/// stops when a frame comes without one, or when this is dropped (the stream's analysis ended).
pub struct StreamEffects {
    renditions: Renditions,
    stream: String,
    running: Option<(Arc<Timeline>, u64)>,
}

impl StreamEffects {
    /// The next analysed frame and the effects its selectors chose; `on`: whether the stream's
    /// pipeline has an effects stage.
    pub fn frame(&mut self, on: bool, frame: AnalysedEffects) {
        if !on {
            self.end();
            return;
        }
        let (timeline, _) = self
            .running
            .get_or_insert_with(|| self.renditions.start(&self.stream));
        timeline.push(frame);
    }

    /// The stream's analysis ended, or its effects stage went: the rendition stops.
    pub fn end(&mut self) {
        if let Some((timeline, session)) = self.running.take() {
            timeline.close();
            self.renditions.stop(&self.stream, session);
        }
    }
}

impl Drop for StreamEffects {
    fn drop(&mut self) {
        // The stream ended: the tap sees the packager's end and the rendition lists its last
        // segment; only the waiting for analysis stops here.
        if let Some((timeline, _)) = self.running.take() {
            timeline.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_stall_blurs_the_frame_as_asked_and_auto_on_privacy_streams_only() {
        let parsed = |s: &str| s.parse::<OnStall>();
        assert_eq!(parsed("auto"), Ok(OnStall::Auto));
        assert_eq!(OnStall::default(), OnStall::Auto);
        assert!(
            parsed("blur")
                .unwrap_err()
                .contains("auto, carry or blur-frame")
        );
        for (on_stall, privacy, blurs) in [
            ("auto", true, true),
            ("auto", false, false),
            ("carry", true, false),
            ("blur-frame", false, true),
        ] {
            assert_eq!(
                parsed(on_stall).unwrap().blurs_frame(privacy),
                blurs,
                "{on_stall}"
            );
        }
    }

    #[test]
    fn a_stalled_frame_is_blurred_whole() {
        // A fine checkerboard: every pixel differs from its neighbours.
        let (w, h) = (96u32, 64u32);
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = if (i % w + i / w) % 2 == 0 { 0 } else { 255 };
                [v, v, v, 255]
            })
            .collect();
        let mut frame = effects::RgbaFrame::new(w, h, pixels).unwrap();
        effects::Renderer::Cpu(effects::Cpu::default())
            .render(&mut frame, &[effects::Effect::cover(w, h)])
            .unwrap();
        // Every pixel is now close to the mean grey, corners and edges included.
        let worst = frame
            .pixels
            .chunks_exact(4)
            .map(|p| (p[0] as i32 - 128).abs())
            .max()
            .unwrap();
        assert!(worst < 40, "a pixel {worst} away from grey");
        assert_eq!("blur-frame".parse(), Ok(OnStall::BlurFrame));
        assert_eq!("carry".parse(), Ok(OnStall::Carry));
        assert!("fail-open".parse::<OnStall>().is_err());
    }
}
