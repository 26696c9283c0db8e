//! Cuts one stream's packets into keyframe-aligned MPEG-TS segments. Sans-IO: packets in,
//! finished segments (bytes + playlist record) out.

use media::aac::AacConfig;
use media::avc::AvcConfig;
use media::{MediaKind, MediaPacket};
use thiserror::Error;

use crate::playlist::Segment;
use crate::ts::TsMuxer;

#[derive(Debug, Error)]
pub enum SegmentError {
    #[error("bad H.264 data: {0}")]
    Avc(#[from] media::avc::AvcError),
    #[error("bad AAC configuration: {0}")]
    Aac(#[from] media::aac::AacError),
}

/// A closed segment: its playlist record and the bytes not yet taken with [`Segmenter::drain`].
#[derive(Debug)]
pub struct FinishedSegment {
    pub segment: Segment,
    pub data: Vec<u8>,
}

struct OpenSegment {
    seq: u64,
    start_dts: i64,
    last_dts: i64,
    video_frames: u64,
    discontinuity: bool,
    data: Vec<u8>,
    /// Bytes already handed out by `drain`.
    drained: u64,
}

/// A segment that reaches this many target durations without a keyframe is cut anyway (at a
/// video frame), so a publisher that never sends another keyframe cannot grow one segment — its
/// file, and everything that waits for it to close — without bound.
pub const MAX_SEGMENT_TARGETS: i64 = 10;

/// How long audio may flow without any video configuration before the stream is treated as
/// audio-only.
const AUDIO_ONLY_AFTER_MS: i64 = 1_000;

pub struct Segmenter {
    target_ms: i64,
    next_seq: u64,
    discontinuity: bool,
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    mux: TsMuxer,
    /// First decode timestamp of the publish session and the wall clock when it arrived.
    base: Option<(i64, i64)>,
    open: Option<OpenSegment>,
    /// Packets dropped before the first keyframe.
    pub skipped: u64,
    /// Segments cut without a keyframe after [`MAX_SEGMENT_TARGETS`] target durations.
    pub forced_cuts: u64,
}

impl Segmenter {
    /// `first_seq`: the sequence number of the first segment; `discontinuity`: whether the first
    /// segment follows earlier ones of the same playlist (a reconnect).
    pub fn new(first_seq: u64, target_ms: u64, discontinuity: bool) -> Self {
        Self {
            target_ms: target_ms.max(100) as i64,
            next_seq: first_seq,
            discontinuity,
            avc: None,
            aac: None,
            mux: TsMuxer::new(false, false),
            base: None,
            open: None,
            skipped: 0,
            forced_cuts: 0,
        }
    }

    /// Feeds one packet; returns the segment it closed, if any. `now_ms`: wall clock (Unix ms).
    pub fn push(
        &mut self,
        packet: &MediaPacket,
        now_ms: i64,
    ) -> Result<Option<FinishedSegment>, SegmentError> {
        if packet.is_config {
            match packet.kind {
                MediaKind::Video => self.avc = Some(AvcConfig::parse(&packet.data)?),
                MediaKind::Audio => self.aac = Some(AacConfig::parse(&packet.data)?),
            }
            return Ok(None);
        }
        let (base_dts, _) = *self.base.get_or_insert((packet.dts_ms, now_ms));
        let starts_segment = match packet.kind {
            MediaKind::Video => self.avc.is_some() && packet.keyframe,
            MediaKind::Audio => {
                self.avc.is_none()
                    && self.aac.is_some()
                    && packet.dts_ms - base_dts >= AUDIO_ONLY_AFTER_MS
            }
        };
        let mut finished = None;
        match &self.open {
            None if !starts_segment => {
                self.skipped += 1;
                return Ok(None);
            }
            Some(open) if starts_segment && packet.dts_ms - open.start_dts >= self.target_ms => {
                finished = self.close(packet.dts_ms);
            }
            Some(open)
                if packet.kind == MediaKind::Video
                    && packet.dts_ms - open.start_dts >= self.target_ms * MAX_SEGMENT_TARGETS =>
            {
                self.forced_cuts += 1;
                finished = self.close(packet.dts_ms);
            }
            _ => {}
        }
        if self.open.is_none() {
            self.open_segment(packet.dts_ms);
        }
        let rel_dts = packet.dts_ms - base_dts;
        let rel_pts = packet.pts_ms - base_dts;
        let Some(open) = self.open.as_mut() else {
            return Ok(finished);
        };
        match packet.kind {
            MediaKind::Video => {
                if let Some(avc) = &self.avc {
                    self.mux.write_video(
                        avc,
                        &packet.data,
                        packet.keyframe,
                        rel_dts,
                        rel_pts,
                        &mut open.data,
                    )?;
                    open.video_frames += 1;
                }
            }
            MediaKind::Audio => {
                if let Some(aac) = &self.aac {
                    self.mux
                        .write_audio(aac, &packet.data, rel_pts, &mut open.data);
                }
            }
        }
        open.last_dts = open.last_dts.max(packet.dts_ms);
        Ok(finished)
    }

    fn open_segment(&mut self, start_dts: i64) {
        self.mux.set_streams(self.avc.is_some(), self.aac.is_some());
        let mut data = Vec::with_capacity(128 * 1024);
        self.mux.write_tables(&mut data);
        self.open = Some(OpenSegment {
            seq: self.next_seq,
            start_dts,
            last_dts: start_dts,
            video_frames: 0,
            discontinuity: std::mem::take(&mut self.discontinuity),
            data,
            drained: 0,
        });
        self.next_seq += 1;
    }

    fn close(&mut self, end_dts: i64) -> Option<FinishedSegment> {
        let open = self.open.take()?;
        let (base_dts, base_wall) = self.base?;
        Some(FinishedSegment {
            segment: Segment {
                seq: open.seq,
                duration_ms: (end_dts - open.start_dts).max(1) as u64,
                program_date_time_ms: base_wall + (open.start_dts - base_dts),
                bytes: open.drained + open.data.len() as u64,
                discontinuity: open.discontinuity,
                gap: false,
            },
            data: open.data,
        })
    }

    /// Closes the open segment at the end of the stream.
    pub fn finish(&mut self) -> Option<FinishedSegment> {
        let open = self.open.as_ref()?;
        // The last frame lasts as long as the average frame before it.
        let span = open.last_dts - open.start_dts;
        let frame = if open.video_frames > 1 {
            span / (open.video_frames as i64 - 1)
        } else {
            0
        };
        let end = open.last_dts + frame.max(1);
        self.close(end)
    }

    /// Takes the open segment's bytes once at least `min_bytes` have accumulated, so a packager
    /// can append them to the segment's file as it grows instead of holding whole segments.
    pub fn drain(&mut self, min_bytes: usize) -> Option<(u64, Vec<u8>)> {
        let open = self.open.as_mut()?;
        if open.data.len() < min_bytes.max(1) {
            return None;
        }
        let capacity = open.data.capacity();
        let bytes = std::mem::replace(&mut open.data, Vec::with_capacity(capacity));
        open.drained += bytes.len() as u64;
        Some((open.seq, bytes))
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The sequence number of the segment being written, if one is open.
    pub fn open_seq(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.seq)
    }

    /// The session's first decode time: every timestamp in the segments is relative to it.
    pub fn base_dts(&self) -> Option<i64> {
        self.base.map(|(dts, _)| dts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn avc_record() -> Bytes {
        Bytes::from(media::fixtures::avc_record_640x360())
    }

    fn packet(
        kind: MediaKind,
        dts: i64,
        keyframe: bool,
        is_config: bool,
        data: Bytes,
    ) -> MediaPacket {
        MediaPacket {
            kind,
            dts_ms: dts,
            pts_ms: dts,
            keyframe,
            is_config,
            data,
        }
    }

    #[test]
    fn a_stream_without_keyframes_is_cut_at_ten_targets() {
        let mut s = Segmenter::new(0, 1000, false);
        s.push(&packet(MediaKind::Video, 0, true, true, avc_record()), 0)
            .unwrap();
        let frame = Bytes::from_static(&[0, 0, 0, 2, 0x41, 0x9a]);
        let mut closed = Vec::new();
        // One keyframe, then 60 s of P-frames at 10 fps.
        for i in 0..600 {
            if let Some(f) = s
                .push(
                    &packet(MediaKind::Video, i * 100, i == 0, false, frame.clone()),
                    0,
                )
                .unwrap()
            {
                closed.push(f.segment.duration_ms);
            }
        }
        assert_eq!(closed, vec![10_000; 5], "cut every 10 target durations");
        assert_eq!(s.forced_cuts, 5);
    }

    #[test]
    fn drained_bytes_count_toward_the_segment() {
        let mut s = Segmenter::new(0, 1000, false);
        s.push(&packet(MediaKind::Video, 0, true, true, avc_record()), 0)
            .unwrap();
        let frame = Bytes::from(
            vec![0, 0, 0x10, 0x00, 0x65]
                .into_iter()
                .chain(std::iter::repeat_n(0x88, 4095))
                .collect::<Vec<u8>>(),
        );
        let mut drained = 0;
        for i in 0..10 {
            s.push(
                &packet(MediaKind::Video, i * 33, i == 0, false, frame.clone()),
                0,
            )
            .unwrap();
            if let Some((seq, bytes)) = s.drain(8192) {
                assert_eq!(seq, 0);
                drained += bytes.len();
            }
        }
        assert!(drained > 0);
        let finished = s.finish().unwrap();
        assert_eq!(
            finished.segment.bytes as usize,
            drained + finished.data.len()
        );
        assert_eq!((drained + finished.data.len()) % 188, 0);
    }

    #[test]
    fn cuts_on_keyframes_after_target_and_keeps_wall_clock() {
        let mut s = Segmenter::new(7, 1900, true);
        let frame = Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]);
        let audio = Bytes::from_static(&[0x21, 0x00, 0x03]);
        assert!(
            s.push(&packet(MediaKind::Video, 0, true, true, avc_record()), 0)
                .unwrap()
                .is_none()
        );
        s.push(
            &packet(
                MediaKind::Audio,
                0,
                true,
                true,
                Bytes::from_static(&[0x12, 0x10]),
            ),
            0,
        )
        .unwrap();
        // Audio before the first keyframe is skipped.
        s.push(
            &packet(MediaKind::Audio, 0, true, false, audio.clone()),
            1_000,
        )
        .unwrap();
        assert_eq!(s.skipped, 1);
        let mut closed = Vec::new();
        for i in 0..150i64 {
            let dts = i * 33;
            // keyframe every 660 ms
            if let Some(f) = s
                .push(
                    &packet(MediaKind::Video, dts, i % 20 == 0, false, frame.clone()),
                    1_000 + dts,
                )
                .unwrap()
            {
                closed.push(f);
            }
            s.push(
                &packet(MediaKind::Audio, dts, true, false, audio.clone()),
                1_000 + dts,
            )
            .unwrap();
        }
        closed.extend(s.finish());
        assert!(s.drain(1).is_none(), "nothing open after finish");
        let segs: Vec<_> = closed.iter().map(|f| f.segment.clone()).collect();
        assert_eq!(
            segs.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(segs[0].duration_ms, 1980);
        assert!(segs[0].discontinuity && !segs[1].discontinuity);
        assert_eq!(segs[1].program_date_time_ms, 1_000 + 1980);
        assert_eq!(segs.iter().map(|s| s.duration_ms).sum::<u64>(), 150 * 33);
        for f in &closed {
            assert_eq!(f.data.len() % 188, 0);
            assert_eq!(f.data[0], 0x47);
        }
    }
}
