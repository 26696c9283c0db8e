//! The archive (`serve --archive URL`): closed segments and each stream run's brand report, copied
//! to Cloud Storage (`gs://BUCKET[/PREFIX]`) or a folder (`file:///DIR`) by policy
//! (`--archive-policy segments,reports`), where they outlive the host's own retention.
//!
//! Objects are named by tenant, so a bucket's IAM conditions or lifecycle rules can differ per
//! tenant: `{tenant}/{stream}/seg-N.ts`; when a run of the stream ends, its playlist
//! `{tenant}/{stream}/run-{went live}.m3u8` (VOD, listing the run's segments beside it: the
//! archive plays as it is) and `{tenant}/{stream}/brand-report-{went live}.json` (the same
//! document as `GET /api/v1/streams/{id}/brands` over the run, with its tenant and time range).
//!
//! Nothing queued is lost: bookkeeping records each object in the store's archive queue (and
//! holds the segment against retention) before the archiver is signalled; the archiver deletes
//! the row and releases the hold only once the object is stored. An archive that is down is
//! tried again with backoff (up to a minute apart), and a host that restarts holds and uploads
//! what its queue still lists.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use store::{ArchiveItem, ArchiveKind, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The longest wait between two tries of an archive that keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What is archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivePolicy {
    /// Every closed segment.
    pub segments: bool,
    /// Each stream run's brand report, when the run ends.
    pub reports: bool,
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        Self {
            segments: true,
            reports: true,
        }
    }
}

impl std::str::FromStr for ArchivePolicy {
    type Err = String;

    /// A comma-separated list of `segments` and `reports`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut policy = Self {
            segments: false,
            reports: false,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "segments" => policy.segments = true,
                "reports" => policy.reports = true,
                other => {
                    return Err(format!(
                        "archive policy: {other:?} is not segments or reports"
                    ));
                }
            }
        }
        match policy.segments || policy.reports {
            true => Ok(policy),
            false => Err("archive policy: name segments, reports or both".into()),
        }
    }
}

impl std::fmt::Display for ArchivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = [(self.segments, "segments"), (self.reports, "reports")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Where archived objects go.
#[derive(Clone)]
pub enum ArchiveTarget {
    Folder(PathBuf),
    Cloud(analysis::CloudStorage),
}

impl std::fmt::Debug for ArchiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

impl ArchiveTarget {
    /// `gs://BUCKET[/PREFIX]` (Application Default Credentials, or the emulator at `emulator`,
    /// from `STORAGE_EMULATOR_HOST`) or `file:///DIR`.
    pub fn open(url: &str, emulator: Option<&str>) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("gs://") {
            return analysis::CloudStorage::open("--archive", rest, emulator).map(Self::Cloud);
        }
        if let Some(dir) = url.strip_prefix("file://").filter(|d| d.starts_with('/')) {
            std::fs::create_dir_all(dir).map_err(|e| format!("--archive {url}: {e}"))?;
            return Ok(Self::Folder(PathBuf::from(dir)));
        }
        Err(format!(
            "--archive {url}: expected gs://BUCKET[/PREFIX] or file:///DIR"
        ))
    }

    pub fn url(&self) -> String {
        match self {
            Self::Folder(dir) => format!("file://{}", dir.display()),
            Self::Cloud(cloud) => cloud.url(),
        }
    }

    /// Stores `data` as `path` (plain names, `/`-separated), replacing an object of that name:
    /// storing the same object again after a lost answer is harmless.
    pub(crate) async fn put(
        &self,
        path: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Self::Cloud(cloud) => cloud.put_object(path, content_type, data).await,
            Self::Folder(dir) => {
                let to = dir.join(path);
                let folder = to.parent().unwrap_or(dir);
                tokio::fs::create_dir_all(folder)
                    .await
                    .map_err(|e| format!("{}: {e}", folder.display()))?;
                // Written under a temporary name and renamed: a reader never sees half a file.
                let part = to.with_extension("part");
                tokio::fs::write(&part, &data)
                    .await
                    .map_err(|e| format!("writing {}: {e}", part.display()))?;
                tokio::fs::rename(&part, &to)
                    .await
                    .map_err(|e| format!("{}: {e}", to.display()))
            }
        }
    }
}

/// The archive's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub segments: AtomicU64,
    pub reports: AtomicU64,
    pub playlists: AtomicU64,
    pub bytes: AtomicU64,
    /// Uploads that failed (tried again later).
    pub failures: AtomicU64,
    /// Queued objects that could not be archived ever: their segment was gone from disk.
    pub lost: AtomicU64,
    /// Objects queued, and when the oldest was queued (Unix ms; 0: none).
    pub pending: AtomicI64,
    pub oldest_queued_ms: AtomicI64,
}

/// An archived brand report: the API's report over one run of a stream, with whose it is and
/// the time it covers.
#[derive(Debug, Serialize)]
struct ArchivedReport {
    tenant: String,
    /// When the stream went live and went offline (RFC 3339).
    from: String,
    to: String,
    #[serde(flatten)]
    report: store::BrandReport,
}

/// Why an object was not archived.
enum Upload {
    /// It never can be (its segment is gone): the row goes.
    Gone(String),
    /// The archive (or the store) failed: tried again later.
    Failed(String),
}

/// Queues objects for the archive and uploads them (see the module's documentation). Cloned
/// into bookkeeping, which queues; [`Archive::run`] uploads.
#[derive(Clone)]
pub struct Archive {
    host: String,
    store: Store,
    policy: ArchivePolicy,
    holds: hls::Holds,
    wake: Arc<Notify>,
    stats: Arc<ArchiveStats>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("host", &self.host)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// `host`: this ingest host (it archives the segments on its disk); `holds`: the packager's
    /// and the HLS sweep's ([`hls::HlsConfig::holds`]).
    pub fn new(host: String, store: Store, policy: ArchivePolicy, holds: hls::Holds) -> Self {
        Self {
            host,
            store,
            policy,
            holds,
            wake: Arc::new(Notify::new()),
            stats: Arc::new(ArchiveStats::default()),
        }
    }

    pub fn policy(&self) -> ArchivePolicy {
        self.policy
    }

    pub fn stats(&self) -> Arc<ArchiveStats> {
        self.stats.clone()
    }

    /// Holds the segments this host's queue still lists (an earlier run's, not archived yet), so
    /// that retention at start-up leaves them. Call before the first sweep. Returns how many.
    pub async fn hold_queued(&self) -> store::Result<usize> {
        let queued = self.store.archive_queued_segments(&self.host).await?;
        for (stream, seq) in &queued {
            self.holds.hold(stream, held_seq(*seq));
        }
        Ok(queued.len())
    }

    /// A segment was recorded: queued (and held) when the policy archives segments.
    pub async fn segment_closed(&self, stream: &str, seq: i64) {
        if !self.policy.segments {
            return;
        }
        // Held first: retention never sees it unqueued and unheld.
        self.holds.hold(stream, held_seq(seq));
        let tenant = match self.store.stream_tenant(stream).await {
            Ok(Some(tenant)) => tenant,
            found => {
                self.holds.release(stream, held_seq(seq));
                if let Err(e) = found {
                    warn!(%stream, segment = seq, "not archived: the store cannot say whose stream it is: {e}");
                }
                return;
            }
        };
        self.queue(ArchiveItem {
            tenant_id: tenant,
            stream_id: stream.to_string(),
            kind: ArchiveKind::Segment,
            seq,
            until_ms: 0,
            queued_at: store::now_ms(),
            attempts: 0,
            last_error: String::new(),
        })
        .await;
    }

    /// A run of a stream ended: its brand report is queued when the policy archives reports,
    /// and a playlist of its segments when it archives segments.
    pub async fn stream_ended(&self, stream: &str, tenant: &str, went_live: i64, ended: i64) {
        for (kind, on) in [
            (ArchiveKind::Playlist, self.policy.segments),
            (ArchiveKind::Report, self.policy.reports),
        ] {
            if on {
                self.queue(ArchiveItem {
                    tenant_id: tenant.to_string(),
                    stream_id: stream.to_string(),
                    kind,
                    seq: went_live,
                    until_ms: ended,
                    queued_at: store::now_ms(),
                    attempts: 0,
                    last_error: String::new(),
                })
                .await;
            }
        }
    }

    async fn queue(&self, item: ArchiveItem) {
        let queued = store::RetryPolicy::default()
            .run(
                || self.store.queue_archive(&self.host, &item),
                |attempt, e| {
                    warn!(
                        attempt,
                        "queueing an object for the archive failed, trying again: {e}"
                    )
                },
            )
            .await;
        match queued {
            Ok(()) => self.wake.notify_one(),
            Err(e) => {
                if item.kind == ArchiveKind::Segment {
                    self.holds.release(&item.stream_id, held_seq(item.seq));
                }
                warn!(stream = %item.stream_id, kind = item.kind.as_str(), seq = item.seq, "not archived: the archive queue cannot be written: {e}");
            }
        }
    }

    /// Uploads what is queued to `target` until `stop`: woken by each queued object, reading the
    /// queue when it starts and after each failure (with backoff up to [`MAX_BACKOFF`]).
    /// Segments are read from `hls_root`.
    pub async fn run(self, target: ArchiveTarget, hls_root: PathBuf, stop: CancellationToken) {
        info!(archive = %target.url(), policy = %self.policy, "archiving");
        let mut backoff = Duration::from_secs(1);
        loop {
            let queued = match self.store.archive_queue(&self.host).await {
                Ok(queued) => queued,
                Err(e) => {
                    warn!("cannot read the archive queue: {e}");
                    Vec::new()
                }
            };
            self.note_backlog().await;
            let mut failed = false;
            for item in &queued {
                if stop.is_cancelled() {
                    return;
                }
                match self.archive(&target, &hls_root, item).await {
                    Ok(()) => self.finished(item).await,
                    Err(Upload::Gone(why)) => {
                        self.stats.lost.fetch_add(1, Ordering::Relaxed);
                        warn!(stream = %item.stream_id, kind = item.kind.as_str(), seq = item.seq, "cannot be archived: {why}");
                        self.finished(item).await;
                    }
                    Err(Upload::Failed(why)) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        // Logged on the first failures of an outage, then every tenth.
                        if item.attempts < 3 || item.attempts % 10 == 0 {
                            warn!(stream = %item.stream_id, kind = item.kind.as_str(), seq = item.seq, attempts = item.attempts + 1, "archiving failed, trying again in {} s: {why}", backoff.as_secs());
                        }
                        if let Err(e) = self.store.archive_failed(item, &why).await {
                            warn!("cannot record an archive failure: {e}");
                        }
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            backoff = Duration::from_secs(1);
            self.note_backlog().await;
            if queued.len() as i64 >= store::ARCHIVE_BATCH {
                continue; // more behind these
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Stored (or never storable): the row goes and the segment's hold is released.
    async fn finished(&self, item: &ArchiveItem) {
        let done = store::RetryPolicy::default()
            .run(
                || self.store.archive_done(item),
                |attempt, e| {
                    warn!(
                        attempt,
                        "recording an archived object failed, trying again: {e}"
                    )
                },
            )
            .await;
        if let Err(e) = done {
            // The row stays: the object is uploaded again later, which replaces it.
            return warn!(stream = %item.stream_id, seq = item.seq, "cannot record an archived object: {e}");
        }
        if item.kind == ArchiveKind::Segment {
            self.holds.release(&item.stream_id, held_seq(item.seq));
        }
    }

    async fn note_backlog(&self) {
        if let Ok((count, oldest)) = self.store.archive_backlog(&self.host).await {
            self.stats.pending.store(count, Ordering::Relaxed);
            self.stats
                .oldest_queued_ms
                .store(oldest.unwrap_or(0), Ordering::Relaxed);
        }
    }

    async fn archive(
        &self,
        target: &ArchiveTarget,
        hls_root: &Path,
        item: &ArchiveItem,
    ) -> Result<(), Upload> {
        let folder = format!("{}/{}", item.tenant_id, item.stream_id);
        let (path, content_type, data) = match item.kind {
            ArchiveKind::Segment => {
                let name = hls::segment_file_name(held_seq(item.seq));
                let file = hls_root.join(&item.stream_id).join(&name);
                let data = read_segment(&file).await?;
                (format!("{folder}/{name}"), "video/mp2t", data)
            }
            ArchiveKind::Report => {
                let report = self
                    .store
                    .brand_report(&item.tenant_id, &item.stream_id, item.seq, item.until_ms)
                    .await
                    .map_err(|e| Upload::Failed(format!("making the brand report: {e}")))?;
                let document = ArchivedReport {
                    tenant: item.tenant_id.clone(),
                    from: bus::rfc3339_ms(item.seq),
                    to: bus::rfc3339_ms(item.until_ms),
                    report,
                };
                let data = serde_json::to_vec_pretty(&document)
                    .map_err(|e| Upload::Failed(e.to_string()))?;
                (
                    run_path(item, "brand-report", "json"),
                    "application/json",
                    data,
                )
            }
            ArchiveKind::Playlist => {
                let data = self.run_playlist(item).await?;
                (
                    run_path(item, "run", "m3u8"),
                    "application/vnd.apple.mpegurl",
                    data,
                )
            }
        };
        let bytes = data.len() as u64;
        target
            .put(&path, content_type, data)
            .await
            .map_err(Upload::Failed)?;
        let counter = match item.kind {
            ArchiveKind::Segment => &self.stats.segments,
            ArchiveKind::Report => &self.stats.reports,
            ArchiveKind::Playlist => &self.stats.playlists,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// A VOD playlist (ended) of the run's segments, which sit beside it in the archive: the
    /// segments that began from shortly before the run went live (a segment's date-time is its
    /// first frame's) until it ended.
    async fn run_playlist(&self, item: &ArchiveItem) -> Result<Vec<u8>, Upload> {
        let segments = self
            .store
            .run_segments(&item.stream_id, item.seq - RUN_SLACK_MS, item.until_ms + 1)
            .await
            .map_err(|e| Upload::Failed(format!("listing the run's segments: {e}")))?;
        let mut playlist = hls::Playlist::new(segments.len(), 2000);
        for s in segments {
            playlist.push(hls::Segment {
                seq: s.seq.max(0) as u64,
                duration_ms: s.duration_ms.max(0) as u64,
                program_date_time_ms: s.program_date_time,
                bytes: s.bytes.max(0) as u64,
                // A run starts after a discontinuity by definition; within it, a reconnect.
                discontinuity: s.discontinuity,
                gap: false,
            });
        }
        playlist.end();
        Ok(playlist.render().into_bytes())
    }

    /// The counters, for `/metrics`.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(ArchiveMetrics(self.stats.clone()))
    }
}

/// A segment's number as the packager and the holds count it (the store keeps it as i64).
fn held_seq(seq: i64) -> u64 {
    seq.max(0) as u64
}

/// How long before a run went live its first segment may have begun.
const RUN_SLACK_MS: i64 = 2000;

/// `{tenant}/{stream}/{what}-{went live, RFC 3339 with - for :}.{extension}`: a run's brand
/// report or playlist.
pub fn run_path(item: &ArchiveItem, what: &str, extension: &str) -> String {
    format!(
        "{}/{}/{what}-{}.{extension}",
        item.tenant_id,
        item.stream_id,
        bus::rfc3339_ms(item.seq).replace(':', "-")
    )
}

/// A segment's bytes; `Gone` when it is not on disk or larger than any segment can be.
async fn read_segment(file: &Path) -> Result<Vec<u8>, Upload> {
    let meta = match tokio::fs::metadata(file).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Upload::Gone(format!("{} is not on disk", file.display())));
        }
        Err(e) => return Err(Upload::Failed(format!("{}: {e}", file.display()))),
    };
    if meta.len() > analysis::MAX_SEGMENT_BYTES {
        return Err(Upload::Gone(format!(
            "{} is larger than {} bytes",
            file.display(),
            analysis::MAX_SEGMENT_BYTES
        )));
    }
    tokio::fs::read(file)
        .await
        .map_err(|e| Upload::Failed(format!("reading {}: {e}", file.display())))
}

struct ArchiveMetrics(Arc<ArchiveStats>);

impl std::fmt::Debug for ArchiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveMetrics").finish_non_exhaustive()
    }
}

impl Collector for ArchiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            ("segments", "segments copied to the archive", c(&s.segments)),
            (
                "reports",
                "brand reports copied to the archive",
                c(&s.reports),
            ),
            (
                "playlists",
                "playlists of archived stream runs",
                c(&s.playlists),
            ),
            ("bytes", "bytes copied to the archive", c(&s.bytes)),
            (
                "failures",
                "uploads to the archive that failed (tried again later)",
                c(&s.failures),
            ),
            (
                "lost",
                "queued segments that could not be archived: gone from disk",
                c(&s.lost),
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                &format!("media_analyzer_archive_{name}"),
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        let pending = s.pending.load(Ordering::Relaxed);
        ConstGauge::new(pending).encode(encoder.encode_descriptor(
            "media_analyzer_archive_pending",
            "objects queued for the archive on this host",
            None,
            MetricType::Gauge,
        )?)?;
        let oldest = s.oldest_queued_ms.load(Ordering::Relaxed);
        let age = match oldest {
            0 => 0.0,
            at => (store::now_ms() - at).max(0) as f64 / 1000.0,
        };
        ConstGauge::new(age).encode(encoder.encode_descriptor(
            "media_analyzer_archive_oldest_age_seconds",
            "how long the oldest object queued for the archive has waited",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An archive that fails keeps every queued segment on disk (held against retention) and in
    /// the queue; after a restart with a working archive, the same segments, byte for byte, and
    /// the run's brand report are stored under the tenant's folder, the queue empties and the
    /// holds are released, so retention can delete them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_objects_survive_an_archive_outage_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let tenant = store.create_tenant("acme").await.unwrap();
        let (stream, _) = store.create_stream(&tenant.id, "main").await.unwrap();
        let hls = hls::HlsConfig {
            root: dir.path().join("hls"),
            window: 1,
            retain_segments: 1,
            retain_age: Duration::from_secs(1),
            ..Default::default()
        };
        let segments = hls.root.join(&stream.id);
        std::fs::create_dir_all(&segments).unwrap();
        for seq in 0..3u64 {
            let bytes = format!("segment {seq}").repeat(1000);
            std::fs::write(segments.join(hls::segment_file_name(seq)), bytes).unwrap();
            let record = store::SegmentRecord {
                seq: seq as i64,
                duration_ms: 2000,
                program_date_time: 5_000 + seq as i64 * 2000,
                bytes: 9000,
                discontinuity: false,
            };
            store.add_segment(&stream.id, &record).await.unwrap();
        }
        for seq in 0..8i64 {
            let detections = match seq < 4 {
                true => vec![bus::Detection {
                    label: "brand:acme".into(),
                    score: 0.9,
                    bbox: [0.1, 0.1, 0.2, 0.1],
                    component: "logo-matcher".into(),
                }],
                false => Vec::new(),
            };
            store
                .store_frame_results(&store::FrameResults {
                    stream_id: stream.id.clone(),
                    session: 1,
                    seq,
                    pts_ms: seq * 250,
                    wallclock: 5_000 + seq * 250,
                    components: vec!["logo-matcher".into()],
                    detections,
                })
                .await
                .unwrap();
        }

        // The archive is down: its folder can't be made (a file is in the way).
        let blocked = dir.path().join("not-a-folder");
        std::fs::write(&blocked, b"").unwrap();
        let archive = Archive::new(
            "host_a".into(),
            store.clone(),
            ArchivePolicy::default(),
            hls.holds.clone(),
        );
        let stop = CancellationToken::new();
        let runner = tokio::spawn(archive.clone().run(
            ArchiveTarget::Folder(blocked.join("archive")),
            hls.root.clone(),
            stop.clone(),
        ));
        for seq in 0..3 {
            archive.segment_closed(&stream.id, seq).await;
        }
        archive
            .stream_ended(&stream.id, &tenant.id, 5_000, 11_000)
            .await;
        let stats = archive.stats();
        wait_for("a failed upload", || {
            stats.failures.load(Ordering::Relaxed) > 0
        })
        .await;
        assert_eq!(hls.holds.len(), 3, "every queued segment is held");
        tokio::time::sleep(Duration::from_millis(1100)).await; // past retain_age
        let removed = hls::sweep::sweep(&hls.root, &hls, &Default::default(), false);
        assert!(removed.is_empty(), "retention deleted {removed:?}");
        let (queued, _) = store.archive_backlog("host_a").await.unwrap();
        assert_eq!(queued, 5, "3 segments, the run's playlist and its report");
        stop.cancel();
        runner.await.unwrap();

        // A restart: the queue is read back, held, and stored once the archive works.
        let holds = hls::Holds::default();
        let archive = Archive::new(
            "host_a".into(),
            store.clone(),
            ArchivePolicy::default(),
            holds.clone(),
        );
        assert_eq!(archive.hold_queued().await.unwrap(), 3);
        let target = dir.path().join("archive");
        let stop = CancellationToken::new();
        let runner = tokio::spawn(archive.clone().run(
            ArchiveTarget::open(&format!("file://{}", target.display()), None).unwrap(),
            hls.root.clone(),
            stop.clone(),
        ));
        let stats = archive.stats();
        wait_for("the queue to be stored", || {
            stats.segments.load(Ordering::Relaxed) == 3
                && stats.reports.load(Ordering::Relaxed) == 1
                && stats.playlists.load(Ordering::Relaxed) == 1
        })
        .await;
        let stored = target.join(&tenant.id).join(&stream.id);
        for seq in 0..3u64 {
            let name = hls::segment_file_name(seq);
            assert_eq!(
                std::fs::read(stored.join(&name)).unwrap(),
                std::fs::read(segments.join(&name)).unwrap(),
                "{name}"
            );
        }
        let report = stored.join("brand-report-1970-01-01T00-00-05.000Z.json");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(report["tenant"], tenant.id.as_str());
        assert_eq!(report["stream"], stream.id.as_str());
        assert_eq!(report["from"], "1970-01-01T00:00:05.000Z");
        assert_eq!(report["to"], "1970-01-01T00:00:11.000Z");
        assert_eq!(report["frames"], 8);
        assert_eq!(report["brands"][0]["brand"], "acme");
        assert_eq!(report["brands"][0]["appearances"], 1);
        let playlist =
            std::fs::read_to_string(stored.join("run-1970-01-01T00-00-05.000Z.m3u8")).unwrap();
        let listed: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
        assert_eq!(listed, ["seg-0.ts", "seg-1.ts", "seg-2.ts"], "{playlist}");
        assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
        wait_for("the holds to be released", || holds.is_empty()).await;
        assert_eq!(store.archive_backlog("host_a").await.unwrap().0, 0);
        stop.cancel();
        runner.await.unwrap();
    }

    /// A queued segment that is gone from disk can never be archived: counted as lost, and its
    /// row does not block the queue.
    #[tokio::test]
    async fn a_segment_gone_from_disk_is_counted_lost_and_leaves_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let tenant = store.create_tenant("acme").await.unwrap();
        let (stream, _) = store.create_stream(&tenant.id, "main").await.unwrap();
        let policy: ArchivePolicy = "segments".parse().unwrap();
        let archive = Archive::new("h".into(), store.clone(), policy, hls::Holds::default());
        archive.segment_closed(&stream.id, 7).await;
        archive.stream_ended(&stream.id, &tenant.id, 0, 1).await; // not by this policy
        let stop = CancellationToken::new();
        let runner = tokio::spawn(archive.clone().run(
            ArchiveTarget::Folder(dir.path().join("archive")),
            dir.path().join("hls"),
            stop.clone(),
        ));
        let stats = archive.stats();
        wait_for("the segment to be counted lost", || {
            stats.lost.load(Ordering::Relaxed) == 1
        })
        .await;
        assert_eq!(store.archive_backlog("h").await.unwrap().0, 0);
        assert_eq!(stats.reports.load(Ordering::Relaxed), 0);
        stop.cancel();
        runner.await.unwrap();
    }

    #[test]
    fn a_policy_and_a_target_are_checked() {
        let both: ArchivePolicy = "segments, reports".parse().unwrap();
        assert_eq!(both, ArchivePolicy::default());
        assert_eq!(both.to_string(), "segments,reports");
        let reports: ArchivePolicy = "reports".parse().unwrap();
        assert!(reports.reports && !reports.segments);
        for bad in ["", "frames", "segments,everything"] {
            assert!(bad.parse::<ArchivePolicy>().is_err(), "{bad}");
        }
        for bad in [
            "s3://b",
            "file://relative",
            "gs://",
            "gs://b/../x",
            "/plain",
        ] {
            let e = ArchiveTarget::open(bad, Some("127.0.0.1:1")).unwrap_err();
            assert!(e.contains("--archive"), "{e}");
        }
        let cloud = ArchiveTarget::open("gs://media/archive/", Some("127.0.0.1:1")).unwrap();
        assert_eq!(cloud.url(), "gs://media/archive");
    }
}
