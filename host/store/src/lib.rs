//! Durable state: tenants, API keys and their roles, streams and their stream keys, HLS segments,
//! analysis results, and tenant components and pipelines (the component files themselves are
//! [`ComponentFiles`], named by content hash).
//!
//! One set of migrations and one set of queries serve both the embedded SQLite default and
//! PostgreSQL (through sqlx's `Any` driver): ids are text, times are Unix milliseconds in
//! BIGINT columns, and every query uses `$N` parameters, which both engines accept.
//!
//! Secrets (API keys, stream keys) are stored only as SHA-256 hashes; they are random 128-bit+
//! values, so a fast hash is the right tool. Webhook signing secrets are the exception: the host
//! needs them to sign. Every read that a tenant can trigger is scoped by
//! tenant id.

mod activity;
mod alerts;
mod archive;
mod brand_report;
mod brands;
mod components;
mod files;
mod keys;
mod models;
mod screen_time;
mod webhooks;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use thiserror::Error;

pub use activity::{ActivityDelta, COMPONENT_LOG_LINES, ComponentLogLine, ComponentStats, LogLine};
pub use alerts::{AlertPage, AlertRecord, FrameAlerts, NewAlert};
pub use archive::{ARCHIVE_BATCH, ArchiveItem, ArchiveKind, MAX_RUN_SEGMENTS};
pub use brand_report::{BrandReport, BrandScreenTimeView};
pub use brands::{
    Brand, BrandLogo, MAX_BRANDS, MAX_LOGOS, MAX_LOGOS_PER_BRAND, NewLogo, fold_brand,
};
pub use components::{
    ComponentVersion, NewComponent, PipelineChange, PipelineStage, StageComponent,
    valid_component_name,
};
pub use files::ComponentFiles;
pub use keys::{
    ApiKeyOwner, KeyKind, KeyRecord, MAX_KEY_PREFIX, Role, hash_secret, new_id, new_secret,
    valid_key_prefix,
};
pub use models::{ModelQuota, ModelVersion, NewModel};
pub use screen_time::{BrandScreenTime, FrameAt, GAP_MS, ScreenTime, ScreenTimeReport, Sighting};
pub use webhooks::{DeliveryCounts, DeliveryOutcome, MAX_WEBHOOKS, Webhook};

/// Rows of a paged listing that asked for `limit + 1` rows: at most `limit` of them, and the id
/// to continue after when there were more.
pub(crate) fn one_page<T>(
    rows: &[AnyRow],
    limit: i64,
    read: impl Fn(&AnyRow) -> Result<T>,
    id: impl Fn(&T) -> &String,
) -> Result<(Vec<T>, Option<String>)> {
    let mut items = rows.iter().map(read).collect::<Result<Vec<_>>>()?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit.max(0) as usize);
        items.last().map(|item| id(item).clone())
    } else {
        None
    };
    Ok((items, next))
}

/// Runs an insert that gives out the next version of a name, and again when a concurrent insert
/// took that number first (two uploads that read the same last version on PostgreSQL: the key
/// refuses one, which takes the next), at most 8 times. The insert answers with the row it wrote
/// (`None`: its condition refused it) and when it wrote it (Unix ms).
pub(crate) async fn insert_next_version<F, Fut>(mut insert: F) -> Result<(Option<AnyRow>, i64)>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Option<AnyRow>, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let created_at = now_ms();
        match insert(created_at).await {
            Ok(row) => return Ok((row, created_at)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempt < 8 => {}
            Err(e) => return Err(e.into()),
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported store URL '{0}': use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether trying the same write again may succeed: a lost connection, a pool timeout, a busy
    /// database, a server shutting down. A constraint the row breaks, a bad value or a missing
    /// row fails the same way every time.
    pub fn is_transient(&self) -> bool {
        use sqlx::error::ErrorKind;
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => matches!(e.kind(), ErrorKind::Other),
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_),
            ) => true,
            _ => false,
        }
    }
}

/// How a failed store write is tried again: `attempts` in all, waiting `first_delay`, then twice
/// as long each time, up to `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: std::time::Duration,
    pub max_delay: std::time::Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts over about 1.5 s (0.1 + 0.2 + 0.4 + 0.8 s of waiting): enough for a pool to
    /// replace a killed connection or a PostgreSQL fail-over to finish, short enough that a live
    /// stream's results are not held up for long.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: std::time::Duration::from_millis(100),
            max_delay: std::time::Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Runs `write` until it succeeds, fails for good ([`StoreError::is_transient`] is false) or
    /// has been tried `attempts` times; `on_retry` hears of each failure that is tried again
    /// (the attempt that failed, from 1, and why).
    pub async fn run<T, F, Fut>(
        self,
        mut write: F,
        mut on_retry: impl FnMut(u32, &StoreError),
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match write().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < self.attempts.max(1) => {
                    on_retry(attempt, &e);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    Live,
    Offline,
}

impl StreamState {
    fn as_str(self) -> &'static str {
        match self {
            StreamState::Live => "live",
            StreamState::Offline => "offline",
        }
    }
}

impl FromStr for StreamState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "live" => Ok(Self::Live),
            "offline" => Ok(Self::Offline),
            other => Err(StoreError::Invalid(format!(
                "unknown stream state '{other}'"
            ))),
        }
    }
}

/// How a stream is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalysisMode {
    /// The newest decoded frame, live; frames analysis can't keep up with are skipped.
    Realtime,
    /// Every Nth frame of each closed segment, through a durable bounded queue; nothing skipped.
    Batch,
}

impl AnalysisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisMode::Realtime => "realtime",
            AnalysisMode::Batch => "batch",
        }
    }
}

impl FromStr for AnalysisMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "realtime" => Ok(Self::Realtime),
            "batch" => Ok(Self::Batch),
            other => Err(StoreError::Invalid(format!(
                "unknown analysis mode '{other}' (realtime or batch)"
            ))),
        }
    }
}

/// A stream's analysis settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalysisSettings {
    pub mode: AnalysisMode,
    /// In batch mode: analyse every Nth frame (1 = all).
    pub every: u32,
}

/// Manual control of one effect kind on a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forced {
    /// As the pipeline's effect selectors choose.
    #[default]
    Auto,
    /// Always: the bundled selector of the kind runs, whatever the pipeline names.
    On,
    /// Never rendered, whatever a selector chooses.
    Off,
}

/// Manual control of a stream's effects, per kind (`PUT /api/v1/streams/{id}/effects`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EffectsControl {
    #[serde(default)]
    pub blur: Forced,
    #[serde(default)]
    pub highlight: Forced,
    #[serde(default, rename = "colour-grade")]
    pub colour_grade: Forced,
    /// Settings for each kind's bundled selector, wherever it runs on the stream (forced on, or
    /// named by the pipeline: over the pipeline's settings for it).
    #[serde(default)]
    pub settings: EffectSettings,
}

/// Per effect kind, settings (name → value, as the kind's bundled selector reads them).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EffectSettings {
    #[serde(default)]
    pub blur: BTreeMap<String, String>,
    #[serde(default)]
    pub highlight: BTreeMap<String, String>,
    #[serde(default, rename = "colour-grade")]
    pub colour_grade: BTreeMap<String, String>,
}

impl EffectSettings {
    /// Each kind (as effects name it) with its settings.
    pub fn kinds(&self) -> [(&'static str, &BTreeMap<String, String>); 3] {
        [
            ("blur", &self.blur),
            ("highlight", &self.highlight),
            ("colour-grade", &self.colour_grade),
        ]
    }
}

impl EffectsControl {
    /// Each kind (as effects name it) with its control.
    pub fn kinds(&self) -> [(&'static str, Forced); 3] {
        [
            ("blur", self.blur),
            ("highlight", self.highlight),
            ("colour-grade", self.colour_grade),
        ]
    }

    /// Whether every kind is left to the selectors, with their own settings.
    pub fn is_auto(&self) -> bool {
        self.kinds().iter().all(|(_, f)| *f == Forced::Auto)
            && self.settings.kinds().iter().all(|(_, s)| s.is_empty())
    }
}

/// One closed segment waiting for batch analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
    pub stream_id: String,
    pub segment_seq: i64,
    pub every: u32,
    pub queued_at: i64,
}

/// Whether the batch worker may run a job ([`Store::start_batch_job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStart {
    /// Run it: this is its `attempt`th start (1 the first time).
    Run { attempt: i64 },
    /// It was started too often without an outcome and is marked failed now.
    GaveUp,
    /// It is no longer queued (done, failed, or gone).
    NotQueued,
}

/// One analysed frame's results, stored at most once per component
/// ([`Store::store_frame_results`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameResults {
    pub stream_id: String,
    /// When the frame's publish session began (Unix ms): frame numbers start again at 0 in each
    /// session of a stream, so `(session, seq)` names a frame.
    pub session: i64,
    pub seq: i64,
    pub pts_ms: i64,
    pub wallclock: i64,
    /// The components that analysed the frame, also those that found nothing.
    pub components: Vec<String>,
    /// What they found, in the order the components ran.
    pub detections: Vec<bus::Detection>,
}

/// What [`Store::store_frame_results`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredFrame {
    /// Detections written now.
    pub detections: u64,
    /// Components whose results for this frame were stored already (an earlier attempt that
    /// committed, or a re-run batch job): left as they were.
    pub already_stored: u64,
}

/// A batch job from a row of (stream_id, segment_seq, every, queued_at).
fn batch_job_from(row: &AnyRow) -> Result<BatchJob> {
    Ok(BatchJob {
        stream_id: row.try_get(0)?,
        segment_seq: row.try_get(1)?,
        every: every_from(row.try_get(2)?),
        queued_at: row.try_get(3)?,
    })
}

/// Batch queue counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchQueueDepth {
    pub queued: i64,
    pub done: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoRecord {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioRecord {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub state: StreamState,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub video: Option<VideoRecord>,
    pub audio: Option<AudioRecord>,
    /// Segments on disk (not yet removed by retention).
    pub segments: i64,
    pub analysis: AnalysisSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub seq: i64,
    pub duration_ms: i64,
    pub program_date_time: i64,
    pub bytes: i64,
    pub discontinuity: bool,
}

/// One detection as stored: the detection analysis produced, and the frame it was found on.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRecord {
    /// Time-ordered (paging by id follows the wall clock); filled in when stored.
    pub id: String,
    pub stream_id: String,
    pub seq: i64,
    pub pts_ms: i64,
    /// When the frame was analysed (Unix ms).
    pub wallclock: i64,
    pub detection: bus::Detection,
}

/// A page of detections, oldest first; `next` continues after the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionPage {
    pub detections: Vec<DetectionRecord>,
    pub next: Option<String>,
}

/// A newly created secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub secret: String,
}

const STREAM_COLUMNS: &str = "s.id, s.tenant_id, s.name, s.state, s.created_at, s.started_at, s.ended_at, \
     s.video_codec, s.width, s.height, s.fps, s.audio_codec, s.sample_rate, s.channels, \
     (SELECT COUNT(*) FROM segments g WHERE g.stream_id = s.id AND g.removed_at IS NULL) AS segment_count, \
     s.analysis_mode, s.analysis_every";

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Which engine is behind the pool: the few statements that cannot be written portably (row
/// locks) pick their SQL by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Opens (creating when needed) the store at `url` and applies migrations.
    /// `sqlite://PATH` (the file is created), `postgres://…`.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(parent) = Path::new(path.split('?').next().unwrap_or(path)).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Invalid(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            (format!("sqlite://{path}{sep}mode=rwc"), Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), Backend::Postgres)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let pool = match backend {
            Backend::Sqlite => {
                // WAL: readers never wait for the writer and a commit is one append to the log.
                // The mode is kept in the file; it is set once, on a connection of its own,
                // because switching needs the database to itself.
                use sqlx::{Connection, Executor};
                let mut first = sqlx::AnyConnection::connect(&url).await?;
                first.execute("PRAGMA journal_mode = WAL").await?;
                first.close().await?;
                // One writer at a time (SQLite's own lock; waiters use the busy timeout), many
                // readers: the pool is sized for the readers (the API, the analysers' lookups).
                // synchronous=NORMAL in WAL mode: a commit survives a crash of the process; a
                // power cut may lose the last commits but never corrupts the file.
                let readers = std::thread::available_parallelism()
                    .map(|n| n.get() as u32 * 2)
                    .unwrap_or(4)
                    .clamp(4, 16);
                AnyPoolOptions::new()
                    .max_connections(readers)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect(&url)
                    .await?
            }
        };
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, backend })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- tenants ----

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        validate_name("tenant", name)?;
        if self.tenant_by_name(name).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "tenant '{name}' already exists"
            )));
        }
        let tenant = Tenant {
            id: new_id("ten"),
            name: name.to_string(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(&self.pool)
            .await?;
        Ok(tenant)
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY created_at, name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    // ---- API keys ----

    /// Creates an API key with every right ([`Role::Admin`], as keys had before roles).
    pub async fn create_api_key(&self, tenant_id: &str, label: &str) -> Result<IssuedKey> {
        self.create_api_key_with_role(tenant_id, label, Role::Admin)
            .await
    }

    /// Creates an API key that may do what `role` allows.
    pub async fn create_api_key_with_role(
        &self,
        tenant_id: &str,
        label: &str,
        role: Role,
    ) -> Result<IssuedKey> {
        let secret = new_secret("mak");
        let id = new_id("key");
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, label, created_at, role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(hash_secret(&secret))
        .bind(&secret[..12])
        .bind(label)
        .bind(now_ms())
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(IssuedKey { id, secret })
    }

    /// The tenant that owns this API key, if the key exists and is not revoked.
    pub async fn authenticate_api_key(&self, secret: &str) -> Result<Option<Tenant>> {
        Ok(self.api_key_owner(secret).await?.map(|owner| owner.tenant))
    }

    // ---- streams and stream keys ----

    /// Creates a stream and its first stream key.
    pub async fn create_stream(&self, tenant_id: &str, name: &str) -> Result<(Stream, IssuedKey)> {
        validate_name("stream", name)?;
        let exists = sqlx::query("SELECT id FROM streams WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "stream '{name}' already exists"
            )));
        }
        let id = new_id("str");
        sqlx::query("INSERT INTO streams (id, tenant_id, name, state, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(tenant_id)
            .bind(name)
            .bind(StreamState::Offline.as_str())
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        let key = self.create_stream_key(tenant_id, &id).await?;
        let stream = self
            .stream(tenant_id, &id)
            .await?
            .ok_or(StoreError::NotFound("stream"))?;
        Ok((stream, key))
    }

    pub async fn create_stream_key(&self, tenant_id: &str, stream_id: &str) -> Result<IssuedKey> {
        let secret = new_secret("sk");
        let id = new_id("skey");
        sqlx::query(
            "INSERT INTO stream_keys (id, tenant_id, stream_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(stream_id)
        .bind(hash_secret(&secret))
        .bind(&secret[..10])
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(IssuedKey { id, secret })
    }

    /// The stream a stream key publishes to, if the key is valid.
    pub async fn stream_for_key(&self, secret: &str) -> Result<Option<Stream>> {
        let sql = format!(
            "SELECT {STREAM_COLUMNS} FROM stream_keys k JOIN streams s ON s.id = k.stream_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(hash_secret(secret))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stream_from_row).transpose()
    }

    pub async fn streams(&self, tenant_id: &str) -> Result<Vec<Stream>> {
        let sql = format!(
            "SELECT {STREAM_COLUMNS} FROM streams s WHERE s.tenant_id = $1 ORDER BY s.created_at, s.name"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stream_from_row).collect()
    }

    /// A stream of this tenant; another tenant's stream is `None`, like a missing one.
    pub async fn stream(&self, tenant_id: &str, stream_id: &str) -> Result<Option<Stream>> {
        let sql =
            format!("SELECT {STREAM_COLUMNS} FROM streams s WHERE s.tenant_id = $1 AND s.id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stream_from_row).transpose()
    }

    /// A stream by id, whatever its tenant (for the host's own loops, never for API callers).
    pub async fn stream_by_id(&self, stream_id: &str) -> Result<Option<Stream>> {
        let sql = format!("SELECT {STREAM_COLUMNS} FROM streams s WHERE s.id = $1");
        let row = sqlx::query(&sql)
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stream_from_row).transpose()
    }

    /// The tenant that owns a stream (for playback tokens, which name only the stream).
    pub async fn stream_tenant(&self, stream_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT tenant_id FROM streams WHERE id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    pub async fn mark_stream_live(&self, stream_id: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE streams SET state = $1, started_at = $2, ended_at = NULL WHERE id = $3",
        )
        .bind(StreamState::Live.as_str())
        .bind(at)
        .bind(stream_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_stream_offline(&self, stream_id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE streams SET state = $1, ended_at = $2 WHERE id = $3")
            .bind(StreamState::Offline.as_str())
            .bind(at)
            .bind(stream_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// After a crash, streams left "live" are not: mark them offline. Returns how many.
    pub async fn reset_live_streams(&self, at: i64) -> Result<u64> {
        let done = sqlx::query("UPDATE streams SET state = $1, ended_at = $2 WHERE state = $3")
            .bind(StreamState::Offline.as_str())
            .bind(at)
            .bind(StreamState::Live.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn set_stream_codecs(
        &self,
        stream_id: &str,
        video: Option<&VideoRecord>,
        audio: Option<&AudioRecord>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE streams SET video_codec = $1, width = $2, height = $3, fps = $4, \
             audio_codec = $5, sample_rate = $6, channels = $7 WHERE id = $8",
        )
        .bind(video.map(|v| v.codec.clone()))
        .bind(video.map(|v| v.width as i64))
        .bind(video.map(|v| v.height as i64))
        .bind(video.map(|v| v.fps))
        .bind(audio.map(|a| a.codec.clone()))
        .bind(audio.map(|a| a.sample_rate as i64))
        .bind(audio.map(|a| a.channels as i64))
        .bind(stream_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- segments ----

    pub async fn add_segment(&self, stream_id: &str, s: &SegmentRecord) -> Result<()> {
        // A restarted packager may reuse a sequence number whose file it replaced.
        sqlx::query(
            "INSERT INTO segments (stream_id, seq, duration_ms, program_date_time, bytes, discontinuity) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (stream_id, seq) DO UPDATE SET duration_ms = excluded.duration_ms, \
             program_date_time = excluded.program_date_time, bytes = excluded.bytes, \
             discontinuity = excluded.discontinuity, removed_at = NULL",
        )
        .bind(stream_id)
        .bind(s.seq)
        .bind(s.duration_ms)
        .bind(s.program_date_time)
        .bind(s.bytes)
        .bind(s.discontinuity as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets how a tenant's stream is analysed; `None` when the stream isn't the tenant's.
    pub async fn set_analysis(
        &self,
        tenant_id: &str,
        stream_id: &str,
        settings: AnalysisSettings,
    ) -> Result<Option<Stream>> {
        let done = sqlx::query(
            "UPDATE streams SET analysis_mode = $1, analysis_every = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(settings.mode.as_str())
        .bind(settings.every.max(1) as i64)
        .bind(tenant_id)
        .bind(stream_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.stream(tenant_id, stream_id).await
    }

    /// A stream's analysis settings (any tenant: for the host's own analysis loop).
    pub async fn analysis(&self, stream_id: &str) -> Result<Option<AnalysisSettings>> {
        let row = sqlx::query("SELECT analysis_mode, analysis_every FROM streams WHERE id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(AnalysisSettings {
                mode: r.try_get::<String, _>(0)?.parse()?,
                every: every_from(r.try_get(1)?),
            })
        })
        .transpose()
    }

    /// Sets the manual control of a tenant's stream's effects; `false` when the stream isn't
    /// the tenant's.
    pub async fn set_effects_control(
        &self,
        tenant_id: &str,
        stream_id: &str,
        control: &EffectsControl,
    ) -> Result<bool> {
        let json = serde_json::to_string(control)
            .map_err(|e| StoreError::Invalid(format!("effects control: {e}")))?;
        let done =
            sqlx::query("UPDATE streams SET effects_control = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(json)
                .bind(tenant_id)
                .bind(stream_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The manual control of a stream's effects (any tenant: for the host's own analysis;
    /// all `auto` for a stream that is not there). A value this version cannot read is `auto`.
    pub async fn effects_control(&self, stream_id: &str) -> Result<EffectsControl> {
        let row = sqlx::query("SELECT effects_control FROM streams WHERE id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(EffectsControl::default());
        };
        let text: String = row.try_get(0)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    // ---- batch analysis queue ----

    /// Queues a closed segment for batch analysis if its stream is in batch mode and fewer than
    /// `limit` of the stream's jobs are waiting. Returns whether it was queued; `Ok(false)` with
    /// the stream in batch mode means the queue was full (the caller counts it).
    pub async fn queue_batch_segment(
        &self,
        stream_id: &str,
        segment_seq: i64,
        limit: i64,
        at: i64,
    ) -> Result<bool> {
        self.queue_batch_segment_on(None, stream_id, segment_seq, limit, at)
            .await
    }

    /// [`Store::queue_batch_segment`] for a segment only `host` can read (it is on that host's
    /// disk): only that host's worker claims the job. `None`: any host can.
    pub async fn queue_batch_segment_on(
        &self,
        host: Option<&str>,
        stream_id: &str,
        segment_seq: i64,
        limit: i64,
        at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO analysis_jobs (stream_id, segment_seq, every, state, queued_at, host) \
             SELECT s.id, $2, s.analysis_every, 'queued', $3, $5 FROM streams s \
             WHERE s.id = $1 AND s.analysis_mode = 'batch' \
             AND (SELECT COUNT(*) FROM analysis_jobs j WHERE j.stream_id = $1 AND j.state = 'queued') < $4 \
             ON CONFLICT (stream_id, segment_seq) DO UPDATE SET every = excluded.every, state = 'queued', \
             queued_at = excluded.queued_at, finished_at = NULL, frames = NULL, error = NULL, attempts = 0, \
             host = excluded.host, lease_owner = NULL, leased_until = NULL",
        )
        .bind(stream_id)
        .bind(segment_seq)
        .bind(at)
        .bind(limit)
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims the oldest claimable job for `host`'s worker, atomically, so two hosts never run
    /// the same job: a queued job that `host` can read, not leased or with its lease run out (its
    /// worker crashed or hung). The claim counts one more attempt and leases the job to `host`
    /// until `at + lease_ms`; the worker renews the lease while it runs the job
    /// ([`Store::renew_batch_lease`]). A job claimed more than `max_attempts` times without an
    /// outcome is marked failed instead (`JobStart::GaveUp`). `None`: nothing to claim now.
    ///
    /// PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED` (concurrent claims take different
    /// jobs instead of waiting for each other); SQLite has one writer at a time, so its single
    /// `UPDATE … RETURNING` statement is atomic by itself.
    pub async fn claim_batch_job(
        &self,
        host: &str,
        lease_ms: i64,
        max_attempts: i64,
        at: i64,
    ) -> Result<Option<(BatchJob, JobStart)>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE analysis_jobs SET lease_owner = $1, leased_until = $2, attempts = attempts + 1, \
             started_at = $3 WHERE (stream_id, segment_seq) IN (SELECT stream_id, segment_seq FROM analysis_jobs \
             WHERE state = 'queued' AND (host IS NULL OR host = $1) \
             AND (leased_until IS NULL OR leased_until <= $3) \
             ORDER BY queued_at, stream_id, segment_seq LIMIT 1{lock}) \
             RETURNING stream_id, segment_seq, every, queued_at, attempts"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(host)
            .bind(at.saturating_add(lease_ms))
            .bind(at)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let job = batch_job_from(&row)?;
        let start = self
            .start_or_give_up(&job, row.try_get(4)?, max_attempts, at)
            .await?;
        Ok(Some((job, start)))
    }

    /// Counts one more attempt at the queued job `segment_seq` of `stream_id`, delivered by a work
    /// queue engine, and returns it: `Run` with the attempt, `GaveUp` (marked failed now) after
    /// `max_attempts` starts without an outcome, or `NotQueued` when it is done, failed or gone
    /// (a job delivered again after it was finished).
    pub async fn start_queued_batch_job(
        &self,
        stream_id: &str,
        segment_seq: i64,
        max_attempts: i64,
        at: i64,
    ) -> Result<(Option<BatchJob>, JobStart)> {
        let Some(row) = sqlx::query(
            "UPDATE analysis_jobs SET attempts = attempts + 1, started_at = $3 \
             WHERE stream_id = $1 AND segment_seq = $2 AND state = 'queued' \
             RETURNING stream_id, segment_seq, every, queued_at, attempts",
        )
        .bind(stream_id)
        .bind(segment_seq)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok((None, JobStart::NotQueued));
        };
        let job = batch_job_from(&row)?;
        let start = self
            .start_or_give_up(&job, row.try_get(4)?, max_attempts, at)
            .await?;
        Ok((Some(job), start))
    }

    /// A job's `attempt`th start: run it, or mark it failed after `max_attempts` starts that
    /// each stopped the worker.
    async fn start_or_give_up(
        &self,
        job: &BatchJob,
        attempt: i64,
        max_attempts: i64,
        at: i64,
    ) -> Result<JobStart> {
        if attempt > max_attempts {
            let reason =
                format!("given up after {max_attempts} attempts that each stopped the worker");
            self.finish_batch_job(job, Err(reason), at).await?;
            return Ok(JobStart::GaveUp);
        }
        Ok(JobStart::Run { attempt })
    }

    /// Takes back the attempt counted for a queued job that was stopped by a shutdown, not by
    /// the job itself.
    pub async fn refund_batch_attempt(&self, job: &BatchJob) -> Result<()> {
        sqlx::query(
            "UPDATE analysis_jobs SET attempts = attempts - 1 \
             WHERE stream_id = $1 AND segment_seq = $2 AND state = 'queued' AND attempts > 0",
        )
        .bind(&job.stream_id)
        .bind(job.segment_seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a queued job reached the work queue engine.
    pub async fn mark_batch_job_pushed(&self, job: &BatchJob, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE analysis_jobs SET pushed_at = $1 WHERE stream_id = $2 AND segment_seq = $3",
        )
        .bind(at)
        .bind(&job.stream_id)
        .bind(job.segment_seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets that queued jobs reached the work queue engine (it was found empty: made anew, or
    /// it lost its data), so they are pushed again; how many.
    pub async fn forget_pushed_batch_jobs(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE analysis_jobs SET pushed_at = NULL WHERE state = 'queued' AND pushed_at IS NOT NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Queued jobs that never reached the work queue engine, oldest first.
    pub async fn unpushed_batch_jobs(&self, limit: i64) -> Result<Vec<BatchJob>> {
        self.queued_jobs(limit, true).await
    }

    /// Extends `host`'s lease on a job it runs to `until`; `false` when the lease is no longer
    /// its own (it ran out and another worker claimed the job, or the job was finished or
    /// re-queued): the worker then stops the job.
    pub async fn renew_batch_lease(&self, job: &BatchJob, host: &str, until: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE analysis_jobs SET leased_until = $1 \
             WHERE stream_id = $2 AND segment_seq = $3 AND state = 'queued' AND lease_owner = $4",
        )
        .bind(until)
        .bind(&job.stream_id)
        .bind(job.segment_seq)
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Hands a job `host` holds back to the queue, claimable again from `retry_at` (Unix ms; 0
    /// at once). `refund`: the attempt does not count (the worker stopped for a shutdown, not
    /// because of the job).
    pub async fn release_batch_job(
        &self,
        job: &BatchJob,
        host: &str,
        refund: bool,
        retry_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE analysis_jobs SET lease_owner = NULL, leased_until = $1, \
             attempts = CASE WHEN attempts > 0 THEN attempts - $2 ELSE 0 END \
             WHERE stream_id = $3 AND segment_seq = $4 AND state = 'queued' AND lease_owner = $5",
        )
        .bind(retry_at)
        .bind(refund as i64)
        .bind(&job.stream_id)
        .bind(job.segment_seq)
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Frees every lease `host` holds, at its start: those jobs were running when it stopped
    /// without finishing them (a crash), and it can run them again now instead of waiting for
    /// the leases to run out. Their attempts still count.
    pub async fn release_batch_leases(&self, host: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE analysis_jobs SET lease_owner = NULL, leased_until = NULL \
             WHERE lease_owner = $1 AND state = 'queued'",
        )
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The oldest queued jobs, across streams.
    pub async fn queued_batch_jobs(&self, limit: i64) -> Result<Vec<BatchJob>> {
        self.queued_jobs(limit, false).await
    }

    /// The oldest queued jobs (`unpushed`: only those not yet pushed to a work queue engine).
    async fn queued_jobs(&self, limit: i64, unpushed: bool) -> Result<Vec<BatchJob>> {
        let rows = sqlx::query(
            "SELECT stream_id, segment_seq, every, queued_at FROM analysis_jobs \
             WHERE state = 'queued' AND ($2 = 0 OR pushed_at IS NULL) \
             ORDER BY queued_at, stream_id, segment_seq LIMIT $1",
        )
        .bind(limit)
        .bind(unpushed as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_job_from).collect()
    }

    /// Counts one more attempt at a queued job before the worker runs it. A job started
    /// `max_attempts` times already without an outcome (each attempt stopped the worker: a panic,
    /// a crash of the process) is marked failed instead.
    pub async fn start_batch_job(
        &self,
        job: &BatchJob,
        max_attempts: i64,
        at: i64,
    ) -> Result<JobStart> {
        let (_, start) = self
            .start_queued_batch_job(&job.stream_id, job.segment_seq, max_attempts, at)
            .await?;
        Ok(start)
    }

    /// Records a job's outcome: the frames analysed, or why it failed.
    pub async fn finish_batch_job(
        &self,
        job: &BatchJob,
        outcome: std::result::Result<u64, String>,
        at: i64,
    ) -> Result<()> {
        let (state, frames, error) = match outcome {
            Ok(frames) => ("done", Some(frames as i64), None),
            Err(e) => ("failed", None, Some(e)),
        };
        sqlx::query(
            "UPDATE analysis_jobs SET state = $1, frames = $2, error = $3, finished_at = $4, \
             lease_owner = NULL, leased_until = NULL WHERE stream_id = $5 AND segment_seq = $6",
        )
        .bind(state)
        .bind(frames)
        .bind(error)
        .bind(at)
        .bind(&job.stream_id)
        .bind(job.segment_seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs per state, for `/metrics` (`stream_id` narrows it to one stream).
    pub async fn batch_queue_depth(&self, stream_id: Option<&str>) -> Result<BatchQueueDepth> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM analysis_jobs WHERE ($1 IS NULL OR stream_id = $1) GROUP BY state",
        )
        .bind(stream_id)
        .fetch_all(&self.pool)
        .await?;
        let mut depth = BatchQueueDepth::default();
        for r in rows {
            let n: i64 = r.try_get(1)?;
            match r.try_get::<String, _>(0)?.as_str() {
                "queued" => depth.queued = n,
                "done" => depth.done = n,
                _ => depth.failed += n,
            }
        }
        Ok(depth)
    }

    pub async fn mark_segments_removed(
        &self,
        stream_id: &str,
        seqs: &[u64],
        at: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for seq in seqs {
            sqlx::query("UPDATE segments SET removed_at = $1 WHERE stream_id = $2 AND seq = $3")
                .bind(at)
                .bind(stream_id)
                .bind(*seq as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When the publish session that `segment_seq` belongs to began (Unix ms): the
    /// PROGRAM-DATE-TIME of the session's first segment (the last discontinuity at or before
    /// it, or the stream's first segment); 0 when the store has no such segment. The same answer
    /// every time, so a batch job run again names its frames as the first run did.
    pub async fn segment_session(&self, stream_id: &str, segment_seq: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT program_date_time FROM segments WHERE stream_id = $1 AND seq <= $2 \
             AND (discontinuity <> 0 OR seq = (SELECT MIN(seq) FROM segments WHERE stream_id = $1)) \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(stream_id)
        .bind(segment_seq)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Segments still on disk, oldest first.
    pub async fn segments(&self, stream_id: &str) -> Result<Vec<SegmentRecord>> {
        let rows = sqlx::query(
            "SELECT seq, duration_ms, program_date_time, bytes, discontinuity FROM segments \
             WHERE stream_id = $1 AND removed_at IS NULL ORDER BY seq",
        )
        .bind(stream_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(segment_record).collect()
    }

    // ---- detections ----

    /// Stores a frame's detections in one transaction (ids are filled in).
    pub async fn add_detections(&self, detections: &mut [DetectionRecord]) -> Result<()> {
        if detections.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for d in detections.iter_mut() {
            d.id = insert_detection(
                &mut tx,
                &d.stream_id,
                0,
                d.seq,
                d.pts_ms,
                d.wallclock,
                &d.detection,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores an analysed frame's results, per component at most once: a component's results
    /// for a frame that are stored already (`(stream, session, seq, component)` is the key) are
    /// left as they are, so a write retried after a commit whose reply was lost, or a batch job
    /// run again after a crash, never duplicates detections. One transaction: all or nothing.
    pub async fn store_frame_results(&self, frame: &FrameResults) -> Result<StoredFrame> {
        let mut components = frame.components.clone();
        for d in &frame.detections {
            if !components.contains(&d.component) {
                components.push(d.component.clone());
            }
        }
        let mut stored = StoredFrame::default();
        let mut tx = self.pool.begin().await?;
        for component in &components {
            let count = frame
                .detections
                .iter()
                .filter(|d| &d.component == component)
                .count();
            let marked = sqlx::query(
                "INSERT INTO frame_results (stream_id, session, seq, component, pts_ms, wallclock, detections) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (stream_id, session, seq, component) DO NOTHING",
            )
            .bind(&frame.stream_id)
            .bind(frame.session)
            .bind(frame.seq)
            .bind(component)
            .bind(frame.pts_ms)
            .bind(frame.wallclock)
            .bind(count as i64)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 0 {
                stored.already_stored += 1;
                continue;
            }
            for d in frame
                .detections
                .iter()
                .filter(|d| &d.component == component)
            {
                insert_detection(
                    &mut tx,
                    &frame.stream_id,
                    frame.session,
                    frame.seq,
                    frame.pts_ms,
                    frame.wallclock,
                    d,
                )
                .await?;
                stored.detections += 1;
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Frames of a stream whose results are stored (each counted once, whatever the number of
    /// components).
    pub async fn stored_frames(&self, stream_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT DISTINCT session, seq FROM frame_results WHERE stream_id = $1) f",
        )
        .bind(stream_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Detections of a stream with `from <= wallclock < to` (Unix ms), oldest first, at most
    /// `limit`, continuing after the `after` cursor.
    pub async fn detections(
        &self,
        stream_id: &str,
        from: i64,
        to: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<DetectionPage> {
        let limit = limit.clamp(1, 1000) as i64;
        let rows = sqlx::query(
            "SELECT id, stream_id, seq, pts_ms, wallclock, label, score, x, y, w, h, component FROM detections \
             WHERE stream_id = $1 AND wallclock >= $2 AND wallclock < $3 AND id > $4 ORDER BY id LIMIT $5",
        )
        .bind(stream_id)
        .bind(from)
        .bind(to)
        .bind(after.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let (detections, next) = one_page(&rows, limit, detection_from_row, |d| &d.id)?;
        Ok(DetectionPage { detections, next })
    }

    /// Detections of frames after `after_seq`, in frame order (for viewers resuming with
    /// `?since=SEQ`); at most `limit` rows, whole frames only unless one frame alone exceeds it.
    pub async fn detections_after_seq(
        &self,
        stream_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<DetectionRecord>> {
        let limit = limit.clamp(1, 10_000) as i64;
        let rows = sqlx::query(
            "SELECT id, stream_id, seq, pts_ms, wallclock, label, score, x, y, w, h, component FROM detections \
             WHERE stream_id = $1 AND seq > $2 ORDER BY seq, id LIMIT $3",
        )
        .bind(stream_id)
        .bind(after_seq)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut detections = rows
            .iter()
            .map(detection_from_row)
            .collect::<Result<Vec<_>>>()?;
        if detections.len() as i64 > limit {
            // Drop the last, possibly partial, frame so the caller can continue after it.
            let last = detections[limit as usize].seq;
            detections.truncate(limit as usize);
            if detections.first().is_some_and(|d| d.seq != last) {
                detections.retain(|d| d.seq != last);
            }
        }
        Ok(detections)
    }

    /// Deletes detections analysed before `cutoff` (Unix ms); returns how many.
    pub async fn delete_detections_before(&self, cutoff: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM detections WHERE wallclock < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM frame_results WHERE wallclock < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // ---- settings ----

    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// Stores `value` unless the setting exists; returns the value in force.
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.setting(name)
            .await?
            .ok_or(StoreError::NotFound("setting"))
    }
}

fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        // The name itself is not repeated: it is the caller's input, of any size.
        Err(StoreError::Invalid(format!(
            "{what} name must be 1-64 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

fn tenant_from_row(r: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        created_at: r.try_get(2)?,
    })
}

/// A stored `every` (BIGINT) as the frame step it means: at least 1.
fn every_from(stored: i64) -> u32 {
    stored.clamp(1, u32::MAX as i64) as u32
}

/// Inserts one detection of a frame, under a time-ordered id (the wall clock first, so paging by
/// id follows time), which it returns.
async fn insert_detection(
    conn: &mut sqlx::AnyConnection,
    stream_id: &str,
    session: i64,
    seq: i64,
    pts_ms: i64,
    wallclock: i64,
    d: &bus::Detection,
) -> Result<String> {
    let id = format!("det_{:013}_{}", wallclock.max(0), &new_id("x")[2..]);
    sqlx::query(
        "INSERT INTO detections (id, stream_id, session, seq, pts_ms, wallclock, label, score, x, y, w, h, component) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&id)
    .bind(stream_id)
    .bind(session)
    .bind(seq)
    .bind(pts_ms)
    .bind(wallclock)
    .bind(&d.label)
    .bind(f64::from(d.score))
    .bind(f64::from(d.bbox[0]))
    .bind(f64::from(d.bbox[1]))
    .bind(f64::from(d.bbox[2]))
    .bind(f64::from(d.bbox[3]))
    .bind(&d.component)
    .execute(conn)
    .await?;
    Ok(id)
}

fn detection_from_row(r: &AnyRow) -> Result<DetectionRecord> {
    // Stored as REAL (f64): read back as the f32 analysis produced.
    let real = |i: usize| r.try_get::<f64, _>(i).map(|v| v as f32);
    Ok(DetectionRecord {
        id: r.try_get(0)?,
        stream_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        pts_ms: r.try_get(3)?,
        wallclock: r.try_get(4)?,
        detection: bus::Detection {
            label: r.try_get(5)?,
            score: real(6)?,
            bbox: [real(7)?, real(8)?, real(9)?, real(10)?],
            component: r.try_get(11)?,
        },
    })
}

/// A row of `seq, duration_ms, program_date_time, bytes, discontinuity` from `segments`.
pub(crate) fn segment_record(r: &AnyRow) -> Result<SegmentRecord> {
    Ok(SegmentRecord {
        seq: r.try_get(0)?,
        duration_ms: r.try_get(1)?,
        program_date_time: r.try_get(2)?,
        bytes: r.try_get(3)?,
        discontinuity: r.try_get::<i64, _>(4)? != 0,
    })
}

fn stream_from_row(r: &AnyRow) -> Result<Stream> {
    let state: String = r.try_get(3)?;
    let video = match r.try_get::<Option<String>, _>(7)? {
        Some(codec) => Some(VideoRecord {
            codec,
            width: r.try_get::<Option<i64>, _>(8)?.unwrap_or(0) as u32,
            height: r.try_get::<Option<i64>, _>(9)?.unwrap_or(0) as u32,
            fps: r.try_get::<Option<f64>, _>(10)?.unwrap_or(0.0),
        }),
        None => None,
    };
    let audio = match r.try_get::<Option<String>, _>(11)? {
        Some(codec) => Some(AudioRecord {
            codec,
            sample_rate: r.try_get::<Option<i64>, _>(12)?.unwrap_or(0) as u32,
            channels: r.try_get::<Option<i64>, _>(13)?.unwrap_or(0) as u32,
        }),
        None => None,
    };
    Ok(Stream {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        name: r.try_get(2)?,
        state: state.parse()?,
        created_at: r.try_get(4)?,
        started_at: r.try_get(5)?,
        ended_at: r.try_get(6)?,
        video,
        audio,
        segments: r.try_get(14)?,
        analysis: AnalysisSettings {
            mode: r.try_get::<String, _>(15)?.parse()?,
            every: every_from(r.try_get(16)?),
        },
    })
}

#[cfg(test)]
mod tests;
