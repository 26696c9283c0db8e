//! `media-analyzer`: live video ingest (RTMP → HLS) and analysis.

use clap::{Parser, Subcommand};
use media_analyzer::{Config, LogFormat, ServeArgs, admin, component, first_start_banner};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "media-analyzer",
    version,
    about = "Live video ingest, HLS and analysis"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "MEDIA_ANALYZER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: RTMP ingest, HLS, API and dashboard.
    Serve(ServeArgs),
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Analyse a recording (file or HLS/HTTP URL) with the bundled detector components.
    Analyze {
        /// A video file, or an http(s) URL such as an HLS playlist.
        input: String,
        /// Comma-separated components: object-detector, face-detector, logo-matcher, brand-text,
        /// clip-brands
        /// (default: object-detector,face-detector; clip-brands needs
        /// `scripts/fetch-models --clip PATH`).
        #[arg(long, value_delimiter = ',')]
        components: Vec<String>,
        /// A detector component of your own (.wasm), checked as an upload would be; repeat for
        /// several. Without --components only these run.
        #[arg(long, value_name = "FILE")]
        wasm: Vec<std::path::PathBuf>,
        /// A setting for the --wasm components, NAME=VALUE (repeat for several).
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_setting)]
        config: Vec<(String, String)>,
        /// Look for these brands' logos: a folder of PNG, JPEG or SVG files, each named after its
        /// brand (`acme.svg`), or a sub-folder per brand holding its logos. Runs the logo matcher
        /// (alone unless --components names more) and prints each brand's screen time.
        #[arg(long, value_name = "DIR")]
        logos: Option<std::path::PathBuf>,
        /// Analyse every Nth frame.
        #[arg(long, default_value_t = 1)]
        every: u64,
        /// Write one JSON object per analysed frame to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Folder with the built components.
        #[arg(long, value_name = "DIR")]
        components_dir: Option<std::path::PathBuf>,
        /// Where models run: auto, cpu, cuda or tensorrt.
        #[arg(long, env = "MEDIA_ANALYZER_ACCELERATOR", default_value = "auto")]
        accelerator: inference::Accelerator,
    },
    /// Measure a capability against its baseline (numbers for docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Create, list and revoke API keys and stream keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Upload tenant components.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Compare our components with a cloud service on the same frames.
    Compare {
        #[command(subcommand)]
        with: CompareCommand,
    },
    /// Run a Spin application's Redis-triggered components (spin.toml) on this host's sandbox.
    Spin {
        #[command(subcommand)]
        command: SpinCommand,
    },
    /// Ask a running server whether it is ready (`/readyz`): exit 0 when it is, 1 with the reason
    /// when not. The container image's health check.
    Health {
        /// The server's HTTP address, as given to `serve --http` (a wildcard address is asked on
        /// loopback).
        #[arg(
            long,
            env = "MEDIA_ANALYZER_HTTP",
            default_value = "127.0.0.1:8080",
            value_name = "ADDR"
        )]
        http: std::net::SocketAddr,
        /// The path to ask.
        #[arg(long, default_value = "/readyz")]
        path: String,
        /// Give up after this many seconds (connecting, and again reading).
        #[arg(long, default_value_t = 3.0)]
        timeout_seconds: f64,
    },
}

#[derive(Debug, Subcommand)]
enum ComponentCommand {
    /// Upload FILE (a .wasm component) as the next version of NAME: the server checks it (a
    /// component for the world, importing only what the world allows, compiling in time) and
    /// answers with the version it stored.
    Push {
        file: std::path::PathBuf,
        /// The component's name in the tenant's namespace (lowercase letters, digits, '-').
        #[arg(long)]
        name: String,
        /// detector, trigger or effects.
        #[arg(long, default_value = "detector")]
        world: String,
        /// The server's base URL.
        #[arg(
            long,
            env = "MEDIA_ANALYZER_API",
            default_value = "http://127.0.0.1:8080"
        )]
        api: String,
        /// An admin API key of the tenant.
        #[arg(long, env = "MEDIA_ANALYZER_API_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Instead of a server: add it to the local data directory (--data) for this tenant.
        #[arg(long, conflicts_with = "key")]
        tenant: Option<String>,
        #[command(flatten)]
        args: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum CompareCommand {
    /// Google Cloud Vision (OBJECT_LOCALIZATION, LOGO_DETECTION) on frames sampled from FILE, beside
    /// our components on the same frames: agreement per label and brand, time and cost per 1,000
    /// frames. Needs Google credentials (Application Default Credentials) and the Vision API
    /// enabled; says what is missing otherwise.
    Vision {
        /// A video file, or an http(s) URL such as an HLS playlist.
        input: String,
        /// One frame every this many seconds.
        #[arg(long, default_value_t = 2.0)]
        every_seconds: f64,
        /// At most this many frames (each is one unit of each Vision feature).
        #[arg(long, default_value_t = 100)]
        frames: usize,
        /// Our components (default: object-detector,brand-text; with --logos the logo matcher too).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "object-detector,brand-text"
        )]
        components: Vec<String>,
        /// Reference logos for the logo matcher (as `analyze --logos`).
        #[arg(long, value_name = "DIR")]
        logos: Option<std::path::PathBuf>,
        /// Folder with the built components.
        #[arg(long, value_name = "DIR")]
        components_dir: Option<std::path::PathBuf>,
        /// An API-compatible server instead of https://vision.googleapis.com (no credentials).
        #[arg(long, env = "MEDIA_ANALYZER_VISION_ENDPOINT", value_name = "URL")]
        vision_endpoint: Option<String>,
        /// Vision's list price per 1,000 units (USD): OBJECT_LOCALIZATION,LOGO_DETECTION.
        #[arg(long, value_delimiter = ',', default_value = "2.25,1.50")]
        vision_prices: Vec<f64>,
        /// What a vCPU-hour costs where our analysis runs (USD; default: an e2-standard vCPU).
        #[arg(long, default_value_t = 0.0335)]
        cpu_hour_price: f64,
        /// Also write the comparison as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SpinCommand {
    /// Subscribe each `[[trigger.redis]]` to its channel and call its component per message, as
    /// `spin up` does (manifest version 2, Redis triggers, spin-sdk 5.x components).
    Up {
        /// The application manifest.
        #[arg(long = "from", short = 'f', default_value = "spin.toml")]
        manifest: std::path::PathBuf,
        /// An application variable, NAME=VALUE (repeat for several); also SPIN_VARIABLE_NAME.
        #[arg(long = "variable", value_name = "NAME=VALUE", value_parser = parse_setting)]
        variables: Vec<(String, String)>,
        /// A folder of built components: a component's `source` is taken from it by file name
        /// when it is there (default: the build's components folder).
        #[arg(long, env = "MEDIA_ANALYZER_COMPONENTS", value_name = "DIR")]
        components: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and its first API key.
    Create {
        name: String,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        args: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The detector component vs. calling ONNX Runtime directly, on the same frames.
    Analysis {
        #[arg(long, default_value_t = 300)]
        frames: usize,
        /// Folder with the built components (default: next to this binary's target folder).
        #[arg(long)]
        components: Option<std::path::PathBuf>,
    },
    /// The face detector: recall, false positives and time per frame on broadcast frames, photos
    /// with a face and photos without, close range vs. full range.
    Faces {
        /// Folder with the built components (default: next to this binary's target folder).
        #[arg(long)]
        components: Option<std::path::PathBuf>,
    },
    /// WebSocket fan-out: N viewers of one stream on a `serve --role api` child fed by the bus.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        viewers: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        bus: String,
    },
    /// Messages/s through each bus backend.
    Bus {
        #[arg(long, default_value_t = 20000)]
        messages: usize,
        /// Bus URLs (memory, redis://…, pubsub://…).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "memory,redis://127.0.0.1:6379"
        )]
        backends: Vec<String>,
    },
    /// Tenants with their own components on one host: compile and cache-hit cost, memory per
    /// tenant, instantiation per call, fairness of analysed frames across their streams.
    Tenants {
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Folder with the built components (default: next to this binary's target folder).
        #[arg(long)]
        components: Option<std::path::PathBuf>,
    },
    /// The logo matcher at 720p and 1080p with 1, 10 and 100 references, natively and through
    /// its component, beside the object detector on the same frames.
    Logos {
        /// Folder with the built components (default: next to this binary's target folder).
        #[arg(long)]
        components: Option<std::path::PathBuf>,
    },
    /// Alert latency: a logo first on screen on a live RTMP stream → its alert received by a
    /// webhook (p50/p99), beside the time one frame spends in analysis.
    Alerts {
        /// Seconds of stream to publish (the logo appears every 4 s).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Folder with the built components (default: next to this binary's target folder).
        #[arg(long)]
        components: Option<std::path::PathBuf>,
    },
    /// Segments through the archive (queued, held, uploaded, recorded) vs. the same bytes put
    /// straight to the target and copied on the local disk.
    Archive {
        /// gs://BUCKET[/PREFIX] (with STORAGE_EMULATOR_HOST for an emulator) or file:///DIR;
        /// default: a folder in the temporary directory.
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 300)]
        segments: usize,
        /// Bytes per segment: 2 s of 1080p30 at 6 Mbit/s by default.
        #[arg(long, default_value_t = 1_500_000)]
        segment_bytes: usize,
    },
    /// Shader effects (face blur, highlight, colour grade, all three) at 720p and 1080p on each
    /// renderer here: a hardware GPU, the software Vulkan device, the CPU implementation.
    Effects {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// The effects rendition's cost per stream (decode, four faces blurred, H.264 encode, mux)
    /// against the plain remux of the same packets, at 720p and 1080p.
    Rendition {
        /// Seconds of video per measurement.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Where effects render: auto, gpu, software or cpu.
        #[arg(long, default_value = "auto")]
        device: String,
        /// auto, x264 or nvenc.
        #[arg(long, default_value = "auto")]
        encoder: String,
    },
    /// clip-brands (tokenizer in the sandbox + one CLIP call) vs. the same work natively.
    Clip {
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// Folder with the built components (default: next to this binary's target folder).
        #[arg(long)]
        components: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create an API key for a tenant, or a stream key with --stream.
    Create {
        #[arg(long)]
        tenant: String,
        /// Create a stream key for this stream (created if it does not exist).
        #[arg(long)]
        stream: Option<String>,
        #[arg(long, default_value = "created by key create")]
        label: String,
        /// What an API key may do: admin, editor or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// List keys (never their secrets): id, kind, prefix, tenant, stream or label, state.
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// Only keys whose secret starts with this (e.g. `mak_1a2b`).
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Revoke an API key or a stream key: by id (`key_…`, `skey_…`, see `key list`) or by a
    /// prefix of its secret that only one key has. A revoked API key authenticates nothing from
    /// then on; a revoked stream key is refused at the next publish.
    Revoke {
        /// Key id, or a unique prefix of the secret (at least 8 characters).
        key: String,
        #[command(flatten)]
        args: ServeArgs,
    },
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Gcp => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(media_analyzer::gcp_log::GcpFormat::from_env())
            .init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = run(cli).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compare {
            with:
                CompareCommand::Vision {
                    input,
                    every_seconds,
                    frames,
                    components,
                    logos,
                    components_dir,
                    vision_endpoint,
                    vision_prices,
                    cpu_hour_price,
                    json,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let [objects, logos_price] = vision_prices[..] else {
                anyhow::bail!(
                    "--vision-prices takes two prices: OBJECT_LOCALIZATION,LOGO_DETECTION"
                );
            };
            let mut components = components;
            if logos.is_some() && !components.iter().any(|c| c == "logo-matcher") {
                components.push("logo-matcher".into());
            }
            let options = analysis::vision::CompareOptions {
                analyze: analysis::file::AnalyzeOptions {
                    input,
                    components,
                    wasm: Vec::new(),
                    config: Vec::new(),
                    logos,
                    every: 1,
                    json: None,
                    components_dir: analysis::components_dir(components_dir.as_deref()),
                    accelerator: inference::Accelerator::Auto,
                    progress: false,
                },
                every_seconds,
                max_frames: frames,
                endpoint: vision_endpoint,
                vision_prices: (objects, logos_price),
                cpu_hour_price,
            };
            let comparison = analysis::vision::compare(options).await?;
            println!("{}", comparison.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&comparison)?)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            Ok(())
        }
        Command::Spin {
            command:
                SpinCommand::Up {
                    manifest,
                    variables,
                    components,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            media_analyzer::spin::up(media_analyzer::spin::SpinUp {
                manifest,
                variables,
                components: Some(analysis::components_dir(components.as_deref())),
            })
            .await
        }
        Command::Health {
            http,
            path,
            timeout_seconds,
        } => {
            let timeout = std::time::Duration::try_from_secs_f64(timeout_seconds)
                .ok()
                .filter(|t| !t.is_zero() && t.as_secs() <= 60)
                .ok_or_else(|| anyhow::anyhow!("--timeout-seconds must be in (0, 60]"))?;
            let addr = media_analyzer::health::local_address(http).to_string();
            tokio::task::spawn_blocking(move || {
                media_analyzer::health::check(&addr, &path, timeout)
            })
            .await??;
            println!("ready");
            Ok(())
        }
        Command::Serve(args) => {
            let config = Config::load(&args, cli.log_format)?;
            init_logging(config.log_format);
            let app = config.ingest.app.clone();
            let running = media_analyzer::start(config).await?;
            println!("RTMP listening on {}", running.rtmp_url(&app));
            println!("HTTP listening on {}", running.http_url());
            if let Some(first) = &running.first_start {
                println!(
                    "{}",
                    first_start_banner(first, &running.rtmp_url(&app), &running.http_url())
                );
            }
            let token = running.shutdown_token();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("signal received");
                token.cancel();
            });
            running.wait().await
        }
        Command::Tenant {
            command: TenantCommand::Create { name, args },
        } => admin::tenant_create(&open_store(&args, cli.log_format).await?, &name).await,
        Command::Tenant {
            command: TenantCommand::List { args },
        } => admin::tenant_list(&open_store(&args, cli.log_format).await?).await,
        Command::Analyze {
            input,
            components,
            wasm,
            config,
            logos,
            every,
            json,
            components_dir,
            accelerator,
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let options = analysis::file::AnalyzeOptions {
                input,
                components,
                wasm,
                config,
                logos,
                every,
                json,
                components_dir: analysis::components_dir(components_dir.as_deref()),
                progress: true,
                accelerator,
            };
            let summary =
                tokio::task::spawn_blocking(move || analysis::file::analyze(&options)).await??;
            println!("{}", summary.table());
            Ok(())
        }
        Command::Bench {
            what: BenchCommand::Analysis { frames, components },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let dir = components.unwrap_or_else(analysis::default_components_dir);
            tokio::task::spawn_blocking(move || analysis::bench::analysis(frames, &dir)).await?
        }
        Command::Bench {
            what: BenchCommand::Faces { components },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let dir = components.unwrap_or_else(analysis::default_components_dir);
            tokio::task::spawn_blocking(move || analysis::bench_faces::faces(&dir)).await?
        }
        Command::Bench {
            what:
                BenchCommand::Fanout {
                    viewers,
                    seconds,
                    bus,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            media_analyzer::bench_fanout::fanout(viewers, seconds, &bus).await
        }
        Command::Bench {
            what: BenchCommand::Bus { messages, backends },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            Ok(bus::bench::throughput(messages, &backends).await?)
        }
        Command::Bench {
            what:
                BenchCommand::Tenants {
                    tenants,
                    seconds,
                    components,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let dir = components.unwrap_or_else(analysis::default_components_dir);
            tokio::task::spawn_blocking(move || {
                analysis::bench_tenants::tenants(tenants, seconds, &dir)
            })
            .await?
        }
        Command::Bench {
            what: BenchCommand::Logos { components },
        } => {
            let dir = analysis::components_dir(components.as_deref());
            tokio::task::spawn_blocking(move || analysis::bench_logos::logos(&dir)).await?
        }
        Command::Bench {
            what:
                BenchCommand::Alerts {
                    seconds,
                    components,
                },
        } => {
            let dir = analysis::components_dir(components.as_deref());
            media_analyzer::bench_alerts::alerts(seconds, &dir).await
        }
        Command::Bench {
            what:
                BenchCommand::Archive {
                    target,
                    segments,
                    segment_bytes,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            catalog::bench::archive(target.as_deref(), segments, segment_bytes, 2.0).await
        }
        Command::Bench {
            what: BenchCommand::Effects { seconds },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            tokio::task::spawn_blocking(move || {
                effects::bench::effects(&[(1280, 720), (1920, 1080)], seconds);
            })
            .await?;
            Ok(())
        }
        Command::Bench {
            what:
                BenchCommand::Rendition {
                    seconds,
                    device,
                    encoder,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let device: effects::DevicePreference = device.parse().map_err(anyhow::Error::msg)?;
            let encoder: rendition::EncoderChoice = encoder.parse().map_err(anyhow::Error::msg)?;
            tokio::task::spawn_blocking(move || rendition::bench::table(seconds, device, encoder))
                .await?
                .map(|_| ())
                .map_err(anyhow::Error::msg)
        }
        Command::Bench {
            what: BenchCommand::Clip { calls, components },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let dir = components.unwrap_or_else(analysis::default_components_dir);
            tokio::task::spawn_blocking(move || analysis::bench::clip(calls, &dir)).await?
        }
        Command::Key {
            command:
                KeyCommand::Create {
                    tenant,
                    stream,
                    label,
                    role,
                    args,
                },
        } => {
            let role: store::Role = role.parse()?;
            let store = open_store(&args, cli.log_format).await?;
            admin::key_create(&store, &tenant, stream.as_deref(), &label, role).await
        }
        Command::Key {
            command:
                KeyCommand::List {
                    tenant,
                    prefix,
                    args,
                },
        } => {
            let store = open_store(&args, cli.log_format).await?;
            admin::key_list(&store, tenant.as_deref(), prefix.as_deref()).await
        }
        Command::Key {
            command: KeyCommand::Revoke { key, args },
        } => admin::key_revoke(&open_store(&args, cli.log_format).await?, &key).await,
        Command::Component {
            command:
                ComponentCommand::Push {
                    file,
                    name,
                    world,
                    api,
                    key,
                    tenant,
                    args,
                },
        } => {
            let push = component::Push {
                file: &file,
                name: &name,
                world: &world,
            };
            match (tenant, key) {
                (Some(tenant), _) => {
                    let config = Config::load(&args, cli.log_format)?;
                    init_logging(config.log_format);
                    let store = store::Store::open(&config.store).await?;
                    component::push_local(&push, &store, &config.data, &tenant).await
                }
                (None, Some(key)) => component::push_to_server(&push, &api, &key).await,
                (None, None) => anyhow::bail!(
                    "give an admin API key (--key or MEDIA_ANALYZER_API_KEY), or --tenant to add the component to the local data directory"
                ),
            }
        }
    }
}

async fn open_store(
    args: &ServeArgs,
    log_format: Option<LogFormat>,
) -> anyhow::Result<store::Store> {
    let config = Config::load(args, log_format)?;
    init_logging(config.log_format);
    Ok(store::Store::open(&config.store).await?)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `NAME=VALUE`, for `analyze --config`.
fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}
