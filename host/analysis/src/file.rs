//! `media-analyzer analyze FILE|URL`: analysis of a recording (or an HLS URL) with the bundled
//! detector components or a component of one's own (`--wasm`, checked as an upload is), a progress
//! line, optional JSON Lines output and a summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::bundle::{Bundle, DEFAULT_COMPONENTS, ModelSettings, bundled, load_bundle};
use crate::{AnalysisStats, analyse_frame};

#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub input: String,
    /// Bundled component names (default: object-detector and face-detector, unless `wasm` names
    /// components of one's own).
    pub components: Vec<String>,
    /// Detector components of one's own (.wasm files), checked as an upload is and run after the
    /// bundled ones, with the models of the default bundled components available to them.
    pub wasm: Vec<PathBuf>,
    /// Settings for the `wasm` components (`name=value`), as a pipeline's `config` gives them.
    pub config: Vec<(String, String)>,
    /// A folder of reference logos (PNG, JPEG or SVG; the file stem is the brand's name, or a
    /// sub-folder named after the brand holds its logos): the logo matcher looks for them (alone
    /// when `components` names nothing).
    pub logos: Option<PathBuf>,
    /// Analyse every Nth frame.
    pub every: u64,
    pub json: Option<PathBuf>,
    pub components_dir: PathBuf,
    pub accelerator: inference::Accelerator,
    /// Print progress to stderr.
    pub progress: bool,
}

/// Totals per label.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LabelSummary {
    /// Analysed frames in which the label appeared.
    pub frames: u64,
    pub max_score: f32,
    pub first_pts_ms: i64,
    pub last_pts_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub decoded_frames: u64,
    pub analysed_frames: u64,
    pub failed_calls: u64,
    pub media_ms: i64,
    pub wall_ms: u64,
    pub labels: BTreeMap<String, LabelSummary>,
    /// Brands on screen, whichever component found them (see [`store::ScreenTime`]): the brand
    /// report of the recording.
    pub brands: store::ScreenTimeReport,
}

impl Summary {
    /// Media time processed per wall-clock time.
    pub fn realtime_multiple(&self) -> f64 {
        self.media_ms as f64 / self.wall_ms.max(1) as f64
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\n{} frames decoded, {} analysed in {:.1} s ({:.2}× real time){}\n\n",
            self.decoded_frames,
            self.analysed_frames,
            self.wall_ms as f64 / 1000.0,
            self.realtime_multiple(),
            if self.failed_calls > 0 {
                format!(", {} component calls failed", self.failed_calls)
            } else {
                String::new()
            }
        ));
        out.push_str(&format!(
            "{:<20} {:>8} {:>10} {:>10} {:>10}\n",
            "label", "frames", "max score", "first (s)", "last (s)"
        ));
        for (label, s) in &self.labels {
            out.push_str(&format!(
                "{:<20} {:>8} {:>10.2} {:>10.1} {:>10.1}\n",
                label,
                s.frames,
                s.max_score,
                s.first_pts_ms as f64 / 1000.0,
                s.last_pts_ms as f64 / 1000.0
            ));
        }
        if self.labels.is_empty() {
            out.push_str("(nothing detected)\n");
        }
        if !self.brands.brands.is_empty() {
            out.push_str(&format!(
                "\n{:<20} {:>14} {:>11} {:>10} {:>10} {:>8}\n",
                "brand", "screen time (s)", "appearances", "first (s)", "last (s)", "area %"
            ));
            for b in &self.brands.brands {
                out.push_str(&format!(
                    "{:<20} {:>14.1} {:>11} {:>10.1} {:>10.1} {:>8.2}\n",
                    b.brand,
                    b.screen_ms as f64 / 1000.0,
                    b.appearances,
                    b.first_pts_ms as f64 / 1000.0,
                    b.last_pts_ms as f64 / 1000.0,
                    b.share_of_area * 100.0
                ));
            }
        }
        out
    }
}

/// One line of the JSON Lines output: a frame and what was found on it (the detections as on the
/// bus and the WebSocket).
#[derive(Serialize)]
struct JsonFrame<'a> {
    seq: u64,
    pts_ms: i64,
    width: u32,
    height: u32,
    detections: &'a [bus::Detection],
}

/// A detector component of one's own, checked as an upload is (a component of the detector world
/// that imports nothing else), named after its file.
fn own_component(
    runtime: &runtime::Runtime,
    path: &std::path::Path,
    config: &[(String, String)],
) -> anyhow::Result<runtime::ActiveDetector> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    runtime
        .check_upload(runtime::World::Detector, &bytes)
        .with_context(|| format!("{} would be refused as an upload", path.display()))?;
    let component = runtime
        .load_detector(&bytes)
        .with_context(|| format!("loading {}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "component".into());
    Ok(runtime::ActiveDetector {
        name,
        version: 0,
        config: config.to_vec(),
        component,
    })
}

/// The reference logos in `dir`, as the graph the logo matcher runs, and the brands they are of.
/// A file that is not a usable logo is reported on stderr and left out; a folder without any is
/// an error.
fn logo_folder(
    dir: &std::path::Path,
    accelerator: inference::Accelerator,
) -> anyhow::Result<(runtime::ModelRegistry, Vec<String>)> {
    const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "svg"];
    let listing = |dir: &std::path::Path| -> anyhow::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the logo folder {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        paths.sort();
        Ok(paths)
    };
    let is_logo = |path: &std::path::Path| {
        path.is_file()
            && path.extension().is_some_and(|e| {
                EXTENSIONS
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(std::ffi::OsStr::new(x)))
            })
    };
    // (brand, file): a file's stem names its brand; a sub-folder names the brand of its files.
    let mut files = Vec::new();
    for path in listing(dir)? {
        if path.is_dir() {
            let brand = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            for inner in listing(&path)? {
                if is_logo(&inner) {
                    files.push((brand.clone(), inner));
                }
            }
        } else if is_logo(&path) {
            let brand = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            files.push((brand, path));
        }
    }
    let mut index = logos::LogoIndex::new();
    let mut brands: Vec<String> = Vec::new();
    for (brand, path) in files {
        let added = std::fs::metadata(&path)
            .map_err(anyhow::Error::from)
            .and_then(|m| {
                if m.len() > logos::image::MAX_LOGO_BYTES as u64 {
                    bail!("larger than {} bytes", logos::image::MAX_LOGO_BYTES);
                }
                let bytes = std::fs::read(&path)?;
                Ok(index.add_file(&brand, &bytes)?)
            });
        match added {
            Ok(()) => {
                if !brands.contains(&brand) {
                    brands.push(brand);
                }
            }
            Err(e) => eprintln!("{}: left out: {e}", path.display()),
        }
    }
    if index.is_empty() {
        bail!(
            "{}: no usable reference logo (PNG, JPEG or SVG files named after their brand)",
            dir.display()
        );
    }
    let options = inference::SessionOptions {
        accelerator,
        sessions: 1,
        ..Default::default()
    };
    let graph = logos::graph::logo_model(std::sync::Arc::new(index), &options)?;
    let mut models = runtime::ModelRegistry::new();
    models.insert(logos::graph::GRAPH.to_string(), graph);
    Ok((models, brands))
}

/// The runtime and components `options` ask for: bundled ones by name (the defaults when none),
/// the logo matcher with `logos`, and components of one's own.
pub(crate) fn bundle_for(options: &AnalyzeOptions) -> anyhow::Result<Bundle> {
    let mut names: Vec<&str> = if options.components.is_empty() && options.logos.is_some() {
        Vec::new()
    } else if options.components.is_empty() {
        DEFAULT_COMPONENTS.to_vec()
    } else {
        options.components.iter().map(String::as_str).collect()
    };
    let models = match &options.logos {
        Some(dir) => {
            let (models, brands) = logo_folder(dir, options.accelerator)?;
            if options.progress {
                eprintln!("logos of {} brands: {}", brands.len(), brands.join(", "));
            }
            if !names.contains(&"logo-matcher") {
                names.push("logo-matcher");
            }
            models
        }
        None if names.contains(&"logo-matcher") => {
            bail!("the logo matcher needs reference logos: --logos DIR")
        }
        None => runtime::ModelRegistry::new(),
    };
    let wanted = bundled(&names)?;
    let Bundle {
        runtime,
        mut components,
    } = load_bundle(
        &wanted,
        &options.components_dir,
        // One frame at a time here: decoding overlaps analysis on its own thread.
        ModelSettings {
            accelerator: options.accelerator,
            sessions: 1,
            nice: 0,
        },
        models,
    )?;

    if !options.wasm.is_empty() {
        if options.components.is_empty() {
            // Their models stay, for the components of one's own; the logo matcher stays when
            // a logo folder was given.
            components.retain(|c| options.logos.is_some() && c.name == "logo-matcher");
        }
        for path in &options.wasm {
            components.push(own_component(&runtime, path, &options.config)?);
        }
    }

    Ok(Bundle {
        runtime,
        components,
    })
}

pub fn analyze(options: &AnalyzeOptions) -> anyhow::Result<Summary> {
    if options.every == 0 {
        bail!("--every must be at least 1");
    }
    let Bundle {
        runtime,
        components,
    } = bundle_for(options)?;

    // Decoding runs on its own thread, a few frames ahead of analysis, so the two overlap.
    let (frames_tx, frames_rx) =
        std::sync::mpsc::sync_channel::<Result<decode::Frame, decode::DecodeError>>(8);
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
    let input = options.input.clone();
    let decoder = std::thread::Builder::new()
        .name("analyze-decode".into())
        .spawn(move || {
            let mut source = match decode::FileSource::open(&input, 2) {
                Ok(source) => source,
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let _ = opened_tx.send(Ok((source.frames_hint, source.duration_ms)));
            let mut batch = Vec::new();
            loop {
                match source.next_frames(&mut batch) {
                    Ok(true) => {
                        for frame in batch.drain(..) {
                            if frames_tx.send(Ok(frame)).is_err() {
                                return; // analysis stopped
                            }
                        }
                    }
                    Ok(false) => return,
                    Err(e) => {
                        let _ = frames_tx.send(Err(e));
                        return;
                    }
                }
            }
        })?;
    let (expected_frames, duration_ms) = opened_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the decoder stopped before opening {}", options.input))??;
    let mut json = match &options.json {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let started = Instant::now();
    let stats = AnalysisStats::default();
    let mut summary = Summary::default();
    let mut progress = Progress::new(options.progress, expected_frames, duration_ms);
    let mut brands = store::ScreenTime::new();
    let (mut first_pts, mut last_pts) = (None, 0i64);
    for decoded in frames_rx {
        let frame = decoded?;
        summary.decoded_frames += 1;
        first_pts.get_or_insert(frame.pts_ms);
        last_pts = frame.pts_ms;
        if frame.seq % options.every != 0 {
            continue;
        }
        summary.analysed_frames += 1;
        let found = analyse_frame(&options.input, &frame, &runtime, &components, &stats);
        let mut seen = std::collections::HashSet::new();
        for d in &found.detections {
            let entry = summary
                .labels
                .entry(d.label.clone())
                .or_insert_with(|| LabelSummary {
                    first_pts_ms: frame.pts_ms,
                    ..Default::default()
                });
            if seen.insert(d.label.clone()) {
                entry.frames += 1;
            }
            entry.max_score = entry.max_score.max(d.score);
            entry.last_pts_ms = frame.pts_ms;
        }
        let sightings: Vec<store::Sighting> = found
            .detections
            .iter()
            .filter_map(|d| {
                Some(store::Sighting {
                    brand: d.label.strip_prefix("brand:")?,
                    bbox: d.bbox,
                    component: &d.component,
                })
            })
            .collect();
        let at = store::FrameAt {
            session: 0,
            pts_ms: frame.pts_ms,
            wallclock: frame.pts_ms,
        };
        brands.frame(at, &sightings);
        if let Some(out) = json.as_mut() {
            let line = JsonFrame {
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                width: frame.width,
                height: frame.height,
                detections: &found.detections,
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        progress.update(
            summary.decoded_frames,
            frame.pts_ms - first_pts.unwrap_or(0),
        );
    }
    let _ = decoder.join();
    summary.failed_calls = stats.component_failures.load(Ordering::Relaxed);
    if let Some(mut out) = json {
        out.flush()?;
    }
    progress.finish();
    // Media time covers the last frame too: add one average frame interval.
    let frames = summary.decoded_frames.max(1) as i64;
    let span = last_pts - first_pts.unwrap_or(last_pts);
    summary.media_ms = if frames > 1 {
        span + span / (frames - 1)
    } else {
        0
    };
    summary.wall_ms = started.elapsed().as_millis() as u64;
    summary.brands = brands.finish();
    Ok(summary)
}

/// A progress line on stderr: frames, frames/s, ETA. Redrawn in place on a terminal, a line every
/// 5 s otherwise.
struct Progress {
    enabled: bool,
    terminal: bool,
    started: Instant,
    last: Instant,
    expected_frames: u64,
    duration_ms: Option<i64>,
}

impl Progress {
    fn new(enabled: bool, expected_frames: u64, duration_ms: Option<i64>) -> Self {
        let now = Instant::now();
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            expected_frames,
            duration_ms,
        }
    }

    fn update(&mut self, frames: u64, media_ms: i64) {
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if !self.enabled || self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let fps = frames as f64 / secs.max(1e-9);
        let eta = match (self.duration_ms, self.expected_frames) {
            (Some(total), _) if media_ms > 0 => format!(
                "ETA {:.0} s",
                secs * (total - media_ms).max(0) as f64 / media_ms as f64
            ),
            (_, total) if total > frames => {
                format!("ETA {:.0} s", (total - frames) as f64 / fps.max(1e-9))
            }
            _ => String::new(),
        };
        let of = if self.expected_frames > 0 {
            format!("/{}", self.expected_frames)
        } else {
            String::new()
        };
        let line = format!(
            "frames {frames}{of}  {fps:.1} fps  media {:.1} s  {eta}",
            media_ms as f64 / 1000.0
        );
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}
