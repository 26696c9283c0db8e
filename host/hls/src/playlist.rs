//! The live media playlist of one stream (RFC 8216), rendered from segment records.

use std::collections::VecDeque;
use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A finished segment as the playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number, also the file name (`seg-{seq}.ts`).
    pub seq: u64,
    pub duration_ms: u64,
    /// Wall-clock time of the segment's first frame, milliseconds since the Unix epoch.
    pub program_date_time_ms: i64,
    pub bytes: u64,
    /// The first segment after a reconnect: timestamps and codec settings may change here.
    pub discontinuity: bool,
    /// Listed but not there (`EXT-X-GAP`): a rendition that could not make this segment keeps
    /// the original's numbering, and players skip it.
    pub gap: bool,
}

impl Segment {
    pub fn file_name(&self) -> String {
        segment_file_name(self.seq)
    }
}

pub fn segment_file_name(seq: u64) -> String {
    format!("seg-{seq}.ts")
}

/// A sliding-window live playlist.
#[derive(Debug, Clone)]
pub struct Playlist {
    window: usize,
    target_duration_s: u64,
    segments: VecDeque<Segment>,
    /// Discontinuities that slid out of the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    ended: bool,
}

impl Playlist {
    pub fn new(window: usize, target_duration_ms: u64) -> Self {
        Self {
            window: window.max(3),
            target_duration_s: target_duration_ms.div_ceil(1000).max(1),
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            ended: false,
        }
    }

    /// Adds a segment; returns the segments that slid out of the window.
    pub fn push(&mut self, segment: Segment) -> Vec<Segment> {
        self.ended = false;
        // EXT-X-TARGETDURATION must bound every segment and should not shrink.
        self.target_duration_s = self
            .target_duration_s
            .max(((segment.duration_ms + 500) / 1000).max(1));
        self.segments.push_back(segment);
        let mut gone = Vec::new();
        while self.segments.len() > self.window {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                gone.push(old);
            }
        }
        gone
    }

    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    pub fn next_seq(&self) -> Option<u64> {
        self.segments.back().map(|s| s.seq + 1)
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.segments.len() * 96);
        let media_sequence = self.segments.front().map_or(0, |s| s.seq);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.target_duration_s, media_sequence, self.discontinuity_sequence
        );
        for (i, s) in self.segments.iter().enumerate() {
            // The first listed segment's discontinuity is already counted in the sequence.
            if s.discontinuity && i > 0 {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_pdt(s.program_date_time_ms)
            );
            if s.gap {
                out.push_str("#EXT-X-GAP\n");
            }
            let _ = write!(
                out,
                "#EXTINF:{}.{:03},\n{}\n",
                s.duration_ms / 1000,
                s.duration_ms % 1000,
                s.file_name()
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// RFC 3339 with milliseconds and a `Z` offset, as EXT-X-PROGRAM-DATE-TIME wants.
pub fn format_pdt(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64, disc: bool) -> Segment {
        Segment {
            seq,
            duration_ms: 2002,
            program_date_time_ms: 1_700_000_000_000 + seq as i64 * 2002,
            bytes: 1000,
            discontinuity: disc,
            gap: false,
        }
    }

    #[test]
    fn sliding_window_with_discontinuities_and_end() {
        let mut p = Playlist::new(3, 2000);
        assert!(p.push(seg(0, false)).is_empty());
        p.push(seg(1, false));
        p.push(seg(2, true));
        let gone = p.push(seg(3, false));
        assert_eq!(gone, vec![seg(0, false)]);
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME"));
        assert!(text.contains("#EXTINF:2.002,\nseg-3.ts\n"));
        assert!(!text.contains("ENDLIST"));
        p.push(seg(4, false));
        p.push(seg(5, false)); // the discontinuity at 2 slides out
        assert!(p.render().contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        p.end();
        assert!(p.render().ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn a_gap_is_listed_and_marked() {
        let mut p = Playlist::new(3, 2000);
        p.push(seg(0, false));
        p.push(Segment {
            gap: true,
            ..seg(1, false)
        });
        let text = p.render();
        assert!(
            text.contains("#EXT-X-GAP\n#EXTINF:2.002,\nseg-1.ts\n"),
            "{text}"
        );
        assert_eq!(text.matches("#EXT-X-GAP").count(), 1);
    }

    #[test]
    fn program_date_time_has_milliseconds() {
        assert_eq!(format_pdt(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
