//! Configuration: defaults ← `--config FILE` (TOML) ← environment (`MEDIA_ANALYZER_*`) ← flags.
//! Validated once at start-up; an error names the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Settings that may appear in the config file. Every field is optional there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub rtmp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub store: Option<String>,
    pub dashboard: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub analysis: Option<Switch>,
    pub components: Option<PathBuf>,
    pub accelerator: Option<inference::Accelerator>,
    pub inference_sessions: Option<usize>,
    /// The effects rendition of streams with an effects stage (default on).
    pub effects_rendition: Option<Switch>,
    /// Where effects are rendered: auto, gpu, software or cpu.
    pub effects_device: Option<String>,
    /// The effects rendition's H.264 encoder: auto, x264 or nvenc.
    pub effects_encoder: Option<String>,
    /// What the effects rendition renders when a frame's analysis stalls: auto, carry or
    /// blur-frame.
    pub effects_on_stall: Option<String>,
    pub bus: Option<String>,
    pub role: Option<Role>,
    pub segments: Option<String>,
    /// Where closed segments and brand reports are archived (see `--archive`).
    pub archive: Option<String>,
    /// What is archived: `segments`, `reports` or both (default both).
    pub archive_policy: Option<String>,
    /// Stored detections older than this many days are deleted (default 30).
    pub detections_retain_days: Option<f64>,
    /// Playback tokens (HLS and event sockets) are valid this many seconds (default 600).
    pub playback_token_seconds: Option<u64>,
    /// Webhooks may also reach this host and private networks (default off).
    pub allow_private_webhooks: Option<bool>,
    #[serde(default)]
    pub hls: HlsFileConfig,
    #[serde(default)]
    pub ingest: IngestFileConfig,
    #[serde(default)]
    pub http_limits: HttpLimitsFileConfig,
}

/// `[http_limits]`: what one HTTP client may ask of the server (defaults in `api::HttpLimits`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimitsFileConfig {
    pub header_read_timeout_seconds: Option<f64>,
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub api_key_requests_per_minute: Option<u32>,
    pub auth_failures_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsFileConfig {
    pub segment_seconds: Option<f64>,
    pub playlist_segments: Option<usize>,
    pub retain_segments: Option<usize>,
    pub retain_hours: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestFileConfig {
    pub app: Option<String>,
    pub max_pending_connections: Option<usize>,
    pub max_pending_per_ip: Option<usize>,
    pub connections_per_second_per_ip: Option<f64>,
    pub connection_burst_per_ip: Option<f64>,
    pub max_media_message_bytes: Option<usize>,
    pub max_publishers: Option<usize>,
    pub handshake_timeout_seconds: Option<f64>,
    pub idle_timeout_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
    /// Cloud Logging's fields (`severity`, `message`, `logging.googleapis.com/trace`, …).
    Gcp,
}

/// The command-line and environment overrides of `serve`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// RTMP listen address.
    #[arg(long, env = "MEDIA_ANALYZER_RTMP", value_name = "ADDR")]
    pub rtmp: Option<SocketAddr>,
    /// HTTP listen address (API, HLS, dashboard).
    #[arg(long, env = "MEDIA_ANALYZER_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Data directory: embedded database, HLS segments, uploaded components.
    #[arg(long, env = "MEDIA_ANALYZER_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Store URL: sqlite://PATH (default: DATA/media-analyzer.db) or postgres://…
    #[arg(long, env = "MEDIA_ANALYZER_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// TOML config file.
    #[arg(long, env = "MEDIA_ANALYZER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The built dashboard directory (default: frontend/dist/media-analyzer/browser next to
    /// the working directory or the binary's checkout).
    #[arg(long, env = "MEDIA_ANALYZER_DASHBOARD", value_name = "DIR")]
    pub dashboard: Option<PathBuf>,
    /// HLS target segment duration in seconds.
    #[arg(long, env = "MEDIA_ANALYZER_SEGMENT_SECONDS", value_name = "SECONDS")]
    pub segment_seconds: Option<f64>,
    /// Live analysis with the bundled components: on (default) or off.
    #[arg(long, env = "MEDIA_ANALYZER_ANALYSIS", value_name = "on|off")]
    pub analysis: Option<Switch>,
    /// Folder with the built components (default: next to this binary's target folder).
    #[arg(long, env = "MEDIA_ANALYZER_COMPONENTS", value_name = "DIR")]
    pub components: Option<PathBuf>,
    /// Where models run: auto (TensorRT/CUDA when the ONNX Runtime library has them, else the
    /// CPU), cpu, cuda or tensorrt (an error when unavailable).
    #[arg(
        long,
        env = "MEDIA_ANALYZER_ACCELERATOR",
        value_name = "auto|cpu|cuda|tensorrt"
    )]
    pub accelerator: Option<inference::Accelerator>,
    /// Sessions per model, each on its own thread, so this many frames can be in a model at once
    /// (default: one per CPU core, at most 4). Each session holds its own copy of the weights.
    #[arg(long, env = "MEDIA_ANALYZER_INFERENCE_SESSIONS", value_name = "N")]
    pub inference_sessions: Option<usize>,
    /// The effects rendition (`/hls/{id}/effects/index.m3u8`) of every stream whose pipeline has
    /// an effects stage: on (default) or off.
    #[arg(long, env = "MEDIA_ANALYZER_EFFECTS_RENDITION", value_name = "on|off")]
    pub effects_rendition: Option<Switch>,
    /// Where the effects rendition renders: auto (a hardware GPU, else the CPU), gpu, software
    /// (Mesa's lavapipe) or cpu.
    #[arg(
        long,
        env = "MEDIA_ANALYZER_EFFECTS_DEVICE",
        value_name = "auto|gpu|software|cpu"
    )]
    pub effects_device: Option<String>,
    /// The effects rendition's encoder: auto (NVENC when it opens, else libx264), x264 or nvenc.
    #[arg(
        long,
        env = "MEDIA_ANALYZER_EFFECTS_ENCODER",
        value_name = "auto|x264|nvenc"
    )]
    pub effects_encoder: Option<String>,
    /// When the effects rendition waited 3 s in vain for a frame's analysis (analysis behind or
    /// stopped, or an effect selector failing on every frame): blur-frame (fail closed: the
    /// whole frame is blurred until analysis catches up), carry (the last analysed effects carry
    /// forward) or auto (the default: blur-frame on streams whose effects blur faces, with the
    /// bundled privacy-blur; carry on the others).
    #[arg(
        long,
        env = "MEDIA_ANALYZER_EFFECTS_ON_STALL",
        value_name = "auto|carry|blur-frame"
    )]
    pub effects_on_stall: Option<String>,
    /// Event bus: memory (default, in-process), redis://HOST:PORT, or pubsub://PROJECT[/PREFIX]
    /// (Google Cloud Pub/Sub; the emulator when PUBSUB_EMULATOR_HOST is set).
    #[arg(long, env = "MEDIA_ANALYZER_BUS", value_name = "URL")]
    pub bus: Option<String>,
    /// What this host does: all (default); ingest (RTMP, HLS packaging, analysis; publishes to
    /// the bus); api (HTTP API, HLS delivery, WebSocket viewers fed by the bus); analyze (batch
    /// analysis only: takes jobs from the work queue of a Redis or Pub/Sub bus). Hosts of
    /// different roles meet only through the bus, the store and the segment store.
    #[arg(
        long,
        env = "MEDIA_ANALYZER_ROLE",
        value_name = "all|ingest|api|analyze"
    )]
    pub role: Option<Role>,
    /// Where batch workers read segments: hls (default: the HLS folder, on this host or a shared
    /// volume), gs://BUCKET[/PREFIX] (Cloud Storage; STORAGE_EMULATOR_HOST selects an emulator)
    /// or file:///DIR. Used with a Redis or Pub/Sub bus, whose workers may run on other hosts.
    #[arg(long, env = "MEDIA_ANALYZER_SEGMENTS", value_name = "URL")]
    pub segments: Option<String>,
    /// Archive closed segments, and each stream run's playlist and brand report, named
    /// TENANT/STREAM/seg-N.ts, TENANT/STREAM/run-WENT_LIVE.m3u8 and
    /// TENANT/STREAM/brand-report-WENT_LIVE.json, to
    /// gs://BUCKET[/PREFIX] (Cloud Storage; STORAGE_EMULATOR_HOST selects an emulator) or
    /// file:///DIR. Queued in the store and held against HLS retention until stored, so an
    /// archive outage or a restart loses nothing. Off by default; ingest hosts only.
    #[arg(long, env = "MEDIA_ANALYZER_ARCHIVE", value_name = "URL")]
    pub archive: Option<String>,
    /// What --archive keeps: segments (with the runs' playlists), reports, or segments,reports
    /// (the default).
    #[arg(
        long,
        env = "MEDIA_ANALYZER_ARCHIVE_POLICY",
        value_name = "segments,reports"
    )]
    pub archive_policy: Option<String>,
    /// This host's name among the hosts sharing a store and bus (batch leases, work queue
    /// consumer): 1–64 of A–Z a–z 0–9 . _ -, e.g. the pod's name. Default: a random id kept in
    /// DATA/host-id.
    #[arg(long, env = "MEDIA_ANALYZER_HOST_ID", value_name = "NAME")]
    pub host_id: Option<String>,
    /// Let webhooks reach this host and private networks (loopback, 10/8, 172.16/12,
    /// 192.168/16, fc00::/7): for a receiver on the same machine or network. Off by default:
    /// tenants' webhooks reach public addresses only.
    #[arg(long, env = "MEDIA_ANALYZER_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    Ingest,
    Api,
    Analyze,
}

impl Role {
    /// Accepts RTMP and packages HLS.
    pub fn ingests(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }

    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Loads the components and models, and runs a batch worker.
    pub fn analyses(self) -> bool {
        self != Role::Api
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

/// Validated settings for one `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub data: PathBuf,
    pub store: String,
    pub dashboard: Option<PathBuf>,
    pub log_format: LogFormat,
    pub hls: hls::HlsConfig,
    pub ingest: rtmp::ServerConfig,
    /// Live analysis of every stream with the bundled components.
    pub analysis: bool,
    pub components: PathBuf,
    pub accelerator: inference::Accelerator,
    /// Sessions per model, and analysers per live stream.
    pub inference_sessions: usize,
    /// The effects rendition, when on.
    pub effects_rendition: Option<rendition::RenditionConfig>,
    pub bus: bus::BusConfig,
    pub role: Role,
    /// Where batch workers read segments ([`analysis::SegmentStore::open`]'s URL).
    pub segments: Option<String>,
    /// A Cloud Storage emulator for `segments` and `archive` (`STORAGE_EMULATOR_HOST`).
    pub storage_emulator: Option<String>,
    /// Where segments and brand reports are archived ([`catalog::ArchiveTarget::open`]'s URL),
    /// and what is.
    pub archive: Option<String>,
    pub archive_policy: catalog::ArchivePolicy,
    /// This host's name (`--host-id`); `None`: the one kept in the data folder.
    pub host_id: Option<String>,
    /// Stored detections are kept this long.
    pub detections_retention: Duration,
    /// How long a playback token is valid.
    pub playback_token_ttl: Duration,
    /// HTTP connection, size and rate limits.
    pub http_limits: api::HttpLimits,
    /// Which addresses webhooks may reach.
    pub webhook_policy: webhooks::AddressPolicy,
}

impl Config {
    pub fn load(args: &ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("in config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data = args
            .data
            .clone()
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("data"));
        let store =
            args.store.clone().or(file.store).unwrap_or_else(|| {
                format!("sqlite://{}", data.join("media-analyzer.db").display())
            });
        let segment_seconds = args
            .segment_seconds
            .or(file.hls.segment_seconds)
            .unwrap_or(2.0);
        if !(0.5..=30.0).contains(&segment_seconds) {
            bail!("hls.segment_seconds must be between 0.5 and 30, got {segment_seconds}");
        }
        let window = file.hls.playlist_segments.unwrap_or(6);
        if !(3..=100).contains(&window) {
            bail!("hls.playlist_segments must be between 3 and 100, got {window}");
        }
        let retain_hours = file.hls.retain_hours.unwrap_or(24.0);
        if retain_hours <= 0.0 || !retain_hours.is_finite() {
            bail!("hls.retain_hours must be positive, got {retain_hours}");
        }
        let playback_token_ttl = match file.playback_token_seconds {
            None => api::streams::PLAYBACK_TOKEN_TTL,
            Some(s @ 10..=86_400) => Duration::from_secs(s),
            Some(s) => bail!("playback_token_seconds must be between 10 and 86400, got {s}"),
        };
        let retain_days = file.detections_retain_days.unwrap_or(30.0);
        if retain_days <= 0.0 || !retain_days.is_finite() {
            bail!("detections_retain_days must be positive, got {retain_days}");
        }
        let ingest_defaults = rtmp::ServerConfig::default();
        let seconds =
            |field: &str, v: Option<f64>, default: Duration| -> anyhow::Result<Duration> {
                match v {
                    None => Ok(default),
                    Some(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
                    Some(s) => bail!("{field} must be a positive number of seconds, got {s}"),
                }
            };
        let positive = |field: &str, v: Option<f64>, default: f64| -> anyhow::Result<f64> {
            match v {
                None => Ok(default),
                Some(x) if x > 0.0 && x.is_finite() => Ok(x),
                Some(x) => bail!("{field} must be a positive number, got {x}"),
            }
        };
        let ingest = rtmp::ServerConfig {
            app: file.ingest.app.unwrap_or(ingest_defaults.app),
            max_pending: file
                .ingest
                .max_pending_connections
                .unwrap_or(ingest_defaults.max_pending),
            max_publishers: file
                .ingest
                .max_publishers
                .unwrap_or(ingest_defaults.max_publishers),
            handshake_timeout: seconds(
                "ingest.handshake_timeout_seconds",
                file.ingest.handshake_timeout_seconds,
                ingest_defaults.handshake_timeout,
            )?,
            idle_timeout: seconds(
                "ingest.idle_timeout_seconds",
                file.ingest.idle_timeout_seconds,
                ingest_defaults.idle_timeout,
            )?,
            read_buffer: ingest_defaults.read_buffer,
            max_pending_per_ip: file
                .ingest
                .max_pending_per_ip
                .unwrap_or(ingest_defaults.max_pending_per_ip),
            connections_per_second_per_ip: positive(
                "ingest.connections_per_second_per_ip",
                file.ingest.connections_per_second_per_ip,
                ingest_defaults.connections_per_second_per_ip,
            )?,
            connection_burst_per_ip: positive(
                "ingest.connection_burst_per_ip",
                file.ingest.connection_burst_per_ip,
                ingest_defaults.connection_burst_per_ip,
            )?,
            limits: match file.ingest.max_media_message_bytes {
                None => ingest_defaults.limits,
                Some(n) if (64 << 10..=16 << 20).contains(&n) => rtmp::SessionLimits {
                    publishing: rtmp::chunk::ChunkLimits {
                        max_media_bytes: n,
                        max_buffered_bytes: ingest_defaults
                            .limits
                            .publishing
                            .max_buffered_bytes
                            .max(2 * n),
                        ..ingest_defaults.limits.publishing
                    },
                    ..ingest_defaults.limits
                },
                Some(n) => bail!(
                    "ingest.max_media_message_bytes must be between 65536 and 16777216, got {n}"
                ),
            },
        };
        let http_defaults = api::HttpLimits::default();
        let l = &file.http_limits;
        let http_limits = api::HttpLimits {
            header_read_timeout: seconds(
                "http_limits.header_read_timeout_seconds",
                l.header_read_timeout_seconds,
                http_defaults.header_read_timeout,
            )?,
            max_connections: l.max_connections.unwrap_or(http_defaults.max_connections),
            max_header_bytes: l.max_header_bytes.unwrap_or(http_defaults.max_header_bytes),
            max_uri_bytes: l.max_uri_bytes.unwrap_or(http_defaults.max_uri_bytes),
            max_body_bytes: l.max_body_bytes.unwrap_or(http_defaults.max_body_bytes),
            api_key_requests_per_minute: l
                .api_key_requests_per_minute
                .unwrap_or(http_defaults.api_key_requests_per_minute),
            auth_failures_per_minute: l
                .auth_failures_per_minute
                .unwrap_or(http_defaults.auth_failures_per_minute),
        };
        http_limits
            .validate()
            .map_err(|e| anyhow::anyhow!("http_limits.{e}"))?;
        Ok(Self {
            http_limits,
            rtmp: args
                .rtmp
                .or(file.rtmp)
                .unwrap_or(([127, 0, 0, 1], 1935).into()),
            http: args
                .http
                .or(file.http)
                .unwrap_or(([127, 0, 0, 1], 8080).into()),
            hls: hls::HlsConfig {
                root: data.join("hls"),
                target_duration: Duration::from_secs_f64(segment_seconds),
                window,
                retain_segments: file.hls.retain_segments.unwrap_or(1800).max(window),
                retain_age: Duration::from_secs_f64(retain_hours * 3600.0),
                ..hls::HlsConfig::default()
            },
            dashboard: args
                .dashboard
                .clone()
                .or(file.dashboard)
                .or_else(default_dashboard),
            log_format: log_format.or(file.log_format).unwrap_or_default(),
            analysis: args.analysis.or(file.analysis).unwrap_or(Switch::On) == Switch::On,
            accelerator: args.accelerator.or(file.accelerator).unwrap_or_default(),
            inference_sessions: match args.inference_sessions.or(file.inference_sessions) {
                Some(0) => anyhow::bail!("--inference-sessions must be at least 1"),
                Some(n) => n,
                None => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(4),
            },
            effects_rendition: match args
                .effects_rendition
                .or(file.effects_rendition)
                .unwrap_or(Switch::On)
            {
                Switch::Off => None,
                Switch::On => Some(rendition::RenditionConfig {
                    root: data.join("hls"),
                    window,
                    target_duration_ms: (segment_seconds * 1000.0) as u64,
                    retain_segments: file.hls.retain_segments.unwrap_or(1800).max(window),
                    device: parsed(
                        &args.effects_device,
                        file.effects_device,
                        "auto",
                        "--effects-device",
                    )?,
                    encoder: parsed(
                        &args.effects_encoder,
                        file.effects_encoder,
                        "auto",
                        "--effects-encoder",
                    )?,
                    on_stall: parsed(
                        &args.effects_on_stall,
                        file.effects_on_stall,
                        "auto",
                        "--effects-on-stall",
                    )?,
                    ..rendition::RenditionConfig::default()
                }),
            },
            bus: args
                .bus
                .clone()
                .or(file.bus)
                .unwrap_or_else(|| "memory".into())
                .parse()
                .context("--bus")?,
            role: args.role.or(file.role).unwrap_or_default(),
            segments: args.segments.clone().or(file.segments),
            archive: args
                .archive
                .clone()
                .or(file.archive)
                .filter(|a| !a.is_empty()),
            archive_policy: match args.archive_policy.clone().or(file.archive_policy) {
                Some(text) => text
                    .parse()
                    .map_err(anyhow::Error::msg)
                    .context("--archive-policy")?,
                None => catalog::ArchivePolicy::default(),
            },
            storage_emulator: std::env::var("STORAGE_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty()),
            host_id: args
                .host_id
                .clone()
                .map(|id| {
                    let ok = (1..=64).contains(&id.len())
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                    match ok {
                        true => Ok(id),
                        false => Err(anyhow::anyhow!(
                            "--host-id '{}': 1 to 64 of A-Z a-z 0-9 . _ -",
                            id.escape_debug()
                        )),
                    }
                })
                .transpose()?,
            detections_retention: Duration::from_secs_f64(retain_days * 86_400.0),
            playback_token_ttl,
            webhook_policy: webhooks::AddressPolicy {
                allow_private: args.allow_private_webhooks
                    || file.allow_private_webhooks.unwrap_or(false),
            },
            components: args
                .components
                .clone()
                .or(file.components)
                .unwrap_or_else(analysis::default_components_dir),
            data,
            store,
            ingest,
        })
    }
}

const DASHBOARD_IN_CHECKOUT: &str = "frontend/dist/media-analyzer/browser";

/// The built dashboard in the working directory's checkout, or in the checkout the binary was
/// built from.
fn default_dashboard() -> Option<PathBuf> {
    let candidates = [
        Some(PathBuf::from(DASHBOARD_IN_CHECKOUT)),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(DASHBOARD_IN_CHECKOUT),
        ),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("index.html").is_file())
}

/// A text setting from its flag (or environment variable), else the file, else `default`,
/// parsed; an error names the flag.
fn parsed<T>(
    flag: &Option<String>,
    file: Option<String>,
    default: &str,
    name: &'static str,
) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
{
    flag.clone()
        .or(file)
        .as_deref()
        .unwrap_or(default)
        .parse()
        .map_err(anyhow::Error::msg)
        .context(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_outside_contract() {
        let c = Config::load(&ServeArgs::default(), None).unwrap();
        assert_eq!(c.rtmp.to_string(), "127.0.0.1:1935");
        assert_eq!(c.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data, PathBuf::from("data"));
        assert_eq!(c.store, "sqlite://data/media-analyzer.db");
        assert_eq!(c.hls.target_duration, Duration::from_secs(2));
        assert_eq!(c.http_limits, api::HttpLimits::default());
        assert_eq!(c.http_limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http_limits.max_connections, 1024);
        assert_eq!(c.http_limits.max_body_bytes, 1 << 20);
        assert_eq!(c.http_limits.auth_failures_per_minute, 10);
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "http = \"127.0.0.1:9000\"\nrtmp = \"127.0.0.1:1936\"\n[hls]\nsegment_seconds = 4\n\
             [http_limits]\nmax_connections = 64\nheader_read_timeout_seconds = 2.5\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            rtmp: Some("127.0.0.1:2000".parse().unwrap()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.http.port(), 9000);
        assert_eq!(c.rtmp.port(), 2000);
        assert_eq!(c.hls.target_duration, Duration::from_secs(4));
        assert_eq!(c.http_limits.max_connections, 64);
        assert_eq!(
            c.http_limits.header_read_timeout,
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn a_host_id_names_this_host_among_others_and_is_checked() {
        let args = |id: &str| ServeArgs {
            host_id: Some(id.to_string()),
            role: Some(Role::Analyze),
            segments: Some("gs://bucket/batch".into()),
            ..ServeArgs::default()
        };
        let c = Config::load(&args("analyze-7f9c-0"), None).unwrap();
        assert_eq!(c.host_id.as_deref(), Some("analyze-7f9c-0"));
        assert_eq!(c.role, Role::Analyze);
        assert_eq!(c.segments.as_deref(), Some("gs://bucket/batch"));
        for bad in ["", "a/b", "x y", &"h".repeat(65)] {
            let err = format!("{:#}", Config::load(&args(bad), None).unwrap_err());
            assert!(err.contains("--host-id"), "{err}");
        }
        assert!(!Role::Analyze.ingests() && !Role::Analyze.serves_api());
        assert!(Role::Analyze.analyses() && Role::Ingest.analyses() && !Role::Api.analyses());
    }

    #[test]
    fn unknown_or_invalid_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[hls]\nsegment_secs = 4\n").unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("segment_secs"), "{err}");
        std::fs::write(&path, "[hls]\nsegment_seconds = 100\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("hls.segment_seconds"), "{err}");
        std::fs::write(&path, "detections_retain_days = -1\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("detections_retain_days"), "{err}");
        std::fs::write(&path, "playback_token_seconds = 5\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("playback_token_seconds"), "{err}");
        std::fs::write(&path, "playback_token_seconds = 20\n").unwrap();
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.playback_token_ttl, Duration::from_secs(20));
        std::fs::write(&path, "[http_limits]\nmax_conections = 5\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("max_conections"), "{err}");
        std::fs::write(&path, "[http_limits]\nmax_connections = 0\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("http_limits.max_connections"), "{err}");
        std::fs::write(&path, "inference_sessions = 0\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("inference-sessions"), "{err}");
        std::fs::write(&path, "[ingest]\nmax_media_message_bytes = 1000\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(err.contains("ingest.max_media_message_bytes"), "{err}");
        std::fs::write(&path, "[ingest]\nconnections_per_second_per_ip = -2\n").unwrap();
        let err = format!("{:#}", Config::load(&args, None).unwrap_err());
        assert!(
            err.contains("ingest.connections_per_second_per_ip"),
            "{err}"
        );
    }

    #[test]
    fn ingest_limits_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[ingest]\nmax_pending_per_ip = 4\nconnections_per_second_per_ip = 2.5\n\
             connection_burst_per_ip = 8\nmax_media_message_bytes = 12582912\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let c = Config::load(&args, None).unwrap();
        assert_eq!(c.ingest.max_pending_per_ip, 4);
        assert_eq!(c.ingest.connections_per_second_per_ip, 2.5);
        assert_eq!(c.ingest.connection_burst_per_ip, 8.0);
        assert_eq!(c.ingest.limits.publishing.max_media_bytes, 12 << 20);
        assert_eq!(c.ingest.limits.publishing.max_buffered_bytes, 24 << 20);
        assert_eq!(
            c.ingest.limits.establishing.max_command_bytes,
            64 << 10,
            "commands stay small"
        );
    }

    #[test]
    fn inference_sessions_default_to_the_cores_up_to_four() {
        let c = Config::load(&ServeArgs::default(), None).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.inference_sessions, cores.min(4));
        let args = ServeArgs {
            inference_sessions: Some(3),
            ..ServeArgs::default()
        };
        assert_eq!(Config::load(&args, None).unwrap().inference_sessions, 3);
    }
}
