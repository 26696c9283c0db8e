//! A second rendition of a stream beside the original (`{root}/{stream}/effects/`), written
//! segment by segment by whoever makes it (the effects rendition re-encodes the video), with the
//! original's numbering, durations and program date-times; and the stream's master playlist,
//! offering the original and its renditions.
//!
//! Blocking I/O on the caller's thread: the renditions are made on threads of their own. The same
//! durability as the original: a segment's data reaches the disk before its rename, the rename
//! before the playlist that lists it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::playlist::{Playlist, Segment, segment_file_name};
use crate::{SegmentFile, stream_dir, write_atomically_now};

/// The master playlist in a stream's folder, written while a rendition is made.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// The effects rendition's folder in a stream's folder.
pub const EFFECTS: &str = "effects";
/// Every rendition folder a stream's folder may hold.
pub const RENDITIONS: [&str; 1] = [EFFECTS];

/// Writes one rendition's segments and live playlist.
pub struct RenditionWriter {
    dir: PathBuf,
    playlist: Playlist,
    file: Option<SegmentFile>,
    /// Segment files on disk, oldest first.
    retained: VecDeque<u64>,
    retain: usize,
    /// Bytes written to the open segment.
    open_bytes: u64,
}

impl RenditionWriter {
    /// A rendition `name` of `stream` under `root`, listing `window` segments and keeping at most
    /// `retain` on disk (the sweep also deletes those whose original is gone).
    pub fn create(
        root: &Path,
        stream: &str,
        name: &str,
        window: usize,
        target_duration_ms: u64,
        retain: usize,
    ) -> std::io::Result<Self> {
        let dir = stream_dir(root, stream).join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            playlist: Playlist::new(window, target_duration_ms),
            file: None,
            retained: VecDeque::new(),
            retain: retain.max(window),
            open_bytes: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends to segment `seq` (a new file when it is a new segment).
    pub fn append(&mut self, seq: u64, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.as_ref().is_some_and(|f| f.seq != seq) {
            // A segment never listed (its record was lost): it stays a leftover for the sweep.
            self.file = None;
            self.open_bytes = 0;
        }
        SegmentFile::append(&mut self.file, &self.dir, seq, bytes)?;
        self.open_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Whether segment `seq` has bytes written and not yet listed.
    pub fn is_writing(&self, seq: u64) -> bool {
        self.file.as_ref().is_some_and(|f| f.seq == seq)
    }

    /// Lists the original's `segment` in this rendition: the file written for it, or a gap
    /// (`EXT-X-GAP`) when nothing was. `discontinuity` also marks it as one (the rendition's
    /// picture size changed there). Returns whether it was listed as a gap.
    pub fn close(&mut self, segment: &Segment, discontinuity: bool) -> std::io::Result<bool> {
        let written = self.file.take_if(|f| f.seq == segment.seq);
        let gap = written.is_none();
        let bytes = std::mem::take(&mut self.open_bytes);
        if let Some(file) = written {
            file.finish()?;
            self.retained.push_back(segment.seq);
        }
        self.playlist.push(Segment {
            bytes: if gap { 0 } else { bytes },
            discontinuity: segment.discontinuity || discontinuity,
            gap,
            ..segment.clone()
        });
        self.write_playlist()?;
        while self.retained.len() > self.retain {
            if let Some(old) = self.retained.pop_front() {
                let _ = std::fs::remove_file(self.dir.join(segment_file_name(old)));
            }
        }
        Ok(gap)
    }

    /// The rendition ended: its playlist says so.
    pub fn end(&mut self) -> std::io::Result<()> {
        self.playlist.end();
        self.write_playlist()
    }

    fn write_playlist(&self) -> std::io::Result<()> {
        write_atomically_now(
            &self.dir.join("index.m3u8"),
            self.playlist.render().as_bytes(),
        )
    }
}

/// One entry of a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The media playlist, relative to the stream's folder.
    pub uri: String,
    /// Peak bits per second (an estimate from the segments so far).
    pub bandwidth: u64,
    pub resolution: Option<(u32, u32)>,
}

/// Writes the stream's master playlist offering `variants`, in that order.
pub fn write_master(root: &Path, stream: &str, variants: &[Variant]) -> std::io::Result<()> {
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(text, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some((w, h)) = v.resolution {
            let _ = write!(text, ",RESOLUTION={w}x{h}");
        }
        let _ = write!(text, "\n{}\n", v.uri);
    }
    write_atomically_now(
        &stream_dir(root, stream).join(MASTER_PLAYLIST),
        text.as_bytes(),
    )
}

/// Removes the stream's master playlist (its renditions ended); gone already is fine.
pub fn remove_master(root: &Path, stream: &str) -> std::io::Result<()> {
    match std::fs::remove_file(stream_dir(root, stream).join(MASTER_PLAYLIST)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u64) -> Segment {
        Segment {
            seq,
            duration_ms: 2000,
            program_date_time_ms: 1_700_000_000_000 + seq as i64 * 2000,
            bytes: 5000,
            discontinuity: false,
            gap: false,
        }
    }

    #[test]
    fn segments_are_listed_as_the_original_with_gaps_and_retention() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = RenditionWriter::create(tmp.path(), "s", EFFECTS, 3, 2000, 3).unwrap();
        for seq in 4..8 {
            if seq != 6 {
                w.append(seq, b"first ").unwrap();
                w.append(seq, b"second").unwrap();
                assert!(w.is_writing(seq));
            }
            let gap = w.close(&segment(seq), seq == 7).unwrap();
            assert_eq!(gap, seq == 6);
        }
        w.end().unwrap();
        let dir = tmp.path().join("s").join(EFFECTS);
        let playlist = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{playlist}");
        assert!(
            playlist.contains("#EXT-X-GAP\n#EXTINF:2.000,\nseg-6.ts\n"),
            "{playlist}"
        );
        assert!(playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
        assert!(
            playlist.contains("PROGRAM-DATE-TIME:2023-11-14T22:13:32Z\n#EXT-X-GAP"),
            "{playlist}"
        );
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(
            std::fs::read(dir.join("seg-7.ts")).unwrap(),
            b"first second"
        );
        // Three kept on disk, the gap has no file, nothing half-written is left.
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["index.m3u8", "seg-4.ts", "seg-5.ts", "seg-7.ts"]);
    }

    #[test]
    fn the_master_playlist_offers_each_variant() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("s")).unwrap();
        let variants = [
            Variant {
                uri: "index.m3u8".into(),
                bandwidth: 2_500_000,
                resolution: Some((1280, 720)),
            },
            Variant {
                uri: "effects/index.m3u8".into(),
                bandwidth: 0,
                resolution: None,
            },
        ];
        write_master(tmp.path(), "s", &variants).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("s").join(MASTER_PLAYLIST)).unwrap();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\nindex.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1\neffects/index.m3u8\n"
        );
        remove_master(tmp.path(), "s").unwrap();
        remove_master(tmp.path(), "s").unwrap();
        assert!(!tmp.path().join("s").join(MASTER_PLAYLIST).exists());
    }
}
