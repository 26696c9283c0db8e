//! Taps on the packager: a copy of one stream's packets as the packager cuts them, for a rendition
//! made from the same video (the effects rendition). Each packet comes with the sequence number of
//! the original segment it is in, and each closed original segment with its playlist record, so the
//! rendition can cut at the same boundaries, number its segments the same and list them with the
//! same durations and program date-times.
//!
//! The packager never waits for a tap: items go through a bounded queue with `try_send`. When the
//! queue is full the tap drops packets until the next segment starts (a decoder needs the keyframe)
//! and says so on that packet (`after_loss`); segment records are never dropped (they wait in a
//! small queue of their own until there is room), so the rendition always knows what the original
//! listed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::MediaPacket;

use crate::playlist::Segment;
use crate::segmenter::{FinishedSegment, SegmentError, Segmenter};

/// A stream's configuration packets so far (video, audio): a tap that starts later gets them
/// first.
#[derive(Debug, Default)]
pub struct Configs([Option<MediaPacket>; 2]);

/// Segment records held for a full queue before the oldest are given up (a rendition that far
/// behind has long ended its own segments as gaps).
const MAX_PENDING_RECORDS: usize = 64;

/// What a tap carries, in the packager's order.
#[derive(Debug, Clone)]
pub enum TapItem {
    /// The stream's configuration packets, sent before the first packet and after a loss.
    Config(MediaPacket),
    /// A packet of original segment `seq`; `starts_segment` on the packet that opens it.
    Packet {
        packet: MediaPacket,
        seq: u64,
        starts_segment: bool,
        /// The session's first decode time (segments' timestamps are relative to it).
        base_dts: i64,
        /// Packets before this one were dropped (the tap's queue was full).
        after_loss: bool,
        /// When the packager handed it over (as it reached the host): the analysis of its frame
        /// is due from then, however far behind the tap's reader is.
        arrived: Instant,
    },
    /// The original closed this segment (its record as its playlist lists it).
    Closed(Segment),
    /// The publish session ended (every segment of it is closed).
    Ended,
}

/// The receiving end of one stream's tap.
pub struct TapReceiver {
    items: Receiver<TapItem>,
    shared: Arc<TapShared>,
}

impl TapReceiver {
    /// The next item, waiting at most `timeout`; `None` on timeout. `Some(Ended)` also when the
    /// tap was closed or replaced.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<TapItem> {
        match self.items.recv_timeout(timeout) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(TapItem::Ended),
        }
    }

    /// The presentation time of the latest video packet the packager handed to this tap (queued
    /// or dropped): how far the original is. Audio, which a publisher may send ahead, does not
    /// count, and a clock that went back is followed (a maximum would keep a reader "behind"
    /// until the new clock passed the old).
    pub fn newest_pts(&self) -> i64 {
        self.shared.newest_pts.load(Ordering::Relaxed)
    }

    /// Packets dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct TapShared {
    newest_pts: AtomicI64,
    dropped: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flow {
    /// Opened: waits for the next segment to start.
    Waiting,
    Flowing,
    /// The queue was full: packets are dropped until the next segment starts.
    Dropping,
}

struct Tap {
    sender: SyncSender<TapItem>,
    flow: Flow,
    /// Segment records waiting for room in the queue.
    records: VecDeque<Segment>,
    shared: Arc<TapShared>,
}

impl Tap {
    /// Sends the records that waited; false when the queue is still full.
    fn send_records(&mut self) -> bool {
        while let Some(record) = self.records.pop_front() {
            match self.sender.try_send(TapItem::Closed(record)) {
                Ok(()) => {}
                Err(TrySendError::Full(TapItem::Closed(record))) => {
                    self.records.push_front(record);
                    return false;
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn try_send(&mut self, item: TapItem) -> bool {
        self.send_records() && self.sender.try_send(item).is_ok()
    }
}

/// The open taps, per stream; shared by the packager and whoever opens them.
#[derive(Clone, Default)]
pub struct Taps {
    taps: Arc<Mutex<HashMap<String, Tap>>>,
    /// Open taps, so the packager skips the lock when there are none.
    open: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Taps({} open)", self.open.load(Ordering::Relaxed))
    }
}

impl Taps {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tap>> {
        self.taps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a tap on `stream` holding at most `capacity` items; it starts at the next segment.
    /// An earlier tap on the stream is closed (its receiver sees the end).
    pub fn open(&self, stream: &str, capacity: usize) -> TapReceiver {
        let (sender, items) = sync_channel(capacity.max(16));
        let shared = Arc::new(TapShared::default());
        let tap = Tap {
            sender,
            flow: Flow::Waiting,
            records: VecDeque::new(),
            shared: shared.clone(),
        };
        let mut taps = self.lock();
        if taps.insert(stream.to_string(), tap).is_none() {
            self.open.fetch_add(1, Ordering::Relaxed);
        }
        TapReceiver { items, shared }
    }

    /// Closes the tap on `stream`, if any (its receiver sees the end once it has read the rest).
    pub fn close(&self, stream: &str) {
        if self.lock().remove(stream).is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn is_open(&self, stream: &str) -> bool {
        self.open.load(Ordering::Relaxed) > 0 && self.lock().contains_key(stream)
    }

    /// Pushes `packet` through the stream's `segmenter` and hands it, with its segment, to the
    /// stream's tap if one is open (the packager does this with every packet).
    pub fn push(
        &self,
        stream: &str,
        segmenter: &mut Segmenter,
        configs: &mut Configs,
        packet: &MediaPacket,
        now_ms: i64,
    ) -> Result<Option<FinishedSegment>, SegmentError> {
        let open_before = segmenter.open_seq();
        let pushed = segmenter.push(packet, now_ms)?;
        if let Some(finished) = &pushed {
            self.closed(stream, &finished.segment);
        }
        if packet.is_config {
            self.config(stream, packet);
            configs.0[usize::from(packet.kind == media::MediaKind::Audio)] = Some(packet.clone());
        } else if let (Some(seq), Some(base)) = (segmenter.open_seq(), segmenter.base_dts()) {
            let known: Vec<&MediaPacket> = configs.0.iter().flatten().collect();
            self.packet(stream, packet, seq, open_before != Some(seq), base, &known);
        }
        Ok(pushed)
    }

    /// Closes the stream's last segment at the end of its session; the tap gets its record and
    /// the end.
    pub fn finish(&self, stream: &str, segmenter: &mut Segmenter) -> Option<FinishedSegment> {
        let finished = segmenter.finish();
        if let Some(f) = &finished {
            self.closed(stream, &f.segment);
        }
        self.ended(stream);
        finished
    }

    /// The packager cut `packet` into segment `seq` (`starts`: it opened the segment);
    /// `configs` are the stream's configuration packets so far.
    pub(crate) fn packet(
        &self,
        stream: &str,
        packet: &MediaPacket,
        seq: u64,
        starts: bool,
        base_dts: i64,
        configs: &[&MediaPacket],
    ) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut taps = self.lock();
        let Some(tap) = taps.get_mut(stream) else {
            return;
        };
        if packet.kind == media::MediaKind::Video {
            tap.shared
                .newest_pts
                .store(packet.pts_ms, Ordering::Relaxed);
        }
        let after_loss = tap.flow == Flow::Dropping;
        match tap.flow {
            Flow::Waiting | Flow::Dropping if !starts => {
                if after_loss {
                    tap.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Flow::Waiting | Flow::Dropping => {
                // The configuration first, so the receiver can decode from this keyframe on.
                let sent = configs
                    .iter()
                    .all(|c| tap.try_send(TapItem::Config((*c).clone())));
                if !sent {
                    tap.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    tap.flow = Flow::Dropping;
                    return;
                }
            }
            Flow::Flowing => {}
        }
        let item = TapItem::Packet {
            packet: packet.clone(),
            seq,
            starts_segment: starts,
            base_dts,
            after_loss,
            arrived: Instant::now(),
        };
        if tap.try_send(item) {
            tap.flow = Flow::Flowing;
        } else {
            tap.shared.dropped.fetch_add(1, Ordering::Relaxed);
            tap.flow = Flow::Dropping;
        }
    }

    /// A configuration packet in the middle of the stream: a flowing tap gets it in order.
    pub(crate) fn config(&self, stream: &str, packet: &MediaPacket) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut taps = self.lock();
        if let Some(tap) = taps.get_mut(stream)
            && tap.flow == Flow::Flowing
            && !tap.try_send(TapItem::Config(packet.clone()))
        {
            tap.flow = Flow::Dropping;
        }
    }

    /// The packager closed `segment`: its record reaches a tap that saw any of it.
    pub(crate) fn closed(&self, stream: &str, segment: &Segment) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut taps = self.lock();
        let Some(tap) = taps.get_mut(stream) else {
            return;
        };
        if tap.flow == Flow::Waiting {
            return;
        }
        tap.records.push_back(segment.clone());
        if tap.records.len() > MAX_PENDING_RECORDS {
            tap.records.pop_front();
        }
        tap.send_records();
    }

    /// The publish session ended: the tap closes (after the records still waiting, if they fit).
    pub(crate) fn ended(&self, stream: &str) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(mut tap) = self.lock().remove(stream) else {
            return;
        };
        self.open.fetch_sub(1, Ordering::Relaxed);
        if tap.send_records() {
            let _ = tap.sender.try_send(TapItem::Ended);
        }
        // Dropping the sender ends the receiver either way.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::MediaKind;

    fn video(pts: i64, keyframe: bool) -> MediaPacket {
        MediaPacket {
            kind: MediaKind::Video,
            dts_ms: pts,
            pts_ms: pts,
            keyframe,
            is_config: false,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }
    }

    fn config() -> MediaPacket {
        MediaPacket {
            is_config: true,
            ..video(0, false)
        }
    }

    fn segment(seq: u64) -> Segment {
        Segment {
            seq,
            duration_ms: 2000,
            program_date_time_ms: 0,
            bytes: 10,
            discontinuity: false,
            gap: false,
        }
    }

    fn drain(rx: &TapReceiver) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(item) = rx.recv_timeout(Duration::from_millis(1)) {
            let ended = matches!(item, TapItem::Ended);
            out.push(match item {
                TapItem::Config(_) => "config".to_string(),
                TapItem::Packet {
                    packet,
                    seq,
                    starts_segment,
                    after_loss,
                    ..
                } => format!(
                    "{seq}:{}{}{}",
                    packet.pts_ms,
                    if starts_segment { "+" } else { "" },
                    if after_loss { "!" } else { "" }
                ),
                TapItem::Closed(s) => format!("closed {}", s.seq),
                TapItem::Ended => "ended".into(),
            });
            if ended {
                break;
            }
        }
        out
    }

    #[test]
    fn a_tap_starts_at_the_next_segment_with_the_configuration() {
        let taps = Taps::default();
        let c = config();
        taps.packet("s", &video(0, true), 0, true, 0, &[&c]);
        let rx = taps.open("s", 100);
        taps.packet("s", &video(40, false), 0, false, 0, &[&c]);
        taps.closed("s", &segment(0)); // never saw segment 0: not sent
        taps.packet("s", &video(2000, true), 1, true, 0, &[&c]);
        taps.packet("s", &video(2040, false), 1, false, 0, &[&c]);
        taps.closed("s", &segment(1));
        taps.ended("s");
        assert_eq!(
            drain(&rx),
            vec!["config", "1:2000+", "1:2040", "closed 1", "ended"]
        );
        assert!(!taps.is_open("s"));
        assert_eq!(rx.newest_pts(), 2040);
    }

    #[test]
    fn a_full_queue_drops_packets_to_the_next_segment_but_never_records() {
        let taps = Taps::default();
        let c = config();
        let rx = taps.open("s", 16);
        taps.packet("s", &video(0, true), 0, true, 0, &[&c]);
        for i in 1..40 {
            taps.packet("s", &video(i * 40, false), 0, false, 0, &[&c]);
        }
        taps.closed("s", &segment(0));
        taps.packet("s", &video(2000, true), 1, true, 0, &[&c]);
        assert!(rx.dropped() > 0);
        let first = drain(&rx);
        assert_eq!(first.len(), 16, "{first:?}");
        assert_eq!(first[..2], ["config", "0:0+"]);
        // Room again: the record that waited goes first, then the next segment after the loss.
        taps.packet("s", &video(2040, false), 1, false, 0, &[&c]);
        taps.packet("s", &video(4000, true), 2, true, 0, &[&c]);
        taps.packet("s", &video(4040, false), 2, false, 0, &[&c]);
        assert_eq!(drain(&rx), vec!["closed 0", "config", "2:4000+!", "2:4040"]);
    }

    #[test]
    fn a_new_tap_replaces_the_old_one() {
        let taps = Taps::default();
        let old = taps.open("s", 16);
        let new = taps.open("s", 16);
        assert_eq!(drain(&old), vec!["ended"]);
        taps.packet("s", &video(0, true), 0, true, 0, &[]);
        assert_eq!(drain(&new), vec!["0:0+"]);
        taps.close("s");
        assert_eq!(drain(&new), vec!["ended"]);
        assert!(!taps.is_open("s"));
    }
}
