//! Decoding for analysis: H.264 access units (live, from the stream hub) or a recorded file /
//! HLS URL (batch `analyze`) become RGB frames with their presentation time. Decoding runs on the
//! caller's thread with an explicit libavcodec thread count; the [`sampler`] decides which frames
//! are analysed. Nothing here is on the HLS path: a slow decoder drops analysis frames, not video.

pub mod file;
pub mod sampler;

use std::sync::{Arc, Once};

use ffmpeg::codec;
use ffmpeg::software::scaling;
use ffmpeg::util::format::Pixel;
use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;
use media::avc::AvcConfig;
use media::{MediaKind, MediaPacket};

pub use file::FileSource;
pub use sampler::{LatestFrame, SamplerStats};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("libav: {0}")]
    Av(#[from] ffmpeg::Error),
    #[error("bad H.264 data: {0}")]
    Avc(#[from] media::avc::AvcError),
    #[error("{0}")]
    Input(String),
}

/// A decoded picture, packed RGB24 (`width * height * 3` bytes, no row padding).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode order number within the stream (or file), from 0.
    pub seq: u64,
    /// Presentation time in milliseconds (the stream's media clock).
    pub pts_ms: i64,
    pub width: u32,
    pub height: u32,
    pub rgb: Arc<Vec<u8>>,
    /// The decoder's own picture instead of `rgb` (which is then empty), when it was asked for
    /// ([`VideoDecoder::set_i420`]) and the picture is YUV 4:2:0 of even size: I420, the Y plane
    /// then U then V, rows without padding (`width * height * 3 / 2` bytes).
    pub i420: Option<Arc<Vec<u8>>>,
    /// Unix milliseconds when the frame's packet reached the decoder (live input; 0 if unknown).
    pub received_ms: i64,
    /// Unix milliseconds when the packet whose decoding let the frame out arrived (live input; 0
    /// if unknown). Later than `received_ms` when the stream has B-frames: a frame leaves the
    /// decoder in display order, after the frames shown before it.
    pub released_ms: i64,
    /// Unix milliseconds when the decoder gave the frame out, converted to RGB.
    pub decoded_ms: i64,
}

impl Frame {
    /// A frame just decoded (`decoded_ms` is now); the live input's arrival times are set later.
    pub fn new(seq: u64, pts_ms: i64, width: u32, height: u32, rgb: Vec<u8>) -> Self {
        Self {
            seq,
            pts_ms,
            width,
            height,
            rgb: Arc::new(rgb),
            i420: None,
            received_ms: 0,
            released_ms: 0,
            decoded_ms: media::now_ms(),
        }
    }
}

static INIT: Once = Once::new();

/// Initialises libav once per process (logging at errors only); every libav user calls it.
pub fn init_libav() {
    init();
}

fn init() {
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    });
}

/// Where the decoder's input comes from, which decides how packets are framed.
enum Input {
    /// Live: AVCC frames + an AVC configuration packet; converted to Annex B with in-band
    /// SPS/PPS before each keyframe, so the decoder needs no extradata.
    Live {
        avc: Option<AvcConfig>,
        annex_b: Vec<u8>,
    },
    /// A demuxed file: packets go to a decoder made from the stream's parameters as they are.
    Demuxed,
}

/// H.264 (or anything libavcodec decodes, for files) → RGB frames.
/// How much of the stream the decoder works on, as analysis can take it. Lighter efforts cost
/// less CPU per second of video: analysis of many streams on few cores keeps up with each
/// stream's share instead of decoding frames nobody analyses.
///
/// Ordered from most to least work. Moving to a lighter effort applies at once; moving back to a
/// heavier one after [`Self::Anchors`] or [`Self::KeyframesOnly`] waits for the next keyframe (the
/// frames those efforts skipped are references of frames the heavier one decodes), while the
/// lighter effort goes on decoding until then: no frame is decoded against a missing reference,
/// and none is lost to a resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DecodeEffort {
    /// Every frame, full quality.
    Full,
    /// No deblocking and no non-reference frames (B-frames that nothing refers to).
    Light,
    /// The anchor frames only (I and P): no B-frames at all, no deblocking. B-frames are never
    /// references of I or P frames, so what is decoded is exact (bar deblocking); with OBS's and
    /// x264's usual 2–3 B-frames this is a third to a quarter of the frames.
    Anchors,
    /// Keyframes only.
    KeyframesOnly,
}

pub struct VideoDecoder {
    decoder: ffmpeg::decoder::Video,
    effort: DecodeEffort,
    /// A heavier effort asked for, applied at the next keyframe.
    pending_effort: Option<DecodeEffort>,
    /// Whether the next decoded frames are converted and returned (see [`Self::set_wanted`]).
    wanted: bool,
    /// Whether YUV 4:2:0 pictures are returned as they are (see [`Self::set_i420`]).
    i420: bool,
    /// Decoded frames that were not converted.
    pub passed: u64,
    input: Input,
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    decoded: frame::Video,
    converted: frame::Video,
    /// After lost packets: drop input until the next keyframe.
    waiting_for_keyframe: bool,
    next_seq: u64,
}

/// Opens a decoder with `threads` threads of `kind`: frame threads raise throughput but each adds
/// a frame of delay; slice threads add none, and split a frame's decoding where the stream has
/// several slices per frame (x264's zerolatency tune, as in OBS's low-latency settings).
fn open_decoder(
    mut context: codec::context::Context,
    kind: codec::threading::Type,
    threads: usize,
) -> Result<ffmpeg::decoder::Video, DecodeError> {
    context.set_threading(codec::threading::Config {
        kind,
        count: threads.max(1),
        ..Default::default()
    });
    Ok(context.decoder().video()?)
}

impl VideoDecoder {
    /// A decoder for live H.264 from the stream hub. `threads`: libavcodec slice threads (no
    /// added delay; a frame comes out as soon as it is decoded and due in display order).
    pub fn live_h264(threads: usize) -> Result<Self, DecodeError> {
        init();
        let codec = ffmpeg::decoder::find(codec::Id::H264)
            .ok_or_else(|| DecodeError::Input("libavcodec has no H.264 decoder".into()))?;
        let decoder = open_decoder(
            codec::context::Context::new_with_codec(codec),
            codec::threading::Type::Slice,
            threads,
        )?;
        Ok(Self::with(
            decoder,
            Input::Live {
                avc: None,
                annex_b: Vec::with_capacity(256 * 1024),
            },
        ))
    }

    /// A decoder for a demuxed stream with these codec parameters (`threads` frame threads: files
    /// are decoded for throughput).
    pub fn for_parameters(
        parameters: codec::Parameters,
        threads: usize,
    ) -> Result<Self, DecodeError> {
        init();
        let decoder = open_decoder(
            codec::context::Context::from_parameters(parameters)?,
            codec::threading::Type::Frame,
            threads,
        )?;
        Ok(Self::with(decoder, Input::Demuxed))
    }

    fn with(decoder: ffmpeg::decoder::Video, input: Input) -> Self {
        Self {
            decoder,
            effort: DecodeEffort::Full,
            pending_effort: None,
            wanted: true,
            i420: false,
            passed: 0,
            input,
            scaler: None,
            decoded: frame::Video::empty(),
            converted: frame::Video::empty(),
            waiting_for_keyframe: true,
            next_seq: 0,
        }
    }

    /// Feeds one hub packet (video only; audio is ignored); decoded frames are appended to `out`.
    /// Whether frames decoded from now on are converted to RGB and returned. Frames that are not
    /// wanted are still decoded (later frames refer to them) but cost no conversion; they take a
    /// sequence number and are counted in [`Self::passed`].
    pub fn set_wanted(&mut self, wanted: bool) {
        self.wanted = wanted;
    }

    /// Whether frames decoded from now on that are YUV 4:2:0 of even size (what H.264 streams
    /// carry) come out as they are, in [`Frame::i420`], instead of converted to RGB: for a
    /// consumer that converts on a GPU.
    pub fn set_i420(&mut self, i420: bool) {
        self.i420 = i420;
    }

    /// The effort asked for last (it may wait for a keyframe to apply: see [`DecodeEffort`]).
    pub fn effort(&self) -> DecodeEffort {
        self.pending_effort.unwrap_or(self.effort)
    }

    /// Changes how much of the stream is decoded (see [`DecodeEffort`] for when it applies).
    pub fn set_effort(&mut self, effort: DecodeEffort) {
        if effort >= self.effort || self.effort < DecodeEffort::Anchors {
            self.pending_effort = None;
            self.apply_effort(effort);
        } else {
            self.pending_effort = Some(effort);
        }
    }

    fn apply_effort(&mut self, effort: DecodeEffort) {
        if effort == self.effort {
            return;
        }
        use ffmpeg::Discard;
        let (frames, loop_filter) = match effort {
            DecodeEffort::Full => (Discard::Default, Discard::Default),
            DecodeEffort::Light => (Discard::NonReference, Discard::All),
            DecodeEffort::Anchors => (Discard::Bidirectional, Discard::All),
            DecodeEffort::KeyframesOnly => (Discard::NonKey, Discard::All),
        };
        self.decoder.skip_frame(frames);
        self.decoder.skip_loop_filter(loop_filter);
        self.effort = effort;
    }

    pub fn push(&mut self, packet: &MediaPacket, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        if packet.kind != MediaKind::Video {
            return Ok(());
        }
        if packet.keyframe
            && !packet.is_config
            && let Some(effort) = self.pending_effort.take()
        {
            self.apply_effort(effort);
        }
        let Input::Live { avc, annex_b } = &mut self.input else {
            return Err(DecodeError::Input(
                "push() is for live input; use push_demuxed()".into(),
            ));
        };
        if packet.is_config {
            *avc = Some(AvcConfig::parse(&packet.data)?);
            return Ok(());
        }
        let Some(config) = avc.as_ref() else {
            return Ok(());
        };
        if (self.waiting_for_keyframe || self.effort == DecodeEffort::KeyframesOnly)
            && !packet.keyframe
        {
            return Ok(());
        }
        annex_b.clear();
        config.write_annex_b(&packet.data, packet.keyframe, annex_b)?;
        let mut av = ffmpeg::Packet::copy(annex_b);
        av.set_pts(Some(packet.pts_ms));
        av.set_dts(Some(packet.dts_ms));
        if packet.keyframe {
            av.set_flags(ffmpeg::packet::Flags::KEY);
        }
        self.waiting_for_keyframe = false;
        self.decode(&av, out)
    }

    /// Feeds one demuxed packet whose timestamps are already in milliseconds.
    pub fn push_demuxed(
        &mut self,
        packet: &ffmpeg::Packet,
        out: &mut Vec<Frame>,
    ) -> Result<(), DecodeError> {
        self.waiting_for_keyframe = false;
        self.decode(packet, out)
    }

    /// Packets were lost upstream: forget the decoder state and restart at the next keyframe.
    pub fn resync(&mut self) {
        self.decoder.flush();
        self.waiting_for_keyframe = true;
    }

    /// Drains frames still inside the decoder (end of stream).
    pub fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        match self.decoder.send_eof() {
            Ok(()) | Err(ffmpeg::Error::Eof) => {}
            Err(e) => return Err(e.into()),
        }
        self.receive(out)
    }

    fn decode(&mut self, packet: &ffmpeg::Packet, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        match self.decoder.send_packet(packet) {
            Ok(()) => {}
            // A corrupt packet: the decoder recovers at the next keyframe; skip it.
            Err(ffmpeg::Error::InvalidData) => {
                tracing::debug!("decoder rejected a packet as invalid");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        self.receive(out)
    }

    fn receive(&mut self, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) if self.wanted && self.is_i420() => out.push(self.planes()),
                Ok(()) if self.wanted => out.push(self.convert_to_rgb()?),
                Ok(()) => {
                    self.next_seq += 1;
                    self.passed += 1;
                }
                Err(ffmpeg::Error::Other {
                    errno: ffmpeg::util::error::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the decoded picture goes out as I420.
    fn is_i420(&self) -> bool {
        let d = &self.decoded;
        self.i420
            && d.format() == Pixel::YUV420P
            && d.width() > 0
            && d.height() > 0
            && d.width().is_multiple_of(2)
            && d.height().is_multiple_of(2)
    }

    /// The decoded picture's planes, copied without their padding.
    fn planes(&mut self) -> Frame {
        let d = &self.decoded;
        let (width, height) = (d.width(), d.height());
        let mut i420 = Vec::with_capacity(width as usize * height as usize * 3 / 2);
        for (plane, (row, rows)) in [
            (width as usize, height as usize),
            (width as usize / 2, height as usize / 2),
            (width as usize / 2, height as usize / 2),
        ]
        .into_iter()
        .enumerate()
        {
            let stride = d.stride(plane);
            let data = d.data(plane);
            for y in 0..rows {
                i420.extend_from_slice(&data[y * stride..y * stride + row]);
            }
        }
        let mut frame = self.next_frame(width, height, Vec::new());
        frame.i420 = Some(Arc::new(i420));
        frame
    }

    /// The decoded picture as the next frame out (its sequence number taken), with `rgb`.
    fn next_frame(&mut self, width: u32, height: u32, rgb: Vec<u8>) -> Frame {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pts_ms = self.decoded.timestamp().or(self.decoded.pts()).unwrap_or(0);
        Frame::new(seq, pts_ms, width, height, rgb)
    }

    fn convert_to_rgb(&mut self) -> Result<Frame, DecodeError> {
        let (format, width, height) = (
            self.decoded.format(),
            self.decoded.width(),
            self.decoded.height(),
        );
        let stale = !matches!(&self.scaler, Some((_, f, w, h)) if *f == format && *w == width && *h == height);
        if stale {
            let context = scaling::Context::get(
                format,
                width,
                height,
                Pixel::RGB24,
                width,
                height,
                scaling::Flags::BILINEAR,
            )?;
            self.scaler = Some((context, format, width, height));
        }
        if let Some((scaler, ..)) = self.scaler.as_mut() {
            scaler.run(&self.decoded, &mut self.converted)?;
        }
        let row = width as usize * 3;
        let stride = self.converted.stride(0);
        let data = self.converted.data(0);
        let mut rgb = Vec::with_capacity(row * height as usize);
        for y in 0..height as usize {
            rgb.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(self.next_frame(width, height, rgb))
    }
}

#[cfg(test)]
mod tests;
