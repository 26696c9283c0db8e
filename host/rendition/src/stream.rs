//! One stream's effects rendition, on its own thread: tapped packets → decoder → effects →
//! encoder → MPEG-TS → the rendition's segments, cut where the original's are.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use decode::VideoDecoder;
use effects::{Rendered, Renderer, RgbaFrame, Yuv420Frame};
use hls::rendition::{EFFECTS, RenditionWriter, Variant};
use hls::ts::TsMuxer;
use hls::{Segment, TapItem, TapReceiver};
use media::aac::AacConfig;
use media::{MediaKind, MediaPacket};
use tracing::{debug, info, warn};

use crate::encode::{self, EncodedFrame, Encoder};
use crate::timeline::Timeline;
use crate::{Error, RenditionConfig, RenditionStats};

/// A step of the rendition's cost: its frame rate (every `every`-th frame) and picture size
/// (`percent` of the original's width and height).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub percent: u32,
    pub every: u32,
}

/// The steps, cheapest last: half the frame rate first, then smaller pictures.
pub const LEVELS: [Level; 5] = [
    Level {
        percent: 100,
        every: 1,
    },
    Level {
        percent: 100,
        every: 2,
    },
    Level {
        percent: 67,
        every: 2,
    },
    Level {
        percent: 50,
        every: 2,
    },
    Level {
        percent: 50,
        every: 4,
    },
];

/// Segments in a row with little lag before stepping back up.
const CALM_SEGMENTS: u32 = 3;
/// How long the tap is read before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(200);

/// The lag (ms) above which the rendition steps down at its next segment, and below which (for
/// [`CALM_SEGMENTS`]) it steps back up: the wait for analysis is part of every frame's lag.
fn lag_bounds(max_wait: Duration) -> (i64, i64) {
    let wait = max_wait.as_millis() as i64;
    (wait + 2500, wait / 2 + 1000)
}

/// The lag (ms) past which the rendition stops rendering and skips to the original's newest
/// segment: stepping down at segment starts did not keep it near live (a host short of CPU, whose
/// analysis at the rendition's own priority takes what is left), and a rendition further behind
/// than this is no use to a live viewer. Its skipped segments are listed as gaps.
fn catch_up_lag(config: &RenditionConfig) -> i64 {
    match config.max_lag {
        Some(lag) => lag.as_millis().min(i64::MAX as u128) as i64,
        None => lag_bounds(config.max_wait).0 + 2 * config.target_duration_ms as i64,
    }
}

/// The next level from the lag at a segment start and the segments calm so far.
pub(crate) fn next_level(level: usize, lag_ms: i64, calm: &mut u32, max_wait: Duration) -> usize {
    let (high, low) = lag_bounds(max_wait);
    if lag_ms > high {
        *calm = 0;
        return (level + 1).min(LEVELS.len() - 1);
    }
    if lag_ms < low {
        *calm += 1;
        if *calm >= CALM_SEGMENTS && level > 0 {
            *calm = 0;
            return level - 1;
        }
    } else {
        *calm = 0;
    }
    level
}

/// The rendition's segment being written.
struct OpenSegment {
    seq: u64,
    data: Vec<u8>,
    frames: u32,
}

pub(crate) struct StreamRendition {
    stream: String,
    config: Arc<RenditionConfig>,
    tap: TapReceiver,
    timeline: Arc<Timeline>,
    stop: Arc<AtomicBool>,
    stats: Arc<RenditionStats>,
}

/// What the rendition loop keeps between packets.
struct State {
    decoder: VideoDecoder,
    renderer: Renderer,
    encoder: Option<Encoder>,
    writer: RenditionWriter,
    mux: TsMuxer,
    aac: Option<AacConfig>,
    base_dts: i64,
    /// Original segment starts seen on the tap: (seq, pts of its first video frame).
    starts: VecDeque<(u64, i64)>,
    /// The original's records of closed segments, waiting for the rendition to pass them.
    records: VecDeque<Segment>,
    /// Audio of segments not yet written: (seq, pts, frame).
    audio: VecDeque<(u64, i64, MediaPacket)>,
    /// When each video packet reached the host (pts, instant): its frame waits for analysis
    /// until `max_wait` after that, not after the rendition read it.
    arrivals: VecDeque<(i64, Instant)>,
    open: Option<OpenSegment>,
    level: usize,
    calm: u32,
    /// The level's picture size changed at the open segment.
    resized: bool,
    frame: RgbaFrame,
    /// The rendered picture when the GPU converted it for the encoder.
    yuv: Yuv420Frame,
    encoded: Vec<EncodedFrame>,
    decoded: Vec<decode::Frame>,
    /// Frames seen in the open segment (for the frame-rate step).
    in_segment: u32,
    fps: u32,
    last_pts: Option<i64>,
    master_written: bool,
    original_bandwidth: u64,
    original_size: Option<(u32, u32)>,
    /// Fell behind by [`catch_up_lag`]: packets pass undecoded until a segment start near live.
    skipping: bool,
}

impl StreamRendition {
    pub(crate) fn new(
        stream: &str,
        config: Arc<RenditionConfig>,
        tap: TapReceiver,
        timeline: Arc<Timeline>,
        stop: Arc<AtomicBool>,
        stats: Arc<RenditionStats>,
    ) -> Self {
        Self {
            stream: stream.to_string(),
            config,
            tap,
            timeline,
            stop,
            stats,
        }
    }

    pub(crate) fn run(self) {
        #[cfg(target_os = "linux")]
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
        let stream = self.stream.clone();
        match self.make() {
            Ok(_) => info!(%stream, "effects rendition ended"),
            Err(e) => warn!(%stream, "effects rendition stopped: {e}"),
        }
        self.stats.forget(&stream);
    }

    fn open_state(&self) -> Result<State, Error> {
        let mut decoder = VideoDecoder::live_h264(1).map_err(|e| Error::Decoder(e.to_string()))?;
        decoder.set_wanted(true);
        let mut renderer = Renderer::open(self.config.device).unwrap_or_else(|e| {
            warn!(stream = %self.stream, "effects on the CPU: {e}");
            Renderer::Cpu(effects::Cpu::default())
        });
        if let (Renderer::Gpu(gpu), Some(on)) = (&mut renderer, self.config.yuv_on_device) {
            gpu.set_converts_yuv(on);
        }
        // A GPU takes the decoder's YUV as it is (converted there, both ways).
        decoder.set_i420(renderer.takes_i420());
        info!(stream = %self.stream, renderer = %renderer.describe(), "effects rendition renders on");
        let writer = RenditionWriter::create(
            &self.config.root,
            &self.stream,
            EFFECTS,
            self.config.window,
            self.config.target_duration_ms,
            self.config.retain_segments,
        )?;
        Ok(State {
            decoder,
            renderer,
            encoder: None,
            writer,
            mux: TsMuxer::new(true, false),
            aac: None,
            base_dts: 0,
            starts: VecDeque::new(),
            records: VecDeque::new(),
            audio: VecDeque::new(),
            arrivals: VecDeque::new(),
            open: None,
            level: 0,
            calm: 0,
            resized: false,
            frame: RgbaFrame {
                width: 0,
                height: 0,
                pixels: Vec::new(),
            },
            yuv: Yuv420Frame::default(),
            encoded: Vec::new(),
            decoded: Vec::new(),
            in_segment: 0,
            fps: 30,
            last_pts: None,
            master_written: false,
            original_bandwidth: 0,
            original_size: None,
            skipping: false,
        })
    }

    /// Makes the rendition until the tap ends or it is stopped; returns the encoder's name.
    pub(crate) fn make(&self) -> Result<&'static str, Error> {
        let mut s = self.open_state()?;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(item) = self.tap.recv_timeout(POLL) else {
                continue;
            };
            match item {
                TapItem::Config(packet) => match packet.kind {
                    MediaKind::Video => self.decode(&mut s, &packet)?,
                    MediaKind::Audio => match AacConfig::parse(&packet.data) {
                        Ok(aac) => {
                            s.aac = Some(aac);
                            s.mux.set_streams(true, true);
                        }
                        Err(e) => warn!(stream = %self.stream, "audio left out: {e}"),
                    },
                },
                TapItem::Packet {
                    packet,
                    seq,
                    starts_segment,
                    base_dts,
                    after_loss,
                    arrived,
                } => {
                    s.base_dts = base_dts;
                    if after_loss {
                        debug!(stream = %self.stream, seq, "tap lost packets; resuming here");
                        s.decoder.resync();
                    }
                    match packet.kind {
                        MediaKind::Audio => s.audio.push_back((seq, packet.pts_ms, packet)),
                        MediaKind::Video => {
                            if starts_segment {
                                s.starts.push_back((seq, packet.pts_ms));
                            }
                            s.arrivals.push_back((packet.pts_ms, arrived));
                            while s.arrivals.len() > 1024 {
                                s.arrivals.pop_front();
                            }
                            if s.skipping && !self.resumes(&mut s, &packet, seq, starts_segment) {
                                continue;
                            }
                            self.decode(&mut s, &packet)?;
                        }
                    }
                }
                TapItem::Closed(segment) => {
                    s.original_bandwidth = s
                        .original_bandwidth
                        .max(segment.bytes * 8000 / segment.duration_ms.max(1));
                    s.records.push_back(segment);
                }
                TapItem::Ended => {
                    let mut frames = std::mem::take(&mut s.decoded);
                    if let Err(e) = s.decoder.finish(&mut frames) {
                        debug!(stream = %self.stream, "flushing the decoder: {e}");
                    }
                    for frame in frames.drain(..) {
                        self.frame(&mut s, frame)?;
                    }
                    s.decoded = frames;
                    let name = self.flush_encoder(&mut s);
                    self.finish(&mut s, u64::MAX)?;
                    s.writer.end()?;
                    return Ok(name);
                }
            }
        }
        // Stopped (the effects stage went): what was made stays listed; the playlist ends.
        let name = self.flush_encoder(&mut s);
        self.finish(&mut s, u64::MAX)?;
        s.writer.end()?;
        hls::rendition::remove_master(&self.config.root, &self.stream)?;
        Ok(name)
    }

    /// The frames the encoder still holds (a hardware encoder may keep a few) go into the open
    /// segment; returns the encoder's name.
    fn flush_encoder(&self, s: &mut State) -> &'static str {
        let Some(mut encoder) = s.encoder.take() else {
            return "none";
        };
        let mut tail = Vec::new();
        if let Err(e) = encoder.finish(&mut tail) {
            debug!(stream = %self.stream, "flushing the encoder: {e}");
        }
        for e in &tail {
            self.write_video(s, e);
        }
        encoder.name()
    }

    /// The lag reached [`catch_up_lag`]: the
    /// open segment's frames are dropped (it is listed as a gap), and packets pass undecoded
    /// until [`Self::resumes`]; the rendition resumes at its cheapest level and steps back up
    /// as it keeps up.
    fn fall_behind(&self, s: &mut State, lag_ms: i64) {
        s.skipping = true;
        s.open = None;
        // Frames an encoder still holds belong to the dropped segment (nothing is open: they go);
        // the next segment starts a new encoder, marked as a discontinuity.
        if s.encoder.is_some() {
            self.flush_encoder(s);
            s.resized = true;
        }
        s.calm = 0;
        let cheapest = LEVELS.len() - 1;
        if s.level != cheapest {
            self.stats.level_changes.fetch_add(1, Ordering::Relaxed);
            s.level = cheapest;
        }
        self.stats.catch_ups.fetch_add(1, Ordering::Relaxed);
        warn!(stream = %self.stream, lag_ms, "effects rendition fell behind; skipping to the original's newest segment");
    }

    /// Whether a skipping rendition resumes at this video packet: a segment start less than
    /// half of [`catch_up_lag`] behind the original (the newest start is at most a segment
    /// behind).
    fn resumes(&self, s: &mut State, packet: &MediaPacket, seq: u64, starts_segment: bool) -> bool {
        let lag = self.tap.newest_pts() - packet.pts_ms;
        let bound = catch_up_lag(&self.config);
        if !starts_segment || lag > bound / 2 {
            return false;
        }
        s.skipping = false;
        s.decoder.resync();
        s.last_pts = None; // the frame rate is measured again, not across the skip
        info!(stream = %self.stream, seq, lag_ms = lag, "effects rendition resumes near live");
        true
    }

    fn decode(&self, s: &mut State, packet: &MediaPacket) -> Result<(), Error> {
        let mut frames = std::mem::take(&mut s.decoded);
        if let Err(e) = s.decoder.push(packet, &mut frames) {
            debug!(stream = %self.stream, "a packet did not decode: {e}");
            s.decoder.resync();
        }
        let result = frames.drain(..).try_for_each(|f| self.frame(s, f));
        s.decoded = frames;
        result
    }

    /// Renders the frame's effects for the encoder: a decoded I420 frame as it is (a GPU
    /// converts it both ways), an RGB frame through the RGBA picture.
    fn render(
        &self,
        s: &mut State,
        frame: &decode::Frame,
        effects: &[effects::Effect],
    ) -> Result<Rendered, effects::Error> {
        match frame.i420.as_deref() {
            Some(i420) => s.renderer.render_i420_for_encoder(
                (frame.width, frame.height, i420),
                &mut s.frame,
                effects,
                &mut s.yuv,
            ),
            None => {
                s.frame.set_rgb(frame.width, frame.height, &frame.rgb)?;
                s.renderer
                    .render_for_encoder(&mut s.frame, effects, &mut s.yuv)
            }
        }
    }

    /// One decoded frame: into its segment, rendered and encoded unless the level leaves it out.
    fn frame(&self, s: &mut State, frame: decode::Frame) -> Result<(), Error> {
        let pts = frame.pts_ms;
        if let Some(last) = s.last_pts
            && pts > last
        {
            let interval = (pts - last).max(1);
            s.fps = (1000 / interval).clamp(1, 120) as u32;
        }
        s.last_pts = Some(pts);
        s.original_size.get_or_insert((frame.width, frame.height));
        if s.skipping {
            return Ok(()); // decoded before the rendition fell behind
        }
        let lag = self.tap.newest_pts() - pts;
        if lag > catch_up_lag(&self.config) {
            self.fall_behind(s, lag);
            return Ok(());
        }
        // The segment the frame is in: the last original start at or before it.
        while s.starts.len() > 1 && s.starts[1].1 <= pts {
            s.starts.pop_front();
        }
        let Some(&(seq, _)) = s.starts.front().filter(|(_, start)| *start <= pts) else {
            return Ok(()); // before the first segment the tap started with
        };
        if s.open.as_ref().is_some_and(|o| o.seq > seq) {
            return Ok(()); // a late frame of a segment already listed
        }
        let new_segment = s.open.as_ref().is_none_or(|o| o.seq != seq);
        if new_segment {
            self.finish(s, seq)?;
            let level = next_level(s.level, lag, &mut s.calm, self.config.max_wait);
            if level != s.level {
                info!(stream = %self.stream, from = s.level, to = level, lag_ms = lag, "effects rendition changes level");
                self.stats.level_changes.fetch_add(1, Ordering::Relaxed);
                s.level = level;
            }
            let mut data = Vec::with_capacity(256 * 1024);
            s.mux.write_tables(&mut data);
            s.open = Some(OpenSegment {
                seq,
                data,
                frames: 0,
            });
            s.in_segment = 0;
        }
        let level = LEVELS[s.level];
        let index = s.in_segment;
        s.in_segment += 1;
        if !index.is_multiple_of(level.every) {
            self.stats.frames_left_out.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let keyframe = index == 0;
        if keyframe {
            self.ensure_encoder(s, frame.width, frame.height)?;
        }
        let Some(encoder) = s.encoder.as_ref() else {
            return Ok(()); // no keyframe yet for this segment's encoder
        };
        if encoder.input_size() != (frame.width, frame.height) {
            // The picture size changed mid-segment (a reconnect does this at a segment start):
            // wait for the next segment's keyframe.
            return Ok(());
        }
        // Effects from the analysed frames around it, waiting for the one after.
        let arrived = s
            .arrivals
            .iter()
            .find(|(p, _)| *p == pts)
            // Not kept (the rendition is over 1024 packets behind): it came before the oldest.
            .or(s.arrivals.front())
            .map_or_else(Instant::now, |(_, at)| *at);
        while s.arrivals.front().is_some_and(|(p, _)| *p < pts) {
            s.arrivals.pop_front();
        }
        let around = self.timeline.around(pts, arrived + self.config.max_wait);
        let mut effects = around.effects(frame.width, frame.height);
        if around.stalled {
            self.stats.frames_stalled.fetch_add(1, Ordering::Relaxed);
            if self.config.on_stall.blurs_frame(around.privacy()) {
                effects.push(effects::Effect::cover(frame.width, frame.height));
            }
        }
        let rendered = match self.render(s, &frame, &effects) {
            Ok(rendered) => rendered,
            Err(e) if matches!(s.renderer, Renderer::Gpu(_)) => {
                // A GPU that fails goes (hardware or software); the CPU renders the same (never
                // a frame without its effects), from RGB frames again.
                warn!(stream = %self.stream, "effects device failed, continuing on the CPU: {e}");
                s.renderer = Renderer::Cpu(effects::Cpu::default());
                s.decoder.set_i420(false);
                self.render(s, &frame, &effects)
                    .map_err(|e| Error::Encoder(e.to_string()))?
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Decoder(e.to_string()));
            }
        };
        let mut encoded = std::mem::take(&mut s.encoded);
        let size = (frame.width, frame.height);
        let result = match (s.encoder.as_mut(), rendered, frame.i420.as_deref()) {
            (Some(encoder), Rendered::Rgba, _) => {
                encoder.encode(&s.frame.pixels, pts, keyframe, &mut encoded)
            }
            (Some(encoder), Rendered::Yuv420, _) => {
                self.stats
                    .frames_yuv_on_device
                    .fetch_add(1, Ordering::Relaxed);
                encoder.encode_yuv(&s.yuv, pts, keyframe, &mut encoded)
            }
            (Some(encoder), Rendered::Decoded, Some(i420)) => {
                encoder.encode_i420(size, i420, pts, keyframe, &mut encoded)
            }
            (Some(_), Rendered::Decoded, None) => Err(Error::Encoder("no decoded picture".into())),
            (None, _, _) => Ok(()),
        };
        if let Err(e) = result {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            warn!(stream = %self.stream, "a frame did not encode: {e}");
        }
        self.stats.frames_rendered.fetch_add(1, Ordering::Relaxed);
        for e in encoded.drain(..) {
            self.write_video(s, &e);
        }
        s.encoded = encoded;
        self.stats
            .set_live(&self.stream, self.tap.newest_pts() - pts, s.level);
        Ok(())
    }

    /// An encoder for this level's picture size (a new one when the size changed).
    fn ensure_encoder(&self, s: &mut State, width: u32, height: u32) -> Result<(), Error> {
        let level = LEVELS[s.level];
        let output = (
            (width * level.percent / 100).max(2),
            (height * level.percent / 100).max(2),
        );
        let fits = s.encoder.as_ref().is_some_and(|e| {
            e.input_size() == (width, height) && e.output_size() == encode::even(output)
        });
        if fits {
            return Ok(());
        }
        s.resized |= s.encoder.is_some();
        self.flush_encoder(s);
        let fps = (s.fps / level.every).max(1);
        let encoder = Encoder::open(self.config.encoder, (width, height), output, fps, 2)?;
        info!(stream = %self.stream, encoder = encoder.name(), width = output.0, height = output.1, fps, "effects rendition encodes");
        s.encoder = Some(encoder);
        Ok(())
    }

    /// Muxes one encoded frame into the open segment, after the audio up to its time.
    fn write_video(&self, s: &mut State, e: &EncodedFrame) {
        let Some(open) = s.open.as_mut() else {
            return;
        };
        mux_audio(
            &mut s.audio,
            &mut s.mux,
            s.aac.as_ref(),
            s.base_dts,
            open,
            e.pts_ms,
        );
        s.mux.write_video_annex_b(
            &e.data,
            e.keyframe,
            e.dts_ms - s.base_dts,
            e.pts_ms - s.base_dts,
            &mut open.data,
        );
        open.frames += 1;
    }

    /// Lists every original segment before `seq` (the open one with what was made of it, the
    /// others as gaps), once the original has closed them.
    fn finish(&self, s: &mut State, seq: u64) -> Result<(), Error> {
        while let Some(record) = s.records.front().filter(|r| r.seq < seq).cloned() {
            s.records.pop_front();
            let mut resized = false;
            if let Some(mut open) = s.open.take_if(|o| o.seq == record.seq) {
                // The audio that is left of it goes in after the last frame.
                let aac = s.aac.as_ref();
                mux_audio(
                    &mut s.audio,
                    &mut s.mux,
                    aac,
                    s.base_dts,
                    &mut open,
                    i64::MAX,
                );
                if open.frames > 0 {
                    s.writer.append(open.seq, &open.data)?;
                }
                resized = std::mem::take(&mut s.resized);
            }
            let gap = s.writer.close(&record, resized)?;
            self.stats.segments.fetch_add(1, Ordering::Relaxed);
            if gap {
                self.stats.gaps.fetch_add(1, Ordering::Relaxed);
            }
            if !s.master_written && !gap {
                s.master_written = true;
                self.write_master(s, &record);
            }
        }
        Ok(())
    }

    fn write_master(&self, s: &State, record: &Segment) {
        let size = s.encoder.as_ref().map(Encoder::output_size);
        let bandwidth = std::fs::metadata(s.writer.dir().join(record.file_name()))
            .map(|m| m.len() * 8000 / record.duration_ms.max(1))
            .unwrap_or(0);
        let variants = [
            Variant {
                uri: "index.m3u8".into(),
                bandwidth: s.original_bandwidth,
                resolution: s.original_size,
            },
            Variant {
                uri: format!("{EFFECTS}/index.m3u8"),
                bandwidth,
                resolution: size,
            },
        ];
        if let Err(e) = hls::rendition::write_master(&self.config.root, &self.stream, &variants) {
            warn!(stream = %self.stream, "could not write the master playlist: {e}");
        }
    }
}

/// Muxes the queued audio of `open`'s segment up to `until_pts` into it, in order; audio of
/// earlier segments (listed as gaps) is dropped on the way.
fn mux_audio(
    audio: &mut VecDeque<(u64, i64, MediaPacket)>,
    mux: &mut TsMuxer,
    aac: Option<&AacConfig>,
    base_dts: i64,
    open: &mut OpenSegment,
    until_pts: i64,
) {
    while audio
        .front()
        .is_some_and(|(seq, pts, _)| *seq <= open.seq && *pts <= until_pts)
    {
        if let Some((seq, pts, packet)) = audio.pop_front()
            && seq == open.seq
            && let Some(aac) = aac
        {
            mux.write_audio(aac, &packet.data, pts - base_dts, &mut open.data);
        }
    }
}
