//! HLS packaging without re-encoding: every live stream in the hub is cut into keyframe-aligned
//! MPEG-TS segments with a sliding live playlist that carries `EXT-X-PROGRAM-DATE-TIME` on every
//! segment, `EXT-X-DISCONTINUITY` when a publisher reconnects, and `EXT-X-ENDLIST` when it stops.
//!
//! Files live under `{root}/{stream}/` (`index.m3u8`, `seg-N.ts`), each written to a temp file and
//! renamed into place, so a reader never sees half a segment. Segments beyond the retention limits
//! are deleted. The packager reports each segment through a bounded channel for bookkeeping; it never
//! reads the store and never serves HTTP.

pub mod playlist;
pub mod rendition;
pub mod segmenter;
pub mod sweep;
pub mod tap;
pub mod ts;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{HubEvent, Overflow, StreamHub, StreamId, Subscription};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use playlist::{Playlist, Segment, segment_file_name};
pub use segmenter::{FinishedSegment, Segmenter};
pub use tap::{TapItem, TapReceiver, Taps};

/// Packaging settings (validated by the caller's config layer).
#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// `{data}/hls`; one folder per stream below it.
    pub root: PathBuf,
    /// Target segment duration; segments are cut at the first keyframe after it.
    pub target_duration: Duration,
    /// Segments listed in the live playlist.
    pub window: usize,
    /// Segments kept on disk per stream (older ones are deleted).
    pub retain_segments: usize,
    /// Segments older than this are deleted.
    pub retain_age: Duration,
    /// Packets queued between the hub and a stream's packager.
    pub queue: usize,
    /// Segments retention leaves on disk for now, whatever their age (the archive has not
    /// copied them yet); shared with whoever places the holds.
    pub holds: Holds,
    /// Copies of streams' packets with their segment boundaries, for renditions made from the
    /// same video; shared with whoever opens them.
    pub taps: Taps,
}

/// Segments that retention must not delete yet, per stream. Retention passes over a held
/// segment; the next sweep after its hold is released deletes it if it is past retention.
#[derive(Debug, Clone, Default)]
pub struct Holds(Arc<Mutex<HashMap<String, HashSet<u64>>>>);

impl Holds {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<u64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hold(&self, stream: &str, seq: u64) {
        self.streams()
            .entry(stream.to_string())
            .or_default()
            .insert(seq);
    }

    pub fn release(&self, stream: &str, seq: u64) {
        let mut streams = self.streams();
        if let Some(held) = streams.get_mut(stream) {
            held.remove(&seq);
            if held.is_empty() {
                streams.remove(stream);
            }
        }
    }

    pub fn is_held(&self, stream: &str, seq: u64) -> bool {
        self.streams()
            .get(stream)
            .is_some_and(|held| held.contains(&seq))
    }

    /// Segments held, all streams together.
    pub fn len(&self) -> usize {
        self.streams().values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("data/hls"),
            target_duration: Duration::from_secs(2),
            window: 6,
            retain_segments: 1800,
            retain_age: Duration::from_secs(24 * 3600),
            queue: 2048,
            holds: Holds::default(),
            taps: Taps::default(),
        }
    }
}

/// What the packager reports.
#[derive(Debug, Clone, PartialEq)]
pub enum HlsEvent {
    SegmentClosed { stream: StreamId, segment: Segment },
    SegmentsRemoved { stream: StreamId, seqs: Vec<u64> },
    PlaylistEnded { stream: StreamId },
}

pub fn stream_dir(root: &Path, stream: &str) -> PathBuf {
    root.join(stream)
}

pub use media::now_ms;

/// Per-stream state that outlives one publish session, so a reconnect continues the playlist.
struct StreamState {
    playlist: Playlist,
    retained: VecDeque<Segment>,
    next_seq: u64,
}

#[derive(Clone)]
pub struct Packager {
    config: Arc<HlsConfig>,
    events: mpsc::Sender<HlsEvent>,
    streams: Arc<Mutex<HashMap<StreamId, StreamState>>>,
}

impl Packager {
    pub fn new(config: HlsConfig, events: mpsc::Sender<HlsEvent>) -> Self {
        Self {
            config: Arc::new(config),
            events,
            streams: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Packages every stream that starts in `hub` until `shutdown`; then waits for the streams in
    /// progress to end (their publishers are closed first by the caller) and returns.
    pub async fn run(self, hub: StreamHub, shutdown: CancellationToken) {
        let mut hub_events = hub.events();
        let mut tasks = JoinSet::new();
        let mut active: HashSet<StreamId> = HashSet::new();
        // Streams that were live before we started listening.
        for stream in hub.live_streams() {
            self.start(&hub, &stream, &mut active, &mut tasks);
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    match done {
                        Ok(stream) => { active.remove(&stream); }
                        Err(e) => warn!("HLS packager task failed: {e}"),
                    }
                }
                event = hub_events.recv() => match event {
                    Ok(HubEvent::Started { stream, .. }) => self.start(&hub, &stream, &mut active, &mut tasks),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!("HLS packager missed {n} hub events; resynchronising");
                        for stream in hub.live_streams() {
                            self.start(&hub, &stream, &mut active, &mut tasks);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn start(
        &self,
        hub: &StreamHub,
        stream: &str,
        active: &mut HashSet<StreamId>,
        tasks: &mut JoinSet<StreamId>,
    ) {
        if active.contains(stream) {
            return;
        }
        let Some(subscription) = hub.subscribe(stream, Overflow::Backpressure, self.config.queue)
        else {
            return; // ended before we got to it
        };
        active.insert(stream.to_string());
        let packager = self.clone();
        let stream = stream.to_string();
        let span = info_span!("hls", stream = %stream);
        tasks.spawn(
            async move {
                if let Err(e) = packager.package(&stream, subscription).await {
                    warn!("packaging stopped: {e}");
                }
                stream
            }
            .instrument(span),
        );
    }

    /// Packages one publish session of `stream`.
    pub async fn package(
        &self,
        stream: &str,
        mut subscription: Subscription,
    ) -> std::io::Result<()> {
        let dir = stream_dir(&self.config.root, stream);
        tokio::fs::create_dir_all(&dir).await?;
        let (first_seq, discontinuity) = {
            let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            match streams.get(stream) {
                Some(state) => (state.next_seq, true),
                None => (next_seq_on_disk(&dir), false),
            }
        };
        // After a restart the old files stay, but the new playlist starts with a discontinuity.
        let discontinuity = discontinuity || first_seq > 0;
        let mut segmenter = Segmenter::new(
            first_seq,
            self.config.target_duration.as_millis() as u64,
            discontinuity,
        );
        let mut file: Option<SegmentFile> = None;
        info!(first_seq, "packaging started");
        let taps = &self.config.taps;
        // The stream's configuration packets (video, audio), for a tap that starts later.
        let mut configs = tap::Configs::default();
        while let Some(packet) = subscription.recv().await {
            let forced_before = segmenter.forced_cuts;
            let pushed = taps.push(stream, &mut segmenter, &mut configs, &packet, now_ms());
            match pushed {
                Ok(Some(finished)) => {
                    if segmenter.forced_cuts > forced_before {
                        warn!(
                            segment = finished.segment.seq,
                            "no keyframe for {} s: segment cut without one; set the encoder's keyframe interval to {} s",
                            finished.segment.duration_ms / 1000,
                            self.config.target_duration.as_secs_f64()
                        );
                    }
                    self.complete_segment(stream, &dir, &mut file, finished, false)
                        .await?
                }
                Ok(None) => {}
                // A corrupt frame must not end the stream's packaging: skip it and say so.
                Err(e) => warn!("skipped a packet that cannot be packaged: {e}"),
            }
            if let Some((seq, bytes)) = segmenter.drain(WRITE_CHUNK) {
                SegmentFile::append(&mut file, &dir, seq, &bytes)?;
            }
        }
        match taps.finish(stream, &mut segmenter) {
            Some(finished) => {
                self.complete_segment(stream, &dir, &mut file, finished, true)
                    .await?
            }
            None => self.end_playlist(stream, &dir).await?,
        }
        let _ = self
            .events
            .send(HlsEvent::PlaylistEnded {
                stream: stream.to_string(),
            })
            .await;
        info!(
            segments = segmenter.next_seq() - first_seq,
            skipped = segmenter.skipped,
            forced_cuts = segmenter.forced_cuts,
            "packaging ended"
        );
        Ok(())
    }

    async fn end_playlist(&self, stream: &str, dir: &Path) -> std::io::Result<()> {
        let text = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let Some(state) = streams.get_mut(stream) else {
                return Ok(());
            };
            state.playlist.end();
            state.playlist.render()
        };
        write_atomically(&dir.join("index.m3u8"), text.as_bytes()).await
    }

    /// Writes the segment's last bytes, moves it into place, then lists it in the playlist.
    async fn complete_segment(
        &self,
        stream: &str,
        dir: &Path,
        file: &mut Option<SegmentFile>,
        finished: FinishedSegment,
        last: bool,
    ) -> std::io::Result<()> {
        let segment = finished.segment;
        SegmentFile::append(file, dir, segment.seq, &finished.data)?;
        if let Some(f) = file.take() {
            // fsync can take a while on a busy disk: off the async workers.
            tokio::task::spawn_blocking(move || f.finish())
                .await
                .map_err(std::io::Error::other)??;
        }
        let (text, expired) = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let state = streams
                .entry(stream.to_string())
                .or_insert_with(|| StreamState {
                    playlist: Playlist::new(
                        self.config.window,
                        self.config.target_duration.as_millis() as u64,
                    ),
                    retained: VecDeque::new(),
                    next_seq: 0,
                });
            state.next_seq = segment.seq + 1;
            state.playlist.push(segment.clone());
            if last {
                state.playlist.end();
            }
            state.retained.push_back(segment.clone());
            let oldest_allowed =
                segment.program_date_time_ms - self.config.retain_age.as_millis() as i64;
            let mut expired = Vec::new();
            let in_window = self.config.window;
            while state.retained.len() > in_window
                && (state.retained.len() > self.config.retain_segments.max(in_window)
                    || state
                        .retained
                        .front()
                        .is_some_and(|s| s.program_date_time_ms < oldest_allowed))
            {
                if let Some(old) = state.retained.pop_front()
                    && !self.config.holds.is_held(stream, old.seq)
                {
                    expired.push(old.seq);
                }
            }
            (state.playlist.render(), expired)
        };
        write_atomically(&dir.join("index.m3u8"), text.as_bytes()).await?;
        let _ = self
            .events
            .send(HlsEvent::SegmentClosed {
                stream: stream.to_string(),
                segment,
            })
            .await;
        if !expired.is_empty() {
            for seq in &expired {
                if let Err(e) = tokio::fs::remove_file(dir.join(segment_file_name(*seq))).await
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!("could not delete expired segment {seq}: {e}");
                }
            }
            let _ = self
                .events
                .send(HlsEvent::SegmentsRemoved {
                    stream: stream.to_string(),
                    seqs: expired,
                })
                .await;
        }
        Ok(())
    }
}

/// Appends reach the segment file in pieces of at least this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// The segment being written: `seg-N.ts.tmp`, renamed to `seg-N.ts` when complete, so a reader
/// never sees a partial segment.
///
/// Appends use blocking `std::fs` calls on purpose: they are ≥ 64 KiB writes into the page cache
/// (microseconds), a handful per second per stream; a thread hand-off per write (`tokio::fs`)
/// costs more CPU than the write itself.
struct SegmentFile {
    seq: u64,
    file: std::fs::File,
    tmp: PathBuf,
    path: PathBuf,
}

impl SegmentFile {
    fn append(
        slot: &mut Option<SegmentFile>,
        dir: &Path,
        seq: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        use std::io::Write;
        if slot.as_ref().is_some_and(|f| f.seq != seq) {
            // A segment we never completed (should not happen): keep what it has.
            if let Some(stale) = slot.take() {
                stale.finish()?;
            }
        }
        if slot.is_none() {
            let path = dir.join(segment_file_name(seq));
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            let file = std::fs::File::create(&tmp)?;
            *slot = Some(SegmentFile {
                seq,
                file,
                tmp,
                path,
            });
        }
        match slot.as_mut() {
            Some(f) => f.file.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Moves the complete segment into place, durably: its data reaches the disk before the
    /// rename, and the rename before the playlist that lists it is written, so a crash (of the
    /// machine, not only the process) never leaves a playlist listing a segment that is not on
    /// disk or is cut short.
    fn finish(self) -> std::io::Result<()> {
        self.file.sync_all()?;
        drop(self.file);
        std::fs::rename(&self.tmp, &self.path)?;
        sync_dir(&self.path)
    }
}

/// The sequence number after the highest `seg-N.ts` already in `dir` (0 when none).
fn next_seq_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_prefix("seg-")?
                        .strip_suffix(".ts")?
                        .parse::<u64>()
                        .ok()
                })
                .map(|n| n + 1)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Makes a rename into `path`'s folder durable (the folder's entry list reaches the disk).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Replaces `path` with `data` atomically and durably (written, synced, renamed, folder synced).
async fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let (path, data) = (path.to_path_buf(), data.to_vec());
    tokio::task::spawn_blocking(move || write_atomically_now(&path, &data))
        .await
        .map_err(std::io::Error::other)?
}

/// [`write_atomically`] on the caller's thread.
fn write_atomically_now(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::{MediaKind, MediaPacket};

    fn video(dts: i64, keyframe: bool, is_config: bool, data: Bytes) -> MediaPacket {
        MediaPacket {
            kind: MediaKind::Video,
            dts_ms: dts,
            pts_ms: dts,
            keyframe,
            is_config,
            data,
        }
    }

    /// Publishes `seconds` of 10 fps video with a keyframe every second into a packager with a
    /// 1 s target, a 3-segment window and 4 segments of retention.
    async fn package(seconds: i64, config: HlsConfig) -> (Vec<HlsEvent>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = HlsConfig {
            root: dir.path().to_path_buf(),
            ..config
        };
        let (tx, mut rx) = mpsc::channel(1000);
        let packager = Packager::new(config, tx);
        let hub = StreamHub::new();
        let mut publisher = hub.publish("s", "tenant").unwrap();
        let subscription = hub.subscribe("s", Overflow::Backpressure, 64).unwrap();
        let task = tokio::spawn(async move { packager.package("s", subscription).await });
        publisher
            .send(video(
                0,
                true,
                true,
                Bytes::from(media::fixtures::avc_record_640x360()),
            ))
            .await;
        let frame = Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x84]);
        for i in 0..seconds * 10 {
            publisher
                .send(video(i * 100, i % 10 == 0, false, frame.clone()))
                .await;
        }
        drop(publisher);
        task.await.unwrap().unwrap();
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (events, dir)
    }

    fn config() -> HlsConfig {
        HlsConfig {
            target_duration: Duration::from_secs(1),
            window: 3,
            retain_segments: 4,
            retain_age: Duration::from_secs(3600),
            ..HlsConfig::default()
        }
    }

    /// Every segment the packager reported removed, in order.
    fn removed_seqs(events: &[HlsEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                HlsEvent::SegmentsRemoved { seqs, .. } => Some(seqs.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The packager's own retention passes over held segments: they stay on disk and are not
    /// reported removed.
    #[tokio::test]
    async fn retention_leaves_held_segments_on_disk() {
        let config = config();
        config.holds.hold("s", 0);
        config.holds.hold("s", 2);
        let (events, dir) = package(10, config).await;
        let removed = removed_seqs(&events);
        assert!(!removed.is_empty(), "retention ran");
        assert!(
            !removed.contains(&0) && !removed.contains(&2),
            "{removed:?}"
        );
        for seq in [0, 2] {
            assert!(dir.path().join("s").join(segment_file_name(seq)).exists());
        }
        assert!(!dir.path().join("s").join(segment_file_name(1)).exists());
    }

    #[tokio::test]
    async fn retention_by_count_deletes_old_segments_and_reports_them() {
        let (events, dir) = package(10, config()).await;
        let closed = events
            .iter()
            .filter(|e| matches!(e, HlsEvent::SegmentClosed { .. }))
            .count();
        assert_eq!(closed, 10);
        let removed = removed_seqs(&events);
        assert_eq!(removed, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            events.last(),
            Some(&HlsEvent::PlaylistEnded { stream: "s".into() })
        );
        let stream_dir = dir.path().join("s");
        let mut files: Vec<String> = std::fs::read_dir(&stream_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["index.m3u8", "seg-6.ts", "seg-7.ts", "seg-8.ts", "seg-9.ts"]
        );
        let playlist = std::fs::read_to_string(stream_dir.join("index.m3u8")).unwrap();
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:7\n"), "{playlist}");
        assert!(
            playlist.ends_with("seg-9.ts\n#EXT-X-ENDLIST\n"),
            "{playlist}"
        );
    }

    #[tokio::test]
    async fn retention_by_age_keeps_only_recent_segments() {
        let config = HlsConfig {
            retain_segments: 1000,
            retain_age: Duration::from_millis(4500),
            ..config()
        };
        let (events, dir) = package(10, config).await;
        let removed = events
            .iter()
            .filter_map(|e| match e {
                HlsEvent::SegmentsRemoved { seqs, .. } => Some(seqs.len()),
                _ => None,
            })
            .sum::<usize>();
        // The newest segment starts at 9 s: everything that started before 4.5 s goes.
        assert_eq!(removed, 5);
        assert!(!dir.path().join("s/seg-4.ts").exists());
        assert!(dir.path().join("s/seg-5.ts").exists());
    }

    #[tokio::test]
    async fn a_new_session_after_restart_continues_numbering() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/seg-41.ts"), b"old").unwrap();
        assert_eq!(next_seq_on_disk(&dir.path().join("s")), 42);
        assert_eq!(next_seq_on_disk(&dir.path().join("missing")), 0);
    }
}
