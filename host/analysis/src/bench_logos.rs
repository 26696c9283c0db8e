//! `media-analyzer bench logos`: the logo matcher's cost per frame at 720p and 1080p with 1, 10
//! and 100 reference logos — natively and through the `logo-matcher` component (frame.tensor,
//! wasi-nn, the `logos` graph) — beside the object detector (NanoDet through its component) on
//! the same frames, and how often the mark in the frames was found.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use inference::{Catalog, Model, SessionOptions};
use logos::{Gray, LogoIndex};
use runtime::{ModelRegistry, Runtime, SandboxConfig};

use crate::frame::host_frame;

/// Frames per size.
const FRAMES: usize = 20;

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Reference marks: the logo fixtures, then the bench set (`fixtures/logos/bench/*.svg`).
fn marks(catalog: &Catalog) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let dir = catalog
        .fixture_path("coffee")
        .and_then(|p| p.parent().map(|d| d.join("logos")))
        .context("the fixtures are missing: run scripts/fetch-models")?;
    let mut found = Vec::new();
    for sub in [dir.clone(), dir.join("bench")] {
        let mut files: Vec<_> = std::fs::read_dir(&sub)
            .with_context(|| format!("{}: run scripts/fetch-models", sub.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "svg"))
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(&path)?;
            // Marks too plain for the matcher are refused on upload too: left out here.
            if !found.iter().any(|(n, _)| *n == name)
                && LogoIndex::new().add_file(&name, &bytes).is_ok()
            {
                found.push((name, bytes));
            }
        }
    }
    Ok(found)
}

/// The coffee photo at `w × h` with the first mark drawn dark on it, 10 % of the height tall.
fn frame(catalog: &Catalog, mark: &[u8], w: usize, h: usize) -> anyhow::Result<decode::Frame> {
    let photo = catalog.fixture_path("coffee").context("coffee fixture")?;
    let mut source = decode::FileSource::open(photo.to_str().unwrap_or_default(), 1)?;
    let mut frames = Vec::new();
    source.next_frames(&mut frames)?;
    let first = frames
        .into_iter()
        .next()
        .context("the photo has no frame")?;
    let gray = Gray::from_rgb(first.width as usize, first.height as usize, &first.rgb[..]);
    let mut rgb = Vec::with_capacity(w * h * 3);
    let scaled = gray.resized(w, h);
    for v in &scaled.pixels {
        rgb.extend([*v, *v, *v]);
    }
    let reference = logos::decode_logo(mark)?;
    let side = h / 10;
    let mark_w = reference.width * side / reference.height;
    let small = reference.resized(mark_w, side);
    let (x0, y0) = (w / 3, h / 2);
    for y in 0..side {
        for x in 0..mark_w {
            let v = small.pixels[y * mark_w + x];
            if v < 128 {
                let i = ((y0 + y) * w + x0 + x) * 3;
                rgb[i..i + 3].copy_from_slice(&[200, 20, 30]);
            }
        }
    }
    Ok(decode::Frame::new(0, 0, w as u32, h as u32, rgb))
}

pub fn logos(components_dir: &Path) -> anyhow::Result<()> {
    let catalog = Catalog::load(&Catalog::default_path())?;
    inference::init_onnxruntime(&catalog.onnxruntime_library())?;
    let mut marks = marks(&catalog)?;
    // The mark in the frames (one the recall test finds at most sizes) comes first, so that every
    // index holds it.
    if let Some(i) = marks.iter().position(|(name, _)| name == "cocacola") {
        marks.swap(0, i);
    }
    println!(
        "mark in the frames: {} (10 % of the height, upright, brand red on the coffee photo)",
        marks[0].0
    );
    anyhow::ensure!(
        marks.len() >= 100,
        "{} reference marks; 100 needed",
        marks.len()
    );
    let nanodet = Model::load(
        "nanodet-coco",
        &catalog.model_path("nanodet-coco")?,
        &SessionOptions::default(),
    )?;
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = components_dir.join(format!("{}.wasm", name.replace('-', "_")));
        std::fs::read(&path)
            .with_context(|| format!("{}: run scripts/build-components", path.display()))
    };
    let (matcher_wasm, detector_wasm) = (read("logo-matcher")?, read("object-detector")?);
    println!(
        "| frame | references | native ms/frame (p50) | component ms/frame (p50) | found | object detector ms/frame (p50) | matcher ÷ detector |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (w, h) in [(1280usize, 720usize), (1920, 1080)] {
        let f = frame(&catalog, &marks[0].1, w, h)?;
        let host = |f: &decode::Frame| host_frame("bench", f);
        let mut models = ModelRegistry::new();
        models.insert("nanodet-coco".into(), nanodet.clone());
        let rt = Runtime::new(SandboxConfig::default(), models)?;
        let detector = rt.load_detector(&detector_wasm)?;
        let detector_ms = median_ms(
            (0..FRAMES)
                .map(|_| rt.detect(&detector, host(&f), &[]).map(|o| o.elapsed))
                .collect::<Result<_, _>>()?,
        );
        for n in [1usize, 10, 100] {
            let mut index = LogoIndex::new();
            for (name, bytes) in &marks[..n] {
                index.add_file(name, bytes)?;
            }
            let index = Arc::new(index);
            let gray = Gray::from_rgb(w, h, &f.rgb[..]);
            let mut native = Vec::with_capacity(FRAMES);
            let mut found = 0;
            for _ in 0..FRAMES {
                let started = Instant::now();
                let seen = index.find(&gray);
                native.push(started.elapsed());
                found += usize::from(seen.iter().any(|m| m.brand == marks[0].0));
            }
            let mut models = ModelRegistry::new();
            models.insert(
                logos::graph::GRAPH.into(),
                logos::graph::logo_model(index.clone(), &SessionOptions::default())?,
            );
            let rt = Runtime::new(SandboxConfig::default(), models)?;
            let matcher = rt.load_detector(&matcher_wasm)?;
            let component: Vec<Duration> = (0..FRAMES)
                .map(|_| rt.detect(&matcher, host(&f), &[]).map(|o| o.elapsed))
                .collect::<Result<_, _>>()?;
            let (native_ms, component_ms) = (median_ms(native), median_ms(component));
            println!(
                "| {w}×{h} | {n} | {native_ms:.1} | {component_ms:.1} | {found}/{FRAMES} | {detector_ms:.1} | {:.2} |",
                component_ms / detector_ms.max(1e-9)
            );
        }
    }
    Ok(())
}
