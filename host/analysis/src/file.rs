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

pub fn analyze(options: &AnalyzeOptions) -> anyhow::Result<Summary> {
    if options.every == 0 {
        bail!("--every must be at least 1");
    }
    let names: Vec<&str> = if options.components.is_empty() {
        DEFAULT_COMPONENTS.to_vec()
    } else {
        options.components.iter().map(String::as_str).collect()
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
    )?;

    if !options.wasm.is_empty() {
        if options.components.is_empty() {
            components.clear(); // their models stay, for the components of one's own
        }
        for path in &options.wasm {
            components.push(own_component(&runtime, path, &options.config)?);
        }
    }

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
